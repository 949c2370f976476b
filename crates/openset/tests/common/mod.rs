//! Test harness: starts the real `openset` binary on a free loopback port
//! with its own data directory, and talks HTTP to it.
#![allow(dead_code)]

use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running server; killed when dropped.
pub struct Server {
    pub child: Child,
    pub base: String,
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

/// An HTTP answer: status and parsed JSON body (`Value::Null` when empty or not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub json: Value,
    pub text: String,
    pub headers: Vec<(String, String)>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    /// `error.detail` of an error answer.
    pub fn detail(&self) -> &str {
        self.json["error"]["detail"].as_str().unwrap_or("")
    }
}

impl Server {
    /// Starts a server on a fresh data directory with `args` added to `serve`.
    pub fn start(args: &[&str]) -> Server {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().join("data");
        let mut s = Server::start_in(&dir, args).expect("server starts");
        s._tmp = Some(tmp);
        s
    }

    /// Starts a server on `dir`; `Err(stderr)` when the process exits instead.
    pub fn start_in(dir: &Path, args: &[&str]) -> Result<Server, String> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_openset"))
            .arg("serve")
            .args(["--port", "0", "--log-level", "warn", "--data-dir"])
            .arg(dir)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn openset");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read stdout");
        let Some(addr) = line.trim().strip_prefix("listening on ") else {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            let _ = child.wait();
            return Err(err);
        };
        Ok(Server {
            base: format!("http://{addr}"),
            child,
            dir: dir.to_path_buf(),
            _tmp: None,
        })
    }

    /// Sends a request with an optional body and extra headers.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(60))
            .build();
        let mut req = agent.request(method, &format!("{}{}", self.base, path));
        for (k, v) in headers {
            req = req.set(k, v);
        }
        let result = match body {
            Some(b) => req.send_bytes(b),
            None => req.call(),
        };
        let resp = match result {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{method} {path}: {e}"),
        };
        let status = resp.status();
        let headers = resp
            .headers_names()
            .into_iter()
            .map(|n| {
                let v = resp.header(&n).unwrap_or("").to_string();
                (n, v)
            })
            .collect();
        let text = resp.into_string().unwrap_or_default();
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer {
            status,
            json,
            text,
            headers,
        }
    }

    pub fn get(&self, path: &str) -> Answer {
        self.request("GET", path, None, &[])
    }
    pub fn put(&self, path: &str) -> Answer {
        self.request("PUT", path, None, &[])
    }
    pub fn delete(&self, path: &str) -> Answer {
        self.request("DELETE", path, None, &[])
    }
    pub fn post_json(&self, path: &str, body: &Value) -> Answer {
        self.request(
            "POST",
            path,
            Some(body.to_string().as_bytes()),
            &[("content-type", "application/json")],
        )
    }
    pub fn post_raw(&self, path: &str, body: &[u8]) -> Answer {
        self.request("POST", path, Some(body), &[])
    }

    /// Creates a table, asserting success.
    pub fn create_table(&self, name: &str, def: &Value) {
        let a = self.post_json(&format!("/v1/table/{name}"), def);
        assert_eq!(a.status, 200, "create {name}: {}", a.text);
    }

    /// Inserts records, asserting a 200, and returns the answer.
    pub fn insert_ok(&self, table: &str, records: &Value) -> Answer {
        let a = self.post_json(&format!("/v1/insert/{table}"), records);
        assert_eq!(a.status, 200, "insert: {}", a.text);
        a
    }

    /// The customer's events as (stamp, event) pairs.
    pub fn events_of(&self, table: &str, id: &str) -> Vec<(i64, String)> {
        let a = self.get(&format!("/v1/query/{table}/customer?id={id}"));
        assert_eq!(a.status, 200, "customer {id}: {}", a.text);
        a.json["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["stamp"].as_i64().unwrap(),
                    e["event"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    /// Kills the process and starts a new one on the same data directory,
    /// keeping ownership of the temporary directory.
    pub fn restart(&mut self, args: &[&str]) -> Result<(), String> {
        self.kill();
        let next = Server::start_in(&self.dir, args)?;
        let old = std::mem::replace(self, next);
        self._tmp = old.tmp_handoff();
        Ok(())
    }

    fn tmp_handoff(mut self) -> Option<tempfile::TempDir> {
        self._tmp.take()
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A small deterministic generator for test data (seed printed by callers).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A server on `partitions` partitions with the highstreet sample loaded.
pub fn highstreet_server(partitions: &str) -> Server {
    let s = Server::start(&["--partitions", partitions]);
    s.create_table("highstreet", &highstreet_table());
    s.insert_ok("highstreet", &highstreet_events());
    s
}

/// The highstreet table of the sample data.
pub fn highstreet_table() -> Value {
    serde_json::from_str(include_str!("../../../../examples/highstreet_table.json")).unwrap()
}

/// The highstreet sample events.
pub fn highstreet_events() -> Value {
    serde_json::from_str(include_str!("../../../../examples/highstreet.json")).unwrap()
}
