//! Index files (`index/<id>`, FORMAT.md "Index"): sealed documents listing packs and their
//! blobs. `supersedes` names index files a file replaces (prune writes the replacement before
//! deleting anything), so readers skip those.

use std::fmt;

use serde::de::{DeserializeSeed, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use super::pack::PackedBlob;
use crate::id::Id;

/// One index file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IndexFile {
    /// Index files this one replaces; readers ignore those.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub supersedes: Vec<Id>,
    /// The packs it lists.
    pub packs: Vec<IndexPack>,
}

/// One pack and its blobs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IndexPack {
    /// The pack's id (its name under `data/`).
    pub id: Id,
    /// Its blobs, in pack order.
    pub blobs: Vec<PackedBlob>,
}

impl IndexFile {
    /// How many blobs all its packs hold.
    pub fn blob_count(&self) -> usize {
        self.packs.iter().map(|p| p.blobs.len()).sum()
    }
}

/// Takes an index file's entries as [`read_index_file`] parses them, so that loading a large
/// repository never holds a file's whole [`IndexFile`] (48 bytes a blob, in a few thousand
/// small allocations) beside the table it builds. A sink's error stops the parse and is the
/// one [`read_index_file`] returns: the JSON error the stop causes would name the parser, not
/// the reason.
pub(crate) trait IndexSink {
    /// A blob of the pack being read; the pack's id may come after its blobs.
    fn blob(&mut self, blob: &PackedBlob) -> crate::error::Result<()>;
    /// The end of a pack's entry: the `count` blobs given since the previous call are its.
    fn pack(&mut self, id: Id, count: usize) -> crate::error::Result<()>;
}

/// Parses an index file's JSON into `sink`, with what the derived [`IndexFile`] accepts and
/// refuses (unknown keys skipped, a key twice or a missing one refused, nothing after the
/// document); returns the files it supersedes. `path` names the file in a JSON error.
///
/// A file as hoard writes it is read by [`read_canonical`], byte by byte, and only where it
/// differs (another writer's key order, spaces, escapes, damage) does serde take over, from
/// the start but without handing the sink again what it was given. On 10 million blobs
/// (`cargo bench --bench scale`) this took opening from 6.9 s to 4.2 s, check's structure
/// pass from 15.4 s to 7.0 s and prune's plan from 25.8 s to 12.1 s.
pub(crate) fn read_index_file(
    path: &str,
    json: &[u8],
    sink: &mut impl IndexSink,
) -> crate::error::Result<Vec<Id>> {
    let mut given = 0;
    if let Some(supersedes) = read_canonical(json, sink, &mut given)? {
        return Ok(supersedes);
    }
    let mut skip = Skip { sink, skip: given };
    read_with_serde(path, json, &mut skip)
}

/// [`read_index_file`] through serde alone.
fn read_with_serde(
    path: &str,
    json: &[u8],
    sink: &mut impl IndexSink,
) -> crate::error::Result<Vec<Id>> {
    let mut keep = Keep {
        sink,
        refused: None,
    };
    let mut de = serde_json::Deserializer::from_slice(json);
    let parsed = FileSeed(&mut keep)
        .deserialize(&mut de)
        .and_then(|supersedes| de.end().map(|()| supersedes));
    match (keep.refused, parsed) {
        (Some(e), _) => Err(e),
        (None, parsed) => parsed.map_err(|e| crate::error::Error::corrupt_by(path, e)),
    }
}

/// Passes on a sink's calls after the first `skip`: those it had from [`read_canonical`]
/// before the file turned out to need serde, which makes the same calls up to there.
struct Skip<'s, S> {
    sink: &'s mut S,
    skip: usize,
}

impl<S: IndexSink> IndexSink for Skip<'_, S> {
    fn blob(&mut self, blob: &PackedBlob) -> crate::error::Result<()> {
        if self.skip == 0 {
            return self.sink.blob(blob);
        }
        self.skip -= 1;
        Ok(())
    }

    fn pack(&mut self, id: Id, count: usize) -> crate::error::Result<()> {
        if self.skip == 0 {
            return self.sink.pack(id, count);
        }
        self.skip -= 1;
        Ok(())
    }
}

/// Reads an index file in exactly the bytes `serde_json::to_vec` writes for an [`IndexFile`]
/// into `sink`, counting its calls in `given`; `None` at the first byte that differs (serde
/// then decides). Every call it makes is one serde makes for the same bytes, in the same
/// order: a blob once its entry is whole, a pack once its entry is.
fn read_canonical(
    json: &[u8],
    sink: &mut impl IndexSink,
    given: &mut usize,
) -> crate::error::Result<Option<Vec<Id>>> {
    let mut c = Canonical { json, at: 0 };
    if c.lit(b"{").is_none() {
        return Ok(None);
    }
    let mut supersedes = Vec::new();
    if c.lit(b"\"supersedes\":[").is_some() {
        if c.lit(b"]").is_none() {
            loop {
                let Some(id) = c.id() else { return Ok(None) };
                supersedes.push(id);
                if c.lit(b",").is_none() {
                    break;
                }
            }
            if c.lit(b"]").is_none() {
                return Ok(None);
            }
        }
        if c.lit(b",").is_none() {
            return Ok(None);
        }
    }
    if c.lit(b"\"packs\":[").is_none() {
        return Ok(None);
    }
    if c.lit(b"]").is_none() {
        loop {
            let Some(id) = c.lit(b"{\"id\":").and_then(|()| c.id()) else {
                return Ok(None);
            };
            if c.lit(b",\"blobs\":[").is_none() {
                return Ok(None);
            }
            let mut count = 0;
            if c.lit(b"]").is_none() {
                loop {
                    let Some(blob) = c.blob() else {
                        return Ok(None);
                    };
                    sink.blob(&blob)?;
                    *given += 1;
                    count += 1;
                    if c.lit(b",").is_none() {
                        break;
                    }
                }
                if c.lit(b"]").is_none() {
                    return Ok(None);
                }
            }
            if c.lit(b"}").is_none() {
                return Ok(None);
            }
            sink.pack(id, count)?;
            *given += 1;
            if c.lit(b",").is_none() {
                break;
            }
        }
        if c.lit(b"]").is_none() {
            return Ok(None);
        }
    }
    Ok((c.lit(b"}").is_some() && c.at == json.len()).then_some(supersedes))
}

/// A position in an index file's JSON, read as hoard writes it.
struct Canonical<'a> {
    json: &'a [u8],
    at: usize,
}

impl Canonical<'_> {
    /// Steps over `s` if it comes next.
    fn lit(&mut self, s: &[u8]) -> Option<()> {
        self.json[self.at..]
            .starts_with(s)
            .then(|| self.at += s.len())
    }

    /// An id: 64 hex digits in quotes (what serde's path parses them with).
    fn id(&mut self) -> Option<Id> {
        let quoted = self.json.get(self.at..self.at + 66)?;
        if quoted[0] != b'"' || quoted[65] != b'"' {
            return None;
        }
        let id = crate::id::parse_hex(&quoted[1..65])?;
        self.at += 66;
        Some(Id(id))
    }

    /// A JSON integer that fits a u32: no sign, no leading zero, no fraction or exponent
    /// (the next byte is checked by whoever reads on).
    fn u32(&mut self) -> Option<u32> {
        let digits = self.json[self.at..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        let text = &self.json[self.at..self.at + digits];
        if digits == 0 || digits > 10 || (digits > 1 && text[0] == b'0') {
            return None;
        }
        let value = text.iter().fold(0u64, |v, &d| v * 10 + u64::from(d - b'0'));
        let value = u32::try_from(value).ok()?;
        self.at += digits;
        Some(value)
    }

    /// One blob's entry, its keys in [`PackedBlob`]'s order.
    fn blob(&mut self) -> Option<PackedBlob> {
        self.lit(b"{\"id\":")?;
        let id = self.id()?;
        self.lit(b",\"type\":\"")?;
        let blob_type = if self.lit(b"data\"").is_some() {
            super::pack::BlobType::Data
        } else {
            self.lit(b"tree\"")?;
            super::pack::BlobType::Tree
        };
        self.lit(b",\"offset\":")?;
        let offset = self.u32()?;
        self.lit(b",\"length\":")?;
        let length = self.u32()?;
        self.lit(b",\"raw_length\":")?;
        let raw_length = self.u32()?;
        self.lit(b",\"compressed\":")?;
        let compressed = if self.lit(b"true").is_some() {
            true
        } else {
            self.lit(b"false")?;
            false
        };
        self.lit(b"}")?;
        Some(PackedBlob {
            id,
            blob_type,
            offset,
            length,
            raw_length,
            compressed,
        })
    }
}

/// The sink as the seeds see it: its error is kept here while serde unwinds with [`Stop`].
struct Keep<'s, S> {
    sink: &'s mut S,
    refused: Option<crate::error::Error>,
}

/// A sink's refusal to read on, on its way out through serde; [`Keep`] has the reason.
struct Stop;

impl<S: IndexSink> Keep<'_, S> {
    fn kept(&mut self, done: crate::error::Result<()>) -> Result<(), Stop> {
        done.map_err(|e| {
            self.refused = Some(e);
            Stop
        })
    }

    fn blob(&mut self, blob: &PackedBlob) -> Result<(), Stop> {
        let done = self.sink.blob(blob);
        self.kept(done)
    }

    fn pack(&mut self, id: Id, count: usize) -> Result<(), Stop> {
        let done = self.sink.pack(id, count);
        self.kept(done)
    }
}

fn stopped<E: serde::de::Error>(_: Stop) -> E {
    E::custom("refused by the reader")
}

/// Takes the value of key `name` once.
fn once<'de, A: MapAccess<'de>, T: Deserialize<'de>>(
    slot: &mut Option<T>,
    map: &mut A,
    name: &'static str,
) -> Result<(), A::Error> {
    if slot.is_some() {
        return Err(A::Error::duplicate_field(name));
    }
    *slot = Some(map.next_value()?);
    Ok(())
}

/// The keys of an index file and of a pack, matched as the derived impls match them.
#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "lowercase")]
enum Key {
    Supersedes,
    Packs,
    Id,
    Blobs,
    #[serde(other)]
    Other,
}

struct FileSeed<'s, 'k, S>(&'s mut Keep<'k, S>);

impl<'de, S: IndexSink> DeserializeSeed<'de> for FileSeed<'_, '_, S> {
    type Value = Vec<Id>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<Id>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, S: IndexSink> Visitor<'de> for FileSeed<'_, '_, S> {
    type Value = Vec<Id>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an index file")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<Id>, A::Error> {
        let (mut supersedes, mut packs) = (None, false);
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Supersedes => once(&mut supersedes, &mut map, "supersedes")?,
                Key::Packs if packs => return Err(A::Error::duplicate_field("packs")),
                Key::Packs => {
                    map.next_value_seed(PacksSeed(&mut *self.0))?;
                    packs = true;
                }
                Key::Id | Key::Blobs | Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        if !packs {
            return Err(A::Error::missing_field("packs"));
        }
        Ok(supersedes.unwrap_or_default())
    }
}

struct PacksSeed<'s, 'k, S>(&'s mut Keep<'k, S>);

impl<'de, S: IndexSink> DeserializeSeed<'de> for PacksSeed<'_, '_, S> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, S: IndexSink> Visitor<'de> for PacksSeed<'_, '_, S> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of packs")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(PackSeed(&mut *self.0))?.is_some() {}
        Ok(())
    }
}

struct PackSeed<'s, 'k, S>(&'s mut Keep<'k, S>);

impl<'de, S: IndexSink> DeserializeSeed<'de> for PackSeed<'_, '_, S> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, S: IndexSink> Visitor<'de> for PackSeed<'_, '_, S> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a pack")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let (mut id, mut blobs) = (None, None);
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Id => once(&mut id, &mut map, "id")?,
                Key::Blobs if blobs.is_some() => return Err(A::Error::duplicate_field("blobs")),
                Key::Blobs => blobs = Some(map.next_value_seed(BlobsSeed(&mut *self.0))?),
                Key::Supersedes | Key::Packs | Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let id = id.ok_or_else(|| A::Error::missing_field("id"))?;
        let count = blobs.ok_or_else(|| A::Error::missing_field("blobs"))?;
        self.0.pack(id, count).map_err(stopped)
    }
}

struct BlobsSeed<'s, 'k, S>(&'s mut Keep<'k, S>);

impl<'de, S: IndexSink> DeserializeSeed<'de> for BlobsSeed<'_, '_, S> {
    type Value = usize;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, S: IndexSink> Visitor<'de> for BlobsSeed<'_, '_, S> {
    type Value = usize;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of blobs")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
        let mut count = 0;
        while let Some(b) = seq.next_element::<PackedBlob>()? {
            self.0.blob(&b).map_err(stopped)?;
            count += 1;
        }
        Ok(count)
    }
}

/// Blobs per index file written by prune and `repair index`: small enough to load in pieces,
/// large enough that a big repository has few files.
pub(crate) const BLOBS_PER_INDEX_FILE: usize = 50_000;

/// Groups packs into index files of about [`BLOBS_PER_INDEX_FILE`] blobs, the last of which
/// supersedes the files it replaces (prune and `repair index` write this way).
#[derive(Default)]
pub(crate) struct IndexBatcher {
    current: IndexFile,
}

impl IndexBatcher {
    /// Adds a pack; returns a full file to write first when the pack does not fit.
    pub(crate) fn push(&mut self, p: IndexPack) -> Option<IndexFile> {
        let full = (!self.current.packs.is_empty()
            && self.current.blob_count() + p.blobs.len() > BLOBS_PER_INDEX_FILE)
            .then(|| std::mem::take(&mut self.current));
        self.current.packs.push(p);
        full
    }

    /// The last file, which supersedes `old` (written even when it lists no pack).
    pub(crate) fn finish(self, old: Vec<Id>) -> IndexFile {
        IndexFile {
            supersedes: old,
            packs: self.current.packs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::pack::BlobType;
    use proptest::prelude::*;

    /// Rebuilds the file from what a sink is given.
    #[derive(Default)]
    struct Collect {
        waiting: Vec<PackedBlob>,
        packs: Vec<IndexPack>,
    }

    impl IndexSink for Collect {
        fn blob(&mut self, blob: &PackedBlob) -> crate::error::Result<()> {
            self.waiting.push(*blob);
            Ok(())
        }
        fn pack(&mut self, id: Id, count: usize) -> crate::error::Result<()> {
            assert_eq!(count, self.waiting.len());
            let blobs = std::mem::take(&mut self.waiting);
            self.packs.push(IndexPack { id, blobs });
            Ok(())
        }
    }

    fn read(json: &str) -> crate::error::Result<IndexFile> {
        let mut sink = Collect::default();
        let supersedes = read_index_file("index/x", json.as_bytes(), &mut sink)?;
        Ok(IndexFile {
            supersedes,
            packs: sink.packs,
        })
    }

    /// An index file of `packs` (blob ids, numbers and types drawn by proptest).
    fn file_of(packs: &[Vec<([u8; 32], u32, bool)>], old: &[[u8; 32]]) -> IndexFile {
        IndexFile {
            supersedes: old.iter().copied().map(Id).collect(),
            packs: packs
                .iter()
                .enumerate()
                .map(|(i, blobs)| IndexPack {
                    id: Id::of_file(&[i as u8]),
                    blobs: blobs
                        .iter()
                        .map(|(id, n, tree)| PackedBlob {
                            id: Id(*id),
                            blob_type: if *tree {
                                BlobType::Tree
                            } else {
                                BlobType::Data
                            },
                            offset: *n,
                            length: n / 2,
                            raw_length: n / 3,
                            compressed: *tree,
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    fn packs_strategy() -> impl Strategy<Value = Vec<Vec<([u8; 32], u32, bool)>>> {
        proptest::collection::vec(
            proptest::collection::vec((any::<[u8; 32]>(), any::<u32>(), any::<bool>()), 0..5),
            0..5,
        )
    }

    /// What `read` gives a sink, and what it returns.
    fn events(
        read: impl FnOnce(&mut Collect) -> crate::error::Result<Vec<Id>>,
    ) -> (Option<Vec<Id>>, Vec<IndexPack>, usize) {
        let mut sink = Collect::default();
        let result = read(&mut sink).ok();
        (result, sink.packs, sink.waiting.len())
    }

    proptest! {
        /// What hoard writes is read without serde, to its end.
        #[test]
        fn a_file_as_written_is_read_byte_by_byte(packs in packs_strategy(), old in proptest::collection::vec(any::<[u8; 32]>(), 0..3)) {
            let file = file_of(&packs, &old);
            let json = serde_json::to_vec(&file).unwrap();
            let (mut sink, mut given) = (Collect::default(), 0);
            let supersedes = read_canonical(&json, &mut sink, &mut given).unwrap();
            prop_assert_eq!(supersedes, Some(file.supersedes.clone()));
            prop_assert_eq!(given, file.packs.len() + file.blob_count());
            prop_assert_eq!(sink.packs, file.packs);
        }

        /// Whatever the bytes (another writer's, or damaged), the sink is given exactly what
        /// serde alone gives it, and the outcome is the same.
        #[test]
        fn any_file_is_read_as_serde_reads_it(
            packs in packs_strategy(),
            old in proptest::collection::vec(any::<[u8; 32]>(), 0..2),
            edits in proptest::collection::vec((any::<proptest::sample::Index>(), 0u8..5, proptest::sample::select(b" {}[],:\"0123456789abcdefxtrue-.eE\\".to_vec())), 1..4),
        ) {
            let mut json = serde_json::to_vec(&file_of(&packs, &old)).unwrap();
            for (at, kind, byte) in edits {
                // Half the edits go where a value starts, where the reader's own rules are.
                let starts: Vec<usize> = (0..json.len()).filter(|&i| json[i] == b':').map(|i| i + 1).collect();
                let at = match kind {
                    3 | 4 if !starts.is_empty() => starts[at.index(starts.len())],
                    _ => at.index(json.len() + 1),
                };
                match kind {
                    0 | 3 => json.insert(at, byte),
                    1 if at < json.len() => { json.remove(at); }
                    _ if at < json.len() => json[at] = byte,
                    _ => {}
                }
            }
            let ours = events(|sink| read_index_file("index/x", &json, sink));
            let serdes = events(|sink| read_with_serde("index/x", &json, sink));
            prop_assert_eq!(ours, serdes);
        }
    }

    proptest! {
        #[test]
        fn the_reader_reads_what_the_writer_wrote(
            packs in packs_strategy(),
            old in proptest::collection::vec(any::<[u8; 32]>(), 0..3),
        ) {
            let file = file_of(&packs, &old);
            let json = serde_json::to_string(&file).unwrap();
            let back = read(&json).unwrap();
            prop_assert_eq!(back.supersedes, file.supersedes);
            prop_assert_eq!(back.packs, file.packs);
        }
    }

    #[test]
    fn the_reader_accepts_and_refuses_what_the_derived_parser_does() {
        let id = |c: char| c.to_string().repeat(64);
        let blob = format!(
            r#"{{"id":"{}","type":"data","offset":0,"length":50,"raw_length":10,"compressed":true}}"#,
            id('b')
        );
        let one_pack =
            |blob: &str| format!(r#"{{"packs":[{{"id":"{}","blobs":[{blob}]}}]}}"#, id('a'));
        let cases = [
            // Keys in another order, unknown keys, no `supersedes`.
            format!(
                r#"{{"packs":[{{"blobs":[{blob}],"x":[1,{{}}],"id":"{}"}}],"y":null}}"#,
                id('a')
            ),
            format!(r#"{{"supersedes":["{}"],"packs":[]}}"#, id('c')),
            // Refused: a missing pack id, a key twice, no packs, something after the document,
            // a blob missing a field, an id that is not one.
            format!(r#"{{"packs":[{{"blobs":[{blob}]}}]}}"#),
            format!(
                r#"{{"packs":[{{"id":"{0}","id":"{0}","blobs":[]}}]}}"#,
                id('a')
            ),
            format!(
                r#"{{"packs":[{{"id":"{}","blobs":[],"blobs":[]}}]}}"#,
                id('a')
            ),
            r#"{"packs":[],"packs":[]}"#.to_string(),
            r#"{"supersedes":[]}"#.to_string(),
            r#"{"packs":[]} x"#.to_string(),
            format!(
                r#"{{"packs":[{{"id":"{}","blobs":[{{"id":"{}"}}]}}]}}"#,
                id('a'),
                id('b')
            ),
            r#"{"packs":[{"id":"zz","blobs":[]}]}"#.to_string(),
            // What the byte-by-byte reader leaves to serde: numbers it does not take (a
            // leading zero, a sign, a fraction, past u32), spaces, upper-case or escaped
            // digits, a space after the document.
            one_pack(&blob.replace(":50", ":050")),
            one_pack(&blob.replace(":0", ":-0")),
            one_pack(&blob.replace(":50", ":5.0")),
            one_pack(&blob.replace(":50", ":4294967296")),
            one_pack(&blob.replace(":50", ":4294967295")),
            format!(
                r#"{{ "packs" : [ {{"id":"{}","blobs":[ {} ]}} ] }}"#,
                id('a'),
                blob
            ),
            format!(r#"{{"packs":[{{"id":"{}","blobs":[{}]}}]}}"#, id('A'), blob),
            format!(
                r#"{{"packs":[{{"id":"\u0061{}","blobs":[]}}]}}"#,
                &id('a')[1..]
            ),
            format!("{} ", one_pack(&blob)),
        ];
        for (i, json) in cases.iter().enumerate() {
            let derived = serde_json::from_str::<IndexFile>(json);
            let streamed = read(json);
            assert_eq!(derived.is_ok(), streamed.is_ok(), "case {i}: {json}");
            if let (Ok(d), Ok(s)) = (derived, streamed) {
                assert_eq!((d.supersedes, d.packs), (s.supersedes, s.packs));
            }
        }
    }

    #[test]
    fn a_sinks_refusal_is_the_error_returned_not_the_stopped_parse() {
        struct Refuse;
        impl IndexSink for Refuse {
            fn blob(&mut self, _: &PackedBlob) -> crate::error::Result<()> {
                Err(crate::error::Error::corrupt("blob b", "planted"))
            }
            fn pack(&mut self, _: Id, _: usize) -> crate::error::Result<()> {
                Ok(())
            }
        }
        let json = format!(
            r#"{{"packs":[{{"id":"{}","blobs":[{{"id":"{}","type":"data","offset":0,"length":50,"raw_length":10,"compressed":true}}]}}]}}"#,
            "a".repeat(64),
            "b".repeat(64)
        );
        let e = read_index_file("index/x", json.as_bytes(), &mut Refuse).unwrap_err();
        assert!(e.to_string().contains("planted"), "{e}");
        // Damaged JSON is named by the file it came from.
        let e = read_index_file("index/x", b"{\"packs\":[", &mut Collect::default()).unwrap_err();
        assert!(e.to_string().contains("index/x"), "{e}");
    }

    #[test]
    fn only_the_last_index_file_supersedes() {
        let blob = |i: u8| PackedBlob {
            id: Id::of_file(&[i]),
            blob_type: BlobType::Data,
            offset: 0,
            length: 10,
            raw_length: 10,
            compressed: false,
        };
        let mut batch = IndexBatcher::default();
        let full: Vec<IndexFile> = (0..3)
            .filter_map(|i| {
                batch.push(IndexPack {
                    id: Id::of_file(&[i, 1]),
                    blobs: vec![blob(i); BLOBS_PER_INDEX_FILE / 2 + 1],
                })
            })
            .collect();
        assert_eq!(full.len(), 2);
        assert!(full
            .iter()
            .all(|f| f.supersedes.is_empty() && f.packs.len() == 1));
        let old = vec![Id::of_file(b"old")];
        let last = batch.finish(old.clone());
        assert_eq!(last.supersedes, old);
        assert_eq!(last.packs.len(), 1);
        // Nothing left to index still writes the superseding file.
        let last = IndexBatcher::default().finish(old.clone());
        assert!(last.packs.is_empty());
        assert_eq!(last.supersedes, old);
    }
}
