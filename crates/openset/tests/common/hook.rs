//! A real webhook receiver for subscription tests: a tiny HTTP/1.1 server
//! on a loopback port that records every call and answers with a status the
//! test chooses. It can be stopped and started again on the same port, and
//! speak HTTPS instead (`start_tls`, `self_signed`).
#![allow(dead_code)]

use serde_json::Value;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One call the hook received.
#[derive(Clone, Debug)]
pub struct Call {
    pub method: String,
    pub path: String,
    pub params: HashMap<String, String>,
    pub body: Value,
    /// The status the hook answered.
    pub status: u16,
}

impl Call {
    pub fn param(&self, k: &str) -> &str {
        self.params.get(k).map_or("", String::as_str)
    }
    pub fn messages(&self) -> Vec<Value> {
        self.body["messages"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

/// A running (or stopped) receiver.
pub struct Hook {
    pub port: u16,
    calls: Arc<Mutex<Vec<Call>>>,
    status: Arc<AtomicU16>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    tls: Option<Arc<rustls::ServerConfig>>,
}

/// A self-signed certificate for 127.0.0.1 and localhost: its PEM file
/// (written in `dir`, to hand the server as a trusted CA) and a TLS config
/// for a hook that presents it.
pub fn self_signed(dir: &Path) -> (PathBuf, Arc<rustls::ServerConfig>) {
    let ck =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let pem = dir.join("hook-cert.pem");
    std::fs::write(&pem, ck.cert.pem()).unwrap();
    let key = rustls::pki_types::PrivatePkcs8KeyDer::from(ck.key_pair.serialize_der());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![ck.cert.der().clone()], key.into())
        .unwrap();
    (pem, Arc::new(config))
}

impl Hook {
    /// Starts on a free port.
    pub fn start() -> Hook {
        Hook::start_with(None)
    }

    /// Starts on a free port, speaking only HTTPS with `tls`.
    pub fn start_tls(tls: Arc<rustls::ServerConfig>) -> Hook {
        Hook::start_with(Some(tls))
    }

    fn start_with(tls: Option<Arc<rustls::ServerConfig>>) -> Hook {
        let mut h = Hook {
            port: 0,
            calls: Arc::default(),
            status: Arc::new(AtomicU16::new(200)),
            stop: Arc::default(),
            thread: None,
            tls,
        };
        h.listen();
        h
    }

    fn listen(&mut self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).expect("bind hook");
        self.port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        self.stop = Arc::new(AtomicBool::new(false));
        let (calls, status, stop) = (self.calls.clone(), self.status.clone(), self.stop.clone());
        let tls = self.tls.clone();
        self.thread = Some(std::thread::spawn(move || {
            while !stop.load(Ordering::Acquire) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let status = status.load(Ordering::Acquire);
                        // A failed handshake (untrusted certificate) records nothing.
                        let _ = match &tls {
                            None => serve(conn, &calls, status),
                            Some(t) => serve_tls(conn, t.clone(), &calls, status),
                        };
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        }));
    }

    /// Closes the port: calls fail to connect until `restart`.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// Listens again on the same port.
    pub fn restart(&mut self) {
        self.listen();
    }

    /// The status later calls get.
    pub fn answer(&self, status: u16) {
        self.status.store(status, Ordering::Release);
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    /// Messages of calls answered 2xx, in arrival order.
    pub fn delivered(&self) -> Vec<Value> {
        self.calls()
            .iter()
            .filter(|c| c.status == 200)
            .flat_map(|c| c.messages())
            .collect()
    }

    /// Polls until `n` messages were delivered (panics after 30 s).
    pub fn wait_for(&self, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let got = self.delivered();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "waited for {n} messages, got {}: {got:?}",
                got.len()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Polls until `pred` holds for the calls (panics after 30 s).
    pub fn wait_until(&self, what: &str, pred: impl Fn(&[Call]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !pred(&self.calls()) {
            assert!(
                Instant::now() < deadline,
                "waited for {what}: {:?}",
                self.calls()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Hook {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve(mut conn: TcpStream, calls: &Mutex<Vec<Call>>, status: u16) -> std::io::Result<()> {
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    handle(&mut conn, calls, status)
}

fn serve_tls(
    conn: TcpStream,
    tls: Arc<rustls::ServerConfig>,
    calls: &Mutex<Vec<Call>>,
    status: u16,
) -> std::io::Result<()> {
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let session = rustls::ServerConnection::new(tls).map_err(std::io::Error::other)?;
    let mut stream = rustls::StreamOwned::new(session, conn);
    handle(&mut stream, calls, status)?;
    stream.conn.send_close_notify();
    stream.flush()
}

/// Reads one request from `conn`, records it and answers `status`.
fn handle<S: Read + Write>(
    conn: &mut S,
    calls: &Mutex<Vec<Call>>,
    status: u16,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(&mut *conn);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        reader.read_line(&mut h)?;
        if h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; len];
    reader.read_exact(&mut body)?;
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let params = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    calls.lock().unwrap().push(Call {
        method,
        path: path.to_string(),
        params,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        status,
    });
    drop(reader);
    let w = conn;
    write!(
        w,
        "HTTP/1.1 {status} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
    )?;
    w.flush()
}
