//! Histogram queries over HTTP (rest spec 5.6, OSL spec 12.1): samples,
//! buckets, fill and folding, `foreach` over text and set properties,
//! order and trim, script parameters, errors, customer-property writes,
//! and identical answers whatever the partition count.

mod common;
use common::{highstreet_server, Answer, Rng, Server};
use serde_json::{json, Value};

fn highstreet(partitions: &str) -> Server {
    highstreet_server(partitions)
}

fn query_on(s: &Server, table: &str, path: &str, script: &str) -> Answer {
    s.request(
        "POST",
        &format!("/v1/query/{table}/histogram/{path}"),
        Some(script.as_bytes()),
        &[("content-type", "text/plain")],
    )
}

fn query(s: &Server, path: &str, script: &str) -> Answer {
    query_on(s, "highstreet", path, script)
}

fn hist_on(s: &Server, table: &str, path: &str, script: &str) -> Value {
    let a = query_on(s, table, path, script);
    assert_eq!(a.status, 200, "{path}\n{script}\n{}", a.text);
    a.json
}

fn hist(s: &Server, path: &str, script: &str) -> Value {
    hist_on(s, "highstreet", path, script)
}

/// Asserts a 400 with this class and message; returns the error object.
fn fails(a: &Answer, class: &str, message: &str) -> Value {
    assert_eq!(a.status, 400, "{}", a.text);
    assert_eq!(a.json["error"]["class"], class, "{}", a.text);
    assert_eq!(a.json["error"]["message"], message, "{}", a.text);
    a.json["error"].clone()
}

/// Purchase totals per customer: tommy 122.73 + 717.98 = 840.71,
/// klara 27.99 + 167.94 + 145.93 = 341.86, kyle 155.93.
const SPEND: &str = "return(sum(total) where event.is(== \"purchase\"))";

/// Rows per customer: tommy 6, klara 9, kyle 4.
const ROWS: &str = "return(row_count)";

#[test]
fn plain_samples_counted_once_per_customer() {
    let s = highstreet("3");
    assert_eq!(
        hist(&s, "customer_value", SPEND),
        json!({"_": [{"g": "customer_value", "c": [3], "_": [
            {"g": 840.71, "c": [1]},
            {"g": 341.86, "c": [1]},
            {"g": 155.93, "c": [1]}
        ]}]})
    );
    // Integer samples give integer keys.
    assert_eq!(
        hist(&s, "rows", ROWS),
        json!({"_": [{"g": "rows", "c": [3], "_": [
            {"g": 9, "c": [1]}, {"g": 6, "c": [1]}, {"g": 4, "c": [1]}
        ]}]})
    );
    // Ascending order, and trim keeps the first N (the root keeps its total).
    assert_eq!(
        hist(&s, "rows?order=ASC&trim=2", ROWS),
        json!({"_": [{"g": "rows", "c": [3], "_": [
            {"g": 4, "c": [1]}, {"g": 6, "c": [1]}
        ]}]})
    );
    // trim=0 means no trim; segments=* is everyone.
    assert_eq!(
        hist(&s, "rows?trim=0&segments=*", ROWS),
        hist(&s, "rows", ROWS)
    );
    // nil and no return are not counted; bools count as 0 and 1.
    assert_eq!(
        hist(&s, "big", "if row_count > 5\n  return(1)\nend"),
        json!({"_": [{"g": "big", "c": [2], "_": [{"g": 1, "c": [2]}]}]})
    );
    assert_eq!(
        hist(&s, "flag", "return(row_count > 5)"),
        json!({"_": [{"g": "flag", "c": [3], "_": [
            {"g": 1, "c": [2]}, {"g": 0, "c": [1]}
        ]}]})
    );
    // Numeric text counts as its number (a float key).
    assert_eq!(
        hist(&s, "txt", "return(\"2.5\")"),
        json!({"_": [{"g": "txt", "c": [3], "_": [{"g": 2.5, "c": [3]}]}]})
    );
    // Nobody returns a value: only the root.
    assert_eq!(
        hist(&s, "none", "exit"),
        json!({"_": [{"g": "none", "c": [0]}]})
    );
    // A dotted name is a valid result name.
    assert_eq!(hist(&s, "v1.rows", ROWS)["_"][0]["g"], "v1.rows");
}

#[test]
fn buckets_fill_between_the_lowest_and_highest_bucket() {
    let s = highstreet("2");
    // 840.71 -> 800, 341.86 -> 300, 155.93 -> 100; double sums give float keys.
    assert_eq!(
        hist(&s, "customer_value?bucket=100", SPEND),
        json!({"_": [{"g": "customer_value", "c": [3], "_": [
            {"g": 800.0, "c": [1]}, {"g": 700.0, "c": [0]}, {"g": 600.0, "c": [0]},
            {"g": 500.0, "c": [0]}, {"g": 400.0, "c": [0]}, {"g": 300.0, "c": [1]},
            {"g": 200.0, "c": [0]}, {"g": 100.0, "c": [1]}
        ]}]})
    );
    // The rest spec's example shape: min/max zero-fill with folding at max.
    assert_eq!(
        hist(&s, "customer_value?bucket=250&min=0&max=750", SPEND),
        json!({"_": [{"g": "customer_value", "c": [3], "_": [
            {"g": 750.0, "c": [1]}, {"g": 500.0, "c": [0]},
            {"g": 250.0, "c": [1]}, {"g": 0.0, "c": [1]}
        ]}]})
    );
    // Integer samples with an integer bucket keep integer keys: 9 -> 8, 6, 4.
    assert_eq!(
        hist(&s, "rows?bucket=2&min=0&max=8", ROWS),
        json!({"_": [{"g": "rows", "c": [3], "_": [
            {"g": 8, "c": [1]}, {"g": 6, "c": [1]}, {"g": 4, "c": [1]},
            {"g": 2, "c": [0]}, {"g": 0, "c": [0]}
        ]}]})
    );
    // A bucket with decimals makes the keys floats: 9 -> 7.5, 6 -> 5.0, 4 -> 2.5.
    assert_eq!(
        hist(&s, "rows?bucket=2.5&order=asc", ROWS),
        json!({"_": [{"g": "rows", "c": [3], "_": [
            {"g": 2.5, "c": [1]}, {"g": 5.0, "c": [1]}, {"g": 7.5, "c": [1]}
        ]}]})
    );
}

fn small_table() -> Value {
    json!({"id_type": "textual", "properties": [
        {"name": "v", "type": "int"},
        {"name": "w", "type": "double"},
        {"name": "tag", "type": "text"},
        {"name": "flags", "type": "text", "is_set": true}
    ]})
}

/// sum(v): a -7, b -1, c 0, d 5 (3 + 2), e 12, f 25; g has no v.
fn small(partitions: &str) -> Server {
    let s = Server::start(&["--partitions", partitions]);
    s.create_table("small", &small_table());
    s.insert_ok(
        "small",
        &json!([
            {"id": "a", "stamp": 1000, "event": "e", "v": -7, "tag": "x", "flags": ["p", "q"]},
            {"id": "b", "stamp": 1000, "event": "e", "v": -1, "tag": "y", "flags": ["q"]},
            {"id": "c", "stamp": 1000, "event": "e", "v": 0, "tag": "x"},
            {"id": "d", "stamp": 1000, "event": "e", "v": 3, "tag": "y", "flags": ["p"]},
            {"id": "d", "stamp": 2000, "event": "e", "v": 2},
            {"id": "e", "stamp": 1000, "event": "e", "v": 12, "w": 1.25},
            {"id": "f", "stamp": 1000, "event": "e", "v": 25, "tag": "z"},
            {"id": "g", "stamp": 1000, "event": "e", "w": 2.5}
        ]),
    );
    s
}

const SUM_V: &str = "return(sum(v))";

fn keys_and_counts(v: &Value) -> Vec<(Value, i64)> {
    v["_"][0]["_"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|n| (n["g"].clone(), n["c"][0].as_i64().unwrap_or(-1)))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn min_max_fill_and_folding_with_negative_values() {
    let s = small("3");
    let h = |params: &str| hist_on(&s, "small", &format!("h{params}"), SUM_V);
    // No bucket: the values themselves; g (nil) is not counted.
    assert_eq!(
        h(""),
        json!({"_": [{"g": "h", "c": [6], "_": [
            {"g": 25, "c": [1]}, {"g": 12, "c": [1]}, {"g": 5, "c": [1]},
            {"g": 0, "c": [1]}, {"g": -1, "c": [1]}, {"g": -7, "c": [1]}
        ]}]})
    );
    // Floor bucketing: -7 -> -10, -1 -> -5; fill between lowest and highest.
    assert_eq!(
        keys_and_counts(&h("?bucket=5")),
        vec![
            (json!(25), 1),
            (json!(20), 0),
            (json!(15), 0),
            (json!(10), 1),
            (json!(5), 1),
            (json!(0), 1),
            (json!(-5), 1),
            (json!(-10), 1)
        ]
    );
    // min below the data zero-fills down to it; 25 folds into max=15.
    assert_eq!(
        h("?bucket=5&min=-20&max=15"),
        json!({"_": [{"g": "h", "c": [6], "_": [
            {"g": 15, "c": [1]}, {"g": 10, "c": [1]}, {"g": 5, "c": [1]},
            {"g": 0, "c": [1]}, {"g": -5, "c": [1]}, {"g": -10, "c": [1]},
            {"g": -15, "c": [0]}, {"g": -20, "c": [0]}
        ]}]})
    );
    // min off the grid aligns down (3 -> 0); values below min are kept;
    // 12 and 25 fold into max=10.
    assert_eq!(
        keys_and_counts(&h("?bucket=5&min=3&max=10&order=asc")),
        vec![
            (json!(-10), 1),
            (json!(-5), 1),
            (json!(0), 1),
            (json!(5), 1),
            (json!(10), 2)
        ]
    );
    // max alone: everything at or above it in one branch.
    assert_eq!(
        keys_and_counts(&h("?bucket=5&max=0")),
        vec![(json!(0), 4), (json!(-5), 1), (json!(-10), 1)]
    );
    // max beyond the data: the max branch is always present.
    assert_eq!(
        keys_and_counts(&h("?bucket=10&min=0&max=40")),
        vec![
            (json!(40), 0),
            (json!(30), 0),
            (json!(20), 1),
            (json!(10), 1),
            (json!(0), 2),
            (json!(-10), 2)
        ]
    );
    // A decimal bucket gives float keys on the bucket grid.
    assert_eq!(
        keys_and_counts(&h("?bucket=2.5&max=10")),
        vec![
            (json!(10.0), 2),
            (json!(7.5), 0),
            (json!(5.0), 1),
            (json!(2.5), 0),
            (json!(0.0), 1),
            (json!(-2.5), 1),
            (json!(-5.0), 0),
            (json!(-7.5), 1)
        ]
    );
    // Nobody answers, but min and max are given: the fill alone.
    assert_eq!(
        hist_on(&s, "small", "h?bucket=5&min=0&max=10", "exit"),
        json!({"_": [{"g": "h", "c": [0], "_": [
            {"g": 10, "c": [0]}, {"g": 5, "c": [0]}, {"g": 0, "c": [0]}
        ]}]})
    );
    assert_eq!(
        hist_on(&s, "small", "h?bucket=2.5&min=1&max=5&order=asc", "exit"),
        json!({"_": [{"g": "h", "c": [0], "_": [
            {"g": 0.0, "c": [0]}, {"g": 2.5, "c": [0]}, {"g": 5.0, "c": [0]}
        ]}]})
    );
    // Without min or max nothing is filled.
    assert_eq!(
        hist_on(&s, "small", "h?bucket=5&max=10", "exit"),
        json!({"_": [{"g": "h", "c": [0]}]})
    );
    // Trim cuts after the fill.
    assert_eq!(
        keys_and_counts(&h("?bucket=5&trim=2&order=asc")),
        vec![(json!(-10), 1), (json!(-5), 1)]
    );
    // A double sum: e 1.25, g 2.5.
    assert_eq!(
        hist_on(&s, "small", "w", "return(sum(w))"),
        json!({"_": [{"g": "w", "c": [2], "_": [{"g": 2.5, "c": [1]}, {"g": 1.25, "c": [1]}]}]})
    );
}

#[test]
fn foreach_over_a_text_property() {
    let s = highstreet("3");
    // The original's documented example: fedex: tommy 122.73, klara
    // 27.99 + 167.94 = 195.93 (kyle: none, not counted); ground: tommy
    // 717.98, klara 145.93, kyle 155.93.
    let zeros = |from: i64, to: i64| -> Vec<Value> {
        (from..=to)
            .rev()
            .map(|k| json!({"g": (k * 100) as f64, "c": [0]}))
            .collect()
    };
    let mut ground = zeros(8, 10);
    ground.push(json!({"g": 700.0, "c": [1]}));
    ground.extend(zeros(2, 6));
    ground.push(json!({"g": 100.0, "c": [2]}));
    ground.push(json!({"g": 0.0, "c": [0]}));
    let mut fedex = zeros(2, 10);
    fedex.push(json!({"g": 100.0, "c": [2]}));
    fedex.push(json!({"g": 0.0, "c": [0]}));
    assert_eq!(
        hist(
            &s,
            "total_by_shipper?foreach=shipper&bucket=100&min=0&max=1000",
            "return( sum(total) where shipper.is(== each_value) )"
        ),
        json!({"_": [{"g": "total_by_shipper", "c": [3], "_": [
            {"g": "ground", "c": [3], "_": ground},
            {"g": "fedex", "c": [2], "_": fedex}
        ]}]})
    );
    // Without a bucket, ascending: values and samples in ascending order.
    assert_eq!(
        hist(
            &s,
            "by_shipper?foreach=shipper&order=asc",
            "return(sum(total) where shipper.is(== each_value))"
        ),
        json!({"_": [{"g": "by_shipper", "c": [3], "_": [
            {"g": "fedex", "c": [2], "_": [{"g": 122.73, "c": [1]}, {"g": 195.93, "c": [1]}]},
            {"g": "ground", "c": [3], "_": [
                {"g": 145.93, "c": [1]}, {"g": 155.93, "c": [1]}, {"g": 717.98, "c": [1]}]}
        ]}]})
    );
    // Every customer runs for every value: a count is 0, not nil, for a
    // customer without the value (kyle never used fedex).
    assert_eq!(
        hist(
            &s,
            "orders?foreach=shipper",
            "return(count(order_id) where shipper.is(== each_value))"
        ),
        json!({"_": [{"g": "orders", "c": [3], "_": [
            {"g": "ground", "c": [3], "_": [{"g": 1, "c": [3]}]},
            {"g": "fedex", "c": [3], "_": [{"g": 2, "c": [1]}, {"g": 1, "c": [1]}, {"g": 0, "c": [1]}]}
        ]}]})
    );
    // The built-in event property: purchases tommy 2, klara 3, kyle 1;
    // cart items tommy 4, klara 6, kyle 3.
    assert_eq!(
        hist(
            &s,
            "events?foreach=event",
            "return(count(event) where event.is(== each_value))"
        ),
        json!({"_": [{"g": "events", "c": [3], "_": [
            {"g": "purchase", "c": [3], "_": [{"g": 3, "c": [1]}, {"g": 2, "c": [1]}, {"g": 1, "c": [1]}]},
            {"g": "cart_item", "c": [3], "_": [{"g": 6, "c": [1]}, {"g": 4, "c": [1]}, {"g": 3, "c": [1]}]}
        ]}]})
    );
}

#[test]
fn foreach_over_a_set_property() {
    let s = highstreet("2");
    // Sum of prices of cart items in each product group (nil: not counted).
    assert_eq!(
        hist(
            &s,
            "group_spend?foreach=product_group",
            "return(sum(product_price) where product_group.is(contains each_value))"
        ),
        json!({"_": [{"g": "group_spend", "c": [3], "_": [
            {"g": "restaurant", "c": [2], "_": [{"g": 649.99, "c": [1]}, {"g": 67.99, "c": [1]}]},
            {"g": "outdoor", "c": [2], "_": [{"g": 245.88, "c": [1]}, {"g": 155.93, "c": [1]}]},
            {"g": "kitchen", "c": [2], "_": [{"g": 717.98, "c": [1]}, {"g": 67.99, "c": [1]}]},
            {"g": "garage", "c": [1], "_": [{"g": 94.74, "c": [1]}]},
            {"g": "bedroom", "c": [2], "_": [{"g": 27.99, "c": [2]}]},
            {"g": "bathroom", "c": [2], "_": [{"g": 27.99, "c": [2]}]},
            {"g": "basement", "c": [1], "_": [{"g": 94.74, "c": [1]}]},
            {"g": "angling", "c": [2], "_": [{"g": 245.88, "c": [1]}, {"g": 155.93, "c": [1]}]}
        ]}]})
    );
    // Booleans count as 0/1; order=asc and trim=3 apply to both levels.
    assert_eq!(
        hist(
            &s,
            "has_group?foreach=product_group&order=asc&trim=3",
            "return(test where product_group.is(contains each_value))"
        ),
        json!({"_": [{"g": "has_group", "c": [3], "_": [
            {"g": "angling", "c": [3], "_": [{"g": 0, "c": [1]}, {"g": 1, "c": [2]}]},
            {"g": "basement", "c": [3], "_": [{"g": 0, "c": [2]}, {"g": 1, "c": [1]}]},
            {"g": "bathroom", "c": [3], "_": [{"g": 0, "c": [1]}, {"g": 1, "c": [2]}]}
        ]}]})
    );
    assert_eq!(
        hist(
            &s,
            "has_group?foreach=product_group&trim=1",
            "return(test where product_group.is(contains each_value))"
        ),
        json!({"_": [{"g": "has_group", "c": [3], "_": [
            {"g": "restaurant", "c": [3], "_": [{"g": 1, "c": [2]}]}
        ]}]})
    );
}

#[test]
fn foreach_fills_inside_each_value() {
    let s = small("2");
    // tag x: a -7 -> -10, c 0; y: b -1 -> -10, d 5 -> 0; z: f 25 -> 20.
    // e and g have no tag: no sample for any value, not in the root count.
    assert_eq!(
        hist_on(
            &s,
            "small",
            "by_tag?foreach=tag&bucket=10&min=0&max=20",
            "return(sum(v) where tag.is(== each_value))"
        ),
        json!({"_": [{"g": "by_tag", "c": [5], "_": [
            {"g": "z", "c": [1], "_": [{"g": 20, "c": [1]}, {"g": 10, "c": [0]}, {"g": 0, "c": [0]}]},
            {"g": "y", "c": [2], "_": [
                {"g": 20, "c": [0]}, {"g": 10, "c": [0]}, {"g": 0, "c": [1]}, {"g": -10, "c": [1]}]},
            {"g": "x", "c": [2], "_": [
                {"g": 20, "c": [0]}, {"g": 10, "c": [0]}, {"g": 0, "c": [1]}, {"g": -10, "c": [1]}]}
        ]}]})
    );
    // Set property: p (a, d) and q (a, b); every customer answers for both.
    assert_eq!(
        hist_on(
            &s,
            "small",
            "flags?foreach=flags",
            "return(test where flags.is(contains each_value))"
        ),
        json!({"_": [{"g": "flags", "c": [7], "_": [
            {"g": "q", "c": [7], "_": [{"g": 1, "c": [2]}, {"g": 0, "c": [5]}]},
            {"g": "p", "c": [7], "_": [{"g": 1, "c": [2]}, {"g": 0, "c": [5]}]}
        ]}]})
    );
    // An int property: each_value is an int.
    assert_eq!(
        hist_on(
            &s,
            "small",
            "own?foreach=v&order=asc&trim=2",
            "if v.ever(== each_value)\n  return(each_value * 2)\nend"
        ),
        json!({"_": [{"g": "own", "c": [6], "_": [
            {"g": -7, "c": [1], "_": [{"g": -14, "c": [1]}]},
            {"g": -1, "c": [1], "_": [{"g": -2, "c": [1]}]}
        ]}]})
    );
}

#[test]
fn script_parameters() {
    let s = highstreet("3");
    // A typed variable: fedex totals tommy 122.73, klara 195.93.
    assert_eq!(
        hist(
            &s,
            "fedex?str_ship=fedex",
            "return(sum(total) where shipper.is(== ship))"
        ),
        json!({"_": [{"g": "fedex", "c": [2], "_": [{"g": 195.93, "c": [1]}, {"g": 122.73, "c": [1]}]}]})
    );
    // A template: ground totals tommy 717.98, klara 145.93, kyle 155.93.
    assert_eq!(
        hist(
            &s,
            "ground?str_ship=ground&bucket=100&max=200",
            "return(sum(total) where shipper.is(== {{ship}}))"
        ),
        json!({"_": [{"g": "ground", "c": [3], "_": [{"g": 200.0, "c": [1]}, {"g": 100.0, "c": [2]}]}]})
    );
    // int_ and dbl_: rows 6, 9, 4 scaled by 0.5 and shifted by 1.
    assert_eq!(
        hist(
            &s,
            "scaled?dbl_scale=0.5&int_shift=1",
            "return(row_count * scale + shift)"
        ),
        json!({"_": [{"g": "scaled", "c": [3], "_": [
            {"g": 5.5, "c": [1]}, {"g": 4.0, "c": [1]}, {"g": 3.0, "c": [1]}]}]})
    );
    assert_eq!(
        hist(
            &s,
            "pick?bool_big=true",
            "if big && row_count > 5\n  return(row_count)\nend"
        ),
        json!({"_": [{"g": "pick", "c": [2], "_": [{"g": 9, "c": [1]}, {"g": 6, "c": [1]}]}]})
    );
    let missing = query(&s, "t", "return(sum(total) where shipper.is(== {{ship}}))");
    fails(&missing, "parse", "template_missing_var");
    fails(
        &query(&s, "t?int_n=abc", ROWS),
        "query",
        "general_query_error",
    );
    fails(
        &query(&s, "t?str_9x=a", ROWS),
        "query",
        "general_query_error",
    );
}

#[test]
fn compile_runtime_and_sample_errors() {
    let s = highstreet("2");
    let e = fails(
        &query(&s, "h", "each_row where true\n  << shipper\nend\nreturn(1)"),
        "parse",
        "syntax_error",
    );
    assert_eq!(
        e["detail"],
        "histogram queries should not call 'tally'. They should 'return' the value to store."
    );
    assert_eq!(e["line"], 2);
    fails(
        &query(&s, "h", "select\n  count id\nend\nreturn(1)"),
        "parse",
        "syntax_error",
    );
    fails(&query(&s, "h", "return(1"), "parse", "syntax_error");
    let e = fails(
        &query(&s, "h", "return(no_such_property)"),
        "parse",
        "syntax_error",
    );
    assert_eq!(
        e["detail"],
        "variable: 'no_such_property' is used but never assigned a value"
    );
    // A run-time fault aborts the whole query.
    let e = fails(
        &query(&s, "h", "for t in 5\n  x = t\nend\nreturn(1)"),
        "run_time",
        "iteration error",
    );
    assert_eq!(e["line"], 1);
    // Text that is not a number, and containers, are run-time faults (OSL 12.1, D66).
    let e = fails(
        &query(&s, "h", "return(\"abc\")"),
        "run_time",
        "run_time_exception_triggered",
    );
    assert_eq!(e["detail"], "histogram value must be numeric");
    fails(
        &query(&s, "h", "return([1, 2])"),
        "run_time",
        "run_time_exception_triggered",
    );
    // Only one customer (klara, 9 rows) returns text: still the whole query fails.
    fails(
        &query(
            &s,
            "h",
            "if row_count == 9\n  return(\"x\")\nend\nreturn(1)",
        ),
        "run_time",
        "run_time_exception_triggered",
    );
    // foreach errors.
    let e = fails(
        &query(&s, "h?foreach=nope", "return(each_value)"),
        "run_time",
        "item not found",
    );
    assert_eq!(e["detail"], "missing foreach column 'nope'");
    let e = fails(
        &query(&s, "h?foreach=shipper", ROWS),
        "parse",
        "syntax_error",
    );
    assert_eq!(
        e["detail"],
        "'foreach' specified in query, but the 'each_value' variable was not found in the script."
    );
    fails(
        &query(&s, "h?foreach=stamp", "return(each_value)"),
        "query",
        "syntax_error",
    );
    // each_value is nil without foreach: nobody is counted.
    assert_eq!(
        hist(&s, "h", "return(each_value)"),
        json!({"_": [{"g": "h", "c": [0]}]})
    );
}

#[test]
fn bad_requests() {
    let s = highstreet("2");
    let param = |path: &str| {
        let a = query(&s, path, ROWS);
        fails(&a, "query", "general_query_error");
        a.detail().to_string()
    };
    assert!(param("h?bucket=0").contains("bucket"));
    assert!(param("h?bucket=-5").contains("bucket"));
    assert!(param("h?bucket=abc").contains("bucket"));
    assert!(param("h?bucket=inf").contains("bucket"));
    assert!(param("h?bucket=0.00001").contains("bucket"));
    assert_eq!(param("h?min=0"), "min and max require bucket");
    assert_eq!(param("h?max=10"), "min and max require bucket");
    assert!(param("h?bucket=1&min=10&max=5").contains("min"));
    assert!(param("h?bucket=1&min=x").contains("min"));
    assert!(param("h?bucket=1&max=1e300").contains("max"));
    assert!(param("h?order=sideways").contains("order"));
    assert!(param("h?trim=many").contains("trim"));
    assert!(param("h?session_time=0").contains("session_time"));
    assert!(param("h?foreach=").contains("foreach"));
    assert!(param("h?debug=maybe").contains("debug"));
    assert!(param("h?bucket=1&bucket=2").contains("more than once"));
    assert!(param("h?bucket=0.0001&min=0&max=1000").contains("buckets"));
    // The result name must follow rest spec 1.6.
    for bad in ["Rows", ".rows", "a-b", &"x".repeat(65)] {
        let d = param(bad);
        assert!(d.contains("histogram name"), "{bad}: {d}");
    }
    assert_eq!(hist(&s, &"x".repeat(64), ROWS)["_"][0]["c"], json!([3]));
    // Segments: only `*` exists; an empty list and unknown names are refused.
    let e = fails(
        &query(&s, "h?segments=vip", ROWS),
        "run_time",
        "item not found",
    );
    assert_eq!(e["detail"], "missing segment 'vip'");
    fails(&query(&s, "h?segments=", ROWS), "query", "general_error");
    // Unknown table and empty body.
    let a = query_on(&s, "nope", "h", ROWS);
    assert_eq!(a.status, 404, "{}", a.text);
    assert_eq!(a.detail(), "table could not be found");
    let a = query(&s, "h", "  \n");
    fails(&a, "query", "general_error");
    assert_eq!(a.detail(), "missing query code (POST query as text)");
    // debug lists the compiled program instead of running it.
    let a = query(&s, "h?debug=true", ROWS);
    assert_eq!(a.status, 200, "{}", a.text);
    assert!(a
        .header("content-type")
        .unwrap_or("")
        .starts_with("text/plain"));
    assert!(a.text.contains("Histogram"), "{}", a.text);
}

#[test]
fn repeated_everyone_segment_fills_every_column() {
    let s = highstreet("2");
    assert_eq!(
        hist(&s, "rows?segments=*,*&bucket=5", ROWS),
        json!({"_": [{"g": "rows", "c": [3], "c2": [3], "_": [
            {"g": 5, "c": [2], "c2": [2]}, {"g": 0, "c": [1], "c2": [1]}
        ]}]})
    );
}

#[test]
fn customer_property_writes_are_committed_unless_a_run_fails() {
    let s = highstreet("3");
    let props = |id: &str| {
        s.get(&format!("/v1/query/highstreet/customer?id={id}"))
            .json["properties"]
            .clone()
    };
    assert_eq!(
        hist(
            &s,
            "ages",
            "if row_count > 5\n  age = row_count\nend\nreturn(row_count)"
        )["_"][0]["c"],
        json!([3])
    );
    assert_eq!(props("klara"), json!({"age": 9}));
    assert_eq!(props("tommy"), json!({"age": 6}));
    assert_eq!(props("kyle"), json!({}));
    assert_eq!(
        hist(&s, "ages", "return(age)"),
        json!({"_": [{"g": "ages", "c": [2], "_": [{"g": 9, "c": [1]}, {"g": 6, "c": [1]}]}]})
    );
    // A non-numeric sample aborts the query: nothing is written.
    fails(
        &query(&s, "ages", "age = 1\nreturn(\"no\")"),
        "run_time",
        "run_time_exception_triggered",
    );
    assert_eq!(props("klara"), json!({"age": 9}));
    assert_eq!(props("kyle"), json!({}));
}

fn generated_table() -> Value {
    json!({"id_type": "textual", "properties": [
        {"name": "color", "type": "text"},
        {"name": "n", "type": "int"},
        {"name": "price", "type": "double"},
        {"name": "tag", "type": "text", "is_set": true}
    ]})
}

fn generated_data(rng: &mut Rng) -> Value {
    let colors = ["red", "green", "blue"];
    let mut out = Vec::new();
    for c in 0..60 {
        for i in 0..(1 + rng.below(8)) {
            let tags: Vec<&str> = ["a", "b", "c"]
                .into_iter()
                .filter(|_| rng.below(3) == 0)
                .collect();
            let mut e = json!({
                "id": format!("c{c}"),
                "stamp": 1_700_000_000_000i64 + (i * 60_000) as i64,
                "event": "e",
                "color": colors[rng.below(3) as usize],
                "n": rng.below(20) as i64 - 5,
                "price": (rng.below(10_000) as f64) / 100.0,
            });
            if !tags.is_empty() {
                e["tag"] = json!(tags);
            }
            out.push(e);
        }
    }
    Value::Array(out)
}

#[test]
fn answers_do_not_depend_on_the_partition_count() {
    let seed = 0x5eed_1234_u64;
    println!("seed {seed:#x}");
    let data = generated_data(&mut Rng(seed));
    let start = |p: &str| {
        let s = Server::start(&["--partitions", p]);
        s.create_table("gen", &generated_table());
        s.insert_ok("gen", &data);
        s
    };
    let one = start("1");
    let seven = start("7");
    let cases = [
        ("rows", "return(row_count)"),
        ("n?bucket=10", "return(sum(n))"),
        (
            "red?bucket=50&min=0&max=300",
            "return(sum(price) where color.is(== \"red\"))",
        ),
        (
            "by_color?foreach=color&bucket=2",
            "return(count(n) where color.is(== each_value))",
        ),
        (
            "by_tag?foreach=tag&bucket=25&max=200&order=asc",
            "return(sum(price) where tag.is(contains each_value))",
        ),
        ("top?order=asc&trim=3", "return(max(price))"),
    ];
    for (path, script) in cases {
        let a = hist_on(&one, "gen", path, script);
        let b = hist_on(&seven, "gen", path, script);
        assert_eq!(a, b, "{path}\n{script}");
    }
    // Every generated customer has rows: all 60 are counted.
    assert_eq!(
        hist_on(&one, "gen", "rows", "return(row_count)")["_"][0]["c"],
        json!([60])
    );
    assert_eq!(
        hist(
            &highstreet("1"),
            "g?foreach=product_group&bucket=100",
            "return(sum(product_price) where product_group.is(contains each_value))"
        ),
        hist(
            &highstreet("7"),
            "g?foreach=product_group&bucket=100",
            "return(sum(product_price) where product_group.is(contains each_value))"
        )
    );
}

/// Session counts per customer, a new session after gaps over `gap` ms.
fn sessions_of(stamps: &[i64], gap: i64) -> i64 {
    let mut sorted = stamps.to_vec();
    sorted.sort_unstable();
    1 + sorted.windows(2).filter(|w| w[1] - w[0] > gap).count() as i64
}

/// `{sample: customers}` of a histogram answer's first root.
fn sample_counts(v: &Value) -> std::collections::BTreeMap<i64, i64> {
    v["_"][0]["_"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|n| {
                    (
                        n["g"].as_i64().unwrap_or(-1),
                        n["c"][0].as_i64().unwrap_or(-1),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn session_counts_follow_out_of_order_inserts_restarts_and_session_time() {
    // Customers keep their session count for the default session time as
    // events arrive (in any order); other session times count from the
    // stamps. Both must agree with a recount, before and after a replay.
    let mut s = Server::start(&["--partitions", "2"]);
    s.create_table("visits", &json!({"id_type": "numeric", "properties": []}));
    let mut rng = Rng(0x5eed_1234);
    let mut stamps: Vec<Vec<i64>> = vec![Vec::new(); 40];
    for _round in 0..6 {
        let mut batch = Vec::new();
        for (id, own) in stamps.iter_mut().enumerate() {
            for _ in 0..rng.below(6) {
                // Minutes over ten days: gaps land both side of 30 and 10 minutes.
                let stamp = 1_700_000_000_000 + rng.below(14_400) as i64 * 60_000;
                if !own.contains(&stamp) {
                    own.push(stamp);
                    batch.push(json!({"id": id + 1, "stamp": stamp, "event": "visit"}));
                }
            }
        }
        if !batch.is_empty() {
            s.insert_ok("visits", &Value::Array(batch));
        }
    }
    let expected = |gap: i64| {
        let mut m = std::collections::BTreeMap::new();
        for own in stamps.iter().filter(|o| !o.is_empty()) {
            *m.entry(sessions_of(own, gap)).or_insert(0) += 1;
        }
        m
    };
    let check = |s: &Server| {
        let default = hist_on(s, "visits", "sessions", "return(session_count)");
        assert_eq!(sample_counts(&default), expected(1_800_000), "{default}");
        let short = hist_on(
            s,
            "visits",
            "sessions?session_time=600000",
            "return(session_count)",
        );
        assert_eq!(sample_counts(&short), expected(600_000), "{short}");
        // The same count read per row agrees (it numbers every row).
        let per_row = hist_on(
            s,
            "visits",
            "sessions",
            "each_row.reverse().limit(1)\n  return(session)\nend\n",
        );
        assert_eq!(sample_counts(&per_row), expected(1_800_000), "{per_row}");
    };
    check(&s);
    s.restart(&["--partitions", "2"]).expect("restart");
    check(&s);
}
