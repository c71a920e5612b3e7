//! Encoding of blobs and documents before sealing.
//!
//! A blob is stored as `seal(zstd(plaintext))`, or `seal(plaintext)` when compression does not
//! pay; the pack header records which. Deciding that costs a full compression for most data,
//! so large chunks first compress a small sample at the fastest level: already-compressed
//! media is then stored raw for a fraction of the cost.
//!
//! Documents (config, index, snapshot, lock) are `seal(format ‖ payload)` where format
//! [`DOC_JSON_ZSTD`] means the payload is zstd-compressed JSON (FORMAT.md "Blobs and blob
//! ids", "Documents").

use std::cell::RefCell;

use serde::de::DeserializeOwned;
use serde::Serialize;
use zstd::zstd_safe::zstd_sys;

use super::crypto::{MasterKey, SEAL_OVERHEAD};
use crate::error::{Error, Result};

/// Format byte of a sealed document: zstd-compressed JSON.
pub const DOC_JSON_ZSTD: u8 = 1;
/// Format byte of a sealed document: plain JSON. Readers accept it; hoard writes format 1
/// only (FORMAT.md "Documents").
pub const DOC_JSON: u8 = 0;

/// Chunks at least this long are probed with a sample before full compression.
const SAMPLE_THRESHOLD: usize = 128 * 1024;
const SAMPLE_LEN: usize = 32 * 1024;

/// A blob ready to go into a pack.
pub struct EncodedBlob {
    /// The sealed bytes, as they go into a pack.
    pub sealed: Vec<u8>,
    /// Whether the plaintext was zstd-compressed before sealing.
    pub compressed: bool,
    /// The plaintext length.
    pub raw_length: u32,
}

/// Compresses (when it shrinks the data) and seals one blob.
pub fn encode_blob(key: &MasterKey, plaintext: &[u8], level: i32) -> EncodedBlob {
    let mut sealed = Vec::new();
    let compressed = encode_blob_into(key, plaintext, level, &mut Vec::new(), &mut sealed);
    EncodedBlob {
        sealed,
        compressed,
        raw_length: plaintext.len() as u32,
    }
}

/// [`encode_blob`] into buffers the caller keeps (compressed bytes in `scratch`, the blob in
/// `sealed`), through this thread's zstd context; returns whether it was compressed.
pub fn encode_blob_into(
    key: &MasterKey,
    plaintext: &[u8],
    level: i32,
    scratch: &mut Vec<u8>,
    sealed: &mut Vec<u8>,
) -> bool {
    seal_compressed(key, plaintext, scratch, sealed, |data, out| {
        compress_into(data, level, out)
    })
}

/// [`encode_blob`] for a thread that seals blob after blob (backup's sealing workers): the
/// compressed bytes go into a buffer kept from blob to blob (a megabyte-sized allocation per
/// blob, freed at once, had glibc hand its pages back and fault them in again: 8% of a
/// backup's profile), through a zstd context that never resizes (see `FixedCompressor`).
pub struct BlobEncoder {
    level: i32,
    max_input: usize,
    compressor: Option<FixedCompressor>,
    scratch: Vec<u8>,
}

impl BlobEncoder {
    /// An encoder at `level` for blobs of up to `max_input` bytes; larger ones are encoded
    /// all the same, through this thread's ordinary zstd context.
    pub fn new(level: i32, max_input: usize) -> Self {
        BlobEncoder {
            level,
            max_input,
            compressor: None,
            scratch: Vec::new(),
        }
    }

    /// Compresses (when it shrinks the data) and seals one blob into `sealed`; returns
    /// whether it was compressed.
    pub fn encode_into(&mut self, key: &MasterKey, plaintext: &[u8], sealed: &mut Vec<u8>) -> bool {
        let (level, max_input) = (self.level, self.max_input);
        let fixed = &mut self.compressor;
        seal_compressed(key, plaintext, &mut self.scratch, sealed, |data, out| {
            if fixed.is_none() {
                *fixed = FixedCompressor::new(level, max_input);
            }
            // A context too small for this input, or none at all: the ordinary one.
            fixed.as_mut().is_some_and(|c| c.compress(data, out)) || compress_into(data, level, out)
        })
    }
}

thread_local! {
    /// zstd contexts per thread: creating one costs more than compressing a small chunk
    /// (`ZSTD_createDCtx` alone was 6% of a restore's profile), and their tables are the
    /// largest allocations after the pack buffers. The probe has its own context so that the
    /// two levels do not resize one workspace back and forth.
    static PROBE: RefCell<Option<zstd::bulk::Compressor<'static>>> = const { RefCell::new(None) };
    static COMPRESSOR: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> = const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
    /// Documents' own, at [`DOC_LEVEL`], so that blobs' context keeps its level.
    static DOC_COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> = const { RefCell::new(None) };
}

/// Compresses into `out` with this thread's context for `level`; false if zstd failed.
fn compress_into(data: &[u8], level: i32, out: &mut Vec<u8>) -> bool {
    out.clear();
    out.reserve(zstd::zstd_safe::compress_bound(data.len()));
    COMPRESSOR.with_borrow_mut(|slot| {
        if slot.as_ref().map(|(l, _)| *l) != Some(level) {
            *slot = zstd::bulk::Compressor::new(level).ok().map(|c| (level, c));
        }
        slot.as_mut()
            .is_some_and(|(_, c)| c.compress_to_buffer(data, out).is_ok())
    })
}

/// A zstd context whose workspace is allocated once, as large as its level needs for any
/// input, and never resized. zstd's own contexts shrink theirs after 128 inputs that use a
/// third of it and grow it again for the next large one: a thousand reallocations of about
/// 350 KiB per toolchain backup, each freed block raising glibc's thresholds (see
/// [`crate::buffers`]) until per-thread arenas kept 70 MiB.
struct FixedCompressor {
    level: i32,
    /// Lives in `_workspace`, which it never outgrows and which is dropped after it.
    cctx: std::ptr::NonNull<zstd_sys::ZSTD_CCtx>,
    _workspace: Vec<u64>,
}

impl FixedCompressor {
    /// A context for inputs of up to `max_input` bytes (larger ones fail); `None` if zstd
    /// refuses the level.
    fn new(level: i32, max_input: usize) -> Option<Self> {
        // What one-shot compression at this level needs for the largest input of each of
        // zstd's size classes, as ZSTD_estimateCCtxSize works it out, but with our largest
        // input in place of an unknown size (1.2 MiB at level 3 for 8 MiB chunks; 81 MiB
        // at 19, which zstd's own context needs too for a chunk that large).
        let size = [16 << 10, 128 << 10, 256 << 10, max_input]
            .into_iter()
            .filter(|&s| s <= max_input.max(16 << 10))
            .map(|s| {
                // SAFETY: pure functions of their arguments.
                unsafe {
                    let params = zstd_sys::ZSTD_getCParams(level, s as u64, 0);
                    zstd_sys::ZSTD_estimateCCtxSize_usingCParams(params)
                }
            })
            .max()?;
        // SAFETY: a pure function of the result code.
        if unsafe { zstd_sys::ZSTD_isError(size) } != 0 {
            return None;
        }
        // u64s: zstd wants the workspace 8-byte aligned.
        let mut workspace = vec![0u64; size.div_ceil(8)];
        // SAFETY: the workspace is writable, aligned and `size` bytes long at least; the
        // context zstd builds in it is used only while `workspace` lives (same struct), and
        // a static context never frees or reallocates it.
        let cctx = unsafe {
            zstd_sys::ZSTD_initStaticCCtx(workspace.as_mut_ptr().cast(), workspace.len() * 8)
        };
        Some(FixedCompressor {
            level,
            cctx: std::ptr::NonNull::new(cctx)?,
            _workspace: workspace,
        })
    }

    /// Compresses `data` into `out` (cleared first) in one frame; false if zstd failed.
    fn compress(&mut self, data: &[u8], out: &mut Vec<u8>) -> bool {
        out.clear();
        out.reserve(zstd::zstd_safe::compress_bound(data.len()));
        // SAFETY: `out` has `capacity()` writable bytes, of which zstd writes at most that
        // many and says how many; `data` is read only.
        let n = unsafe {
            zstd_sys::ZSTD_compressCCtx(
                self.cctx.as_ptr(),
                out.as_mut_ptr().cast(),
                out.capacity(),
                data.as_ptr().cast(),
                data.len(),
                self.level,
            )
        };
        // SAFETY: a pure function of the result code.
        if unsafe { zstd_sys::ZSTD_isError(n) } != 0 {
            return false;
        }
        // SAFETY: zstd wrote the first `n` bytes, `n` <= capacity.
        unsafe { out.set_len(n) };
        true
    }
}

/// Whether a sample compresses by at least 3% at the fastest level.
fn probe_compresses(sample: &[u8]) -> bool {
    PROBE.with_borrow_mut(|slot| {
        if slot.is_none() {
            *slot = zstd::bulk::Compressor::new(1).ok();
        }
        slot.as_mut()
            .and_then(|c| c.compress(sample).ok())
            .is_some_and(|probe| probe.len() * 100 <= sample.len() * 97)
    })
}

/// Runs `f` with this thread's decompression context.
fn with_decompressor<T>(
    f: impl FnOnce(&mut zstd::bulk::Decompressor<'static>) -> std::io::Result<T>,
) -> std::io::Result<T> {
    DECOMPRESSOR.with_borrow_mut(|slot| {
        if slot.is_none() {
            *slot = Some(zstd::bulk::Decompressor::new()?);
        }
        match slot.as_mut() {
            Some(d) => f(d),
            None => Err(std::io::Error::other("no zstd context")),
        }
    })
}

/// Decompresses with this thread's context, into at most `capacity` bytes.
fn decompress(data: &[u8], capacity: usize) -> std::io::Result<Vec<u8>> {
    with_decompressor(|d| d.decompress(data, capacity))
}

/// Decompresses into the room `out` has beyond its length, with this thread's context.
fn decompress_to(data: &[u8], out: &mut Vec<u8>) -> std::io::Result<()> {
    with_decompressor(|d| d.decompress_to_buffer(data, out).map(|_| ()))
}

/// Seals `data` into `sealed`, compressed by `compress` (into `scratch`) when that shrinks
/// it; returns whether it was compressed.
fn seal_compressed(
    key: &MasterKey,
    data: &[u8],
    scratch: &mut Vec<u8>,
    sealed: &mut Vec<u8>,
    compress: impl FnOnce(&[u8], &mut Vec<u8>) -> bool,
) -> bool {
    let compressed = compress_if_smaller(data, scratch, compress);
    key.seal_into(if compressed { scratch } else { data }, sealed);
    compressed
}

/// Whether `data` was compressed into `out` by `compress`, smaller than it.
fn compress_if_smaller(
    data: &[u8],
    out: &mut Vec<u8>,
    compress: impl FnOnce(&[u8], &mut Vec<u8>) -> bool,
) -> bool {
    if data.len() < 64 {
        return false;
    }
    if data.len() >= SAMPLE_THRESHOLD {
        let mid = data.len() / 2;
        let sample = &data[mid..mid + SAMPLE_LEN.min(data.len() - mid)];
        if !probe_compresses(sample) {
            return false;
        }
    }
    compress(data, out) && out.len() < data.len()
}

/// Opens a stored blob and undoes compression, checking the expected length.
pub fn decode_blob(
    key: &MasterKey,
    sealed: &[u8],
    compressed: bool,
    raw_length: u32,
    what: &str,
) -> Result<Vec<u8>> {
    let opened = key.open(sealed, what)?;
    let plain = if compressed {
        decompress(&opened, raw_length as usize).map_err(|e| Error::corrupt_by(what, e))?
    } else {
        opened
    };
    check_raw_length(&plain, raw_length, what)?;
    Ok(plain)
}

/// [`decode_blob`] without allocating: `sealed` is decrypted where it lies, and a compressed
/// blob is decompressed into `room`, which must have `raw_length` bytes. Returns the
/// plaintext, in one or the other. Restore decodes every blob it writes: a fresh plaintext
/// buffer per blob was faulted in page by page and handed back to the kernel when freed, a
/// tenth of a restore's cycles.
pub fn decode_blob_in<'a>(
    key: &MasterKey,
    sealed: &'a mut [u8],
    compressed: bool,
    raw_length: u32,
    what: &str,
    room: &'a mut [u8],
) -> Result<&'a [u8]> {
    let opened = key.open_in_place(sealed, what)?;
    let plain: &[u8] = if compressed {
        let room = room
            .get_mut(..raw_length as usize)
            .ok_or_else(|| Error::invalid("blob buffer", "shorter than the blob"))?;
        // More than the index's length does not fit, and is refused by zstd.
        let n = with_decompressor(|d| d.decompress_to_buffer(opened, &mut *room))
            .map_err(|e| Error::corrupt_by(what, e))?;
        &room[..n]
    } else {
        opened
    };
    check_raw_length(plain, raw_length, what)?;
    Ok(plain)
}

fn check_raw_length(plain: &[u8], raw_length: u32, what: &str) -> Result<()> {
    if plain.len() != raw_length as usize {
        return Err(Error::corrupt(
            what,
            format!("length {} where the index says {}", plain.len(), raw_length),
        ));
    }
    Ok(())
}

/// Serialises, compresses and seals a document. An index document is MiBs at each step,
/// freed once stored: each buffer is sized before it is filled (the JSON is measured first),
/// so that a large one is mapped on its own (see [`crate::buffers::transient_capacity`]),
/// and the zstd context is this thread's (a streaming one per document allocated and freed
/// 3.5 MiB, a lock file's too).
pub fn seal_doc<T: Serialize>(key: &MasterKey, doc: &T) -> Result<Vec<u8>> {
    use crate::buffers::transient_capacity;
    let invalid = |e| Error::invalid_by("document", e);
    let mut measure = ByteCount(0);
    serde_json::to_writer(&mut measure, doc).map_err(invalid)?;
    let mut json = Vec::with_capacity(transient_capacity(measure.0));
    serde_json::to_writer(&mut json, doc).map_err(invalid)?;
    let bound = 1 + zstd::zstd_safe::compress_bound(json.len());
    let mut plain = Vec::with_capacity(transient_capacity(bound));
    plain.push(DOC_JSON_ZSTD);
    let mut out = std::io::Cursor::new(plain);
    out.set_position(1);
    DOC_COMPRESSOR
        .with_borrow_mut(|slot| {
            if slot.is_none() {
                *slot = Some(zstd::bulk::Compressor::new(DOC_LEVEL)?);
            }
            match slot.as_mut() {
                Some(c) => c.compress_to_buffer(&json, &mut out),
                None => Err(std::io::Error::other("no zstd context")),
            }
        })
        .map_err(|e| Error::invalid_by("document", e))?;
    drop(json);
    let plain = out.into_inner();
    let mut sealed = Vec::with_capacity(transient_capacity(plain.len() + SEAL_OVERHEAD));
    key.seal_into(&plain, &mut sealed);
    Ok(sealed)
}

/// The zstd level of documents.
const DOC_LEVEL: i32 = 3;

/// Counts the bytes written to it.
struct ByteCount(usize);

impl std::io::Write for ByteCount {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Opens a sealed document; `what` names the file in errors.
pub fn open_doc<T: DeserializeOwned>(key: &MasterKey, sealed: &[u8], what: &str) -> Result<T> {
    open_doc_in_place(key, &mut sealed.to_vec(), what)
}

/// [`open_doc`] on a buffer the caller gives up: decrypted where it lies instead of copied.
pub fn open_doc_in_place<T: DeserializeOwned>(
    key: &MasterKey,
    sealed: &mut [u8],
    what: &str,
) -> Result<T> {
    let mut json = Vec::new();
    open_doc_json(key, sealed, what, &mut json)?;
    serde_json::from_slice(&json).map_err(|e| Error::corrupt_by(what, e))
}

/// The JSON of a sealed document, decrypted where it lies, into `json`; for a reader that
/// parses it its own way (the index loader).
pub fn open_doc_json(
    key: &MasterKey,
    sealed: &mut [u8],
    what: &str,
    json: &mut Vec<u8>,
) -> Result<()> {
    decode_doc_payload_into(key.open_in_place(sealed, what)?, what, json)
}

/// The largest document a reader decompresses: far above any index file hoard writes (tens
/// of MiB for millions of blobs), and a bound on what a damaged or hostile one can cost.
pub const MAX_DOCUMENT_LEN: u64 = 1 << 30;

/// The JSON inside an opened document, for `cat`.
pub fn decode_doc_payload(plain: &[u8], what: &str) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    decode_doc_payload_into(plain, what, &mut out)?;
    Ok(out)
}

/// [`decode_doc_payload`] into `out` (cleared first), for a reader of many documents that
/// keeps one buffer: a new one of several MiB per index file leaves the allocator's heap
/// holding tens of MiB after a large repository's index has loaded.
pub fn decode_doc_payload_into(plain: &[u8], what: &str, out: &mut Vec<u8>) -> Result<()> {
    out.clear();
    match plain.split_first() {
        Some((&DOC_JSON_ZSTD, rest)) => {
            // In one pass into a buffer with room for all of it: a streaming decoder would
            // allocate its window (MiBs) for every document. Documents do not record their
            // length, so the room is a guess that doubles until the document fits.
            let most = MAX_DOCUMENT_LEN as usize + 1;
            // Mapped on its own when large (see `transient_capacity`): an index file's JSON
            // is tens of MiB, and is freed once parsed.
            let mut room = crate::buffers::transient_capacity(
                out.capacity()
                    .max(rest.len().saturating_mul(8))
                    .clamp(1 << 16, most),
            );
            loop {
                out.clear();
                out.reserve_exact(room);
                match decompress_to(rest, out) {
                    Ok(()) if out.len() < most => return Ok(()),
                    Ok(()) => break,
                    Err(_) if room < most => room = room.saturating_mul(2).min(most),
                    // Too small even then, or damaged: which, zstd does not say plainly.
                    Err(e) => return Err(Error::corrupt_by(what, e)),
                }
            }
            Err(Error::corrupt(
                what,
                format!("decompresses to more than {MAX_DOCUMENT_LEN} bytes"),
            ))
        }
        Some((&DOC_JSON, rest)) => {
            out.extend_from_slice(rest);
            Ok(())
        }
        Some((b, _)) => Err(Error::corrupt(what, format!("unknown document format {b}"))),
        None => Err(Error::corrupt(what, "empty document")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The fixed context must be large enough for every input up to its size at any level a
    /// repository may use: a shortfall would not show in the output (the ordinary context
    /// takes over) but would bring back the reallocations it exists to avoid.
    #[test]
    fn a_fixed_context_holds_every_input_size_at_every_level() {
        let max = 1 << 20;
        let text: Vec<u8> = (0..max).map(|i| b"abcdefgh"[(i * i / 7) % 8]).collect();
        for level in [-5, 1, 3, 6, 12, 19, 22] {
            let mut c = FixedCompressor::new(level, max).unwrap();
            for len in [
                100,
                16 << 10,
                (16 << 10) + 1,
                128 << 10,
                (128 << 10) + 1,
                256 << 10,
                (256 << 10) + 1,
                max,
            ] {
                let mut out = Vec::new();
                assert!(
                    c.compress(&text[..len], &mut out),
                    "level {level}, {len} bytes"
                );
                assert_eq!(zstd::bulk::decompress(&out, len).unwrap(), &text[..len]);
            }
            let mut out = Vec::new();
            let larger: Vec<u8> = text.iter().chain(&text).copied().collect();
            if !c.compress(&larger, &mut out) {
                // What the encoder does then: the ordinary context.
                assert!(compress_into(&larger, level, &mut out));
            }
        }
    }

    #[test]
    fn a_document_far_larger_than_its_compressed_size_opens() {
        // Compressed a thousand times smaller: the first guess at its size is far too small.
        let doc = vec!["same".repeat(64); 4000];
        let key = MasterKey::random();
        let mut sealed = seal_doc(&key, &doc).unwrap();
        let mut json = Vec::new();
        open_doc_json(&key, &mut sealed, "doc", &mut json).unwrap();
        assert_eq!(json, serde_json::to_vec(&doc).unwrap());
        // The buffer is reused, whatever it held.
        let small = seal_doc(&key, &["x"]).unwrap();
        open_doc_json(&key, &mut small.clone(), "doc", &mut json).unwrap();
        assert_eq!(json, br#"["x"]"#);
    }

    #[test]
    fn compressible_data_is_compressed_and_random_is_not() {
        let k = MasterKey::random();
        let text = b"hello world ".repeat(20_000);
        let b = encode_blob(&k, &text, 3);
        assert!(b.compressed && b.sealed.len() < text.len() / 10);
        assert_eq!(
            decode_blob(&k, &b.sealed, true, b.raw_length, "t").unwrap(),
            text
        );

        let mut random = vec![0u8; 300_000];
        crate::random::fill_random(&mut random);
        let b = encode_blob(&k, &random, 3);
        assert!(!b.compressed);
        assert_eq!(
            decode_blob(&k, &b.sealed, false, b.raw_length, "t").unwrap(),
            random
        );
        assert!(decode_blob(&k, &b.sealed, false, b.raw_length + 1, "t").is_err());
    }

    proptest! {
        #[test]
        fn blob_round_trip(data in proptest::collection::vec(0u8..4, 0..20_000)) {
            let k = MasterKey::random();
            let b = encode_blob(&k, &data, 3);
            prop_assert_eq!(decode_blob(&k, &b.sealed, b.compressed, b.raw_length, "t").unwrap(), data);
        }

        /// Buffers kept from blob to blob hold nothing of the blob before: large then
        /// small, compressible then not.
        #[test]
        fn reused_buffers_round_trip(blobs in proptest::collection::vec((0usize..200_000, any::<bool>()), 1..6)) {
            let k = MasterKey::random();
            let (mut sealed, mut room) = (Vec::new(), Vec::new());
            // Smaller than some blobs: those go through the ordinary context.
            let mut encoder = BlobEncoder::new(3, 100_000);
            for (len, text) in blobs {
                let mut data = vec![0u8; len];
                if text {
                    data.iter_mut().enumerate().for_each(|(i, b)| *b = (i % 7) as u8);
                } else {
                    crate::random::fill_random(&mut data);
                }
                let compressed = encoder.encode_into(&k, &data, &mut sealed);
                prop_assert_eq!(compressed, text && len >= 64);
                let back = decode_blob(&k, &sealed, compressed, len as u32, "t").unwrap();
                prop_assert_eq!(&back, &data);
                // Decoded in place, into room kept from blob to blob.
                if room.len() < len {
                    room.resize(len, 0);
                }
                let mut copy = sealed.clone();
                let back = decode_blob_in(&k, &mut copy, compressed, len as u32, "t", &mut room).unwrap();
                prop_assert_eq!(back, &data[..]);
                // A length the index got wrong is refused, either way, even with room left
                // from a larger blob before.
                for wrong in [len.saturating_sub(1), len + 1] {
                    let mut copy = sealed.clone();
                    room.resize(room.len().max(wrong), 0);
                    let decoded = decode_blob_in(&k, &mut copy, compressed, wrong as u32, "t", &mut room);
                    prop_assert!(decoded.is_err() || wrong == len);
                }
            }
        }

        #[test]
        fn doc_round_trip(v in proptest::collection::btree_map(".*", any::<i64>(), 0..20)) {
            let k = MasterKey::random();
            let sealed = seal_doc(&k, &v).unwrap();
            let back: std::collections::BTreeMap<String, i64> = open_doc(&k, &sealed, "t").unwrap();
            prop_assert_eq!(back, v);
        }
    }
}
