//! The contract between the chat pipeline and its front ends (server, `callm chat`):
//! streamed events, the final outcome, and errors as data (kind and parameter).

/// Something the pipeline produced while generating one choice.
#[derive(Debug, Clone, PartialEq)]
pub enum ChatEvent {
    /// Assistant text (outside tool calls).
    Content(String),
    /// A thinking model's reasoning (its `<think>` block), never content nor a call.
    Reasoning(String),
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

/// Why a choice ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatFinish {
    /// Natural end or stop sequence.
    Stop,
    /// The token limit (or the context) cut the answer; a call it interrupted is dropped,
    /// complete calls before it are kept.
    Length,
    /// The answer is tool calls (written as a legacy `function_call` where the request
    /// asked for one: that is the response writer's business).
    ToolCalls,
}

/// A call the model made, with its arguments as JSON text (the concatenation of the
/// streamed [`ChatEvent::ToolCallArguments`] fragments).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Call {
    /// The call id.
    pub id: String,
    /// The function name.
    pub name: String,
    /// The arguments object as JSON text.
    pub arguments: String,
}

/// What the model answered: text and calls.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Answer {
    /// Text outside the calls; `None` when there is none.
    pub content: Option<String>,
    /// A thinking model's reasoning, apart from the content; `None` when there is none.
    pub reasoning_content: Option<String>,
    /// The calls, in order (at most one where the request allows one).
    pub tool_calls: Vec<Call>,
}

/// Token counts of one choice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenUsage {
    /// Tokens in the prompt.
    pub prompt_tokens: u32,
    /// Tokens generated.
    pub completion_tokens: u32,
    /// Prompt tokens reused from the prefix cache; `None` where the backend does not say.
    pub cached_tokens: Option<u32>,
    /// Generated tokens of a thinking model's reasoning block (part of `completion_tokens`);
    /// `None` for a model without reasoning markers or a backend that does not say.
    pub reasoning_tokens: Option<u32>,
}

/// The complete result of one choice.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatOutcome {
    /// The answer.
    pub message: Answer,
    /// Why it ended.
    pub finish: ChatFinish,
    /// The request's stop string that ended the answer, when one did (the finish is then
    /// [`ChatFinish::Stop`]).
    pub stop_sequence: Option<String>,
    /// Token counts.
    pub usage: TokenUsage,
    /// Per-token log-probabilities, when requested.
    pub logprobs: Option<Vec<TokenLogprobs>>,
    /// Whether the client went away before the end.
    pub cancelled: bool,
}

/// Errors of the chat pipeline, as data: what went wrong and which request field is at
/// fault. The server maps them to statuses; `callm chat` prints them.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// The request asks for something impossible: a bad field (from the edge), or one this
    /// model cannot honour (a schema its grammar cannot express). A client error.
    #[error("{message}")]
    Invalid {
        /// Human-readable message.
        message: String,
        /// The offending parameter, if any.
        param: Option<String>,
    },
    /// The prompt does not fit the context window (a client error about `messages`).
    #[error("this model's maximum context length is {context} tokens, but the prompt is {prompt} tokens (plus at least 1 token to generate)")]
    ContextLength {
        /// Prompt tokens.
        prompt: usize,
        /// Context window.
        context: usize,
    },
    /// The chat template raised or failed on the conversation (a client error about `messages`).
    #[error("chat template error: {0}")]
    Template(String),
    /// Something failed inside the engine (not the client's fault).
    #[error("internal error: {0}")]
    Internal(String),
}

impl ChatError {
    /// An invalid-request error about `param`.
    pub fn invalid(param: &str, message: impl Into<String>) -> Self {
        ChatError::Invalid {
            message: message.into(),
            param: Some(param.to_string()),
        }
    }

    /// Whether the client is at fault (everything but [`ChatError::Internal`]).
    pub fn is_client_error(&self) -> bool {
        !matches!(self, ChatError::Internal(_))
    }

    /// The request field at fault, when there is one.
    pub fn param(&self) -> Option<&str> {
        match self {
            ChatError::Invalid { param, .. } => param.as_deref(),
            ChatError::ContextLength { .. } | ChatError::Template(_) => Some("messages"),
            ChatError::Internal(_) => None,
        }
    }
}

impl From<crate::request::RequestError> for ChatError {
    fn from(e: crate::request::RequestError) -> Self {
        ChatError::Invalid {
            message: e.message,
            param: Some(e.param),
        }
    }
}

impl From<crate::engine::EngineError> for ChatError {
    /// Engine errors as chat errors (the engine's context check is the authoritative one).
    fn from(e: crate::engine::EngineError) -> Self {
        use crate::engine::EngineError;
        match e {
            EngineError::ContextTooLong { prompt, context } => {
                ChatError::ContextLength { prompt, context }
            }
            EngineError::InvalidParams(m) => ChatError::Invalid {
                message: m,
                param: None,
            },
            EngineError::EmptyPrompt => ChatError::invalid("messages", "the prompt is empty"),
            // The request's grammar reached a limit while generating.
            EngineError::Constraint(crate::constrain::ConstrainError::BadRequest {
                param,
                message,
            }) => ChatError::Invalid {
                message: format!("{param}: {message}"),
                param: Some(param),
            },
            other => ChatError::Internal(other.to_string()),
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
