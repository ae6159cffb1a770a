//! Bearer-token authentication (`--api-key`): a 401 in OpenAI's shape when the
//! `Authorization: Bearer KEY` header is missing or wrong; Anthropic's `x-api-key: KEY`
//! header is accepted as well.

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::AppState;

/// Compares two byte strings in time independent of where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Checks the bearer token of a request against the configured key, if any.
pub fn check(expected: Option<&str>, header: Option<&str>) -> Result<(), ApiError> {
    let Some(expected) = expected else {
        return Ok(());
    };
    let Some(header) = header else {
        return Err(ApiError::unauthorized(
            "You didn't provide an API key. Provide it in the Authorization header as `Bearer YOUR_KEY`.",
        ));
    };
    let token = header
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim());
    match token {
        // An empty key admits nobody (fail closed; `serve` refuses one at start).
        Some(t) if !expected.is_empty() && same(t.as_bytes(), expected.as_bytes()) => Ok(()),
        _ => Err(ApiError::unauthorized("Incorrect API key provided.")),
    }
}

/// Middleware that rejects requests without the right bearer token.
pub async fn require_key(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let header = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let x_api_key = req.headers().get("x-api-key").map(|v| v.as_bytes());
    let expected = state.api_key.as_deref();
    if let (Some(key), Some(given)) = (expected, x_api_key) {
        if same(given, key.as_bytes()) {
            return next.run(req).await;
        }
    }
    match check(expected, header) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn bearer_tokens() {
        assert!(check(None, None).is_ok());
        assert!(check(Some("k"), Some("Bearer k")).is_ok());
        assert!(check(Some("k"), Some("bearer k")).is_ok());
        assert!(check(Some("k"), None).is_err());
        assert!(check(Some("k"), Some("Bearer x")).is_err());
        assert!(check(Some("k"), Some("Basic k")).is_err());
        assert!(check(Some("k"), Some("Bearer kk")).is_err());
        assert!(check(Some(""), Some("Bearer ")).is_err());
        assert!(check(Some(""), Some("Bearer")).is_err());
        assert!(check(Some(""), None).is_err());
    }
}
