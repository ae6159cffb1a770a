//! The JSON body extractor: every rejection becomes an OpenAI-shaped error (never axum's
//! plain-text default), malformed or wrongly typed JSON is a 400 and an oversized body a 413.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;
use serde_json::error::Category;

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
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| json_error(&e))?;
    de.end().map_err(|e| unparsable(&e))?;
    Ok(value)
}

/// A body that is not JSON.
fn unparsable(e: &serde_json::Error) -> ApiError {
    ApiError::bad_request(
        format!("We could not parse the JSON body of your request. ({e})"),
        None,
    )
}

/// A body that is JSON, or starts as JSON, but does not fit the request type: the message and
/// `param` name the field (serde_path_to_error's path; `.` is the root).
fn json_error(e: &serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let inner = e.inner();
    let path = e.path().to_string();
    let param = Some(path.clone()).filter(|p| p != "." && !p.contains(' '));
    // A number beyond what a double holds (`1e400`) is valid JSON that serde_json refuses
    // while parsing, as a syntax error: say which field and why rather than "could not parse".
    let out_of_range = inner.to_string().starts_with("number out of range");
    if inner.classify() != Category::Data && !out_of_range {
        return unparsable(inner);
    }
    let detail = if out_of_range {
        format!(
            "{path}: the number is beyond what a 64-bit float holds (line {}, column {})",
            inner.line(),
            inner.column()
        )
    } else {
        e.to_string()
    };
    let mut err = ApiError::bad_request(format!("Invalid request body: {detail}"), None);
    err.param = param;
    err
}
