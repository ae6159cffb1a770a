//! The contract between the chat pipeline and its front ends (server, `callm chat`):
//! streamed events, the final outcome, and errors with their HTTP meaning.

use crate::openai::{AssistantMessage, Usage};

/// Something the pipeline produced while generating one choice.
#[derive(Debug, Clone, PartialEq)]
pub enum ChatEvent {
    /// Assistant text (outside tool calls).
    Content(String),
    /// A tool call begins: its index among this answer's calls, id and function name.
    ToolCallStart {
        /// Index of the call in `tool_calls`.
        index: usize,
        /// The call id.
        id: String,
        /// The function name.
        name: String,
    },
    /// A fragment of a call's JSON arguments; fragments concatenate to the full string.
    ToolCallArguments {
        /// Index of the call.
        index: usize,
        /// The fragment.
        delta: String,
    },
    /// Log-probabilities of one generated token.
    Logprob(TokenLogprobs),
}

/// Log-probability information for one generated token, in OpenAI's terms.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TokenLogprobs {
    /// The token's text.
    pub token: String,
    /// Its log-probability.
    pub logprob: f32,
    /// Its UTF-8 bytes.
    pub bytes: Vec<u8>,
    /// The most likely alternatives.
    pub top_logprobs: Vec<TopLogprob>,
}

/// One alternative token and its log-probability.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TopLogprob {
    /// The token's text.
    pub token: String,
    /// Its log-probability.
    pub logprob: f32,
    /// Its UTF-8 bytes.
    pub bytes: Vec<u8>,
}

/// Why a choice ended, in OpenAI's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChatFinish {
    /// Natural end or stop sequence.
    Stop,
    /// Token limit.
    Length,
    /// The answer is tool calls.
    ToolCalls,
    /// The answer is a legacy function call.
    FunctionCall,
}

/// The complete result of one choice.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatOutcome {
    /// The assistant message (content, tool_calls, legacy function_call).
    pub message: AssistantMessage,
    /// Why it ended.
    pub finish: ChatFinish,
    /// Token counts.
    pub usage: Usage,
    /// Per-token log-probabilities, when requested.
    pub logprobs: Option<Vec<TokenLogprobs>>,
    /// Whether the client went away before the end.
    pub cancelled: bool,
}

/// Errors of the chat pipeline, with the HTTP status a server should answer.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// The request is malformed or asks for something impossible (HTTP 400).
    #[error("{message}")]
    BadRequest {
        /// Human-readable message.
        message: String,
        /// The offending parameter, if any.
        param: Option<String>,
    },
    /// The prompt does not fit the context window (HTTP 400, code `context_length_exceeded`).
    #[error("this model's maximum context length is {context} tokens, but the prompt is {prompt} tokens (plus at least 1 token to generate)")]
    ContextLength {
        /// Prompt tokens.
        prompt: usize,
        /// Context window.
        context: usize,
    },
    /// The chat template raised or failed (HTTP 400).
    #[error("chat template error: {0}")]
    Template(String),
    /// Something failed inside the engine (HTTP 500).
    #[error("internal error: {0}")]
    Internal(String),
}

impl ChatError {
    /// A 400 error about `param`.
    pub fn bad(param: &str, message: impl Into<String>) -> Self {
        ChatError::BadRequest {
            message: message.into(),
            param: Some(param.to_string()),
        }
    }

    /// The HTTP status code for this error.
    pub fn status(&self) -> u16 {
        match self {
            ChatError::Internal(_) => 500,
            _ => 400,
        }
    }
}

/// OpenAI-style log-probability entry for a sampled token.
pub fn token_logprobs(
    tok: &crate::tokenizer::Tokenizer,
    lp: &crate::engine::TokenLogprob,
) -> TokenLogprobs {
    let text = |id: u32| tok.decode(&[id], false).unwrap_or_default();
    let token = text(lp.token);
    TokenLogprobs {
        bytes: token.as_bytes().to_vec(),
        token,
        logprob: lp.logprob,
        top_logprobs: lp
            .top
            .iter()
            .map(|&(id, logprob)| {
                let t = text(id);
                TopLogprob {
                    bytes: t.as_bytes().to_vec(),
                    token: t,
                    logprob,
                }
            })
            .collect(),
    }
}
