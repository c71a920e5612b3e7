//! Share: one file (or a directory as tar or zip) from a snapshot, written in plain bytes to a
//! `shares/` area beside the repository, with a presigned GET URL that works without keys
//! until it expires. "Send me last Tuesday's export" without a restore and a copy by hand.
//!
//! The `shares/` area is outside the repository format: readers, `check` and `copy` never
//! look at it. Each share is two objects:
//!
//! ```text
//! shares/<id>.meta     sealed document: name, snapshot, path, created, expires
//! shares/<id>/<name>   the plain bytes the URL hands out
//! ```
//!
//! The manifest is written first (with the expiry the share would have if the upload took
//! no time), the payload next, and the manifest again with the URL's real expiry once the
//! URL is signed. So a payload never exists without a manifest that says when it may go,
//! even after a crash mid-upload, and [`expire_shares`] (also run by prune) can always
//! clean up. Manifests are sealed, so a planted one is reported and never acted on.
//!
//! The URL is SigV4 query-signed by the repository's credentials: it stops working at its
//! expiry (at most 7 days, SigV4's limit), when the object is revoked, or when the
//! credentials that signed it are revoked or (temporary ones) expire.

use std::time::Duration;

use chrono::{DateTime, Utc};
use opendal::{ErrorKind, Operator};
use serde::{Deserialize, Serialize};

use crate::dump::{dump_stream, Archive};
use crate::error::{Error, Result};
use crate::format::blob::{open_doc, seal_doc};
use crate::format::tree::NodeType;
use crate::id::Id;
use crate::repository::Repository;
use crate::walk::{find_path, walk_tree, Found};

/// Where shares live, beside the repository's own folders.
pub const SHARES_DIR: &str = "shares/";

/// The longest a presigned URL can live: SigV4 refuses more than 7 days.
pub const MAX_EXPIRY: Duration = Duration::from_secs(7 * 24 * 3600);

/// Parts of a multipart upload: S3 allows 10,000; the part size grows past 16 MiB only for
/// shares too large to fit otherwise.
const MAX_PARTS: u64 = 9_000;
const MIN_PART: u64 = 16 << 20;

/// Options for [`share`].
#[derive(Debug, Clone)]
pub struct ShareOptions {
    /// How long the URL works (1 s to [`MAX_EXPIRY`]).
    pub expires: Duration,
    /// The file name the recipient sees; default: the shared path's last part, with `.tar`
    /// or `.zip` for a directory.
    pub name: Option<String>,
    /// A directory's format.
    pub archive: Archive,
}

impl Default for ShareOptions {
    fn default() -> Self {
        ShareOptions {
            expires: Duration::from_secs(24 * 3600),
            name: None,
            archive: Archive::Tar,
        }
    }
}

/// A share's manifest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ShareInfo {
    /// 16 hex digits, also the folder of the payload.
    pub id: String,
    /// The payload's file name.
    pub name: String,
    /// The snapshot it came from.
    pub snapshot: Id,
    /// The path in that snapshot.
    pub path: String,
    /// When it was made.
    pub created: DateTime<Utc>,
    /// When the URL stops working; after it, [`expire_shares`] deletes the share.
    pub expires: DateTime<Utc>,
}

/// What [`share`] made.
#[derive(Debug, Clone)]
pub struct Shared {
    /// The manifest as stored.
    pub info: ShareInfo,
    /// The presigned GET URL.
    pub url: String,
    /// The payload's size in bytes.
    pub size: u64,
}

/// One entry of [`list_shares`].
#[derive(Debug, Clone)]
pub struct ListedShare {
    /// The share's id.
    pub id: String,
    /// Its manifest; `None` when there is none or it does not open (see `problem`).
    pub info: Option<ShareInfo>,
    /// The payload's size; `None` while it is being uploaded, or when it is gone.
    pub size: Option<u64>,
    /// What is wrong with it, if anything: a manifest that does not open (planted or
    /// damaged), or a payload without a manifest. Such shares are left for a person to look
    /// at; [`revoke_share`] removes them.
    pub problem: Option<String>,
}

/// Writes `path` of `snapshot` (a file as is, a directory as `opts.archive`) under
/// `shares/`, and returns a URL that hands it out without credentials until it expires.
/// Streams: memory stays flat whatever the size. Fails before writing anything when the
/// storage cannot presign (a local repository) or the credentials cannot sign a URL that
/// long (anonymous, or temporary credentials that expire sooner).
pub async fn share(
    repo: &Repository,
    snapshot: Id,
    tree: Id,
    path: &str,
    opts: &ShareOptions,
) -> Result<Shared> {
    check_expiry(opts.expires)?;
    let op = repo.operator();
    if !op.info().capability().presign_read {
        return Err(Error::Share(format!(
            "the {} storage cannot sign URLs; shares need an S3 repository (for a local one, use `hoard dump` or `hoard restore`)",
            op.info().scheme()
        )));
    }
    // Signing is local (or a credential fetch): find out now, before anything is uploaded.
    presign(op, &format!("{SHARES_DIR}probe"), opts.expires).await?;

    let (dir, size_hint) = payload_shape(repo, tree, path).await?;
    let name = match &opts.name {
        Some(n) => valid_name(n)?,
        None => default_name(path, dir, opts.archive, snapshot),
    };
    let id = Id::random().to_hex()[..16].to_string();
    let payload = payload_path(&id, &name);
    let mut info = ShareInfo {
        id: id.clone(),
        name: name.clone(),
        snapshot,
        path: path.to_string(),
        created: Utc::now(),
        expires: Utc::now() + opts.expires,
    };
    write_manifest(repo, &info).await?;

    let content_type = match (dir, opts.archive) {
        (false, _) => "application/octet-stream",
        (true, Archive::Tar) => "application/x-tar",
        (true, Archive::Zip) => "application/zip",
    };
    let uploaded = upload(
        repo,
        tree,
        path,
        opts.archive,
        &payload,
        content_type,
        &name,
        size_hint,
    )
    .await;
    let size = match uploaded {
        Ok(size) => size,
        Err(e) => {
            // The payload was aborted; the manifest goes too (its expiry would take it
            // later anyway).
            if let Err(d) = op.delete(&manifest_path(&id)).await {
                tracing::warn!("removing the manifest of failed share {id}: {d}");
            }
            return Err(e);
        }
    };
    let url = presign(op, &payload, opts.expires).await?;
    info.expires = Utc::now() + opts.expires;
    write_manifest(repo, &info).await?;
    tracing::info!(share = %id, bytes = size, "shared {path} as {name}");
    Ok(Shared { info, url, size })
}

/// Every share under `shares/`, oldest first, with its payload's size.
pub async fn list_shares(repo: &Repository) -> Result<Vec<ListedShare>> {
    let mut found: std::collections::BTreeMap<String, (bool, Option<u64>)> = Default::default();
    for (path, len) in list_area(repo.operator()).await? {
        let rest = &path[SHARES_DIR.len()..];
        let (id, is_manifest) = match rest.strip_suffix(".meta") {
            Some(id) if !id.contains('/') => (id, true),
            _ => match rest.split_once('/') {
                Some((id, _)) => (id, false),
                None => continue,
            },
        };
        if !valid_id(id) {
            tracing::debug!("ignoring {path}: not a share");
            continue;
        }
        let e = found.entry(id.to_string()).or_default();
        if is_manifest {
            e.0 = true;
        } else {
            e.1 = Some(e.1.unwrap_or(0) + len);
        }
    }
    let mut out = Vec::with_capacity(found.len());
    for (id, (has_manifest, size)) in found {
        let (info, problem) = if has_manifest {
            match read_manifest(repo, &id).await {
                Ok(info) => (Some(info), None),
                Err(e) => (None, Some(format!("its manifest does not open: {e}"))),
            }
        } else {
            (None, Some("a payload without a manifest".to_string()))
        };
        out.push(ListedShare {
            id,
            info,
            size,
            problem,
        });
    }
    out.sort_by(|a, b| {
        let t = |s: &ListedShare| s.info.as_ref().map(|i| i.created);
        t(a).cmp(&t(b)).then_with(|| a.id.cmp(&b.id))
    });
    Ok(out)
}

/// Deletes the share whose id is or starts with `id`: payload first, then the manifest, so
/// an interrupted revoke leaves a manifest that a second one (or expiry) finishes.
pub async fn revoke_share(repo: &Repository, id: &str) -> Result<ListedShare> {
    let all = list_shares(repo).await?;
    let mut matching = all.into_iter().filter(|s| s.id.starts_with(id));
    let found = match (matching.next(), matching.next()) {
        (Some(s), None) if !id.is_empty() => s,
        (Some(_), Some(_)) => {
            return Err(Error::invalid(
                "share id",
                format!("{id:?} matches several shares; give more digits"),
            ))
        }
        _ => {
            return Err(Error::invalid(
                "share id",
                format!("no share {id:?} (see `hoard share --list`)"),
            ))
        }
    };
    delete_share(repo.operator(), &found.id).await?;
    Ok(found)
}

/// Deletes every share whose URL expired before `now`; returns them. Shares whose manifest
/// does not open are left alone (a planted manifest must not make hoard delete anything).
pub async fn expire_shares(repo: &Repository, now: DateTime<Utc>) -> Result<Vec<ListedShare>> {
    let mut gone = Vec::new();
    for s in list_shares(repo).await? {
        match &s.info {
            Some(info) if info.expires <= now => {
                delete_share(repo.operator(), &s.id).await?;
                gone.push(s);
            }
            Some(_) => {}
            None => tracing::warn!(
                "share {} left alone: {}",
                s.id,
                s.problem.as_deref().unwrap_or("")
            ),
        }
    }
    Ok(gone)
}

fn check_expiry(d: Duration) -> Result<()> {
    if d < Duration::from_secs(1) || d > MAX_EXPIRY {
        return Err(Error::invalid(
            "--expires",
            format!(
                "{}s: a presigned URL lives from 1 second to 7 days (SigV4's limit)",
                d.as_secs()
            ),
        ));
    }
    Ok(())
}

async fn presign(op: &Operator, path: &str, expires: Duration) -> Result<String> {
    match op.presign_read(path, expires).await {
        Ok(req) if !signed(op.info().scheme(), &req.uri().to_string()) => Err(Error::Share(
            "the storage is opened without credentials (anonymous), so the link would carry no signature and no expiry; open it with keys".into(),
        )),
        Ok(req) => Ok(req.uri().to_string()),
        Err(e) if e.kind() == ErrorKind::Unsupported => Err(Error::Share(format!(
            "the {} storage cannot sign URLs; shares need an S3 repository",
            op.info().scheme()
        ))),
        Err(e) => Err(Error::Share(format!(
            "the storage credentials cannot sign a URL valid for {}s ({e}); give long-term keys (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY), or a shorter --expires than the temporary credentials live",
            expires.as_secs()
        ))),
    }
}

/// Whether a presigned URL carries a signature: an anonymous S3 operator "presigns" by
/// returning the plain URL, which would work forever on a public bucket and never elsewhere.
fn signed(scheme: &str, url: &str) -> bool {
    scheme != "s3" || url.contains("X-Amz-Signature=")
}

/// A name is one path component a browser can save: no slashes, no control characters.
fn valid_name(name: &str) -> Result<String> {
    let bad = name.is_empty()
        || name == "."
        || name == ".."
        || name.len() > 255
        || name
            .chars()
            .any(|c| c == '/' || c == '\\' || c.is_control());
    if bad {
        return Err(Error::invalid(
            "--name",
            format!(
                "{name:?}: one file name of 1–255 bytes, without slashes or control characters"
            ),
        ));
    }
    Ok(name.to_string())
}

fn default_name(path: &str, dir: bool, archive: Archive, snapshot: Id) -> String {
    let last = path
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .filter(|s| !s.is_empty() && *s != "." && *s != "..")
        .map(|s| {
            s.chars()
                .filter(|c| !c.is_control() && *c != '\\')
                .collect::<String>()
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| format!("snapshot-{}", snapshot.short()));
    match (dir, archive) {
        (false, _) => last,
        (true, Archive::Tar) => format!("{last}.tar"),
        (true, Archive::Zip) => format!("{last}.zip"),
    }
}

fn valid_id(id: &str) -> bool {
    id.len() == 16
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn manifest_path(id: &str) -> String {
    format!("{SHARES_DIR}{id}.meta")
}

fn payload_path(id: &str, name: &str) -> String {
    format!("{SHARES_DIR}{id}/{name}")
}

async fn write_manifest(repo: &Repository, info: &ShareInfo) -> Result<()> {
    let path = manifest_path(&info.id);
    let sealed = seal_doc(repo.key(), info)?;
    repo.operator()
        .write(&path, sealed)
        .await
        .map(|_| ())
        .map_err(|e| Error::storage("write", path, e))
}

async fn read_manifest(repo: &Repository, id: &str) -> Result<ShareInfo> {
    let path = manifest_path(id);
    let bytes = repo
        .operator()
        .read(&path)
        .await
        .map_err(|e| Error::storage("read", path.clone(), e))?
        .to_vec();
    let info: ShareInfo = open_doc(repo.key(), &bytes, &path)?;
    // The manifest names its own id: one copied over another's name is not that share.
    if info.id != id {
        return Err(Error::corrupt(path, "it names another share"));
    }
    Ok(info)
}

/// Every object under `shares/` with its size; a storage without the folder has none.
async fn list_area(op: &Operator) -> Result<Vec<(String, u64)>> {
    let entries = match op.list_with(SHARES_DIR).recursive(true).await {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::storage("list", SHARES_DIR, e)),
    };
    Ok(entries
        .into_iter()
        .filter(|e| e.metadata().is_file() && e.path().starts_with(SHARES_DIR))
        .map(|e| (e.path().to_string(), e.metadata().content_length()))
        .collect())
}

async fn delete_share(op: &Operator, id: &str) -> Result<()> {
    let prefix = format!("{SHARES_DIR}{id}/");
    for (path, _) in list_area(op).await? {
        if path.starts_with(&prefix) {
            op.delete(&path)
                .await
                .map_err(|e| Error::storage("delete", path.clone(), e))?;
        }
    }
    let m = manifest_path(id);
    op.delete(&m)
        .await
        .map_err(|e| Error::storage("delete", m, e))
}

/// Whether `path` is a directory (shared as an archive), and roughly what the payload will
/// weigh, to size the upload's parts: one lookup and, for a directory, one walk.
async fn payload_shape(repo: &Repository, tree: Id, path: &str) -> Result<(bool, u64)> {
    let root = match find_path(repo, tree, path).await? {
        Found::Node(n) if n.node_type != NodeType::Dir => return Ok((false, n.size)),
        Found::Node(n) => match n.subtree {
            Some(t) => t,
            None => return Ok((true, 0)),
        },
        Found::Root(t) => t,
    };
    let mut total = 0u64;
    walk_tree(repo, root, |_, n| {
        // Content plus a header's worth per entry, for either format.
        total = total.saturating_add(n.size).saturating_add(1024);
        Ok(())
    })
    .await?;
    Ok((true, total))
}

/// Streams the dump into a multipart upload, committed only when the dump ends well; at
/// most a few pieces and the upload's parts are in memory at once.
#[allow(clippy::too_many_arguments)]
async fn upload(
    repo: &Repository,
    tree: Id,
    path: &str,
    archive: Archive,
    target: &str,
    content_type: &str,
    name: &str,
    size_hint: u64,
) -> Result<u64> {
    let part = MIN_PART.max(size_hint.div_ceil(MAX_PARTS).next_multiple_of(1 << 20));
    let mut writer = repo
        .operator()
        .writer_with(target)
        .chunk(part as usize)
        .concurrent(2)
        .content_type(content_type)
        .content_disposition(&content_disposition(name))
        .await
        .map_err(|e| Error::storage("write", target, e))?;
    let mut pieces = dump_stream(repo, tree, path, archive);
    let mut written = 0u64;
    while let Some(piece) = pieces.recv().await {
        let stored = match piece {
            Ok(b) => {
                written += b.len() as u64;
                writer
                    .write(b)
                    .await
                    .map_err(|e| Error::storage("write", target, e))
            }
            Err(e) => Err(e),
        };
        if let Err(e) = stored {
            if let Err(a) = writer.abort().await {
                tracing::warn!("aborting the upload of {target}: {a}");
            }
            return Err(e);
        }
    }
    writer
        .close()
        .await
        .map_err(|e| Error::storage("write", target, e))?;
    Ok(written)
}

/// `attachment` with the name in RFC 6266/5987 form, so browsers save it under that name
/// whatever its characters (also the web console's downloads).
pub fn content_disposition(name: &str) -> String {
    let mut enc = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            enc.push(b as char);
        } else {
            enc.push_str(&format!("%{b:02X}"));
        }
    }
    format!("attachment; filename*=UTF-8''{enc}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let s = Id::random();
        assert_eq!(
            default_name("/a/b/report.csv", false, Archive::Tar, s),
            "report.csv"
        );
        assert_eq!(default_name("/a/b/", true, Archive::Zip, s), "b.zip");
        assert_eq!(
            default_name("/", true, Archive::Tar, s),
            format!("snapshot-{}.tar", s.short())
        );
        assert!(valid_name("a/b").is_err());
        assert!(valid_name("..").is_err());
        assert!(valid_name("x\ny").is_err());
        assert_eq!(valid_name("Ünïcode ok.txt").unwrap(), "Ünïcode ok.txt");
        assert_eq!(
            content_disposition("a b\"c.txt"),
            "attachment; filename*=UTF-8''a%20b%22c.txt"
        );
        assert!(valid_id("0123456789abcdef"));
        assert!(!valid_id("0123456789ABCDEF"));
        assert!(!valid_id("../data"));
    }

    #[test]
    fn anonymous_links_are_not_links() {
        assert!(!signed("s3", "http://127.0.0.1:9000/b/shares/x/f"));
        assert!(signed(
            "s3",
            "http://127.0.0.1:9000/b/shares/x/f?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=ab"
        ));
        assert!(signed(
            "gcs",
            "https://storage.googleapis.com/b/o?X-Goog-Signature=x"
        ));
    }

    #[test]
    fn expiry_bounds() {
        assert!(check_expiry(Duration::from_secs(1)).is_ok());
        assert!(check_expiry(MAX_EXPIRY).is_ok());
        assert!(check_expiry(Duration::from_millis(500)).is_err());
        assert!(check_expiry(MAX_EXPIRY + Duration::from_secs(1)).is_err());
    }
}
