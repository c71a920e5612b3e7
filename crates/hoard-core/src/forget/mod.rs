//! Retention policies: which snapshots `forget` keeps, with restic's documented semantics.
//!
//! Snapshots are grouped (by host and paths unless told otherwise) and each group is walked
//! newest first. Every `keep-*` rule with counts left keeps a snapshot when its time falls in a
//! new bucket (hour, day, ISO week, month, year) and uses up one count; `-1` means unlimited.
//! So each rule keeps the newest snapshot of each of its last N buckets, and a snapshot can be
//! kept by several rules at once. When the group runs out before a rule's counts do, its oldest
//! snapshot is kept as well. `keep-within-hourly` … `-yearly` keep the newest snapshot of each
//! bucket within a span instead of a count. `keep-tag` and `keep-within` keep without
//! counting. Every span is measured back from the group's newest snapshot, not from now, so a
//! host that stopped backing up does not lose everything.
//!
//! Removing snapshot files needs no exclusive lock (no data goes away); prune does that.

mod group;
mod policy;
mod span;

use chrono::{TimeZone, Utc};
use serde::Serialize;

use crate::error::Result;
use crate::format::snapshot::SnapshotEntry;
use crate::id::Id;
use crate::repository::{FileKind, LockNeed, Repository};

pub use group::{group_snapshots, GroupBy, GroupKey};
pub use policy::{apply_policy, Decision, Policy};
pub use span::Span;

/// The decisions for one group.
#[derive(Debug, Clone, Serialize)]
pub struct GroupDecision {
    /// What the group's snapshots share.
    pub group: GroupKey,
    /// Every snapshot of the group, newest first.
    pub decisions: Vec<Decision>,
}

/// Groups snapshots and applies the policy to each group.
pub fn plan_forget<Tz: TimeZone>(
    snapshots: Vec<SnapshotEntry>,
    by: GroupBy,
    policy: &Policy,
    tz: &Tz,
) -> Vec<GroupDecision> {
    group_snapshots(snapshots, by)
        .into_iter()
        .map(|(group, list)| GroupDecision {
            group,
            decisions: apply_policy(&list, policy, tz),
        })
        .collect()
}

/// Which snapshots [`forget`] considers (restic's `--host`, `--tag`, `--path`); empty lists
/// select everything.
#[derive(Debug, Clone, Default)]
pub struct SnapshotFilter {
    /// Snapshots of any of these hosts.
    pub hosts: Vec<String>,
    /// Snapshots carrying every tag of at least one of these lists.
    pub tags: Vec<Vec<String>>,
    /// Snapshots whose paths include all of these.
    pub paths: Vec<String>,
}

impl SnapshotFilter {
    /// Whether `s` is selected.
    pub fn matches(&self, s: &SnapshotEntry) -> bool {
        (self.hosts.is_empty() || self.hosts.contains(&s.snapshot.hostname))
            && (self.tags.is_empty()
                || self
                    .tags
                    .iter()
                    .any(|l| l.iter().all(|t| s.snapshot.tags.contains(t))))
            && self.paths.iter().all(|p| s.snapshot.paths.contains(p))
    }
}

/// Options for [`forget`].
#[derive(Debug, Clone, Default)]
pub struct ForgetOptions {
    /// How snapshots are grouped before the policy applies to each group (default: host and
    /// paths, as restic).
    pub group_by: GroupBy,
    /// Which snapshots are considered at all.
    pub filter: SnapshotFilter,
    /// Decide, but remove nothing.
    pub dry_run: bool,
}

/// What [`forget`] decided and did.
#[derive(Debug, Clone, Serialize)]
pub struct ForgetResult {
    /// Per group, newest first: every snapshot with whether it is kept and why.
    pub groups: Vec<GroupDecision>,
    /// The snapshots removed (or, in a dry run, that would be).
    pub removed: Vec<Id>,
}

/// Applies `policy` to the repository's snapshots and removes those it does not keep. Hours,
/// days, weeks, months and years are those of UTC; [`forget_in_zone`] takes another zone (the
/// CLI uses the local one, as restic does). An empty policy removes nothing.
pub async fn forget(
    repo: &Repository,
    policy: &Policy,
    opts: &ForgetOptions,
) -> Result<ForgetResult> {
    forget_in_zone(repo, policy, opts, &Utc).await
}

/// [`forget`] with the calendar of `tz`.
pub async fn forget_in_zone<Tz: TimeZone>(
    repo: &Repository,
    policy: &Policy,
    opts: &ForgetOptions,
    tz: &Tz,
) -> Result<ForgetResult> {
    let groups = if policy.is_empty() {
        Vec::new()
    } else {
        let list: Vec<SnapshotEntry> = repo
            .snapshots()
            .await?
            .into_iter()
            .filter(|s| opts.filter.matches(s))
            .collect();
        plan_forget(list, opts.group_by, policy, tz)
    };
    let mut removed: Vec<Id> = groups
        .iter()
        .flat_map(|g| g.decisions.iter().filter(|d| !d.keep))
        .map(|d| d.snapshot.id)
        .collect();
    removed.sort();
    removed.dedup();
    if !opts.dry_run && !removed.is_empty() {
        forget_snapshots(repo, &removed).await?;
    }
    Ok(ForgetResult { groups, removed })
}

/// Deletes snapshot files under a shared lock: removing a snapshot frees nothing by itself, so
/// it may run beside backups; prune (exclusive) later removes the data.
pub async fn forget_snapshots(repo: &Repository, ids: &[Id]) -> Result<()> {
    repo.locked(LockNeed::Append, |_| async move {
        for id in ids {
            repo.delete_file(FileKind::Snapshot, id).await?;
        }
        Ok(())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::span::subtract_span;
    use super::*;
    use crate::format::snapshot::Snapshot;
    use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, Utc};

    fn snap(time: &str, host: &str, tags: &[&str]) -> SnapshotEntry {
        let time: DateTime<Utc> = DateTime::parse_from_rfc3339(time).unwrap().into();
        SnapshotEntry {
            id: Id::of_file(format!("{time}{host}{tags:?}").as_bytes()),
            snapshot: Snapshot {
                time,
                tree: Id::of_file(b"tree"),
                paths: vec!["/data".into()],
                hostname: host.into(),
                username: "u".into(),
                uid: 0,
                gid: 0,
                tags: tags.iter().map(|t| t.to_string()).collect(),
                excludes: vec![],
                parent: None,
                program_version: "test".into(),
                summary: None,
                original: None,
            },
        }
    }

    /// One snapshot a day at 10:00 UTC through 2025, plus `extra` hours on each day.
    fn year_of_snapshots(hours: &[u32]) -> Vec<SnapshotEntry> {
        let mut out = Vec::new();
        let mut d = NaiveDate::from_ymd_opt(2025, 1, 1).unwrap();
        while d.year() == 2025 {
            for h in hours {
                out.push(snap(&format!("{d}T{h:02}:00:00Z"), "h", &[]));
            }
            d = d.succ_opt().unwrap();
        }
        out
    }

    /// The kept snapshots as `YYYY-MM-DDTHH` strings (UTC), newest first, with reasons.
    fn kept(decisions: &[Decision]) -> Vec<(String, String)> {
        decisions
            .iter()
            .filter(|d| d.keep)
            .map(|d| {
                (
                    d.snapshot.snapshot.time.format("%Y-%m-%dT%H").to_string(),
                    d.reasons.join(" + "),
                )
            })
            .collect()
    }

    fn expect(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn daily_weekly_monthly_yearly_over_a_year() {
        let snaps = year_of_snapshots(&[10]);
        let policy = Policy {
            daily: 7,
            weekly: 4,
            monthly: 6,
            yearly: 2,
            ..Default::default()
        };
        let d = apply_policy(&snaps, &policy, &Utc);
        assert_eq!(d.len(), 365);
        // 2025-12-29..31 are in ISO week 2026-W01; Sundays close the weeks before.
        // yearly: 2025 is the only year, so the second count keeps the oldest snapshot.
        assert_eq!(
            kept(&d),
            expect(&[
                (
                    "2025-12-31T10",
                    "daily snapshot + weekly snapshot + monthly snapshot + yearly snapshot"
                ),
                ("2025-12-30T10", "daily snapshot"),
                ("2025-12-29T10", "daily snapshot"),
                ("2025-12-28T10", "daily snapshot + weekly snapshot"),
                ("2025-12-27T10", "daily snapshot"),
                ("2025-12-26T10", "daily snapshot"),
                ("2025-12-25T10", "daily snapshot"),
                ("2025-12-21T10", "weekly snapshot"),
                ("2025-12-14T10", "weekly snapshot"),
                ("2025-11-30T10", "monthly snapshot"),
                ("2025-10-31T10", "monthly snapshot"),
                ("2025-09-30T10", "monthly snapshot"),
                ("2025-08-31T10", "monthly snapshot"),
                ("2025-07-31T10", "monthly snapshot"),
                ("2025-01-01T10", "oldest yearly snapshot"),
            ])
        );
    }

    #[test]
    fn last_hourly_within_and_tags() {
        let mut snaps = year_of_snapshots(&[0, 6, 12, 18]);
        snaps.push(snap("2025-03-15T07:00:00Z", "h", &["pin", "db"]));
        snaps.push(snap("2025-04-15T07:00:00Z", "h", &["pin"]));
        let policy = Policy {
            last: 2,
            hourly: 5,
            within: Some("2d".parse().unwrap()),
            tags: vec![vec!["pin".into(), "db".into()]],
            ..Default::default()
        };
        let d = apply_policy(&snaps, &policy, &Utc);
        // within 2d of the newest (12-31 18:00): strictly after 12-29 18:00.
        assert_eq!(
            kept(&d),
            expect(&[
                (
                    "2025-12-31T18",
                    "within 2d + last snapshot + hourly snapshot"
                ),
                (
                    "2025-12-31T12",
                    "within 2d + last snapshot + hourly snapshot"
                ),
                ("2025-12-31T06", "within 2d + hourly snapshot"),
                ("2025-12-31T00", "within 2d + hourly snapshot"),
                ("2025-12-30T18", "within 2d + hourly snapshot"),
                ("2025-12-30T12", "within 2d"),
                ("2025-12-30T06", "within 2d"),
                ("2025-12-30T00", "within 2d"),
                ("2025-03-15T07", "has tags pin,db"),
            ])
        );
    }

    #[test]
    fn within_buckets() {
        let snaps = year_of_snapshots(&[0, 12]);
        let policy = Policy {
            within_daily: Some("3d".parse().unwrap()),
            within_monthly: Some("2m".parse().unwrap()),
            ..Default::default()
        };
        let d = apply_policy(&snaps, &policy, &Utc);
        // Newest: 12-31 12:00. Daily within 3d counts times strictly after 12-28 12:00, monthly
        // within 2m those after 10-31 12:00 (so October has none).
        assert_eq!(
            kept(&d),
            expect(&[
                ("2025-12-31T12", "daily within 3d + monthly within 2m"),
                ("2025-12-30T12", "daily within 3d"),
                ("2025-12-29T12", "daily within 3d"),
                ("2025-11-30T12", "monthly within 2m"),
            ])
        );
    }

    #[test]
    fn unlimited_monthly_keeps_every_month_and_the_oldest() {
        let snaps = year_of_snapshots(&[10]);
        let policy = Policy {
            monthly: -1,
            ..Default::default()
        };
        let got: Vec<String> = kept(&apply_policy(&snaps, &policy, &Utc))
            .into_iter()
            .map(|(t, _)| t)
            .collect();
        assert_eq!(
            got,
            [
                "2025-12-31T10",
                "2025-11-30T10",
                "2025-10-31T10",
                "2025-09-30T10",
                "2025-08-31T10",
                "2025-07-31T10",
                "2025-06-30T10",
                "2025-05-31T10",
                "2025-04-30T10",
                "2025-03-31T10",
                "2025-02-28T10",
                "2025-01-31T10",
                "2025-01-01T10",
            ]
        );
    }

    #[test]
    fn buckets_follow_the_given_time_zone() {
        // 23:30 UTC on June 30 is July 1 in UTC+2.
        let snaps = vec![
            snap("2025-06-30T23:30:00Z", "h", &[]),
            snap("2025-06-30T10:00:00Z", "h", &[]),
            snap("2025-05-20T10:00:00Z", "h", &[]),
        ];
        let policy = Policy {
            monthly: 2,
            ..Default::default()
        };
        let utc: Vec<String> = kept(&apply_policy(&snaps, &policy, &Utc))
            .into_iter()
            .map(|(t, _)| t)
            .collect();
        assert_eq!(utc, ["2025-06-30T23", "2025-05-20T10"]);
        let plus2 = FixedOffset::east_opt(2 * 3600).unwrap();
        let local: Vec<String> = kept(&apply_policy(&snaps, &policy, &plus2))
            .into_iter()
            .map(|(t, _)| t)
            .collect();
        assert_eq!(local, ["2025-06-30T23", "2025-06-30T10"]);
    }

    #[test]
    fn groups_are_independent() {
        let snaps = vec![
            snap("2025-01-01T10:00:00Z", "a", &[]),
            snap("2025-01-02T10:00:00Z", "a", &[]),
            snap("2025-01-01T10:00:00Z", "b", &[]),
        ];
        let policy = Policy {
            last: 1,
            ..Default::default()
        };
        let plan = plan_forget(snaps.clone(), GroupBy::default(), &policy, &Utc);
        assert_eq!(plan.len(), 2);
        assert_eq!(plan[0].group.hostname.as_deref(), Some("a"));
        assert_eq!(kept(&plan[0].decisions).len(), 1);
        assert_eq!(kept(&plan[1].decisions).len(), 1);
        let one = plan_forget(snaps, "".parse().unwrap(), &policy, &Utc);
        assert_eq!(one.len(), 1);
        assert_eq!(kept(&one[0].decisions).len(), 1);
        assert!("host,colour".parse::<GroupBy>().is_err());
    }

    #[test]
    fn empty_policy_keeps_all() {
        let snaps = year_of_snapshots(&[10]);
        assert!(apply_policy(&snaps, &Policy::default(), &Utc)
            .iter()
            .all(|d| d.keep));
    }

    #[test]
    fn spans() {
        let s: Span = "1y2m3d4h".parse().unwrap();
        assert_eq!((s.years, s.months, s.days, s.hours), (1, 2, 3, 4));
        assert_eq!(s.to_string(), "1y2m3d4h");
        assert!("3w".parse::<Span>().is_err());
        assert!("5".parse::<Span>().is_err());
        assert!("".parse::<Span>().is_err());
        // Go's AddDate normalisation: March 31 minus one month is March 3.
        let t: DateTime<Utc> = "2025-03-31T12:00:00Z".parse().unwrap();
        let back = subtract_span(&t, &"1m".parse().unwrap());
        assert_eq!(back.to_rfc3339(), "2025-03-03T12:00:00+00:00");
        let back = subtract_span(&t, &"1y3d36h".parse().unwrap());
        assert_eq!(back.to_rfc3339(), "2024-03-27T00:00:00+00:00");
    }
}
