//! Event queries over HTTP on the highstreet sample: grouping, every
//! aggregator, nested and reverse iteration, time windows, sessions,
//! parameters, sorting, errors, and identical answers whatever the
//! partition count.

mod common;
use common::{highstreet_server, Answer, Server};
use serde_json::{json, Value};

fn highstreet(partitions: &str) -> Server {
    highstreet_server(partitions)
}

fn query(s: &Server, params: &str, script: &str) -> Answer {
    s.request(
        "POST",
        &format!("/v1/query/highstreet/event{params}"),
        Some(script.as_bytes()),
        &[("content-type", "text/plain")],
    )
}

fn tree(s: &Server, params: &str, script: &str) -> Value {
    let a = query(s, params, script);
    assert_eq!(a.status, 200, "{script}\n{}", a.text);
    a.json
}

const REVENUE: &str = "select
  count id as customers
  sum total as revenue
end
each_row where event.is(== \"purchase\")
  << shipper
end";

#[test]
fn group_and_aggregate_with_sort_order_and_trim() {
    let s = highstreet("4");
    let by_customers =
        json!({"_": [{"g": "ground", "c": [3, 1019.84]}, {"g": "fedex", "c": [2, 318.66]}]});
    assert_eq!(tree(&s, "", REVENUE), by_customers);
    assert_eq!(tree(&s, "?sort=revenue", REVENUE), by_customers);
    assert_eq!(
        tree(&s, "?sort=revenue&order=asc", REVENUE),
        json!({"_": [{"g": "fedex", "c": [2, 318.66]}, {"g": "ground", "c": [3, 1019.84]}]})
    );
    assert_eq!(
        tree(&s, "?sort=group&order=ASC", REVENUE)["_"][0]["g"],
        "fedex"
    );
    assert_eq!(
        tree(&s, "?trim=1", REVENUE),
        json!({"_": [{"g": "ground", "c": [3, 1019.84]}]})
    );
    // The older path answers the same.
    let a = s.request(
        "POST",
        "/v1/query/highstreet/events",
        Some(REVENUE.as_bytes()),
        &[],
    );
    assert_eq!(a.json, by_customers);
    assert_eq!(tree(&s, "?segments=*", REVENUE), by_customers);
}

#[test]
fn every_aggregator_and_distinct_keys() {
    let s = highstreet("3");
    let t = tree(
        &s,
        "",
        "select
  count id as customers
  count product_name as items
  sum product_price as spend
  min product_price as cheapest
  max product_price as priciest
  avg product_price as average
end
each_row where event.is(== \"cart_item\")
  << \"all\"
end",
    );
    let c = &t["_"][0]["c"];
    assert_eq!(t["_"][0]["g"], "all");
    assert_eq!(
        c.as_array().unwrap()[0..5],
        [
            json!(3),
            json!(13),
            json!(1338.5),
            json!(17.99),
            json!(649.99)
        ]
    );
    assert!((c[5].as_f64().unwrap() - 1338.5 / 13.0).abs() < 1e-9, "{c}");
    // `with order_id`: each order once per customer per node; `all`: every push.
    let t = tree(
        &s,
        "",
        "select
  count id as customers
  sum total as per_order with order_id
  count order_id as rows all
end
each_row where true
  << event
end",
    );
    let purchase = t["_"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["g"] == "purchase")
        .unwrap();
    assert_eq!(purchase["c"], json!([3, 1338.5, 6]));
    let items = t["_"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["g"] == "cart_item")
        .unwrap();
    // An empty sum renders as 0 (OSL spec 10.3 and Appendix C).
    assert_eq!(items["c"], json!([3, 0, 13]));
}

#[test]
fn nested_sequences_reverse_and_windows() {
    let s = highstreet("4");
    let next_purchase = "each_row where event.is(== \"purchase\")
  first = shipper
  each_row.continue().next().limit(1) where event.is(== \"purchase\")
    << first, shipper
  end
end";
    assert_eq!(
        tree(&s, "", next_purchase),
        json!({"_": [{"g": "fedex", "c": [2], "_": [{"g": "ground", "c": [2]}, {"g": "fedex", "c": [1]}]}]})
    );
    let last = "each_row.reverse().limit(1) where event.is(== \"purchase\")
  << shipper
end";
    assert_eq!(
        tree(&s, "", last),
        json!({"_": [{"g": "ground", "c": [3]}]})
    );
    let repeat = "each_row where event.is(== \"purchase\")
  s = stamp
  each_row.continue().next().look_ahead(3_days, s).limit(1) where event.is(== \"purchase\")
    << \"repeat within 3 days\"
  end
end";
    assert_eq!(
        tree(&s, "", repeat),
        json!({"_": [{"g": "repeat within 3 days", "c": [1]}]})
    );
}

#[test]
fn sessions_count_per_customer_and_follow_session_time() {
    let s = highstreet("2");
    let script = "select
  count id as customers
  count session as sessions
end
each_row where event.is(== \"purchase\")
  << event
end";
    assert_eq!(
        tree(&s, "", script),
        json!({"_": [{"g": "purchase", "c": [3, 6]}]})
    );
    // With a one-week gap every customer's purchases form one session.
    assert_eq!(
        tree(&s, "?session_time=604800000", script),
        json!({"_": [{"g": "purchase", "c": [3, 3]}]})
    );
}

#[test]
fn script_parameters_and_templates() {
    let s = highstreet("4");
    let expect = |v: &Value| {
        let mut ids: Vec<String> = v["_"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["g"].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        ids
    };
    let vars = "each_row where event.is(== \"purchase\") && shipper == ship
  << id
end";
    assert_eq!(
        expect(&tree(&s, "?str_ship=ground", vars)),
        ["klara", "kyle", "tommy"]
    );
    assert_eq!(
        expect(&tree(&s, "?str_ship=fedex", vars)),
        ["klara", "tommy"]
    );
    let templ = "each_row where shipper.is(== {{ship}}) && cart_size >= {{n}}
  << id
end";
    assert_eq!(
        expect(&tree(&s, "?str_ship=ground&int_n=3", templ)),
        ["klara", "kyle"]
    );
    let missing = query(&s, "?str_ship=ground", templ);
    assert_eq!(missing.status, 400);
    assert_eq!(missing.json["error"]["message"], "template_missing_var");
    assert_eq!(query(&s, "?int_n=three", templ).status, 400);
    assert_eq!(query(&s, "?str_1bad=x", vars).status, 400);
}

#[test]
fn compile_and_runtime_errors_are_400_with_positions() {
    let s = highstreet("2");
    let a = query(
        &s,
        "",
        "each_row where event.is(== \"purchase\"\n  << shipper\nend",
    );
    assert_eq!(a.status, 400);
    assert_eq!(a.json["error"]["class"], "parse");
    assert_eq!(a.json["error"]["message"], "syntax_error");
    assert_eq!(
        (
            a.json["error"]["line"].as_u64(),
            a.json["error"]["column"].as_u64()
        ),
        (Some(2), Some(3))
    );
    assert_eq!(a.json["error"]["additional"], "<< shipper");
    let unknown = query(&s, "", "each_row where true\n  << no_such_property\nend");
    assert_eq!(unknown.status, 400);
    assert_eq!(unknown.json["error"]["line"], 2);
    let rt = query(
        &s,
        "",
        "each_row where event.is(== \"purchase\")\n  for t in shipper\n    << t\n  end\nend",
    );
    assert_eq!(rt.status, 400, "{}", rt.text);
    assert_eq!(rt.json["error"]["class"], "run_time");
    assert_eq!(rt.json["error"]["line"], 2);
    let empty = query(&s, "", "  \n");
    assert_eq!(
        (empty.status, empty.detail()),
        (400, "missing query code (POST query as text)")
    );
    let sort = query(&s, "?sort=nope", REVENUE);
    assert_eq!(
        (sort.status, sort.detail()),
        (400, "sort property not found in query aggregates")
    );
    assert_eq!(query(&s, "?order=sideways", REVENUE).status, 400);
    let seg = query(&s, "?segments=vip", REVENUE);
    assert_eq!((seg.status, seg.detail()), (400, "missing segment 'vip'"));
    assert_eq!(
        query(&s, "?segments=,", REVENUE).detail(),
        "no segment names specified"
    );
    let missing_table = s.request("POST", "/v1/query/nope/event", Some(b"<< 1"), &[]);
    assert_eq!(
        (missing_table.status, missing_table.detail()),
        (404, "table could not be found")
    );
    // The server is unharmed.
    assert_eq!(tree(&s, "", REVENUE)["_"][0]["c"], json!([3, 1019.84]));
}

#[test]
fn debug_returns_a_plain_text_listing() {
    let s = highstreet("2");
    let a = query(&s, "?debug=true", REVENUE);
    assert_eq!(a.status, 200);
    assert!(a.header("content-type").unwrap().starts_with("text/plain"));
    assert!(a.text.contains("purchase"), "{}", a.text);
    assert!(a.json.is_null(), "a listing, not a result tree");
}

#[test]
fn answers_do_not_depend_on_the_partition_count() {
    let one = highstreet("1");
    let many = highstreet("7");
    let scripts = [
        REVENUE,
        "each_row where event.is(== \"cart_item\")\n  << product_group, product_name\nend",
        "select\n  count id as c\n  count session as s\n  max product_price as m\nend\neach_row where true\n  << event, shipper\nend",
        "each_row.reverse() where true\n  << get_day_of_week(stamp)\nend",
    ];
    for script in scripts {
        assert_eq!(tree(&one, "", script), tree(&many, "", script), "{script}");
    }
}

#[test]
fn customer_property_writes_are_committed_durably() {
    let mut s = highstreet("3");
    let script = "if row_count > 6
  age = row_count
end
<< \"done\"";
    assert_eq!(
        tree(&s, "", script),
        json!({"_": [{"g": "done", "c": [3]}]})
    );
    let props = |s: &Server, id: &str| {
        s.get(&format!("/v1/query/highstreet/customer?id={id}"))
            .json["properties"]
            .clone()
    };
    assert_eq!(props(&s, "klara"), json!({"age": 9}));
    assert_eq!(props(&s, "tommy"), json!({}), "6 rows: not written");
    let read = "<< age";
    assert_eq!(
        tree(&s, "", read)["_"].as_array().unwrap().len(),
        1,
        "only klara has an age: {}",
        tree(&s, "", read)
    );
    // A run-time fault aborts the query and writes nothing.
    let failing = "age = 99\nfor t in 5\n  << t\nend";
    assert_eq!(query(&s, "", failing).status, 400);
    assert_eq!(props(&s, "klara"), json!({"age": 9}));
    s.restart(&[]).unwrap();
    assert_eq!(props(&s, "klara"), json!({"age": 9}));
    assert_eq!(props(&s, "kyle"), json!({}));
}

/// The next-purchase pairs of `customers` (product names of each
/// customer's purchases in order), counted as the PAIRS script counts
/// them: (pair, customers, pairs), ordered by pairs, then by pair text.
fn recount_pairs(customers: &[Vec<&str>]) -> Vec<(String, i64, i64)> {
    let mut counts: std::collections::BTreeMap<String, (i64, i64)> = Default::default();
    for bought in customers {
        let mut seen = std::collections::BTreeSet::new();
        for w in bought.windows(2) {
            let pair = format!("{} > {}", w[0], w[1]);
            let c = counts.entry(pair.clone()).or_default();
            c.1 += 1;
            if seen.insert(pair) {
                c.0 += 1;
            }
        }
    }
    let mut out: Vec<(String, i64, i64)> =
        counts.into_iter().map(|(p, (c, n))| (p, c, n)).collect();
    out.sort_by(|a, b| {
        b.2.cmp(&a.2)
            .then_with(|| a.0.to_lowercase().cmp(&b.0.to_lowercase()))
    });
    out
}

/// The PAIRS script's answer on `table` (with `params`): (pair,
/// customers, pairs) in the order the server lists them.
fn pairs_answer(s: &Server, table: &str, params: &str) -> Vec<(String, i64, i64)> {
    let a = s.request(
        "POST",
        &format!("/v1/query/{table}/event{params}"),
        Some(PAIRS.as_bytes()),
        &[("content-type", "text/plain")],
    );
    assert_eq!(a.status, 200, "{}", a.text);
    a.json["_"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["g"].as_str().unwrap().to_string(),
                n["c"][0].as_i64().unwrap(),
                n["c"][1].as_i64().unwrap(),
            )
        })
        .collect()
}

/// A customer and the products of its purchases, in order.
type Buyer<'a> = (&'a str, &'a [&'a str]);

const PAIRS: &str = "select
  count id as customers
  count product as pairs all
end
each_row where event.is(== \"purchase\")
  p = product
  each_row.continue().next().limit(1) where event.is(== \"purchase\")
    << p + \" > \" + product
  end
end";

#[test]
fn next_purchase_pairs_match_a_recount_whether_keys_are_numbered_or_not() {
    let s = Server::start(&["--partitions", "3"]);
    let shop = json!({"id_type": "textual", "properties": [{"name": "product", "type": "text"}]});
    s.create_table("shop", &shop);
    let mut rng = common::Rng(0x5eed_1234);
    // (Spaces alone never make pairs ambiguous: these keep numbered keys.)
    let products = ["tent", "camp stove", "head lamp", "rope", "mug"];
    let mut customers: Vec<Vec<&str>> = Vec::new();
    let mut records = Vec::new();
    for c in 0..60 {
        let mut bought = Vec::new();
        for i in 0..(1 + rng.below(9)) {
            let product = products[rng.below(products.len() as u64) as usize];
            // Views between purchases carry products too, and are skipped.
            let event = if rng.below(3) == 0 {
                "view"
            } else {
                "purchase"
            };
            if event == "purchase" {
                bought.push(product);
            }
            records.push(
                json!({"id": format!("c{c}"), "stamp": 1_700_000_000_000i64 + 60_000 * i as i64,
                                "event": event, "product": product}),
            );
        }
        customers.push(bought);
    }
    s.insert_ok("shop", &Value::Array(records.clone()));
    let base = records;
    let answer = |table: &str, params: &str| pairs_answer(&s, table, params);
    let expected = recount_pairs(&customers);
    assert!(expected.len() > 10, "too few pairs: {expected:?}");
    assert_eq!(answer("shop", "?sort=pairs"), expected);
    assert_eq!(answer("shop", "?sort=pairs&trim=3"), expected[..3].to_vec());
    // Products that could split another way: two different pairs spell
    // one text, one group. The query falls back to text keys and answers
    // as the recount does. First a prefix of the separator at the end of
    // a first part ("a >" then "z", "a" then "> z"), then the separator
    // inside one ("x > y" then "z", "x" then "y > z").
    let collisions: [(&[Buyer], &str, i64, i64); 2] = [
        (
            &[("k1", &["a >", "z"]), ("k2", &["a", "> z"])],
            "a > > z",
            2,
            2,
        ),
        (
            &[
                ("k3", &["x > y", "z"]),
                ("k4", &["x", "y > z"]),
                ("k5", &["x > y", "z", "x", "y > z"]),
            ],
            "x > y > z",
            3,
            4,
        ),
    ];
    // Each in a table of its own, so that one cannot hide the other.
    for (k, (buyers, pair, customers_with, pairs)) in collisions.into_iter().enumerate() {
        let table = format!("shop{k}");
        s.create_table(&table, &shop);
        let mut records = Vec::new();
        let mut customers = customers.clone();
        for (id, bought) in buyers {
            for (i, product) in bought.iter().enumerate() {
                records.push(json!({"id": id, "event": "purchase", "product": product,
                                    "stamp": 1_700_000_000_000i64 + 60_000 * i as i64}));
            }
            customers.push(bought.to_vec());
        }
        s.insert_ok(
            &table,
            &Value::Array(records.iter().chain(&base).cloned().collect()),
        );
        let expected = recount_pairs(&customers);
        let group = (pair.to_string(), customers_with, pairs);
        assert!(expected.contains(&group), "{expected:?}");
        assert_eq!(answer(&table, "?sort=pairs"), expected);
    }
}

#[test]
fn next_purchase_pairs_follow_inserts_when_purchase_rows_are_listed() {
    // Purchases are one row in 13 here, rare enough for the partition to
    // list each customer's purchase rows for the guarded loops
    // (`NameRows`). Purchases then inserted between, before and after
    // the stored rows move every later row: the lists must follow.
    let s = Server::start(&["--partitions", "1"]);
    let shop = json!({"id_type": "textual", "properties": [{"name": "product", "type": "text"}]});
    s.create_table("rare", &shop);
    let products = ["tent", "camp stove", "head lamp", "rope", "mug"];
    let mut rng = common::Rng(0x0dd_5eed);
    // Per customer: (stamp, product of a purchase or None for a view).
    let mut rows: Vec<Vec<(i64, Option<&str>)>> = Vec::new();
    let mut records = Vec::new();
    let t0 = 1_700_000_000_000i64;
    for c in 0..40 {
        let mut mine = Vec::new();
        for i in 0..80i64 {
            let stamp = t0 + 60_000 * 10 * i;
            let product = products[rng.below(products.len() as u64) as usize];
            let bought = (i % 20 == 3 || rng.below(40) == 0).then_some(product);
            let event = if bought.is_some() { "purchase" } else { "view" };
            records.push(
                json!({"id": format!("c{c}"), "stamp": stamp, "event": event, "product": product}),
            );
            mine.push((stamp, bought));
        }
        rows.push(mine);
    }
    s.insert_ok("rare", &Value::Array(records));
    let answer = || pairs_answer(&s, "rare", "?sort=pairs");
    let recount = |rows: &[Vec<(i64, Option<&'static str>)>]| {
        let bought: Vec<Vec<&str>> = rows
            .iter()
            .map(|r| {
                let mut r = r.clone();
                r.sort_by_key(|&(stamp, _)| stamp);
                r.into_iter().filter_map(|(_, p)| p).collect()
            })
            .collect();
        recount_pairs(&bought)
    };
    let expected = recount(&rows);
    assert!(expected.len() > 10, "too few pairs: {expected:?}");
    assert_eq!(answer(), expected);
    for round in 0..3i64 {
        let mut records = Vec::new();
        for c in (0..40).filter(|c| c % 3 == round) {
            for (k, offset) in [
                (0, -60_000i64),
                (1, 60_000 * 10 * 17 + 30_000),
                (2, 60_000 * 10 * 85),
            ] {
                let product = products[((c + k + round) % 5) as usize];
                let stamp = t0 + offset + round;
                records.push(json!({"id": format!("c{c}"), "stamp": stamp, "event": "purchase", "product": product}));
                rows[c as usize].push((stamp, Some(product)));
            }
        }
        s.insert_ok("rare", &Value::Array(records));
        assert_eq!(answer(), recount(&rows), "after round {round}");
    }
}

#[test]
fn event_names_past_65535_texts_are_found_by_scans() {
    // 66,000 distinct texts come first, so an event name seen after them
    // has a dictionary id past 16 bits: its customers' name columns widen
    // to four bytes, the others stay at two.
    let s = Server::start(&["--partitions", "1"]);
    s.create_table(
        "wide",
        &json!({"id_type": "textual", "properties": [{"name": "tag", "type": "text"}]}),
    );
    for chunk in 0..3 {
        let records: Vec<Value> = (0..22_000)
            .map(|i| {
                let n = chunk * 22_000 + i;
                json!({"id": format!("t{}", n % 50), "stamp": 1_700_000_000_000i64 + n,
                       "event": "seen", "tag": format!("tag{n}")})
            })
            .collect();
        s.insert_ok("wide", &Value::Array(records));
    }
    let late: Vec<Value> = (0..7)
        .flat_map(|c| {
            (0..3).map(move |i| {
                json!({"id": format!("t{c}"), "stamp": 1_700_000_100_000i64 + i,
                       "event": if i == 1 { "late_event" } else { "seen" }})
            })
        })
        .collect();
    s.insert_ok("wide", &Value::Array(late));
    let script = "select\n  count id as customers\n  count event as rows all\nend\n\
                  each_row where event.is(== \"late_event\")\n  << \"late\"\n  \
                  each_row.continue().next().limit(1) where event.is(== \"seen\")\n    << \"after\"\n  end\nend\n\
                  each_row.reverse().limit(1) where event.is(== \"seen\")\n  << \"last_seen\"\nend\n";
    let a = s.request(
        "POST",
        "/v1/query/wide/event?sort=group&order=asc",
        Some(script.as_bytes()),
        &[("content-type", "text/plain")],
    );
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(
        a.json,
        json!({"_": [
            {"g": "after", "c": [7, 7]},
            {"g": "last_seen", "c": [50, 50]},
            {"g": "late", "c": [7, 7]}
        ]})
    );
}
