use super::*;
use crate::dates::Period;

fn turn(id: &str, role: Role, text: &str, ts_ms: i64) -> TurnInput {
    TurnInput {
        fragment_id: id.into(),
        role,
        text: text.into(),
        ts_ms,
        observations: Vec::new(),
    }
}

/// Epoch ms of a UTC day plus `hours`.
fn at(y: i32, m: u32, d: u32, hours: i64) -> i64 {
    Period::day(NaiveDate::from_ymd_opt(y, m, d).unwrap()).from_ms() + hours * 3_600_000
}

fn day_ms(y: i32, m: u32, d: u32) -> i64 {
    at(y, m, d, 0)
}

/// Monday 8 May 2023, 13:56 UTC.
fn may8() -> i64 {
    at(2023, 5, 8, 13) + 56 * 60_000
}

fn extract(turns: &[TurnInput]) -> Extraction {
    RuleExtractor::new().extract_sync(turns)
}

fn user(text: &str) -> Extraction {
    extract(&[turn("t1", Role::User, text, may8())])
}

fn texts(x: &Extraction) -> Vec<&str> {
    x.observations.iter().map(|o| o.text.as_str()).collect()
}

fn find<'a>(x: &'a Extraction, text: &str) -> &'a Observation {
    x.observations
        .iter()
        .find(|o| o.text == text)
        .unwrap_or_else(|| panic!("no {text:?} in {:?}", texts(x)))
}

fn entity<'a>(x: &'a Extraction, key: &str) -> &'a EntityMention {
    x.entities.iter().find(|e| e.key == key).unwrap_or_else(|| {
        panic!(
            "no {key:?} in {:?}",
            x.entities.iter().map(|e| &e.key).collect::<Vec<_>>()
        )
    })
}

#[test]
fn allergy_is_health() {
    let x = user("I'm allergic to shellfish.");
    assert_eq!(texts(&x), ["User is allergic to shellfish."]);
    let o = &x.observations[0];
    assert_eq!(o.category, Category::Health);
    assert_eq!(o.subject, "User");
    assert_eq!(o.source_ids, ["t1"]);
    assert_eq!(o.ts_ms, may8());
    assert_eq!(o.event_ms, None);
    assert_eq!(x.usage, crate::ExtractUsage::default());
    assert_eq!(x.fallback, None);
}

#[test]
fn named_sister_moved_last_may() {
    let x = extract(&[turn(
        "t1",
        Role::User,
        "my sister Ana moved to Lyon last May",
        at(2026, 1, 10, 9),
    )]);
    assert_eq!(
        texts(&x),
        ["Ana is User's sister.", "Ana moved to Lyon in May 2025."]
    );
    let rel = &x.observations[0];
    assert_eq!(
        (rel.category, rel.subject.as_str()),
        (Category::Relationship, "Ana")
    );
    let moved = &x.observations[1];
    assert_eq!(
        (moved.category, moved.subject.as_str()),
        (Category::Place, "Ana")
    );
    assert_eq!(moved.event_ms, Some(day_ms(2025, 5, 1)));
    for key in ["person:ana", "place:lyon", "date:2025-05-01/month"] {
        assert!(
            moved.entity_keys.iter().any(|k| k == key),
            "{key} in {:?}",
            moved.entity_keys
        );
    }
    assert_eq!(entity(&x, "place:lyon").kind, EntityKind::Place);
    assert_eq!(entity(&x, "date:2025-05-01/month").label, "May 2025");
}

#[test]
fn speaker_prefix_and_yesterday() {
    let x = extract(&[turn(
        "D1:3",
        Role::User,
        "Caroline: I went to a LGBTQ support group yesterday",
        may8(),
    )]);
    assert_eq!(
        texts(&x),
        ["Caroline went to a LGBTQ support group on 7 May 2023."]
    );
    let o = &x.observations[0];
    assert_eq!(
        (o.subject.as_str(), o.category),
        ("Caroline", Category::Event)
    );
    assert_eq!(o.event_ms, Some(day_ms(2023, 5, 7)));
    assert_eq!(o.entity_keys, ["person:caroline", "date:2023-05-07/day"]);
    assert_eq!(entity(&x, "person:caroline").source_ids, ["D1:3"]);
}

#[test]
fn locomo_style_turn() {
    let x = extract(&[turn(
        "D1:14",
        Role::User,
        "Melanie: Yeah, I painted that lake sunrise last year! It's special to me. 😊",
        may8(),
    )]);
    assert_eq!(
        x.observations[0].text,
        "Melanie painted that lake sunrise in 2022."
    );
    assert_eq!(x.observations[0].event_ms, Some(day_ms(2022, 1, 1)));
    assert!(texts(&x).iter().all(|t| !t.contains('😊')));
}

#[test]
fn preference() {
    let x = user("Oh, I really love hiking with my dog!");
    assert_eq!(texts(&x), ["User really loves hiking with User's dog."]);
    assert_eq!(x.observations[0].category, Category::Preference);
    let x = user("My favorite food is sushi.");
    assert_eq!(texts(&x), ["User's favorite food is sushi."]);
    assert_eq!(x.observations[0].category, Category::Preference);
    let x = user("I don't like horror movies.");
    assert_eq!(texts(&x), ["User does not like horror movies."]);
    assert_eq!(x.observations[0].category, Category::Preference);
}

#[test]
fn plans() {
    let x = user("I'm going to Japan next month.");
    assert_eq!(texts(&x), ["User is going to Japan in June 2023."]);
    let o = &x.observations[0];
    assert_eq!(o.category, Category::Plan);
    assert_eq!(o.event_ms, Some(day_ms(2023, 6, 1)));
    assert_eq!(entity(&x, "place:japan").label, "Japan");
    let x = user("I'll start a pottery class on Friday.");
    assert_eq!(
        texts(&x),
        ["User will start a pottery class on 12 May 2023."]
    );
    assert_eq!(x.observations[0].category, Category::Plan);
    let x = user("We're planning to visit Lisbon next summer with the kids.");
    assert_eq!(
        texts(&x),
        ["User and family are planning to visit Lisbon next summer with the kids."]
    );
    assert_eq!(x.observations[0].category, Category::Plan);
}

#[test]
fn possession_and_quantity() {
    let x = user("I have two cats and a PS5.");
    assert_eq!(texts(&x), ["User has two cats and a PS5."]);
    assert_eq!(x.observations[0].category, Category::Possession);
    assert_eq!(entity(&x, "quantity:2 cats").label, "2 cats");
    assert_eq!(entity(&x, "product:ps5").kind, EntityKind::Product);
    let x = user("I just bought a new iPhone 15 for $900!");
    assert_eq!(texts(&x), ["User just bought a new iPhone 15 for $900."]);
    assert_eq!(x.observations[0].category, Category::Possession);
    assert_eq!(entity(&x, "product:iphone 15").label, "iPhone 15");
    assert_eq!(entity(&x, "quantity:$900").kind, EntityKind::Quantity);
    let x = user("We have 3 kids.");
    assert_eq!(entity(&x, "quantity:3 kids").label, "3 kids");
}

#[test]
fn work() {
    let x = user("I work at Google as a nurse.");
    assert_eq!(texts(&x), ["User works at Google as a nurse."]);
    assert_eq!(x.observations[0].category, Category::Work);
    assert_eq!(
        entity(&x, "organization:google").kind,
        EntityKind::Organization
    );
    let x = user("I'm studying biology at Stanford University.");
    assert_eq!(
        texts(&x),
        ["User is studying biology at Stanford University."]
    );
    assert_eq!(x.observations[0].category, Category::Work);
    assert_eq!(
        entity(&x, "organization:stanford university").kind,
        EntityKind::Organization
    );
    let x = user("I just joined Acme Labs.");
    assert_eq!(entity(&x, "organization:acme labs").label, "Acme Labs");
}

#[test]
fn place_and_clause_split() {
    let x = user("I moved to Berlin in 2019 and I love the food there.");
    assert_eq!(
        texts(&x),
        [
            "User moved to Berlin in 2019.",
            "User loves the food there."
        ]
    );
    assert_eq!(x.observations[0].category, Category::Place);
    assert_eq!(x.observations[0].event_ms, Some(day_ms(2019, 1, 1)));
    assert_eq!(x.observations[1].category, Category::Preference);
    assert_eq!(entity(&x, "place:berlin").source_ids, ["t1"]);
    assert_eq!(entity(&x, "date:2019-01-01/year").label, "2019");
    let x = user("I live in Springfield; my parents are from Ohio.");
    assert_eq!(
        texts(&x),
        [
            "User lives in Springfield.",
            "User's parents are from Ohio."
        ]
    );
    assert_eq!(entity(&x, "place:springfield").kind, EntityKind::Place);
    assert_eq!(entity(&x, "place:ohio").kind, EntityKind::Place);
}

#[test]
fn weeks_ago_and_leading_dates() {
    let x = user("I adopted a puppy two weeks ago.");
    assert_eq!(
        texts(&x),
        ["User adopted a puppy in the week of 24 April 2023."]
    );
    assert_eq!(x.observations[0].event_ms, Some(day_ms(2023, 4, 24)));
    let x = user("Last weekend, I ran my first marathon.");
    assert_eq!(
        texts(&x),
        ["User ran User's first marathon on the weekend of 6 May 2023."]
    );
    assert_eq!(x.observations[0].category, Category::Event);
    let x = user("Since last May, I've been learning Spanish.");
    assert_eq!(
        texts(&x),
        ["User has been learning Spanish since May 2022."]
    );
    let x = user("I got married on June 3rd, 2018.");
    assert_eq!(texts(&x), ["User got married on June 3rd, 2018."]);
    assert_eq!(x.observations[0].event_ms, Some(day_ms(2018, 6, 3)));
    assert_eq!(x.observations[0].category, Category::Relationship);
}

#[test]
fn caller_observations_first_and_verbatim() {
    let mut t = turn("t1", Role::User, "Ana: I moved to Paris.", may8());
    t.observations = vec!["  Ana prefers window seats ".into(), String::new()];
    let x = extract(&[t]);
    assert_eq!(
        texts(&x),
        ["Ana prefers window seats", "Ana moved to Paris."]
    );
    let given = &x.observations[0];
    assert_eq!(
        (given.category, given.subject.as_str()),
        (Category::Given, "Ana")
    );
    assert_eq!(given.source_ids, ["t1"]);
    assert_eq!(given.entity_keys, ["person:ana"]);
}

#[test]
fn source_ids_and_duplicates() {
    let turns = [
        turn("a", Role::User, "I'm vegan.", may8()),
        turn("b", Role::User, "What should I cook tonight?", may8()),
        turn("c", Role::User, "I'm vegan!", may8() + 1000),
    ];
    let x = extract(&turns);
    assert_eq!(texts(&x), ["User is vegan."]);
    assert_eq!(x.observations[0].source_ids, ["a", "c"]);
    assert_eq!(x.observations[0].ts_ms, may8());
}

#[test]
fn people_merge_across_turns() {
    let turns = [
        turn("a", Role::User, "I met Ana at the gym.", may8()),
        turn("b", Role::User, "Ana's brother is a chef.", may8()),
        turn("c", Role::User, "Ana Lopez is my best friend now.", may8()),
    ];
    let x = extract(&turns);
    let ana = entity(&x, "person:ana");
    assert_eq!(
        (ana.label.as_str(), ana.kind),
        ("Ana Lopez", EntityKind::Person)
    );
    assert_eq!(ana.source_ids, ["a", "b", "c"]);
    let named = x
        .entities
        .iter()
        .filter(|e| e.kind == EntityKind::Person && !e.key.contains("'s"));
    assert_eq!(named.count(), 1);
    assert_eq!(
        entity(&x, "person:user's best friend").label,
        "User's best friend"
    );
    assert_eq!(
        find(&x, "User met Ana at the gym.").entity_keys,
        ["person:ana"]
    );
    let friend = find(&x, "Ana Lopez is User's best friend now.");
    assert_eq!(friend.subject, "Ana Lopez");
}

#[test]
fn relatives_without_names() {
    let x = user("My husband and I went camping last weekend.");
    assert_eq!(
        texts(&x),
        ["User's husband and User went camping on the weekend of 6 May 2023."]
    );
    assert_eq!(x.observations[0].category, Category::Relationship);
    assert_eq!(entity(&x, "person:user's husband").label, "User's husband");
    let turns = [
        turn("a", Role::User, "My brother called me.", may8()),
        turn("b", Role::User, "My brother Tom lives in Denver.", may8()),
    ];
    let x = extract(&turns);
    assert_eq!(entity(&x, "person:tom").source_ids, ["a", "b"]);
    assert!(texts(&x).contains(&"Tom is User's brother."));
    assert!(texts(&x).contains(&"Tom lives in Denver."));
}

#[test]
fn questions_and_fillers_give_nothing() {
    for t in [
        "Do you like sushi?",
        "Haha, thanks!",
        "wow",
        "Yeah, I agree.",
        "Where did I put my keys?",
        "Thanks, Mel! You rock.",
    ] {
        assert!(
            user(t).observations.is_empty(),
            "{t}: {:?}",
            texts(&user(t))
        );
    }
}

#[test]
fn assistant_turns() {
    let x = extract(&[turn(
        "t1",
        Role::Assistant,
        "I recommend the lentil soup. I've added it to your list.",
        may8(),
    )]);
    assert_eq!(
        texts(&x),
        [
            "Assistant recommends the lentil soup.",
            "Assistant has added it to your list."
        ]
    );
    assert_eq!(x.observations[0].subject, "Assistant");
}

#[test]
fn system_and_tool_turns_give_entities_only() {
    let x = extract(&[turn(
        "s",
        Role::System,
        "I am a helpful assistant for Acme Corp in Paris.",
        may8(),
    )]);
    assert!(x.observations.is_empty());
    assert_eq!(entity(&x, "organization:acme corp").source_ids, ["s"]);
    assert_eq!(entity(&x, "place:paris").kind, EntityKind::Place);
}

#[test]
fn third_person_statements() {
    let turns = [
        turn("a", Role::User, "My friend Jordan Lee is visiting.", may8()),
        turn(
            "b",
            Role::User,
            "Jordan works at Netflix in Los Angeles.",
            may8(),
        ),
    ];
    let x = extract(&turns);
    let o = find(&x, "Jordan works at Netflix in Los Angeles.");
    assert_eq!((o.subject.as_str(), o.category), ("Jordan", Category::Work));
    assert_eq!(entity(&x, "person:jordan").label, "Jordan Lee");
    assert_eq!(
        entity(&x, "organization:netflix").kind,
        EntityKind::Organization
    );
    assert_eq!(entity(&x, "place:los angeles").kind, EntityKind::Place);
}

#[test]
fn verbs_agree() {
    let cases = [
        (
            "I go to the gym every day.",
            "User goes to the gym every day.",
        ),
        ("I study law in Boston.", "User studies law in Boston."),
        (
            "I watch anime every night.",
            "User watches anime every night.",
        ),
        ("I can't stand cilantro.", "User cannot stand cilantro."),
        (
            "I'd love to learn the violin.",
            "User would love to learn the violin.",
        ),
        ("I was born in Mexico.", "User was born in Mexico."),
        ("I do not eat pork.", "User does not eat pork."),
        (
            "I enjoy painting landscapes.",
            "User enjoys painting landscapes.",
        ),
        (
            "I need a new laptop for school.",
            "User needs a new laptop for school.",
        ),
        (
            "i love my job at the bakery",
            "User loves User's job at the bakery.",
        ),
        (
            "Gonna visit my grandma tomorrow.",
            "User is going to visit User's grandma on 9 May 2023.",
        ),
        (
            "Just signed up for a pottery class.",
            "User just signed up for a pottery class.",
        ),
        (
            "That helped me a lot with my anxiety.",
            "That helped User a lot with User's anxiety.",
        ),
        (
            "I taught myself to code.",
            "User taught themselves to code.",
        ),
    ];
    for (input, want) in cases {
        assert_eq!(texts(&user(input)), [want], "{input}");
    }
    assert_eq!(
        texts(&user("I haven't seen my cousin Maya in years.")),
        [
            "Maya is User's cousin.",
            "User hasn't seen User's cousin Maya in years."
        ]
    );
}

#[test]
fn sentences_split_but_not_after_abbreviations() {
    let x = user(
        "I saw Dr. Smith on Monday. My blood test was 3.5 points higher, e.g. worse! I'm fine though.",
    );
    assert_eq!(
        texts(&x),
        [
            "User saw Dr. Smith on 8 May 2023.",
            "User's blood test was 3.5 points higher, e.g. worse.",
            "User is fine."
        ]
    );
    assert_eq!(entity(&x, "person:smith").label, "Dr. Smith");
}

#[test]
fn long_text_is_capped() {
    let long = format!("I love {}.", "long walks ".repeat(50));
    let o = &user(&long).observations[0];
    assert!(
        o.text.chars().count() <= 301 && o.text.ends_with('.'),
        "{}",
        o.text
    );
}

#[test]
fn deterministic() {
    let turns: Vec<TurnInput> = [
        "Caroline: I went to a LGBTQ support group yesterday and it was so powerful.",
        "Melanie: My kids are so excited about summer break! We're thinking about going camping next month.",
        "Caroline: I've known these friends for 4 years, since I moved from my home country.",
    ]
    .iter()
    .enumerate()
    .map(|(i, t)| turn(&format!("D{i}"), Role::User, t, may8()))
    .collect();
    let first = extract(&turns);
    for _ in 0..5 {
        assert_eq!(extract(&turns), first);
    }
    assert!(!first.observations.is_empty() && !first.entities.is_empty());
}

#[tokio::test]
async fn the_trait_calls_the_rules() {
    let rules = RuleExtractor;
    assert_eq!(rules.name(), "rules");
    let x = rules
        .extract(&[turn("t1", Role::User, "I'm allergic to peanuts.", may8())])
        .await
        .unwrap();
    assert_eq!(texts(&x), ["User is allergic to peanuts."]);
}

#[test]
fn odd_input_never_panics() {
    let fixed = [
        "",
        " ",
        ":",
        "I",
        "i",
        "Me.",
        "My",
        "my sister",
        "Ana:",
        "Ana: ",
        "A: b",
        "Dr.",
        "...",
        "?!?!",
        "— – -",
        "I'm",
        "'",
        "\"",
        "\"\"\"",
        "My sister Ana's",
        "on the",
        "last",
        "2023-13-45",
        "May 32, 2023",
        "$",
        "$5",
        "5%",
        "I have 1,000,000 reasons",
        "Ünïcödé Çafé in Zürich 😀 yesterday",
        "مرحبا I moved to دبي",
        "I\u{200d}love\u{fe0f} it",
        "e\u{301}te\u{301} I went there",
        "I went to İstanbul",
        "ẞ I love ß",
    ];
    let alphabet: Vec<char> = "aeiouIMmy ,.!?;:-'\"$%0123456789ÅéßİⅫ😀\u{200d}\nSundayMayJanuary"
        .chars()
        .collect();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut random = Vec::new();
    for _ in 0..300 {
        let len = (seed % 80) as usize;
        let s: String = (0..len)
            .map(|_| {
                seed = seed
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                alphabet[(seed >> 33) as usize % alphabet.len()]
            })
            .collect();
        random.push(s);
    }
    for text in fixed.iter().map(|s| s.to_string()).chain(random) {
        for role in [Role::User, Role::Assistant, Role::System] {
            let x = extract(&[turn("t", role, &text, may8())]);
            for o in &x.observations {
                assert!(
                    o.text.ends_with('.') && !o.text.is_empty(),
                    "{text:?} → {:?}",
                    o.text
                );
            }
        }
    }
}
