//! The HTTP server: OpenAI's `/v1/chat/completions`, `/v1/completions` and
//! `/v1/responses`, Anthropic's `/v1/messages`, `/v1/models`, `/tokenize`, `/detokenize`
//! and `/health` (also without `/v1`), and `/metrics` (Prometheus), over any [`ChatBackend`].
//!
//! The only module that knows HTTP (status codes, axum, SSE). Handlers turn wire bodies
//! into domain requests through their API's edge (`crate::request::{openai, anthropic,
//! responses}`), run them on a backend (`crate::chat`) through one job
//! ([`chat::start_chat`]), and write the answers in their API's shapes.
//!
//! One module per job: [`routes`] (router, fallbacks), [`listen`] (the accept loop, header
//! read timeout), [`observe`] (request ids, the request log, 500s), [`guard`] and
//! [`access`] (`Host`/`Origin` of keyless servers, JSON content types, body size and read
//! timeout), [`auth`], [`queue`] (admission), [`extract`] (JSON bodies), [`error`] (error
//! kinds to statuses and OpenAI error bodies), [`run`] (blocking jobs and cancellation),
//! [`sse`], [`chat`] and [`chat_shape`], [`completions`], [`anthropic`] (Messages: handlers,
//! shapes, its error shape), [`responses`] (Responses: handlers, shapes, stream, the response
//! store), [`tokenize`], and (with the `mock` feature) `mock`, a deterministic test double of
//! the engine.

pub mod access;
pub mod anthropic;
pub mod auth;
pub mod chat;
pub mod chat_shape;
pub mod completions;
pub mod error;
pub mod extract;
pub mod guard;
pub mod listen;
#[cfg(feature = "mock")]
pub mod mock;
pub mod observe;
pub mod queue;
pub mod responses;
pub mod routes;
pub mod run;
pub mod sse;
pub mod tokenize;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

pub use access::Access;
pub use error::ApiError;
pub use listen::HEADER_READ_TIMEOUT;
pub use observe::RequestId;
pub use queue::Queue;
pub use responses::store::{ResponseStore, DEFAULT_STORE_MB};
pub use routes::router;

use crate::chat::{ChatBackend, TokenUsage};
use crate::metrics::Metrics;

/// State shared by all handlers.
#[derive(Clone)]
pub struct AppState {
    /// The engine.
    pub backend: Arc<dyn ChatBackend>,
    /// Admission control.
    pub queue: Arc<Queue>,
    /// The bearer token clients must send, if any (an empty key admits nobody: `serve`
    /// refuses one at start).
    pub api_key: Option<Arc<str>>,
    /// `Host`s and `Origin`s a keyless server accepts beyond loopback.
    pub access: Access,
    /// Time allowed to receive a whole request body.
    pub body_read_timeout: Duration,
    /// `system_fingerprint` of every answer.
    pub fingerprint: String,
    /// What `GET /metrics` reports: the backend's, plus the requests counted here.
    pub metrics: Arc<Metrics>,
    /// Stored Responses API responses (`store: true`).
    pub responses: Arc<ResponseStore>,
}

/// Time a client has to send a whole request body once its head arrived.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

impl AppState {
    /// State for `backend` with `max_concurrent` slots, `queue` waiting places and an
    /// optional key; loopback access only and the default body read timeout.
    pub fn new(
        backend: Arc<dyn ChatBackend>,
        max_concurrent: usize,
        queue: usize,
        api_key: Option<String>,
    ) -> Self {
        AppState {
            metrics: backend.metrics().unwrap_or_else(Metrics::new),
            backend,
            queue: Arc::new(Queue::new(max_concurrent, queue)),
            api_key: api_key.map(Arc::from),
            access: Access::default(),
            body_read_timeout: BODY_READ_TIMEOUT,
            fingerprint: format!("fp_callm_{}", env!("CARGO_PKG_VERSION").replace('.', "_")),
            responses: Arc::new(ResponseStore::new(DEFAULT_STORE_MB << 20)),
        }
    }

    /// The same state accepting `access` beyond loopback (when keyless).
    pub fn with_access(mut self, access: Access) -> Self {
        self.access = access;
        self
    }

    /// The same state with a response store of at most `max_bytes`.
    pub fn with_response_store(mut self, max_bytes: usize) -> Self {
        self.responses = Arc::new(ResponseStore::new(max_bytes));
        self
    }
}

/// Token counts of a finished response, put into its extensions for the request log.
#[derive(Debug, Clone, Copy)]
pub struct Tokens(pub TokenUsage);

/// How an OpenAI answer is delivered: `stream` and `stream_options.include_usage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// Server-sent events instead of one JSON object.
    pub stream: bool,
    /// A last chunk with the usage (streams only).
    pub include_usage: bool,
}

impl Delivery {
    /// The delivery a body's `stream` and `stream_options` ask for.
    pub fn of(stream: Option<bool>, options: Option<&crate::openai::StreamOptions>) -> Self {
        Delivery {
            stream: stream.unwrap_or(false),
            include_usage: options.and_then(|o| o.include_usage).unwrap_or(false),
        }
    }
}

/// Checks that `requested` (when given) names the served model (404 otherwise).
pub fn check_model(requested: Option<&str>, served: &str) -> Result<(), ApiError> {
    match requested {
        None => Ok(()),
        Some(m) if m.is_empty() || m == served => Ok(()),
        Some(m) => Err(ApiError::model_not_found(m)),
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then drains open connections
/// (request heads must arrive within [`HEADER_READ_TIMEOUT`]; see [`listen`]).
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    listen::serve_with_timeout(listener, app, shutdown, HEADER_READ_TIMEOUT).await
}
