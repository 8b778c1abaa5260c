//! The patterns behind [`super::find_dates`].

use super::{DateMention, Granularity, Period, Relation, week_start};
use chrono::{Datelike, Days, Months, NaiveDate};

/// A word of the text: byte range plus its ASCII-lowercased form.
#[derive(Clone, Copy)]
struct Tok<'a> {
    s: usize,
    e: usize,
    w: &'a str,
}

/// Direction in which an under-specified date resolves.
#[derive(Clone, Copy, PartialEq)]
enum Dir {
    /// Most recent on or before the anchor.
    Past,
    /// First on or after the anchor.
    Future,
}

struct Ctx<'a> {
    text: &'a str,
    lower: &'a str,
    toks: Vec<Tok<'a>>,
    anchor: NaiveDate,
}

/// Result of a pattern at one token: tokens consumed (exclusive end index),
/// the period, whether it was relative.
type Hit = (usize, Period, bool);

/// Finds and resolves the time expressions of `text`.
pub(super) fn scan(text: &str, anchor: NaiveDate) -> Vec<DateMention> {
    let lower = text.to_ascii_lowercase();
    let mut toks = Vec::with_capacity(text.len() / 4);
    let bytes = lower.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_alphanumeric() {
            let s = i;
            while i < bytes.len() && bytes[i].is_ascii_alphanumeric() {
                i += 1;
            }
            toks.push(Tok {
                s,
                e: i,
                w: &lower[s..i],
            });
        } else {
            i += 1;
        }
    }
    let ctx = Ctx {
        text,
        lower: &lower,
        toks,
        anchor,
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < ctx.toks.len() {
        match ctx.at(i) {
            Some((end, period, relative)) if end > i => {
                out.push(ctx.mention(i, end, period, relative));
                i = end;
            }
            _ => i += 1,
        }
    }
    out
}

const FUTURE_WORDS: &[&str] = &[
    "will", "ll", "gonna", "going", "plan", "plans", "planning", "soon", "upcoming", "shall",
    "hope", "hoping", "wanna", "intend", "tomorrow", "next",
];

fn weekday_index(w: &str) -> Option<u32> {
    Some(match w {
        "monday" => 0,
        "tuesday" => 1,
        "wednesday" => 2,
        "thursday" => 3,
        "friday" => 4,
        "saturday" => 5,
        "sunday" => 6,
        _ => return None,
    })
}

/// Full month names and unambiguous abbreviations (abbreviations only count
/// next to a day or year number; see [`Ctx::month_at`]).
fn month_index(w: &str) -> Option<(u32, bool)> {
    let full = |m| Some((m, true));
    let abbr = |m| Some((m, false));
    match w {
        "january" => full(1),
        "february" => full(2),
        "march" => full(3),
        "april" => full(4),
        "may" => full(5),
        "june" => full(6),
        "july" => full(7),
        "august" => full(8),
        "september" => full(9),
        "october" => full(10),
        "november" => full(11),
        "december" => full(12),
        "jan" => abbr(1),
        "feb" => abbr(2),
        "mar" => abbr(3),
        "apr" => abbr(4),
        "jun" => abbr(6),
        "jul" => abbr(7),
        "aug" => abbr(8),
        "sep" | "sept" => abbr(9),
        "oct" => abbr(10),
        "nov" => abbr(11),
        "dec" => abbr(12),
        _ => None,
    }
}

/// Small counts written as words; "a couple"/"a few"/"several" handled by
/// [`Ctx::count_at`]. Up to thirty: "fifty years ago" is rhetoric more
/// often than a date.
fn number_word(w: &str) -> Option<u32> {
    match w {
        "a" | "an" | "one" => Some(1),
        _ => crate::numbers::number_word(w).filter(|n| *n <= 30),
    }
}

/// A day of month: "7", "07", "7th", "1st", "22nd", "3rd".
fn day_number(w: &str) -> Option<u32> {
    let digits = w.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let suffix = &w[digits.len()..];
    if digits.is_empty() || digits.len() > 2 || !matches!(suffix, "" | "st" | "nd" | "rd" | "th") {
        return None;
    }
    let n: u32 = digits.parse().ok()?;
    (1..=31).contains(&n).then_some(n)
}

fn year_number(w: &str) -> Option<i32> {
    if w.len() != 4 {
        return None;
    }
    let y: i32 = w.parse().ok()?;
    (1900..=2100).contains(&y).then_some(y)
}

impl<'a> Ctx<'a> {
    fn w(&self, i: usize) -> &'a str {
        self.toks.get(i).map_or("", |t| t.w)
    }

    /// The raw text between token `i` and token `i + 1`.
    fn gap(&self, i: usize) -> &'a str {
        match (self.toks.get(i), self.toks.get(i + 1)) {
            (Some(a), Some(b)) => &self.lower[a.e..b.s],
            _ => "",
        }
    }

    /// Whether tokens `i` and `i + 1` are separated by blanks only (and at
    /// most one comma when `comma`).
    fn spaced(&self, i: usize, comma: bool) -> bool {
        let g = self.gap(i).as_bytes();
        let commas = g.iter().filter(|&&b| b == b',').count();
        let blanks = g.iter().filter(|&&b| b == b' ' || b == b'\t').count();
        blanks > 0 && commas <= usize::from(comma) && commas + blanks == g.len()
    }

    fn next_is(&self, i: usize, words: &[&str]) -> bool {
        self.spaced(i, false) && words.contains(&self.w(i + 1))
    }

    /// Whether the sentence around token `i` talks about the future.
    fn direction(&self, i: usize) -> Dir {
        let is_end = |g: &str| g.contains(['.', '!', '?', '\n']);
        let mut a = i;
        while a > 0 && !is_end(self.gap(a - 1)) {
            a -= 1;
        }
        let mut b = i;
        while b + 1 < self.toks.len() && !is_end(self.gap(b)) {
            b += 1;
        }
        let future = (a..=b).any(|k| FUTURE_WORDS.contains(&self.w(k)))
            || (a..b)
                .any(|k| self.w(k) == "can" && self.w(k + 1) == "t" && self.w(k + 2) == "wait");
        if future { Dir::Future } else { Dir::Past }
    }

    fn mention(&self, i: usize, end: usize, period: Period, relative: bool) -> DateMention {
        let mut first = i;
        if i > 0
            && matches!(self.w(i - 1), "on" | "in" | "at" | "during")
            && self.spaced(i - 1, false)
        {
            first = i - 1;
        }
        let relation = match first.checked_sub(1).map(|k| (k, self.w(k))) {
            Some((k, w)) if self.spaced(k, false) => match w {
                "before" | "until" | "till" | "by" => Relation::Before,
                "after" | "since" => Relation::After,
                _ => Relation::At,
            },
            _ => Relation::At,
        };
        DateMention {
            start: self.toks[first].s,
            end: self.toks[end - 1].e,
            period,
            relation,
            relative,
        }
    }

    /// Tries every pattern at token `i`.
    fn at(&self, i: usize) -> Option<Hit> {
        let a = self.anchor;
        let w = self.w(i);
        let day = |d: NaiveDate, n: usize| Some((n, Period::day(d), true));
        match w {
            "today" | "tonight" => return day(a, self.part_of_day(i + 1)),
            "yesterday" => return day(a.pred_opt()?, self.part_of_day(i + 1)),
            "tomorrow" => return day(a.succ_opt()?, self.part_of_day(i + 1)),
            "this" => return self.this(i),
            "last" | "next" => return self.last_next(i),
            "the" | "day" => {
                if let Some(hit) = self.day_before(i) {
                    return Some(hit);
                }
            }
            _ => {}
        }
        if let Some(hit) = self.ago(i) {
            return Some(hit);
        }
        if let Some(wd) = weekday_index(w) {
            let dir = self.direction(i);
            let today = a.weekday().num_days_from_monday();
            let d = match dir {
                Dir::Past => a.checked_sub_days(Days::new(u64::from((today + 7 - wd) % 7)))?,
                Dir::Future => a.checked_add_days(Days::new(u64::from((wd + 7 - today) % 7)))?,
            };
            // "Friday, May 5, 2023": the explicit date wins.
            if self.spaced(i, true)
                && let Some(hit) = self.month_at(i + 1).or_else(|| self.day_month_at(i + 1))
                && hit.1.granularity == Granularity::Day
            {
                return Some(hit);
            }
            return day(d, self.part_of_day(i + 1));
        }
        if let Some(y) = year_number(w) {
            return self.iso(i, y).or_else(|| self.bare_year(i, y));
        }
        self.month_at(i).or_else(|| self.day_month_at(i))
    }

    /// Skips a trailing "morning"/"afternoon"/"evening"/"night".
    fn part_of_day(&self, i: usize) -> usize {
        if i > 0 && self.next_is(i - 1, &["morning", "afternoon", "evening", "night"]) {
            i + 1
        } else {
            i
        }
    }

    /// "this morning", "this week", "this weekend", "this Friday", "this
    /// May", "this past week".
    fn this(&self, i: usize) -> Option<Hit> {
        let a = self.anchor;
        if !self.spaced(i, false) {
            return None;
        }
        if self.w(i + 1) == "past" && self.spaced(i + 1, false) {
            // "this past week" = "last week", shifted by one token.
            return self.last_like(i + 1, -1);
        }
        let next = self.w(i + 1);
        let p = match next {
            "morning" | "afternoon" | "evening" => Period::day(a),
            "week" => Period::week_of(a),
            "weekend" => Period::weekend(week_start(a).checked_add_days(Days::new(5))?),
            "month" => Period::month(a.year(), a.month())?,
            "year" => Period::year(a.year())?,
            _ => {
                if let Some(wd) = weekday_index(next) {
                    Period::day(week_start(a).checked_add_days(Days::new(u64::from(wd)))?)
                } else {
                    let m = self.month_word(i + 1)?;
                    Period::month(a.year(), m)?
                }
            }
        };
        Some((i + 2, p, true))
    }

    fn last_next(&self, i: usize) -> Option<Hit> {
        let dir = if self.w(i) == "last" { -1 } else { 1 };
        if !self.spaced(i, false) {
            return None;
        }
        self.last_like(i, dir)
    }

    /// The unit after token `i` shifted by `dir` (-1 last, +1 next).
    fn last_like(&self, i: usize, dir: i32) -> Option<Hit> {
        let a = self.anchor;
        let next = self.w(i + 1);
        let shift_months = |n: u32| {
            if dir < 0 {
                a.checked_sub_months(Months::new(n))
            } else {
                a.checked_add_months(Months::new(n))
            }
        };
        let shift_days = |n: u64| {
            if dir < 0 {
                a.checked_sub_days(Days::new(n))
            } else {
                a.checked_add_days(Days::new(n))
            }
        };
        let p = match next {
            "night" if dir < 0 => Period::day(a.pred_opt()?),
            "week" => Period::week_of(shift_days(7)?),
            "weekend" => {
                Period::weekend(week_start(shift_days(7)?).checked_add_days(Days::new(5))?)
            }
            "month" => {
                let d = shift_months(1)?;
                Period::month(d.year(), d.month())?
            }
            "year" => Period::year(a.year() + dir)?,
            _ => {
                if let Some(wd) = weekday_index(next) {
                    let today = a.weekday().num_days_from_monday();
                    let d = if dir < 0 {
                        let back = (today + 7 - wd) % 7;
                        a.checked_sub_days(Days::new(u64::from(if back == 0 { 7 } else { back })))?
                    } else {
                        let fwd = (wd + 7 - today) % 7;
                        a.checked_add_days(Days::new(u64::from(if fwd == 0 { 7 } else { fwd })))?
                    };
                    return Some((self.part_of_day(i + 2), Period::day(d), true));
                }
                let m = self.month_word(i + 1)?;
                let (y, am) = (a.year(), a.month());
                let year = match dir {
                    d if d < 0 && m < am => y,
                    d if d < 0 => y - 1,
                    _ if m > am => y,
                    _ => y + 1,
                };
                Period::month(year, m)?
            }
        };
        Some((i + 2, p, true))
    }

    /// "the day before yesterday", "the day after tomorrow".
    fn day_before(&self, i: usize) -> Option<Hit> {
        let j = if self.w(i) == "the" { i + 1 } else { i };
        if self.w(j) != "day" || !self.spaced(j, false) || !self.spaced(j + 1, false) {
            return None;
        }
        let d = match (self.w(j + 1), self.w(j + 2)) {
            ("before", "yesterday") => self.anchor.checked_sub_days(Days::new(2))?,
            ("after", "tomorrow") => self.anchor.checked_add_days(Days::new(2))?,
            _ => return None,
        };
        Some((self.part_of_day(j + 3), Period::day(d), true))
    }

    /// A count at token `i`: (value, next token index).
    fn count_at(&self, i: usize) -> Option<(u32, usize)> {
        let w = self.w(i);
        let sp = |k| self.spaced(k, false);
        if (w == "a" && sp(i) && self.w(i + 1) == "couple") || w == "couple" {
            let k = if w == "a" { i + 2 } else { i + 1 };
            let k = if self.w(k) == "of" && sp(k - 1) {
                k + 1
            } else {
                k
            };
            return sp(k - 1).then_some((2, k));
        }
        if (w == "a" && sp(i) && self.w(i + 1) == "few") || w == "few" || w == "several" {
            let k = if w == "a" { i + 2 } else { i + 1 };
            return sp(k - 1).then_some((3, k));
        }
        if let Some(n) = number_word(w) {
            return sp(i).then_some((n, i + 1));
        }
        if w.len() <= 3 && w.bytes().all(|b| b.is_ascii_digit()) {
            let n: u32 = w.parse().ok()?;
            return (n > 0 && sp(i)).then_some((n, i + 1));
        }
        None
    }

    /// "two weeks ago", "a couple of days ago", "3 years ago".
    fn ago(&self, i: usize) -> Option<Hit> {
        let (n, k) = self.count_at(i)?;
        let unit = self.w(k);
        if !self.spaced(k, false) || self.w(k + 1) != "ago" {
            return None;
        }
        let a = self.anchor;
        let p = match unit.trim_end_matches('s') {
            "minute" | "hour" => Period::day(a),
            "day" => Period::day(a.checked_sub_days(Days::new(u64::from(n)))?),
            "week" => Period::week_of(a.checked_sub_days(Days::new(7 * u64::from(n)))?),
            "month" => {
                let d = a.checked_sub_months(Months::new(n))?;
                Period::month(d.year(), d.month())?
            }
            "year" => Period::year(a.year() - i32::try_from(n).ok()?)?,
            _ => return None,
        };
        Some((k + 2, p, true))
    }

    /// A month name at token `i` usable without a number: full names, and
    /// "May" only when capitalized in the original text.
    fn month_word(&self, i: usize) -> Option<u32> {
        let (m, full) = month_index(self.w(i))?;
        if !full {
            return None;
        }
        if m == 5 {
            let t = self.toks[i];
            if !self.text[t.s..t.e].starts_with('M') {
                return None;
            }
        }
        Some(m)
    }

    /// Patterns starting with a month name: "May 7, 2023", "May 7th",
    /// "May 2023", "in May".
    fn month_at(&self, i: usize) -> Option<Hit> {
        let (m, full) = month_index(self.w(i))?;
        if m == 5 && !self.text[self.toks[i].s..].starts_with('M') {
            return None;
        }
        if self.spaced(i, false)
            && let Some(d) = day_number(self.w(i + 1)).filter(|_| !self.is_time(i + 1))
        {
            if self.spaced(i + 1, true)
                && let Some(y) = year_number(self.w(i + 2))
            {
                let date = NaiveDate::from_ymd_opt(y, m, d)?;
                return Some((i + 3, Period::day(date), false));
            }
            let date = self.yearless(m, d, self.direction(i))?;
            return Some((i + 2, Period::day(date), true));
        }
        if self.spaced(i, true)
            && let Some(y) = year_number(self.w(i + 1))
        {
            return Some((i + 2, Period::month(y, m)?, false));
        }
        let trigger = i > 0
            && self.spaced(i - 1, false)
            && matches!(
                self.w(i - 1),
                "in" | "since"
                    | "before"
                    | "after"
                    | "until"
                    | "till"
                    | "by"
                    | "during"
                    | "early"
                    | "late"
                    | "mid"
                    | "of"
                    | "through"
                    | "from"
            );
        if !full || !trigger {
            return None;
        }
        let (y, am) = (self.anchor.year(), self.anchor.month());
        let year = match self.direction(i) {
            Dir::Past if m <= am => y,
            Dir::Past => y - 1,
            Dir::Future if m >= am => y,
            Dir::Future => y + 1,
        };
        Some((i + 1, Period::month(year, m)?, true))
    }

    /// "7 May 2023", "8 May, 2023", "7th May", "the 7th of May".
    fn day_month_at(&self, i: usize) -> Option<Hit> {
        let start_the = self.w(i) == "the" && self.spaced(i, false);
        let j = if start_the { i + 1 } else { i };
        let d = day_number(self.w(j))?;
        let of = self.spaced(j, false) && self.w(j + 1) == "of" && self.spaced(j + 1, false);
        if start_the && !of {
            // "on the 17th": that day of the nearest month.
            let ordinal = self.w(j).ends_with(|c: char| c.is_ascii_alphabetic());
            let on = i > 0 && self.w(i - 1) == "on" && self.spaced(i - 1, false);
            if !(ordinal && on) {
                return None;
            }
            let dir = self.direction(j);
            let date = (0..12).find_map(|n| {
                let base = match dir {
                    Dir::Past => self.anchor.checked_sub_months(Months::new(n))?,
                    Dir::Future => self.anchor.checked_add_months(Months::new(n))?,
                };
                let date = NaiveDate::from_ymd_opt(base.year(), base.month(), d)?;
                let ok = match dir {
                    Dir::Past => date <= self.anchor,
                    Dir::Future => date >= self.anchor,
                };
                ok.then_some(date)
            })?;
            return Some((j + 1, Period::day(date), true));
        }
        if !self.spaced(j, false) {
            return None;
        }
        let k = if of { j + 2 } else { j + 1 };
        let (m, _) = month_index(self.w(k))?;
        if m == 5 && !self.text[self.toks[k].s..].starts_with('M') {
            return None;
        }
        if self.spaced(k, true)
            && let Some(y) = year_number(self.w(k + 1))
        {
            let date = NaiveDate::from_ymd_opt(y, m, d)?;
            return Some((k + 2, Period::day(date), false));
        }
        let date = self.yearless(m, d, self.direction(j))?;
        Some((k + 1, Period::day(date), true))
    }

    /// Whether the number at `i` is a clock time ("7 pm", "7:30").
    fn is_time(&self, i: usize) -> bool {
        self.gap(i).starts_with(':') || self.next_is(i, &["am", "pm", "o"])
    }

    /// The nearest `m`/`d` on or before (after) the anchor.
    fn yearless(&self, m: u32, d: u32, dir: Dir) -> Option<NaiveDate> {
        let y = self.anchor.year();
        let years: [i32; 9] = match dir {
            Dir::Past => [y, y - 1, y - 2, y - 3, y - 4, y - 5, y - 6, y - 7, y - 8],
            Dir::Future => [y, y + 1, y + 2, y + 3, y + 4, y + 5, y + 6, y + 7, y + 8],
        };
        years.into_iter().find_map(|y| {
            let date = NaiveDate::from_ymd_opt(y, m, d)?;
            let ok = match dir {
                Dir::Past => date <= self.anchor,
                Dir::Future => date >= self.anchor,
            };
            ok.then_some(date)
        })
    }

    /// "2023-05-07", "2023-05".
    fn iso(&self, i: usize, y: i32) -> Option<Hit> {
        if self.gap(i) != "-" {
            return None;
        }
        let mw = self.w(i + 1);
        if mw.is_empty() || mw.len() > 2 || !mw.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let m: u32 = mw.parse().ok()?;
        let dw = self.w(i + 2);
        if self.gap(i + 1) == "-" && (1..=2).contains(&dw.len()) {
            let d: u32 = dw.parse().ok()?;
            let date = NaiveDate::from_ymd_opt(y, m, d)?;
            return Some((i + 3, Period::day(date), false));
        }
        Some((i + 2, Period::month(y, m)?, false))
    }

    /// "in 2022", "since 2019", "the summer of 2022".
    fn bare_year(&self, i: usize, y: i32) -> Option<Hit> {
        let ok = i > 0
            && self.spaced(i - 1, false)
            && matches!(
                self.w(i - 1),
                "in" | "since"
                    | "before"
                    | "after"
                    | "during"
                    | "by"
                    | "until"
                    | "till"
                    | "of"
                    | "from"
                    | "around"
                    | "circa"
                    | "through"
            );
        ok.then(|| Some((i + 1, Period::year(y)?, false)))?
    }
}
