//! Reading extended attributes (FORMAT.md "Trees", `xattrs`): every attribute the process may
//! read, without following symlinks. A file system without them, or an attribute this process
//! may not read (`trusted.*` for non-root), is not an error: there is just nothing to store.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;

use crate::format::tree::{RawName, Tree, Xattr};

/// The parent snapshot's tree of one directory, for the attributes of its entries with the
/// `ctime` and inode they were read at. Changing an attribute changes a file's `ctime`, so an
/// entry whose `ctime` and inode are the parent's still has the parent's attributes: an
/// unchanged tree is walked without one `listxattr` per entry.
pub(super) struct Known(Option<Arc<Tree>>);

impl Known {
    pub(super) fn from_parent(parent: Option<Arc<Tree>>) -> Known {
        Known(parent)
    }

    /// The attributes of the entry `name` at `path`: the parent's when unchanged, else read.
    /// Names are asked for in ascending order, `from` kept between calls (`Tree::find_from`).
    pub(super) fn attrs(
        &self,
        path: &Path,
        name: &[u8],
        md: Option<&std::fs::Metadata>,
        from: &mut usize,
    ) -> Vec<Xattr> {
        let old = self.0.as_ref().and_then(|t| t.find_from(name, from));
        if let (Some(md), Some(old)) = (md, old) {
            let now = md
                .ctime()
                .saturating_mul(1_000_000_000)
                .saturating_add(md.ctime_nsec());
            if now == old.ctime && md.ino() == old.inode {
                return old.xattrs.clone();
            }
        }
        read(path)
    }
}

/// The extended attributes of `path`, in name order.
pub(super) fn read(path: &Path) -> Vec<Xattr> {
    let names = match xattr::list(path) {
        Ok(names) => names,
        Err(e) => {
            tracing::debug!("{}: no extended attributes read: {e}", path.display());
            return Vec::new();
        }
    };
    let mut out: Vec<Xattr> = names
        .filter_map(|name| match xattr::get(path, &name) {
            Ok(Some(value)) => Some(Xattr {
                name: RawName::from_os_str(&name),
                value,
            }),
            Ok(None) => None,
            Err(e) => {
                tracing::debug!("{}: attribute {name:?} not read: {e}", path.display());
                None
            }
        })
        .collect();
    out.sort_by(|a, b| a.name.0.cmp(&b.name.0));
    out
}
