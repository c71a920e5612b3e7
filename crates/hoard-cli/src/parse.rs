//! Values the command line takes as restic spells them: sizes, durations and times.

/// Parses `30s`, `5m`, `2h`, `7d` or a plain number of seconds.
pub fn parse_wait(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let bad = || format!("{s:?}: use a number with s, m, h or d (e.g. 5m)");
    let n: u64 = num.parse().map_err(|_| bad())?;
    let scale = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(bad()),
    };
    n.checked_mul(scale)
        .map(std::time::Duration::from_secs)
        .ok_or_else(bad)
}

/// Parses a size as restic does: a number with an optional unit k, m, g or t (powers of
/// 1024, either case, an optional trailing `b`).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    let lower = lower.strip_suffix('b').unwrap_or(&lower);
    let (num, shift) = match lower.chars().last() {
        Some('k') => (&lower[..lower.len() - 1], 10),
        Some('m') => (&lower[..lower.len() - 1], 20),
        Some('g') => (&lower[..lower.len() - 1], 30),
        Some('t') => (&lower[..lower.len() - 1], 40),
        _ => (lower, 0),
    };
    let n: f64 = num
        .trim()
        .parse()
        .ok()
        .filter(|n: &f64| n.is_finite() && *n >= 0.0)
        .ok_or_else(|| format!("{s:?}: give a size like 500K, 10M or 2G"))?;
    let bytes = n * (1u64 << shift) as f64;
    if bytes >= u64::MAX as f64 {
        return Err(format!("{s:?} is too large"));
    }
    Ok(bytes as u64)
}

/// Parses RFC 3339, or "YYYY-MM-DD HH:MM:SS" in local time.
pub fn parse_time(s: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    use chrono::TimeZone;
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.into());
    }
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
        .ok()
        .and_then(|n| chrono::Local.from_local_datetime(&n).earliest())
        .map(Into::into)
        .ok_or_else(|| format!("{s:?}: use RFC 3339 or \"YYYY-MM-DD HH:MM:SS\""))
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_read_as_restic_reads_them() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("1500"), Ok(1500));
        assert_eq!(parse_size("2K"), Ok(2048));
        assert_eq!(parse_size("10m"), Ok(10 << 20));
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
        assert_eq!(parse_size("1TB"), Ok(1 << 40));
        for bad in ["", "M", "-1K", "10Q", "ten", "1e400"] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
    }
}
