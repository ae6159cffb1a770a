//! API errors in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::observe::RequestId;
use crate::chat::ChatError;
use crate::openai::{ErrorBody, ErrorResponse};
use crate::request::RequestError;

/// An error answered to the client with an HTTP status and an OpenAI error body.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Human-readable message.
    pub message: String,
    /// OpenAI error type, e.g. `invalid_request_error`.
    pub kind: &'static str,
    /// The offending parameter, if any.
    pub param: Option<String>,
    /// A machine-readable code, if any.
    pub code: Option<&'static str>,
}

impl ApiError {
    /// A 400 `invalid_request_error`, optionally about `param`.
    pub fn bad_request(message: impl Into<String>, param: Option<&str>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            kind: "invalid_request_error",
            param: param.map(str::to_string),
            code: None,
        }
    }

    /// A 400 about `param` with the code `invalid_value`.
    pub fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            kind: "invalid_request_error",
            param: Some(param.into()),
            code: Some("invalid_value"),
        }
    }

    /// A 401 for a missing or wrong API key.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            message: message.into(),
            kind: "invalid_request_error",
            param: None,
            code: Some("invalid_api_key"),
        }
    }

    /// A 404 for a model that is not served.
    pub fn model_not_found(requested: &str) -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            message: format!(
                "The model `{requested}` does not exist or you do not have access to it."
            ),
            kind: "invalid_request_error",
            param: Some("model".to_string()),
            code: Some("model_not_found"),
        }
    }

    /// A 404 for an unknown route.
    pub fn route_not_found(method: &str, path: &str) -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            message: format!("Unknown request URL: {method} {path}."),
            kind: "invalid_request_error",
            param: None,
            code: Some("unknown_url"),
        }
    }

    /// A 405 for a known route used with the wrong method.
    pub fn method_not_allowed(method: &str, path: &str) -> Self {
        ApiError {
            status: StatusCode::METHOD_NOT_ALLOWED,
            message: format!("Method {method} is not allowed for {path}."),
            kind: "invalid_request_error",
            param: None,
            code: Some("method_not_allowed"),
        }
    }

    /// A 413 for a body over the limit.
    pub fn payload_too_large(limit: usize) -> Self {
        ApiError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            message: format!("Request body is larger than the limit of {limit} bytes."),
            kind: "invalid_request_error",
            param: None,
            code: Some("payload_too_large"),
        }
    }

    /// A 429 when the waiting queue is full.
    pub fn queue_full() -> Self {
        ApiError {
            status: StatusCode::TOO_MANY_REQUESTS,
            message: "The server is busy: too many requests are waiting. Retry later.".to_string(),
            kind: "rate_limit_error",
            param: None,
            code: Some("queue_full"),
        }
    }

    /// A 403 for a request a keyless server does not answer (foreign `Host` or `Origin`).
    pub fn forbidden(message: impl Into<String>, code: &'static str) -> Self {
        ApiError {
            status: StatusCode::FORBIDDEN,
            message: message.into(),
            kind: "invalid_request_error",
            param: None,
            code: Some(code),
        }
    }

    /// A 415 for a body that is not declared as JSON.
    pub fn unsupported_media_type(found: &str) -> Self {
        ApiError {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            message: format!(
                "Unsupported Content-Type '{found}': send the body as JSON with \
                 Content-Type: application/json."
            ),
            kind: "invalid_request_error",
            param: None,
            code: Some("unsupported_media_type"),
        }
    }

    /// A 408 for a body that did not arrive within the read timeout.
    pub fn body_timeout(seconds: f64) -> Self {
        ApiError {
            status: StatusCode::REQUEST_TIMEOUT,
            message: format!("The request body did not arrive within {seconds} seconds."),
            kind: "invalid_request_error",
            param: None,
            code: Some("request_timeout"),
        }
    }

    /// A 500 for failures inside the server or the engine. `detail` goes to the log (with
    /// the request id), never to the client: the body only says "internal error".
    pub fn internal(detail: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: detail.into(),
            kind: "server_error",
            param: None,
            code: Some(INTERNAL_CODE),
        }
    }

    /// Whether this is a 500, whose message is a detail for the log only.
    pub fn is_internal(&self) -> bool {
        self.status.is_server_error()
    }

    /// The message a client may see: a 500 says only "internal error", naming
    /// `request_id` when given; its detail is logged here, never shown.
    pub fn client_message(&self, request_id: Option<&str>) -> String {
        if self.is_internal() {
            tracing::error!(request_id, detail = %self.message, "internal error");
        }
        self.body_with(request_id).error.message
    }

    /// The OpenAI error body of this error (a 500 says only "internal error").
    pub fn body(&self) -> ErrorResponse {
        self.body_with(None)
    }

    fn body_with(&self, request_id: Option<&str>) -> ErrorResponse {
        let message = match (self.is_internal(), request_id) {
            (false, _) => self.message.clone(),
            (true, Some(id)) => internal_message(id),
            (true, None) => "internal error".to_string(),
        };
        ErrorResponse {
            error: ErrorBody {
                message,
                kind: self.kind.to_string(),
                param: self.param.clone(),
                code: self.code.map(str::to_string),
            },
        }
    }

    /// The error body as JSON text (for SSE error events); a 500 says only "internal error"
    /// and its detail is logged. Prefer [`ApiError::to_json_string_for`], which names the
    /// request.
    pub fn to_json_string(&self) -> String {
        self.json_for(None)
    }

    /// The error body as JSON text for an SSE error event of request `request_id`; a 500's
    /// detail is logged under that id and the body names it.
    pub fn to_json_string_for(&self, request_id: &RequestId) -> String {
        self.json_for(Some(request_id.as_str()))
    }

    fn json_for(&self, request_id: Option<&str>) -> String {
        if self.is_internal() {
            tracing::error!(request_id, detail = %self.message, "internal error");
        }
        serde_json::to_string(&self.body_with(request_id)).unwrap_or_else(|_| {
            r#"{"error":{"message":"internal error","type":"server_error","param":null,"code":"internal_error"}}"#
                .to_string()
        })
    }
}

/// The `code` of every 500.
pub const INTERNAL_CODE: &str = "internal_error";

/// What a 500 tells the client: nothing but the request id to quote.
pub fn internal_message(request_id: &str) -> String {
    format!("internal error (request id {request_id})")
}

/// The detail of a 500, carried in the response's extensions to the request log.
#[derive(Debug, Clone)]
pub struct InternalDetail(pub String);

impl From<RequestError> for ApiError {
    /// A request the edge refused: 400, `invalid_value`, naming the parameter.
    fn from(e: RequestError) -> Self {
        ApiError::invalid(e.param, e.message)
    }
}

impl From<ChatError> for ApiError {
    /// The chat pipeline's error kinds as statuses: internal failures are 500, everything
    /// else the client's (400), with the parameter the pipeline named.
    fn from(e: ChatError) -> Self {
        let message = e.to_string();
        let param = e.param().map(str::to_string);
        let code = match &e {
            ChatError::Invalid { .. } => None,
            ChatError::ContextLength { .. } => Some("context_length_exceeded"),
            ChatError::Template(_) => Some("template_error"),
            ChatError::Internal(_) => return ApiError::internal(message),
        };
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message,
            kind: "invalid_request_error",
            param,
            code,
        }
    }
}

impl IntoResponse for ApiError {
    /// The error as a response. A 500's detail rides in the extensions for the request log
    /// ([`InternalDetail`]), never in the body; any other error rides along itself, so that
    /// another API's routes can answer it in their own shape (`server::anthropic`).
    fn into_response(self) -> Response {
        let mut resp = (self.status, Json(self.body())).into_response();
        if self.is_internal() {
            resp.extensions_mut().insert(InternalDetail(self.message));
        } else {
            resp.extensions_mut().insert(self);
        }
        resp
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.message)
    }
}

impl std::error::Error for ApiError {}
