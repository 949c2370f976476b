//! Segments over HTTP: definition and sizes, z order and segment math,
//! `segments=` filters and compare mode, `on_insert` for exactly the touched
//! customers, `refresh`, `use_cached`, durability and errors.

mod common;
use common::{highstreet_server, Answer, Server};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn highstreet() -> Server {
    highstreet_server("4")
}

fn post(s: &Server, path: &str, body: &str) -> Answer {
    s.request(
        "POST",
        &format!("/v1/query/highstreet/{path}"),
        Some(body.as_bytes()),
        &[],
    )
}

fn segment(s: &Server, body: &str) -> Value {
    let a = post(s, "segment", body);
    assert_eq!(a.status, 200, "{body}\n{}", a.text);
    a.json
}

fn members(s: &Server, name: &str) -> Vec<String> {
    let a = post(s, &format!("event?segments={name}"), "<< id");
    assert_eq!(a.status, 200, "{}", a.text);
    let mut ids: Vec<String> = a.json["_"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["g"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

const THREE: &str = "@segment outdoor on_insert
return(product_group.ever(== \"outdoor\"))

# a comment line between sections
@segment big_spender z_index=150
if total.ever(> 500)
  return(true)
end

@segment both z_index=200
return(intersection(\"outdoor\", \"big_spender\") || union(\"big_spender\", \"big_spender\") && population(\"outdoor\"))
";

#[test]
fn define_evaluate_in_z_order_and_filter_queries() {
    let s = highstreet();
    assert_eq!(
        segment(&s, THREE),
        json!({"_": [{"g": "outdoor", "c": [2]}, {"g": "big_spender", "c": [1]}, {"g": "both", "c": [0]}]})
    );
    assert_eq!(members(&s, "outdoor"), ["klara", "kyle"]);
    assert_eq!(members(&s, "big_spender"), ["tommy"]);
    let a = post(&s, "counts", "@segment again\nreturn(true)");
    assert_eq!(
        a.json,
        json!({"_": [{"g": "again", "c": [3]}]}),
        "the older path"
    );
    let compare = post(
        &s,
        "event?segments=*,outdoor,big_spender",
        "each_row where event.is(== \"purchase\")\n  << shipper\nend",
    );
    assert_eq!(
        compare.json,
        json!({"_": [
            {"g": "ground", "c": [3], "c2": [2], "c3": [1]},
            {"g": "fedex", "c": [2], "c2": [1], "c3": [1]}
        ]})
    );
    let p = s.get("/v1/query/highstreet/property/shipper?segments=*,outdoor");
    assert_eq!(
        p.json,
        json!({"_": [{"g": "shipper", "c": [3], "c2": [2], "_": [
            {"g": "ground", "c": [3], "c2": [2]},
            {"g": "fedex", "c": [2], "c2": [1]}
        ]}]})
    );
    let a = post(&s, "event?segments=outdoor,nope", "<< id");
    assert_eq!((a.status, a.detail()), (400, "missing segment 'nope'"));
}

#[test]
fn on_insert_changes_exactly_the_inserted_customers() {
    let s = highstreet();
    segment(&s, "@segment long\nreturn(row_count > 6)\n\n@segment follows on_insert z_index=200\nreturn(population(\"long\"))");
    assert_eq!(members(&s, "follows"), ["klara"]);
    // Widen `long` without touching `follows`: its stored members stay.
    segment(&s, "@segment long\nreturn(row_count > 3)");
    assert_eq!(members(&s, "long"), ["klara", "kyle", "tommy"]);
    assert_eq!(members(&s, "follows"), ["klara"]);
    // An insert for kyle re-evaluates `follows` for kyle only.
    s.insert_ok(
        "highstreet",
        &json!([{"id": "kyle", "stamp": "2017-03-01T00:00:00Z", "event": "page_view"}]),
    );
    assert_eq!(members(&s, "follows"), ["klara", "kyle"]);
    // A customer leaves when an insert makes the script false.
    segment(&s, "@segment small on_insert\nreturn(row_count < 5)");
    assert_eq!(members(&s, "small"), Vec::<String>::new());
    s.insert_ok(
        "highstreet",
        &json!([{"id": "newbie", "stamp": "2017-03-01T00:00:00Z", "event": "page_view"}]),
    );
    assert_eq!(members(&s, "small"), ["newbie"]);
    let more: Vec<Value> = (0..5)
        .map(|i| json!({"id": "newbie", "stamp": 1_500_000_000 + i, "event": "page_view"}))
        .collect();
    s.insert_ok("highstreet", &json!(more));
    assert_eq!(members(&s, "small"), Vec::<String>::new());
}

#[test]
fn refresh_recomputes_in_the_background_and_use_cached_answers_from_the_store() {
    let s = highstreet();
    segment(&s, "@segment busy refresh=1s\nreturn(row_count > 8)");
    assert_eq!(members(&s, "busy"), ["klara"]);
    let more: Vec<Value> = (0..5)
        .map(|i| json!({"id": "kyle", "stamp": 1_500_000_000 + i, "event": "page_view"}))
        .collect();
    s.insert_ok("highstreet", &json!(more));
    let deadline = Instant::now() + Duration::from_secs(10);
    while members(&s, "busy") != ["klara", "kyle"] {
        assert!(
            Instant::now() < deadline,
            "refresh did not pick kyle up: {:?}",
            members(&s, "busy")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    segment(
        &s,
        "@segment cached use_cached refresh=1h\nreturn(row_count > 7)",
    );
    assert_eq!(members(&s, "cached"), ["klara", "kyle"]);
    let more: Vec<Value> = (0..4)
        .map(|i| json!({"id": "tommy", "stamp": 1_500_000_000 + i, "event": "page_view"}))
        .collect();
    s.insert_ok("highstreet", &json!(more));
    let cached = segment(
        &s,
        "@segment cached use_cached refresh=1h\nreturn(row_count > 7)",
    );
    assert_eq!(
        cached["_"][0]["c"],
        json!([2]),
        "answered from the stored result"
    );
    let fresh = segment(&s, "@segment cached refresh=1h\nreturn(row_count > 7)");
    assert_eq!(
        fresh["_"][0]["c"],
        json!([3]),
        "a changed definition is recomputed"
    );
}

#[test]
fn definitions_and_memberships_survive_restart() {
    let mut s = highstreet();
    segment(&s, THREE);
    s.restart(&[]).unwrap();
    assert_eq!(members(&s, "outdoor"), ["klara", "kyle"]);
    assert_eq!(members(&s, "big_spender"), ["tommy"]);
    s.insert_ok("highstreet", &json!([{"id": "tommy", "stamp": "2017-02-01T00:00:00Z", "event": "cart_item", "product_group": ["outdoor"]}]));
    assert_eq!(
        members(&s, "outdoor"),
        ["klara", "kyle", "tommy"],
        "on_insert still active after restart"
    );
}

#[test]
fn dropping_a_property_drops_the_segments_that_use_it() {
    let s = highstreet();
    segment(&s, THREE);
    let a = s.delete("/v1/table/highstreet/property/total");
    assert_eq!(a.status, 200, "{}", a.text);
    // `both` names segments, not the property: it stays.
    assert_eq!(a.json["dropped_segments"], json!(["big_spender"]));
    assert_eq!(post(&s, "event?segments=big_spender", "<< id").status, 400);
    assert_eq!(members(&s, "outdoor"), ["klara", "kyle"]);
}

#[test]
fn segment_errors_change_nothing() {
    let s = highstreet();
    let cases = [
        ("return(true)", "no @segment sections could be found"),
        ("@segment Bad\nreturn(true)", "bad segment name 'Bad'"),
        ("@segment a colour=red\nreturn(true)", ""),
        (
            "@segment a\nreturn(true)\n@segment a\nreturn(false)",
            "segment 'a' is defined twice",
        ),
    ];
    for (body, detail) in cases {
        let a = post(&s, "segment", body);
        assert_eq!(a.status, 400, "{body}: {}", a.text);
        if !detail.is_empty() {
            assert_eq!(a.detail(), detail, "{body}");
        }
    }
    let a = post(
        &s,
        "segment",
        "@segment fine\nreturn(true)\n\n@segment broken\nreturn(no_such_thing.ever(== 1))",
    );
    assert_eq!(a.status, 400);
    assert_eq!(a.json["error"]["class"], "parse");
    assert_eq!(
        a.json["error"]["line"], 5,
        "lines count from the top of the body"
    );
    assert_eq!(
        post(&s, "event?segments=fine", "<< id").status,
        400,
        "nothing was defined"
    );
    let select = post(
        &s,
        "segment",
        "@segment x\nselect\n  count id\nend\nreturn(true)",
    );
    assert_eq!(
        select.status, 400,
        "select is not allowed in a segment script"
    );
    let listing = post(&s, "segment?debug=true", "@segment x\nreturn(true)");
    assert_eq!(listing.status, 200);
    assert!(listing
        .header("content-type")
        .unwrap()
        .starts_with("text/plain"));
    assert_eq!(
        post(&s, "event?segments=x", "<< id").status,
        400,
        "debug defines nothing"
    );
}

#[test]
fn histograms_compare_segments() {
    let s = highstreet();
    segment(&s, THREE);
    let a = post(&s, "histogram/rows?segments=*,outdoor", "return(row_count)");
    assert_eq!(a.status, 200, "{}", a.text);
    // tommy 6 rows, kyle 4, klara 9; outdoor = kyle, klara.
    assert_eq!(
        a.json,
        json!({"_": [{"g": "rows", "c": [3], "c2": [2], "_": [
            {"g": 9, "c": [1], "c2": [1]},
            {"g": 6, "c": [1], "c2": [0]},
            {"g": 4, "c": [1], "c2": [1]}
        ]}]})
    );
    assert_eq!(
        post(&s, "histogram/rows?segments=nope", "return(row_count)").detail(),
        "missing segment 'nope'"
    );
}

#[test]
fn prefiltered_segments_match_full_evaluation() {
    let s = highstreet();
    // The second form starts with an assignment, so no pre-filter applies.
    for cond in [
        "product_group.ever(== \"outdoor\")",
        "event.is(== \"purchase\") && shipper == \"fedex\"",
        "product_name.ever(== \"fly rod\") || product_name.ever(== \"grommet\")",
        "product_name.ever(== \"no such product\")",
        "product_group.ever(== \"outdoor\") && product_group.never(== \"garage\")",
        "!(product_name.ever(in [\"fly rod\", \"grommet\"]))",
        "product_tags.ever(contains \"red\") || product_tags.ever(any [\"coffee\", \"none\"])",
        "product_tags.ever(contains [\"red\", \"small\"])",
        "age == 30 || product_group.never(== \"kitchen\")",
        "population(\"fast_base\") && !compliment(\"fast_base\")",
    ] {
        let body = format!("@segment fast_base\nreturn(shipper.ever(== \"fedex\"))\n\n@segment fast z_index=200\nif {cond}\n  return(true)\nend\n\n@segment slow z_index=200\nx = 1\nif {cond}\n  return(true)\nend\n");
        let sizes = segment(&s, &body);
        let size = |name: &str| {
            sizes["_"]
                .as_array()
                .unwrap()
                .iter()
                .find(|b| b["g"] == name)
                .unwrap()["c"]
                .clone()
        };
        assert_eq!(size("fast"), size("slow"), "{cond}: {sizes}");
        assert_eq!(members(&s, "fast"), members(&s, "slow"), "{cond}");
    }
}
