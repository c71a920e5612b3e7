//! Reading blobs: ranged reads of one blob, checked against its id, and trees through a small
//! cache of whole tree packs (FORMAT.md "Blobs and blob ids", "Trees").

use std::sync::Arc;

use super::cache::Cached;
use super::index::BlobLocation;
use super::storage::FileKind;
use super::Repository;
use crate::error::{Error, Result};
use crate::format::blob::{decode_blob, decode_blob_in};
use crate::format::crypto::SEAL_OVERHEAD;
use crate::format::pack::{read_pack, BlobType, PackedBlob};
use crate::format::tree::Tree;
use crate::id::Id;

/// Tree packs kept in memory (each at most a pack size).
const TREE_PACK_CACHE: usize = 4;

impl Repository {
    /// A pack's size and the blobs its (authenticated) header lists; the whole file is read
    /// and checked against its name.
    pub async fn pack_blobs(&self, id: &Id) -> Result<(u64, Vec<PackedBlob>)> {
        let bytes = self.read_file(FileKind::Pack, id).await?;
        let blobs = read_pack(self.key(), &bytes, &FileKind::Pack.path(id))?;
        Ok((bytes.len() as u64, blobs))
    }

    /// Reads, opens and verifies one blob.
    pub async fn read_blob(&self, id: &Id) -> Result<Vec<u8>> {
        let loc = self.blob_location(id).ok_or(Error::BlobNotInIndex(*id))?;
        self.check_lengths(&loc)?;
        let start = u64::from(loc.blob.offset);
        let sealed = self
            .read_range(
                FileKind::Pack,
                &loc.pack,
                start..start + u64::from(loc.blob.length),
            )
            .await?;
        self.decode_located_blob(&loc, &sealed)
    }

    /// Opens a blob's sealed bytes and checks them against its id.
    /// Refuses lengths no writer of this repository produces, before anything is read or
    /// allocated for them: data blobs are at most one chunk, trees at most
    /// [`MAX_DOCUMENT_LEN`](crate::format::blob::MAX_DOCUMENT_LEN), and a sealed blob is never
    /// longer than its plaintext plus nonce and tag (it is stored raw when compression does
    /// not shrink it).
    pub(crate) fn check_lengths(&self, loc: &BlobLocation) -> Result<()> {
        let raw = u64::from(loc.blob.raw_length);
        let max_raw = match loc.blob.blob_type {
            BlobType::Data => u64::from(self.config().chunker.max_size),
            BlobType::Tree => crate::format::blob::MAX_DOCUMENT_LEN,
        };
        let sealed = u64::from(loc.blob.length);
        if raw > max_raw || sealed > raw + SEAL_OVERHEAD as u64 || sealed < SEAL_OVERHEAD as u64 {
            return Err(Error::corrupt(
                format!("blob {} in pack {}", loc.blob.id.short(), loc.pack.short()),
                format!("impossible lengths: {sealed} sealed, {raw} plain (at most {max_raw})"),
            ));
        }
        Ok(())
    }

    pub(crate) fn decode_located_blob(&self, loc: &BlobLocation, sealed: &[u8]) -> Result<Vec<u8>> {
        self.check_lengths(loc)?;
        let what = blob_what(loc);
        let plain = decode_blob(
            self.key(),
            sealed,
            loc.blob.compressed,
            loc.blob.raw_length,
            &what,
        )?;
        self.check_id(loc, &plain, what)?;
        Ok(plain)
    }

    /// [`Repository::decode_located_blob`] in `buf`, grown when the blob needs more: its
    /// sealed bytes are copied to the front by `fill` and decrypted there, a compressed blob
    /// decompressed behind them (see [`decode_blob_in`]). Lengths are checked before `buf`
    /// grows for them.
    pub(crate) fn decode_located_blob_in<'a>(
        &self,
        loc: &BlobLocation,
        fill: impl FnOnce(&mut [u8]),
        buf: &'a mut Vec<u8>,
    ) -> Result<&'a [u8]> {
        self.check_lengths(loc)?;
        let sealed_len = loc.blob.length as usize;
        let room_len = if loc.blob.compressed {
            loc.blob.raw_length as usize
        } else {
            0
        };
        if buf.len() < sealed_len + room_len {
            buf.resize(sealed_len + room_len, 0);
        }
        let (sealed, room) = buf.split_at_mut(sealed_len);
        fill(sealed);
        let what = blob_what(loc);
        let plain = decode_blob_in(
            self.key(),
            sealed,
            loc.blob.compressed,
            loc.blob.raw_length,
            &what,
            room,
        )?;
        self.check_id(loc, plain, what)?;
        Ok(plain)
    }

    fn check_id(&self, loc: &BlobLocation, plain: &[u8], what: String) -> Result<()> {
        if self.key().blob_id(plain) != loc.blob.id {
            return Err(Error::corrupt(what, "content does not match its id"));
        }
        Ok(())
    }

    /// Loads and decodes a tree blob (through a small cache of tree packs).
    pub async fn load_tree(&self, id: &Id) -> Result<Tree> {
        match self.blob_location(id) {
            Some(loc) if loc.blob.blob_type == BlobType::Tree => {}
            Some(_) => {
                return Err(Error::corrupt(
                    format!("tree {}", id.short()),
                    "indexed as a data blob",
                ))
            }
            None => return Err(Error::BlobNotInIndex(*id)),
        }
        let bytes = self.read_tree_blob(id).await?;
        Tree::from_bytes(&bytes, &format!("tree {}", id.short()))
    }

    /// A whole tree pack, from the metadata cache when it has it. Blobs are verified one by
    /// one when decoded, so a pack read from storage is cached as it is.
    async fn read_tree_pack(&self, pack: &Id) -> Result<bytes::Bytes> {
        if let Some(bytes) = self.cache().and_then(|c| c.get(Cached::TreePack, pack)) {
            return Ok(bytes.into());
        }
        let path = FileKind::Pack.path(pack);
        let bytes = self
            .operator()
            .read(&path)
            .await
            .map_err(|e| Error::storage("read", path.as_str(), e))?
            .to_bytes();
        if let Some(c) = self.cache() {
            if Id::of_file(&bytes) == *pack {
                c.put(Cached::TreePack, pack, &bytes);
            }
        }
        Ok(bytes)
    }

    /// Reads a tree blob through the tree-pack cache.
    async fn read_tree_blob(&self, id: &Id) -> Result<Vec<u8>> {
        let loc = self.blob_location(id).ok_or(Error::BlobNotInIndex(*id))?;
        let cached = {
            let cache = self
                .inner
                .tree_packs
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            cache
                .iter()
                .find(|(p, _)| *p == loc.pack)
                .map(|(_, b)| b.clone())
        };
        let pack = match cached {
            Some(b) => b,
            None => {
                let b = Arc::new(self.read_tree_pack(&loc.pack).await?);
                let mut cache = self
                    .inner
                    .tree_packs
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                if cache.len() >= TREE_PACK_CACHE {
                    cache.remove(0);
                }
                cache.push((loc.pack, b.clone()));
                b
            }
        };
        let range = loc.blob.offset as usize..loc.blob.offset as usize + loc.blob.length as usize;
        let sealed = pack.get(range).ok_or_else(|| {
            Error::corrupt(
                FileKind::Pack.path(&loc.pack),
                "shorter than the index says",
            )
        })?;
        self.decode_located_blob(&loc, sealed)
    }
}

fn blob_what(loc: &BlobLocation) -> String {
    format!("blob {} in pack {}", loc.blob.id.short(), loc.pack.short())
}

/// Copies `range` of `bytes`, in whatever pieces they are held, into `out` (as long as the
/// range): the `fill` of [`Repository::decode_located_blob_in`] for a blob read as part of a
/// larger range (restore, check).
pub(crate) fn copy_range(bytes: &opendal::Buffer, range: std::ops::Range<usize>, out: &mut [u8]) {
    let mut at = 0;
    for piece in bytes.slice(range) {
        out[at..at + piece.len()].copy_from_slice(&piece);
        at += piece.len();
    }
}
