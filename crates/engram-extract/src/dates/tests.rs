use super::*;

/// Monday 8 May 2023.
fn anchor() -> NaiveDate {
    ymd(2023, 5, 8)
}

fn ymd(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

/// The single mention of `text` against the anchor: (covered text,
/// label, granularity, relation, relative).
fn one(text: &str) -> (String, String, Granularity, Relation, bool) {
    let found = find_dates(text, anchor());
    assert_eq!(found.len(), 1, "{text:?} → {found:?}");
    let m = &found[0];
    (
        text[m.start..m.end].to_string(),
        m.period.label(),
        m.period.granularity,
        m.relation,
        m.relative,
    )
}

fn label(text: &str) -> String {
    one(text).1
}

#[test]
fn today_and_parts_of_today() {
    for t in [
        "today",
        "tonight",
        "this morning",
        "This afternoon",
        "this evening",
    ] {
        assert_eq!(label(&format!("I ran {t}.")), "8 May 2023", "{t}");
    }
}

#[test]
fn days_around_the_anchor() {
    assert_eq!(
        one("I went to a support group yesterday and it was great"),
        (
            "yesterday".into(),
            "7 May 2023".into(),
            Granularity::Day,
            Relation::At,
            true
        )
    );
    assert_eq!(label("the day before yesterday we met"), "6 May 2023");
    assert_eq!(label("tomorrow morning I fly"), "9 May 2023");
    assert_eq!(one("tomorrow morning I fly").0, "tomorrow morning");
    assert_eq!(label("the day after tomorrow"), "10 May 2023");
    assert_eq!(label("last night was fun"), "7 May 2023");
    assert_eq!(label("Yesterday evening, I cooked"), "7 May 2023");
}

#[test]
fn counts_ago() {
    assert_eq!(label("3 days ago"), "5 May 2023");
    assert_eq!(label("two weeks ago"), "the week of 24 April 2023");
    assert_eq!(one("two weeks ago").2, Granularity::Week);
    assert_eq!(label("a couple of days ago"), "6 May 2023");
    assert_eq!(label("a couple days ago"), "6 May 2023");
    assert_eq!(label("a few months ago"), "February 2023");
    assert_eq!(label("a year ago"), "2022");
    assert_eq!(label("I started transitioning three years ago."), "2020");
    assert_eq!(label("an hour ago"), "8 May 2023");
    assert_eq!(label("12 months ago"), "May 2022");
    assert!(find_dates("3 kids ago-ish", anchor()).is_empty());
}

#[test]
fn weeks_months_years() {
    assert_eq!(label("last week"), "the week of 1 May 2023");
    assert_eq!(label("this week"), "the week of 8 May 2023");
    assert_eq!(label("next week"), "the week of 15 May 2023");
    assert_eq!(label("last month"), "April 2023");
    assert_eq!(label("this month"), "May 2023");
    assert_eq!(label("next month"), "June 2023");
    assert_eq!(label("last year"), "2022");
    assert_eq!(label("this year"), "2023");
    assert_eq!(label("next year"), "2024");
    assert_eq!(label("this past week"), "the week of 1 May 2023");
    let jan = find_dates("last month", ymd(2023, 1, 15));
    assert_eq!(jan[0].period.label(), "December 2022");
}

#[test]
fn weekends() {
    let (covered, l, g, _, _) = one("last weekend we hiked");
    assert_eq!(
        (covered.as_str(), l.as_str(), g),
        (
            "last weekend",
            "the weekend of 6 May 2023",
            Granularity::Day
        )
    );
    assert_eq!(label("this weekend"), "the weekend of 13 May 2023");
    assert_eq!(label("next weekend"), "the weekend of 20 May 2023");
    let m = &find_dates("last weekend", anchor())[0];
    assert_eq!(m.period.until, ymd(2023, 5, 8));
    assert_eq!(m.period.phrase(), "on the weekend of 6 May 2023");
}

#[test]
fn weekdays() {
    assert_eq!(label("last Friday"), "5 May 2023");
    assert_eq!(label("last Monday"), "1 May 2023");
    assert_eq!(label("next Friday"), "12 May 2023");
    assert_eq!(label("next Monday"), "15 May 2023");
    assert_eq!(label("this Friday"), "12 May 2023");
    assert_eq!(label("I saw her on Friday."), "5 May 2023");
    assert_eq!(one("I saw her on Friday.").0, "on Friday");
    assert_eq!(label("I saw her on Monday."), "8 May 2023");
    assert_eq!(label("I'm going to see her on Friday."), "12 May 2023");
    assert_eq!(label("last Saturday night"), "6 May 2023");
    assert_eq!(label("on Friday, May 5, 2023"), "5 May 2023");
}

#[test]
fn month_names() {
    assert_eq!(label("my sister moved to Lyon last May"), "May 2022");
    assert_eq!(label("last April"), "April 2023");
    assert_eq!(label("last June"), "June 2022");
    assert_eq!(label("next May"), "May 2024");
    assert_eq!(label("next June"), "June 2023");
    assert_eq!(label("this June"), "June 2023");
    let (covered, l, _, _, relative) = one("we married in March");
    assert_eq!(
        (covered.as_str(), l.as_str(), relative),
        ("in March", "March 2023", true)
    );
    assert_eq!(label("in June"), "June 2022");
    assert_eq!(label("I will fly there in June"), "June 2023");
    assert_eq!(label("in May"), "May 2023");
    let late = find_dates("she moved to Lyon last May", ymd(2026, 1, 10));
    assert_eq!(late[0].period.label(), "May 2025");
    assert_eq!(late[0].period.from_ms(), 1_746_057_600_000);
}

#[test]
fn may_the_verb_is_not_a_month() {
    assert!(find_dates("I may go, this may be hard", anchor()).is_empty());
    assert!(find_dates("it may 7 times fail", anchor()).is_empty());
    assert_eq!(label("in May"), "May 2023");
}

#[test]
fn absolute_days_and_months() {
    let (covered, l, g, _, relative) = one("We met on May 7, 2023 at noon");
    assert_eq!(
        (covered.as_str(), l.as_str(), g, relative),
        ("on May 7, 2023", "7 May 2023", Granularity::Day, false)
    );
    assert_eq!(label("7 May 2023"), "7 May 2023");
    assert_eq!(label("1:56 pm on 8 May, 2023"), "8 May 2023");
    assert_eq!(label("in May 2021"), "May 2021");
    assert_eq!(one("in May 2021").0, "in May 2021");
    assert_eq!(label("September 2020"), "September 2020");
    assert_eq!(label("Sept 3rd, 2019"), "3 September 2019");
    assert_eq!(label("2023-05-07"), "7 May 2023");
    assert_eq!(label("2021-11"), "November 2021");
    assert!(!one("2023-05-07").4);
}

#[test]
fn yearless_days() {
    assert_eq!(label("on May 7th"), "7 May 2023");
    assert_eq!(one("on May 7th").0, "on May 7th");
    assert!(one("on May 7th").4);
    assert_eq!(label("on May 9th"), "9 May 2022");
    assert_eq!(label("the 7th of May"), "7 May 2023");
    assert_eq!(label("the 3rd of June"), "3 June 2022");
    assert_eq!(label("we will meet on the 3rd of June"), "3 June 2023");
    assert_eq!(label("7th May"), "7 May 2023");
    assert_eq!(label("Dec 25"), "25 December 2022");
    assert_eq!(label("I bought it on the 17th."), "17 April 2023");
    assert_eq!(label("I bought it on the 3rd"), "3 May 2023");
    assert_eq!(label("we will go on the 3rd"), "3 June 2023");
    assert!(find_dates("the 3rd time", anchor()).is_empty());
}

#[test]
fn years_need_a_preposition() {
    assert_eq!(label("in 2022"), "2022");
    assert_eq!(one("in 2022").0, "in 2022");
    assert_eq!(label("the summer of 2022"), "2022");
    let (covered, _, g, relation, relative) = one("since 2019");
    assert_eq!(
        (covered.as_str(), g, relation, relative),
        ("2019", Granularity::Year, Relation::After, false)
    );
    assert!(find_dates("I have 2022 reasons", anchor()).is_empty());
    assert!(find_dates("room 1999", anchor()).is_empty());
}

#[test]
fn relations() {
    assert_eq!(one("before May 2023").3, Relation::Before);
    assert_eq!(one("until next week").3, Relation::Before);
    assert_eq!(one("by Friday").3, Relation::Before);
    assert_eq!(one("after last May").3, Relation::After);
    assert_eq!(one("since yesterday").3, Relation::After);
    assert_eq!(one("since yesterday").0, "yesterday");
    assert_eq!(one("in 2020").3, Relation::At);
}

#[test]
fn not_dates() {
    for t in [
        "I have 3 kids and two dogs",
        "dinner at 7 pm",
        "meet at 7:30",
        "we walked 10 km",
        "I march on",
        "last time I checked",
        "the day was long",
        "next to the lake",
        "this is it",
    ] {
        assert!(
            find_dates(t, anchor()).is_empty(),
            "{t}: {:?}",
            find_dates(t, anchor())
        );
    }
}

#[test]
fn several_mentions_in_order() {
    let found = find_dates(
        "Yesterday I booked it; we fly next Friday and return in June 2023.",
        anchor(),
    );
    let labels: Vec<String> = found.iter().map(|m| m.period.label()).collect();
    assert_eq!(labels, ["7 May 2023", "12 May 2023", "June 2023"]);
    assert!(found.windows(2).all(|w| w[0].end <= w[1].start));
}

#[test]
fn phrases_and_millis() {
    let day = Period::day(ymd(2023, 5, 7));
    assert_eq!(day.phrase(), "on 7 May 2023");
    assert_eq!(day.from_ms(), 1_683_417_600_000);
    assert_eq!(day.until_ms() - day.from_ms(), 86_400_000);
    assert_eq!(
        Period::week_of(ymd(2023, 5, 3)).phrase(),
        "in the week of 1 May 2023"
    );
    assert_eq!(Period::month(2023, 5).unwrap().phrase(), "in May 2023");
    assert_eq!(Period::month(2023, 12).unwrap().until, ymd(2024, 1, 1));
    assert_eq!(Period::year(2023).unwrap().phrase(), "in 2023");
    assert_eq!(Period::month(2023, 5).unwrap().key(), "2023-05-01/month");
}

#[test]
fn unicode_text_keeps_byte_offsets() {
    let text = "Café ☕ with Zoë yesterday 🎉";
    let m = &find_dates(text, anchor())[0];
    assert_eq!(&text[m.start..m.end], "yesterday");
}

#[test]
fn query_expressions() {
    let jan = ymd(2026, 1, 10);
    let m = &find_dates("what did I cook in May 2023?", jan)[0];
    assert_eq!(
        (m.period.from, m.period.until),
        (ymd(2023, 5, 1), ymd(2023, 6, 1))
    );
    let m = &find_dates("where did we eat last week", ymd(2023, 5, 10))[0];
    assert_eq!(
        (m.period.from, m.period.until),
        (ymd(2023, 5, 1), ymd(2023, 5, 8))
    );
    let m = &find_dates("jobs before 2020", jan)[0];
    assert_eq!(
        (m.relation, m.period.from),
        (Relation::Before, ymd(2020, 1, 1))
    );
    assert!(find_dates("Where did Ana live before the move to Lyon?", jan).is_empty());
    assert!(find_dates("what does Ana like", jan).is_empty());
}

mod hostile {
    //! Dates in text nobody here wrote, against any anchor a turn time can
    //! give (the ends of the calendar included): no panic, mentions on
    //! character boundaries, periods in order.

    use super::*;
    use engram_testkit::text::hostile_text;
    use proptest::prelude::*;

    fn anchors() -> impl Strategy<Value = NaiveDate> {
        prop_oneof![
            4 => (1900i32..2100, 1u32..=12, 1u32..=28).prop_map(|(y, m, d)| ymd(y, m, d)),
            1 => Just(NaiveDate::MIN),
            1 => Just(NaiveDate::MAX),
            1 => Just(NaiveDate::default()),
        ]
    }

    const PHRASES: &[&str] = &[
        "last May",
        "next week",
        "two years ago",
        "on 7 May 2023",
        "in 2022",
        "yesterday",
        "the week before last",
        "3 days later",
        "since March",
        "May 7th",
        "9999 years ago",
        "in 262143",
        "next year",
        "999999999 days ago",
        "last Friday",
        "early 2020s",
    ];

    /// Date phrases glued to hostile text, so the parser gets far.
    fn dated_text() -> impl Strategy<Value = String> {
        let phrases = proptest::sample::select(PHRASES);
        (hostile_text(), phrases, hostile_text()).prop_map(|(a, p, b)| format!("{a}{p}{b}"))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn find_dates_on_hostile_text(
            text in prop_oneof![hostile_text(), dated_text()],
            anchor in anchors(),
        ) {
            for m in find_dates(&text, anchor) {
                prop_assert!(m.start < m.end && m.end <= text.len());
                prop_assert!(text.is_char_boundary(m.start) && text.is_char_boundary(m.end));
                prop_assert!(m.period.from <= m.period.until);
                let _ = (m.period.label(), m.period.phrase(), m.period.key());
            }
        }
    }
}
