//! The accept loop: plain HTTP or HTTPS (rustls), one task per connection,
//! with limits on header size and count and timeouts for slow clients
//! (TLS handshake, request headers, request body).

use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

/// Connection-level limits.
#[derive(Clone, Debug)]
pub struct ListenConfig {
    /// Longest wait for a request's headers (and for a TLS handshake).
    pub header_timeout: Duration,
    /// Largest header block (bytes); hyper answers 431 above it.
    pub max_header_bytes: usize,
    /// Most header lines in one request; hyper answers 431 above it.
    pub max_headers: usize,
    /// Most connections served at once; further ones wait in the kernel's
    /// accept queue until one closes.
    pub max_connections: usize,
    /// HTTPS when set.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl Default for ListenConfig {
    fn default() -> Self {
        ListenConfig {
            header_timeout: Duration::from_secs(60),
            max_header_bytes: 64 << 10,
            max_headers: 100,
            max_connections: 4096,
            tls: None,
        }
    }
}

/// The rustls provider every TLS config of this server uses (ring: builds
/// with a C compiler only).
pub fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server TLS config from a PEM certificate chain and a PEM private key.
pub fn tls_server_config(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<Arc<rustls::ServerConfig>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("--tls-cert {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("--tls-cert {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "--tls-cert {}: no certificate found",
            cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("--tls-key {}: {e}", key.display()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("TLS certificate and key: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A client TLS config trusting `roots` (for HTTPS webhooks).
pub fn tls_client_config(
    roots: rustls::RootCertStore,
) -> Result<Arc<rustls::ClientConfig>, String> {
    Ok(Arc::new(
        rustls::ClientConfig::builder_with_provider(crypto_provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ))
}

/// Serves `app` on `listener` until the process ends.
pub async fn run(
    listener: TcpListener,
    app: axum::Router,
    cfg: ListenConfig,
) -> std::io::Result<()> {
    let acceptor = cfg.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    let slots = Arc::new(tokio::sync::Semaphore::new(cfg.max_connections.max(1)));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return Ok(());
        };
        let (tcp, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of descriptors and the like: wait, do not spin or die.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let app = app.clone();
        let cfg = cfg.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _slot = slot;
            match acceptor {
                None => serve_conn(tcp, app, &cfg).await,
                Some(a) => match tokio::time::timeout(cfg.header_timeout, a.accept(tcp)).await {
                    Ok(Ok(tls)) => serve_conn(tls, app, &cfg).await,
                    Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!("TLS handshake timed out"),
                },
            }
        });
    }
}

async fn serve_conn<IO>(io: IO, app: axum::Router, cfg: &ListenConfig)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = tower::ServiceBuilder::new()
        .map_request(|r: hyper::Request<Incoming>| crate::strip_trailing_slash(r.map(Body::new)))
        .service(app);
    let result = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(cfg.header_timeout)
        .max_buf_size(cfg.max_header_bytes.max(8192))
        .max_headers(cfg.max_headers)
        .serve_connection(TokioIo::new(io), TowerToHyperService::new(svc))
        .await;
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}
