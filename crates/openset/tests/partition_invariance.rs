//! Property tests: random scripts from a safe generator over random data give
//! identical result trees with 1 and with 16 partitions, and with and without
//! the index pre-filter.

mod common;
use common::{Rng, Server};
use serde_json::{json, Value};

fn pick<'a>(rng: &mut Rng, items: &[&'a str]) -> &'a str {
    items[rng.below(items.len() as u64) as usize]
}

fn table() -> Value {
    json!({"id_type": "textual", "properties": [
        {"name": "color", "type": "text"},
        {"name": "n", "type": "int"},
        {"name": "price", "type": "double"},
        {"name": "tag", "type": "text", "is_set": true},
        {"name": "tier", "type": "text", "is_customer": true}
    ], "event_order": ["e0", "e1"]})
}

fn data(rng: &mut Rng) -> Value {
    let mut out = Vec::new();
    for c in 0..80 {
        let n_events = 1 + rng.below(25);
        let mut stamp = 1_700_000_000_000i64 + rng.below(86_400_000) as i64;
        for i in 0..n_events {
            stamp += (rng.below(4) * 900_000 + rng.below(2) * 86_400_000) as i64;
            let tags: Vec<&str> = ["a", "b", "c"]
                .into_iter()
                .filter(|_| rng.below(3) == 0)
                .collect();
            let mut e = json!({
                "id": format!("c{c}"),
                "stamp": stamp,
                "event": format!("e{}", rng.below(5)),
                "color": pick(rng, &["red", "green", "blue"]),
                "n": rng.below(10),
                "price": (rng.below(10_000) as f64) / 100.0,
            });
            if !tags.is_empty() {
                e["tag"] = json!(tags);
            }
            if i == 0 && rng.below(2) == 0 {
                e["tier"] = json!(pick(rng, &["gold", "silver"]));
            }
            out.push(e);
        }
    }
    Value::Array(out)
}

fn condition(rng: &mut Rng) -> String {
    let one = |rng: &mut Rng| match rng.below(6) {
        0 => format!("event.is(== \"e{}\")", rng.below(5)),
        1 => format!("n > {}", rng.below(10)),
        2 => format!("color == \"{}\"", pick(rng, &["red", "green", "blue"])),
        3 => format!("price < {}.5", rng.below(100)),
        4 => "true".to_string(),
        _ => format!("event.is_not(== \"e{}\")", rng.below(5)),
    };
    match rng.below(3) {
        0 => format!("{} && {}", one(rng), one(rng)),
        1 => format!("{} || {}", one(rng), one(rng)),
        _ => one(rng),
    }
}

fn group(rng: &mut Rng) -> &'static str {
    pick(
        rng,
        &[
            "event",
            "color",
            "n",
            "tier",
            "get_day_of_week(stamp)",
            "session",
        ],
    )
}

fn script(rng: &mut Rng) -> String {
    let mut s = String::new();
    if rng.below(2) == 0 {
        s.push_str("select\n  count id as customers\n");
        for (i, line) in [
            "count session as sessions",
            "sum n as total_n",
            "min price as low",
            "max price as high",
            "avg price as mean",
            "count tag as tags",
        ]
        .iter()
        .enumerate()
        {
            if rng.below(2) == 0 || i == 0 {
                s.push_str(&format!("  {line}\n"));
            }
        }
        s.push_str("end\n");
    }
    let modifiers = pick(
        rng,
        &[
            "",
            ".reverse()",
            ".limit(3)",
            ".reverse().limit(2)",
            ".from(1)",
        ],
    );
    let shape = rng.below(3);
    if shape == 2 {
        // A funnel of constant groups: runs stop once every step is
        // counted, and steps inside scans over an event a customer never
        // had count as done from the start.
        s.push_str(&format!(
            "each_row{modifiers} where event.is(== \"e{}\")\n  << \"step1\"\n  each_row.continue().next() where event.is(== \"e{}\") && {}\n    << \"step2\"\n    each_row.continue().next().limit(1) where event.is(== \"e{}\")\n      << \"step3\"\n    end\n  end\nend\n",
            rng.below(5),
            rng.below(6),
            condition(rng),
            rng.below(6)
        ));
    } else if shape == 0 {
        s.push_str(&format!(
            "each_row{modifiers} where {}\n  << {}, {}\nend\n",
            condition(rng),
            group(rng),
            group(rng)
        ));
    } else {
        s.push_str(&format!(
            "each_row{modifiers} where {}\n  first = {}\n  each_row.continue().next().limit({}) where {}\n    << first, {}\n  end\nend\n",
            condition(rng),
            group(rng),
            1 + rng.below(3),
            condition(rng),
            group(rng)
        ));
    }
    s
}

#[test]
fn random_scripts_agree_on_1_and_16_partitions_with_and_without_prefilter() {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("partition invariance seed {seed}");
    let mut rng = Rng(seed);
    let records = data(&mut rng);
    let servers = [
        Server::start(&["--partitions", "1"]),
        Server::start(&["--partitions", "16"]),
        Server::start(&["--partitions", "16", "--no-prefilter"]),
    ];
    for s in &servers {
        s.create_table("t", &table());
        s.insert_ok("t", &records);
    }
    let mut non_empty = 0;
    for _ in 0..60 {
        let text = script(&mut rng);
        let answers: Vec<_> = servers
            .iter()
            .map(|s| s.request("POST", "/v1/query/t/event", Some(text.as_bytes()), &[]))
            .collect();
        assert_eq!(
            answers[0].status, 200,
            "seed {seed}\n{text}\n{}",
            answers[0].text
        );
        assert_eq!(
            answers[0].json, answers[1].json,
            "partitions, seed {seed}\n{text}"
        );
        assert_eq!(
            answers[1].json, answers[2].json,
            "pre-filter, seed {seed}\n{text}"
        );
        // The same script without event guards (`true && ...` hides them):
        // no guarded scans, jump tables or settled pushes.
        let twin = text.replace("where event.is(", "where true && event.is(");
        let plain = servers[1].request("POST", "/v1/query/t/event", Some(twin.as_bytes()), &[]);
        assert_eq!(
            answers[1].json, plain.json,
            "event guards, seed {seed}\n{text}"
        );
        non_empty += usize::from(
            answers[0].json["_"]
                .as_array()
                .is_some_and(|a| !a.is_empty()),
        );
    }
    assert!(
        non_empty > 20,
        "the generator must produce scripts that match something ({non_empty}/60)"
    );
}
