//! The batch query: segments, `@use`, properties and histograms in one
//! request, compiled before anything changes.

mod common;
use common::{highstreet_server, Answer, Server};
use serde_json::json;

fn highstreet() -> Server {
    highstreet_server("3")
}

fn batch(s: &Server, params: &str, body: &str) -> Answer {
    s.request(
        "POST",
        &format!("/v1/query/highstreet/batch{params}"),
        Some(body.as_bytes()),
        &[],
    )
}

const BODY: &str = "@segment outdoor
return(product_group.ever(== \"outdoor\"))

@use outdoor *

@property shipper

@property product_price bucket=100

@histogram rows
return(row_count)
";

#[test]
fn one_answer_for_every_section_under_use() {
    let s = highstreet();
    let a = batch(&s, "", BODY);
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(
        a.json,
        json!({"_": [
            {"g": "shipper", "c": [2], "c2": [3], "_": [
                {"g": "ground", "c": [2], "c2": [3]},
                {"g": "fedex", "c": [1], "c2": [2]}]},
            {"g": "product_price", "c": [2], "c2": [3], "_": [
                {"g": 0.0, "c": [2], "c2": [3]},
                {"g": 600.0, "c": [0], "c2": [1]}]},
            {"g": "rows", "c": [2], "c2": [3], "_": [
                {"g": 9, "c": [1], "c2": [1]},
                {"g": 6, "c": [0], "c2": [1]},
                {"g": 4, "c": [1], "c2": [1]}]}
        ]})
    );
    // The segment was stored by the batch.
    let e = s.request(
        "POST",
        "/v1/query/highstreet/event?segments=outdoor",
        Some(b"<< id"),
        &[],
    );
    assert_eq!(e.json["_"].as_array().unwrap().len(), 2);
}

#[test]
fn sections_take_their_own_parameters_and_template_values() {
    let s = highstreet();
    let body = "@property product_group rx=b.* trim=2\n\n@histogram spend bucket=500 min=0 max=1000\nreturn(sum(total) where shipper.is(== {{ship}}))\n";
    let a = batch(&s, "?str_ship=ground", body);
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(
        a.json["_"][0],
        json!({"g": "product_group", "c": [3], "_": [{"g": "bathroom", "c": [2]}, {"g": "bedroom", "c": [2]}]})
    );
    // ground totals: tommy 717.98, kyle 155.93, klara 145.93 (a double sum, so the keys are doubles).
    assert_eq!(
        a.json["_"][1],
        json!({"g": "spend", "c": [3], "_": [{"g": 1000.0, "c": [0]}, {"g": 500.0, "c": [1]}, {"g": 0.0, "c": [2]}]})
    );
}

#[test]
fn only_segments_answer_an_empty_list() {
    let s = highstreet();
    let a = batch(&s, "", "@segment all_of_them\nreturn(true)\n");
    assert_eq!(a.json, json!({"_": []}));
}

#[test]
fn errors_change_nothing() {
    let s = highstreet();
    let broken = "@segment fresh\nreturn(true)\n\n@histogram h\nreturn(nope)\n";
    let a = batch(&s, "", broken);
    assert_eq!(a.status, 400);
    assert_eq!(a.json["error"]["class"], "parse");
    assert_eq!(a.json["error"]["line"], 5);
    let e = s.request(
        "POST",
        "/v1/query/highstreet/event?segments=fresh",
        Some(b"<< id"),
        &[],
    );
    assert_eq!(e.status, 400, "the segment was not stored");
    assert_eq!(
        batch(&s, "", "@use ghost\n@property shipper\n").detail(),
        "missing segment 'ghost'"
    );
    assert_eq!(batch(&s, "", "@property shipper gt=3\n").status, 400);
    assert_eq!(batch(&s, "", "@property nope\n").status, 404);
    assert_eq!(batch(&s, "", "@nonsense x\nreturn(1)\n").status, 400);
    let listing = batch(&s, "?debug=true", BODY);
    assert_eq!(listing.status, 200);
    assert!(
        listing.text.contains("@segment outdoor") && listing.text.contains("@histogram rows"),
        "{}",
        listing.text
    );
}
