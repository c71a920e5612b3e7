//! The policy engine: which snapshots of one group each `keep-*` rule keeps.

use chrono::{DateTime, Datelike, TimeZone, Timelike, Utc};
use serde::Serialize;

use super::span::{subtract_span, Span};
use crate::format::snapshot::SnapshotEntry;

/// A retention policy. Counts: 0 = rule off, -1 = unlimited.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Policy {
    /// Keep the newest N snapshots.
    pub last: i64,
    /// Keep the newest snapshot of each of the last N hours.
    pub hourly: i64,
    /// Keep the newest snapshot of each of the last N days.
    pub daily: i64,
    /// Keep the newest snapshot of each of the last N ISO weeks.
    pub weekly: i64,
    /// Keep the newest snapshot of each of the last N months.
    pub monthly: i64,
    /// Keep the newest snapshot of each of the last N years.
    pub yearly: i64,
    /// Keep every snapshot within this span of the newest.
    pub within: Option<Span>,
    /// The newest snapshot of each hour, day, ISO week, month and year within a span of the
    /// newest snapshot (`--keep-within-hourly` … `--keep-within-yearly`).
    pub within_hourly: Option<Span>,
    /// See `within_hourly`.
    pub within_daily: Option<Span>,
    /// See `within_hourly`.
    pub within_weekly: Option<Span>,
    /// See `within_hourly`.
    pub within_monthly: Option<Span>,
    /// See `within_hourly`.
    pub within_yearly: Option<Span>,
    /// Keep snapshots carrying all tags of any one entry.
    pub tags: Vec<Vec<String>>,
}

impl Policy {
    /// Whether no rule is set (an empty policy keeps everything).
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
    /// The snapshot.
    pub snapshot: SnapshotEntry,
    /// Whether the policy keeps it.
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
