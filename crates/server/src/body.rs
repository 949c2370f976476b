//! Request bodies: size limits and `Content-Encoding: gzip` (rest spec 1.2, 1.10).

use crate::error::ApiError;
use axum::body::Body;
use axum::http::{HeaderMap, StatusCode};
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Longest wait for a whole body, in ms (`set_read_timeout`).
static READ_TIMEOUT_MS: AtomicU64 = AtomicU64::new(30_000);

/// Sets how long a client may take to send a body once its headers arrived.
pub fn set_read_timeout(t: Duration) {
    READ_TIMEOUT_MS.store(t.as_millis().max(1) as u64, Ordering::Relaxed);
}

/// Reads a whole body, decoding gzip, refusing more than `limit` bytes raw or decoded.
pub async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    class: &'static str,
) -> Result<Vec<u8>, ApiError> {
    let too_big = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            class,
            "general_error",
            format!("request body is over the limit of {limit} bytes"),
        )
    };
    let wait = Duration::from_millis(READ_TIMEOUT_MS.load(Ordering::Relaxed));
    let raw = tokio::time::timeout(wait, axum::body::to_bytes(body, limit))
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                class,
                "general_error",
                format!("request body not received within {} ms", wait.as_millis()),
            )
        })?
        .map_err(|_| too_big())?;
    let encoding = headers
        .get("content-encoding")
        .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase())
        .unwrap_or_default();
    match encoding.as_str() {
        "" | "identity" => Ok(raw.to_vec()),
        "gzip" | "x-gzip" => {
            let mut out = Vec::new();
            let mut dec = flate2::read::MultiGzDecoder::new(&raw[..]).take(limit as u64 + 1);
            dec.read_to_end(&mut out).map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    class,
                    "general_error",
                    format!("body is not valid gzip: {e}"),
                )
            })?;
            if out.len() > limit {
                return Err(too_big());
            }
            Ok(out)
        }
        other => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            class,
            "general_error",
            format!("unsupported Content-Encoding '{other}'; use gzip or none"),
        )),
    }
}
