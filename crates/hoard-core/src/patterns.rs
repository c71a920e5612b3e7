//! Path patterns for `--exclude` (backup) and `--include` (restore), read as restic reads them.

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use crate::error::{Error, Result};

/// Compiles path patterns as restic reads them: one starting with `/` matches from the root,
/// any other matches at any depth (`*.tmp`, `cache`, `sub/dir`); `*` never crosses `/`.
pub(crate) fn compile_patterns(patterns: &[String], what: &'static str) -> Result<GlobSet> {
    compile(patterns, what, false)
}

/// As [`compile_patterns`], ignoring case (`--iexclude`, `--iinclude`).
pub(crate) fn compile_patterns_nocase(patterns: &[String], what: &'static str) -> Result<GlobSet> {
    compile(patterns, what, true)
}

fn compile(patterns: &[String], what: &'static str, nocase: bool) -> Result<GlobSet> {
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        let full = if p.starts_with('/') {
            p.clone()
        } else {
            format!("**/{p}")
        };
        let g = GlobBuilder::new(&full)
            .literal_separator(true)
            .case_insensitive(nocase)
            .build()
            .map_err(|e| Error::invalid(what, format!("{p:?}: {e}")))?;
        b.add(g);
    }
    b.build().map_err(|e| Error::invalid_by(what, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excludes_match_names_anywhere_and_anchored_paths() {
        let g = compile_patterns(
            &["*.tmp".into(), "/data/cache".into(), "sub/skip".into()],
            "exclude pattern",
        )
        .unwrap();
        assert!(g.is_match("/x/y/z.tmp"));
        assert!(g.is_match("/data/cache"));
        assert!(!g.is_match("/other/data/cache"));
        assert!(g.is_match("/a/sub/skip"));
        assert!(!g.is_match("/x/y/z.tmpx"));
        assert!(compile_patterns(&["[".into()], "exclude pattern").is_err());
        let i = compile_patterns_nocase(&["*.JPG".into()], "exclude pattern").unwrap();
        assert!(i.is_match("/a/b.jpg") && i.is_match("/a/B.Jpg") && !g.is_match("/a/b.JPG"));
    }
}
