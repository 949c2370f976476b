//! `openset`: the command-line entry point. Wires the store to the HTTP
//! server; holds no logic of its own beyond start-up.

mod memory;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// The sample data set that ships with the binary (`--sample-data`).
const HIGHSTREET_EVENTS: &str = include_str!("../../../examples/highstreet.json");
/// Its table definition.
const HIGHSTREET_TABLE: &str = include_str!("../../../examples/highstreet_table.json");

#[derive(Parser)]
#[command(
    name = "openset",
    version,
    about = "OpenSet: a programmable customer-event analytics database"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API on a data directory.
    Serve(ServeArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "OPENSET_HOST", default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on (0 picks a free one; the address is printed on stdout).
    #[arg(long, env = "OPENSET_PORT", default_value_t = 8080)]
    port: u16,
    /// Directory for the catalog, logs and snapshots.
    #[arg(long, env = "OPENSET_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,
    /// Initialise a fresh node as a one-node cluster with this many partitions.
    #[arg(long, env = "OPENSET_PARTITIONS")]
    partitions: Option<u32>,
    /// Log level: error, warn, info, debug, trace.
    #[arg(long, env = "OPENSET_LOG_LEVEL", default_value = "info")]
    log_level: tracing::Level,
    /// Create the `highstreet` sample table and load its events if it does not exist.
    #[arg(long, env = "OPENSET_SAMPLE_DATA")]
    sample_data: bool,
    /// Snapshot a partition once its log holds this many bytes.
    #[arg(long, env = "OPENSET_SNAPSHOT_BYTES", default_value_t = 256 << 20)]
    snapshot_bytes: u64,
    /// Largest request body, raw or gzip-decoded, in bytes.
    #[arg(long, env = "OPENSET_MAX_BODY_BYTES", default_value_t = 32 << 20)]
    max_body_bytes: usize,
    /// Most records in one insert request.
    #[arg(long, env = "OPENSET_MAX_INSERT_RECORDS", default_value_t = 100_000)]
    max_insert_records: usize,
    /// Report every 4xx other than 401 and 403 as 400, as the original did.
    #[arg(long, env = "OPENSET_LEGACY_STATUS_CODES")]
    legacy_status_codes: bool,
    /// Require credentials even before any user exists (auth is always on
    /// once a user exists). The first user registers without a credential.
    #[arg(long, env = "OPENSET_AUTH")]
    auth: bool,
    /// Allow listening on a non-loopback address with authentication off.
    #[arg(long, env = "OPENSET_INSECURE")]
    insecure: bool,
    /// PEM certificate chain: serve HTTPS (needs --tls-key).
    #[arg(long, env = "OPENSET_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "OPENSET_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// PEM file of extra CA certificates trusted for `https` webhooks,
    /// besides the bundled web roots (a private CA or a self-signed hook).
    #[arg(long, env = "OPENSET_WEBHOOK_CA_FILE")]
    webhook_ca_file: Option<PathBuf>,
    /// Lifetime of bearer tokens, in seconds.
    #[arg(long, env = "OPENSET_TOKEN_TTL_SECS", default_value_t = 3600)]
    token_ttl_secs: u64,
    /// Longest a query may run (ms); a request's `timeout=` may only shorten it.
    #[arg(long, env = "OPENSET_QUERY_TIMEOUT_MS", default_value_t = 300_000)]
    query_timeout_ms: u64,
    /// Most branches in one query's result tree.
    #[arg(long, env = "OPENSET_MAX_RESULT_NODES", default_value_t = 1_000_000)]
    max_result_nodes: u64,
    /// Largest OSL script in one request, in bytes.
    #[arg(long, env = "OPENSET_MAX_SCRIPT_BYTES", default_value_t = 1 << 20)]
    max_script_bytes: usize,
    /// Longest URL (path and query string), in bytes.
    #[arg(long, env = "OPENSET_MAX_URL_BYTES", default_value_t = 16 << 10)]
    max_url_bytes: usize,
    /// Largest header block of a request, in bytes (431 above).
    #[arg(long, env = "OPENSET_MAX_HEADER_BYTES", default_value_t = 64 << 10)]
    max_header_bytes: usize,
    /// Most header lines in a request (431 above).
    #[arg(long, env = "OPENSET_MAX_HEADERS", default_value_t = 100)]
    max_headers: usize,
    /// Longest wait for a request's headers or a TLS handshake (ms). This
    /// also bounds how long an idle keep-alive connection stays open, so the
    /// default is a common keep-alive period rather than a few seconds.
    #[arg(long, env = "OPENSET_HEADER_TIMEOUT_MS", default_value_t = 60_000)]
    header_timeout_ms: u64,
    /// Longest wait for a request's body once its headers arrived (ms; 408 after).
    #[arg(long, env = "OPENSET_BODY_TIMEOUT_MS", default_value_t = 30_000)]
    body_timeout_ms: u64,
    /// Most client connections served at once (more wait to be accepted).
    #[arg(long, env = "OPENSET_MAX_CONNECTIONS", default_value_t = 4096)]
    max_connections: usize,
    /// Finished queries kept for `GET /query-history`.
    #[arg(long, env = "OPENSET_QUERY_HISTORY_LENGTH", default_value_t = 100)]
    query_history_length: usize,
    /// Test-only: run retention this often (ms) instead of each table's `maint_interval`.
    #[arg(long, hide = true)]
    maint_interval_ms: Option<u64>,
    /// Test-only: run queries without index pre-filters.
    #[arg(long, hide = true)]
    no_prefilter: bool,
    /// Test-only fault injection: log appends fail after this many bytes.
    #[arg(long, hide = true, env = "OPENSET_FAULT_LOG_FULL_AFTER_BYTES")]
    fault_log_full_after_bytes: Option<u64>,
}

fn main() {
    memory::configure();
    let cli = Cli::parse();
    let Command::Serve(args) = cli.command;
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_max_level(args.log_level)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = serve(args) {
        eprintln!("openset: {e}");
        std::process::exit(1);
    }
}

fn serve(args: ServeArgs) -> Result<(), String> {
    let config = store::DbConfig {
        data_dir: args.data_dir.clone(),
        snapshot_bytes: args.snapshot_bytes,
        fail_log_after_bytes: args.fault_log_full_after_bytes,
    };
    let db = store::Db::open(config).map_err(|e| e.to_string())?;
    if let Some(n) = args.partitions {
        if !db.is_initialized() {
            let name = db
                .init(n, None)
                .map_err(|e| format!("--partitions {n}: {e}"))?;
            tracing::info!(name, partitions = n, "initialised as a one-node cluster");
        }
    }
    if args.sample_data {
        load_sample(&db)?;
    }
    let segments = query::segment::SegmentRegistry::new();
    let webhook_tls = server::listen::tls_client_config(subscriptions::webhook_roots(
        args.webhook_ca_file.as_deref(),
    )?)?;
    let subs = subscriptions::Hub::open(&args.data_dir, &db.catalog(), webhook_tls)
        .map_err(|e| format!("opening subscriptions: {e}"))?;
    segments.set_sink(subs.clone());
    // on_insert segments first, then re-event triggers.
    db.set_observer(subs.observer(segments.clone()));
    if db.is_initialized() {
        // Subscribed segments start from their last announced membership,
        // so this announces exactly what changed while the server was down.
        segments
            .recompute_all(&db)
            .map_err(|e| format!("recomputing segments: {e:?}"))?;
        subs.compact_journals(&db);
    }
    let auth = Arc::new(server_auth(&args)?);
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(c), Some(k)) => Some(server::listen::tls_server_config(c, k)?),
        _ => None,
    };
    subs.start()
        .map_err(|e| format!("starting subscription delivery: {e}"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
            .await
            .map_err(|e| format!("cannot listen on {}:{}: {e}", args.host, args.port))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        // Safe default: an open server only where only this machine can reach it.
        if !addr.ip().is_loopback() && !auth.enabled() && !args.insecure {
            return Err(format!(
                "refusing to listen on {addr} with authentication off: anyone who can reach it \
                 could read and change all data. Register a user (or pass --auth and register \
                 the first user from this machine), listen on 127.0.0.1, or pass --insecure \
                 to accept the risk"
            ));
        }
        let state = Arc::new(server::AppState {
            db,
            segments,
            subs,
            config: server::ServerConfig {
                public_address: addr.to_string(),
                max_body: args.max_body_bytes,
                max_records: args.max_insert_records,
                prefilter: !args.no_prefilter,
                legacy_status_codes: args.legacy_status_codes,
                max_script: args.max_script_bytes,
                max_url: args.max_url_bytes,
                query_timeout: std::time::Duration::from_millis(args.query_timeout_ms.max(1)),
                max_result_nodes: args.max_result_nodes,
                body_timeout: std::time::Duration::from_millis(args.body_timeout_ms.max(1)),
                ..Default::default()
            },
            started: Instant::now(),
            auth,
            metrics: Default::default(),
            activity: server::activity::Activity::new(args.query_history_length),
            data_dir: args.data_dir.clone(),
        });
        let listen = server::listen::ListenConfig {
            header_timeout: std::time::Duration::from_millis(args.header_timeout_ms.max(1)),
            max_header_bytes: args.max_header_bytes,
            max_headers: args.max_headers,
            max_connections: args.max_connections,
            tls,
        };
        let scheme = if listen.tls.is_some() { "https" } else { "http" };
        // Segments with `refresh` are re-evaluated in the background.
        let refresher = state.clone();
        std::thread::Builder::new()
            .name("segment-refresh".into())
            .spawn(move || {
                let mut release = memory::Release::default();
                loop {
                    std::thread::sleep(std::time::Duration::from_secs(1));
                    let mut events = None;
                    if refresher.db.is_initialized() {
                        refresher.segments.refresh_due(&refresher.db);
                        events = Some(refresher.db.counts().events);
                    }
                    if release.due(events) {
                        memory::release_free();
                    }
                }
            })
            .map_err(|e| e.to_string())?;
        // Scheduled runs of re-event triggers.
        let timers = state.clone();
        std::thread::Builder::new()
            .name("revent-timers".into())
            .spawn(move || loop {
                std::thread::sleep(std::time::Duration::from_millis(100));
                timers.subs.fire_timers(&timers.db);
            })
            .map_err(|e| e.to_string())?;
        // Retention (event_ttl / event_max) runs per table every maint_interval.
        let keeper = state.clone();
        let override_ms = args.maint_interval_ms;
        std::thread::Builder::new()
            .name("retention".into())
            .spawn(move || retention_loop(&keeper.db, override_ms))
            .map_err(|e| e.to_string())?;
        // Tests and scripts read this line to learn the port.
        println!("listening on {addr}");
        tracing::info!(%addr, scheme, auth = state.auth.enabled(), data_dir = %args.data_dir.display(), "serving");
        server::serve(listener, state, listen)
            .await
            .map_err(|e| e.to_string())
    })
}

fn server_auth(args: &ServeArgs) -> Result<auth::AuthStore, String> {
    std::fs::create_dir_all(&args.data_dir)
        .map_err(|e| format!("{}: {e}", args.data_dir.display()))?;
    auth::AuthStore::open(
        &args.data_dir,
        args.auth,
        std::time::Duration::from_secs(args.token_ttl_secs),
    )
}

/// Runs each table's retention when its `maint_interval` (or the test
/// override) has passed since the last run.
fn retention_loop(db: &store::Db, override_ms: Option<u64>) {
    let mut last: std::collections::HashMap<u64, Instant> = std::collections::HashMap::new();
    loop {
        std::thread::sleep(std::time::Duration::from_millis(
            override_ms.unwrap_or(1000).min(1000),
        ));
        if !db.is_initialized() {
            continue;
        }
        for (name, schema) in db.catalog().tables.iter() {
            let every = override_ms.unwrap_or(schema.settings.maint_interval.max(0) as u64);
            let due = last
                .get(&schema.uid)
                .is_none_or(|t| t.elapsed().as_millis() as u64 >= every);
            if !due {
                continue;
            }
            last.insert(schema.uid, Instant::now());
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            if let Err(e) = db.run_retention(name, now) {
                tracing::warn!(table = %name, error = %e, "retention failed");
            }
        }
    }
}

fn load_sample(db: &store::Db) -> Result<(), String> {
    if !db.is_initialized() {
        return Err("--sample-data needs an initialised node: add --partitions N".into());
    }
    if db.table("highstreet").is_ok() {
        return Ok(());
    }
    let def: serde_json::Value =
        serde_json::from_str(HIGHSTREET_TABLE).map_err(|e| e.to_string())?;
    db.create_table("highstreet", &def)
        .map_err(|e| e.to_string())?;
    let raw =
        store::ingest::parse_body(HIGHSTREET_EVENTS.as_bytes(), false).map_err(|e| e.detail)?;
    let report = db
        .insert("highstreet", raw, store::InsertOptions::default(), 0)
        .map_err(|e| e.to_string())?;
    if report.rejected > 0 {
        return Err(format!("sample data rejected: {:?}", report.errors));
    }
    tracing::info!(events = report.accepted, "loaded sample table highstreet");
    Ok(())
}
