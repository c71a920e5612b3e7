//! Loading the index: the live index files (those no other file supersedes) streamed into the
//! in-memory table, and reloaded when a prune replaced them (FORMAT.md "Index").

use std::collections::HashSet;

use futures::StreamExt;

use super::cache::Cached;
use super::index::{BlobLocation, Index};
use super::storage::FileKind;
use super::{IndexSource, Repository};
use crate::error::{Error, Result};
use crate::format::blob::open_doc_json;
use crate::format::index::{read_index_file, IndexBatcher, IndexFile, IndexPack, IndexSink};
use crate::format::pack::{pack_file_len_of, PackedBlob};
use crate::id::Id;

/// Packs an index file lists, each with the length its file has by its entries.
type PackLengths = Vec<(Id, u64)>;

/// What [`Repository::load_live_index`] reports as it reads.
pub(crate) enum IndexEvent<'a> {
    /// An index file was read and checked; its entries are in the table. Its packs, each with
    /// the length its file has by its entries.
    Loaded(&'a [(Id, u64)]),
    /// An index file could not be read.
    Unreadable,
    /// Everything reported so far is void: some files read are superseded by others, and the
    /// rest are read again without them (only after an interrupted prune).
    Restart,
}

/// How [`Repository::load_live_index`] reads.
pub(crate) struct LoadIndex {
    /// Whether to build the table; without, the files are only read and checked.
    pub(crate) build: bool,
    /// Errors that end the loading at once (a storage outage would otherwise be met once per
    /// file); the others leave their file out as unreadable.
    pub(crate) give_up: fn(&Error) -> bool,
}

/// The index files read by [`Repository::load_live_index`], not yet in use.
pub(crate) struct LoadedIndex {
    index: Index,
    source: IndexSource,
    /// Index files that could not be read, and why. Those superseded are not damage.
    pub(crate) unreadable: Vec<(Id, Error)>,
    /// Every index file some live one supersedes.
    pub(crate) superseded: HashSet<Id>,
}

impl LoadedIndex {
    /// Every index file that was listed (sorted).
    pub(crate) fn listed(&self) -> &[Id] {
        &self.source.listed
    }

    /// The live index files the table was built from.
    pub(crate) fn live(&self) -> &[Id] {
        &self.source.live
    }
}

fn is_damage(e: &Error) -> bool {
    matches!(e, Error::Corrupt { .. } | Error::Authentication(_))
}

impl Repository {
    pub(crate) fn blob_location(&self, id: &Id) -> Option<BlobLocation> {
        self.index().get(id)
    }

    /// The plaintext length of an indexed blob, without reading it: what a reader needs to
    /// find the blob that holds a given offset of a file.
    pub fn blob_len(&self, id: &Id) -> Option<u64> {
        self.blob_location(id).map(|l| u64::from(l.blob.raw_length))
    }

    /// Re-reads every index file not superseded by another into the in-memory index. An
    /// index file that cannot be read (damaged, or planted without the key) is left out with a
    /// warning, so that what does not need it keeps working; prune refuses to run until
    /// `repair index` has replaced it. Any other error (storage unreachable) leaves the index
    /// as it was.
    pub(crate) async fn reload_index(&self) -> Result<()> {
        let ids = self.list(FileKind::Index).await?;
        let load = LoadIndex {
            build: true,
            give_up: |e| !is_damage(e),
        };
        let loaded = self.load_live_index(ids, load, |_| {}).await?;
        for (id, e) in loaded
            .unreadable
            .iter()
            .filter(|(id, _)| !loaded.superseded.contains(id))
        {
            tracing::warn!(
                "skipping index file {}: {e} (`hoard repair index` rebuilds the index)",
                id.short()
            );
        }
        self.install_index(loaded);
        Ok(())
    }

    /// Streams the index files `ids` (as listed) into a new in-memory table, skipping those
    /// another one supersedes: at most a few files are decoded at once, so the peak is the
    /// table, not the table plus every file's document. `each` sees every file as it is read,
    /// for a caller that keeps more than the table (check). Nothing is installed yet.
    pub(crate) async fn load_live_index(
        &self,
        ids: Vec<Id>,
        how: LoadIndex,
        mut each: impl FnMut(IndexEvent<'_>),
    ) -> Result<LoadedIndex> {
        let mut skip: HashSet<Id> = Default::default();
        let mut unreadable: Vec<(Id, Error)> = Vec::new();
        // The ids in `unreadable`: a file that failed is not read again after a restart.
        let mut failed: HashSet<Id> = Default::default();
        loop {
            let todo: Vec<Id> = ids
                .iter()
                .filter(|id| !skip.contains(id) && !failed.contains(id))
                .copied()
                .collect();
            let mut index = Index::new();
            let mut superseded: HashSet<Id> = Default::default();
            let mut live = Vec::new();
            let mut files = self.index_file_reads(&todo);
            let mut json = Vec::new();
            while let Some((id, sealed)) = files.next().await {
                let table = how.build.then_some(&mut index);
                match sealed.and_then(|s| self.read_index_into(&id, s, &mut json, table)) {
                    Ok((supersedes, packs)) => {
                        superseded.extend(supersedes);
                        each(IndexEvent::Loaded(&packs));
                        live.push(id);
                    }
                    Err(e) if (how.give_up)(&e) => return Err(e),
                    Err(e) => {
                        each(IndexEvent::Unreadable);
                        failed.insert(id);
                        unreadable.push((id, e));
                    }
                }
            }
            drop((files, json));
            live.sort_unstable(); // in the listing's order, whatever order the reads ended in
            if live.iter().any(|id| superseded.contains(id)) {
                // Only after an interrupted prune: load again without the replaced files.
                skip.extend(superseded);
                each(IndexEvent::Restart);
                continue;
            }
            superseded.extend(skip);
            let damaged = unreadable
                .iter()
                .map(|(id, _)| *id)
                .filter(|id| !superseded.contains(id))
                .collect();
            return Ok(LoadedIndex {
                index,
                source: IndexSource {
                    listed: ids,
                    live,
                    damaged,
                },
                unreadable,
                superseded,
            });
        }
    }

    /// The sealed index files `ids`, read a few ahead of the one being parsed, in the order
    /// the reads end. Reading ahead hides a remote store's latency. A local file has none to
    /// hide, and a file read ahead waits whole beside the table, at its largest near the end:
    /// one at a time there.
    fn index_file_reads<'a>(
        &'a self,
        ids: &'a [Id],
    ) -> impl futures::Stream<Item = (Id, Result<Vec<u8>>)> + 'a {
        let ahead = if self.operator().info().scheme() == "fs" {
            1
        } else {
            4
        };
        futures::stream::iter(ids.iter().copied())
            .map(move |id| async move { (id, self.read_file(FileKind::Index, &id).await) })
            .buffer_unordered(ahead)
    }

    /// Opens one sealed index file into `json` (which every file reuses) and parses it into
    /// `sink`; returns the files it supersedes. The sealed bytes are freed before parsing, so
    /// only the file's JSON is held beside what the sink builds.
    fn parse_index_file(
        &self,
        id: &Id,
        mut sealed: Vec<u8>,
        json: &mut Vec<u8>,
        sink: &mut impl IndexSink,
    ) -> Result<Vec<Id>> {
        let path = FileKind::Index.path(id);
        open_doc_json(self.key(), &mut sealed, &path, json)?;
        drop(sealed);
        read_index_file(&path, json, sink)
    }

    /// Calls `each` with every pack (its id and blobs) the index files `ids` list, parsed pack
    /// by pack: beside the table, only one file's JSON and one pack's blobs are held, where
    /// whole decoded files (a few at once) would take more than the table has left to spare.
    /// The first file that cannot be read ends it with its error, after the packs before the
    /// damage.
    pub(crate) async fn for_each_index_pack<F>(&self, ids: &[Id], mut each: F) -> Result<()>
    where
        F: FnMut(Id, &[PackedBlob]) -> Result<()>,
    {
        let mut files = self.index_file_reads(ids);
        let mut json = Vec::new();
        let mut packs = PackByPack {
            blobs: Vec::new(),
            each: &mut each,
        };
        while let Some((id, sealed)) = files.next().await {
            self.parse_index_file(&id, sealed?, &mut json, &mut packs)?;
        }
        Ok(())
    }

    /// Makes a loaded index the one lookups use.
    pub(crate) fn install_index(&self, loaded: LoadedIndex) {
        if let Some(c) = self.cache() {
            c.retain(
                Cached::Index,
                &loaded.source.listed.iter().copied().collect(),
            );
            c.retain(Cached::TreePack, &loaded.index.pack_ids().collect());
        }
        self.set_index(loaded.index, loaded.source);
    }

    /// Reads one sealed index file into `table` (when one is being built), entry by entry as
    /// it is parsed, or refuses it whole; returns the files it supersedes and its packs with
    /// their file lengths.
    fn read_index_into(
        &self,
        id: &Id,
        sealed: Vec<u8>,
        json: &mut Vec<u8>,
        table: Option<&mut Index>,
    ) -> Result<(Vec<Id>, PackLengths)> {
        let mark = table.as_ref().map(|t| t.mark());
        let mut reader = EntryReader {
            repo: self,
            table,
            packs: Vec::new(),
            sealed: 0,
            bad: None,
        };
        let parsed = self.parse_index_file(id, sealed, json, &mut reader);
        match (parsed, reader.table, mark) {
            (Ok(supersedes), table, _) => {
                if let Some(t) = table {
                    t.end_file();
                }
                Ok((supersedes, reader.packs))
            }
            (Err(e), Some(t), Some(mark)) => {
                t.back_to(mark);
                Err(e)
            }
            (Err(e), _, _) => Err(e),
        }
    }

    /// Index files left out of the in-memory index because they could not be read.
    pub(crate) fn damaged_index_files(&self) -> Vec<Id> {
        self.index_source().damaged
    }

    /// Ids of the live index files the in-memory index was built from.
    pub(crate) fn loaded_index_files(&self) -> Vec<Id> {
        self.index_source().live
    }

    /// Whether the in-memory index was built when exactly these index files (sorted) existed.
    pub(crate) fn index_built_from(&self, listed: &[Id]) -> bool {
        self.index_source().listed == listed
    }

    fn index_source(&self) -> IndexSource {
        self.inner
            .index_source
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Calls `each` with every listed index file (or the error reading it), a few downloads in
    /// flight at once, in no particular order.
    pub(crate) async fn for_each_index_file<F>(&self, ids: &[Id], mut each: F) -> Result<()>
    where
        F: FnMut(Id, Result<IndexFile>) -> Result<()>,
    {
        let mut files = futures::stream::iter(ids.iter().copied())
            .map(|id| async move { (id, self.load_doc::<IndexFile>(FileKind::Index, &id).await) })
            .buffer_unordered(4);
        while let Some((id, f)) = files.next().await {
            each(id, f)?;
        }
        Ok(())
    }

    /// For an operation that will replace the whole index under an exclusive lock: every
    /// index file present now (all to be superseded) and the live ones to copy from, with the
    /// in-memory index current. Refuses when an index file cannot be read, since its entries
    /// would be lost with it; `what` says what was not done ("pruned").
    pub(crate) async fn index_to_replace(&self, what: &str) -> Result<(Vec<Id>, Vec<Id>)> {
        let all = self.list(FileKind::Index).await?;
        if !self.index_built_from(&all) {
            self.reload_index().await?;
        }
        if let Some(id) = self.damaged_index_files().first() {
            return Err(Error::corrupt(
                FileKind::Index.path(id),
                format!("cannot be read; nothing was {what} (run `hoard repair index` first)"),
            ));
        }
        Ok((all, self.loaded_index_files()))
    }

    /// Writes a new index: the entries of the live index files `live` for the packs `keep`
    /// accepts (each pack once), then `added`; the last file written supersedes `supersedes`
    /// (every index file that existed), so readers switch over at once and a crash before it
    /// leaves the old index in charge. Returns how many files were written. Prune and the
    /// repairs share it; the caller deletes the superseded files afterwards.
    pub(crate) async fn write_superseding_index(
        &self,
        live: &[Id],
        keep: impl Fn(&Id) -> bool,
        added: Vec<IndexPack>,
        supersedes: Vec<Id>,
    ) -> Result<u64> {
        let mut written_packs: HashSet<Id> = HashSet::new();
        let mut files_written = 0u64;
        let mut batch = IndexBatcher::default();
        // In order, one file at a time: memory stays at a few index files, not the whole index.
        let mut old_files = futures::stream::iter(live.iter().copied())
            .map(|id| async move { self.load_doc::<IndexFile>(FileKind::Index, &id).await })
            .buffered(4);
        while let Some(file) = old_files.next().await {
            for p in file?.packs {
                if keep(&p.id) && written_packs.insert(p.id) {
                    if let Some(full) = batch.push(p) {
                        self.save_doc(FileKind::Index, &full).await?;
                        files_written += 1;
                    }
                }
            }
        }
        for p in added {
            if let Some(full) = batch.push(p) {
                self.save_doc(FileKind::Index, &full).await?;
                files_written += 1;
            }
        }
        self.save_doc(FileKind::Index, &batch.finish(supersedes))
            .await?;
        Ok(files_written + 1)
    }

    fn set_index(&self, mut index: Index, source: IndexSource) {
        index.finish_loading();
        tracing::debug!(
            blobs = index.len(),
            files = source.live.len(),
            "loaded index"
        );
        *self.index_mut() = index;
        *self
            .inner
            .index_source
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = source;
    }

    /// Reloads the index when index files were added or removed since it was loaded, for
    /// long-running readers (the web console) that must see later backups and survive a
    /// prune. Costs one listing of `index/` when nothing changed; returns whether it reloaded.
    pub async fn refresh_index(&self) -> Result<bool> {
        let present: HashSet<Id> = self.list(FileKind::Index).await?.into_iter().collect();
        let listed: HashSet<Id> = self.index_source().listed.into_iter().collect();
        if present == listed {
            return Ok(false);
        }
        self.reload_index().await?;
        Ok(true)
    }

    /// Reloads the index when an index file it was built from is gone (prune replaced it).
    pub(crate) async fn reload_index_if_changed(&self) -> Result<()> {
        let present: HashSet<Id> = self.list(FileKind::Index).await?.into_iter().collect();
        if self
            .loaded_index_files()
            .iter()
            .any(|id| !present.contains(id))
        {
            tracing::info!("index files were replaced since the repository was opened; reloading");
            self.reload_index().await?;
        }
        Ok(())
    }
}

/// Takes an index file's entries into the table as they are parsed. It refuses a file that
/// lists a blob with lengths no writer produces: anyone who can write to the bucket can plant
/// one, and its entries would otherwise stand in for the real ones until a read fails far
/// from the cause.
struct EntryReader<'a> {
    repo: &'a Repository,
    table: Option<&'a mut Index>,
    packs: PackLengths,
    /// The sealed lengths of the current pack's blobs so far.
    sealed: u64,
    /// The current pack's first blob with impossible lengths (its pack, which the error
    /// names, may come after its blobs).
    bad: Option<PackedBlob>,
}

impl IndexSink for EntryReader<'_> {
    fn blob(&mut self, blob: &PackedBlob) -> Result<()> {
        let unnamed = BlobLocation {
            pack: Id([0; 32]),
            blob: *blob,
        };
        if self.bad.is_none() && self.repo.check_lengths(&unnamed).is_err() {
            self.bad = Some(*blob);
        }
        if let (None, Some(t)) = (self.bad, self.table.as_deref_mut()) {
            t.add_loading(blob);
        }
        self.sealed += u64::from(blob.length);
        Ok(())
    }

    fn pack(&mut self, id: Id, count: usize) -> Result<()> {
        if let Some(blob) = self.bad {
            // The same check that flagged the blob, now naming its pack.
            let named = self.repo.check_lengths(&BlobLocation { pack: id, blob });
            return Err(named.err().unwrap_or_else(|| {
                Error::corrupt(format!("pack {}", id.short()), "impossible blob lengths")
            }));
        }
        if let Some(t) = self.table.as_deref_mut() {
            t.name_pack(id, count);
        }
        self.packs.push((id, pack_file_len_of(count, self.sealed)));
        self.sealed = 0;
        Ok(())
    }
}

/// Hands each pack of an index file to a callback as soon as its entry is parsed.
struct PackByPack<'a, F> {
    blobs: Vec<PackedBlob>,
    each: &'a mut F,
}

impl<F: FnMut(Id, &[PackedBlob]) -> Result<()>> IndexSink for PackByPack<'_, F> {
    fn blob(&mut self, blob: &PackedBlob) -> Result<()> {
        self.blobs.push(*blob);
        Ok(())
    }

    fn pack(&mut self, id: Id, _count: usize) -> Result<()> {
        let done = (self.each)(id, &self.blobs);
        self.blobs.clear();
        done
    }
}
