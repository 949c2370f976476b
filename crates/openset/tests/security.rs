//! Users, roles and tokens over HTTP: the role table against every endpoint
//! group, token expiry and revocation, persistence across a restart, the
//! refusal to listen openly on a non-loopback address, and HTTPS with a
//! certificate made by the test.

mod common;
use base64::Engine as _;
use common::{highstreet_events, highstreet_table, Answer, Server};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn basic(user: &str, pw: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"))
    )
}

fn call(s: &Server, method: &str, path: &str, body: Option<&str>, auth: Option<&str>) -> Answer {
    let mut headers = vec![("content-type", "application/json")];
    if let Some(a) = auth {
        headers.push(("authorization", a));
    }
    s.request(method, path, body.map(str::as_bytes), &headers)
}

fn register(s: &Server, by: Option<&str>, user: &str, pw: &str, role: &str) -> Answer {
    let body = json!({ "username": user, "password": pw, "role": role }).to_string();
    call(s, "POST", "/v1/auth/user/register", Some(&body), by)
}

fn token(s: &Server, user: &str, pw: &str) -> String {
    let a = call(
        s,
        "GET",
        "/v1/auth/token/user",
        None,
        Some(&basic(user, pw)),
    );
    assert_eq!(a.status, 200, "token: {}", a.text);
    format!("Bearer {}", a.json["token"].as_str().unwrap())
}

/// A server with auth on: root (super_user), wendy (writer), rita (reader),
/// and the highstreet table loaded.
fn secured() -> (Server, String) {
    let s = Server::start(&["--partitions", "4"]);
    let a = register(&s, None, "root", "rootpass1", "reader");
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(
        a.json["role"], "super_user",
        "the first user is a super_user"
    );
    let root = basic("root", "rootpass1");
    assert_eq!(
        register(&s, Some(&root), "wendy", "writerpass", "writer").status,
        200
    );
    assert_eq!(
        register(&s, Some(&root), "rita", "readerpass", "reader").status,
        200
    );
    let t = highstreet_table().to_string();
    assert_eq!(
        call(&s, "POST", "/v1/table/highstreet", Some(&t), Some(&root)).status,
        200
    );
    let e = highstreet_events().to_string();
    assert_eq!(
        call(&s, "POST", "/v1/insert/highstreet", Some(&e), Some(&root)).status,
        200
    );
    (s, root)
}

const EVENT: &str = "each_row where event.is(== \"purchase\")\n  << shipper\nend";

#[test]
fn every_role_against_every_endpoint_group() {
    let (s, _) = secured();
    // (group, method, path, body); which roles may: S super, W writer, R reader.
    let cases: Vec<(&str, &str, String, Option<String>)> = vec![
        ("SWR", "GET", "/v1/tables".into(), None),
        ("SWR", "GET", "/v1/table/highstreet".into(), None),
        ("SWR", "GET", "/status".into(), None),
        ("SWR", "GET", "/v1/version".into(), None),
        ("SWR", "GET", "/version".into(), None),
        ("SWR", "GET", "/metrics".into(), None),
        ("SWR", "GET", "/metrics.json".into(), None),
        ("SWR", "GET", "/info".into(), None),
        ("SWR", "GET", "/no/such/route".into(), None),
        (
            "SWR",
            "POST",
            "/v1/query/highstreet/event".into(),
            Some(EVENT.into()),
        ),
        (
            "SWR",
            "GET",
            "/v1/query/highstreet/property/shipper".into(),
            None,
        ),
        (
            "SWR",
            "GET",
            "/v1/query/highstreet/customer?id=tommy".into(),
            None,
        ),
        ("SWR", "GET", "/v1/auth/token/user".into(), None),
        (
            "SW",
            "POST",
            "/v1/insert/highstreet".into(),
            Some(json!([{"id": "zed", "stamp": 1, "event": "purchase"}]).to_string()),
        ),
        (
            "S",
            "PUT",
            "/v1/table/highstreet/property/extra_{role}?type=int".into(),
            None,
        ),
        (
            "S",
            "POST",
            "/v1/table/t_{role}".into(),
            Some(highstreet_table().to_string()),
        ),
        ("S", "DELETE", "/v1/table/no_such_table".into(), None),
        ("S", "GET", "/queries".into(), None),
        ("S", "GET", "/query-history".into(), None),
        ("S", "DELETE", "/queries/999999".into(), None),
        ("S", "PUT", "/v1/cluster/init?partitions=2".into(), None),
        ("S", "GET", "/v1/auth/users".into(), None),
        ("S", "DELETE", "/v1/auth/user/nobody".into(), None),
        (
            "S",
            "POST",
            "/v1/auth/user/register".into(),
            Some(json!({"username": "new_{role}", "password": "newpass12"}).to_string()),
        ),
    ];
    // Basic for each role, and a reader's bearer token, which may do what
    // the reader may except mint another token.
    let roles = [
        ("S", basic("root", "rootpass1")),
        ("W", basic("wendy", "writerpass")),
        ("R", basic("rita", "readerpass")),
        ("R", token(&s, "rita", "readerpass")),
    ];
    for (may, method, path, body) in &cases {
        // No credential, a wrong one: 401 everywhere.
        for bad in [
            None,
            Some(basic("root", "wrong-pass")),
            Some("Bearer nonsense".into()),
        ] {
            let a = call(&s, method, path, body.as_deref(), bad.as_deref());
            assert_eq!(a.status, 401, "{method} {path} with {bad:?}: {}", a.text);
            assert_eq!(a.json["error"]["class"], "auth");
        }
        for (role, cred) in &roles {
            let path = path.replace("{role}", &role.to_lowercase());
            let body = body
                .as_ref()
                .map(|b| b.replace("{role}", &role.to_lowercase()));
            let a = call(&s, method, &path, body.as_deref(), Some(cred));
            let minting = path == "/v1/auth/token/user" && cred.starts_with("Bearer");
            if may.contains(role) && !minting {
                assert!(
                    a.status != 401 && a.status != 403,
                    "{role} may {method} {path}: {} {}",
                    a.status,
                    a.text
                );
            } else {
                assert_eq!(a.status, 403, "{role} may not {method} {path}: {}", a.text);
            }
        }
    }
    // /ping answers everyone.
    assert_eq!(s.get("/ping").status, 200);
    // Allowed calls did what they say.
    let root = basic("root", "rootpass1");
    let users = call(&s, "GET", "/v1/auth/users", None, Some(&root));
    let names: Vec<&str> = users.json["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["new_s", "rita", "root", "wendy"]);
}

#[test]
fn readers_may_not_run_scripts_that_write_customer_properties() {
    let (s, _) = secured();
    let writes = "if row_count > 6\n  age = row_count\nend\n<< \"done\"";
    let path = "/v1/query/highstreet/event";
    let a = call(
        &s,
        "POST",
        path,
        Some(writes),
        Some(&basic("rita", "readerpass")),
    );
    assert_eq!(a.status, 403, "{}", a.text);
    let age = |s: &Server| {
        call(
            s,
            "GET",
            "/v1/query/highstreet/customer?id=klara",
            None,
            Some(&basic("rita", "readerpass")),
        )
        .json["properties"]
            .clone()
    };
    assert_eq!(age(&s), json!({}), "the refused query wrote nothing");
    let a = call(
        &s,
        "POST",
        path,
        Some(writes),
        Some(&basic("wendy", "writerpass")),
    );
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(age(&s), json!({"age": 9}));
}

#[test]
fn errors_do_not_say_whether_a_user_exists() {
    let (s, _) = secured();
    let wrong_pw = call(
        &s,
        "GET",
        "/v1/tables",
        None,
        Some(&basic("rita", "not-her-pass")),
    );
    let no_user = call(
        &s,
        "GET",
        "/v1/tables",
        None,
        Some(&basic("ghost", "not-her-pass")),
    );
    assert_eq!((wrong_pw.status, no_user.status), (401, 401));
    assert_eq!(wrong_pw.text, no_user.text);
    assert!(wrong_pw.header("www-authenticate").is_some());
    // Only a super user learns that a user is missing.
    let a = call(
        &s,
        "PUT",
        "/v1/auth/user/ghost/password",
        Some(r#"{"password":"whatever1"}"#),
        Some(&basic("rita", "readerpass")),
    );
    assert_eq!(a.status, 403, "{}", a.text);
}

#[test]
fn tokens_expire() {
    let s = Server::start(&["--partitions", "2", "--token-ttl-secs", "5"]);
    assert_eq!(
        register(&s, None, "root", "rootpass1", "super_user").status,
        200
    );
    let t = token(&s, "root", "rootpass1");
    assert_eq!(call(&s, "GET", "/v1/tables", None, Some(&t)).status, 200);
    // A token cannot mint another (that would make expiry meaningless).
    assert_eq!(
        call(&s, "GET", "/v1/auth/token/user", None, Some(&t)).status,
        403
    );
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let a = call(&s, "GET", "/v1/tables", None, Some(&t));
        if a.status == 401 {
            break;
        }
        assert_eq!(a.status, 200);
        assert!(Instant::now() < deadline, "token never expired");
        std::thread::sleep(Duration::from_millis(200));
    }
    // The password still works and yields a fresh token.
    let fresh = token(&s, "root", "rootpass1");
    assert_eq!(
        call(&s, "GET", "/v1/tables", None, Some(&fresh)).status,
        200
    );
}

#[test]
fn password_change_and_deletion_revoke_and_users_survive_restart() {
    let (mut s, root) = secured();
    let rita = token(&s, "rita", "readerpass");
    let wendy = token(&s, "wendy", "writerpass");
    // Rita changes her own password: her old token and password stop working.
    let a = call(
        &s,
        "PUT",
        "/v1/auth/user/rita/password",
        Some(r#"{"password":"newreader1"}"#),
        Some(&rita),
    );
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(call(&s, "GET", "/v1/tables", None, Some(&rita)).status, 401);
    assert_eq!(
        call(
            &s,
            "GET",
            "/v1/tables",
            None,
            Some(&basic("rita", "readerpass"))
        )
        .status,
        401
    );
    assert_eq!(
        call(
            &s,
            "GET",
            "/v1/tables",
            None,
            Some(&basic("rita", "newreader1"))
        )
        .status,
        200
    );
    // A reader may not change someone else's password.
    let a = call(
        &s,
        "PUT",
        "/v1/auth/user/wendy/password",
        Some(r#"{"password":"hijacked1"}"#),
        Some(&basic("rita", "newreader1")),
    );
    assert_eq!(a.status, 403);
    // Non-super users cannot register anyone.
    assert_eq!(
        register(&s, Some(&wendy), "eve", "evepass12", "super_user").status,
        403
    );
    // Tokens, users and the token key survive a restart.
    let root_token = token(&s, "root", "rootpass1");
    s.restart(&[]).expect("restart");
    assert_eq!(
        call(&s, "GET", "/v1/tables", None, None).status,
        401,
        "auth stays on"
    );
    assert_eq!(
        call(&s, "GET", "/v1/tables", None, Some(&root_token)).status,
        200
    );
    assert_eq!(
        call(&s, "GET", "/v1/tables", None, Some(&wendy)).status,
        200
    );
    // Deleting Wendy revokes her token and her password.
    assert_eq!(
        call(&s, "DELETE", "/v1/auth/user/wendy", None, Some(&root)).status,
        200
    );
    assert_eq!(
        call(&s, "GET", "/v1/tables", None, Some(&wendy)).status,
        401
    );
    assert_eq!(
        call(
            &s,
            "GET",
            "/v1/tables",
            None,
            Some(&basic("wendy", "writerpass"))
        )
        .status,
        401
    );
    // The last super user stays.
    assert_eq!(
        call(&s, "DELETE", "/v1/auth/user/root", None, Some(&root)).status,
        400
    );
    // The file holds hashes, not passwords.
    let file = std::fs::read_to_string(s.dir.join("users.json")).unwrap();
    assert!(file.contains("$argon2id$"));
    assert!(!file.contains("rootpass1"));
}

#[test]
fn auth_flag_protects_a_node_before_its_first_user() {
    let s = Server::start(&["--partitions", "2", "--auth"]);
    assert_eq!(s.get("/v1/tables").status, 401);
    assert_eq!(s.get("/ping").status, 200);
    // The first registration needs no credential; the second does.
    assert_eq!(
        register(&s, None, "root", "rootpass1", "super_user").status,
        200
    );
    assert_eq!(
        register(&s, None, "mallory", "malpass12", "super_user").status,
        401
    );
    // Without --auth and without users, everything is open (loopback only).
    let open = Server::start(&["--partitions", "2"]);
    assert_eq!(open.get("/v1/tables").status, 200);
    assert_eq!(open.get("/v1/auth/token/user").status, 400);
}

#[test]
fn refuses_non_loopback_without_auth_unless_insecure() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let err = Server::start_in(&dir, &["--host", "0.0.0.0"])
        .err()
        .expect("refused");
    assert!(err.contains("refusing to listen on 0.0.0.0"), "{err}");
    assert!(err.contains("--insecure"), "{err}");
    let s = Server::start_in(&dir, &["--host", "0.0.0.0", "--insecure"]).expect("insecure");
    assert_eq!(
        register(&s, None, "root", "rootpass1", "super_user").status,
        200
    );
    drop(s);
    // With a user, auth is on, so the open address is fine.
    let s = Server::start_in(&dir, &["--host", "0.0.0.0"]).expect("auth on");
    assert_eq!(s.get("/v1/tables").status, 401);
    let s2 = Server::start_in(&tmp.path().join("other"), &["--host", "0.0.0.0", "--auth"]);
    assert!(s2.is_ok(), "--auth alone is enough");
}

/// A self-signed certificate for 127.0.0.1 and localhost, written as PEM files.
fn self_signed(
    dir: &std::path::Path,
) -> (
    std::path::PathBuf,
    std::path::PathBuf,
    Arc<rustls::ClientConfig>,
) {
    let ck =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ck.cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (cert, key, Arc::new(client))
}

#[test]
fn https_with_a_self_signed_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let (cert, key, client) = self_signed(tmp.path());
    let (c, k) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let s = Server::start(&["--partitions", "2", "--tls-cert", c, "--tls-key", k]);
    let https = s.base.replace("http://", "https://");
    let agent = ureq::AgentBuilder::new()
        .tls_config(client)
        .timeout(Duration::from_secs(30))
        .build();
    let pong: Value = agent
        .get(&format!("{https}/ping"))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    assert_eq!(pong["pong"], true);
    // Users, tokens and data over TLS.
    let reg = agent
        .post(&format!("{https}/v1/auth/user/register"))
        .send_json(json!({"username": "root", "password": "rootpass1"}))
        .unwrap();
    assert_eq!(reg.status(), 200);
    let tok: Value = agent
        .get(&format!("{https}/v1/auth/token/user"))
        .set("authorization", &basic("root", "rootpass1"))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    let bearer = format!("Bearer {}", tok["token"].as_str().unwrap());
    let tables: Value = agent
        .get(&format!("{https}/v1/tables"))
        .set("authorization", &bearer)
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    assert!(tables.is_object() || tables.is_array(), "{tables}");
    match agent.get(&format!("{https}/v1/tables")).call() {
        Err(ureq::Error::Status(401, _)) => {}
        other => panic!("expected 401 without credentials over TLS, got {other:?}"),
    }
    // Plain HTTP to the TLS port gets no answer.
    let plain = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(10))
        .build()
        .get(&format!("{}/ping", s.base))
        .call();
    assert!(
        !matches!(plain, Ok(ref r) if r.status() == 200),
        "plain HTTP must not be served"
    );
}

#[test]
fn bad_tls_files_stop_start_up_with_a_message() {
    let tmp = tempfile::tempdir().unwrap();
    let junk = tmp.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    let j = junk.to_str().unwrap();
    let err = Server::start_in(&tmp.path().join("d"), &["--tls-cert", j, "--tls-key", j])
        .err()
        .expect("refused");
    assert!(err.contains("--tls-cert"), "{err}");
}
