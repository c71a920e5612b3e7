//! Grouping the index's records by the first two bytes of their ids ([`IMPLIED`]), the
//! machinery behind loading in [`super::Index`]: runs grouped in place as they fill
//! ([`flag_sort`]), kept as their group sizes ([`push_runs`]), regrouped into one table
//! ([`merge_runs`]), then each group sorted ([`sort_groups`]) and deduplicated
//! ([`dedup_groups`]). Each step moves records in place: the table is the only large thing
//! held.

use super::{head, Record, IMPLIED, PREFIXES, TAIL_LEN};

/// A stretch of the table grouped by the first two bytes of the ids (the prefix): `sizes[p]`
/// records of prefix `p` after those of the prefixes before it, from `start`. A group of a run
/// holds at most `u16::MAX` records ([`push_runs`] splits runs to keep it so).
pub(super) struct Run {
    pub(super) start: usize,
    pub(super) sizes: Vec<u16>,
}

impl Run {
    pub(super) fn len(&self) -> usize {
        self.sizes.iter().map(|&n| usize::from(n)).sum()
    }
}

/// Records a grouped stretch of the table, whose groups end at `ends` (from `start`), as runs.
/// Ids are uniformly random, so a run's groups hold about 16 records; only ids crowded under a
/// few prefixes (a planted index) make one larger than a `u16`, and then the stretch is
/// halved, each half still grouped, until every group fits.
pub(super) fn push_runs(runs: &mut Vec<Run>, start: usize, ends: &[u32]) {
    let mut from = 0;
    let mut sizes = Vec::with_capacity(ends.len());
    for &end in ends {
        match u16::try_from(end - from) {
            Ok(n) => sizes.push(n),
            Err(_) => {
                let mid = ends.last().map_or(0, |&n| n / 2);
                let low: Vec<u32> = ends.iter().map(|&e| e.min(mid)).collect();
                let high: Vec<u32> = ends.iter().map(|&e| e.saturating_sub(mid)).collect();
                push_runs(runs, start, &low);
                push_runs(runs, start + mid as usize, &high);
                return;
            }
        }
        from = end;
    }
    runs.push(Run { start, sizes });
}

pub(super) fn prefix_of(head: [u8; IMPLIED]) -> usize {
    usize::from(u16::from_be_bytes(head))
}

/// Fewer records than this are sorted on one thread: a thread costs more than it saves.
pub(super) const SPLIT_FROM: usize = 1 << 16;

/// Counts per prefix, summed into ends.
pub(super) fn ends_of(counts: &mut [u32]) {
    let mut sum = 0u32;
    for c in counts {
        sum += *c;
        *c = sum;
    }
}

/// Where the groups `ends` describe start.
pub(super) fn starts_of(ends: &[u32]) -> Vec<u32> {
    std::iter::once(0)
        .chain(ends[..ends.len() - 1].iter().copied())
        .collect()
}

/// Moves each record, with its head, into its group by `key` (groups in key order, ending at
/// `ends`): American flag sort, each swap puts one record in its group for good.
pub(super) fn flag_sort(
    records: &mut [Record],
    heads: &mut [[u8; IMPLIED]],
    key: impl Fn([u8; IMPLIED]) -> usize,
    ends: &[u32],
) {
    let mut next = starts_of(ends);
    for p in 0..ends.len() {
        while next[p] < ends[p] {
            let i = next[p] as usize;
            let q = key(heads[i]);
            if q != p {
                let j = next[q] as usize;
                records.swap(i, j);
                heads.swap(i, j);
                next[q] += 1;
            } else {
                next[p] += 1;
            }
        }
    }
}

/// Regroups consecutive runs into one grouping of the whole table by prefix, in place; returns
/// its group ends. A record not yet moved still lies where its run put it, so its prefix is
/// the group of its run it lies in; every other one is carried with its prefix known. Each
/// group's positions are taken in order, so a cursor per group finds those run groups
/// walking forward, and the whole regrouping is linear.
pub(super) fn merge_runs(table: &mut [Record], runs: &[Run]) -> Vec<u32> {
    let mut ends = vec![0u32; PREFIXES];
    for run in runs {
        for (total, &n) in ends.iter_mut().zip(&run.sizes) {
            *total += u32::from(n);
        }
    }
    ends_of(&mut ends);
    if runs.len() < 2 {
        return ends; // one run is grouped already
    }
    // Run groups numbered run by run, prefix by prefix, lie one after the other.
    let size = |g: usize| usize::from(runs[g / PREFIXES].sizes[g % PREFIXES]);
    let segments = runs.len() * PREFIXES;
    debug_assert!(runs
        .windows(2)
        .all(|w| w[0].start + w[0].len() == w[1].start));
    let mut next = starts_of(&ends);
    // For each group: the run group holding its next position, and where that one ends.
    let mut cursor: Vec<(usize, usize)> = Vec::with_capacity(PREFIXES);
    let (mut g, mut end) = (0, runs[0].start + size(0));
    for &start in &next {
        while g + 1 < segments && end <= start as usize {
            g += 1;
            end += size(g);
        }
        cursor.push((g, end));
    }
    // The prefix of the record that was at `at` (not moved yet) in group `p`'s positions.
    let mut prefix_at = |p: usize, at: usize| {
        let (g, end) = &mut cursor[p];
        while *end <= at {
            *g += 1;
            *end += size(*g);
        }
        *g % PREFIXES
    };
    for p in 0..PREFIXES {
        while next[p] < ends[p] {
            let hole = next[p] as usize;
            let mut q = prefix_at(p, hole);
            if q == p {
                next[p] += 1;
                continue;
            }
            // Carry the record to its group, taking up the one there, until one belongs here.
            let mut hand = table[hole];
            loop {
                let at = next[q] as usize;
                next[q] += 1;
                let r = prefix_at(q, at);
                std::mem::swap(&mut hand, &mut table[at]);
                if r == p {
                    table[hole] = hand;
                    next[p] += 1;
                    break;
                }
                q = r;
            }
        }
    }
    ends
}

/// Sorts each group of records (those sharing a prefix) by the rest of the id, on up to
/// `threads` threads: groups are split between threads at the middle prefix, and ids are
/// uniformly random, so the halves are even.
pub(super) fn sort_groups(table: &mut [Record], starts: &[u32], threads: usize) {
    let first = starts[0] as usize;
    if threads < 2 || starts.len() < 2 || table.len() < SPLIT_FROM {
        let mut at = 0;
        for w in starts[1..]
            .iter()
            .map(|&s| s as usize - first)
            .chain([table.len()])
        {
            table[at..w].sort_unstable_by(|a, b| {
                head(a)
                    .cmp(&head(b))
                    .then_with(|| a[..TAIL_LEN].cmp(&b[..TAIL_LEN]))
            });
            at = w;
        }
        return;
    }
    let mid = starts.len() / 2;
    let (low, high) = table.split_at_mut(starts[mid] as usize - first);
    let (low_starts, high_starts) = starts.split_at(mid);
    let half = threads / 2;
    // Whoever takes `low` out sorts it: the other thread, or this one if none could start.
    let low = std::sync::Mutex::new(Some(low));
    let sort_low = || {
        let taken = low.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(l) = taken {
            sort_groups(l, low_starts, half);
        }
    };
    std::thread::scope(|s| {
        let other = std::thread::Builder::new()
            .name("hoard-index-sort".into())
            .spawn_scoped(s, sort_low);
        sort_groups(high, high_starts, threads - half);
        if let Err(e) = other {
            tracing::debug!("sorting the index on one thread fewer: {e}");
            sort_low();
        }
    });
}

/// Drops the second and later records of an id (sorted groups put them together); returns
/// the new group ends and truncates the table.
pub(super) fn dedup_groups(table: &mut Vec<Record>, ends: &[u32]) -> Vec<u32> {
    let mut kept = Vec::with_capacity(ends.len());
    let (mut read, mut write) = (0, 0);
    for &end in ends {
        let group = write;
        for r in read..end as usize {
            if write == group || table[write - 1][..TAIL_LEN] != table[r][..TAIL_LEN] {
                table[write] = table[r];
                write += 1;
            }
        }
        read = end as usize;
        kept.push(write as u32);
    }
    table.truncate(write);
    kept
}
