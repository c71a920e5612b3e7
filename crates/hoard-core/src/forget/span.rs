//! Spans for `--keep-within*`, as restic writes them (`1y2m3d4h`), and subtracting them from a
//! time the way restic does.

use chrono::{DateTime, Datelike, NaiveDate, TimeZone};
use serde::Serialize;

use crate::error::{Error, Result};

/// A span for `--keep-within`, as restic writes it: `1y2m3d4h` (years, months, days, hours).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Span {
    /// Calendar years.
    pub years: i32,
    /// Calendar months.
    pub months: i32,
    /// Days.
    pub days: i32,
    /// Hours.
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
pub(super) fn subtract_span<Tz: TimeZone>(t: &DateTime<Tz>, span: &Span) -> DateTime<Tz> {
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
