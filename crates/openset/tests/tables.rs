//! Tables and properties: both create forms, describe, list, add and drop,
//! settings, and every naming and type rule.

mod common;
use common::Server;
use serde_json::{json, Value};

fn node() -> Server {
    Server::start(&["--partitions", "2"])
}

#[test]
fn create_describe_list_drop_current_form() {
    let s = node();
    let def = json!({
        "id_type": "textual",
        "properties": [
            {"name": "station", "type": "text"},
            {"name": "extras", "type": "text", "is_set": true},
            {"name": "plan", "type": "text", "is_customer": true},
            {"name": "fare", "type": "double", "is_set": false}
        ],
        "event_order": ["ride_end", "payment"]
    });
    let a = s.post_json("/v1/table/rides", &def);
    assert_eq!(a.json, json!({"message": "created", "table": "rides"}));
    s.create_table("alpha", &json!({"id_type": "numeric", "properties": []}));
    assert_eq!(s.get("/v1/tables").json, json!(["alpha", "rides"]));
    let d = s.get("/v1/table/rides").json;
    assert_eq!(d["table"], "rides");
    assert_eq!(d["id_type"], "textual");
    assert_eq!(
        d["properties"],
        json!([
            {"name": "station", "type": "text"},
            {"name": "extras", "type": "text", "is_set": true},
            {"name": "plan", "type": "text", "is_customer": true},
            {"name": "fare", "type": "double"}
        ])
    );
    assert_eq!(d["event_order"], json!(["ride_end", "payment"]));
    assert_eq!(d["settings"]["session_time"], 1_800_000);
    assert!(d.get("columns").is_none());
    let legacy = s.get("/v1/table/rides?legacy=true").json;
    assert_eq!(legacy["columns"], d["properties"]);
    assert_eq!(legacy["z-order"], d["event_order"]);
    assert_eq!(s.get("/v1/table/alpha").json["event_order"], json!([]));

    let dup = s.post_json("/v1/table/rides", &def);
    assert_eq!((dup.status, dup.detail()), (400, "table already exists"));
    assert_eq!(
        s.delete("/v1/table/rides").json,
        json!({"message": "dropped", "table": "rides"})
    );
    assert_eq!(s.get("/v1/table/rides").status, 404);
    assert_eq!(s.get("/v1/table/rides").detail(), "table not found");
    assert_eq!(s.delete("/v1/table/rides").status, 404);
    assert_eq!(s.get("/v1/tables").json, json!(["alpha"]));
}

#[test]
fn create_older_form_accepts_integer_ids_as_text() {
    let s = node();
    for key in ["z-order", "z_order", "event_order"] {
        let name = format!("old_{}", key.replace('-', "_dash_"));
        s.create_table(
            &name,
            &json!({"columns": [{"name": "minutes", "type": "int"}], key: ["b", "a"]}),
        );
        let d = s.get(&format!("/v1/table/{name}")).json;
        assert_eq!(d["id_type"], "textual");
        assert_eq!(d["columns"], json!([{"name": "minutes", "type": "int"}]));
        assert_eq!(d["z-order"], json!(["b", "a"]));
    }
    s.insert_ok(
        "old_z_order",
        &json!([{"id": 42, "event": "a", "stamp": 10, "minutes": 3}]),
    );
    let c = s.get("/v1/query/old_z_order/customer?id=42").json;
    assert_eq!(c["id"], "42");
}

#[test]
fn every_create_rule_is_a_clear_400() {
    let s = node();
    let cases: Vec<(&str, Value, &str)> = vec![
        ("Bad", json!({"id_type": "textual", "properties": []}), "bad table name"),
        ("t", json!({"properties": []}), "properties /id_type should be 'textual' or 'numeric'"),
        ("t", json!({"id_type": "uuid", "properties": []}), "properties /id_type should be 'textual' or 'numeric'"),
        ("t", json!({"id_type": "textual"}), "properties definition required, missing /properties"),
        ("t", json!({"id_type": "textual", "properties": [{"type": "int"}]}), "missing properties type or name"),
        ("t", json!({"id_type": "textual", "properties": [{"name": "a", "type": "string"}]}), "bad properties type: must be int|double|text|bool"),
        ("t", json!({"id_type": "textual", "properties": [{"name": "1a", "type": "int"}]}), "bad properties name: may contain lowercase a-z, 0-9 and _ but cannot start with a number."),
        ("t", json!({"id_type": "textual", "properties": [{"name": "Ab", "type": "int"}]}), "bad properties name: may contain lowercase a-z, 0-9 and _ but cannot start with a number."),
        ("t", json!({"id_type": "textual", "properties": [{"name": "session", "type": "int"}]}), "reserved property name 'session'"),
        ("t", json!({"id_type": "textual", "properties": [{"name": "__x", "type": "int"}]}), "reserved property name '__x'"),
        ("t", json!({"id_type": "textual", "properties": [{"name": "now", "type": "int"}]}), "reserved property name 'now'"),
        ("t", json!({"id_type": "textual", "properties": [{"name": "a", "type": "int"}, {"name": "a", "type": "text"}]}), "duplicate property name 'a'"),
        ("t", json!({"id_type": "textual", "properties": [], "event_order": ["x", "x"]}), "duplicate event name 'x' in event_order"),
        ("t", json!({"id_type": "textual", "properties": [], "colour": 1}), "unknown field 'colour'"),
        ("t", json!({"id_type": "textual", "properties": [], "columns": []}), "give either 'properties' or 'columns', not both"),
    ];
    for (name, body, detail) in cases {
        let a = s.post_json(&format!("/v1/table/{name}"), &body);
        assert_eq!(a.status, 400, "{body}: {}", a.text);
        assert_eq!(a.json["error"]["class"], "config");
        assert_eq!(a.json["error"]["message"], "general_config_error");
        assert_eq!(a.detail(), detail, "{body}");
    }
    let long = "a".repeat(65);
    assert_eq!(
        s.post_json(
            &format!("/v1/table/{long}"),
            &json!({"id_type": "textual", "properties": []})
        )
        .status,
        400
    );
    let a = s.post_raw("/v1/table/t", b"{not json");
    assert_eq!(a.status, 400);
    assert!(
        a.detail().starts_with("body is not valid JSON"),
        "{}",
        a.text
    );
    assert_eq!(s.get("/v1/tables").json, json!([]));
}

#[test]
fn add_and_drop_properties_in_both_forms() {
    let s = node();
    s.create_table(
        "rides",
        &json!({"id_type": "textual", "properties": [{"name": "station", "type": "text"}]}),
    );
    let a = s.put("/v1/table/rides/property/helmet_size?type=text");
    assert_eq!(
        a.json,
        json!({"message": "added", "table": "rides", "property": "helmet_size", "type": "text"})
    );
    // Identical definition: a harmless retry.
    assert_eq!(
        s.put("/v1/table/rides/property/helmet_size?type=text")
            .status,
        200
    );
    let conflict = s.put("/v1/table/rides/property/helmet_size?type=int");
    assert_eq!(
        (conflict.status, conflict.detail()),
        (
            400,
            "property 'helmet_size' already exists with a different definition"
        )
    );
    assert_eq!(
        s.put("/v1/table/rides/property/tags?type=text&is_set=true")
            .status,
        200
    );
    assert_eq!(
        s.put("/v1/table/rides/property/age?type=int&IS_CUSTOMER=yes")
            .status,
        200
    );
    let c = s.put("/v1/table/rides/column/minutes:int");
    assert_eq!(
        c.json,
        json!({"message": "added", "table": "rides", "column": "minutes", "type": "int"})
    );
    assert_eq!(s.put("/v1/table/rides/column/seats%3Aint").status, 200);
    let props = s.get("/v1/table/rides").json["properties"].clone();
    assert_eq!(
        props,
        json!([
            {"name": "station", "type": "text"},
            {"name": "helmet_size", "type": "text"},
            {"name": "tags", "type": "text", "is_set": true},
            {"name": "age", "type": "int", "is_customer": true},
            {"name": "minutes", "type": "int"},
            {"name": "seats", "type": "int"}
        ])
    );
    for (path, status, detail) in [
        ("/v1/table/rides/property/x?type=float", 400, "bad property type: must be int|double|text|bool"),
        ("/v1/table/rides/property/x", 400, "bad property type: must be int|double|text|bool"),
        ("/v1/table/rides/property/9x?type=int", 400, "bad property name: may contain lowercase a-z, 0-9 and _ but cannot start with a number."),
        ("/v1/table/rides/property/stamp?type=int", 400, "reserved property name 'stamp'"),
        ("/v1/table/rides/property/x?type=int&is_set=perhaps", 400, "parameter 'is_set' must be true or false; got 'perhaps'"),
        ("/v1/table/nope/property/x?type=int", 404, "table not found"),
        ("/v1/table/rides/column/x:float", 400, "missing or invalid column type"),
        ("/v1/table/rides/column/x", 400, "missing or invalid column type"),
    ] {
        let a = s.put(path);
        assert_eq!((a.status, a.detail()), (status, detail), "{path}");
    }
    let d = s.delete("/v1/table/rides/property/helmet_size");
    assert_eq!(
        d.json,
        json!({"message": "dropped", "table": "rides", "property": "helmet_size"})
    );
    assert_eq!(
        s.delete("/v1/table/rides/column/minutes").json,
        json!({"message": "dropped", "table": "rides", "column": "minutes"})
    );
    let missing = s.delete("/v1/table/rides/property/helmet_size");
    assert_eq!(
        (missing.status, missing.detail()),
        (404, "property not found")
    );
    let builtin = s.delete("/v1/table/rides/property/event");
    assert_eq!(
        (builtin.status, builtin.detail()),
        (400, "cannot drop built-in property 'event'")
    );
    // After a drop the name can come back with another type.
    assert_eq!(
        s.put("/v1/table/rides/property/helmet_size?type=int")
            .status,
        200
    );
}

#[test]
fn dropped_property_values_disappear_and_stay_gone_after_restart() {
    let mut s = node();
    s.create_table("t", &json!({"id_type": "textual", "properties": [{"name": "a", "type": "int"}, {"name": "b", "type": "text"}]}));
    s.insert_ok(
        "t",
        &json!([{"id": "x", "stamp": 100, "event": "e", "a": 1, "b": "one"}]),
    );
    assert_eq!(s.delete("/v1/table/t/property/a").status, 200);
    assert_eq!(s.put("/v1/table/t/property/a?type=text").status, 200);
    s.insert_ok(
        "t",
        &json!([{"id": "x", "stamp": 200, "event": "e", "a": "new"}]),
    );
    let expect = json!([
        {"stamp": 100000, "stamp_iso": "1970-01-01T00:01:40Z", "event": "e", "_": {"b": "one"}},
        {"stamp": 200000, "stamp_iso": "1970-01-01T00:03:20Z", "event": "e", "_": {"a": "new"}}
    ]);
    assert_eq!(s.get("/v1/query/t/customer?id=x").json["events"], expect);
    s.kill();
    let s2 = Server::start_in(&s.dir, &[]).unwrap();
    assert_eq!(s2.get("/v1/query/t/customer?id=x").json["events"], expect);
}

#[test]
fn settings_are_validated_clamped_and_kept() {
    let mut s = node();
    s.create_table(
        "t",
        &json!({"id_type": "numeric", "properties": [], "settings": {"session_time": 60000}}),
    );
    let a = s.request(
        "PUT",
        "/v1/table/t/settings",
        Some(br#"{"event_ttl": 5, "tz_offset": 9999}"#),
        &[],
    );
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.json["event_ttl"], 60000);
    assert_eq!(a.json["tz_offset"], 840);
    assert_eq!(a.json["session_time"], 60000);
    let bad = s.request(
        "PUT",
        "/v1/table/t/settings",
        Some(br#"{"colour": 1}"#),
        &[],
    );
    assert_eq!(
        (bad.status, bad.detail()),
        (400, "unknown setting 'colour'")
    );
    let bad = s.request(
        "PUT",
        "/v1/table/t/settings",
        Some(br#"{"event_max": "x"}"#),
        &[],
    );
    assert_eq!(
        (bad.status, bad.detail()),
        (400, "setting 'event_max' must be an integer")
    );
    assert_eq!(
        s.request("PUT", "/v1/table/none/settings", Some(b"{}"), &[])
            .status,
        404
    );
    s.kill();
    let s2 = Server::start_in(&s.dir, &[]).unwrap();
    assert_eq!(s2.get("/v1/table/t").json["settings"]["tz_offset"], 840);
}
