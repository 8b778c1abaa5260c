//! Quantities: a number and what it counts ("3 kids", "two dogs" → "2
//! dogs", "$500", "10 km", "20%").

use super::entities::{Occ, occ};
use super::lexicon::{QUANTITY_ADJECTIVES, QUANTITY_STOPS};
use super::segment::Word;
use crate::numbers::number_word;
use engram_core::EntityKind;

/// A number and what it counts: "3 kids", "two dogs" (→ "2 dogs"), "$500",
/// "10 km", "5 years", "20%".
pub(super) fn quantity_at(text: &str, lower: &str, ws: &[Word], i: usize) -> Option<(Occ, usize)> {
    let l = &lower[ws[i].s..ws[i].e];
    let numeric = l.starts_with(|c: char| c.is_ascii_digit())
        && l.chars()
            .all(|c| c.is_ascii_digit() || c == '.' || c == ',' || c == 'k');
    let value = if numeric {
        l.to_string()
    } else {
        number_word(l)?.to_string()
    };
    let before = &text[..ws[i].s];
    let symbol = ["$", "€", "£"].into_iter().find(|c| before.ends_with(c));
    let after = &text[ws[i].e..];
    if after.starts_with(':')
        || (numeric
            && l.len() == 4
            && symbol.is_none()
            && l.parse::<u32>().is_ok_and(|y| (1900..=2100).contains(&y)))
    {
        return None;
    }
    let at = |k: usize| {
        ws.get(k)
            .map(|w| (&text[ws[k - 1].e..w.s], &lower[w.s..w.e], &text[w.s..w.e]))
    };
    let noun_ok = |k: usize| {
        at(k).is_some_and(|(gap, lw, orig)| {
            gap == " "
                && orig.starts_with(|c: char| c.is_ascii_lowercase())
                && lw.chars().all(|c| c.is_ascii_lowercase() || c == '-')
                && !QUANTITY_STOPS.has(lw)
        })
    };
    // "two dogs", "two big dogs", "three children": a counted word is plural.
    let plural = |w: &str| {
        (w.ends_with('s') && !w.ends_with("ss"))
            || matches!(
                w,
                "people" | "children" | "men" | "women" | "feet" | "teeth" | "mice" | "geese"
            )
    };
    let plural_after = |k: usize| {
        let w = at(k).map_or("", |x| x.1);
        plural(w)
            || (QUANTITY_ADJECTIVES.has(w)
                && noun_ok(k + 1)
                && plural(at(k + 1).map_or("", |x| x.1)))
    };
    let (label, end) = if let Some(sym) = symbol {
        let scale = at(i + 1).filter(|(g, lw, _)| {
            *g == " " && matches!(*lw, "k" | "million" | "billion" | "thousand" | "grand")
        });
        match scale {
            Some((_, lw, _)) => (format!("{sym}{value} {lw}"), i + 2),
            None => (format!("{sym}{value}"), i + 1),
        }
    } else if after.starts_with('%') {
        (format!("{value}%"), i + 1)
    } else if noun_ok(i + 1) && (numeric || plural_after(i + 1)) {
        let n1 = at(i + 1).map_or("", |x| x.1);
        let mut end = i + 2;
        let mut label = format!("{value} {n1}");
        if QUANTITY_ADJECTIVES.has(n1) && noun_ok(i + 2) {
            label = format!("{label} {}", at(i + 2).map_or("", |x| x.1));
            end += 1;
        } else if matches!(n1, "year" | "years" | "month" | "months")
            && at(i + 2).is_some_and(|x| x.1 == "old" && x.0 == " ")
        {
            label.push_str(" old");
            end += 1;
        }
        (label, end)
    } else {
        return None;
    };
    let s = symbol.map_or(ws[i].s, |c| ws[i].s - c.len());
    let e = if after.starts_with('%') {
        ws[i].e + 1
    } else {
        ws[end - 1].e
    };
    Some((occ(s, e, EntityKind::Quantity, label), end))
}
