//! The snapshot list: filters, the calendar, the timeline by day.

use std::collections::BTreeMap;
use std::fmt::Write;

use axum::extract::{RawQuery, State};
use axum::response::Html;
use hoard_core::SnapshotEntry;

use super::{newest_first, tags, Page};
use crate::html::{self, esc, page, query_text, url_bytes};
use crate::AppState;

/// Every snapshot, newest first, grouped by day (the timeline), filtered by host, tag or day.
pub async fn snapshots(State(st): State<AppState>, RawQuery(q): RawQuery) -> Page {
    // Later backups wrote index files this process has not loaded.
    st.repo.refresh_index().await?;
    let all = newest_first(st.repo.snapshots().await?);
    let host = query_text(q.as_deref(), "host");
    let tag = query_text(q.as_deref(), "tag");
    let day = query_text(q.as_deref(), "day");
    let mut hosts: BTreeMap<&str, usize> = BTreeMap::new();
    let mut tag_counts: BTreeMap<&str, usize> = BTreeMap::new();
    let mut days: BTreeMap<String, usize> = BTreeMap::new();
    for s in &all {
        *hosts.entry(&s.snapshot.hostname).or_default() += 1;
        for t in &s.snapshot.tags {
            *tag_counts.entry(t).or_default() += 1;
        }
        *days
            .entry(s.snapshot.time.format("%Y-%m-%d").to_string())
            .or_default() += 1;
    }
    let mut b = String::new();
    let filter = |k: &str, items: &BTreeMap<&str, usize>| {
        items
            .iter()
            .map(|(v, n)| {
                format!(
                    "<a href='/?{k}={}'>{}</a> ({n})",
                    url_bytes(v.as_bytes()),
                    esc(v)
                )
            })
            .collect::<Vec<_>>()
            .join(" · ")
    };
    let _ = write!(
        b,
        "<p>Hosts: {}<br>Tags: {}</p>{}",
        filter("host", &hosts),
        filter("tag", &tag_counts),
        calendar(&days)
    );
    if host.is_some() || tag.is_some() || day.is_some() {
        b.push_str("<p><a href='/'>show all</a></p>");
    }
    let shown: Vec<&SnapshotEntry> = all
        .iter()
        .filter(|s| host.as_ref().is_none_or(|h| &s.snapshot.hostname == h))
        .filter(|s| tag.as_ref().is_none_or(|t| s.snapshot.tags.contains(t)))
        .filter(|s| {
            day.as_ref()
                .is_none_or(|d| s.snapshot.time.format("%Y-%m-%d").to_string() == *d)
        })
        .collect();
    let _ = write!(b, "<p>{} of {} snapshots</p>", shown.len(), all.len());
    let mut current_day = String::new();
    for s in shown {
        let d = s.snapshot.time.format("%A %Y-%m-%d").to_string();
        if d != current_day {
            if !current_day.is_empty() {
                b.push_str("</table>");
            }
            let _ = write!(
                b,
                "<div class=day>{d}</div><table><tr><th>Snapshot</th><th>Time</th><th>Host</th><th>Tags</th><th>Paths</th><th>Files</th><th>Size</th></tr>"
            );
            current_day = d;
        }
        let (files, bytes) = s
            .snapshot
            .summary
            .as_ref()
            .map(|m| {
                (
                    m.total_files_processed.to_string(),
                    html::size(m.total_bytes_processed),
                )
            })
            .unwrap_or_default();
        let _ = write!(
            b,
            "<tr><td><a class=snap href='/s/{id}/tree'>{short}</a></td><td>{time}</td><td>{host}</td><td>{tags}</td><td>{paths}</td><td class=n>{files}</td><td class=n>{bytes}</td></tr>",
            id = s.id,
            short = s.short_id(),
            time = s.snapshot.time.format("%H:%M:%S"),
            host = esc(&s.snapshot.hostname),
            tags = tags(&s.snapshot.tags),
            paths = esc(&s.snapshot.paths.join(" ")),
        );
    }
    if !current_day.is_empty() {
        b.push_str("</table>");
    }
    Ok(Html(page("Snapshots", &b)))
}

/// The last months with snapshots as month grids; each day with snapshots links to them.
fn calendar(days: &BTreeMap<String, usize>) -> String {
    use chrono::{Datelike, NaiveDate};
    let mut months: Vec<(i32, u32)> = days
        .keys()
        .filter_map(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
        .map(|d| (d.year(), d.month()))
        .collect();
    months.dedup();
    let mut out = String::from("<div id=calendar style='display:flex;gap:2em;flex-wrap:wrap'>");
    for &(y, m) in months.iter().rev().take(3) {
        let Some(first) = NaiveDate::from_ymd_opt(y, m, 1) else {
            continue;
        };
        let next = if m == 12 {
            NaiveDate::from_ymd_opt(y + 1, 1, 1)
        } else {
            NaiveDate::from_ymd_opt(y, m + 1, 1)
        };
        let len = next.map_or(31, |n| (n - first).num_days()) as u32;
        let _ = write!(
            out,
            "<table style='width:auto'><tr><th colspan=7>{}</th></tr><tr><th>Mo</th><th>Tu</th><th>We</th><th>Th</th><th>Fr</th><th>Sa</th><th>Su</th></tr><tr>",
            first.format("%B %Y")
        );
        let lead = first.weekday().num_days_from_monday();
        out.push_str(&"<td></td>".repeat(lead as usize));
        for day in 1..=len {
            let key = format!("{y:04}-{m:02}-{day:02}");
            match days.get(&key) {
                Some(n) => {
                    let _ = write!(
                        out,
                        "<td><a href='/?day={key}' title='{n} snapshots'><b>{day}</b></a></td>"
                    );
                }
                None => {
                    let _ = write!(out, "<td class=muted>{day}</td>");
                }
            }
            if (lead + day) % 7 == 0 {
                out.push_str("</tr><tr>");
            }
        }
        out.push_str("</tr></table>");
    }
    out.push_str("</div>");
    out
}
