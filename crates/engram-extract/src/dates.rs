//! Calendar expressions in free text: "yesterday", "last May", "two weeks
//! ago", "7 May 2023", "in 2022".
//!
//! [`find_dates`] finds them, case-insensitively and without overlaps, and
//! resolves each against an anchor day (when the text was said, or when a
//! query is asked) to a [`Period`]: a day, a Monday-based week, a calendar
//! month or a year, which [`Period::phrase`] renders in the absolute form
//! observations use ("on 7 May 2023", "in May 2023").
//!
//! Resolution rules, with the anchor's day as "today":
//! - "last Friday" is the most recent Friday strictly before today, "next
//!   Friday" the first one strictly after; a bare "Friday"/"on Friday" is
//!   the most recent Friday on or before today, unless the sentence speaks
//!   of the future ("will", "'ll", "going", "gonna", "plan", "soon", ...),
//!   then the first one on or after today. "this Friday" is the Friday of
//!   today's Monday-based week.
//! - "last May" is the most recent May strictly before today's month, "next
//!   May" the first one strictly after; "in May" is the most recent May on
//!   or before today's month (forward in a future sentence). A day without
//!   a year ("May 7th", "the 7th of May") takes the nearest such day on or
//!   before today (forward in a future sentence).
//! - "last/this/next week" are Monday-based weeks; "last/this/next weekend"
//!   the Saturday and Sunday of the previous/current/next week.
//! - The word "May" is a month only when written with a capital M, so the
//!   verb is never read as a date. Numbers alone ("3 kids", "7 pm") are
//!   never dates; a bare four-digit year needs a preposition ("in 2022",
//!   "since 2019", "the summer of 2022").
//!
//! A mention's byte range includes a leading "on", "in", "at" or "during",
//! so replacing the range with [`Period::phrase`] reads naturally. It does
//! not include a leading "before", "after", "since", "until" or "by": those
//! set [`DateMention::relation`] and stay in the text (use
//! [`Period::label`] after them).

use chrono::{Datelike, Days, Months, NaiveDate};

mod parse;

/// How wide a resolved period is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Granularity {
    /// One day (or a weekend: Saturday and Sunday).
    Day,
    /// A Monday-based week.
    Week,
    /// A calendar month.
    Month,
    /// A calendar year.
    Year,
}

impl Granularity {
    /// Lowercase spelling, as used in date entity keys.
    pub fn as_str(self) -> &'static str {
        match self {
            Granularity::Day => "day",
            Granularity::Week => "week",
            Granularity::Month => "month",
            Granularity::Year => "year",
        }
    }
}

/// How the text relates to the period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Relation {
    /// During it ("in May", "yesterday").
    At,
    /// Before it ("before May", "until Friday", "by 2024").
    Before,
    /// After it ("after May", "since 2019").
    After,
}

/// A resolved calendar period, `[from, until)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Period {
    /// First day.
    pub from: NaiveDate,
    /// First day after the period (exclusive).
    pub until: NaiveDate,
    /// Its width.
    pub granularity: Granularity,
}

const MONTH_NAMES: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

fn midnight_ms(d: NaiveDate) -> i64 {
    d.and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc().timestamp_millis())
        .unwrap_or_default()
}

fn month_name(m: u32) -> &'static str {
    MONTH_NAMES[(m.clamp(1, 12) - 1) as usize]
}

impl Period {
    /// The single day `d`.
    pub fn day(d: NaiveDate) -> Period {
        Period {
            from: d,
            until: d.succ_opt().unwrap_or(d),
            granularity: Granularity::Day,
        }
    }

    /// The Monday-based week containing `d`.
    pub fn week_of(d: NaiveDate) -> Period {
        let from = week_start(d);
        Period {
            from,
            until: from
                .checked_add_days(Days::new(7))
                .unwrap_or(NaiveDate::MAX),
            granularity: Granularity::Week,
        }
    }

    /// The calendar month `month` (1-12) of `year`.
    pub fn month(year: i32, month: u32) -> Option<Period> {
        let from = NaiveDate::from_ymd_opt(year, month, 1)?;
        Some(Period {
            from,
            until: from.checked_add_months(Months::new(1))?,
            granularity: Granularity::Month,
        })
    }

    /// The calendar year `year`.
    pub fn year(year: i32) -> Option<Period> {
        Some(Period {
            from: NaiveDate::from_ymd_opt(year, 1, 1)?,
            until: NaiveDate::from_ymd_opt(year + 1, 1, 1)?,
            granularity: Granularity::Year,
        })
    }

    /// The weekend (Saturday and Sunday) starting on the Saturday `sat`.
    fn weekend(sat: NaiveDate) -> Period {
        Period {
            from: sat,
            until: sat.checked_add_days(Days::new(2)).unwrap_or(NaiveDate::MAX),
            granularity: Granularity::Day,
        }
    }

    fn is_weekend(&self) -> bool {
        self.granularity == Granularity::Day && self.until - self.from == chrono::TimeDelta::days(2)
    }

    /// Start, epoch milliseconds at UTC midnight.
    pub fn from_ms(&self) -> i64 {
        midnight_ms(self.from)
    }

    /// Exclusive end, epoch milliseconds at UTC midnight.
    pub fn until_ms(&self) -> i64 {
        midnight_ms(self.until)
    }

    /// The absolute form without a preposition: `"7 May 2023"`, `"the week
    /// of 1 May 2023"`, `"the weekend of 6 May 2023"`, `"May 2023"`,
    /// `"2023"`. Date entities use it as their label.
    pub fn label(&self) -> String {
        let d = self.from;
        let dmy = format!("{} {} {}", d.day(), month_name(d.month()), d.year());
        match self.granularity {
            Granularity::Day if self.is_weekend() => format!("the weekend of {dmy}"),
            Granularity::Day => dmy,
            Granularity::Week => format!("the week of {dmy}"),
            Granularity::Month => format!("{} {}", month_name(d.month()), d.year()),
            Granularity::Year => d.year().to_string(),
        }
    }

    /// The absolute form observations use: `"on 7 May 2023"`, `"in the
    /// week of 1 May 2023"`, `"in May 2023"`, `"in 2023"`.
    pub fn phrase(&self) -> String {
        match self.granularity {
            Granularity::Day => format!("on {}", self.label()),
            _ => format!("in {}", self.label()),
        }
    }

    /// Entity key part: ``"<iso from>/<granularity>"``, e.g. `"2023-05-07/day"`.
    pub fn key(&self) -> String {
        format!(
            "{}/{}",
            self.from.format("%Y-%m-%d"),
            self.granularity.as_str()
        )
    }
}

/// A time expression found in text.
#[derive(Debug, Clone, PartialEq)]
pub struct DateMention {
    /// Byte offset where the expression starts, including a leading
    /// "on"/"in"/"at"/"during" or "last"/"next"/"this".
    pub start: usize,
    /// Byte offset just after the expression.
    pub end: usize,
    /// What it resolves to.
    pub period: Period,
    /// Whether a preceding "before"/"until"/"by" or "after"/"since" turns it
    /// into an open bound.
    pub relation: Relation,
    /// True when resolving it needed the anchor ("yesterday", "last May",
    /// "May 7th"); false for absolute forms ("7 May 2023", "in 2022").
    pub relative: bool,
}

/// The Monday of the week containing `d` (the first day of the calendar
/// in its first, partial week: turn times can be anything).
fn week_start(d: NaiveDate) -> NaiveDate {
    d.checked_sub_days(Days::new(u64::from(d.weekday().num_days_from_monday())))
        .unwrap_or(NaiveDate::MIN)
}

/// Finds the time expressions of `text` and resolves them against `anchor`
/// (the day the text was said, UTC). Case-insensitive, non-overlapping, in
/// text order. See the module documentation for the rules.
pub fn find_dates(text: &str, anchor: NaiveDate) -> Vec<DateMention> {
    parse::scan(text, anchor)
}

#[cfg(test)]
mod tests;
