//! Property queries over HTTP: customers per value from the indexes, with
//! every filter, buckets, sets, customer properties, order and errors.

mod common;
use common::{highstreet_server, Server};
use serde_json::{json, Value};

fn highstreet() -> Server {
    highstreet_server("3")
}

fn prop(s: &Server, path: &str) -> Value {
    let a = s.get(&format!("/v1/query/highstreet/property/{path}"));
    assert_eq!(a.status, 200, "{path}: {}", a.text);
    a.json
}

fn children(v: &Value) -> Vec<(Value, u64)> {
    v["_"][0]["_"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["g"].clone(), n["c"][0].as_u64().unwrap()))
        .collect()
}

#[test]
fn text_values_sets_and_events() {
    let s = highstreet();
    assert_eq!(
        prop(&s, "shipper"),
        json!({"_": [{"g": "shipper", "c": [3], "_": [{"g": "ground", "c": [3]}, {"g": "fedex", "c": [2]}]}]})
    );
    assert_eq!(
        s.get("/v1/query/highstreet/column/shipper").json,
        prop(&s, "shipper")
    );
    let groups = prop(&s, "product_group");
    assert_eq!(groups["_"][0]["c"], json!([3]));
    assert_eq!(
        children(&groups),
        vec![
            (json!("angling"), 2),
            (json!("bathroom"), 2),
            (json!("bedroom"), 2),
            (json!("kitchen"), 2),
            (json!("outdoor"), 2),
            (json!("restaurant"), 2),
            (json!("basement"), 1),
            (json!("garage"), 1)
        ]
    );
    assert_eq!(
        children(&prop(&s, "product_group?rx=b.*")),
        vec![
            (json!("bathroom"), 2),
            (json!("bedroom"), 2),
            (json!("basement"), 1)
        ]
    );
    assert_eq!(
        children(&prop(&s, "product_group?rx=oor")),
        vec![],
        "the whole value must match"
    );
    assert_eq!(
        children(&prop(&s, "product_group?sub=door")),
        vec![(json!("outdoor"), 2)]
    );
    assert_eq!(
        children(&prop(&s, "product_group?eq=garage")),
        vec![(json!("garage"), 1)]
    );
    assert_eq!(
        children(&prop(&s, "product_group?sort=group&order=asc&trim=3")),
        vec![
            (json!("angling"), 2),
            (json!("basement"), 1),
            (json!("bathroom"), 2)
        ]
    );
    assert_eq!(
        children(&prop(&s, "event")),
        vec![(json!("cart_item"), 3), (json!("purchase"), 3)]
    );
    let tail = prop(&s, "product_group?order=asc");
    assert_eq!(children(&tail)[0], (json!("basement"), 1));
}

#[test]
fn numeric_filters_and_buckets() {
    let s = highstreet();
    assert_eq!(
        children(&prop(&s, "product_price?gte=90")),
        vec![(json!(99.95), 2), (json!(94.74), 1), (json!(649.99), 1)]
    );
    assert_eq!(
        children(&prop(&s, "product_price?gt=99.95")),
        vec![(json!(649.99), 1)]
    );
    assert_eq!(
        children(&prop(&s, "product_price?lt=20")),
        vec![(json!(17.99), 1)]
    );
    assert_eq!(
        children(&prop(&s, "product_price?lte=17.99")),
        vec![(json!(17.99), 1)]
    );
    assert_eq!(
        children(&prop(&s, "product_price?between=20&and=30")),
        vec![(json!(27.99), 3)]
    );
    assert_eq!(
        children(&prop(&s, "product_price?eq=649.99")),
        vec![(json!(649.99), 1)]
    );
    let buckets = prop(&s, "product_price?bucket=100");
    assert_eq!(buckets["_"][0]["c"], json!([3]));
    assert_eq!(children(&buckets), vec![(json!(0.0), 3), (json!(600.0), 1)]);
    assert_eq!(children(&prop(&s, "cart_size?eq=2")), vec![(json!(2), 2)]);
    assert_eq!(
        children(&prop(&s, "cart_size?bucket=2&sort=group")),
        vec![(json!(2), 3), (json!(0), 1)]
    );
    assert_eq!(
        children(&prop(&s, "cart_size?bucket=2&sort=group&order=asc")),
        vec![(json!(0), 1), (json!(2), 3)]
    );
}

#[test]
fn customer_property_index_follows_changes_and_restarts() {
    let mut s = highstreet();
    s.insert_ok(
        "highstreet",
        &json!([{"id": "tommy", "age": 30}, {"id": "klara", "age": 30}]),
    );
    assert_eq!(children(&prop(&s, "age")), vec![(json!(30), 2)]);
    s.insert_ok(
        "highstreet",
        &json!([{"id": "tommy", "age": 31}, {"id": "klara", "age": null}]),
    );
    let expect = json!({"_": [{"g": "age", "c": [1], "_": [{"g": 31, "c": [1]}]}]});
    assert_eq!(prop(&s, "age"), expect);
    s.restart(&[]).unwrap();
    assert_eq!(prop(&s, "age"), expect);
    assert_eq!(
        children(&prop(&s, "shipper")),
        vec![(json!("ground"), 3), (json!("fedex"), 2)]
    );
}

#[test]
fn filter_errors() {
    let s = highstreet();
    let cases = [
        (
            "shipper?gt=3",
            400,
            "specified filter type not compatible with string property",
        ),
        (
            "product_price?rx=1.*",
            400,
            "specified filter type not compatible with integer or double property",
        ),
        (
            "product_price?between=1",
            400,
            "property query using 'between' requires an 'and' param",
        ),
        ("product_price?gt=", 400, "property filter requires a value"),
        (
            "product_price?gt=1&lt=5",
            400,
            "only one filter may be given",
        ),
        (
            "shipper?bucket=5",
            400,
            "bucket applies only to int and double properties",
        ),
        ("shipper?rx=(", 400, "could not compile regular express: ("),
        (
            "product_price?gt=cheap",
            400,
            "filter value 'cheap' is not a number",
        ),
        (
            "cart_size?eq=two",
            400,
            "filter value 'two' is not a valid int",
        ),
        ("nope", 404, "property not found"),
    ];
    for (path, status, detail) in cases {
        let a = s.get(&format!("/v1/query/highstreet/property/{path}"));
        assert_eq!((a.status, a.detail()), (status, detail), "{path}");
    }
    assert_eq!(s.get("/v1/query/highstreet/property/stamp").status, 400);
    assert_eq!(s.get("/v1/query/nope/property/x").status, 404);
    assert_eq!(
        s.get("/v1/query/highstreet/property/shipper?segments=vip")
            .detail(),
        "missing segment 'vip'"
    );
}
