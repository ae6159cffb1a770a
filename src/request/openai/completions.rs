//! `POST /v1/completions` body → [`TextRequest`].

use serde_json::Value;

use super::{at_least_one, sampling_fields, SamplingFields};
use crate::openai::CompletionRequest;
use crate::request::{Limits, RequestError, TextRequest};

/// Tokens per completion when the client does not say (OpenAI's default).
pub const DEFAULT_MAX_TOKENS: u32 = 16;

impl TryFrom<CompletionRequest> for TextRequest {
    type Error = RequestError;

    fn try_from(req: CompletionRequest) -> Result<Self, RequestError> {
        let prompts = prompts(&req.prompt)?;
        let shared = sampling_fields!(req).convert()?;
        at_least_one("max_tokens", req.max_tokens)?;
        let total = prompts.len() as u64 * u64::from(shared.n);
        if total > u64::from(Limits::MAX_N) {
            return Err(RequestError::new(
                "n",
                format!(
                    "At most {} choices per request (prompts × n).",
                    Limits::MAX_N
                ),
            ));
        }
        Ok(TextRequest {
            prompts,
            sampling: shared.sampling,
            stop: shared.stop,
            max_tokens: req.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
            n: shared.n,
            echo: req.echo.unwrap_or(false),
        })
    }
}

/// `prompt`: a string or a non-empty list of strings (token arrays are not supported).
fn prompts(prompt: &Value) -> Result<Vec<String>, RequestError> {
    match prompt {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                RequestError::new(
                    "prompt",
                    "`prompt` must be a string or a list of strings (token arrays are not supported).",
                )
            }),
        _ => Err(RequestError::new(
            "prompt",
            "`prompt` must be a string or a non-empty list of strings.",
        )),
    }
}
