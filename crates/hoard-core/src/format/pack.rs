//! Packs: the files under `data/` that hold blobs (FORMAT.md "Packs").
//!
//! ```text
//! pack   = blob* ‖ header ‖ header_len (u32 LE)
//! blob   = sealed blob bytes (see `blob`)
//! header = seal(entry*)
//! entry  = type (u8) ‖ flags (u8, bit 0 = compressed) ‖ length (u32 LE)
//!          ‖ raw_length (u32 LE) ‖ id (32)
//! ```
//! Blob offsets follow from the order of the entries. The pack's name is the plain BLAKE3 of
//! all its bytes. Data and tree blobs go into separate packs so that tree packs stay small and
//! cacheable. The header lets `check` and a lost index be rebuilt from the packs alone.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::crypto::{MasterKey, SEAL_OVERHEAD};
use crate::error::{Error, Result};
use crate::id::Id;

/// Length of one header entry.
pub const ENTRY_LEN: usize = 1 + 1 + 4 + 4 + 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
/// What a blob holds.
#[serde(rename_all = "lowercase")]
pub enum BlobType {
    /// A chunk of file content.
    Data,
    /// A directory listing.
    Tree,
}

impl BlobType {
    fn code(self) -> u8 {
        match self {
            BlobType::Data => 0,
            BlobType::Tree => 1,
        }
    }
}

/// One blob in a pack, as the header and the index describe it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackedBlob {
    /// The blob's id (keyed BLAKE3 of its plaintext).
    pub id: Id,
    /// What it holds.
    #[serde(rename = "type")]
    pub blob_type: BlobType,
    /// Where its sealed bytes start in the pack.
    pub offset: u32,
    /// Sealed length in the pack.
    pub length: u32,
    /// Plaintext length.
    pub raw_length: u32,
    /// Whether it was compressed before sealing.
    pub compressed: bool,
}

/// Builds one pack, in memory or, for a local repository, in a staging file that grows as
/// blobs are added: a pack being built then costs [`SPILL_AT`] bytes of memory, not its size.
pub struct PackWriter {
    /// Bytes not yet in the staging file (without one: all of them).
    buf: Vec<u8>,
    /// The staging file, until the pack is finished.
    spill: Option<Spill>,
    /// Bytes already in the staging file.
    spilled: usize,
    blobs: Vec<PackedBlob>,
}

/// Bytes gathered before they go to the staging file: few enough write calls for packs of
/// small blobs, little memory.
pub const SPILL_AT: usize = 1 << 20;

struct Spill {
    file: std::fs::File,
    path: std::path::PathBuf,
    /// The pack's name, hashed as its bytes are written.
    hasher: blake3::Hasher,
}

/// Where a finished pack's bytes are.
pub enum PackBytes {
    /// In memory, to be uploaded.
    Memory(Vec<u8>),
    /// In a staging file, to be synced and renamed into place.
    Staged(std::path::PathBuf),
}

/// A closed pack ready to upload.
pub struct FinishedPack {
    /// The pack's id: BLAKE3 of its bytes.
    pub id: Id,
    /// The whole file.
    pub bytes: PackBytes,
    /// Its length.
    pub len: u64,
    /// What it holds.
    pub blobs: Vec<PackedBlob>,
}

impl Default for PackWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl Spill {
    fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        self.file.write_all(bytes)?;
        self.hasher.update(bytes);
        Ok(())
    }
}

impl Drop for Spill {
    /// A pack that is dropped unfinished (a failed or cancelled run) leaves no staging file.
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl PackWriter {
    /// An empty pack.
    pub fn new() -> Self {
        PackWriter {
            buf: Vec::new(),
            spill: None,
            spilled: 0,
            blobs: Vec::new(),
        }
    }

    /// A writer whose buffer never reallocates for packs up to `bytes`: growth by doubling
    /// would leave a 16 MiB pack in a 32 MiB allocation, and several packs are alive at once.
    pub fn with_capacity(bytes: usize) -> Self {
        PackWriter {
            buf: Vec::with_capacity(bytes),
            ..Self::new()
        }
    }

    /// A pack written to a new file in `dir` as it grows (see [`SPILL_AT`]).
    pub fn staged(dir: &std::path::Path) -> std::io::Result<Self> {
        use std::os::unix::fs::OpenOptionsExt;
        let mut name = [0u8; 12];
        crate::random::fill_random(&mut name);
        let path = dir.join(format!("pack-{}", hex::encode(name)));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        Ok(PackWriter {
            buf: Vec::with_capacity(SPILL_AT + 64 * 1024),
            spill: Some(Spill {
                file,
                path,
                hasher: blake3::Hasher::new(),
            }),
            ..Self::new()
        })
    }

    /// Appends a sealed blob. Fails only when a staging file cannot be written.
    pub fn add(
        &mut self,
        id: Id,
        blob_type: BlobType,
        sealed: &[u8],
        compressed: bool,
        raw_length: u32,
    ) -> std::io::Result<()> {
        self.blobs.push(PackedBlob {
            id,
            blob_type,
            offset: self.len() as u32,
            length: sealed.len() as u32,
            raw_length,
            compressed,
        });
        if self.spill.is_some() && self.buf.len() + sealed.len() >= SPILL_AT {
            // A large blob goes to the file as it is, not through the buffer.
            self.flush()?;
            if let Some(s) = &mut self.spill {
                s.append(sealed)?;
                self.spilled += sealed.len();
            }
            return Ok(());
        }
        self.buf.extend_from_slice(sealed);
        if self.buf.len() >= SPILL_AT {
            self.flush()?;
        }
        Ok(())
    }

    /// Moves the buffered bytes to the staging file, if there is one.
    fn flush(&mut self) -> std::io::Result<()> {
        if let Some(s) = &mut self.spill {
            s.append(&self.buf)?;
            self.spilled += self.buf.len();
            self.buf.clear();
        }
        Ok(())
    }

    /// Bytes of blobs so far (without the header).
    pub fn len(&self) -> usize {
        self.spilled + self.buf.len()
    }

    /// Whether no blob was added.
    pub fn is_empty(&self) -> bool {
        self.blobs.is_empty()
    }

    /// Seals the header, appends it and its length, and names the pack. A staging file is
    /// written whole but not synced: whoever puts it in place syncs it first (not the thread
    /// that fills packs, which would wait for the disk instead of compressing).
    pub fn finish(mut self, key: &MasterKey) -> std::io::Result<FinishedPack> {
        let mut header = Vec::with_capacity(self.blobs.len() * ENTRY_LEN);
        for b in &self.blobs {
            header.push(b.blob_type.code());
            header.push(b.compressed as u8);
            header.extend_from_slice(&b.length.to_le_bytes());
            header.extend_from_slice(&b.raw_length.to_le_bytes());
            header.extend_from_slice(&b.id.0);
        }
        let sealed = key.seal(&header);
        let trailer = (sealed.len() as u32).to_le_bytes();
        let blobs = std::mem::take(&mut self.blobs);
        let Some(mut s) = self.spill.take() else {
            self.buf.extend_from_slice(&sealed);
            self.buf.extend_from_slice(&trailer);
            let bytes = std::mem::take(&mut self.buf);
            return Ok(FinishedPack {
                id: Id::of_file(&bytes),
                len: bytes.len() as u64,
                bytes: PackBytes::Memory(bytes),
                blobs,
            });
        };
        // On failure the staging file goes with `s`. The header goes to the file as it is:
        // appended to the buffer, it grew a block of MiBs per pack, freed at once.
        s.append(&self.buf)?;
        s.append(&sealed)?;
        s.append(&trailer)?;
        let len = (self.spilled + self.buf.len() + sealed.len() + trailer.len()) as u64;
        Ok(FinishedPack {
            id: Id(*s.hasher.finalize().as_bytes()),
            bytes: PackBytes::Staged(std::mem::take(&mut s.path)),
            len,
            blobs,
        })
    }
}

/// The size of a pack file holding these blobs (FORMAT.md "Packs": blobs, sealed header,
/// four-byte header length).
pub fn pack_file_len(blobs: &[PackedBlob]) -> u64 {
    pack_file_len_of(blobs.len(), blobs.iter().map(|b| u64::from(b.length)).sum())
}

/// [`pack_file_len`] from the number of blobs and their sealed lengths' sum, for a reader that
/// does not keep the blobs.
pub fn pack_file_len_of(blobs: usize, sealed: u64) -> u64 {
    sealed + (SEAL_OVERHEAD + blobs * ENTRY_LEN + 4) as u64
}

/// Where the sealed header sits, given the pack's total size and its last four bytes.
pub fn header_range(file_len: u64, trailer: [u8; 4]) -> Result<std::ops::Range<u64>> {
    let header_len = u32::from_le_bytes(trailer) as u64;
    if header_len < SEAL_OVERHEAD as u64 || header_len + 4 > file_len {
        return Err(Error::corrupt(
            "pack",
            format!("header length {header_len} does not fit a pack of {file_len} bytes"),
        ));
    }
    Ok(file_len - 4 - header_len..file_len - 4)
}

/// Opens a sealed header and lists its blobs with their offsets.
pub fn parse_header(
    key: &MasterKey,
    sealed_header: &[u8],
    header_offset: u64,
    what: &str,
) -> Result<Vec<PackedBlob>> {
    let plain = key.open(sealed_header, what)?;
    parse_entries(&plain, header_offset, what)
}

/// Decodes the opened header entries of a pack whose header starts at `header_offset`.
pub fn parse_entries(plain: &[u8], header_offset: u64, what: &str) -> Result<Vec<PackedBlob>> {
    if plain.len() % ENTRY_LEN != 0 {
        return Err(Error::corrupt(
            what,
            "header length is not a whole number of entries",
        ));
    }
    let mut offset: u64 = 0;
    let mut blobs = Vec::with_capacity(plain.len() / ENTRY_LEN);
    for e in plain.chunks_exact(ENTRY_LEN) {
        let blob_type = match e[0] {
            0 => BlobType::Data,
            1 => BlobType::Tree,
            t => return Err(Error::corrupt(what, format!("unknown blob type {t}"))),
        };
        let length = u32::from_le_bytes([e[2], e[3], e[4], e[5]]);
        let raw_length = u32::from_le_bytes([e[6], e[7], e[8], e[9]]);
        let mut id = [0u8; 32];
        id.copy_from_slice(&e[10..42]);
        blobs.push(PackedBlob {
            id: Id(id),
            blob_type,
            offset: offset as u32,
            length,
            raw_length,
            compressed: e[1] & 1 == 1,
        });
        offset += length as u64;
    }
    if offset != header_offset {
        return Err(Error::corrupt(
            what,
            format!("blobs end at {offset} but the header starts at {header_offset}"),
        ));
    }
    Ok(blobs)
}

/// Parses a whole pack held in memory.
pub fn read_pack(key: &MasterKey, bytes: &[u8], what: &str) -> Result<Vec<PackedBlob>> {
    read_pack_from(key, bytes.len(), |r| Cow::Borrowed(&bytes[r]), what)
}

/// [`read_pack`] for a pack of `len` bytes held some other way (in the pieces a read
/// returned): `bytes_at` gives the bytes of a range within it, which only the trailer and the
/// header are asked for.
pub fn read_pack_from<'a>(
    key: &MasterKey,
    len: usize,
    bytes_at: impl Fn(std::ops::Range<usize>) -> Cow<'a, [u8]>,
    what: &str,
) -> Result<Vec<PackedBlob>> {
    let Some(trailer_at) = len.checked_sub(4) else {
        return Err(Error::corrupt(what, "shorter than its trailer"));
    };
    let trailer = bytes_at(trailer_at..len);
    let range = header_range(len as u64, [trailer[0], trailer[1], trailer[2], trailer[3]])?;
    parse_header(
        key,
        &bytes_at(range.start as usize..range.end as usize),
        range.start,
        what,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::blob::{decode_blob, encode_blob};
    use proptest::prelude::*;

    #[test]
    fn a_staged_pack_is_named_by_its_file_and_an_unfinished_one_leaves_nothing() {
        let k = MasterKey::random();
        let dir = tempfile::tempdir().unwrap();
        let mut w = PackWriter::staged(dir.path()).unwrap();
        let mut datas = Vec::new();
        // Enough to spill several times, in blobs that straddle the spill size, and some
        // (incompressible) larger than it, which go past the buffer.
        for i in 0..40u32 {
            let mut data: Vec<u8> = (0..100_000u32).map(|j| (i * 7 + j % 251) as u8).collect();
            if i % 10 == 9 {
                data.resize(SPILL_AT + 1000, 0);
                crate::random::fill_random(&mut data);
            }
            let e = encode_blob(&k, &data, 3);
            w.add(
                k.blob_id(&data),
                BlobType::Data,
                &e.sealed,
                e.compressed,
                e.raw_length,
            )
            .unwrap();
            datas.push(data);
        }
        assert!(w.buf.len() < SPILL_AT, "memory stays below the spill size");
        let p = w.finish(&k).unwrap();
        let PackBytes::Staged(path) = &p.bytes else {
            panic!("staged")
        };
        let bytes = std::fs::read(path).unwrap();
        assert_eq!(p.id, Id::of_file(&bytes));
        assert_eq!(p.len, bytes.len() as u64);
        let parsed = read_pack(&k, &bytes, "p").unwrap();
        assert_eq!(parsed, p.blobs);
        for (b, data) in parsed.iter().zip(&datas) {
            let s = &bytes[b.offset as usize..(b.offset + b.length) as usize];
            assert_eq!(
                &decode_blob(&k, s, b.compressed, b.raw_length, "b").unwrap(),
                data
            );
        }

        let mut w = PackWriter::staged(dir.path()).unwrap();
        let e = encode_blob(&k, &datas[0], 3);
        w.add(
            k.blob_id(&datas[0]),
            BlobType::Data,
            &e.sealed,
            e.compressed,
            e.raw_length,
        )
        .unwrap();
        drop(w);
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "only the finished pack is left");
    }

    proptest! {
        #[test]
        fn pack_round_trip(blobs in proptest::collection::vec((proptest::collection::vec(any::<u8>(), 0..3000), any::<bool>()), 1..20)) {
            let k = MasterKey::random();
            let mut w = PackWriter::new();
            for (data, tree) in &blobs {
                let e = encode_blob(&k, data, 3);
                let t = if *tree { BlobType::Tree } else { BlobType::Data };
                w.add(k.blob_id(data), t, &e.sealed, e.compressed, e.raw_length).unwrap();
            }
            let p = w.finish(&k).unwrap();
            let PackBytes::Memory(bytes) = p.bytes else { panic!("in memory") };
            prop_assert_eq!(p.id, Id::of_file(&bytes));
            prop_assert_eq!(p.len, bytes.len() as u64);
            let parsed = read_pack(&k, &bytes, "p").unwrap();
            prop_assert_eq!(&parsed, &p.blobs);
            for (b, (data, _)) in parsed.iter().zip(&blobs) {
                let s = &bytes[b.offset as usize..(b.offset + b.length) as usize];
                prop_assert_eq!(&decode_blob(&k, s, b.compressed, b.raw_length, "b").unwrap(), data);
                prop_assert_eq!(b.id, k.blob_id(data));
            }
        }
    }

    #[test]
    fn tampered_or_truncated_pack_is_rejected() {
        let k = MasterKey::random();
        let mut w = PackWriter::new();
        let e = encode_blob(&k, b"abc", 3);
        w.add(
            k.blob_id(b"abc"),
            BlobType::Data,
            &e.sealed,
            e.compressed,
            e.raw_length,
        )
        .unwrap();
        let PackBytes::Memory(bytes) = w.finish(&k).unwrap().bytes else {
            panic!("in memory")
        };
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x40;
            let header_ok = read_pack(&k, &b, "p").is_ok();
            let blob_ok = decode_blob(&k, &b[..e.sealed.len()], false, 3, "b").is_ok();
            assert!(!(header_ok && blob_ok), "flip at {i} went unnoticed");
        }
        assert!(read_pack(&k, &bytes[1..], "p").is_err());
        assert!(read_pack(&k, &[1, 2], "p").is_err());
    }
}
