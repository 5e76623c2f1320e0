//! uWSGI's cron specs and the option values of the signal framework's event sources
//! (`--timer`, `--cron`, `--file-monitor`), as pure parsers and one matcher.
//!
//! The master owns the event loop that raises the signals; this module only answers "is this
//! spec due at this minute?" and "what does this option value say?", so both can be tested
//! without a clock or a master.
//!
//! # Cron semantics (uWSGI's `uwsgi_cron_task_needs_execution`, `core/master_utils.c`)
//!
//! A spec is five integers, `MINUTE HOUR DAY MONTH WEEKDAY`, compared with the *local* time
//! (uWSGI calls `localtime`, then adds 1 to `tm_mon` so that months are 1-12):
//!
//! - `N >= 0` matches when the field equals `N` (weekday: 0-6, Sunday is 0).
//! - `-1` matches any value (`*`).
//! - `-N` matches when `value % N == 0` (`*/N`): `-5` in the minute field is minutes 0, 5, ...
//!   55. The modulo is on the value itself, so `-2` in the month field means the even
//!   months and `-7` in the weekday field means Sunday only.
//! - Day of month and weekday are ORed **only when both are explicit** (`>= 0`), as in
//!   Vixie cron: `0 0 1 -1 1` runs on the 1st and on every Monday. When either is negative
//!   the fields are ANDed: `0 0 -2 -1 1` runs on Mondays that fall on an even day (Vixie cron
//!   would OR there, because neither field is `*`).
//!
//! A spec matches for a whole minute; uWSGI raises the signal once per match by remembering
//! the last run and requiring 60 s between two runs. That bookkeeping is the caller's.

use std::path::PathBuf;
use std::time::Duration;

/// One uWSGI cron spec; each field is a value, `-1` for any, or `-N` for every N.
///
/// The fields are `i32`, not an enum, because uWSGI's stats document and Python API carry
/// them as these plain integers (`crons[] {minute, hour, day, month, week}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CronSpec {
    /// 0-59, or -1..=-60.
    pub minute: i32,
    /// 0-23, or -1..=-24.
    pub hour: i32,
    /// Day of month 1-31, or -1..=-31.
    pub day: i32,
    /// 1-12, or -1..=-12.
    pub month: i32,
    /// 0-6 with Sunday 0, or -1..=-7.
    pub weekday: i32,
}

/// The calendar fields a cron spec is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrokenDownTime {
    /// 0-59.
    pub minute: i32,
    /// 0-23.
    pub hour: i32,
    /// Day of month, 1-31.
    pub mday: i32,
    /// 1-12 (not `tm_mon`'s 0-11: specs are written with 1-12).
    pub month: i32,
    /// 0-6, Sunday 0.
    pub wday: i32,
}

impl BrokenDownTime {
    /// The UTC calendar fields of a Unix time, by plain arithmetic (no time zone database).
    ///
    /// Used by the tests to check [`local_time`] and by callers that want cron in UTC.
    pub fn utc(epoch_secs: i64) -> BrokenDownTime {
        let days = epoch_secs.div_euclid(86_400);
        let secs = epoch_secs.rem_euclid(86_400);
        // Days since 1970-01-01 to a civil date (H. Hinnant, "chrono-compatible low-level
        // date algorithms", civil_from_days), with March-based years so February is last. The
        // year itself is not needed.
        let z = days + 719_468;
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let mday = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        BrokenDownTime {
            minute: (secs / 60 % 60) as i32,
            hour: (secs / 3600) as i32,
            mday: mday as i32,
            month: month as i32,
            // 1970-01-01 was a Thursday (4).
            wday: (days + 4).rem_euclid(7) as i32,
        }
    }
}

/// Local time, as uWSGI's cron uses: specs are written in the operator's wall-clock time.
///
/// Falls back to UTC if the C library cannot convert (it does not fail on Linux in practice).
pub fn now_local() -> BrokenDownTime {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    local_time(secs)
}

/// The local calendar fields of a Unix time.
pub fn local_time(epoch_secs: i64) -> BrokenDownTime {
    crate::sys::local_time(epoch_secs)
        .map(|(tm, _)| tm)
        .unwrap_or_else(|| BrokenDownTime::utc(epoch_secs))
}

/// Accepted range of each field, in spec order: (name, lowest value, highest value, largest
/// N of `-N`). `-N` beyond the field's span would never differ from a plain value, so it is
/// refused as a likely typo.
const FIELDS: [(&str, i32, i32, i32); 5] = [
    ("minute", 0, 59, 60),
    ("hour", 0, 23, 24),
    ("day", 1, 31, 31),
    ("month", 1, 12, 12),
    ("weekday", 0, 6, 7),
];

/// Parse `"MINUTE HOUR DAY MONTH WEEKDAY"` (whitespace separated integers).
pub fn parse(s: &str) -> Result<CronSpec, String> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    if parts.len() != 5 {
        return Err(format!(
            "cron spec \"{s}\": expected 5 fields (MINUTE HOUR DAY MONTH WEEKDAY), found {}",
            parts.len()
        ));
    }
    let mut v = [0i32; 5];
    for (i, (part, (name, lo, hi, every))) in parts.iter().zip(FIELDS).enumerate() {
        let n: i32 = part
            .parse()
            .map_err(|_| format!("cron spec \"{s}\": {name} \"{part}\" is not an integer"))?;
        let ok = (lo..=hi).contains(&n) || (-every..=-1).contains(&n);
        if !ok {
            let sunday = if name == "weekday" && n == 7 {
                " (Sunday is 0)"
            } else {
                ""
            };
            return Err(format!(
                "cron spec \"{s}\": {name} {n} is out of range: {lo}-{hi}, -1 for any, \
                 or -N (N <= {every}) for every N{sunday}"
            ));
        }
        v[i] = n;
    }
    Ok(CronSpec {
        minute: v[0],
        hour: v[1],
        day: v[2],
        month: v[3],
        weekday: v[4],
    })
}

/// One field: a value must be equal, `-N` matches multiples of N (so `-1` matches all).
fn field_matches(spec: i32, value: i32) -> bool {
    if spec < 0 {
        i64::from(value).rem_euclid(i64::from(spec.unsigned_abs())) == 0
    } else {
        spec == value
    }
}

/// Whether `spec` is due at `tm` (see the module docs for the OR rule).
pub fn matches(spec: &CronSpec, tm: &BrokenDownTime) -> bool {
    let base = field_matches(spec.minute, tm.minute)
        && field_matches(spec.hour, tm.hour)
        && field_matches(spec.month, tm.month);
    let day = field_matches(spec.day, tm.mday);
    let week = field_matches(spec.weekday, tm.wday);
    if spec.day >= 0 && spec.weekday >= 0 {
        base && (day || week)
    } else {
        base && day && week
    }
}

/// A uWSGI signal number: one byte.
fn parse_signum(opt: &str, s: &str, n: &str) -> Result<u8, String> {
    n.parse::<u8>()
        .map_err(|_| format!("{opt} \"{s}\": signal \"{n}\" is not a number from 0 to 255"))
}

/// Split an option value into its signal number and the rest (trimmed, never empty).
fn split_signum<'a>(opt: &str, s: &'a str, what: &str) -> Result<(u8, &'a str), String> {
    let s_trim = s.trim();
    let (num, rest) = s_trim
        .split_once(char::is_whitespace)
        .ok_or_else(|| format!("{opt} \"{s}\": expected \"SIGNAL {what}\""))?;
    let rest = rest.trim();
    if rest.is_empty() {
        return Err(format!("{opt} \"{s}\": expected \"SIGNAL {what}\""));
    }
    Ok((parse_signum(opt, s, num)?, rest))
}

/// `--timer "SIGNAL SECONDS"`: raise SIGNAL every SECONDS. uWSGI takes whole seconds;
/// fractions are allowed here (down to 1 ms), since the master's timers have that resolution.
pub fn parse_timer(s: &str) -> Result<(u8, Duration), String> {
    let (sig, secs) = split_signum("--timer", s, "SECONDS")?;
    match secs.parse::<f64>() {
        Ok(n) if n.is_finite() && (0.001..=1e9).contains(&n) => {
            Ok((sig, Duration::from_secs_f64(n)))
        }
        _ => Err(format!(
            "--timer \"{s}\": seconds \"{secs}\" is not a number from 0.001 to 1e9"
        )),
    }
}

/// `--cron "SIGNAL MINUTE HOUR DAY MONTH WEEKDAY"`: raise SIGNAL when the spec matches.
pub fn parse_cron_option(s: &str) -> Result<(u8, CronSpec), String> {
    let (sig, spec) = split_signum("--cron", s, "MINUTE HOUR DAY MONTH WEEKDAY")?;
    Ok((sig, parse(spec).map_err(|e| format!("--cron: {e}"))?))
}

/// `--file-monitor "SIGNAL PATH"`: raise SIGNAL when PATH changes. The path is the rest of
/// the value, so it may contain spaces (leading and trailing ones are dropped).
pub fn parse_file_monitor(s: &str) -> Result<(u8, PathBuf), String> {
    let (sig, path) = split_signum("--file-monitor", s, "PATH")?;
    Ok((sig, PathBuf::from(path)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tm(minute: i32, hour: i32, mday: i32, month: i32, wday: i32) -> BrokenDownTime {
        BrokenDownTime {
            minute,
            hour,
            mday,
            month,
            wday,
        }
    }

    fn spec(s: &str) -> CronSpec {
        parse(s).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn parse_accepts_values_any_and_every() {
        assert_eq!(
            spec("59 23 31 12 6"),
            CronSpec {
                minute: 59,
                hour: 23,
                day: 31,
                month: 12,
                weekday: 6
            }
        );
        assert_eq!(
            spec(" -5\t-1  -31 -12 -7 "),
            CronSpec {
                minute: -5,
                hour: -1,
                day: -31,
                month: -12,
                weekday: -7
            }
        );
        assert_eq!(spec("-60 -24 1 1 0").minute, -60);
    }

    #[test]
    fn parse_rejects_bad_specs() {
        for (input, needle) in [
            ("", "expected 5 fields"),
            ("1 2 3 4", "found 4"),
            ("1 2 3 4 5 6", "found 6"),
            ("x 2 3 4 5", "minute \"x\" is not an integer"),
            ("1.5 2 3 4 5", "is not an integer"),
            ("60 0 1 1 0", "minute 60 is out of range"),
            ("-61 0 1 1 0", "minute -61"),
            ("0 24 1 1 0", "hour 24"),
            ("0 -25 1 1 0", "hour -25"),
            ("0 0 0 1 0", "day 0"),
            ("0 0 32 1 0", "day 32"),
            ("0 0 1 0 0", "month 0"),
            ("0 0 1 13 0", "month 13"),
            ("0 0 1 -13 0", "month -13"),
            ("0 0 1 1 7", "(Sunday is 0)"),
            ("0 0 1 1 -8", "weekday -8"),
            ("0 0 1 1 99999999999", "not an integer"),
        ] {
            let err = parse(input).expect_err(input);
            assert!(err.contains(needle), "{input:?}: {err}");
        }
    }

    #[test]
    fn matching_table() {
        // (spec, time, expected); times as (minute, hour, mday, month, wday).
        // 2024-03-15 was a Friday (5); 2024-03-18 a Monday (1).
        let cases: &[(&str, BrokenDownTime, bool)] = &[
            // Every minute.
            ("-1 -1 -1 -1 -1", tm(0, 0, 1, 1, 0), true),
            ("-1 -1 -1 -1 -1", tm(37, 13, 15, 3, 5), true),
            // Exact values.
            ("30 2 15 3 -1", tm(30, 2, 15, 3, 5), true),
            ("30 2 15 3 -1", tm(31, 2, 15, 3, 5), false),
            ("30 2 15 3 -1", tm(30, 3, 15, 3, 5), false),
            ("30 2 15 3 -1", tm(30, 2, 16, 3, 6), false),
            ("30 2 15 3 -1", tm(30, 2, 15, 4, 1), false),
            // Every N: value % N == 0.
            ("-5 -1 -1 -1 -1", tm(0, 9, 1, 1, 0), true),
            ("-5 -1 -1 -1 -1", tm(55, 9, 1, 1, 0), true),
            ("-5 -1 -1 -1 -1", tm(56, 9, 1, 1, 0), false),
            ("-5 -1 -1 -1 -1", tm(3, 9, 1, 1, 0), false),
            ("0 -6 -1 -1 -1", tm(0, 18, 1, 1, 0), true),
            ("0 -6 -1 -1 -1", tm(0, 19, 1, 1, 0), false),
            // Months are 1-12, so -2 is the even months and -12 is December only.
            ("0 0 1 -2 -1", tm(0, 0, 1, 2, 4), true),
            ("0 0 1 -2 -1", tm(0, 0, 1, 1, 1), false),
            ("0 0 1 -12 -1", tm(0, 0, 1, 12, 0), true),
            ("0 0 1 -12 -1", tm(0, 0, 1, 6, 6), false),
            // -7 in the weekday field: Sunday only (0 % 7 == 0).
            ("0 0 -1 -1 -7", tm(0, 0, 3, 3, 0), true),
            ("0 0 -1 -1 -7", tm(0, 0, 4, 3, 1), false),
            // Both day and weekday explicit: ORed. The 1st, or any Monday.
            ("0 0 1 -1 1", tm(0, 0, 1, 3, 5), true),
            ("0 0 1 -1 1", tm(0, 0, 18, 3, 1), true),
            ("0 0 1 -1 1", tm(0, 0, 15, 3, 5), false),
            // ... but the time fields still have to match.
            ("0 0 1 -1 1", tm(1, 0, 18, 3, 1), false),
            // One of them negative: ANDed. Only Mondays (wday 1) on an even day.
            ("0 0 -2 -1 1", tm(0, 0, 18, 3, 1), true),
            ("0 0 -2 -1 1", tm(0, 0, 25, 3, 1), false),
            ("0 0 -2 -1 1", tm(0, 0, 16, 3, 6), false),
            // Day explicit, weekday any: ANDed with "any", i.e. the day alone.
            ("0 0 15 -1 -1", tm(0, 0, 15, 3, 5), true),
            ("0 0 15 -1 -1", tm(0, 0, 14, 3, 4), false),
            // Weekday explicit, day any: Fridays.
            ("0 12 -1 -1 5", tm(0, 12, 15, 3, 5), true),
            ("0 12 -1 -1 5", tm(0, 12, 14, 3, 4), false),
        ];
        for (s, t, expected) in cases {
            assert_eq!(matches(&spec(s), t), *expected, "{s} at {t:?}");
        }
    }

    #[test]
    fn matches_tolerates_out_of_range_fields() {
        // The fields are public, so a caller can bypass `parse`; that must not panic.
        let s = CronSpec {
            minute: i32::MIN,
            hour: -1,
            day: -1,
            month: -1,
            weekday: -1,
        };
        assert!(matches(&s, &tm(0, 0, 1, 1, 0)));
        assert!(!matches(&s, &tm(1, 0, 1, 1, 0)));
    }

    #[test]
    fn utc_calendar_fields() {
        assert_eq!(BrokenDownTime::utc(0), tm(0, 0, 1, 1, 4));
        // 2023-11-14 22:13:20 UTC, a Tuesday.
        assert_eq!(BrokenDownTime::utc(1_700_000_000), tm(13, 22, 14, 11, 2));
        // 2024-02-29 23:59:59 UTC (leap day), a Thursday.
        assert_eq!(BrokenDownTime::utc(1_709_251_199), tm(59, 23, 29, 2, 4));
        // One second later: March 1st.
        assert_eq!(BrokenDownTime::utc(1_709_251_200), tm(0, 0, 1, 3, 5));
        // 1969-12-31 23:59:00 UTC, a Wednesday (negative times use euclidean division).
        assert_eq!(BrokenDownTime::utc(-60), tm(59, 23, 31, 12, 3));
    }

    #[test]
    fn local_time_is_utc_shifted_by_the_zone_offset() {
        for t in [0i64, 1_700_000_000, 1_709_251_199, 1_720_000_000] {
            let (local, gmtoff) = crate::sys::local_time(t).expect("localtime_r");
            assert_eq!(local, BrokenDownTime::utc(t + gmtoff), "t={t}");
            assert_eq!(local_time(t), local);
        }
        let now = now_local();
        assert!((0..60).contains(&now.minute) && (1..=12).contains(&now.month));
    }

    #[test]
    fn timer_option() {
        assert_eq!(parse_timer("17 5"), Ok((17, Duration::from_secs(5))));
        assert_eq!(parse_timer(" 0\t3600 "), Ok((0, Duration::from_secs(3600))));
        assert_eq!(parse_timer("255 1"), Ok((255, Duration::from_secs(1))));
        assert_eq!(parse_timer("3 0.25"), Ok((3, Duration::from_millis(250))));
        for (input, needle) in [
            ("256 5", "signal \"256\""),
            ("-1 5", "signal \"-1\""),
            ("x 5", "signal \"x\""),
            ("5", "expected \"SIGNAL SECONDS\""),
            ("5 ", "expected \"SIGNAL SECONDS\""),
            ("5 0", "not a number from 0.001"),
            ("5 0.0001", "not a number from 0.001"),
            ("5 inf", "not a number from 0.001"),
            ("5 1 2", "not a number from 0.001"),
        ] {
            let err = parse_timer(input).expect_err(input);
            assert!(err.contains(needle), "{input:?}: {err}");
        }
    }

    #[test]
    fn cron_option() {
        assert_eq!(
            parse_cron_option("3 -5 -1 -1 -1 -1"),
            Ok((
                3,
                CronSpec {
                    minute: -5,
                    hour: -1,
                    day: -1,
                    month: -1,
                    weekday: -1
                }
            ))
        );
        let err = parse_cron_option("3 -5 -1 -1 -1").unwrap_err();
        assert!(err.contains("found 4"), "{err}");
        let err = parse_cron_option("300 0 0 1 1 0").unwrap_err();
        assert!(err.contains("signal \"300\""), "{err}");
        let err = parse_cron_option("3 0 0 1 1 7").unwrap_err();
        assert!(err.contains("Sunday is 0"), "{err}");
    }

    #[test]
    fn file_monitor_option() {
        assert_eq!(
            parse_file_monitor("9 /etc/app.conf"),
            Ok((9, PathBuf::from("/etc/app.conf")))
        );
        assert_eq!(
            parse_file_monitor("9   /srv/my app/reload me  "),
            Ok((9, PathBuf::from("/srv/my app/reload me")))
        );
        assert!(parse_file_monitor("9").unwrap_err().contains("SIGNAL PATH"));
        assert!(
            parse_file_monitor("x /a")
                .unwrap_err()
                .contains("signal \"x\"")
        );
    }
}
