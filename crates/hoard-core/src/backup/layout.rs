//! The requested paths laid out as a virtual tree below `/` (FORMAT.md "Trees": the root tree
//! mirrors absolute paths, so `/home/u/docs` becomes `home` → `u` → `docs`).

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The requested paths laid out below `/`.
#[derive(Default)]
pub(super) struct VirtualDir {
    pub(super) children: BTreeMap<Vec<u8>, Target>,
}

pub(super) enum Target {
    Path,
    Dir(VirtualDir),
}

pub(super) fn build_virtual(paths: &[PathBuf]) -> VirtualDir {
    let mut root = VirtualDir::default();
    for p in paths {
        let comps: Vec<Vec<u8>> = p
            .components()
            .filter_map(|c| match c {
                std::path::Component::Normal(s) => Some(s.as_bytes().to_vec()),
                _ => None,
            })
            .collect();
        let mut dir = &mut root;
        for (i, c) in comps.iter().enumerate() {
            let last = i + 1 == comps.len();
            let entry = dir.children.entry(c.clone()).or_insert_with(|| {
                if last {
                    Target::Path
                } else {
                    Target::Dir(VirtualDir::default())
                }
            });
            if last {
                *entry = Target::Path;
                break;
            }
            match entry {
                Target::Path => break, // an ancestor is backed up whole
                Target::Dir(d) => dir = d,
            }
        }
    }
    root
}

/// Makes a path absolute and lexically clean without resolving symlinks, as restic does.
pub(super) fn absolute(p: &Path) -> Result<PathBuf> {
    let abs = std::path::absolute(p).map_err(|e| Error::io(p, e))?;
    let mut out = PathBuf::from("/");
    for c in abs.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::Normal(s) => out.push(s),
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_layout_merges_and_covers() {
        let v = build_virtual(&[
            PathBuf::from("/a/b/c"),
            PathBuf::from("/a/b"),
            PathBuf::from("/a/x"),
        ]);
        let Target::Dir(a) = &v.children[&b"a".to_vec()] else {
            panic!()
        };
        assert!(matches!(a.children[&b"b".to_vec()], Target::Path));
        assert!(matches!(a.children[&b"x".to_vec()], Target::Path));
    }

    #[test]
    fn absolute_cleans_dots() {
        assert_eq!(
            absolute(Path::new("/a/./b/../c")).unwrap(),
            PathBuf::from("/a/c")
        );
    }
}
