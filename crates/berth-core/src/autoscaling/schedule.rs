//! Scheduled scaling: Application Auto Scaling's schedule expressions and when they are due.
//!
//! `at(yyyy-mm-ddThh:mm:ss)` runs once, `rate(value unit)` every `value` minutes, hours or
//! days, and `cron(minutes hours day-of-month month day-of-week year)` on a calendar, the
//! latter two in the action's `Timezone` (UTC by default), as AWS evaluates them. Cron
//! patterns are AWS's (EventBridge-style: 1 is Sunday in the day-of-week field, `?`, `L`, `W`,
//! `#`, a year field), evaluated by `croner`; time zones come from the IANA database that
//! `jiff` bundles, so nothing here reads the host's files or clock.

use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::TimeZone;

/// A parsed schedule expression.
#[derive(Debug, Clone)]
pub enum Schedule {
    /// Once, at this wall-clock time in the action's time zone.
    At(DateTime),
    /// Every `every_ms`, counted from the action's start (or its creation).
    Rate {
        /// The period in milliseconds.
        every_ms: i64,
    },
    /// On a calendar pattern.
    Cron(Box<Cron>),
}

/// Why an expression or a time zone was refused (the text goes into a `ValidationException`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ScheduleError(pub String);

fn invalid(expr: &str, why: &str) -> ScheduleError {
    ScheduleError(format!(
        "Invalid schedule expression '{expr}': {why}. Use at(yyyy-mm-ddThh:mm:ss), rate(value unit) or cron(minutes hours day-of-month month day-of-week year)."
    ))
}

impl Schedule {
    /// Parse `at(...)`, `rate(...)` or `cron(...)`.
    pub fn parse(expr: &str) -> Result<Schedule, ScheduleError> {
        let inner = |prefix: &str| {
            expr.strip_prefix(prefix)
                .and_then(|rest| rest.strip_suffix(')'))
                .map(str::trim)
        };
        if let Some(at) = inner("at(") {
            let dt = DateTime::strptime("%Y-%m-%dT%H:%M:%S", at)
                .map_err(|_| invalid(expr, "the time must be yyyy-mm-ddThh:mm:ss"))?;
            return Ok(Schedule::At(dt));
        }
        if let Some(rate) = inner("rate(") {
            let mut parts = rate.split_whitespace();
            let (Some(value), Some(unit), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(invalid(expr, "a rate is a value and a unit"));
            };
            let value: i64 = value
                .parse()
                .ok()
                .filter(|v| *v > 0 && *v <= 1_000_000)
                .ok_or_else(|| invalid(expr, "the value must be a positive whole number"))?;
            let unit_ms = match unit {
                "minute" | "minutes" => 60_000,
                "hour" | "hours" => 3_600_000,
                "day" | "days" => 86_400_000,
                _ => {
                    return Err(invalid(
                        expr,
                        "the unit must be minute(s), hour(s) or day(s)",
                    ));
                }
            };
            return Ok(Schedule::Rate {
                every_ms: value * unit_ms,
            });
        }
        if let Some(fields) = inner("cron(") {
            let n = fields.split_whitespace().count();
            if n != 6 {
                return Err(invalid(
                    expr,
                    &format!("a cron expression has 6 fields, this one has {n}"),
                ));
            }
            // croner wants a seconds field first; AWS's six fields end with the year.
            let cron = CronParser::builder()
                .seconds(Seconds::Required)
                .year(Year::Required)
                .alternative_weekdays(true)
                .sloppy_ranges(true)
                .build()
                .parse(&format!("0 {fields}"))
                .map_err(|e| invalid(expr, &e.to_string()))?;
            return Ok(Schedule::Cron(Box::new(cron)));
        }
        Err(invalid(expr, "unknown kind of expression"))
    }
}

/// An IANA time zone name (`Timezone`), UTC when absent.
pub fn time_zone(name: Option<&str>) -> Result<TimeZone, ScheduleError> {
    match name {
        None => Ok(TimeZone::UTC),
        Some(n) => TimeZone::get(n).map_err(|_| {
            ScheduleError(format!(
                "Invalid Timezone: '{n}' is not an IANA time zone name."
            ))
        }),
    }
}

/// When one scheduled action may run.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// `StartTime` (epoch ms): no run before it.
    pub start_ms: Option<i64>,
    /// `EndTime` (epoch ms): no run after it.
    pub end_ms: Option<i64>,
    /// Runs at or before this instant are not (or no longer) due: the time the action was
    /// put, or its last run.
    pub after_ms: i64,
}

fn to_ms(t: Timestamp) -> i64 {
    t.as_millisecond()
}

/// The latest occurrence of `schedule` in `(window.after_ms, now_ms]` that lies within the
/// action's start and end times: the run that is due now, if any. Occurrences missed while
/// nothing evaluated (a restart) collapse into the latest one, since each run sets the same
/// capacities.
pub fn latest_due(schedule: &Schedule, tz: &TimeZone, w: Window, now_ms: i64) -> Option<i64> {
    let upper = match w.end_ms {
        Some(end) => now_ms.min(end),
        None => now_ms,
    };
    let lower = w.after_ms.max(w.start_ms.map_or(i64::MIN, |s| s - 1));
    if upper <= lower {
        return None;
    }
    let t = match schedule {
        Schedule::At(dt) => to_ms(dt.to_zoned(tz.clone()).ok()?.timestamp()),
        Schedule::Rate { every_ms } => {
            // Counted from StartTime when given (its first run is at StartTime), else from
            // the time the action was put (first run one period later).
            let (anchor, first) = match w.start_ms {
                Some(s) => (s, 0),
                None => (w.after_ms, 1),
            };
            if upper < anchor {
                return None;
            }
            let k = (upper - anchor) / every_ms;
            if k < first {
                return None;
            }
            anchor.checked_add(k.checked_mul(*every_ms)?)?
        }
        Schedule::Cron(cron) => {
            let at = Timestamp::from_millisecond(upper)
                .ok()?
                .to_zoned(tz.clone());
            let prev = cron.find_previous_occurrence(&at, true).ok()?;
            to_ms(prev.timestamp())
        }
    };
    (t > lower && t <= upper).then_some(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> i64 {
        s.parse::<Timestamp>().unwrap().as_millisecond()
    }

    fn window(after: &str) -> Window {
        Window {
            start_ms: None,
            end_ms: None,
            after_ms: ms(after),
        }
    }

    #[test]
    fn at_runs_once_when_its_time_has_come() {
        let s = Schedule::parse("at(2026-03-01T10:00:00)").unwrap();
        let utc = time_zone(None).unwrap();
        let w = window("2026-02-01T00:00:00Z");
        assert_eq!(latest_due(&s, &utc, w, ms("2026-03-01T09:59:59Z")), None);
        assert_eq!(
            latest_due(&s, &utc, w, ms("2026-03-01T10:00:00Z")),
            Some(ms("2026-03-01T10:00:00Z"))
        );
        // After it ran, never again.
        let ran = Window {
            after_ms: ms("2026-03-01T10:00:00Z"),
            ..w
        };
        assert_eq!(latest_due(&s, &utc, ran, ms("2026-03-02T00:00:00Z")), None);
        // In a time zone: 10:00 in New York is 15:00 UTC in March (before DST).
        let ny = time_zone(Some("America/New_York")).unwrap();
        assert_eq!(latest_due(&s, &ny, w, ms("2026-03-01T14:59:59Z")), None);
        assert_eq!(
            latest_due(&s, &ny, w, ms("2026-03-01T15:00:00Z")),
            Some(ms("2026-03-01T15:00:00Z"))
        );
    }

    #[test]
    fn an_at_in_the_past_never_runs() {
        let s = Schedule::parse("at(2020-01-01T00:00:00)").unwrap();
        let utc = time_zone(None).unwrap();
        assert_eq!(
            latest_due(
                &s,
                &utc,
                window("2026-01-01T00:00:00Z"),
                ms("2026-06-01T00:00:00Z")
            ),
            None
        );
    }

    #[test]
    fn rate_counts_from_creation_or_start() {
        let s = Schedule::parse("rate(5 minutes)").unwrap();
        let utc = time_zone(None).unwrap();
        let w = window("2026-01-01T00:00:00Z");
        assert_eq!(latest_due(&s, &utc, w, ms("2026-01-01T00:04:59Z")), None);
        assert_eq!(
            latest_due(&s, &utc, w, ms("2026-01-01T00:12:00Z")),
            Some(ms("2026-01-01T00:10:00Z"))
        );
        let ran = Window {
            after_ms: ms("2026-01-01T00:10:00Z"),
            ..w
        };
        assert_eq!(latest_due(&s, &utc, ran, ms("2026-01-01T00:14:00Z")), None);
        let started = Window {
            start_ms: Some(ms("2026-01-01T01:00:00Z")),
            ..w
        };
        assert_eq!(
            latest_due(&s, &utc, started, ms("2026-01-01T00:59:00Z")),
            None
        );
        assert_eq!(
            latest_due(&s, &utc, started, ms("2026-01-01T01:00:00Z")),
            Some(ms("2026-01-01T01:00:00Z"))
        );
        let ended = Window {
            end_ms: Some(ms("2026-01-01T00:07:00Z")),
            ..w
        };
        assert_eq!(
            latest_due(&s, &utc, ended, ms("2026-01-01T03:00:00Z")),
            Some(ms("2026-01-01T00:05:00Z"))
        );
        assert!(Schedule::parse("rate(1 minute)").is_ok());
        assert!(Schedule::parse("rate(2 days)").is_ok());
    }

    #[test]
    fn cron_is_aws_flavoured() {
        let utc = time_zone(None).unwrap();
        let w = window("2026-01-01T00:00:00Z");
        // Every day at 12:15 UTC.
        let s = Schedule::parse("cron(15 12 * * ? *)").unwrap();
        assert_eq!(
            latest_due(&s, &utc, w, ms("2026-01-03T13:00:00Z")),
            Some(ms("2026-01-03T12:15:00Z"))
        );
        // Weekdays (MON-FRI) at 08:00; 2026-01-03 is a Saturday, 01-05 a Monday.
        let s = Schedule::parse("cron(0 8 ? * MON-FRI *)").unwrap();
        let sat = Window {
            after_ms: ms("2026-01-02T09:00:00Z"),
            ..w
        };
        assert_eq!(latest_due(&s, &utc, sat, ms("2026-01-04T23:00:00Z")), None);
        assert_eq!(
            latest_due(&s, &utc, sat, ms("2026-01-05T08:00:30Z")),
            Some(ms("2026-01-05T08:00:00Z"))
        );
        // Day of week 1 is Sunday, as in AWS's cron: 2026-01-04 is a Sunday.
        let s = Schedule::parse("cron(0 0 ? * 1 *)").unwrap();
        assert_eq!(
            latest_due(&s, &utc, w, ms("2026-01-06T00:00:00Z")),
            Some(ms("2026-01-04T00:00:00Z"))
        );
        // The year field limits it.
        let s = Schedule::parse("cron(0 0 1 1 ? 2025)").unwrap();
        assert_eq!(latest_due(&s, &utc, w, ms("2026-06-01T00:00:00Z")), None);
        // In a time zone: 09:00 in Tokyo is 00:00 UTC.
        let tokyo = time_zone(Some("Asia/Tokyo")).unwrap();
        let s = Schedule::parse("cron(0 9 * * ? *)").unwrap();
        assert_eq!(
            latest_due(&s, &tokyo, w, ms("2026-01-02T01:00:00Z")),
            Some(ms("2026-01-02T00:00:00Z"))
        );
    }

    #[test]
    fn bad_expressions_and_zones_are_refused() {
        for bad in [
            "",
            "at(2026-13-01T00:00:00)",
            "at(tomorrow)",
            "at(2026-01-01 00:00:00)",
            "rate(0 minutes)",
            "rate(-1 minutes)",
            "rate(5 weeks)",
            "rate(5)",
            "cron(* * * * *)",
            "cron(61 * * * ? *)",
            "cron(0 0 * * ? * *)",
            "cron(a b c d e f)",
            "every(5 minutes)",
            "cron(0 0 * * ? *",
        ] {
            let e = Schedule::parse(bad).unwrap_err();
            assert!(e.0.starts_with("Invalid schedule expression"), "{bad}: {e}");
        }
        assert!(time_zone(Some("Mars/Olympus_Mons")).is_err());
        assert!(time_zone(Some("Europe/Paris")).is_ok());
        assert!(time_zone(Some("UTC")).is_ok());
    }
}
