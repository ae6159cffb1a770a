//! The gate every request passes before its route (a router-level layer, so routes added
//! later are covered too):
//!
//! - a keyless server checks `Host` and `Origin` ([`super::access`]): 403 otherwise;
//! - a request with a body must declare a JSON `Content-Type` (415): a browser sends
//!   `text/plain`, form and empty types cross-site without a CORS preflight;
//! - a declared `Content-Length` over the limit is a 413 at once, without reading the body;
//! - the body is read whole within the body read timeout (408 otherwise) and the limit
//!   (413), so handlers parse it from memory and no client can hold a slot by trickling.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST, ORIGIN, TRANSFER_ENCODING};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::access::{Access, Refusal};
use super::error::ApiError;

/// The addresses of the connection a request came on (put into its extensions by
/// [`super::serve_on`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnInfo {
    /// The server's address the client connected to.
    pub local: SocketAddr,
    /// The client's address.
    pub remote: SocketAddr,
}

/// The gate's settings, built by the router from the server state.
#[derive(Debug, Clone)]
pub struct Gate {
    /// Whether an API key protects the server (then `Host`/`Origin` are not checked).
    pub keyed: bool,
    /// What a keyless server accepts beyond loopback.
    pub access: Access,
    /// Largest body in bytes.
    pub max_body: usize,
    /// Time allowed to receive a whole body.
    pub body_read_timeout: Duration,
}

/// Middleware: the checks above, then the request with its body in memory.
pub async fn gate(State(gate): State<Gate>, req: Request, next: Next) -> Response {
    match admit(&gate, req).await {
        Ok(req) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

async fn admit(gate: &Gate, req: Request) -> Result<Request, ApiError> {
    let headers = req.headers();
    if !gate.keyed {
        let local = req.extensions().get::<ConnInfo>().map(|c| c.local.ip());
        gate.access
            .check(text(headers, HOST), text(headers, ORIGIN), local)
            .map_err(|r| {
                let code = match r {
                    Refusal::Host(_) => "host_not_allowed",
                    Refusal::Origin(_) => "origin_not_allowed",
                };
                ApiError::forbidden(r.to_string(), code)
            })?;
    }
    if !has_body(headers) {
        return Ok(req);
    }
    let content_type = text(headers, CONTENT_TYPE).unwrap_or("");
    if !is_json(content_type) {
        let shown: String = content_type.chars().take(100).collect();
        return Err(ApiError::unsupported_media_type(&shown));
    }
    let declared = text(headers, CONTENT_LENGTH).and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > gate.max_body as u64) {
        return Err(ApiError::payload_too_large(gate.max_body));
    }
    let (parts, body) = req.into_parts();
    let read = axum::body::to_bytes(body, gate.max_body);
    let bytes = match tokio::time::timeout(gate.body_read_timeout, read).await {
        Err(_) => return Err(ApiError::body_timeout(gate.body_read_timeout.as_secs_f64())),
        Ok(Err(e)) if is_length_limit(&e) => {
            return Err(ApiError::payload_too_large(gate.max_body))
        }
        Ok(Err(e)) => {
            return Err(ApiError::bad_request(
                format!("Could not read the request body: {e}"),
                None,
            ))
        }
        Ok(Ok(bytes)) => bytes,
    };
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

fn text(headers: &HeaderMap, name: axum::http::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Whether the request carries a body: a non-zero `Content-Length` or any transfer coding.
fn has_body(headers: &HeaderMap) -> bool {
    headers.contains_key(TRANSFER_ENCODING)
        || headers
            .get(CONTENT_LENGTH)
            .is_some_and(|v| v.to_str().map(|s| s.trim() != "0").unwrap_or(true))
}

/// `application/json` or `application/*+json`, parameters (`charset`) allowed.
pub fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || essence
            .strip_prefix("application/")
            .is_some_and(|s| s.ends_with("+json"))
}

/// Whether a body error is axum's length limit.
fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = s.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types() {
        for ok in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/vnd.api+json",
        ] {
            assert!(is_json(ok), "{ok}");
        }
        for bad in [
            "",
            "text/plain",
            "text/plain;charset=UTF-8",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/jsonp",
            "text/json",
        ] {
            assert!(!is_json(bad), "{bad}");
        }
    }
}
