//! API errors in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

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

    /// A 500 for failures inside the server or the engine.
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: message.into(),
            kind: "server_error",
            param: None,
            code: None,
        }
    }

    /// The OpenAI error body of this error.
    pub fn body(&self) -> ErrorResponse {
        ErrorResponse {
            error: ErrorBody {
                message: self.message.clone(),
                kind: self.kind.to_string(),
                param: self.param.clone(),
                code: self.code.map(str::to_string),
            },
        }
    }

    /// The error body as JSON text (for SSE error events).
    pub fn to_json_string(&self) -> String {
        serde_json::to_string(&self.body()).unwrap_or_else(|_| {
            r#"{"error":{"message":"error","type":"server_error","param":null,"code":null}}"#
                .to_string()
        })
    }
}

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
    /// The OpenAI error body; the error rides along in the response's extensions, so that
    /// another API's routes can answer it in their own shape (`server::anthropic`).
    fn into_response(self) -> Response {
        let mut resp = (self.status, Json(self.body())).into_response();
        resp.extensions_mut().insert(self);
        resp
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.message)
    }
}

impl std::error::Error for ApiError {}
