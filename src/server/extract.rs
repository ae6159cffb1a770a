//! The JSON body extractor: every rejection becomes an OpenAI-shaped error (never axum's
//! plain-text default), malformed or wrongly typed JSON is a 400 and an oversized body a 413.

use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// A JSON request body (its `Content-Type`, size and read time were checked by the router's
/// gate, `super::guard`, which also holds the body in memory).
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let limit = req
            .extensions()
            .get::<BodyLimit>()
            .map(|l| l.0)
            .unwrap_or(0);
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::payload_too_large(limit)
            } else {
                ApiError::bad_request(
                    format!("Could not read the request body: {}", rejection.body_text()),
                    None,
                )
            }
        })?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// The configured body limit, put into request extensions so rejections can name it.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// Parses a JSON body into `T`, mapping failures to 400 errors that name the field.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "We could not parse the JSON body of your request: the body is empty. \
             (HINT: send a JSON object with Content-Type: application/json.)",
            None,
        ));
    }
    axum::Json::<T>::from_bytes(bytes)
        .map(|axum::Json(v)| v)
        .map_err(|rejection| json_error(&rejection))
}

fn json_error(rejection: &JsonRejection) -> ApiError {
    const PREFIX: &str = "Failed to deserialize the JSON body into the target type: ";
    match rejection {
        JsonRejection::JsonDataError(_) => {
            let text = rejection.body_text();
            let detail = text.strip_prefix(PREFIX).unwrap_or(&text).to_string();
            // serde_path_to_error formats as `path: message`; the root path is `.`.
            let param = detail
                .split_once(": ")
                .map(|(path, _)| path)
                .filter(|p| *p != "." && !p.contains(' '))
                .map(str::to_string);
            let mut err = ApiError::bad_request(format!("Invalid request body: {detail}"), None);
            err.param = param;
            err
        }
        _ => ApiError::bad_request(
            format!(
                "We could not parse the JSON body of your request. ({})",
                rejection.body_text()
            ),
            None,
        ),
    }
}
