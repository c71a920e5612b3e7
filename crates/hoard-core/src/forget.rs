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

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Timelike, Utc};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::snapshot::SnapshotEntry;

/// A span for `--keep-within`, as restic writes it: `1y2m3d4h` (years, months, days, hours).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Span {
    pub years: i32,
    pub months: i32,
    pub days: i32,
    pub hours: i32,
}

impl std::str::FromStr for Span {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad =
            |why: &str| Error::invalid("duration", format!("{s:?}: {why} (e.g. 1y6m, 14d, 36h)"));
        let mut span = Span::default();
        let mut digits = String::new();
        for c in s.trim().chars() {
            if c.is_ascii_digit() {
                digits.push(c);
                continue;
            }
            let n: i32 = digits
                .parse()
                .map_err(|_| bad("a number must come before each unit"))?;
            digits.clear();
            match c {
                'y' => span.years += n,
                'm' => span.months += n,
                'd' => span.days += n,
                'h' => span.hours += n,
                _ => return Err(bad("units are y, m, d and h")),
            }
        }
        if !digits.is_empty() {
            return Err(bad("the last number has no unit"));
        }
        if span == Span::default() {
            return Err(bad("empty"));
        }
        Ok(span)
    }
}

impl std::fmt::Display for Span {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (n, u) in [
            (self.years, 'y'),
            (self.months, 'm'),
            (self.days, 'd'),
            (self.hours, 'h'),
        ] {
            if n != 0 {
                write!(f, "{n}{u}")?;
            }
        }
        Ok(())
    }
}

/// Subtracts a span the way Go's `AddDate` does (restic's reference): year, month and day are
/// subtracted field by field and the result normalised, so March 31 minus one month is March 3.
fn subtract_span<Tz: TimeZone>(t: &DateTime<Tz>, span: &Span) -> DateTime<Tz> {
    let months = t.year() * 12 + t.month0() as i32 - span.years * 12 - span.months;
    let (y, m0) = (months.div_euclid(12), months.rem_euclid(12) as u32);
    let first = NaiveDate::from_ymd_opt(y, m0 + 1, 1).unwrap_or(NaiveDate::MIN);
    let day = first + chrono::Duration::days(i64::from(t.day() as i32 - 1 - span.days));
    let naive = day.and_time(t.time()) - chrono::Duration::hours(i64::from(span.hours));
    t.timezone()
        .from_local_datetime(&naive)
        .earliest()
        .unwrap_or_else(|| t.clone())
}

/// A retention policy. Counts: 0 = rule off, -1 = unlimited.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Policy {
    pub last: i64,
    pub hourly: i64,
    pub daily: i64,
    pub weekly: i64,
    pub monthly: i64,
    pub yearly: i64,
    pub within: Option<Span>,
    /// The newest snapshot of each hour, day, ISO week, month and year within a span of the
    /// newest snapshot (`--keep-within-hourly` … `--keep-within-yearly`).
    pub within_hourly: Option<Span>,
    pub within_daily: Option<Span>,
    pub within_weekly: Option<Span>,
    pub within_monthly: Option<Span>,
    pub within_yearly: Option<Span>,
    /// Keep snapshots carrying all tags of any one entry.
    pub tags: Vec<Vec<String>>,
}

impl Policy {
    pub fn is_empty(&self) -> bool {
        [
            self.last,
            self.hourly,
            self.daily,
            self.weekly,
            self.monthly,
            self.yearly,
        ]
        .iter()
        .all(|n| *n == 0)
            && [
                self.within,
                self.within_hourly,
                self.within_daily,
                self.within_weekly,
                self.within_monthly,
                self.within_yearly,
            ]
            .iter()
            .all(Option::is_none)
            && self.tags.is_empty()
    }
}

/// What one snapshot got, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    pub snapshot: SnapshotEntry,
    pub keep: bool,
    /// The rules that kept it (empty when removed).
    pub reasons: Vec<String>,
}

/// Applies `policy` to one group. `tz` is the zone whose calendar defines hours, days, weeks,
/// months and years. Returns decisions newest first. An empty policy keeps everything.
pub fn apply_policy<Tz: TimeZone>(
    snapshots: &[SnapshotEntry],
    policy: &Policy,
    tz: &Tz,
) -> Vec<Decision> {
    let mut list: Vec<&SnapshotEntry> = snapshots.iter().collect();
    list.sort_by(|a, b| b.snapshot.time.cmp(&a.snapshot.time).then(b.id.cmp(&a.id)));
    if policy.is_empty() {
        return list
            .into_iter()
            .map(|s| Decision {
                snapshot: s.clone(),
                keep: true,
                reasons: vec!["policy is empty".into()],
            })
            .collect();
    }
    type Bucket = fn(&NaiveBucketTime, usize) -> i64;
    let hour: Bucket = |t, _| t.day_key() * 100 + t.hour;
    let day: Bucket = |t, _| t.day_key();
    let week: Bucket = |t, _| t.iso_year * 100 + t.iso_week;
    let month: Bucket = |t, _| t.year * 100 + t.month;
    let year: Bucket = |t, _| t.year;
    let rules: [(i64, Bucket, &str); 6] = [
        (policy.last, |_, nr| nr as i64, "last snapshot"),
        (policy.hourly, hour, "hourly snapshot"),
        (policy.daily, day, "daily snapshot"),
        (policy.weekly, week, "weekly snapshot"),
        (policy.monthly, month, "monthly snapshot"),
        (policy.yearly, year, "yearly snapshot"),
    ];
    let newest = list.first().map(|s| s.snapshot.time.with_timezone(tz));
    let limit = |span: Option<Span>| {
        span.zip(newest.as_ref())
            .map(|(span, newest)| (span, subtract_span(newest, &span).with_timezone(&Utc)))
    };
    /// A span and the time it reaches back to.
    type Limit = Option<(Span, DateTime<Utc>)>;
    let within_rules: [(Limit, Bucket, &str); 5] = [
        (limit(policy.within_hourly), hour, "hourly within"),
        (limit(policy.within_daily), day, "daily within"),
        (limit(policy.within_weekly), week, "weekly within"),
        (limit(policy.within_monthly), month, "monthly within"),
        (limit(policy.within_yearly), year, "yearly within"),
    ];
    let mut within_last: Vec<Option<i64>> = vec![None; within_rules.len()];
    let mut counts: Vec<i64> = rules.iter().map(|r| r.0).collect();
    let mut last_bucket: Vec<Option<i64>> = vec![None; rules.len()];
    let within_limit = limit(policy.within);
    let n = list.len();
    let mut out = Vec::with_capacity(n);
    for (nr, s) in list.into_iter().enumerate() {
        let mut reasons = Vec::new();
        for tags in &policy.tags {
            if tags.iter().all(|t| s.snapshot.tags.contains(t)) {
                reasons.push(format!("has tags {}", tags.join(",")));
            }
        }
        if let Some((span, limit)) = within_limit {
            if s.snapshot.time > limit {
                reasons.push(format!("within {span}"));
            }
        }
        let t = NaiveBucketTime::new(&s.snapshot.time.with_timezone(tz));
        for (i, (_, bucket, reason)) in rules.iter().enumerate() {
            if counts[i] == 0 {
                continue;
            }
            let val = bucket(&t, nr);
            let new_bucket = last_bucket[i] != Some(val);
            if new_bucket || nr == n - 1 {
                last_bucket[i] = Some(val);
                if counts[i] > 0 {
                    counts[i] -= 1;
                }
                reasons.push(if new_bucket {
                    (*reason).to_string()
                } else {
                    format!("oldest {reason}")
                });
            }
        }
        for (i, (rule, bucket, reason)) in within_rules.iter().enumerate() {
            let Some((span, limit)) = rule else { continue };
            if s.snapshot.time <= *limit {
                continue;
            }
            let val = bucket(&t, nr);
            let new_bucket = within_last[i] != Some(val);
            if new_bucket || nr == n - 1 {
                within_last[i] = Some(val);
                reasons.push(if new_bucket {
                    format!("{reason} {span}")
                } else {
                    format!("oldest {reason} {span}")
                });
            }
        }
        out.push(Decision {
            snapshot: s.clone(),
            keep: !reasons.is_empty(),
            reasons,
        });
    }
    out
}

/// Calendar fields of a snapshot time in the policy's zone.
struct NaiveBucketTime {
    year: i64,
    month: i64,
    day: i64,
    hour: i64,
    iso_year: i64,
    iso_week: i64,
}

impl NaiveBucketTime {
    fn new<Tz: TimeZone>(t: &DateTime<Tz>) -> Self {
        let iso = t.iso_week();
        NaiveBucketTime {
            year: i64::from(t.year()),
            month: i64::from(t.month()),
            day: i64::from(t.day()),
            hour: i64::from(t.hour()),
            iso_year: i64::from(iso.year()),
            iso_week: i64::from(iso.week()),
        }
    }

    fn day_key(&self) -> i64 {
        (self.year * 100 + self.month) * 100 + self.day
    }
}

/// What snapshots are grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct GroupBy {
    pub host: bool,
    pub paths: bool,
    pub tags: bool,
}

impl Default for GroupBy {
    fn default() -> Self {
        GroupBy {
            host: true,
            paths: true,
            tags: false,
        }
    }
}

impl std::str::FromStr for GroupBy {
    type Err = Error;

    /// `host,paths,tags` in any combination; an empty string puts all snapshots in one group.
    fn from_str(s: &str) -> Result<Self> {
        let mut g = GroupBy {
            host: false,
            paths: false,
            tags: false,
        };
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "host" => g.host = true,
                "paths" | "path" => g.paths = true,
                "tags" | "tag" => g.tags = true,
                other => {
                    return Err(Error::invalid(
                        "--group-by",
                        format!("{other:?} (use host, paths and tags, comma separated)"),
                    ))
                }
            }
        }
        Ok(g)
    }
}

/// The shared values of one group (fields not grouped by are absent).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Default)]
pub struct GroupKey {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paths: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
}

impl std::fmt::Display for GroupKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if let Some(h) = &self.hostname {
            parts.push(format!("host [{h}]"));
        }
        if let Some(p) = &self.paths {
            parts.push(format!("paths [{}]", p.join(", ")));
        }
        if let Some(t) = &self.tags {
            parts.push(format!("tags [{}]", t.join(", ")));
        }
        if parts.is_empty() {
            f.write_str("all snapshots")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

/// Splits snapshots into groups, in key order.
pub fn group_snapshots(
    snapshots: Vec<SnapshotEntry>,
    by: GroupBy,
) -> BTreeMap<GroupKey, Vec<SnapshotEntry>> {
    let mut groups: BTreeMap<GroupKey, Vec<SnapshotEntry>> = BTreeMap::new();
    for s in snapshots {
        let sorted = |v: &Vec<String>| {
            let mut v = v.clone();
            v.sort();
            v
        };
        let key = GroupKey {
            hostname: by.host.then(|| s.snapshot.hostname.clone()),
            paths: by.paths.then(|| sorted(&s.snapshot.paths)),
            tags: by.tags.then(|| sorted(&s.snapshot.tags)),
        };
        groups.entry(key).or_default().push(s);
    }
    groups
}

/// The decisions for one group.
#[derive(Debug, Clone, Serialize)]
pub struct GroupDecision {
    pub group: GroupKey,
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

/// Deletes snapshot files under a shared lock: removing a snapshot frees nothing by itself, so
/// it may run beside backups; prune (exclusive) later removes the data.
pub async fn forget_snapshots(
    repo: &crate::repository::Repository,
    ids: &[crate::id::Id],
    lock: &crate::lock::LockOptions,
) -> Result<()> {
    crate::lock::with_lock(repo, false, lock, |_| async move {
        for id in ids {
            repo.delete_file(crate::repository::FileKind::Snapshot, id)
                .await?;
        }
        Ok(())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::Id;
    use crate::snapshot::Snapshot;
    use chrono::FixedOffset;

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
