//! Reading extended attributes (FORMAT.md "Trees", `xattrs`): every attribute the process may
//! read, without following symlinks. A file system without them, or an attribute this process
//! may not read (`trusted.*` for non-root), is not an error: there is just nothing to store.

use std::path::Path;

use crate::format::tree::{RawName, Xattr};

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
