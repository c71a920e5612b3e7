//! From flags and environment to an opened repository: the one place where missing or
//! conflicting settings become a clear message.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use hoard_core::Repository;
use secret::Password;

use crate::args::GlobalArgs;

/// Where a repository lives, as given by `-r` or `RESTIC_REPOSITORY`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Local(PathBuf),
}

pub fn parse_location(s: &str) -> Result<Location> {
    if let Some(rest) = s.strip_prefix("local:") {
        return Ok(Location::Local(PathBuf::from(rest)));
    }
    if let Some((scheme, _)) = s.split_once(':') {
        if !scheme.contains('/') && scheme.len() > 1 {
            bail!("repository {s:?}: the {scheme:?} backend is not supported by this build (use a local path or local:/path)");
        }
    }
    if s.is_empty() {
        bail!("empty repository location");
    }
    Ok(Location::Local(PathBuf::from(s)))
}

pub fn location(g: &GlobalArgs) -> Result<Location> {
    let s = g
        .repo
        .as_deref()
        .ok_or_else(|| anyhow!("no repository given: use -r/--repo or set RESTIC_REPOSITORY"))?;
    parse_location(s)
}

/// The password from `--password-file`/`RESTIC_PASSWORD_FILE` or `RESTIC_PASSWORD`. Never
/// prompts: a sidecar must not hang waiting for input.
pub fn password(g: &GlobalArgs) -> Result<Password> {
    if let Some(f) = &g.password_file {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("cannot read the password file {}", f.display()))?;
        let pw = text
            .strip_suffix('\n')
            .map(|t| t.strip_suffix('\r').unwrap_or(t))
            .unwrap_or(&text);
        if pw.is_empty() {
            bail!("the password file {} is empty", f.display());
        }
        return Ok(Password::new(pw.as_bytes().to_vec()));
    }
    match std::env::var_os("RESTIC_PASSWORD") {
        Some(p) if !p.is_empty() => Ok(Password::new(
            std::os::unix::ffi::OsStrExt::as_bytes(p.as_os_str()).to_vec(),
        )),
        _ => {
            bail!("no password given: set RESTIC_PASSWORD, RESTIC_PASSWORD_FILE or --password-file")
        }
    }
}

pub fn operator(loc: &Location, create: bool) -> Result<opendal::Operator> {
    match loc {
        Location::Local(p) => Ok(hoard_core::repository::local_operator(p, create)?),
    }
}

pub async fn open(g: &GlobalArgs) -> Result<Repository> {
    let loc = location(g)?;
    let op = operator(&loc, false)?;
    let pw = password(g)?;
    Ok(Repository::open(op, &pw.0).await?)
}

/// A password that is wiped from memory when dropped and never printed.
mod secret {
    pub struct Password(pub zeroize::Zeroizing<Vec<u8>>);

    impl Password {
        pub fn new(bytes: Vec<u8>) -> Self {
            Password(zeroize::Zeroizing::new(bytes))
        }
    }

    impl std::fmt::Debug for Password {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("Password(..)")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        assert_eq!(
            parse_location("/tmp/r").unwrap(),
            Location::Local("/tmp/r".into())
        );
        assert_eq!(
            parse_location("local:/tmp/r").unwrap(),
            Location::Local("/tmp/r".into())
        );
        assert_eq!(
            parse_location("rel/dir").unwrap(),
            Location::Local("rel/dir".into())
        );
        assert!(parse_location("sftp:host:/x").is_err());
    }
}
