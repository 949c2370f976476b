//! End-to-end tests: real scripts over the §1.4 bookstore data.

use crate::functions::parse_iso8601;
use crate::testkit::TestPartition;
use crate::*;
use serde_json::json;

fn prop(name: &str, kind: PropKind, is_set: bool, is_customer: bool, index: u32) -> PropDef {
    PropDef {
        name: name.into(),
        kind,
        is_set,
        is_customer,
        index,
    }
}

fn schema() -> Schema {
    Schema {
        props: vec![
            prop("title", PropKind::Text, false, false, 10),
            prop("genre", PropKind::Text, true, false, 11),
            prop("price", PropKind::Double, false, false, 12),
            prop("qty", PropKind::Int, false, false, 13),
            prop("order_no", PropKind::Int, false, false, 14),
            prop("channel", PropKind::Text, false, false, 15),
            prop("tier", PropKind::Text, false, true, 16),
            prop("spend_90d", PropKind::Double, false, true, 17),
            prop("favourite_genres", PropKind::Text, true, true, 18),
            prop("gift", PropKind::Bool, false, false, 19),
        ],
        numeric_ids: false,
    }
}

fn ms(iso: &str) -> i64 {
    parse_iso8601(iso).unwrap_or(0)
}

fn t(s: &str) -> Value {
    Value::text(s)
}

fn genres(g: &[&str]) -> Value {
    Value::list(g.iter().map(|x| t(x)).collect())
}

/// The §1.4 data: ana (0) and ben (1).
fn bookstore() -> TestPartition {
    let mut p = TestPartition::new(schema());
    let ana = p.add_customer("ana");
    p.add_row(
        ana,
        ms("2024-03-01T10:00:00Z"),
        "view",
        &[
            ("title", t("Dune")),
            ("genre", genres(&["scifi", "classic"])),
        ],
    );
    p.add_row(
        ana,
        ms("2024-03-01T10:05:00Z"),
        "order",
        &[
            ("title", t("Dune")),
            ("genre", genres(&["scifi", "classic"])),
            ("price", Value::Float(12.5)),
            ("qty", Value::Int(1)),
            ("order_no", Value::Int(501)),
        ],
    );
    p.add_row(
        ana,
        ms("2024-03-04T09:00:00Z"),
        "view",
        &[
            ("title", t("Emma")),
            ("genre", genres(&["romance", "classic"])),
        ],
    );
    p.add_row(
        ana,
        ms("2024-03-09T18:30:00Z"),
        "order",
        &[
            ("title", t("Emma")),
            ("genre", genres(&["romance", "classic"])),
            ("price", Value::Float(8.0)),
            ("qty", Value::Int(2)),
            ("order_no", Value::Int(502)),
        ],
    );
    let ben = p.add_customer("ben");
    p.add_row(
        ben,
        ms("2024-03-02T12:00:00Z"),
        "order",
        &[
            ("title", t("Dune")),
            ("genre", genres(&["scifi", "classic"])),
            ("price", Value::Float(12.5)),
            ("qty", Value::Int(1)),
            ("order_no", Value::Int(601)),
        ],
    );
    p.add_row(
        ben,
        ms("2024-03-02T12:00:00Z"),
        "order",
        &[
            ("title", t("Neuromancer")),
            ("genre", genres(&["scifi"])),
            ("price", Value::Float(20.0)),
            ("qty", Value::Int(1)),
            ("order_no", Value::Int(601)),
        ],
    );
    p.set_segment(ana, "big_spenders", false);
    p.set_segment(ben, "big_spenders", true);
    p
}

fn ctx() -> RunContext {
    RunContext {
        now: ms("2024-03-10T00:00:00Z"),
        ..RunContext::default()
    }
}

fn compile_ok(src: &str) -> Program {
    match compile(src, &schema(), &Params::new()) {
        Ok(p) => p,
        Err(e) => panic!("compile failed: {e} ({})", e.additional),
    }
}

fn compile_kind(src: &str, kind: ScriptKind) -> Result<Program, CompileError> {
    compile_with(
        src,
        &schema(),
        &Params::new(),
        &CompileOptions {
            kind,
            ..CompileOptions::default()
        },
    )
}

fn compile_err(src: &str) -> CompileError {
    match compile(src, &schema(), &Params::new()) {
        Ok(_) => panic!("expected a compile error for {src:?}"),
        Err(e) => e,
    }
}

/// Runs an event query over every customer, rendering with `opts`.
fn event_query_opts(src: &str, opts: &RenderOptions) -> serde_json::Value {
    event_query_on(&bookstore(), src, opts)
}

/// Runs `src` for every customer of `p` into one tree and renders it.
fn event_query_on(p: &TestPartition, src: &str, opts: &RenderOptions) -> serde_json::Value {
    let prog = compile_ok(src);
    let mut st = prog.new_state();
    let mut tree = prog.new_tree(1);
    for i in 0..p.customers.len() {
        if let Err(e) = prog.run(&p.view(i), &ctx(), &mut st, &mut tree) {
            panic!("runtime error: {e}");
        }
    }
    tree.render(opts)
}

/// Each script gives the same tree on `p` as its twin without event guards
/// (`where true && event.is(...)` hides them from the scan), and pushes
/// something.
fn assert_guard_free_twins_agree(p: &TestPartition, scripts: &[&str]) {
    for src in scripts {
        let twin = src.replace("where event.is(", "where true && event.is(");
        let opts = RenderOptions::default();
        let (a, b) = (
            event_query_on(p, src, &opts),
            event_query_on(p, &twin, &opts),
        );
        assert_eq!(a, b, "script:\n{src}");
        assert_ne!(a["_"], json!([]), "script pushed nothing:\n{src}");
    }
}

fn event_query(src: &str) -> serde_json::Value {
    event_query_opts(src, &RenderOptions::default())
}

/// Runs a script for one customer and returns its outcome.
fn outcome(src: &str, customer: usize) -> RunOutcome {
    let p = bookstore();
    let prog = compile_ok(src);
    let mut tree = prog.new_tree(1);
    match prog.run_once(&p.view(customer), &ctx(), &mut tree) {
        Ok(o) => o,
        Err(e) => panic!("runtime error: {e}"),
    }
}

/// The debug(...) values of a run, as JSON.
fn debug_of(src: &str, customer: usize) -> Vec<serde_json::Value> {
    outcome(src, customer)
        .debug
        .iter()
        .map(Value::to_json)
        .collect()
}

fn debug1(src: &str) -> serde_json::Value {
    debug_of(src, 0)
        .into_iter()
        .next()
        .unwrap_or(json!("<no debug output>"))
}

fn runtime_err(src: &str, customer: usize) -> RuntimeError {
    let p = bookstore();
    let prog = compile_ok(src);
    let mut tree = prog.new_tree(1);
    match prog.run_once(&p.view(customer), &ctx(), &mut tree) {
        Ok(_) => panic!("expected a runtime error for {src:?}"),
        Err(e) => e,
    }
}

// ----- spec examples: result trees -------------------------------------------

#[test]
fn example_1_month_and_title() {
    let j = event_query(
        "select\n  count id    as readers\n  count title as lines\n  sum   price as revenue\nend\n\neach_row where event.is(== \"order\")\n  << get_month(stamp), title\nend\n",
    );
    assert_eq!(
        j,
        json!({"_": [
            {"g": 3, "c": [2, 4, 53.0], "_": [
                {"g": "Dune", "c": [2, 2, 25.0]},
                {"g": "Emma", "c": [1, 1, 8.0]},
                {"g": "Neuromancer", "c": [1, 1, 20.0]}
            ]}
        ]})
    );
}

#[test]
fn example_2_fan_out_and_dedup() {
    let j = event_query(
        "select\n  count id    as readers\n  sum   price as revenue\n  count order_no with order_no as orders\nend\neach_row where event.is(== \"order\")\n  << \"orders\", genre\nend",
    );
    assert_eq!(
        j,
        json!({"_": [
            {"g": "orders", "c": [2, 53.0, 3], "_": [
                {"g": "classic", "c": [2, 33.0, 3]},
                {"g": "scifi", "c": [2, 45.0, 2]},
                {"g": "romance", "c": [1, 8.0, 1]}
            ]}
        ]})
    );
}

#[test]
fn appendix_c_worked_example() {
    let src = "# which title did a customer order next?\nselect\n  count id    as readers\n  sum   price as revenue\nend\n\neach_row where event.is(== \"order\")\n  first_title = title\n  first_order = order_no\n  each_row.continue().next().limit(1) where event.is(== \"order\") && order_no.is(!= first_order)\n    << first_title, title\n  end\nend\n";
    let j = event_query(src);
    assert_eq!(
        j,
        json!({"_": [{"g": "Dune", "c": [1, 8.0], "_": [{"g": "Emma", "c": [1, 8.0]}]}]})
    );
}

#[test]
fn segment_compare_columns() {
    let p = bookstore();
    let prog = compile_ok("each_row where event.is(== \"order\")\n  << title\nend");
    let mut st = prog.new_state();
    let mut tree = prog.new_tree(2);
    for i in 0..p.customers.len() {
        // segment 0 = "*", segment 1 = big_spenders (ben only)
        let mut c = ctx();
        prog.run(&p.view(i), &c, &mut st, &mut tree).ok();
        if i == 1 {
            c.segment = 1;
            prog.run(&p.view(i), &c, &mut st, &mut tree).ok();
        }
    }
    assert_eq!(
        tree.render(&RenderOptions::default()),
        json!({"_": [
            {"g": "Dune", "c": [2], "c2": [1]},
            {"g": "Emma", "c": [1], "c2": [0]},
            {"g": "Neuromancer", "c": [1], "c2": [1]}
        ]})
    );
}

#[test]
fn merge_of_partitions_equals_single_tree() {
    let p = bookstore();
    let src = "select\n count id\n sum price as revenue\n min price as lo\n max qty as hi\n avg price as mean\nend\neach_row where event == 'order'\n << title\nend";
    let prog = compile_ok(src);
    let mut whole = prog.new_tree(1);
    let mut a = prog.new_tree(1);
    let mut b = prog.new_tree(1);
    let mut st = prog.new_state();
    for i in 0..2 {
        prog.run(&p.view(i), &ctx(), &mut st, &mut whole).ok();
    }
    prog.run(&p.view(0), &ctx(), &mut st, &mut a).ok();
    prog.run(&p.view(1), &ctx(), &mut st, &mut b).ok();
    b.merge(a);
    let o = RenderOptions::default();
    assert_eq!(whole.render(&o), b.render(&o));
    let j = b.render(&o);
    assert_eq!(
        j["_"][0],
        json!({"g": "Dune", "c": [2, 25.0, 12.5, 1, 12.5]})
    );
}

#[test]
fn sort_by_alias_group_and_trim() {
    let src = "select\n count id as readers\n sum price as revenue\nend\neach_row where event == 'order'\n << title\nend";
    let prog = compile_ok(src);
    let idx = prog.new_tree(1).column_index("revenue");
    assert_eq!(idx, Some(1));
    let j = event_query_opts(
        src,
        &RenderOptions {
            sort: SortBy::Column(1),
            descending: false,
            trim: Some(2),
        },
    );
    assert_eq!(j["_"].as_array().map(Vec::len), Some(2));
    assert_eq!(j["_"][0]["g"], "Emma");
    assert_eq!(j["_"][1]["g"], "Neuromancer");
    let j = event_query_opts(
        src,
        &RenderOptions {
            sort: SortBy::Group,
            descending: false,
            trim: None,
        },
    );
    let keys: Vec<&str> = j["_"].as_array().map_or(vec![], |a| {
        a.iter().filter_map(|n| n["g"].as_str()).collect()
    });
    assert_eq!(keys, vec!["Dune", "Emma", "Neuromancer"]);
}

#[test]
fn typed_group_keys_and_nil_cut() {
    let j = event_query("<< 5, nil, \"never\"\n<< 5.0\n<< \"5\"\n<< true\n<< nil");
    let keys: Vec<serde_json::Value> = j["_"]
        .as_array()
        .map_or(vec![], |a| a.iter().map(|n| n["g"].clone()).collect());
    assert_eq!(keys.len(), 4);
    assert!(keys.contains(&json!(5)));
    assert!(keys.contains(&json!(5.0)));
    assert!(keys.contains(&json!("5")));
    assert!(keys.contains(&json!(true)));
    // the nil cut the path: no child below 5
    let five = j["_"]
        .as_array()
        .and_then(|a| a.iter().find(|n| n["g"] == json!(5)).cloned());
    assert_eq!(five.and_then(|n| n.get("_").cloned()), None);
}

#[test]
fn dict_group_is_runtime_error() {
    let e = runtime_err("<< {a: 1}", 0);
    assert_eq!(e.detail, "group value must be a scalar, list or set");
    assert_eq!(e.line, 1);
}

#[test]
fn select_all_and_session_columns() {
    let j = event_query(
        "select\n count title as lines all\n count session as sessions\nend\neach_row\n << \"x\"\n << \"x\"\nend",
    );
    // ana: 4 rows pushed twice each with `all` => 8; ben 2 rows x2 => 4
    // sessions: ana's rows: 10:00,10:05 (one session), 03-04, 03-09 => 3; ben 1
    assert_eq!(j["_"][0]["c"], json!([12, 4]));
}

#[test]
fn stamp_counts_dedups_by_stamp() {
    let p = bookstore();
    let prog = compile_ok("select\n count title\nend\neach_row\n << 'all'\nend");
    let mut tree = prog.new_tree(1);
    let c = RunContext {
        stamp_counts: true,
        ..ctx()
    };
    prog.run_once(&p.view(1), &c, &mut tree).ok();
    // ben's two rows share one stamp
    assert_eq!(
        tree.render(&RenderOptions::default())["_"][0]["c"],
        json!([1])
    );
}

// ----- statements and iteration ---------------------------------------------------

fn five_rows() -> TestPartition {
    let mut p = TestPartition::new(schema());
    let c = p.add_customer("x");
    for s in 0..5 {
        p.add_row(
            c,
            ms("2024-01-01T00:00:30Z") + s * 1000,
            "purchase",
            &[("qty", Value::Int(s))],
        );
    }
    p
}

fn count_runs(src: &str) -> Vec<serde_json::Value> {
    let p = five_rows();
    let prog = compile_ok(src);
    let mut tree = prog.new_tree(1);
    match prog.run_once(&p.view(0), &ctx(), &mut tree) {
        Ok(o) => o.debug.iter().map(Value::to_json).collect(),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn each_row_suite_facts() {
    assert_eq!(
        count_runs("n = 0\neach_row.limit(2)\n n += 1\nend\ndebug(n)"),
        vec![json!(2)]
    );
    assert_eq!(
        count_runs("r = []\neach_row.range('2024-01-01T00:00:30Z', '2024-01-01T00:00:32Z')\n r += qty\nend\ndebug(r)"),
        vec![json!([0, 1, 2])]
    );
    assert_eq!(
        count_runs("r = []\neach_row.reverse().range('2024-01-01T00:00:30Z', '2024-01-01T00:00:32Z')\n r += qty\nend\ndebug(r)"),
        vec![json!([2, 1, 0])]
    );
    assert_eq!(
        count_runs("n = 0\neach_row.limit(1)\n each_row.continue()\n  n += 1\n end\nend\ndebug(n)"),
        vec![json!(5)]
    );
    assert_eq!(
        count_runs(
            "n = 0\neach_row.limit(1)\n each_row.continue().next()\n  n += 1\n end\nend\ndebug(n)"
        ),
        vec![json!(4)]
    );
    assert_eq!(
        count_runs("n = 0\neach_row.from(2)\n n += 1\nend\ndebug(n)"),
        vec![json!(3)]
    );
    assert_eq!(
        count_runs(
            "n = 0\neach_row.from(1).next().limit(2) where qty >= 0\n n += qty\nend\ndebug(n)"
        ),
        vec![json!(5)]
    );
}

#[test]
fn break_continue_and_levels() {
    assert_eq!(
        count_runs("n = 0\neach_row\n if qty == 1\n  continue\n end\n if qty == 3\n  break\n end\n n += 1\nend\ndebug(n)"),
        vec![json!(2)]
    );
    assert_eq!(
        count_runs("n = 0\nfor a in [1, 2, 3]\n for b in [1, 2]\n  n += 1\n  break(2)\n end\nend\ndebug(n)"),
        vec![json!(1)]
    );
    assert_eq!(
        count_runs("n = 0\nfor a in [1, 2, 3]\n for b in [1, 2]\n  for c in [1, 2]\n   n += 1\n   break(\"top\")\n  end\n end\nend\ndebug(n)"),
        vec![json!(3)]
    );
    assert_eq!(
        count_runs("n = 0\nfor a in [1, 2, 3]\n for b in [1, 2]\n  n += 1\n  break(\"all\")\n end\nend\ndebug(n)"),
        vec![json!(1)]
    );
    let p = five_rows();
    let prog = compile_ok("k = 3\nfor a in [1]\n break(k)\nend");
    let mut tree = prog.new_tree(1);
    let e = prog.run_once(&p.view(0), &ctx(), &mut tree).err();
    assert_eq!(e.map(|e| e.code), Some(ErrorCode::BreakDepthTooDeep));
}

#[test]
fn exit_return_and_pushes_survive() {
    let o = outcome("<< 'a'\nexit\n<< 'b'", 0);
    assert!(o.value.is_nil());
    let o = outcome(
        "each_row\n if cursor == 2\n  return(cursor * 10)\n end\nend\nreturn(1)",
        0,
    );
    assert_eq!(o.value.to_json(), json!(20));
    let j = event_query("<< 'a'\nreturn\n<< 'b'");
    assert_eq!(j, json!({"_": [{"g": "a", "c": [2]}]}));
}

#[test]
fn if_elif_else_and_python_colons() {
    let src = "x = 15\nif x > 20:\n debug(\"big\")\nelif x > 10:\n debug(\"mid\")\nelse if x > 5\n debug(\"small\")\nelse:\n debug(\"tiny\")\nend";
    assert_eq!(debug1(src), json!("mid"));
    assert_eq!(
        debug1("if false\n debug(1)\nelsif nil\n debug(2)\nelse\n debug(3)\nend"),
        json!(3)
    );
}

#[test]
fn for_loops_over_containers() {
    assert_eq!(
        debug1("r = []\nfor k in {b: 1, a: 2}\n r += k\nend\ndebug(r)"),
        json!(["b", "a"])
    );
    assert_eq!(
        debug1("r = 0\nfor k in set(3, 4, 3)\n r += k\nend\ndebug(r)"),
        json!(7)
    );
    assert_eq!(
        debug1("r = 0\nfor k in nil\n r += 1\nend\ndebug(r)"),
        json!(0)
    );
    // the loop variable keeps its last value; the source is a snapshot
    assert_eq!(
        debug1("l = [1, 2]\nfor k in l\n l = l + 9\nend\ndebug([k, l])"),
        json!([2, [1, 2, 9, 9]])
    );
    let e = runtime_err(
        "total = 0\nfor t in title        # not iterable\n  total += 1\nend",
        0,
    );
    assert_eq!(e.code, ErrorCode::IterationError);
    assert_eq!(e.detail, "cannot iterate over a value of type text");
    assert_eq!((e.line, e.column), (2, 10));
    assert_eq!(e.additional, "for t in title        # not iterable");
    assert_eq!(e.to_json()["error"]["message"], "iteration error");
}

#[test]
fn set_property_iteration_at_cursor() {
    let j = event_query("for g in genre\n << g\nend");
    // cursor row 0: ana {scifi, classic}; ben {scifi, classic}
    assert_eq!(
        j,
        json!({"_": [{"g": "classic", "c": [2]}, {"g": "scifi", "c": [2]}]})
    );
}

#[test]
fn assignment_forms_and_subscripts() {
    assert_eq!(
        debug1("a = 2 + 3 * 4\nb = 10 - 4 - 3\ndebug([a, b, a-1, -a])"),
        json!([14, 3, 13, -14])
    );
    assert_eq!(
        debug1("x = 5\nx += 2\nx *= 3\nx -= 1\nx /= 4\ndebug(x)"),
        json!(5)
    );
    assert_eq!(
        debug1("d = {\"a\": {\"b\": [1, 2]}}\nd[\"a\"][\"b\"][1] = 7\nd[\"c\"] = 1\nd[\"c\"] += 1\ndebug(d)"),
        json!({"a": {"b": [1, 7]}, "c": 2})
    );
    assert_eq!(debug1("shelf = {\"scifi\": [\"Dune\"]}\ncopy = shelf[\"scifi\"]\ncopy = copy + \"N\"\ndebug(shelf)"), json!({"scifi": ["Dune"]}));
    assert_eq!(
        debug1("d = {}\nx = d[\"missing\"]\ndebug([x, len(d)])"),
        json!([null, 0])
    );
    assert_eq!(debug1("d = {}\nd[1] = \"a\"\ndebug(d[1.0])"), json!("a"));
    let e = runtime_err("d = {}\nd[\"a\"][\"b\"] = 1", 0);
    assert_eq!(e.detail, "key 'a' not in dictionary");
    let e = runtime_err("l = [1]\nl[3] = 1", 0);
    assert_eq!(e.detail, "index out of range");
    assert_eq!(e.line, 2);
}

#[test]
fn operators_and_logic() {
    assert_eq!(
        debug1("debug([1 < 2 && 2 < 3, not 1 == 2, !0, nil || \"x\", 3 in [1, 3], 4 not in [1], \"ap\" in \"chapter\", [1, 2] contains 2, set(1, 2) any [5, 2]])"),
        json!([true, true, true, true, true, true, true, true, true])
    );
    assert_eq!(
        debug1("debug([7 / 2, 7 / 2.0, \"qty: \" + 2, \"a-b-c\" - \"-\", 10 / 0, nil - 5])"),
        json!([3, 3.5, "qty: 2", "abc", 0, null])
    );
    assert_eq!(
        debug1("debug([1 and 0, 1 or 0, 5 == \"5.0\", nil == nil, nil < 1])"),
        json!([false, true, true, true, false])
    );
    let e = runtime_err("x = \"a\" * 2", 0);
    assert_eq!(e.code, ErrorCode::RunTimeExceptionTriggered);
    assert_eq!((e.line, e.column), (1, 9));
}

#[test]
fn short_circuit_skips_errors() {
    assert_eq!(debug1("x = false && (\"a\" * 2)\ndebug(x)"), json!(false));
    assert_eq!(debug1("x = true || (\"a\" * 2)\ndebug(x)"), json!(true));
}

// ----- properties and filters ---------------------------------------------------------

#[test]
fn plain_property_reads_at_cursor() {
    assert_eq!(
        debug_of(
            "debug([event, title, genre, price, qty, id, stamp, session])",
            0
        ),
        vec![json!([
            "view",
            "Dune",
            ["scifi", "classic"],
            null,
            null,
            "ana",
            ms("2024-03-01T10:00:00Z"),
            1
        ])]
    );
    assert_eq!(
        debug_of(
            "r = []\neach_row where event == 'order'\n r += [price]\nend\ndebug(r)",
            0
        ),
        vec![json!([12.5, 8.0])]
    );
    // no rows: everything nil except id
    let mut p = TestPartition::new(schema());
    let c = p.add_customer("Zed");
    let prog = compile_ok("debug([id, title, stamp, row_count, first_stamp, session_count])");
    let mut tree = prog.new_tree(1);
    let o = prog
        .run_once(&p.view(c), &ctx(), &mut tree)
        .map(|o| o.debug[0].to_json())
        .ok();
    assert_eq!(o, Some(json!(["zed", null, null, 0, null, 0])));
}

#[test]
fn is_ever_never_and_set_rules() {
    let src = "debug([genre.ever(contains \"scifi\"), genre.never(== \"romance\"), event.ever(== \"order\"), title.is(== \"Dune\"), title.is_not(== \"Dune\"), genre == \"scifi\", genre != \"scifi\", genre in [\"classic\"], genre.row(== \"classic\")])";
    assert_eq!(
        debug_of(src, 0),
        vec![json!([
            true, false, true, true, false, true, false, true, true
        ])]
    );
    assert_eq!(
        debug_of(src, 1),
        vec![json!([
            true, true, true, true, false, true, false, true, true
        ])]
    );
    // a property missing on the row: == false, != true
    assert_eq!(
        debug1("debug([price.is(== 1), price.is(!= 1), price == nil])"),
        json!([false, true, true])
    );
    // both sides evaluated on each row
    assert_eq!(debug1("debug(title.ever(== channel))"), json!(false));
}

#[test]
fn time_scoped_filters() {
    // customers who viewed in the 2 days before each order
    let j = event_query(
        "each_row where event.is(== \"order\")\n  if event.look_back(2_days, stamp).ever(== \"view\")\n    << title, \"viewed first\"\n  end\nend",
    );
    assert_eq!(
        j,
        json!({"_": [{"g": "Dune", "c": [1], "_": [{"g": "viewed first", "c": [1]}]}]})
    );
    // modifiers in any order; next() excludes the cursor row and before
    assert_eq!(
        debug1("debug([genre.within(30_days, now).ever(contains \"scifi\"), event.ever(== \"view\").next(), title.ever(== \"Dune\").look_back(1_days, last_stamp)])"),
        json!([true, true, false])
    );
    // nil anchor => empty scope
    assert_eq!(debug1("a = nil\ndebug([event.ever(== \"view\").within(1_days, a), event.never(== \"view\").within(1_days, a)])"), json!([false, true]));
    let e = runtime_err("x = event.ever(== \"view\").range(\"yesterday\", now)", 0);
    assert_eq!(e.code, ErrorCode::DateParseError);
}

#[test]
fn inherited_window_in_each_row() {
    // inside each_row.range(...), .ever only sees rows of the window
    let src = "n = 0\neach_row.range('2024-03-04T00:00:00Z', '2024-03-10T00:00:00Z')\n if title.ever(== 'Dune')\n  n += 1\n end\nend\ndebug(n)";
    assert_eq!(debug1(src), json!(0));
    // its own .range replaces the inherited window
    let src = "n = 0\neach_row.range('2024-03-04T00:00:00Z', '2024-03-10T00:00:00Z')\n if title.ever(== 'Dune').range(0, now)\n  n += 1\n end\nend\ndebug(n)";
    assert_eq!(debug1(src), json!(2));
}

#[test]
fn inline_aggregations() {
    let src = "orders = count(order_no) where event.is(== \"order\")\ndistinct = dcount(order_no) where event.is(== \"order\")\navg_price = avg(price) where event.is(== \"order\")\nlast_view = row.reverse() where event.is(== \"view\")\nrecent_sf = test.look_back(30_days, now) where event.is(== \"order\") && genre.is(contains \"scifi\")\ntop_two = sum(price).limit(2) where price.is(!= nil)\ndebug([orders, distinct, avg_price, last_view, recent_sf, top_two])";
    assert_eq!(debug_of(src, 0), vec![json!([2, 2, 10.25, 2, true, 20.5])]);
    assert_eq!(
        debug_of(src, 1),
        vec![json!([2, 1, 16.25, null, true, 32.5])]
    );
    assert_eq!(
        debug1("debug([count(title) where false, sum(qty) where false, min(price), max(price), sum(qty), test where false, (count(title) where event == 'view') > 1])"),
        json!([0, null, 8.0, 12.5, 3, false, true])
    );
}

#[test]
fn customer_properties_read_and_write() {
    let mut p = bookstore();
    p.set_customer_prop(0, "tier", t("silver"));
    p.set_customer_prop(0, "spend_90d", Value::Float(3.5));
    let prog = compile_ok(
        "debug([tier, spend_90d, favourite_genres])\nspend_90d = sum(price).look_back(90_days, now) where event.is(== \"order\")\npicked = set()\neach_row where event.is(== \"order\")\n  picked = picked + genre\nend\nfavourite_genres = picked\ntier = tier",
    );
    let mut tree = prog.new_tree(1);
    let o = prog.run_once(&p.view(0), &ctx(), &mut tree);
    let o = o.unwrap_or_default();
    assert_eq!(o.debug[0].to_json(), json!(["silver", 3.5, null]));
    assert_eq!(
        o.writes,
        vec![
            CustomerWrite {
                prop: 17,
                values: vec![StoredValue::Num(205_000)]
            },
            CustomerWrite {
                prop: 18,
                values: vec![
                    StoredValue::Text("scifi".into()),
                    StoredValue::Text("classic".into()),
                    StoredValue::Text("romance".into())
                ]
            },
        ]
    );
    // removal and type errors
    let o = outcome("tier = nil\nspend_90d = \"12.345678\"", 0);
    assert_eq!(o.writes.len(), 1); // tier was already nil
    assert_eq!(o.writes[0].values, vec![StoredValue::Num(123_457)]);
    let e = runtime_err("tier = [1]", 0);
    assert_eq!(e.detail, "property 'tier' is not defined as a 'set' type.");
    let e = runtime_err("favourite_genres = \"x\"", 0);
    assert_eq!(
        e.detail,
        "property 'favourite_genres' is a set type. Values must be 'List' or 'Set'"
    );
}

#[test]
fn variables_reset_per_customer() {
    let p = bookstore();
    let prog = compile_ok("if seen == nil\n seen = 0\nend\nseen += 1\ndebug(seen)");
    let mut st = prog.new_state();
    let mut tree = prog.new_tree(1);
    let a = prog
        .run(&p.view(0), &ctx(), &mut st, &mut tree)
        .map(|o| o.debug[0].to_json())
        .ok();
    let b = prog
        .run(&p.view(1), &ctx(), &mut st, &mut tree)
        .map(|o| o.debug[0].to_json())
        .ok();
    assert_eq!((a, b), (Some(json!(1)), Some(json!(1))));
}

// ----- built-ins ----------------------------------------------------------------------

#[test]
fn builtin_variables_and_functions() {
    let src = "debug([now, now(), cursor, row_count, first_stamp, last_stamp, session_count, to_hours(last_stamp - first_stamp), get_day_of_week(get_row(1)[\"stamp\"])])";
    assert_eq!(
        debug_of(src, 0),
        vec![json!([
            ms("2024-03-10T00:00:00Z"),
            ms("2024-03-10T00:00:00Z"),
            0,
            4,
            ms("2024-03-01T10:00:00Z"),
            ms("2024-03-09T18:30:00Z"),
            3,
            200,
            6
        ])]
    );
    let row = debug1("debug(get_row(1))");
    assert_eq!(row["event"], "order");
    assert_eq!(row["price"], 12.5);
    assert_eq!(row["genre"], json!(["scifi", "classic"]));
    assert_eq!(row["id"], "ana");
    assert_eq!(
        debug1("debug([get_row(99), get_row(nil)])"),
        json!([null, null])
    );
    assert_eq!(
        debug1("debug([round(2.5), fix(1234.5678, 2), bucket(527, 25), int(\"12.9kg\"), float(\"2.5e1x\"), str(nil), str(2.5), len(\"héllo\"), keys({a: 1}), range(3), list(set(1)), iso8601_to_stamp(\"1970-01-01T00:00:01Z\"), start_of_day(90000000000)])"),
        json!([3, "1234.57", 525, 12, 25.0, "", "2.5", 5, ["a"], [0, 1, 2], [[1]], 1000, 89_942_400_000_i64])
    );
    assert_eq!(
        debug1("p = url_decode(\"https://shop.example/b?x=1\")\ndebug(p[\"params\"][\"x\"])"),
        json!("1")
    );
    let o = outcome("log(\"a\", 1, [\"b\"], nil)", 0);
    assert_eq!(o.log, vec!["a 1 [\"b\"] ".to_string()]);
    let e = runtime_err("x = keys(1)", 0);
    assert_eq!(e.detail, "keys can only be performed on dict types");
    let e = runtime_err("x = range(1, 5, 0)", 0);
    assert!(e.detail.contains("step"));
}

#[test]
fn segment_math_functions() {
    assert_eq!(
        debug_of(
            "debug([population(\"big_spenders\"), compliment(\"big_spenders\")])",
            1
        ),
        vec![json!([true, false])]
    );
    let e = runtime_err("x = population(\"nope\")", 0);
    assert_eq!(e.code, ErrorCode::SetMathParamInvalid);
}

#[test]
fn segment_and_histogram_scripts() {
    let seg = compile_kind(
        "if genre.ever(contains \"scifi\") && event.ever(== \"order\")\n  return(true)\nend",
        ScriptKind::Segment,
    );
    let prog = seg.ok();
    let p = bookstore();
    let members: Vec<bool> = (0..2)
        .map(|i| {
            let mut tree = prog
                .as_ref()
                .map_or(ResultTree::new(&[], 1), |p| p.new_tree(1));
            prog.as_ref()
                .and_then(|pr| pr.run_once(&p.view(i), &ctx(), &mut tree).ok())
                .is_some_and(|o| o.is_member())
        })
        .collect();
    assert_eq!(members, vec![true, true]);
    let e = compile_kind("<< title", ScriptKind::Segment).err();
    assert_eq!(
        e.map(|e| e.detail),
        Some("'<<' is not allowed in segment scripts".to_string())
    );
    let e = compile_kind("tally(title)", ScriptKind::Histogram).err();
    assert_eq!(
        e.map(|e| e.detail),
        Some(
            "histogram queries should not call 'tally'. They should 'return' the value to store."
                .to_string()
        )
    );
    let e = compile_kind("select\n count id\nend\nreturn(1)", ScriptKind::Histogram).err();
    assert!(e.is_some());
    // histogram with each_value
    let h = compile_kind(
        "total = sum(price) where event.is(== \"order\") && genre.is(contains each_value)\nreturn(total)",
        ScriptKind::Histogram,
    );
    let h = h.ok();
    assert_eq!(h.as_ref().map(Program::uses_each_value), Some(true));
    let mut c = ctx();
    c.each_value = t("scifi");
    let v = h.as_ref().and_then(|h| {
        let mut tree = h.new_tree(1);
        h.run_once(&p.view(1), &c, &mut tree).ok()
    });
    assert_eq!(v.map(|o| o.value.to_json()), Some(json!(32.5)));
}

// ----- parameters and templates ------------------------------------------------------

#[test]
fn url_parameters_preset_variables() {
    let params = Params::new()
        .with("pick", t("Dune"))
        .with("min_qty", Value::Int(1));
    let prog = compile(
        "each_row where title.is(== pick) && qty.is(>= {{min_qty}})\n  << title, channel\nend",
        &schema(),
        &params,
    );
    let prog = prog.ok();
    let p = bookstore();
    let mut tree = prog
        .as_ref()
        .map_or(ResultTree::new(&[], 1), |p| p.new_tree(1));
    for i in 0..2 {
        if let Some(pr) = &prog {
            pr.run_once(&p.view(i), &ctx(), &mut tree).ok();
        }
    }
    assert_eq!(
        tree.render(&RenderOptions::default()),
        json!({"_": [{"g": "Dune", "c": [2]}]})
    );
    let e = compile("x = {{missing}}", &schema(), &params).err();
    assert_eq!(
        e.as_ref().map(|e| e.code),
        Some(ErrorCode::TemplateMissingVar)
    );
    assert_eq!(
        e.map(|e| e.to_json()["error"]["message"].clone()),
        Some(json!("template_missing_var"))
    );
}

#[test]
fn template_substitution() {
    let params = Params::new()
        .with("name", t("it's"))
        .with("n", Value::Int(3))
        .with("f", Value::Float(2.0));
    let s = substitute_templates(
        "x = {{name}} # {{nope}}\ny = {{ n }} + {{f}}\nz = \"{{n}}\"",
        &params,
    );
    assert_eq!(
        s.ok().as_deref(),
        Some("x = \"it's\" # {{nope}}\ny = 3 + 2.0\nz = \"{{n}}\"")
    );
    let e = substitute_templates("a = 1\nb = {{zz}}", &params).err();
    assert_eq!(e.as_ref().map(|e| (e.line, e.column)), Some((2, 5)));
    assert_eq!(
        e.map(|e| e.detail),
        Some("missing template variable 'zz'".to_string())
    );
}

// ----- sections ------------------------------------------------------------------------

#[test]
fn sections_split_and_line_numbers() {
    let body = "# leading comment\n@segment scifi_readers refresh=10m on_insert # note\nif genre.ever(contains \"scifi\")\n  return(true)\nend\n\n@segment bad z_index=150\nx = y\n";
    let secs = parse_sections(body).unwrap_or_default();
    assert_eq!(secs.len(), 2);
    assert_eq!(secs[0].name, "scifi_readers");
    assert_eq!(
        secs[0].flags,
        vec![
            ("refresh".into(), "10m".into()),
            ("on_insert".into(), "true".into())
        ]
    );
    assert_eq!(secs[1].header_line, 7);
    let e = compile_with(
        &secs[1].body,
        &schema(),
        &Params::new(),
        &CompileOptions {
            kind: ScriptKind::Segment,
            line_offset: secs[1].header_line,
            section: Some(secs[1].name.clone()),
        },
    )
    .err();
    let e = e.map(|e| e.to_json());
    assert_eq!(
        e.as_ref().map(|e| e["error"]["line"].clone()),
        Some(json!(8))
    );
    assert_eq!(
        e.as_ref().map(|e| e["error"]["section"].clone()),
        Some(json!("bad"))
    );
    assert_eq!(
        parse_sections("x = 1\n@segment a\n")
            .err()
            .map(|e| e.detail),
        Some("code outside of a section".into())
    );
    assert!(parse_sections("@bogus a\n").is_err());
    assert_eq!(parse_duration("300"), Some(300_000));
    assert_eq!(parse_duration("5m"), Some(300_000));
    assert_eq!(parse_duration("5_minutes"), Some(300_000));
    assert_eq!(parse_duration("2d"), Some(172_800_000));
    assert_eq!(parse_duration("x"), None);
}

// ----- compile errors ----------------------------------------------------------------

#[test]
fn spec_error_example_position() {
    let e = compile_err("each_row.limit(2) where event.is(\"order\")\nend");
    assert_eq!(e.detail, ".is( <logic> ) requires a comparator");
    assert_eq!((e.line, e.column), (1, 31));
    assert_eq!(e.additional, "each_row.limit(2) where event.is(\"order\")");
    assert_eq!(e.to_json()["error"]["code"], 10000);
}

#[test]
fn compile_error_messages() {
    let cases: &[(&str, &str)] = &[
        ("x = y", "variable: 'y' is used but never assigned a value"),
        ("x += 1", "variable: 'x' is used but never assigned a value"),
        ("x = foo(1)", "item 'foo' is not a function"),
        ("x = round", "function call for 'round' requires parameters"),
        ("title = 1", "left side argument must be a user variable ('title' is a table property)"),
        ("now = 1", "left side argument is a reserved word ('now')"),
        ("x =", "expecting right side value after '='"),
        ("x = 1\nselect\ncount id\nend", "'select' must come before every other statement (only one 'select' block is allowed)"),
        ("sort\n x\nend", "'sort' blocks are not supported: use the 'sort=' and 'order=' URL parameters"),
        ("<<", "expecting at least one group after `<<`"),
        ("<< 1,2,3,4,5,6,7,8,9", "at most 8 groups may follow `<<`"),
        ("break", "'break' outside of a loop"),
        ("continue", "'continue' outside of a loop"),
        ("each_row\n break(2)\nend", "break 2 to deep for current nest level (1)"),
        ("return(1, 2)", "'return' takes at most one parameter"),
        ("for x y\nend", "for loop is malformed"),
        ("if x > 1\n", "expecting 'end' to close 'if'"),
        ("end", "unexpected 'end' (no open block to close)"),
        ("each_row.reverse().forward()\nend", "filter must be either '.forward' or '.reverse'"),
        ("each_row.look_ahead(1, 2).look_back(1, 2)\nend", "use '.within' instead of both '.look_ahead' and '.look_back'"),
        ("each_row.within(1, 2).look_back(1, 2)\nend", "'.within' cannot be combined with '.look_ahead' or '.look_back'"),
        ("each_row.continue().from(1)\nend", "'.continue' cannot be combined with '.from'"),
        ("each_row.within(3_days) where event == \"view\"\nend", "'.within' takes two parameters"),
        ("each_row.limit\nend", "filter 'limit' is missing brackets"),
        ("each_row.sideways()\nend", "invalid logical filter: 'sideways'"),
        ("each_row.limit(1).limit(2)\nend", "duplicate filter '.limit'"),
        ("x = 1\ny = x.is(== 1)", "filter applied to: 'x' (filter chain functions can only be used with properties)"),
        ("x = title.limit(1)", "invalid property filter: 'limit'"),
        ("x = title.is(== 1).ever(== 2)", "filter must be either '.is', '.ever' or '.never'"),
        ("x = title.within(1, 2)", "'title' has a time scope but no '.ever' or '.never' filter"),
        ("x = title.is(== 1).within(1, 2)", "'.is()' cannot be combined with date scopes. You may apply a scope to 'each_row' to constrain a row set."),
        ("x = sum where true", "aggregation 'sum' takes one parameter"),
        ("x = title[0]", "subscript is not possible on table properties"),
        ("x = 1 < 2 < 3", "comparison operators cannot be chained (use '&&')"),
        ("if.within(1, 2) true\nend", "'if' takes no modifiers"),
        ("x = __append(1)", "identifiers starting with '__' are reserved ('__append')"),
        ("x = {1: 2}", "dictionaries may not have numeric keys"),
        ("x = \"a\\q\"", "invalid character escape sequence"),
        ("x = 'abc", "unterminated string"),
        ("x = 3_fortnights", "invalid time shorthand"),
        ("x = dict(1)", "`dict` takes 0 parameters"),
        ("debug(1, 2)", "`debug` takes 1 parameters"),
        ("select\n sum title\nend", "aggregate 'sum' is not allowed on property 'title' (only 'count')"),
        ("select\n count tier\nend", "expecting a table property"),
        ("select\n count nope\nend", "property 'nope' not found in table"),
        ("select\n median price\nend", "expecting an aggregate in `select` statement"),
        ("select\n count id as title\nend", "`as` portion of `select` statement cannot be a table property"),
        ("select\n count id\n count id\nend", "`as` name in `select` already in use"),
        ("5 = x", "left side of an assignment must be a user variable"),
        ("if true\n x = 1\nelse\n x = 2\nelse\n x = 3\nend", "'else' must be the last branch of an 'if'"),
    ];
    for (src, want) in cases {
        let e = compile_err(src);
        assert_eq!(&e.detail, want, "for script {src:?}");
        assert!(e.line >= 1 && e.column >= 1, "position for {src:?}");
    }
    assert_eq!(
        compile_err("x = round(1, 2, 3)").code,
        ErrorCode::SdkParamCount
    );
    assert_eq!(
        compile_err("select\n count nope\nend").code,
        ErrorCode::PropertyNotFoundSchema
    );
}

#[test]
fn error_positions_point_at_tokens() {
    let e = compile_err("a = 1\n  b = zz + 1");
    assert_eq!((e.line, e.column), (2, 7));
    assert_eq!(e.additional, "b = zz + 1");
    let e = compile_err("each_row where x\n<< 1\nend");
    assert_eq!((e.line, e.column), (1, 16));
}

#[test]
fn nesting_limit() {
    let mut src = String::new();
    for _ in 0..65 {
        src.push_str("if true\n");
    }
    for _ in 0..65 {
        src.push_str("end\n");
    }
    assert_eq!(
        compile_err(&src).detail,
        "blocks are nested deeper than 64 levels"
    );
    let mut ok = String::new();
    for _ in 0..64 {
        ok.push_str("if true\n");
    }
    ok.push_str("debug(1)\n");
    for _ in 0..64 {
        ok.push_str("end\n");
    }
    assert_eq!(debug1(&ok), json!(1));
}

#[test]
fn continuation_and_where_forms() {
    let a = event_query("each_row where event.is(== \"order\") &&\n               price.is(> 10.0)\n  << title\nend");
    let b = event_query(
        "each_row where event.is(== \"order\")\n    && price.is(> 10.0)\n  << title\nend",
    );
    assert_eq!(a, b);
    assert_eq!(a["_"].as_array().map(Vec::len), Some(2));
    // empty where: every row matches
    let j = event_query("each_row where\n  << event\nend");
    assert_eq!(
        j,
        json!({"_": [{"g": "order", "c": [2]}, {"g": "view", "c": [1]}]})
    );
    assert_eq!(
        debug1("names = [\"Dune\",\n \"Emma\"]\na = 1; b = 2\ndebug([names, a + b])"),
        json!([["Dune", "Emma"], 3])
    );
    assert_eq!(debug1("x = 10\ny = x-1\ndebug(y)"), json!(9));
}

#[test]
fn tally_and_default_select() {
    let p = compile_ok("tally(title)");
    assert_eq!(p.columns().len(), 1);
    assert_eq!(p.columns()[0].alias, "id");
    assert!(!p.has_select());
    assert_eq!(event_query("tally(title, event)")["_"][0]["g"], "Dune");
}

#[test]
fn debug_listing_is_readable() {
    let p = compile_ok("select\n count id as readers\nend\nx = 1\neach_row.limit(2) where event.is(== \"order\")\n  << title, x + 1\nend");
    let l = p.debug_listing();
    assert!(
        l.contains("EACH_ROW.limit(2) WHERE @event.is(== \"order\") [dict id of \"order\"]"),
        "{l}"
    );
    assert!(l.contains("PUSH @title, (x#"), "{l}");
    assert!(l.contains("Count @id as readers"), "{l}");
}

#[test]
fn numeric_ids_and_int_keys() {
    let mut s = schema();
    s.numeric_ids = true;
    let mut p = TestPartition::new(s.clone());
    let c = p.add_numeric_customer(42);
    p.add_row(
        c,
        1000,
        "e",
        &[("qty", Value::Int(3)), ("gift", Value::Bool(true))],
    );
    let prog = compile("debug([id, gift, qty * 2])", &s, &Params::new()).ok();
    let d = prog.and_then(|pr| {
        let mut tree = pr.new_tree(1);
        pr.run_once(&p.view(c), &ctx(), &mut tree).ok()
    });
    assert_eq!(d.map(|o| o.debug[0].to_json()), Some(json!([42, true, 6])));
}

#[test]
fn hostile_scripts_fail_cleanly() {
    // very long operator chains and deep nesting are compile errors, not crashes
    let long = format!("x = 1{}", " + 1".repeat(5000));
    assert_eq!(
        compile_err(&long).detail,
        "expression is too long or nested too deeply"
    );
    let deep = format!("x = {}1{}", "(".repeat(5000), ")".repeat(5000));
    assert_eq!(
        compile_err(&deep).detail,
        "expression is too long or nested too deeply"
    );
    let neg = format!("x = {}1", "-".repeat(5000));
    assert_eq!(
        compile_err(&neg).detail,
        "expression is too long or nested too deeply"
    );
    // a 200-term sum is fine
    let ok = format!("x = 0{}\ndebug(x)", " + 1".repeat(200));
    assert_eq!(debug1(&ok), json!(200));
    // runaway container nesting is a runtime error
    let e = runtime_err("x = []\nfor i in range(1000)\n x = [x]\nend", 0);
    assert_eq!(e.detail, "containers are nested too deeply");
    let e = runtime_err("x = []\nfor i in range(1000)\n x = list(x)\nend", 0);
    assert_eq!(e.detail, "containers are nested too deeply");
    let e = runtime_err("x = []\nfor i in range(1000)\n x = [1] + [x]\nend", 0);
    assert_eq!(e.detail, "containers are nested too deeply");
    let e = runtime_err("x = {}\nfor i in range(1000)\n x = {a: x}\nend", 0);
    assert_eq!(e.detail, "containers are nested too deeply");
    let e = runtime_err(
        "x = {\"a\": 1}\nfor i in range(1000)\n y = {}\n y[\"a\"] = x\n x = y\nend",
        0,
    );
    assert_eq!(e.detail, "containers are nested too deeply");
    // huge ranges and absurd breaks are errors
    assert!(runtime_err("x = range(100000000000)", 0)
        .detail
        .contains("more than"));
}

#[test]
fn param_name_validation() {
    let s = schema();
    assert!(is_valid_param_name("pick", &s));
    assert!(is_valid_param_name("_x1", &s));
    assert!(!is_valid_param_name("title", &s));
    assert!(!is_valid_param_name("stamp", &s));
    assert!(!is_valid_param_name("now", &s));
    assert!(!is_valid_param_name("1abc", &s));
    assert!(!is_valid_param_name("a-b", &s));
    assert!(!is_valid_param_name("", &s));
}

#[test]
fn histogram_script_end_to_end() {
    let prog = compile_kind(
        "newest = row.reverse() where event.is(== \"order\")\nif newest == nil\n  exit\nend\nreturn(to_days(now - get_row(newest)[\"stamp\"]))",
        ScriptKind::Histogram,
    )
    .ok();
    let p = bookstore();
    let mut h = Histogram::new(
        HistogramOptions {
            name: "days".into(),
            ..HistogramOptions::default()
        },
        1,
    );
    for i in 0..2 {
        let mut tree = ResultTree::new(&[], 1);
        let v = prog
            .as_ref()
            .and_then(|pr| pr.run_once(&p.view(i), &ctx(), &mut tree).ok())
            .map(|o| o.value)
            .unwrap_or_default();
        let sample = histogram_sample(&v).ok().flatten();
        h.add_customer(0, &sample.map(|s| vec![(None, s)]).unwrap_or_default());
    }
    // ana's newest order 03-09 18:30 -> 0 days; ben's 03-02 12:00 -> 7 days
    assert_eq!(
        h.render(),
        json!({"_": [{"g": "days", "c": [2], "_": [{"g": 7, "c": [1]}, {"g": 0, "c": [1]}]}]})
    );
}

#[test]
fn more_filters_and_searches() {
    // not in / any on set properties; look_back .next() sees only earlier rows
    assert_eq!(
        debug1("debug([genre.is(not in [\"romance\"]), genre.is(any [\"x\", \"classic\"]), genre.is(contains [\"scifi\", \"classic\"]), genre.is(contains [\"scifi\", \"x\"]), genre.is(> \"r\")])"),
        json!([true, true, true, false, true])
    );
    let src = "r = []\neach_row\n r += [event.look_back(30_days, stamp).next().ever(== \"view\")]\nend\ndebug(r)";
    assert_eq!(debug1(src), json!([false, true, true, true]));
    assert_eq!(
        debug1("debug([dcount(title), dcount(genre), row.from(2) where event == \"order\", test.from(4), count(title).reverse().limit(3) where true])"),
        json!([2, 2, 3, false, 3])
    );
    // an unknown text never matches, known texts still do on the same state
    let p = bookstore();
    let prog = compile_ok("debug([event == \"nope\", event != \"nope\", event == \"view\"])");
    let mut st = prog.new_state();
    let mut tree = prog.new_tree(1);
    let a = prog
        .run(&p.view(0), &ctx(), &mut st, &mut tree)
        .map(|o| o.debug[0].to_json())
        .ok();
    let b = prog
        .run(&p.view(0), &ctx(), &mut st, &mut tree)
        .map(|o| o.debug[0].to_json())
        .ok();
    assert_eq!(a, Some(json!([false, true, true])));
    assert_eq!(a, b);
}

#[test]
fn iterator_only_and_filter_only_modifiers() {
    assert_eq!(
        compile_err("each_row.is(== 1)\nend").detail,
        "invalid logical filter: '.is' (property filters apply to properties, not to iterators)"
    );
    assert_eq!(compile_err("x = sum(qty).ever(== 1)").column, 14);
    assert_eq!(
        compile_err("x = title.reverse()").detail,
        "invalid property filter: 'reverse'"
    );
}

#[test]
fn runtime_error_lines_in_sections() {
    let body = "@segment a\nreturn(true)\n@segment b\nx = 1\ny = \"t\" * x\n";
    let secs = parse_sections(body).unwrap_or_default();
    let s = &secs[1];
    let prog = compile_with(
        &s.body,
        &schema(),
        &Params::new(),
        &CompileOptions {
            kind: ScriptKind::Segment,
            line_offset: s.header_line,
            section: Some(s.name.clone()),
        },
    )
    .ok();
    let p = bookstore();
    let e = prog.and_then(|pr| {
        let mut tree = pr.new_tree(1);
        pr.run_once(&p.view(0), &ctx(), &mut tree).err()
    });
    let j = e.map(|e| e.to_json());
    assert_eq!(
        j.as_ref().map(|j| j["error"]["line"].clone()),
        Some(json!(5))
    );
    assert_eq!(
        j.as_ref().map(|j| j["error"]["additional"].clone()),
        Some(json!("y = \"t\" * x"))
    );
    assert_eq!(
        j.as_ref().map(|j| j["error"]["section"].clone()),
        Some(json!("b"))
    );
    assert_eq!(
        j.map(|j| j["error"]["class"].clone()),
        Some(json!("run_time"))
    );
}

#[test]
fn extreme_numbers_do_not_overflow() {
    assert_eq!(parse_duration("5é"), None);
    assert_eq!(
        debug1("n = 0\neach_row.from(9223372036854775807).next()\n n += 1\nend\ndebug(n)"),
        json!(0)
    );
    assert_eq!(
        debug1(
            "n = 0\neach_row.reverse().from(-9223372036854775807).next()\n n += 1\nend\ndebug(n)"
        ),
        json!(0)
    );
    assert_eq!(
        debug1("debug([9223372036854775807 + 1 > 0, -9223372036854775807 - 10 < 0, get_year(-9223372036854775807) < 0, bucket(9223372036854775807, 1) > 0, to_days(-9223372036854775807) < 0])"),
        json!([true, true, true, true, true])
    );
    assert_eq!(
        debug1("debug(event.ever(== \"view\").within(9223372036854775807, now))"),
        json!(true)
    );
}

/// Compiles and runs many pseudo-random token soups: nothing may panic.
#[test]
fn random_scripts_never_panic() {
    const VOCAB: &[&str] = &[
        "x",
        "y",
        "=",
        "+=",
        "1",
        "-2",
        "2.5",
        "'a'",
        "\"b\"",
        "+",
        "-",
        "*",
        "/",
        "==",
        "!=",
        "<",
        ">=",
        "&&",
        "||",
        "not",
        "in",
        "contains",
        "any",
        "(",
        ")",
        "[",
        "]",
        "{",
        "}",
        ",",
        ":",
        ".",
        "\n",
        "\n",
        "\n",
        ";",
        "if",
        "elif",
        "else",
        "end",
        "for",
        "each_row",
        "where",
        "<<",
        "break",
        "continue",
        "exit",
        "return",
        "title",
        "genre",
        "price",
        "event",
        "stamp",
        "session",
        "id",
        "tier",
        "favourite_genres",
        "is",
        "ever",
        "never",
        "is_not",
        "next",
        "range",
        "within",
        "look_back",
        "limit",
        "from",
        "reverse",
        "continue",
        "sum",
        "count",
        "dcount",
        "min",
        "max",
        "avg",
        "test",
        "row",
        "now",
        "cursor",
        "round",
        "fix",
        "bucket",
        "len",
        "keys",
        "set",
        "list",
        "dict",
        "get_row",
        "url_decode",
        "str",
        "int",
        "debug",
        "log",
        "range",
        "nil",
        "true",
        "1_day",
        "{{p}}",
        "#",
        "select",
        "as",
        "with",
        "all",
        "population",
        "get_month",
        "iso8601_to_stamp",
    ];
    let p = bookstore();
    let params = Params::new().with("p", Value::Int(2));
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut compiled = 0;
    for _ in 0..4000 {
        let len = 1 + (next() % 30) as usize;
        let mut src = String::new();
        for _ in 0..len {
            src.push_str(VOCAB[(next() % VOCAB.len() as u64) as usize]);
            src.push(' ');
        }
        if let Ok(prog) = compile(&src, &schema(), &params) {
            compiled += 1;
            let _ = prog.debug_listing();
            let mut tree = prog.new_tree(2);
            for i in 0..2 {
                let _ = prog.run_once(&p.view(i), &ctx(), &mut tree);
            }
            let _ = tree.render(&RenderOptions::default());
        }
    }
    // the generator must exercise the runtime, not only the parser
    assert!(compiled > 50, "only {compiled} scripts compiled");
}

/// Structured random programs over a grammar subset: they always compile and must not panic.
#[test]
fn random_valid_programs_run() {
    let exprs = [
        "x",
        "y",
        "1",
        "2.5",
        "'a'",
        "nil",
        "[1, 'a']",
        "{k: 1}",
        "title",
        "genre",
        "price",
        "qty",
        "stamp",
        "set(1, 2)",
        "now",
        "cursor",
        "len(x)",
        "str(y)",
        "x + y",
        "x - y",
        "x * 2",
        "x / y",
        "-x",
        "!y",
        "x == y",
        "x < y",
        "x in y",
        "y contains x",
        "x any y",
        "genre.ever(contains 'scifi')",
        "title.is(== 'Dune')",
        "(count(qty) where x)",
        "(sum(price).limit(2) where true)",
        "x[0]",
        "y['k']",
        "get_row(cursor)",
        "round(x)",
        "bucket(x, 5)",
        "fix(x, 2)",
        "keys({})",
        "int(x)",
        "float(y)",
    ];
    let stmts = [
        "x = E",
        "y = E",
        "x += E",
        "y = [E, E]",
        "debug(E)",
        "<< E",
        "<< E, E",
        "if E\n x = E\nelse\n y = E\nend",
        "each_row where E\n << E\nend",
        "for i in [E, E]\n x = i\nend",
        "each_row.limit(2)\n if E\n break\n end\nend",
    ];
    let p = bookstore();
    let mut seed: u64 = 42;
    let mut next = |m: usize| {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((seed >> 33) as usize) % m
    };
    let mut ran = 0;
    for _ in 0..1500 {
        let mut src = String::from("x = 1\ny = 2\n");
        for _ in 0..(1 + next(6)) {
            let mut s = stmts[next(stmts.len())].to_string();
            while let Some(i) = s.find('E') {
                s.replace_range(i..i + 1, exprs[next(exprs.len())]);
            }
            src.push_str(&s);
            src.push('\n');
        }
        let prog = match compile(&src, &schema(), &Params::new()) {
            Ok(p) => p,
            Err(e) => panic!("generated program failed to compile: {e}\n{src}"),
        };
        let mut tree = prog.new_tree(1);
        for i in 0..2 {
            if prog.run_once(&p.view(i), &ctx(), &mut tree).is_ok() {
                ran += 1;
            }
        }
        let _ = tree.render(&RenderOptions::default());
    }
    assert!(ran > 500, "only {ran} runs succeeded");
}

#[test]
fn empty_sums_render_as_integer_zero() {
    let p = bookstore();
    let prog = compile_ok("select\n count id as readers\n sum price as revenue\nend\neach_row where event.is(== \"order\")\n  first_title = title\n  first_order = order_no\n  each_row.continue().next().limit(1) where event.is(== \"order\") && order_no.is(!= first_order)\n    << first_title, title\n  end\nend");
    let mut tree = prog.new_tree(2);
    let mut st = prog.new_state();
    for i in 0..2 {
        let mut c = ctx();
        prog.run(&p.view(i), &c, &mut st, &mut tree).ok();
        if i == 1 {
            c.segment = 1;
            prog.run(&p.view(i), &c, &mut st, &mut tree).ok();
        }
    }
    assert_eq!(
        tree.render(&RenderOptions::default()),
        json!({"_": [{"g": "Dune", "c": [1, 8.0], "c2": [0, 0], "_": [{"g": "Emma", "c": [1, 8.0], "c2": [0, 0]}]}]})
    );
}

#[test]
fn set_property_compared_with_nil() {
    assert_eq!(
        debug1("r = []\neach_row\n r += [genre == nil, price == nil, genre != nil]\nend\ndebug(r)"),
        json!([false, true, true, false, false, true, false, true, true, false, false, true])
    );
}

#[test]
fn state_reused_across_dictionaries_stays_correct() {
    // two partitions whose dictionaries assign different ids
    let mut a = TestPartition::new(schema());
    let ca = a.add_customer("a");
    a.add_row(ca, 1000, "view", &[]);
    a.add_row(ca, 2000, "order", &[]);
    let mut b = TestPartition::new(schema());
    let cb = b.add_customer("b");
    b.add_row(cb, 1000, "order", &[]);
    let prog = compile_ok("debug(count(stamp) where event == \"order\")");
    let mut st = prog.new_state();
    let mut tree = prog.new_tree(1);
    let x = prog
        .run(&a.view(ca), &ctx(), &mut st, &mut tree)
        .map(|o| o.debug[0].to_json())
        .ok();
    let y = prog
        .run(&b.view(cb), &ctx(), &mut st, &mut tree)
        .map(|o| o.debug[0].to_json())
        .ok();
    assert_eq!((x, y), (Some(json!(1)), Some(json!(1))));
}

#[test]
fn segment_header_flags() {
    let secs = parse_sections(
        "@segment s refresh=10m on_insert use_cached=False z_index=150 ttl=1_day\nreturn(true)\n",
    )
    .unwrap_or_default();
    let f = SegmentFlags::parse(&secs[0].flags);
    assert_eq!(
        f,
        Ok(SegmentFlags {
            refresh: Some(600_000),
            ttl: Some(86_400_000),
            use_cached: false,
            on_insert: true,
            z_index: 150
        })
    );
    let bad = |h: &str| SegmentFlags::parse(&parse_sections(h).unwrap_or_default()[0].flags).err();
    assert_eq!(
        bad("@segment s colour=red\n"),
        Some("unknown segment flag 'colour'".into())
    );
    assert_eq!(
        bad("@segment s z_index=1 z_index=2\n"),
        Some("flag 'z_index' given more than once".into())
    );
    assert_eq!(
        bad("@segment s refresh=soon\n"),
        Some("invalid duration 'soon' for 'refresh'".into())
    );
    assert_eq!(
        bad("@segment s on_insert=maybe\n"),
        Some("flag 'on_insert' expects true or false, got 'maybe'".into())
    );
    assert_eq!(SegmentFlags::parse(&[]), Ok(SegmentFlags::default()));
}

/// Does customer `i` have `atom` anywhere (rows or customer properties)?
fn has_atom(p: &TestPartition, i: usize, a: &IndexAtom) -> bool {
    let v = p.view(i);
    let Some(enc) = a.encode(|t| v.text_id(t)) else {
        return false;
    };
    match a.prop {
        IndexProp::Event => (0..v.row_count()).any(|r| u64::from(v.event(r)) == enc),
        IndexProp::Prop(idx) => {
            v.customer_values(idx).any(|c| c == enc)
                || (0..v.row_count()).any(|r| v.values(r, idx).any(|c| c == enc))
        }
    }
}

/// Skipping customers by the prefilter never loses an effect.
#[test]
fn prefilter_is_sound_on_random_conditions() {
    let atoms = [
        "event == \"order\"",
        "event.is(== \"view\")",
        "event.ever(== \"refund\")",
        "title.ever(== \"Dune\")",
        "title == \"Emma\"",
        "genre.ever(contains \"romance\")",
        "genre any [\"scifi\", \"x\"]",
        "qty.ever(== 2)",
        "qty == 1",
        "price.ever(== 20.0)",
        "tier == \"gold\"",
        "qty.ever(in [2, 3])",
        "order_no > 600",
        "event.never(== \"view\")",
        "!(title == \"Dune\")",
        "qty.ever(== \"2\")",
        "gift.ever(== true)",
    ];
    let mut p = bookstore();
    p.set_customer_prop(1, "tier", t("gold"));
    let mut seed: u64 = 7;
    let mut next = |m: usize| {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((seed >> 33) as usize) % m
    };
    let mut filtered = 0;
    let mut skipped = 0;
    for _ in 0..600 {
        let mut cond = atoms[next(atoms.len())].to_string();
        for _ in 0..next(3) {
            let op = if next(2) == 0 { " && " } else { " || " };
            cond = format!("({cond}){op}{}", atoms[next(atoms.len())]);
        }
        let src = if next(2) == 0 {
            format!("if {cond}\n << \"hit\"\n tier = \"x\"\nend")
        } else {
            format!("each_row where {cond}\n << event\nend")
        };
        let prog = compile_ok(&src);
        let Some(pf) = prog.prefilter() else { continue };
        filtered += 1;
        for i in 0..2 {
            let keep = pf
                .clauses
                .iter()
                .all(|cl| cl.iter().any(|a| has_atom(&p, i, a)));
            if keep {
                continue;
            }
            skipped += 1;
            let mut tree = prog.new_tree(1);
            let o = prog
                .run_once(&p.view(i), &ctx(), &mut tree)
                .unwrap_or_default();
            assert!(
                tree.is_empty() && o.writes.is_empty() && o.value.is_nil(),
                "unsound skip for {src}"
            );
        }
    }
    assert!(
        filtered > 100 && skipped > 50,
        "filtered {filtered}, skipped {skipped}"
    );
}

/// The `event.is(== ...)` row guard of `each_row` changes no answer: the
/// same condition with the guard hidden behind `true &&` (so every row is
/// evaluated in full) gives the same tree.
#[test]
fn each_row_event_guard_changes_nothing() {
    let mut p = TestPartition::new(schema());
    let events = ["order", "view", "cart", "view", "order", "refund"];
    for c in 0..40u32 {
        let i = p.add_customer(&format!("c{c}"));
        for r in 0..(c % 13) {
            let ev = events[((c * 7 + r * 3) % 6) as usize];
            let title = if (c + r) % 3 == 0 { "Dune" } else { "Emma" };
            p.add_row(
                i,
                1_700_000_000_000 + i64::from(r) * 3_600_000,
                ev,
                &[("title", t(title)), ("qty", Value::Int(i64::from(r)))],
            );
        }
    }
    let scripts = [
        "each_row where {C}\n  << title\nend",
        "each_row where {C} && qty > 2\n  x = title\n  each_row.continue().next().limit(1) where {C}\n    << x, title\n  end\nend",
        "each_row.reverse().limit(2) where {C}\n  << qty\nend",
    ];
    for cond in [
        "event.is(== \"order\")",
        "event.is(== \"view\")",
        "event.is(== \"missing\")",
    ] {
        for s in scripts {
            let guarded = compile_ok(&s.replace("{C}", cond));
            let plain = compile_ok(&s.replace("{C}", &format!("true && {cond}")));
            let run = |prog: &Program| {
                let mut tree = prog.new_tree(1);
                let mut st = prog.new_state();
                for i in 0..p.customers.len() {
                    prog.run(&p.view(i), &ctx(), &mut st, &mut tree).ok();
                }
                tree.render(&RenderOptions::default())
            };
            assert_eq!(run(&guarded), run(&plain), "{cond}: {s}");
        }
    }
}

/// `session_count` counted directly equals the last row's `session` number.
#[test]
fn session_count_matches_last_session_number() {
    let mut p = TestPartition::new(schema());
    for c in 0..30u32 {
        let i = p.add_customer(&format!("c{c}"));
        let mut stamp = 1_700_000_000_000i64;
        for r in 0..(c % 11) {
            // Gaps from 1 minute to 2 hours: some above the 30-minute session time.
            stamp += 60_000 * i64::from(1 + (c * 13 + r * 29) % 120);
            p.add_row(i, stamp, "view", &[]);
        }
    }
    let direct = compile_ok("return(session_count)");
    let numbered =
        compile_ok("each_row.reverse().limit(1) where true\n  return(session)\nend\nreturn(0)");
    let mut sessions_seen = 0;
    for i in 0..p.customers.len() {
        let mut tree = direct.new_tree(1);
        let a = direct
            .run_once(&p.view(i), &ctx(), &mut tree)
            .map(|o| o.value)
            .ok();
        let b = numbered
            .run_once(&p.view(i), &ctx(), &mut tree)
            .map(|o| o.value)
            .ok();
        assert_eq!(a, b, "customer {i}");
        if let Some(Value::Int(n)) = a {
            sessions_seen = sessions_seen.max(n);
        }
    }
    assert!(
        sessions_seen > 2,
        "the data must have several sessions per customer"
    );
}

#[test]
fn memoized_pushes_match_their_unmemoized_twins() {
    // Each script pushes constant groups; its twin pushes the same groups
    // through a variable, which the compiler never memoizes. Trees must be
    // identical, for per-customer counts (memoized, run stops early) and for
    // columns that count every push (not memoized).
    let scripts = [
        "each_row where event.is(== \"view\")\n  << \"a\"\n  each_row.continue().next() where event.is(== \"buy\")\n    << \"b\"\n  end\nend\n",
        "select\n  count id as people\n  sum price as spent\nend\neach_row where price > 0\n  << \"priced\", \"x\"\nend\n",
        "select\n  count id as people\n  count title as rows all\nend\neach_row\n  << \"any\"\nend\n",
        "each_row\n  << \"first\"\nend\neach_row where title.is(== \"Dune\")\n  << \"dune\"\nend\n",
    ];
    for src in scripts {
        let twin = src
            .replace("<< \"a\"", "g = \"a\"\n  << g")
            .replace("<< \"b\"", "g = \"b\"\n    << g")
            .replace("<< \"priced\", \"x\"", "g = \"priced\"\n  << g, \"x\"")
            .replace("<< \"any\"", "g = \"any\"\n  << g")
            .replace("<< \"first\"", "g = \"first\"\n  << g")
            .replace("<< \"dune\"", "g = \"dune\"\n  << g");
        assert_ne!(src, twin);
        assert_eq!(event_query(src), event_query(&twin), "script:\n{src}");
    }
    // A per-customer count with a constant group stops the run after the
    // push, but never when the script writes a customer property.
    let p = compile_ok("<< \"x\"\ntier = \"gold\"\n");
    assert!(!p.stop_when_saturated);
    let p = compile_ok("each_row\n  << \"x\"\nend\n");
    assert!(p.stop_when_saturated);
    assert_eq!(p.memo_sites, 1);
}

#[test]
fn jump_tables_match_plain_scans_on_long_customers() {
    // Long customers make nested forward searches build jump tables; the
    // twin scripts start their conditions with `true &&`, so they never use
    // the event guard (nor its tables). Trees must be identical.
    let mut p = TestPartition::new(schema());
    let names = ["view", "cart", "buy", "other"];
    let mut seed: u64 = 7;
    for c in 0..6 {
        let ci = p.add_customer(&format!("c{c}"));
        let mut stamp = ms("2024-01-01T00:00:00Z");
        for _ in 0..(200 + c * 150) {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let r = (seed >> 33) as usize;
            stamp += ((r % 7) as i64) * 60_000 * if r.is_multiple_of(11) { 300 } else { 1 };
            let name = names[r % if c == 5 { 3 } else { 4 }];
            p.add_row(ci, stamp, name, &[("qty", Value::Int((r % 5) as i64))]);
        }
    }
    let scripts = [
        "select\n  count id as people\n  count event as rows all\nend\neach_row where event.is(== \"view\")\n  t0 = stamp\n  << \"view\"\n  each_row.continue().next().look_ahead(1_days, t0).limit(1) where event.is(== \"cart\")\n    << \"cart\"\n    each_row.continue().next().look_ahead(1_days, t0) where event.is(== \"buy\") && qty > 1\n      << \"buy\"\n    end\n  end\nend\n",
        "select\n  count id as people\n  count event as rows all\nend\neach_row where event.is(== \"buy\")\n  each_row.continue().next().limit(2) where event.is(== \"buy\")\n    << \"next\", qty\n  end\n  each_row.continue().reverse().limit(3) where event.is(== \"view\")\n    << \"before\", qty\n  end\nend\n",
        "each_row where event.is(== \"view\")\n  each_row.continue().next() where event.is(== \"missing\")\n    << \"never\"\n  end\n  << \"seen\"\nend\n",
    ];
    assert_guard_free_twins_agree(&p, &scripts);
}

#[test]
fn pushes_a_customer_cannot_reach_are_settled_without_changing_answers() {
    // Customers with every subset of the funnel's events. A push inside a
    // scan over an event the customer never had counts as fired at the
    // start of its run; the twins (`true && ...` hides the guard) run
    // everything. Trees must be identical.
    let mut p = TestPartition::new(schema());
    let names = ["view", "cart", "buy"];
    for mask in 0..8usize {
        for copy in 0..2 {
            let ci = p.add_customer(&format!("c{mask}_{copy}"));
            let mut stamp = ms("2024-01-01T00:00:00Z");
            for round in 0..3 {
                for (bit, name) in names.iter().enumerate() {
                    if mask & (1 << bit) != 0 {
                        stamp += 3_600_000 * (1 + copy + round);
                        p.add_row(ci, stamp, name, &[("qty", Value::Int(round))]);
                    }
                }
                stamp += 3_600_000;
                p.add_row(ci, stamp, "other", &[]);
            }
        }
    }
    let funnel = "each_row where event.is(== \"view\")\n  t0 = stamp\n  << \"1_view\"\n  each_row.continue().next().look_ahead(7_days, t0).limit(1) where event.is(== \"cart\")\n    << \"2_cart\"\n    each_row.continue().next().look_ahead(7_days, t0).limit(1) where event.is(== \"buy\")\n      << \"3_buy\"\n    end\n  end\nend\n";
    let scripts = [
        funnel,
        // A guard naming an event no customer has, and pushes outside scans.
        "<< \"all\"\neach_row where event.is(== \"missing\")\n  << \"never\"\nend\neach_row where event.is(== \"buy\") && qty > 0\n  << \"buy_qty\"\nend\n",
        // Guards under `if`, and a push after the scans.
        "if row_count > 6\n  each_row where event.is(== \"cart\")\n    << \"long_cart\"\n  end\nend\neach_row where event.is(== \"view\")\n  << \"view\"\nend\n<< \"end\"\n",
    ];
    for src in scripts {
        assert!(compile_ok(src).stop_when_saturated, "script:\n{src}");
    }
    assert_guard_free_twins_agree(&p, &scripts);
    // Each funnel step needs the events of the scans around it.
    let prog = compile_ok(funnel);
    assert_eq!(prog.memo_events.len(), 3);
    assert_eq!(prog.memo_requires, vec![0b001, 0b011, 0b111]);
    let twin = compile_ok(&funnel.replace("where event.is(", "where true && event.is("));
    assert!(twin.memo_requires.is_empty());
}

#[test]
fn row_access_names_what_a_run_reads() {
    let access = |src: &str| compile_ok(src).row_access();
    assert!(access("return(row_count)").is_none());
    let tier = access("if tier == \"gold\"\n  << \"gold\"\nend\n");
    assert!(tier.customer_props && !tier.rows && !tier.last_stamp);
    let a = access("return(trunc((1735689600000 - last_stamp) / 604800000))");
    assert!(a.last_stamp && !a.rows && !a.first_stamp && !a.stamps);
    assert!(access("return(first_stamp)").first_stamp);
    assert!(access("return(session_count)").stamps);
    assert!(access("each_row where event.is(== \"view\")\n  << title\nend\n").rows);
    assert!(access("return(title.ever(== \"Dune\"))").rows);
    assert!(access("<< title").rows, "a group read at the cursor row");
    let select = "select\n  sum qty as q\nend\n<< \"all\"\n";
    assert!(access(select).rows, "a column read at the cursor row");
    assert!(access("x = sum(qty)\nreturn(x)").rows);
    let id = access("return(id)");
    assert!(id.id && !id.rows);
    // Event properties (cells) apart from stamps and names.
    let names_only = access("each_row where event.is(== \"view\")\n  t = stamp\n  << \"v\"\nend\n");
    assert!(names_only.rows && !names_only.cells);
    assert!(access("<< title").cells);
    assert!(access(select).cells, "a column over an event property");
    assert!(access("return(title.ever(== \"Dune\"))").cells);
    assert!(access("x = sum(qty)\nreturn(x)").cells);
    assert!(!access("return(session_count)").cells);
    // Time scopes read the stamps of the rows they pass.
    assert!(!names_only.scoped);
    assert!(access("each_row.look_ahead(2_days, first_stamp)\n  << \"x\"\nend\n").scoped);
    assert!(access("return(title.within(1_days, last_stamp).ever(== \"Dune\"))").scoped);
}

#[test]
fn pushed_chains_group_as_their_values() {
    // `<< a + b ...` builds text keys in place: the same tree as pushing
    // the chain's value from a variable, for text, numbers, nil and
    // missing properties alike.
    let chains = [
        "title + \" > \" + title",
        "title + \" / \" + qty",
        "\"t:\" + title + t0",
        "event + \"-\" + nothing",
        "qty + 1 + 2",
        "qty + \"x\"",
        // A variable's text as the first part, read in place.
        "t0 + \"|\" + title",
    ];
    for chain in chains {
        let direct = format!(
            "select\n  count id as people\n  count qty as rows all\nend\nnothing = nil\neach_row\n  t0 = \"@\"\n  << {chain}\nend\n"
        );
        let via_var = format!(
            "select\n  count id as people\n  count qty as rows all\nend\nnothing = nil\neach_row\n  t0 = \"@\"\n  k = {chain}\n  << k\nend\n"
        );
        let (a, b) = (event_query(&direct), event_query(&via_var));
        assert_eq!(a, b, "{chain}");
        assert!(!a["_"].as_array().is_none_or(Vec::is_empty), "{chain}: {a}");
    }
}

#[test]
fn plus_chains_give_the_pairwise_result() {
    use crate::value::{arith, ArithOp};
    let add = |a: &Value, b: &Value| arith(ArithOp::Add, a, b).expect("add");
    let cases: Vec<(&str, Vec<Value>)> = vec![
        (
            "\"a\" + 1 + 2.5 + \"b\"",
            vec![t("a"), Value::Int(1), Value::Float(2.5), t("b")],
        ),
        ("1 + 2 + \"x\"", vec![Value::Int(1), Value::Int(2), t("x")]),
        (
            "\"x\" + nil + [1]",
            vec![t("x"), Value::Nil, Value::list(vec![Value::Int(1)])],
        ),
        (
            "1.5 + 2 + 3",
            vec![Value::Float(1.5), Value::Int(2), Value::Int(3)],
        ),
        (
            "title + \" > \" + title",
            vec![t("Dune"), t(" > "), t("Dune")],
        ),
    ];
    for (expr, parts) in cases {
        let mut want = parts[0].clone();
        for p in &parts[1..] {
            want = add(&want, p);
        }
        let got = debug1(&format!(
            "each_row where event.is(== \"view\")\n  debug({expr})\n  break\nend\n"
        ));
        assert_eq!(got, want.to_json(), "{expr}");
    }
    // A fault inside a chain is the pairwise fault, at the chain's line.
    let dict = Value::Dict(std::sync::Arc::new(crate::value::DictMap::new()));
    let list = Value::list(vec![Value::Int(1)]);
    let pairwise = arith(ArithOp::Add, &add(&dict, &dict), &list);
    assert!(
        pairwise.is_err(),
        "the case must fault pairwise: {pairwise:?}"
    );
    let e = runtime_err("x = 1\nx = {} + {} + [1]\n", 0);
    assert_eq!(
        (e.code, e.line),
        (ErrorCode::RunTimeExceptionTriggered, 2),
        "{e}"
    );
}

#[test]
fn customer_counts_hold_across_run_states_sharing_a_tree() {
    // Query drivers use one state per partition and one tree per worker:
    // every state's runs must count as different customers.
    let p = bookstore();
    let prog = compile_ok("<< \"everyone\"\n");
    let mut tree = prog.new_tree(1);
    for i in 0..p.customers.len() {
        let mut fresh = prog.new_state();
        if let Err(e) = prog.run(&p.view(i), &ctx(), &mut fresh, &mut tree) {
            panic!("runtime error: {e}");
        }
    }
    let out = tree.render(&RenderOptions::default());
    assert_eq!(out["_"][0]["c"][0], json!(p.customers.len()), "{out}");
}

#[test]
fn register_arithmetic_matches_the_value_path() {
    let exprs = [
        "7 / 2",
        "7.0 / 2",
        "7 / 2.0",
        "-7 / 2",
        "9223372036854775807 + 1",
        "-9223372036854775807 - 10",
        "9223372036854775807 * 3",
        "5 / 0",
        "5.5 / 0",
        "5 / 0.0",
        "trunc(7.9)",
        "trunc(-7.9)",
        "trunc(7)",
        "trunc(x / 0.0)",
        "trunc(9223372036854775807 * 4.5)",
        "trunc((1735689600000 - last_stamp) / 604800000)",
        "last_stamp - first_stamp + row_count * 2",
        "session_count",
        "session_count * 2 + now",
        "row_count",
        "(now - stamp) / 3600000",
        "x * 2 + y",
        "x + s",
        "s + x + 1",
        "trunc(s)",
        "x + nil",
        "1 + true",
    ];
    let run = |expr: &str, fast: bool| {
        crate::interp::FAST_NUMBERS.with(|f| f.set(fast));
        let src = format!(
            "x = 21\ny = 0.5\ns = \"12\"\neach_row where event.is(== \"view\")\n  debug({expr})\n  break\nend\n"
        );
        let out = debug1(&src);
        crate::interp::FAST_NUMBERS.with(|f| f.set(true));
        out
    };
    for expr in exprs {
        let (fast, slow) = (run(expr, true), run(expr, false));
        assert_eq!(fast, slow, "{expr}");
        assert_ne!(fast, json!("<no debug output>"), "{expr}");
    }
}

#[test]
fn a_state_reused_with_another_program_reads_that_programs_literals() {
    let p = bookstore();
    let mut state = compile_ok("debug(\"first\")\n").new_state();
    for text in ["alpha", "beta", "gamma", "delta"] {
        // Each program is dropped before the next is compiled, so its
        // literal's address may be handed out again.
        let prog = compile_ok(&format!("debug(\"{text}\")\n<< \"{text}\"\n"));
        let mut tree = prog.new_tree(1);
        let out = match prog.run(&p.view(0), &ctx(), &mut state, &mut tree) {
            Ok(o) => o,
            Err(e) => panic!("runtime error: {e}"),
        };
        assert_eq!(out.debug, vec![t(text)]);
        // The memoized push's path is this program's.
        let r = tree.render(&RenderOptions::default());
        assert_eq!(r["_"][0]["g"], json!(text), "{r}");
    }
}

#[test]
fn quick_numbers_equal_full_runs() {
    // `return(<number expression>)` scripts evaluated without a run must
    // return what a run returns; scripts of other shapes, or expressions
    // without a plain number, are left to the run.
    let p = bookstore();
    let quick = [
        "return(trunc((1735689600000 - last_stamp) / 604800000))",
        "return(session_count)",
        "return(row_count * 2 - 1)",
        "return(last_stamp - first_stamp)",
        "return(now - last_stamp)",
        "return(trunc(row_count / 3.0))",
        // Division by zero gives what the run's arithmetic gives.
        "return(1 / 0)",
        "return(row_count / 0.0)",
    ];
    let left_to_the_run = [
        "return(spend_90d)",
        "return(spend_90d + 1)",
        "return(\"x\" + row_count)",
        "x = row_count\nreturn(x)",
        "return(row_count)\n<< \"never\"",
    ];
    for (src, expect_quick) in quick
        .iter()
        .map(|s| (*s, true))
        .chain(left_to_the_run.iter().map(|s| (*s, false)))
    {
        let prog = compile_ok(src);
        let mut st = prog.new_state();
        let mut tree = prog.new_tree(1);
        for i in 0..p.customers.len() {
            // A run first, so the state holds another run's variables.
            let full = match prog.run(&p.view(i), &ctx(), &mut st, &mut tree) {
                Ok(o) => Some(o.value),
                Err(_) => None,
            };
            let q = prog.quick_number(&p.view(i), &ctx(), &mut st, &mut tree);
            assert_eq!(q.is_some(), expect_quick, "{src}");
            if let Some(q) = q {
                assert_eq!(
                    Some(format!("{q:?}")),
                    full.map(|v| format!("{v:?}")),
                    "{src}"
                );
            }
        }
    }
}

/// Purchases with titles (no spaces), one without a title, and two
/// customers' worth of repeats, for the interned-key tests.
fn purchases(titles: &[&[Option<&str>]]) -> TestPartition {
    let mut p = TestPartition::new(schema());
    for (ci, rows) in titles.iter().enumerate() {
        let c = p.add_customer(&format!("c{ci}"));
        for (ri, title) in rows.iter().enumerate() {
            let stamp = ms("2024-03-01T10:00:00Z") + 60_000 * ri as i64;
            let channel = if ri % 2 == 0 { "web" } else { "app" };
            let mut props = vec![
                ("qty", Value::Int(ri as i64 + 1)),
                ("channel", Value::text(channel)),
            ];
            if let Some(t) = title {
                props.push(("title", Value::text(t)));
            }
            p.add_row(
                c,
                stamp,
                if ri % 3 == 2 { "view" } else { "purchase" },
                &props,
            );
        }
    }
    p
}

/// Runs `src` over `p` into a tree with a key space (as the query layer
/// does) and into a plain one. `None` for the first when the program has
/// no key template or the space failed (the query layer then runs again).
fn interned_and_plain(
    p: &TestPartition,
    src: &str,
    opts: &RenderOptions,
) -> (Option<serde_json::Value>, serde_json::Value) {
    let prog = compile_ok(src);
    let run = |tree: &mut ResultTree| {
        let mut st = prog.new_state();
        for i in 0..p.customers.len() {
            if let Err(e) = prog.run(&p.view(i), &ctx(), &mut st, tree) {
                panic!("runtime error: {e}\n{src}");
            }
        }
    };
    let interned = prog.new_key_space().and_then(|space| {
        let mut tree = prog.new_tree(1).with_key_space(space.clone());
        run(&mut tree);
        (!space.failed()).then(|| tree.render(opts))
    });
    let mut plain = prog.new_tree(1);
    run(&mut plain);
    (interned, plain.render(opts))
}

#[test]
fn interned_chain_pushes_render_as_their_texts() {
    let data = purchases(&[
        &[
            Some("dune"),
            Some("emma"),
            Some("dune"),
            Some("emma"),
            Some("ulysses"),
        ],
        &[Some("emma"), None, Some("dune"), Some("dune"), Some("emma")],
        &[None, Some("dune"), Some("x"), Some("dune")],
        &[Some("dune")],
    ]);
    let pairs = |push: &str, before: &str| {
        format!(
            "select\n  count id as customers\n  count title as pairs all\n  sum qty as q\nend\n\
             each_row where event.is(== \"purchase\")\n  {before}\n  \
             each_row.continue().next().limit(1) where event.is(== \"purchase\")\n    \
             << {push}\n  end\nend\n"
        )
    };
    // (script, id-only variables expected)
    let scripts: Vec<(String, usize)> = vec![
        (pairs("p + \" > \" + title", "p = title"), 1),
        // The variable is read elsewhere too: its text is kept.
        (
            pairs(
                "p + \" > \" + title",
                "p = title\n  if p == \"x\"\n    exit\n  end",
            ),
            0,
        ),
        // A computed text: numbered by its text.
        (pairs("p + \" > \" + title", "p = \"#\" + title"), 0),
        // Two variables, a leading and a trailing literal.
        (
            pairs("\"[\" + p + \"|\" + q + \"]\"", "p = title\n  q = title"),
            2,
        ),
        // One varying part; a number appended as its text.
        (pairs("\"t:\" + title", "x = 1"), 0),
        (pairs("title + \"/\" + n", "n = qty"), 0),
    ];
    let by_group = RenderOptions {
        sort: SortBy::Group,
        descending: false,
        trim: None,
    };
    let trimmed = RenderOptions {
        trim: Some(2),
        ..RenderOptions::default()
    };
    for (src, id_only) in &scripts {
        let prog = compile_ok(src);
        assert!(prog.key_chain.is_some(), "no key template:\n{src}");
        assert_eq!(
            prog.id_only_vars.len(),
            *id_only,
            "id-only variables:\n{src}"
        );
        for opts in [&RenderOptions::default(), &by_group, &trimmed] {
            let (interned, plain) = interned_and_plain(&data, src, opts);
            assert_eq!(interned.as_ref(), Some(&plain), "script:\n{src}");
            assert_ne!(plain["_"], json!([]), "script pushed nothing:\n{src}");
        }
    }
    // Keys of the same shape from two trees of one space merge as texts do.
    let src = &scripts[0].0;
    let prog = compile_ok(src);
    let space = prog.new_key_space().expect("template");
    let mut halves = Vec::new();
    for range in [0..2, 2..4] {
        let mut tree = prog.new_tree(1).with_key_space(space.clone());
        let mut st = prog.new_state();
        for i in range {
            if let Err(e) = prog.run(&data.view(i), &ctx(), &mut st, &mut tree) {
                panic!("runtime error: {e}");
            }
        }
        halves.push(tree);
    }
    let mut merged = halves.remove(0);
    merged.merge(halves.remove(0));
    let (_, plain) = interned_and_plain(&data, src, &RenderOptions::default());
    assert_eq!(merged.render(&RenderOptions::default()), plain);
}

/// Four customers' purchases (every third row a view) for the looping
/// tests, titles missing on some rows, then the customers of `more`.
fn looped_purchases(more: &[&[Option<&str>]]) -> TestPartition {
    let mut all: Vec<&[Option<&str>]> = vec![
        &[
            Some("dune"),
            Some("emma"),
            Some("dune"),
            None,
            Some("ulysses"),
        ],
        &[Some("emma"), None, Some("dune"), Some("dune"), Some("emma")],
        &[None, Some("dune"), Some("x"), Some("dune"), Some("emma")],
        &[Some("dune")],
    ];
    all.extend_from_slice(more);
    purchases(&all)
}

#[test]
fn pair_walks_answer_as_the_general_loops_do() {
    // `crate::pair_walk`: a loop over every row of one event that notes
    // properties, around a look-ahead for the next row of another (or the
    // same) event that pushes them, runs as one loop. Each script answers
    // as its twin whose guards are hidden from the loops (`where true &&
    // event.is(...)`, run the general way), with rows listed per name or
    // searched, keys numbered or not. Titles are missing on some rows.
    // One customer has more pushes than a walk holds before counting
    // them (`PAIR_BATCH`), with a missing title now and then.
    let books = [Some("dune"), Some("emma"), Some("ulysses"), Some("x")];
    let long: Vec<Option<&str>> = (0..300)
        .map(|i| books[(i * i + i / 7) % 4].filter(|_| i % 97 != 50))
        .collect();
    let mut data = looped_purchases(&[&long, &[]]);
    let script = |select: &str, outer: &str, inner: &str, before: &str, push: &str| {
        format!(
            "{select}each_row where event.is(== \"{outer}\")\n  {before}\n  \
             each_row.continue().next().limit(1) where event.is(== \"{inner}\")\n    \
             << {push}\n  end\nend\n"
        )
    };
    let counts = "select\n  count id as customers\n  count title as pairs all\nend\n";
    let sums = "select\n  count id as customers\n  sum qty as q\nend\n";
    let chain = "p + \" > \" + title";
    // (script, marked to run as one loop)
    let mut scripts = Vec::new();
    for select in [counts, sums] {
        scripts.extend([
            (
                script(select, "purchase", "purchase", "p = title", chain),
                true,
            ),
            (
                script(select, "view", "purchase", "p = channel", chain),
                true,
            ),
            (script(select, "purchase", "view", "p = title", chain), true),
            // Two notes; the later note of a variable is the one pushed.
            (
                script(
                    select,
                    "purchase",
                    "purchase",
                    "q = channel\n  p = title\n  q = title",
                    "\"[\" + p + \"|\" + q + \"]\"",
                ),
                true,
            ),
            // No note: the push reads only the look-ahead's row.
            (
                script(select, "purchase", "purchase", "", "\"t:\" + title"),
                true,
            ),
            // Anything else in the outer body: the general loops.
            (
                script(
                    select,
                    "purchase",
                    "purchase",
                    "p = title\n  n = qty",
                    chain,
                ),
                false,
            ),
            (
                script(select, "purchase", "missing", "p = title", chain),
                true,
            ),
        ]);
    }
    for list_rows in [false, true] {
        data.list_rows = list_rows;
        for (src, marked) in &scripts {
            let twin = src.replace("where event.is(", "where true && event.is(");
            let prog = compile_ok(src);
            assert_eq!(prog.pair_walk.is_some(), *marked, "{src}");
            // Only a walk within one event reads nothing but its rows' cells.
            let one_event = src.matches("event.is(== \"purchase\")").count() == 2;
            assert_eq!(
                prog.row_access().listed_cells,
                *marked && one_event,
                "{src}"
            );
            assert!(compile_ok(&twin).pair_walk.is_none(), "{twin}");
            let opts = RenderOptions::default();
            let (interned, plain) = interned_and_plain(&data, src, &opts);
            let (twin_interned, twin_plain) = interned_and_plain(&data, &twin, &opts);
            assert_eq!(plain, twin_plain, "lists {list_rows}:\n{src}");
            assert_eq!(interned, Some(plain.clone()), "lists {list_rows}:\n{src}");
            assert_eq!(
                twin_interned,
                Some(plain.clone()),
                "lists {list_rows}:\n{src}"
            );
            if !src.contains("missing") {
                assert_ne!(plain["_"], json!([]), "pushed nothing:\n{src}");
            }
        }
    }
}

#[test]
fn guarded_scans_step_through_listed_rows_as_through_the_names() {
    // A forward loop guarded by an event name goes from one listed row of
    // it to the next where the store lists them (`CustomerView::rows_named`),
    // whatever its other modifiers. Each script answers the same with the
    // rows listed or searched, and as its twin with the guard hidden.
    let mut data = looped_purchases(&[]);
    let scripts = [
        // A funnel of windowed look-aheads (each row is a minute apart).
        "each_row where event.is(== \"view\")\n  t0 = stamp\n  << \"1_view\"\n  \
         each_row.continue().next().look_ahead(2_minutes, t0).limit(1) where event.is(== \"purchase\")\n    \
         << \"2_purchase\"\n    \
         each_row.continue().next().look_ahead(3_minutes, t0).limit(1) where event.is(== \"purchase\")\n      \
         << \"3_purchase\"\n    end\n  end\nend\n",
        // A condition after the guard, a start row and a limit.
        "each_row.from(1).limit(2) where event.is(== \"purchase\") && qty > 1\n  << title, qty\nend\n",
        // Every later row of a name, from each row of another.
        "each_row where event.is(== \"purchase\")\n  \
         each_row.continue().next() where event.is(== \"view\")\n    << title\n  end\nend\n",
        // Backwards: searched either way.
        "each_row.reverse().limit(2) where event.is(== \"purchase\")\n  << title\nend\n",
    ];
    let opts = RenderOptions::default();
    for src in scripts {
        let twin = src.replace("where event.is(", "where true && event.is(");
        data.list_rows = false;
        let searched = event_query_on(&data, src, &opts);
        assert_ne!(searched["_"], json!([]), "pushed nothing:\n{src}");
        assert_eq!(searched, event_query_on(&data, &twin, &opts), "{src}");
        data.list_rows = true;
        assert_eq!(
            searched,
            event_query_on(&data, src, &opts),
            "listed:\n{src}"
        );
    }
}

#[test]
fn chains_that_cannot_be_numbered_fall_back_to_text() {
    let pairs = |push: &str, before: &str| {
        format!(
            "each_row where event.is(== \"purchase\")\n  {before}\n  \
             each_row.continue().next().limit(1) where event.is(== \"purchase\")\n    \
             << {push}\n  end\nend\n"
        )
    };
    // A first part that could split another way ("a >" + " > " + "z" is
    // "a" + " > " + "> z") fails the space: the query runs again.
    let src = pairs("p + \" > \" + title", "p = title");
    for first in ["a >", "a > b"] {
        let data = purchases(&[&[Some(first), Some("c"), Some("x"), Some("a")]]);
        assert_eq!(
            interned_and_plain(&data, &src, &RenderOptions::default()).0,
            None,
            "{first:?}"
        );
    }
    // Spaces alone are fine, and the last part may hold anything (the
    // first row is only ever `p`, the second only ever `title`).
    for (src, first) in [
        (pairs("p + \" > \" + title", "p = title"), "c d"),
        (pairs("title + \" > \" + p", "p = title"), "c > d"),
    ] {
        let data = purchases(&[&[Some(first), Some("a b"), Some("x"), Some("a")]]);
        let (interned, plain) = interned_and_plain(&data, &src, &RenderOptions::default());
        assert_eq!(interned, Some(plain), "{src}");
    }
    // A nil first operand makes the chain nil: nothing is pushed, as with
    // text keys.
    let plain_titles = purchases(&[
        &[Some("a"), Some("c"), Some("x"), Some("a")],
        &[None, Some("c")],
    ]);
    let src = pairs("p + \" > \" + title", "p = title");
    let (interned, plain) = interned_and_plain(&plain_titles, &src, &RenderOptions::default());
    assert_eq!(interned, Some(plain));
    // A number first makes the chain arithmetic: not ours to number.
    let src = pairs("n + \" > \" + title", "n = qty");
    assert_eq!(
        interned_and_plain(&plain_titles, &src, &RenderOptions::default()).0,
        None
    );
    // Shapes without a template: two pushes, parts side by side, a call.
    for src in [
        pairs("p + \" > \" + title", "p = title\n  << p"),
        pairs("p + title", "p = title"),
        pairs("p + \" > \" + str(title)", "p = title"),
        pairs(
            "p + \" > \" + title + \" > \" + q",
            "p = title\n  q = title",
        ),
    ] {
        assert!(compile_ok(&src).key_chain.is_none(), "template for:\n{src}");
    }
}

#[test]
fn narrow_and_wide_name_columns_scan_alike() {
    // One long customer (jump tables get built: nested look-aheads pass
    // over many rows) and short ones; scans forward and back, bounded and
    // not, guarded by an event some customers lack.
    let mut p = TestPartition::new(schema());
    let names = ["view", "cart", "buy", "other"];
    let mut stamp = ms("2024-01-01T00:00:00Z");
    let long = p.add_customer("long");
    for i in 0..400i64 {
        stamp += 600_000 * (1 + i % 7);
        let name = names[(i * i % 11 % 4) as usize];
        p.add_row(long, stamp, name, &[("qty", Value::Int(i % 5))]);
    }
    for c in 0..6usize {
        let ci = p.add_customer(&format!("c{c}"));
        for (k, name) in names
            .iter()
            .enumerate()
            .filter(|(k, _)| (c >> k) & 1 == 1 || *k == 3)
        {
            stamp += 3_600_000;
            p.add_row(ci, stamp, name, &[("qty", Value::Int(k as i64))]);
        }
    }
    let scripts = [
        "each_row where event.is(== \"view\")\n  t0 = stamp\n  << \"1\"\n  each_row.continue().next().look_ahead(7_days, t0) where event.is(== \"cart\")\n    << \"2\"\n    each_row.continue().next() where event.is(== \"buy\")\n      << \"3\"\n    end\n  end\nend\n",
        "each_row.reverse() where event.is(== \"buy\") && qty > 1\n  << qty\nend\n",
        "each_row where event.is(== \"cart\")\n  each_row.continue().next().limit(2) where event.is(== \"missing\")\n    << \"never\"\n  end\n  << \"cart\"\nend\n",
        "select\n  count id as c\n  sum qty as q\nend\neach_row where event.is(== \"other\")\n  << event\nend\n",
    ];
    for src in scripts {
        let narrow = event_query_on(&p, src, &RenderOptions::default());
        p.wide_names = true;
        let wide = event_query_on(&p, src, &RenderOptions::default());
        p.wide_names = false;
        assert_eq!(narrow, wide, "script:\n{src}");
        assert_ne!(narrow["_"], json!([]), "script pushed nothing:\n{src}");
    }
}

/// A small deterministic generator (xorshift) for the randomized tests.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

#[test]
fn random_chains_and_texts_give_the_same_tree_numbered_or_not() {
    // Texts with spaces and with the literals or their overlapping ends,
    // chains of one or two varying parts between random literals. Every
    // script gives the text-key tree, or fails the space (the query layer
    // then runs again with text keys); most keep numbered keys. Texts that
    // contain " > " would fail nearly every round and hide the overlap
    // case ("a >" then "a", "a" then "> a"); the unit tests cover them.
    let texts = ["a", "a >", "> a", "b c", "-", "a-", "-a", "é é"];
    let lits = [" > ", "-"];
    let parts = ["title", "channel", "p", "q"];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut numbered, mut failed) = (0, 0);
    for round in 0..200 {
        let mut data = TestPartition::new(schema());
        for c in 0..12 {
            let ci = data.add_customer(&format!("c{c}"));
            for r in 0..(1 + rng.below(10)) {
                let mut props = Vec::new();
                for prop in ["title", "channel"] {
                    if rng.below(5) > 0 {
                        props.push((prop, Value::text(rng.pick(&texts))));
                    }
                }
                let event = if rng.below(4) == 0 {
                    "view"
                } else {
                    "purchase"
                };
                data.add_row(
                    ci,
                    ms("2024-03-01T10:00:00Z") + 60_000 * r as i64,
                    event,
                    &props,
                );
            }
        }
        let lead = if rng.below(2) == 0 {
            format!("\"{}\" + ", rng.pick(&lits))
        } else {
            String::new()
        };
        let mut chain = format!("{lead}{}", rng.pick(&parts));
        if rng.below(3) > 0 {
            chain = format!("{chain} + \"{}\" + {}", rng.pick(&lits), rng.pick(&parts));
        }
        if rng.below(3) == 0 || !chain.contains('+') {
            chain = format!("{chain} + \"{}\"", rng.pick(&lits));
        }
        let src = format!(
            "select\n  count id as customers\n  count title as n all\nend\n\
             each_row where event.is(== \"purchase\")\n  p = title\n  q = channel\n  \
             each_row.continue().next().limit(1) where event.is(== \"purchase\")\n    \
             << {chain}\n  end\nend\n"
        );
        let by_group = RenderOptions {
            sort: SortBy::Group,
            descending: false,
            trim: None,
        };
        assert!(compile_ok(&src).key_chain.is_some(), "no template:\n{src}");
        let (interned, plain) = interned_and_plain(&data, &src, &by_group);
        match interned {
            Some(tree) => {
                assert_eq!(tree, plain, "round {round}:\n{src}");
                numbered += 1;
            }
            None => failed += 1,
        }
    }
    assert!(
        numbered > 40,
        "only {numbered} of 200 kept numbered keys ({failed} fell back)"
    );
}

/// Memoized pushes remember the nodes they counted at, by tree: a state
/// that moves on to another tree, or to a copy of its tree that has
/// grown apart, must look its nodes up again.
#[test]
fn memoized_push_nodes_follow_the_tree_not_the_state() {
    let src = "each_row where event.is(== \"purchase\")\n  << \"bought\", \"x\"\nend\n\
               each_row where event.is(== \"view\")\n  << \"viewed\"\nend\n";
    let prog = compile_ok(src);
    assert!(prog.memo_sites >= 2, "the pushes are memoized");
    // The first four customers only buy; the last four also view.
    let mut p = TestPartition::new(schema());
    for c in 0..8 {
        let ci = p.add_customer(&format!("c{c}"));
        p.add_row(ci, ms("2024-03-01T10:00:00Z"), "purchase", &[]);
        if c >= 4 {
            p.add_row(ci, ms("2024-03-01T11:00:00Z"), "view", &[]);
        }
    }
    let o = RenderOptions {
        sort: SortBy::Group,
        descending: false,
        trim: None,
    };
    let run = |st: &mut RunState, tree: &mut ResultTree, customers: std::ops::Range<usize>| {
        for i in customers {
            prog.run(&p.view(i), &ctx(), st, tree).expect("run");
        }
    };
    let mut fresh = prog.new_tree(1);
    run(&mut prog.new_state(), &mut fresh, 0..8);
    let want = fresh.render(&o);
    assert_eq!(want["_"][1]["g"], "viewed");
    assert_eq!(want["_"][1]["c"], json!([4]));

    // One state, a second tree.
    let mut st = prog.new_state();
    let mut first = prog.new_tree(1);
    run(&mut st, &mut first, 0..8);
    let mut second = prog.new_tree(1);
    run(&mut st, &mut second, 0..8);
    assert_eq!(second.render(&o), want);

    // A copy taken before "viewed" existed, then the original grows it.
    let mut st = prog.new_state();
    let mut original = prog.new_tree(1);
    run(&mut st, &mut original, 0..4);
    let mut copy = original.clone();
    run(&mut st, &mut original, 4..8);
    run(&mut st, &mut copy, 4..8);
    assert_eq!(original.render(&o), want);
    assert_eq!(copy.render(&o), want);
}

/// `.continue().next().limit(1)` guarded by an event name alone (the scan
/// passes other rows by their name ids) against its guard-free twin (the
/// condition evaluated row by row): pairs, nesting, `break` inside (one
/// and two levels), a look-ahead outside any loop, a name no row has, a
/// long customer whose scans skip many rows, and names stored two and four
/// bytes wide.
#[test]
fn next_row_look_aheads_match_the_general_scan() {
    let names = ["view", "buy", "other"];
    for wide in [false, true] {
        let mut p = TestPartition::new(schema());
        p.wide_names = wide;
        let mut seed = 7u32;
        for c in 0..12 {
            let ci = p.add_customer(&format!("c{c}"));
            let mut stamp = ms("2024-01-01T00:00:00Z");
            for r in 0..(c % 5) * 3 + 1 {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                let name = names[(seed >> 16) as usize % names.len()];
                stamp += 60_000;
                let title = format!("t{}", (seed >> 8) % 4);
                p.add_row(
                    ci,
                    stamp,
                    name,
                    &[("title", t(&title)), ("qty", Value::Int(r as i64))],
                );
            }
        }
        // A long customer whose purchases are far apart: its scans skip
        // many rows (and build jump tables).
        let ci = p.add_customer("long");
        for r in 0..400 {
            let name = match r % 61 {
                0 => "buy",
                7 => "other",
                _ => "view",
            };
            let title = format!("t{}", r % 3);
            let stamp = ms("2024-01-01T00:00:00Z") + 60_000 * r;
            p.add_row(
                ci,
                stamp,
                name,
                &[("title", t(&title)), ("qty", Value::Int(r))],
            );
        }
        let scripts = [
            // Each purchase and the next one.
            "each_row where event.is(== \"buy\")\n  p = title\n  each_row.continue().next().limit(1) where event.is(== \"buy\")\n    << p + \" > \" + title\n  end\nend\n",
            // The next view after each purchase, nested twice, with a push after.
            "each_row where event.is(== \"buy\")\n  each_row.continue().next().limit(1) where event.is(== \"view\")\n    << \"view\", qty\n    each_row.continue().next().limit(1) where event.is(== \"buy\")\n      << \"buy again\", title\n    end\n  end\n  << \"after\"\nend\n",
            // `break` inside the look-ahead, and `break(2)` leaving the outer loop too.
            "each_row where event.is(== \"view\")\n  each_row.continue().next().limit(1) where event.is(== \"buy\")\n    << \"b1\", qty\n    break\n  end\n  << \"v\"\nend\neach_row where event.is(== \"view\")\n  each_row.continue().next().limit(1) where event.is(== \"other\")\n    << \"o\", qty\n    break(2)\n  end\n  << \"not after the first other\"\nend\n",
            // Outside any loop (from row 1), and a name no row has.
            "each_row.continue().next().limit(1) where event.is(== \"buy\")\n  << \"first buy after row 0\", qty\nend\neach_row where event.is(== \"view\")\n  each_row.continue().next().limit(1) where event.is(== \"missing\")\n    << \"never\"\n  end\n  << \"views\"\nend\n",
        ];
        assert_guard_free_twins_agree(&p, &scripts);
    }
}

/// Drops the last value of every `c` array in a rendered tree.
fn without_last_column(j: &mut serde_json::Value) {
    if let Some(entries) = j.get_mut("_").and_then(|e| e.as_array_mut()) {
        for e in entries {
            if let Some(c) = e.get_mut("c").and_then(|c| c.as_array_mut()) {
                c.pop();
            }
            without_last_column(e);
        }
    }
}

#[test]
fn plain_count_columns_count_as_the_general_push_does() {
    // Count columns de-duplicated by customer or not at all take a path
    // that only asks which columns have a value at the push row
    // (`CountPlan`); a `sum` column sends the same pushes down the general
    // path, and the count columns must come out the same.
    let select = "select\n  count id as people\n  count title as titles all\n  count price as priced all\n  count event as events all\n  count genre as genred all\n  count stamp as stamped all\n  count session as sessions all\n";
    let bodies = [
        // Rows with and without each counted property, nested groups.
        "each_row where true\n  << event, title\nend\n",
        // A text chain filed by number (key space), and a memoized push.
        "each_row where event.is(== \"order\")\n  p = title\n  each_row.continue().next().limit(1) where event.is(== \"order\")\n    << p + \" > \" + title\n  end\nend\n<< \"everyone\"\n",
        // Before any loop (row 0), and the same node pushed twice per customer.
        "<< \"start\"\neach_row where event.is(== \"view\")\n  << \"views\"\n  << \"views\"\nend\n",
    ];
    let p = bookstore();
    let opts = RenderOptions::default();
    for body in bodies {
        let plain = format!("{select}end\n{body}");
        let general = format!("{select}  sum qty as q all\nend\n{body}");
        let a = event_query_on(&p, &plain, &opts);
        let mut b = event_query_on(&p, &general, &opts);
        without_last_column(&mut b);
        assert_eq!(a, b, "script:\n{plain}");
        assert_ne!(a["_"], json!([]), "script pushed nothing:\n{plain}");
    }
    // The plan is taken exactly when every column is such a count.
    assert!(compile_ok(&format!("{select}end\n<< 1\n"))
        .count_plan
        .is_some());
    assert!(
        compile_ok(&format!("{select}  sum qty as q all\nend\n<< 1\n"))
            .count_plan
            .is_none()
    );
    // (`count title` counts each row once per node: not a plain count.)
    assert!(compile_ok("select\n  count title as t\nend\n<< 1\n")
        .count_plan
        .is_none());
}

#[test]
fn literal_pushes_count_every_push_like_their_computed_twins() {
    // Literal groups keep their path and nodes per run state
    // (`Stmt::Push::literal`); with columns counted on every push they
    // must still count every push, at every level, in every tree.
    let select =
        "select\n  count id as people\n  count event as rows all\n  sum qty as q all\nend\n";
    let body = "<< \"start\"\neach_row where true\n  << \"each\", 1\n  << \"each\", 1\n  each_row.continue().next().limit(1) where event.is(== \"order\")\n    << \"next order\", true, 2.5\n  end\nend\n";
    let twin = body
        .replace("<< \"start\"", "<< \"sta\" + \"rt\"")
        .replace("<< \"each\", 1", "<< \"ea\" + \"ch\", 0 + 1")
        .replace(
            "<< \"next order\", true, 2.5",
            "<< \"next \" + \"order\", !false, 2.0 + 0.5",
        );
    let src = format!("{select}{body}");
    let computed = format!("{select}{twin}");
    assert!(
        compile_ok(&src).memo_sites == 0,
        "the pushes are not memoized"
    );
    let p = bookstore();
    let opts = RenderOptions::default();
    let a = event_query_on(&p, &src, &opts);
    assert_eq!(a, event_query_on(&p, &computed, &opts));
    assert_ne!(a["_"], json!([]));
    // One state feeding two trees, the second a copy of the first taken
    // after customer 0: each must equal a tree fed its customers afresh.
    assert_tree_and_copy_match_fresh_trees(&p, &src);
}

#[test]
fn pushes_read_in_place_match_the_general_push() {
    // Groups that are literals, `event`, `stamp`, `session` or
    // single-valued properties are read at the row and borrowed
    // (`Interp::push_in_place`); the same values through variables take
    // the general path. A missing property ends the path in both.
    let cases = [
        (
            "each_row where true\n  << event, title\nend\n",
            "each_row where true\n  a = event\n  b = title\n  << a, b\nend\n",
        ),
        (
            "each_row where true\n  << title, price, qty\nend\n",
            "each_row where true\n  a = title\n  b = price\n  c = qty\n  << a, b, c\nend\n",
        ),
        // (Views have no order number: their path ends at the event.)
        (
            "each_row where true\n  << event, order_no, title\nend\n",
            "each_row where true\n  a = event\n  b = order_no\n  c = title\n  << a, b, c\nend\n",
        ),
        (
            "each_row where true\n  << \"all\", 2, 2.5, true, order_no\nend\n",
            "each_row where true\n  a = \"all\"\n  b = 2\n  c = 2.5\n  d = true\n  e = order_no\n  << a, b, c, d, e\nend\n",
        ),
        (
            "each_row where true\n  << session, stamp, gift\nend\n<< channel\n",
            "each_row where true\n  a = session\n  b = stamp\n  c = gift\n  << a, b, c\nend\nd = channel\n<< d\n",
        ),
    ];
    let p = bookstore();
    let opts = RenderOptions::default();
    let select = "select\n  count id as people\n  sum qty as q all\n  count title as titles\nend\n";
    for (in_place, general) in cases {
        for sel in ["", select] {
            let a = event_query_on(&p, &format!("{sel}{in_place}"), &opts);
            let b = event_query_on(&p, &format!("{sel}{general}"), &opts);
            assert_eq!(a, b, "script:\n{sel}{in_place}");
            assert_ne!(a["_"], json!([]), "script pushed nothing:\n{in_place}");
        }
    }
    // A state remembers the top-level nodes of texts it pushed, per tree:
    // one state feeding a tree and a copy of it taken after customer 0
    // must give what trees fed afresh give. Customer 3 pushes into the
    // copy a title that customer 2 pushed into the first tree.
    let mut p = TestPartition::new(schema());
    p.named_dictionary = true;
    for (i, title) in ["a", "b", "c", "c", "a"].iter().enumerate() {
        let ci = p.add_customer(&format!("c{i}"));
        p.add_row(
            ci,
            ms("2024-01-01T00:00:00Z"),
            "view",
            &[("title", t(title))],
        );
    }
    assert_tree_and_copy_match_fresh_trees(&p, "each_row where true\n  << title, event\nend\n");
}

/// One run state feeding a tree (even customers) and a copy of it taken
/// after customer 0 (odd customers) gives what trees fed afresh give: what
/// the state remembers of one tree's nodes must not leak into the other.
fn assert_tree_and_copy_match_fresh_trees(p: &TestPartition, src: &str) {
    let prog = compile_ok(src);
    let run = |tree: &mut crate::ResultTree, st: &mut crate::RunState, i: usize| {
        if let Err(e) = prog.run(&p.view(i), &ctx(), st, tree) {
            panic!("runtime error: {e}");
        }
    };
    let mut st = prog.new_state();
    let mut first = prog.new_tree(1);
    run(&mut first, &mut st, 0);
    let mut second = first.clone();
    for i in 1..p.customers.len() {
        let tree = if i % 2 == 0 { &mut first } else { &mut second };
        run(tree, &mut st, i);
    }
    let (mut even, mut odd) = (prog.new_tree(1), prog.new_tree(1));
    let mut fresh = prog.new_state();
    for i in 0..p.customers.len() {
        if i % 2 == 0 {
            run(&mut even, &mut fresh, i);
        }
        if i % 2 == 1 || i == 0 {
            run(&mut odd, &mut fresh, i);
        }
    }
    let opts = RenderOptions::default();
    assert_eq!(first.render(&opts), even.render(&opts));
    assert_eq!(second.render(&opts), odd.render(&opts));
}

#[test]
fn repeated_property_reads_give_each_row_and_property_its_own_value() {
    // A run keeps its last single-valued property read (`first_value`).
    // Here variables read three properties at each row in turn, and the
    // count columns ask again at the push; a push reading the same
    // properties in place goes to the rows directly, and must agree.
    let select = "select\n  count id as people\n  count price as priced all\n  count qty as counted all\nend\n";
    let via_vars = format!(
        "{select}each_row where true\n  t = title\n  pr = price\n  q = qty\n  << event, t, pr, q\nend\n"
    );
    let in_place = format!("{select}each_row where true\n  << event, title, price, qty\nend\n");
    let p = bookstore();
    let opts = RenderOptions::default();
    let a = event_query_on(&p, &via_vars, &opts);
    let b = event_query_on(&p, &in_place, &opts);
    assert_eq!(a, b);
    // Orders reach the price level with their own prices.
    let orders = a["_"]
        .as_array()
        .and_then(|l| l.iter().find(|n| n["g"] == "order"))
        .cloned()
        .unwrap_or_default();
    assert!(
        orders.to_string().contains("12.5") && orders.to_string().contains("\"g\":8"),
        "{orders}"
    );
    // One property, row after row, with nothing read in between.
    let select = "select\n  count id as people\n  count event as rows all\nend\n";
    let via_var = format!("{select}each_row where true\n  t = title\n  << t\nend\n");
    let in_place = format!("{select}each_row where true\n  << title\nend\n");
    let a = event_query_on(&p, &via_var, &opts);
    assert_eq!(a, event_query_on(&p, &in_place, &opts));
    assert!(a["_"].as_array().is_some_and(|l| l.len() > 1), "{a}");
}
