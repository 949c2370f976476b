//! Insert: body forms, record shapes, values, ordering, duplicates and every
//! validation rule, all checked through the customer query.

mod common;
use common::Server;
use serde_json::{json, Value};
use std::io::Write;

fn rides() -> Server {
    let s = Server::start(&["--partitions", "4"]);
    s.create_table(
        "rides",
        &json!({
            "id_type": "textual",
            "properties": [
                {"name": "station", "type": "text"},
                {"name": "minutes", "type": "int"},
                {"name": "fare", "type": "double"},
                {"name": "ebike", "type": "bool"},
                {"name": "extras", "type": "text", "is_set": true},
                {"name": "plan", "type": "text", "is_customer": true},
                {"name": "badges", "type": "int", "is_set": true, "is_customer": true}
            ],
            "event_order": ["ride_end", "payment"]
        }),
    );
    s
}

fn customer(s: &Server, id: &str) -> Value {
    let a = s.get(&format!("/v1/query/rides/customer?sid={id}"));
    assert_eq!(a.status, 200, "{}", a.text);
    a.json
}

#[test]
fn flat_nested_and_mixed_shapes_with_every_value_type() {
    let s = rides();
    let a = s.insert_ok(
        "rides",
        &json!([
            {"id": "Ana", "stamp": "2024-03-04T08:05:00Z", "event": "ride_end", "station": "harbour", "minutes": 22, "extras": ["helmet", "lock", "helmet"]},
            {"id": "ana", "stamp": 1709539500, "event": "payment", "_": {"fare": 4.5, "ebike": true}},
            {"person": "ANA", "stamp": 1709539200000i64, "action": "signup", "attr": {"station": 7}, "plan": "monthly"},
            {"id": "ana", "stamp": "2024-03-05T00:00:00+01:00", "event": "x", "fare": 17.99, "_": {"minutes": 3.0, "ebike": 0}}
        ]),
    );
    assert_eq!(a.json["message"], "yummy");
    assert_eq!(a.json["accepted"], 4);
    assert_eq!(a.json["stamped"], 0);
    assert_eq!(a.json["routes"].as_array().unwrap().len(), 1);
    assert_eq!(
        customer(&s, "ANA"),
        json!({
            "id": "ana",
            "properties": {"plan": "monthly"},
            "events": [
                {"stamp": 1709539200000i64, "stamp_iso": "2024-03-04T08:00:00Z", "event": "signup", "_": {"station": "7"}},
                {"stamp": 1709539500000i64, "stamp_iso": "2024-03-04T08:05:00Z", "event": "ride_end",
                 "_": {"station": "harbour", "minutes": 22, "extras": ["helmet", "lock"]}},
                {"stamp": 1709539500000i64, "stamp_iso": "2024-03-04T08:05:00Z", "event": "payment", "_": {"fare": 4.5, "ebike": true}},
                {"stamp": 1709593200000i64, "stamp_iso": "2024-03-04T23:00:00Z", "event": "x", "_": {"minutes": 3, "fare": 17.99, "ebike": false}}
            ]
        })
    );
    assert_eq!(s.get("/v1/query/rides/person?id=ana").json["id"], "ana");
}

#[test]
fn same_stamp_events_follow_event_order_then_arrival() {
    let s = rides();
    s.insert_ok(
        "rides",
        &json!([
            {"id": "b", "stamp": 100, "event": "zeta"},
            {"id": "b", "stamp": 100, "event": "payment"},
            {"id": "b", "stamp": 100, "event": "alpha"},
        ]),
    );
    s.insert_ok(
        "rides",
        &json!([
            {"id": "b", "stamp": 100, "event": "ride_end"},
            {"id": "b", "stamp": 50, "event": "late_arrival"},
            {"id": "b", "stamp": 100, "event": "omega"},
        ]),
    );
    let names: Vec<String> = s.events_of("rides", "b").into_iter().map(|e| e.1).collect();
    assert_eq!(
        names,
        [
            "late_arrival",
            "ride_end",
            "payment",
            "zeta",
            "alpha",
            "omega"
        ]
    );
}

#[test]
fn equal_events_are_stored_once() {
    let s = rides();
    let batch = json!([
        {"id": "c", "stamp": 100, "event": "ride_end", "extras": ["a", "b"], "minutes": 2},
        {"id": "c", "stamp": 100, "event": "ride_end", "extras": ["b", "a"], "minutes": 2},
        {"id": "c", "stamp": 100, "event": "payment"},
        {"id": "c", "stamp": 100, "event": "other"}
    ]);
    s.insert_ok("rides", &batch);
    s.insert_ok("rides", &batch);
    s.insert_ok(
        "rides",
        &json!([{"id": "c", "stamp": 100, "event": "ride_end", "extras": ["a"], "minutes": 2}]),
    );
    assert_eq!(s.events_of("rides", "c").len(), 4);
}

#[test]
fn customer_properties_last_write_wins_null_removes_sets_replace() {
    let s = rides();
    s.insert_ok(
        "rides",
        &json!([
            {"id": "d", "stamp": 500, "plan": "monthly", "badges": [1, 2, 2]},
            {"id": "d", "stamp": 100, "plan": "annual", "event": "open"}
        ]),
    );
    assert_eq!(
        customer(&s, "d")["properties"],
        json!({"plan": "annual", "badges": [1, 2]})
    );
    s.insert_ok("rides", &json!([{"id": "d", "plan": null, "badges": [3]}]));
    let c = customer(&s, "d");
    assert_eq!(c["properties"], json!({"badges": [3]}));
    assert_eq!(
        c["events"].as_array().unwrap().len(),
        1,
        "a customer record adds no event"
    );
}

#[test]
fn missing_stamps_take_the_receive_time() {
    let s = rides();
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let a = s.insert_ok("rides", &json!([{"id": "e", "event": "a"}, {"id": "e", "event": "b", "stamp": null}, {"id": "e", "event": "c", "stamp": 5}]));
    assert_eq!(a.json["stamped"], 2);
    let ev = s.events_of("rides", "e");
    assert_eq!(ev[0], (5000, "c".to_string()));
    assert!(ev[1].0 >= before && ev[1].0 == ev[2].0, "{ev:?}");
}

#[test]
fn ndjson_and_gzip_bodies() {
    let s = rides();
    let nd = "{\"id\": \"f\", \"stamp\": 1, \"event\": \"a\"}\n{\"id\": \"f\", \"stamp\": 2, \"event\": \"b\"}\n";
    let a = s.request(
        "POST",
        "/v1/insert/rides",
        Some(nd.as_bytes()),
        &[("content-type", "application/x-ndjson")],
    );
    assert_eq!(a.json["accepted"], 2, "{}", a.text);
    // A body starting with '{' is a sequence even without the content type.
    let a = s.post_raw(
        "/v1/insert/rides",
        b"{\"id\": \"f\", \"stamp\": 3, \"event\": \"c\"}",
    );
    assert_eq!(a.json["accepted"], 1, "{}", a.text);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(
        json!([{"id": "f", "stamp": 4, "event": "d"}])
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    let body = gz.finish().unwrap();
    let a = s.request(
        "POST",
        "/v1/insert/rides",
        Some(&body),
        &[("content-encoding", "gzip")],
    );
    assert_eq!(a.json["accepted"], 1, "{}", a.text);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(nd.replace("\"a\"", "\"e\"").as_bytes())
        .unwrap();
    let body = gz.finish().unwrap();
    let a = s.request(
        "POST",
        "/v1/insert/rides",
        Some(&body),
        &[
            ("content-encoding", "gzip"),
            ("content-type", "application/x-ndjson"),
        ],
    );
    assert_eq!(a.json["accepted"], 2, "{}", a.text);
    assert_eq!(s.events_of("rides", "f").len(), 5);
    let bad = s.request(
        "POST",
        "/v1/insert/rides",
        Some(b"[]"),
        &[("content-encoding", "br")],
    );
    assert_eq!(bad.status, 415);
    let bad = s.request(
        "POST",
        "/v1/insert/rides",
        Some(b"not gzip"),
        &[("content-encoding", "gzip")],
    );
    assert_eq!(bad.status, 400);
    let bad = s.request(
        "POST",
        "/v1/insert/rides",
        Some(b"[{\"id\": \"f\"}]\n"),
        &[("content-type", "application/x-ndjson")],
    );
    assert_eq!(bad.status, 400, "an array is not an NDJSON record sequence");
}

#[test]
fn spec_example_is_rejected_whole_or_partially() {
    let s = rides();
    let batch = json!([
        { "id": "erin", "stamp": "2024-03-11T10:00:00Z", "event": "ride_end", "station": "harbour", "minutes": "12" },
        { "stamp": "2024-03-11T10:05:00Z", "event": "payment", "fare": 3.0 },
        { "id": "erin", "stamp": "yesterday", "event": "payment", "fare": 3.0 },
        { "id": "erin", "stamp": "2024-03-11T10:05:00Z", "event": "payment", "fare": 3.0, "coupon": "SPRING" },
        { "id": "erin", "stamp": "2024-03-11T10:06:00Z", "event": "app_open" }
    ]);
    let a = s.post_json("/v1/insert/rides", &batch);
    assert_eq!(a.status, 400);
    assert_eq!(
        a.json,
        json!({"error": {
            "class": "insert",
            "message": "general_error",
            "detail": "4 of 5 records rejected; nothing was inserted",
            "rejected": 4,
            "events": [
                { "index": 0, "id": "erin", "field": "minutes", "reason": "type_mismatch",
                  "detail": "property 'minutes' is int; got string \"12\"" },
                { "index": 1, "field": "id", "reason": "missing_id", "detail": "record has no 'id'" },
                { "index": 2, "id": "erin", "field": "stamp", "reason": "bad_stamp",
                  "detail": "'yesterday' is not epoch seconds, epoch milliseconds or ISO 8601" },
                { "index": 3, "id": "erin", "field": "coupon", "reason": "unknown_property",
                  "detail": "table 'rides' has no property 'coupon'" }
            ]
        }})
    );
    assert_eq!(
        s.get("/v1/query/rides/customer?id=erin").status,
        404,
        "nothing of a rejected batch is stored"
    );
    let p = s.post_json("/v1/insert/rides?partial=true", &batch);
    assert_eq!(p.status, 200);
    assert_eq!(p.json["accepted"], 1);
    assert_eq!(p.json["rejected"], 4);
    assert_eq!(p.json["events"].as_array().unwrap().len(), 4);
    assert_eq!(
        s.events_of("rides", "erin"),
        vec![(1710151560000, "app_open".to_string())]
    );
    let i = s.post_json("/v1/insert/rides?unknown=ignore", &json!([{"id": "g", "event": "a", "stamp": 1, "coupon": "x", "promo": 1}, {"id": "g", "event": "b", "stamp": 2, "coupon": "y"}]));
    assert_eq!(i.status, 200, "{}", i.text);
    assert_eq!(i.json["ignored"], json!({"coupon": 2, "promo": 1}));
    assert_eq!(
        s.post_json("/v1/insert/rides?unknown=maybe", &json!([]))
            .status,
        400
    );
}

#[test]
fn every_reason_code_names_the_record_and_field() {
    let s = rides();
    let cases = [
        (json!(7), None, "not_an_object"),
        (json!({"id": "", "event": "e"}), Some("id"), "empty_id"),
        (
            json!({"id": "x".repeat(65), "event": "e"}),
            Some("id"),
            "id_too_long",
        ),
        (json!({"id": 12, "event": "e"}), Some("id"), "bad_id"),
        (
            json!({"id": "a", "station": "x"}),
            Some("event"),
            "missing_event",
        ),
        (
            json!({"id": "a", "event": "bad\u{1}name"}),
            Some("event"),
            "bad_event",
        ),
        (json!({"id": "a", "event": 5}), Some("event"), "bad_event"),
        (
            json!({"id": "a", "event": "e", "stamp": -5}),
            Some("stamp"),
            "bad_stamp",
        ),
        (
            json!({"id": "a", "event": "e", "stamp": "2024-03-09"}),
            Some("stamp"),
            "bad_stamp",
        ),
        (json!({"id": "a"}), None, "empty_record"),
        (
            json!({"id": "a", "event": "e", "__segment": 1}),
            Some("__segment"),
            "reserved_property",
        ),
        (
            json!({"id": "a", "event": "e", "station": "x", "_": {"station": "x"}}),
            Some("station"),
            "duplicate_property",
        ),
        (
            json!({"id": "a", "person": "a", "event": "e"}),
            Some("id"),
            "conflicting_alias",
        ),
        (
            json!({"id": "a", "event": "e", "action": "e"}),
            Some("event"),
            "conflicting_alias",
        ),
        (
            json!({"id": "a", "event": "e", "ebike": "false"}),
            Some("ebike"),
            "type_mismatch",
        ),
        (
            json!({"id": "a", "event": "e", "ebike": 2}),
            Some("ebike"),
            "type_mismatch",
        ),
        (
            json!({"id": "a", "event": "e", "fare": "3"}),
            Some("fare"),
            "type_mismatch",
        ),
        (
            json!({"id": "a", "event": "e", "extras": ["a", null]}),
            Some("extras"),
            "type_mismatch",
        ),
        (
            json!({"id": "a", "event": "e", "minutes": 18446744073709551615u64}),
            Some("minutes"),
            "out_of_range",
        ),
        (
            json!({"id": "a", "event": "e", "fare": 1e15}),
            Some("fare"),
            "out_of_range",
        ),
        (
            json!({"id": "a", "event": "e", "station": ["x"]}),
            Some("station"),
            "not_a_set",
        ),
        (
            json!({"id": "a", "event": "e", "extras": vec![1; 1001]}),
            Some("extras"),
            "too_many_values",
        ),
        (
            json!({"id": "a", "event": "e", "station": "x".repeat(65 * 1024)}),
            Some("station"),
            "value_too_long",
        ),
        (
            json!({"id": "a", "event": "e", "station": {"k": 1}}),
            Some("station"),
            "nested_object",
        ),
        (
            json!({"id": "a", "event": "e", "extras": [{"k": 1}]}),
            Some("extras"),
            "nested_object",
        ),
    ];
    for (record, field, reason) in cases {
        let batch = json!([{"id": "ok", "event": "fine", "stamp": 1}, record]);
        let a = s.post_json("/v1/insert/rides", &batch);
        assert_eq!(a.status, 400, "{record}: {}", a.text);
        let e = &a.json["error"]["events"][0];
        assert_eq!(e["index"], 1, "{record}");
        assert_eq!(e["reason"], reason, "{record}");
        assert_eq!(e["field"].as_str(), field, "{record}");
        assert!(e["detail"].as_str().is_some_and(|d| !d.is_empty()));
    }
    assert_eq!(s.get("/v1/query/rides/customer?id=ok").status, 404);
}

#[test]
fn body_level_problems() {
    let s = rides();
    let a = s.post_raw("/v1/insert/rides", b"   ");
    assert_eq!((a.status, a.detail()), (400, "body is empty"));
    let a = s.post_raw("/v1/insert/rides", b"[{\"id\": \"a\",\n  \"event\" \"e\"}]");
    assert_eq!(a.status, 400);
    assert_eq!(
        (
            a.json["error"]["line"].as_u64(),
            a.json["error"]["column"].as_u64()
        ),
        (Some(2), Some(11))
    );
    assert!(
        a.detail().starts_with("body is not valid JSON"),
        "{}",
        a.text
    );
    let a = s.post_raw("/v1/insert/rides", b"\"text\"");
    assert_eq!(
        a.detail(),
        "body must be a JSON array of records or a sequence of JSON objects"
    );
    let a = s.post_raw("/v1/insert/rides", b"[]");
    assert_eq!((a.status, a.json["accepted"].as_u64()), (200, Some(0)));
    let a = s.post_raw("/v1/insert/nope", b"[]");
    assert_eq!(
        (a.status, a.detail()),
        (404, "missing or invalid table name")
    );
    let a = s.post_raw(
        "/v1/insert/rides",
        b"{\"id\": \"a\", \"event\": \"e\"}\n{\"id\": \"b\"}",
    );
    assert_eq!(a.json["error"]["events"][0]["line"], 2);
}

#[test]
fn size_limits_are_413() {
    let s = Server::start(&[
        "--partitions",
        "1",
        "--max-body-bytes",
        "2000",
        "--max-insert-records",
        "3",
    ]);
    s.create_table("t", &json!({"id_type": "numeric", "properties": []}));
    let four: Vec<Value> = (0..4)
        .map(|i| json!({"id": i, "event": "e", "stamp": 1}))
        .collect();
    assert_eq!(s.post_json("/v1/insert/t", &json!(four)).status, 413);
    let big = json!([{"id": 1, "event": "x".repeat(3000)}]);
    assert_eq!(s.post_json("/v1/insert/t", &big).status, 413);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(format!("[{{\"id\": 1, \"event\": \"{}\"}}]", "y".repeat(5000)).as_bytes())
        .unwrap();
    let body = gz.finish().unwrap();
    assert!(body.len() < 2000);
    let a = s.request(
        "POST",
        "/v1/insert/t",
        Some(&body),
        &[("content-encoding", "gzip")],
    );
    assert_eq!(a.status, 413, "the decoded size counts too");
    assert_eq!(s.get("/v1/status").json["counts"]["events"], 0);
}

#[test]
fn numeric_ids_route_and_look_up() {
    let s = Server::start(&["--partitions", "7"]);
    s.create_table(
        "n",
        &json!({"id_type": "numeric", "properties": [{"name": "v", "type": "int"}]}),
    );
    let records: Vec<Value> = (-20i64..20)
        .map(|i| json!({"id": i, "event": "e", "stamp": 1000 + i.abs(), "v": i}))
        .collect();
    s.insert_ok("n", &json!(records));
    for i in -20..20 {
        let c = s.get(&format!("/v1/query/n/customer?id={i}")).json;
        assert_eq!(c["id"], i);
        assert_eq!(c["events"][0]["_"]["v"], i);
    }
    assert_eq!(
        s.get("/v1/status").json["counts"],
        json!({"customers": 40, "events": 40})
    );
    let a = s.post_json(
        "/v1/insert/n",
        &json!([{"id": "7", "event": "e"}, {"id": 1.5, "event": "e"}]),
    );
    assert_eq!(a.json["error"]["rejected"], 2);
}

#[test]
fn customer_query_errors() {
    let s = rides();
    s.insert_ok("rides", &json!([{"id": "h", "event": "e", "stamp": 1}]));
    let cases = [
        (
            "/v1/query/rides/customer",
            400,
            "customer query must expecting id= parameter",
        ),
        (
            "/v1/query/rides/customer?id=h&sid=h",
            400,
            "give either id= or sid=, not both",
        ),
        ("/v1/query/rides/customer?id=", 400, "invalid id"),
        (
            "/v1/query/rides/customer?id=zz",
            404,
            "customer could not be found",
        ),
        (
            "/v1/query/none/customer?id=h",
            404,
            "table could not be found",
        ),
    ];
    for (path, status, detail) in cases {
        let a = s.get(path);
        assert_eq!((a.status, a.detail()), (status, detail), "{path}");
    }
    assert_eq!(
        s.get("/v1/query/rides/customer?id=zz").json["error"]["message"],
        "item not found"
    );
    s.create_table("n", &json!({"id_type": "numeric", "properties": []}));
    assert_eq!(s.get("/v1/query/n/customer?id=abc").detail(), "invalid id");
}
