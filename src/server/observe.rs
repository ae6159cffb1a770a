//! The outermost layer of every route: a request id (`x-request-id` on every response), one
//! log line per request, and the last word on 500s: a handler that panics or fails inside
//! answers `internal error (request id …)` in OpenAI's shape, and the details go to the log
//! under that id, never to the client (also with `RUST_BACKTRACE` set).

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::FutureExt;

use super::error::{internal_message, ApiError, InternalDetail, INTERNAL_CODE};
use super::Tokens;
use crate::openai::{ErrorBody, ErrorResponse};

/// The response header naming the request (as OpenAI's API does).
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The id of one request: `req_` and 32 hex digits, made by the server (a client's own
/// `x-request-id` is not trusted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(Arc<str>);

impl RequestId {
    /// A fresh id.
    pub fn new() -> Self {
        RequestId(Arc::from(format!("req_{}", uuid::Uuid::new_v4().simple())))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for RequestId {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = std::convert::Infallible;

    /// The id [`observe`] gave the request (a fresh one outside the router).
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<RequestId>()
            .cloned()
            .unwrap_or_default())
    }
}

/// Middleware: names the request, runs it (a panic becomes a 500), rewrites any 500 to the
/// generic body with the id, logs one line.
pub async fn observe(mut req: Request, next: Next) -> Response {
    let start = Instant::now();
    let id = RequestId::new();
    req.extensions_mut().insert(id.clone());
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let mut resp = match AssertUnwindSafe(next.run(req)).catch_unwind().await {
        Ok(resp) => resp,
        Err(panic) => {
            let detail = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a handler panicked".to_string());
            let mut resp = StatusCode::INTERNAL_SERVER_ERROR.into_response();
            resp.extensions_mut()
                .insert(InternalDetail(format!("panic: {detail}")));
            resp
        }
    };
    if resp.status() == StatusCode::INTERNAL_SERVER_ERROR {
        let detail = resp
            .extensions()
            .get::<InternalDetail>()
            .map(|d| d.0.clone())
            .unwrap_or_else(|| "a 500 without details".to_string());
        tracing::error!(request_id = %id, %method, %path, detail, "internal error");
        resp = internal_response(&id);
    }
    if let Ok(v) = HeaderValue::from_str(id.as_str()) {
        resp.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    let latency_ms = (start.elapsed().as_secs_f64() * 10_000.0).round() / 10.0;
    let status = resp.status().as_u16();
    match resp.extensions().get::<Tokens>() {
        Some(Tokens(u)) => tracing::info!(
            request_id = %id, %method, %path, status, latency_ms,
            prompt_tokens = u.prompt_tokens, completion_tokens = u.completion_tokens,
            "request"
        ),
        None => tracing::info!(request_id = %id, %method, %path, status, latency_ms, "request"),
    }
    resp
}

/// The only 500 a client sees (with its public form in the extensions, for the routes of
/// other API shapes: `server::anthropic`).
fn internal_response(id: &RequestId) -> Response {
    let message = internal_message(id.as_str());
    let body = ErrorResponse {
        error: ErrorBody {
            message: message.clone(),
            kind: "server_error".to_string(),
            param: None,
            code: Some(INTERNAL_CODE.to_string()),
        },
    };
    let mut resp = (StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response();
    resp.extensions_mut().insert(ApiError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        message,
        kind: "server_error",
        param: None,
        code: Some(INTERNAL_CODE),
    });
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use axum::Router;
    use tower::ServiceExt;

    async fn call(app: Router, path: &str) -> (StatusCode, Option<String>, String) {
        let req = Request::builder()
            .uri(path)
            .body(axum::body::Body::empty())
            .unwrap();
        let resp = app.oneshot(req).await.unwrap();
        let status = resp.status();
        let id = resp
            .headers()
            .get(REQUEST_ID_HEADER)
            .map(|v| v.to_str().unwrap().to_string());
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, id, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn a_panicking_handler_is_a_500_naming_only_the_request() {
        let app = Router::new()
            .route(
                "/p",
                get(|| async {
                    if true {
                        panic!("secret internal state");
                    }
                    ""
                }),
            )
            .route(
                "/plain500",
                get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "db password is hunter2") }),
            )
            .route("/ok", get(|| async { "fine" }))
            .layer(axum::middleware::from_fn(observe));
        for path in ["/p", "/plain500"] {
            let (status, id, body) = call(app.clone(), path).await;
            assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
            let id = id.expect("x-request-id");
            assert!(id.starts_with("req_") && id.len() == 36, "{id}");
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(
                v["error"]["message"],
                format!("internal error (request id {id})")
            );
            assert_eq!(v["error"]["code"], "internal_error");
            assert!(
                !body.contains("secret") && !body.contains("hunter2"),
                "{body}"
            );
        }
        let (status, id, body) = call(app, "/ok").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "fine"));
        assert!(id.is_some());
    }
}
