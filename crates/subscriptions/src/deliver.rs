//! Webhook calls: the test call made on subscribe, and one delivery thread
//! per subscription (rest spec 6.4, 6.6): batches of up to 500 in `seq`
//! order, one call in flight, exponential back-off with jitter on failure.

use crate::queue::Message;
use crate::{now_ms, CallCounts, Sub, Target};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most messages in one call.
pub const MAX_BATCH: usize = 500;
const FIRST_BACKOFF_MS: u64 = 250;
const MAX_BACKOFF_MS: u64 = 5 * 60 * 1000;
/// After an idle spell, how long the first messages wait for company, so a
/// stream of small insert groups makes full batches rather than one call
/// per group. Messages waiting after a success go at once.
const LINGER: Duration = Duration::from_millis(20);

/// The HTTP client every subscription shares: 2 s to connect, 30 s per
/// call, `tls` for `https` hooks.
pub fn agent(tls: Arc<rustls::ClientConfig>) -> ureq::Agent {
    ureq::AgentBuilder::new()
        .tls_config(tls)
        .timeout_connect(Duration::from_secs(2))
        .timeout(Duration::from_secs(30))
        .redirects(0)
        .user_agent(concat!("openset/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Why a call failed.
pub enum CallError {
    /// The hook answered, but not 2xx.
    Status(String),
    /// No answer: connection, TLS or I/O failure, with a reason.
    Transport(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Status(s) | CallError::Transport(s) => f.write_str(s),
        }
    }
}

/// A transport failure in words, naming an untrusted certificate plainly
/// (ureq nests the rustls error in an `io::Error`).
fn transport_reason(e: &ureq::Error) -> String {
    let mut src: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = src {
        let tls = s.downcast_ref::<rustls::Error>().or_else(|| {
            s.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        match tls {
            Some(rustls::Error::InvalidCertificate(c)) => {
                return format!(
                    "TLS: the hook's certificate is not trusted ({c:?}); \
                     its CA can be added with --webhook-ca-file."
                )
            }
            Some(t) => return format!("TLS handshake failed: {t}."),
            None => src = s.source(),
        }
    }
    match e {
        ureq::Error::Transport(t) => match (t.message(), std::error::Error::source(t)) {
            (_, Some(s)) => format!("{}: {s}.", t.kind()),
            (Some(m), None) => format!("{}: {m}.", t.kind()),
            (None, None) => format!("{}.", t.kind()),
        },
        other => format!("{other}."),
    }
}

/// Posts `body` to the hook; `Err` with a reason unless it answers 2xx.
fn post(agent: &ureq::Agent, url: &str, body: &str) -> Result<(), CallError> {
    match agent
        .post(url)
        .set("content-type", "application/json")
        .send_string(body)
    {
        Ok(r) if (200..300).contains(&r.status()) => Ok(()),
        Ok(r) => Err(CallError::Status(format!("HTTP {} from {url}", r.status()))),
        Err(ureq::Error::Status(code, _)) => {
            Err(CallError::Status(format!("HTTP {code} from {url}")))
        }
        Err(e) => Err(CallError::Transport(transport_reason(&e))),
    }
}

/// The test call of rest spec 6.4: an empty batch that must be answered 2xx.
pub fn test_call(
    agent: &ureq::Agent,
    target: &Target,
    segment: &str,
    subscriber: &str,
) -> Result<(), CallError> {
    post(
        agent,
        &target.url(segment, subscriber, 0, 0, 0),
        r#"{"messages":[]}"#,
    )
}

/// A small xorshift for back-off jitter (no need for a random crate).
struct Jitter(u64);

impl Jitter {
    fn new() -> Jitter {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.subsec_nanos() as u64);
        Jitter(nanos | 1)
    }
    /// `ms` plus up to 20 %.
    fn add(&mut self, ms: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ms + self.0 % (ms / 5 + 1)
    }
}

/// Writes the subscription's position file if it changed. Only the delivery
/// thread writes it, outside the lock appends take (an fsync there would
/// stall inserts), then drops acknowledged messages from the queue file.
fn persist(sub: &Sub) {
    let Some((path, bytes)) = sub.lock().queue.state_snapshot() else {
        return;
    };
    if let Err(e) = crate::frame::replace(&path, &bytes) {
        tracing::warn!(error = %e, "cannot record a delivery; it may be sent again");
        return;
    }
    let mut st = sub.lock();
    if st.removed {
        // Deleted meanwhile: leave nothing behind.
        let _ = std::fs::remove_file(&path);
        return;
    }
    if let Err(e) = st.queue.after_saved() {
        tracing::warn!(error = %e, "cannot compact a subscription queue");
    }
}

/// Delivers `sub`'s stream until the subscription is removed, counting
/// calls in `calls`.
pub fn run(agent: ureq::Agent, sub: Arc<Sub>, calls: &CallCounts) {
    let mut backoff = 0u64;
    let mut jitter = Jitter::new();
    loop {
        let target = sub.target();
        // Wait for messages; drop expired ones before every attempt.
        let (msgs, remaining, dropped) = {
            let mut st = sub.lock();
            let mut idle = false;
            loop {
                if sub.stop.load(Ordering::Acquire) {
                    return;
                }
                st.queue.expire(now_ms(), target.retention);
                if !st.queue.pending.is_empty() {
                    break;
                }
                idle = true;
                if st.queue.state_dirty {
                    // Drops by retention or the bound, while idle.
                    drop(st);
                    persist(&sub);
                    st = sub.lock();
                    continue;
                }
                st = sub
                    .wake
                    .wait_timeout(st, Duration::from_secs(1))
                    .map_or_else(|e| e.into_inner().0, |r| r.0);
            }
            if idle {
                let until = Instant::now() + LINGER;
                while st.queue.pending.len() < MAX_BATCH && !sub.stop.load(Ordering::Acquire) {
                    let left = until.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    st = sub
                        .wake
                        .wait_timeout(st, left)
                        .map_or_else(|e| e.into_inner().0, |r| r.0);
                }
            }
            // Copied out, so the hook's JSON is built without holding the
            // lock that appends (under a partition lock) need.
            let n = st.queue.pending.len().min(MAX_BATCH);
            let msgs: Vec<Message> = st.queue.pending.iter().take(n).cloned().collect();
            (msgs, st.queue.pending.len() - n, st.queue.unreported())
        };
        let Some(last_seq) = msgs.last().map(|m| m.seq) else {
            continue;
        };
        let url = target.url(
            &sub.segment,
            &sub.subscriber,
            msgs.len(),
            remaining,
            dropped,
        );
        let mut body = String::with_capacity(64 + msgs.len() * 160);
        body.push_str(r#"{"messages":["#);
        for (i, m) in msgs.iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            m.write_json(&mut body);
        }
        body.push_str("]}");
        drop(msgs);
        let mut outcome = post(&agent, &url, &body).map_err(|e| e.to_string());
        let counter = if outcome.is_ok() {
            &calls.ok
        } else {
            &calls.failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if outcome.is_ok() {
            // Durable before visible: a listing that shows it delivered
            // means a crash will not send it again.
            let next = sub.lock().queue.position_after(last_seq, dropped);
            if let Some((path, bytes)) = next {
                if let Err(e) = crate::frame::replace(&path, &bytes) {
                    outcome = Err(format!("cannot record the delivery: {e}"));
                }
            }
        }
        let mut st = sub.lock();
        if st.removed {
            // Deleted during the call: leave no position file behind.
            st.queue.remove();
            return;
        }
        match outcome {
            Ok(()) => {
                st.queue.ack(last_seq, dropped);
                st.last_success = Some(now_ms());
                st.last_error = None;
                st.failing = false;
                backoff = 0;
                if let Err(e) = st.queue.after_saved() {
                    tracing::warn!(error = %e, "cannot compact a subscription queue");
                }
            }
            Err(e) => {
                tracing::debug!(subscriber = %sub.subscriber, error = %e, "delivery failed");
                st.last_error = Some(e);
                st.failing = true;
                backoff = if backoff == 0 {
                    FIRST_BACKOFF_MS
                } else {
                    (backoff * 2).min(MAX_BACKOFF_MS)
                };
                // Sleep off the back-off; only removal cuts it short.
                let until = Instant::now() + Duration::from_millis(jitter.add(backoff));
                while !sub.stop.load(Ordering::Acquire) {
                    let left = until.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    st = sub
                        .wake
                        .wait_timeout(st, left)
                        .map_or_else(|e| e.into_inner().0, |r| r.0);
                }
            }
        }
    }
}
