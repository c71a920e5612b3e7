//! Trees (FORMAT.md "Trees"): one blob per directory, holding its entries sorted by raw name
//! bytes.
//!
//! Names and link targets are raw bytes, since Unix file names need not be UTF-8. In JSON a
//! name that is valid UTF-8 is a string; any other name is an array of byte values, so no
//! escaping scheme can make two names collide.

use std::ffi::OsStr;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::id::Id;

/// A file name or link target as raw bytes.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct RawName(pub Vec<u8>);

impl RawName {
    /// The name as an OS string.
    pub fn as_os_str(&self) -> &OsStr {
        OsStr::from_bytes(&self.0)
    }

    /// The bytes of an OS string.
    pub fn from_os_str(s: &OsStr) -> Self {
        RawName(s.as_bytes().to_vec())
    }
}

impl fmt::Debug for RawName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&String::from_utf8_lossy(&self.0), f)
    }
}

impl fmt::Display for RawName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.0))
    }
}

impl Serialize for RawName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(&self.0) {
            Ok(text) => s.serialize_str(text),
            Err(_) => s.collect_seq(self.0.iter()),
        }
    }
}

impl<'de> Deserialize<'de> for RawName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawName;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or an array of bytes")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawName, E> {
                Ok(RawName(v.as_bytes().to_vec()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawName, A::Error> {
                let mut out = Vec::new();
                while let Some(b) = seq.next_element::<u8>()? {
                    out.push(b);
                }
                Ok(RawName(out))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
/// What a node is.
#[serde(rename_all = "lowercase")]
pub enum NodeType {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// Block device.
    Dev,
    /// Character device.
    Chardev,
    /// A named pipe.
    Fifo,
    /// A Unix socket (recorded, not restored).
    Socket,
}

/// One directory entry with its metadata. Hard links are files whose `links` is above one;
/// entries sharing `device` and `inode` within a snapshot are restored as one inode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// The entry's name (raw bytes).
    pub name: RawName,
    /// What it is.
    #[serde(rename = "type")]
    pub node_type: NodeType,
    /// Permission bits including setuid, setgid and sticky (st_mode & 0o7777).
    pub mode: u32,
    /// Owner uid.
    pub uid: u32,
    /// Owner gid.
    pub gid: u32,
    /// Owner name (empty when unknown).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user: String,
    /// Group name (empty when unknown).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub group: String,
    /// Nanoseconds since the Unix epoch.
    pub mtime: i64,
    /// Recorded as `mtime` (FORMAT.md "Trees").
    pub atime: i64,
    /// Status change time, nanoseconds since the epoch.
    pub ctime: i64,
    /// Inode number, for hard links and change detection.
    pub inode: u64,
    /// Device number of the file system, likewise.
    pub device: u64,
    /// Hard link count.
    pub links: u64,
    /// File size in bytes (0 for everything else).
    pub size: u64,
    /// Symlink target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_target: Option<RawName>,
    /// Device number of a block or character device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rdev: Option<u64>,
    /// A file's content: blob ids in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Vec<Id>>,
    /// A directory's tree blob.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtree: Option<Id>,
    /// Extended attributes (`user.*`, `security.*`, POSIX ACLs as `system.posix_acl_*`), in
    /// name order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub xattrs: Vec<Xattr>,
}

/// One extended attribute: its name (raw bytes, like file names) and its value (raw bytes,
/// base64 in JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Xattr {
    /// `user.comment`, `system.posix_acl_access`, …
    pub name: RawName,
    /// The value, as the file system holds it.
    #[serde(with = "base64_bytes")]
    pub value: Vec<u8>,
}

/// Values as standard base64 strings.
mod base64_bytes {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(text.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}

fn ns(secs: i64, nsec: i64) -> i64 {
    secs.saturating_mul(1_000_000_000).saturating_add(nsec)
}

impl Node {
    /// A node from `lstat` metadata; content, subtree and link target are filled in later.
    pub fn from_metadata(
        name: RawName,
        md: &std::fs::Metadata,
        names: &crate::host::NameCache,
    ) -> Self {
        let ft = md.file_type();
        let node_type = if ft.is_dir() {
            NodeType::Dir
        } else if ft.is_symlink() {
            NodeType::Symlink
        } else if ft.is_block_device() {
            NodeType::Dev
        } else if ft.is_char_device() {
            NodeType::Chardev
        } else if ft.is_fifo() {
            NodeType::Fifo
        } else if ft.is_socket() {
            NodeType::Socket
        } else {
            NodeType::File
        };
        let is_dev = matches!(node_type, NodeType::Dev | NodeType::Chardev);
        Node {
            name,
            node_type,
            mode: md.mode() & 0o7777,
            uid: md.uid(),
            gid: md.gid(),
            user: names.user(md.uid()),
            group: names.group(md.gid()),
            mtime: ns(md.mtime(), md.mtime_nsec()),
            // Reading a file or listing a directory (as backup does) moves its atime, so a
            // recorded atime would make every tree new on the next run. Like borg, record none:
            // atime is stored as mtime, and restore sets it so.
            atime: ns(md.mtime(), md.mtime_nsec()),
            ctime: ns(md.ctime(), md.ctime_nsec()),
            inode: md.ino(),
            device: md.dev(),
            links: md.nlink(),
            size: if node_type == NodeType::File {
                md.size()
            } else {
                0
            },
            link_target: None,
            rdev: is_dev.then(|| md.rdev()),
            content: None,
            subtree: None,
            xattrs: Vec::new(),
        }
    }

    /// Whether a file is unchanged since `old` was recorded, judged from metadata alone.
    pub fn same_file_metadata(&self, old: &Node) -> bool {
        old.node_type == NodeType::File
            && self.node_type == NodeType::File
            && self.size == old.size
            && self.mtime == old.mtime
            && self.ctime == old.ctime
            && self.inode == old.inode
            && old.content.is_some()
    }
}

/// The entries of one directory, sorted by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tree {
    /// The entries, sorted by name bytes.
    pub nodes: Vec<Node>,
}

impl Tree {
    /// Sorts the entries by name bytes, as the format requires.
    pub fn sort(&mut self) {
        self.nodes.sort_by(|a, b| a.name.cmp(&b.name));
    }

    /// The entry with this name.
    pub fn find(&self, name: &[u8]) -> Option<&Node> {
        self.nodes
            .binary_search_by(|n| n.name.0.as_slice().cmp(name))
            .ok()
            .map(|i| &self.nodes[i])
    }

    /// The entry with this name, for callers that look names up in ascending order (a
    /// directory listing sorted as trees are): steps on from `from` and leaves it there, so
    /// a whole listing costs one pass over the tree instead of a binary search per name.
    pub fn find_from(&self, name: &[u8], from: &mut usize) -> Option<&Node> {
        while self
            .nodes
            .get(*from)
            .is_some_and(|n| n.name.0.as_slice() < name)
        {
            *from += 1;
        }
        self.nodes
            .get(*from)
            .filter(|n| n.name.0.as_slice() == name)
    }

    /// The tree blob's plaintext (JSON).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_into(&mut out);
        out
    }

    /// [`Tree::to_bytes`] appended to `out`, a buffer the caller reuses.
    pub fn write_into(&self, out: &mut Vec<u8>) {
        // Serialising plain data to a Vec cannot fail.
        let _ = serde_json::to_writer(out, self);
    }

    /// Decodes a tree blob's plaintext; `what` names it in the error.
    pub fn from_bytes(bytes: &[u8], what: &str) -> crate::error::Result<Self> {
        serde_json::from_slice(bytes).map_err(|e| crate::error::Error::corrupt_by(what, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn find_from_finds_what_find_finds_in_one_pass() {
        let names: [&[u8]; 5] = [b"a", b"c", b"d", b"f", b"z"];
        let md = std::fs::symlink_metadata("/").unwrap();
        let names_cache = crate::host::NameCache::default();
        let tree = Tree {
            nodes: names
                .iter()
                .map(|n| Node::from_metadata(RawName(n.to_vec()), &md, &names_cache))
                .collect(),
        };
        let mut at = 0;
        for name in [&b"0"[..], b"a", b"b", b"c", b"e", b"f", b"y", b"z", b"zz"] {
            let found = tree.find_from(name, &mut at).map(|n| n.name.0.clone());
            assert_eq!(found, tree.find(name).map(|n| n.name.0.clone()), "{name:?}");
        }
        assert_eq!(at, 5, "past the end once every name is passed");
    }

    fn node_strategy() -> impl Strategy<Value = Node> {
        (
            proptest::collection::vec(any::<u8>(), 1..40),
            prop_oneof![
                Just(NodeType::File),
                Just(NodeType::Dir),
                Just(NodeType::Symlink),
                Just(NodeType::Fifo)
            ],
            any::<(u32, u32, i64, i64, u64, u64)>(),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
            proptest::option::of(proptest::collection::vec(any::<[u8; 32]>(), 0..4)),
        )
            .prop_map(
                |(name, t, (mode, uid, mtime, ctime, inode, size), target, content)| Node {
                    name: RawName(name),
                    node_type: t,
                    mode: mode & 0o7777,
                    uid,
                    gid: uid / 2,
                    user: "u".into(),
                    group: String::new(),
                    mtime,
                    atime: mtime / 3,
                    ctime,
                    inode,
                    device: 3,
                    links: 1,
                    size,
                    link_target: target.map(RawName),
                    rdev: None,
                    content: content.map(|c| c.into_iter().map(Id).collect()),
                    subtree: None,
                    xattrs: if size % 3 == 0 {
                        vec![Xattr {
                            name: RawName(b"user.k".to_vec()),
                            value: vec![0, 255, (size % 251) as u8],
                        }]
                    } else {
                        Vec::new()
                    },
                },
            )
    }

    proptest! {
        #[test]
        fn tree_round_trip(nodes in proptest::collection::vec(node_strategy(), 0..20)) {
            let mut t = Tree { nodes };
            t.sort();
            let back = Tree::from_bytes(&t.to_bytes(), "t").unwrap();
            prop_assert_eq!(&back, &t);
            for n in &t.nodes {
                prop_assert!(back.find(&n.name.0).is_some());
            }
        }
    }

    #[test]
    fn non_utf8_name_is_a_byte_array() {
        let n = RawName(vec![0x66, 0xff, 0x6f]);
        assert_eq!(serde_json::to_string(&n).unwrap(), "[102,255,111]");
        assert_eq!(
            serde_json::to_string(&RawName(b"ok".to_vec())).unwrap(),
            "\"ok\""
        );
    }
}
