//! Node life cycle: uninitialised, init, ping, status, version, protocol rules.

mod common;
use common::Server;
use serde_json::json;

#[test]
fn uninitialised_node_waits_and_refuses_data_calls() {
    let s = Server::start(&[]);
    assert_eq!(s.get("/ping").json, json!({"pong": true}));
    assert_eq!(
        s.get("/v1/cluster/is_member").json,
        json!({"part_of_cluster": false})
    );
    assert_eq!(
        s.get("/v1/internode/is_member").json,
        json!({"part_of_cluster": false})
    );
    let st = s.get("/v1/status").json;
    assert_eq!(st["node"]["state"], "ready_wait");
    assert_eq!(st["status"]["init"], false);
    assert_eq!(st["status"]["sentinel"], "startup");
    assert_eq!(st["partitions"], json!([]));
    for (method, path) in [
        ("GET", "/v1/tables"),
        ("POST", "/v1/table/t"),
        ("POST", "/v1/insert/t"),
        ("GET", "/v1/query/t/customer?id=a"),
    ] {
        let a = s.request(method, path, Some(b"{}"), &[]);
        assert_eq!(a.status, 503, "{method} {path}: {}", a.text);
        assert_eq!(a.json["error"]["message"], "route not found (node down?)");
        assert!(a.header("retry-after").is_some());
    }
}

#[test]
fn init_once_with_a_valid_partition_count() {
    let s = Server::start(&[]);
    for bad in [
        "",
        "?partitions=0",
        "?partitions=1001",
        "?partitions=x",
        "?partitions=-3",
    ] {
        let a = s.put(&format!("/v1/cluster/init{bad}"));
        assert_eq!(a.status, 400, "{bad}");
        assert_eq!(a.detail(), "partitions must be >= 1 and <= 1000");
    }
    let a = s.put("/v1/cluster/init?partitions=8");
    assert_eq!(a.status, 200);
    let name = a.json["server_name"].as_str().unwrap().to_string();
    assert!(name.contains('-'), "{name}");
    let again = s.put("/v1/cluster/init?partitions=8");
    assert_eq!(again.status, 400);
    assert_eq!(again.detail(), "This instance is already part of a cluster");
    assert_eq!(
        s.get("/v1/cluster/is_member").json,
        json!({"part_of_cluster": true})
    );
    let st = s.get("/status").json;
    assert_eq!(st["node"]["name"], name.as_str());
    assert_eq!(st["node"]["state"], "active");
    assert_eq!(st["node"]["partition_count"], 8);
    assert_eq!(st["partitions"].as_array().unwrap().len(), 8);
    assert_eq!(st["partitions"][3]["routes"][&name], "active");
    assert_eq!(st["status"]["sentinel"], name.as_str());
    assert_eq!(st["counts"], json!({"customers": 0, "events": 0}));
}

#[test]
fn partitions_flag_initialises_and_status_counts() {
    let s = Server::start(&["--partitions", "3"]);
    s.create_table("t", &json!({"id_type": "numeric", "properties": []}));
    s.insert_ok("t", &json!([{"id": 1, "event": "a", "stamp": 1}, {"id": 2, "event": "a", "stamp": 1}, {"id": 1, "event": "b", "stamp": 2}]));
    let st = s.get("/v1/status").json;
    assert_eq!(st["counts"], json!({"customers": 2, "events": 3}));
    assert_eq!(st["tables"], json!(["t"]));
    assert_eq!(st["status"]["tables"], 1);
    assert!(st["node"]["uptime_ms"].as_u64().is_some());
    // The pass that moves the heap onto huge pages (asked for at start)
    // finishes, and the status says so.
    let quiet = (0..300).any(|_| {
        let running = &s.get("/v1/status").json["maintenance"]["huge_pages_pass_running"];
        assert!(running.is_boolean(), "{running}");
        running == false || {
            std::thread::sleep(std::time::Duration::from_millis(100));
            false
        }
    });
    assert!(quiet, "the huge-page pass never finished");
    assert_eq!(
        s.get("/v1/version").json,
        json!({"version": "0.1.0", "api": "0.4.4"})
    );
}

#[test]
fn protocol_rules_cors_preflight_404_405_trailing_slash() {
    let s = Server::start(&["--partitions", "1"]);
    let a = s.request("OPTIONS", "/v1/table/x", None, &[]);
    assert_eq!(a.status, 204);
    assert_eq!(
        a.header("access-control-allow-methods"),
        Some("GET, POST, PUT, DELETE, OPTIONS")
    );
    assert_eq!(
        s.get("/ping").header("access-control-allow-origin"),
        Some("*")
    );
    let nf = s.get("/v1/nothing/here");
    assert_eq!(nf.status, 404);
    assert_eq!(nf.json["error"]["class"], "config");
    let na = s.delete("/v1/tables");
    assert_eq!(na.status, 405);
    assert!(na.json["error"]["detail"].is_string());
    assert!(na.header("allow").unwrap().contains("GET"));
    assert_eq!(s.get("/v1/tables/").json, json!([]));
    let bad = s.get("/v1/tables?x=%FF%FE");
    assert_eq!(
        bad.status, 400,
        "invalid UTF-8 in a decoded parameter: {}",
        bad.text
    );
    let bad_path = s.get("/v1/table/%FF");
    assert_eq!(bad_path.status, 400, "{}", bad_path.text);
    assert_eq!(
        bad_path.json["error"]["class"], "config",
        "JSON even for the router's own rejections"
    );
    let long = format!("/v1/tables?x={}", "a".repeat(17_000));
    assert_eq!(s.get(&long).status, 400);
}

#[test]
fn second_server_on_the_same_directory_refuses_to_start() {
    let first = Server::start(&["--partitions", "1"]);
    let err = Server::start_in(&first.dir, &[])
        .err()
        .expect("second server must refuse");
    assert!(err.contains("in use by another openset process"), "{err}");
    assert_eq!(first.get("/ping").status, 200);
}

#[test]
fn legacy_status_codes_fold_4xx_into_400() {
    let s = Server::start(&["--partitions", "1", "--legacy-status-codes"]);
    let nf = s.get("/v1/table/nope");
    assert_eq!(nf.status, 400, "404 becomes 400");
    assert_eq!(nf.detail(), "table not found", "the body is unchanged");
    assert_eq!(s.delete("/v1/tables").status, 400, "405 becomes 400");
    assert_eq!(s.get("/ping").status, 200);
    let plain = Server::start(&["--partitions", "1"]);
    assert_eq!(plain.get("/v1/table/nope").status, 404);
}
