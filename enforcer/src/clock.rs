//! The clocks enforcer reads, in one place: wall time for the journal and the surfaces,
//! CLOCK_MONOTONIC for everything that is measured (the clock `bpf_ktime_get_ns` reads,
//! so kernel timestamps and user-space ones compare), and local time of day for the
//! capacity schedule.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// CLOCK_MONOTONIC in nanoseconds: the clock `bpf_ktime_get_ns` reads.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: plain syscall on a stack value; CLOCK_MONOTONIC cannot fail.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Minutes since local midnight.
pub fn local_minute_of_day() -> u32 {
    // SAFETY: time/localtime_r on stack values.
    unsafe {
        let now = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&now, &mut tm).is_null() {
            return 0;
        }
        (tm.tm_hour * 60 + tm.tm_min) as u32
    }
}

/// UTC `YYYY-MM-DDTHH:MM:SS.mmmZ` without a date library.
pub fn rfc3339(unix: f64) -> String {
    let secs = unix.floor() as i64;
    let millis = ((unix - secs as f64) * 1000.0) as u32;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Unix seconds of an RFC 3339 timestamp, `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)` (`T` may
/// be `t` or a space and `Z` may be `z`, as RFC 3339 allows); `None` for anything else,
/// never a panic: the ledger is input, and so are `--since`/`--until`, which `enforcer
/// usage` parses with this. No date library is a dependency of this crate.
pub fn parse_rfc3339(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let digits = b.get(from..from + len)?;
        digits.iter().try_fold(0i64, |acc, &d| {
            d.is_ascii_digit().then(|| acc * 10 + i64::from(d - b'0'))
        })
    };
    let at = |i: usize, c: u8| b.get(i) == Some(&c);
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if !(at(4, b'-') && at(7, b'-') && at(13, b':') && at(16, b':')) {
        return None;
    }
    if !matches!(b.get(10), Some(b'T' | b't' | b' ')) {
        return None;
    }
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    // Second 60 is a leap second: it counts as the first second of the next minute.
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut i = 19;
    let mut fraction = 0.0;
    if at(i, b'.') {
        i += 1;
        let digits = b[i..].iter().take_while(|d| d.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        // Nanoseconds as an integer, so `.1` is exactly a tenth before the one division.
        let nanos = b[i..i + digits.min(9)]
            .iter()
            .fold(0i64, |acc, &d| acc * 10 + i64::from(d - b'0'))
            * 10i64.pow(9 - digits.min(9) as u32);
        fraction = nanos as f64 / 1e9;
        i += digits;
    }
    let offset = match b.get(i) {
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(&sign @ (b'+' | b'-')) if i + 6 == b.len() && at(i + 3, b':') => {
            let (h, m) = (num(i + 1, 2)?, num(i + 4, 2)?);
            if h > 23 || m > 59 {
                return None;
            }
            let offset = h * 3600 + m * 60;
            if sign == b'-' { -offset } else { offset }
        }
        _ => return None,
    };
    let secs =
        days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset;
    Some(secs as f64 + fraction)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm, the
/// inverse of the one `clock::rfc3339` uses).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::parse_rfc3339;

    #[test]
    fn timestamps_are_utc() {
        assert_eq!(super::rfc3339(0.0), "1970-01-01T00:00:00.000Z");
        assert_eq!(super::rfc3339(1_795_526_289.25), "2026-11-24T13:18:09.250Z");
    }

    #[test]
    fn rfc3339_parses_fractions_and_offsets() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(
            parse_rfc3339("2026-11-24T13:18:09.250Z"),
            Some(1_795_526_289.25)
        );
        let base = 1_795_526_289.0;
        assert_eq!(parse_rfc3339("2026-11-24T13:18:09+00:00"), Some(base));
        assert_eq!(parse_rfc3339("2026-11-24T18:48:09+05:30"), Some(base));
        assert_eq!(parse_rfc3339("2026-11-24T05:18:09-08:00"), Some(base));
        assert_eq!(parse_rfc3339("2026-11-24t13:18:09z"), Some(base));
        assert_eq!(parse_rfc3339("2026-11-24 13:18:09Z"), Some(base));
        let nanos = parse_rfc3339("2026-11-24T13:18:09.123456789123Z").unwrap_or_default();
        assert!((nanos - (base + 0.123_456_789)).abs() < 1e-6);
        let tenth = parse_rfc3339("2026-11-24T13:18:09.1+00:00").unwrap_or_default();
        assert!((tenth - (base + 0.1)).abs() < 1e-6);
        // Leap days, before the epoch, and the clock's own output round-trips.
        assert_eq!(parse_rfc3339("2024-02-29T00:00:00Z"), Some(1_709_164_800.0));
        assert_eq!(parse_rfc3339("2000-02-29T00:00:00Z"), Some(951_782_400.0));
        assert_eq!(parse_rfc3339("1969-12-31T23:59:59Z"), Some(-1.0));
        let t = 1_796_000_000.5;
        assert_eq!(parse_rfc3339(&super::rfc3339(t)), Some(t));
    }

    #[test]
    fn rfc3339_rejects_malformed_times_without_panicking() {
        for bad in [
            "",
            "2026-12-03",
            "2026-12-03T15:46:25",
            "2026-12-03T15:46:25.Z",
            "2026-12-03T15:46:25ZZ",
            "2026-12-03T15:46:25+0100",
            "2026-12-03T15:46:25+01:00:00",
            "2026-12-03T15:46:25+24:00",
            "2026-13-03T15:46:25Z",
            "2026-00-03T15:46:25Z",
            "2025-02-29T00:00:00Z",
            "1900-02-29T00:00:00Z",
            "2026-04-31T00:00:00Z",
            "2026-12-03T24:00:00Z",
            "2026-12-03T15:60:00Z",
            "2026-12-03X15:46:25Z",
            "2026/12/03T15:46:25Z",
            "+026-12-03T15:46:25Z",
            "2026-12-03T15:46:25.ééZ",
            "2026-12-0éT15:46:25Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad:?}");
        }
    }
}
