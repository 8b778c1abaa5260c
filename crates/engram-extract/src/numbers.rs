//! Numbers written as words, for quantities and for date counts.

/// Counts written as words, from two ("a" and "one" are left to the
/// caller: as a quantity they are noise, as a count of days they are 1).
pub(crate) fn number_word(lower: &str) -> Option<u32> {
    Some(match lower {
        "two" => 2,
        "three" => 3,
        "four" => 4,
        "five" => 5,
        "six" => 6,
        "seven" => 7,
        "eight" => 8,
        "nine" => 9,
        "ten" => 10,
        "eleven" => 11,
        "twelve" => 12,
        "thirteen" => 13,
        "fourteen" => 14,
        "fifteen" => 15,
        "sixteen" => 16,
        "seventeen" => 17,
        "eighteen" => 18,
        "nineteen" => 19,
        "twenty" => 20,
        "thirty" => 30,
        "forty" => 40,
        "fifty" => 50,
        "hundred" => 100,
        "thousand" => 1000,
        _ => return None,
    })
}
