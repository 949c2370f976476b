//! Webhook calls: the test call made on subscribe, and one delivery thread
//! per subscription (rest spec 6.4, 6.6): batches of up to 500 in `seq`
//! order, one call in flight, exponential back-off with jitter on failure.

use crate::{now_ms, Sub, Target};
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most messages in one call.
pub const MAX_BATCH: usize = 500;
const FIRST_BACKOFF_MS: u64 = 250;
const MAX_BACKOFF_MS: u64 = 5 * 60 * 1000;

/// The HTTP client every subscription shares: 2 s to connect, 30 s per call.
pub fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(2))
        .timeout(Duration::from_secs(30))
        .redirects(0)
        .user_agent(concat!("openset/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Posts `body` to the hook; `Err` with a reason unless it answers 2xx.
fn post(agent: &ureq::Agent, url: &str, body: &Value) -> Result<(), String> {
    match agent
        .post(url)
        .set("content-type", "application/json")
        .send_string(&body.to_string())
    {
        Ok(r) if (200..300).contains(&r.status()) => Ok(()),
        Ok(r) => Err(format!("HTTP {} from {url}", r.status())),
        Err(ureq::Error::Status(code, _)) => Err(format!("HTTP {code} from {url}")),
        Err(e) => Err(format!("{e}")),
    }
}

/// The test call of rest spec 6.4: an empty batch that must be answered 2xx.
pub fn test_call(
    agent: &ureq::Agent,
    target: &Target,
    segment: &str,
    subscriber: &str,
) -> Result<(), String> {
    post(
        agent,
        &target.url(segment, subscriber, 0, 0, 0),
        &json!({ "messages": [] }),
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

/// Delivers `sub`'s stream until the subscription is removed.
pub fn run(agent: ureq::Agent, sub: Arc<Sub>) {
    let mut backoff = 0u64;
    let mut jitter = Jitter::new();
    loop {
        let target = sub.target();
        // Wait for messages; drop expired ones before every attempt.
        let (body, url, last_seq, dropped) = {
            let mut st = sub.lock();
            loop {
                if sub.stop.load(Ordering::Acquire) {
                    return;
                }
                st.queue.expire(now_ms(), target.retention);
                if !st.queue.pending.is_empty() {
                    break;
                }
                st = sub
                    .wake
                    .wait_timeout(st, Duration::from_secs(1))
                    .map_or_else(|e| e.into_inner().0, |r| r.0);
            }
            let n = st.queue.pending.len().min(MAX_BATCH);
            let msgs: Vec<Value> = st
                .queue
                .pending
                .iter()
                .take(n)
                .map(|m| m.to_json())
                .collect();
            let last_seq = st.queue.pending[n - 1].seq;
            let remaining = st.queue.pending.len() - n;
            let dropped = st.queue.unreported();
            let url = target.url(&sub.segment, &sub.subscriber, n, remaining, dropped);
            (json!({ "messages": msgs }), url, last_seq, dropped)
        };
        let outcome = post(&agent, &url, &body);
        let mut st = sub.lock();
        if st.removed {
            return;
        }
        match outcome {
            Ok(()) => {
                if let Err(e) = st.queue.ack(last_seq, dropped) {
                    tracing::warn!(error = %e, "cannot record a delivery; it may be sent again");
                }
                st.last_success = Some(now_ms());
                st.last_error = None;
                st.failing = false;
                backoff = 0;
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
