//! `callm serve`: options and the entry point that runs the OpenAI-compatible server.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;

use crate::chat::{ChatBackend, RenamedBackend};
use crate::engine::scheduler::{SchedulerConfig, DEFAULT_MAX_BATCH};
use crate::request::{Effort, ReasoningControl};
use crate::server::{router, serve_on, Access, AppState};

/// How long open requests may take to finish after SIGINT/SIGTERM.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Options of `callm serve` (flattened next to the model options).
#[derive(Debug, Clone, clap::Args)]
pub struct ServeOptions {
    /// Address to bind (loopback by default; use 0.0.0.0 to expose the server).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Require `Authorization: Bearer KEY` on API routes (an empty key is refused). Without
    /// a key, only loopback `Host`s and `Origin`s are answered (see --allow-host).
    #[arg(long, env = "CALLM_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Without --api-key: also answer requests for this `Host` name or address (repeatable
    /// or comma-separated; `*` for any), for deliberate LAN use.
    #[arg(long, value_delimiter = ',')]
    pub allow_host: Vec<String>,
    /// Without --api-key: also answer browser requests from this origin, e.g.
    /// `http://app.lan:3000` (repeatable or comma-separated; `*` for any).
    #[arg(long, value_delimiter = ',')]
    pub allow_origin: Vec<String>,
    /// Model id announced by `/v1/models` and required in requests (default: the model's name).
    #[arg(long)]
    pub served_model_name: Option<String>,
    /// Generations that run at the same time, batched into one forward pass per step.
    #[arg(long, default_value_t = DEFAULT_MAX_BATCH)]
    pub max_concurrent: usize,
    /// Memory the running generations' KV caches may reserve, in MiB (default: the context
    /// window times --max-concurrent); a request that does not fit waits for memory.
    #[arg(long)]
    pub kv_cache_mb: Option<usize>,
    /// Requests that may wait for a slot; more are refused with 429.
    #[arg(long, default_value_t = 64)]
    pub queue: usize,
    /// Largest accepted request body in bytes.
    #[arg(long, default_value_t = 16 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Memory for stored Responses API responses (`store: true`, `previous_response_id`), in
    /// MiB; the least recently used go first; 0 stores nothing.
    #[arg(long, env = "CALLM_RESPONSE_STORE_MB", default_value_t = crate::server::DEFAULT_STORE_MB)]
    pub response_store_mb: usize,
    /// The reasoning effort of requests that set none (`none` turns a thinking model's
    /// reasoning off unless a request turns it on); a request's own setting wins.
    #[arg(long, value_name = "LEVEL", value_parser = parse_effort)]
    pub reasoning_effort: Option<Effort>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            host: "127.0.0.1".to_string(),
            port: 8080,
            api_key: None,
            allow_host: Vec::new(),
            allow_origin: Vec::new(),
            served_model_name: None,
            max_concurrent: DEFAULT_MAX_BATCH,
            kv_cache_mb: None,
            queue: 64,
            max_body_bytes: 16 * 1024 * 1024,
            response_store_mb: crate::server::DEFAULT_STORE_MB,
            reasoning_effort: None,
        }
    }
}

impl ServeOptions {
    /// The reasoning settings of requests that ask for none.
    pub fn reasoning(&self) -> ReasoningControl {
        self.reasoning_effort
            .map(ReasoningControl::effort)
            .unwrap_or_default()
    }

    /// The scheduler settings these options ask for.
    pub fn batch(&self) -> SchedulerConfig {
        SchedulerConfig {
            max_batch: self.max_concurrent.max(1),
            kv_budget_bytes: self.kv_cache_mb.map(|mb| mb.saturating_mul(1 << 20)),
            ..Default::default()
        }
    }
}

/// `--reasoning-effort LEVEL`.
fn parse_effort(level: &str) -> Result<Effort, String> {
    Effort::parse("--reasoning-effort", level)
        .map_err(|_| format!("expected one of {}", Effort::NAMES.join(", ")))
}

/// Installs a `tracing` subscriber for the server log (`RUST_LOG`, default `info`);
/// does nothing if one is already installed.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Resolves when the process gets SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing open requests");
}

/// Runs the server for `backend` until SIGINT/SIGTERM (served as `--served-model-name`
/// when given, else as `backend.model_id()`).
pub async fn serve(backend: Arc<dyn ChatBackend>, opts: &ServeOptions) -> anyhow::Result<()> {
    if opts.api_key.as_deref().is_some_and(|k| k.trim().is_empty()) {
        anyhow::bail!(
            "--api-key (or CALLM_API_KEY) is empty: give a non-empty key, or leave it out to \
             serve without authentication (loopback clients only)"
        );
    }
    let backend: Arc<dyn ChatBackend> = match opts.served_model_name.as_deref() {
        Some(name) if !name.is_empty() && name != backend.model_id() => {
            Arc::new(RenamedBackend::new(backend, name))
        }
        _ => backend,
    };
    let ip: std::net::IpAddr = opts
        .host
        .parse()
        .with_context(|| format!("--host {:?} is not an IP address", opts.host))?;
    let addr = SocketAddr::new(ip, opts.port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr().context("listener address")?;
    let model = backend.model_id().to_string();
    let state = AppState::new(
        backend,
        opts.max_concurrent,
        opts.queue,
        opts.api_key.clone(),
    )
    .with_access(Access::new(&opts.allow_host, &opts.allow_origin))
    .with_response_store(opts.response_store_mb.saturating_mul(1 << 20));
    let app = router(state, opts.max_body_bytes);
    println!("callm serving {model} on http://{local}/v1 (OpenAI- and Anthropic-compatible)");
    tracing::info!(%local, model, max_concurrent = opts.max_concurrent, queue = opts.queue,
        auth = opts.api_key.is_some(), "listening");
    if opts.api_key.is_none() && !ip.is_loopback() {
        tracing::warn!(
            "no --api-key on a non-loopback address: anyone on the network may use this server \
             by its address; names need --allow-host (see SECURITY.md)"
        );
    }
    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let server = serve_on(listener, app, async move {
        shutdown_signal().await;
        let _ = stopping_tx.send(());
    });
    let deadline = async move {
        if stopping_rx.await.is_ok() {
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        result = server => result.context("server failed")?,
        _ = deadline => tracing::warn!("open requests did not finish in time; closing them"),
    }
    Ok(())
}
