//! Response-side types: completions, streaming chunks, usage and errors.

use serde::{Deserialize, Serialize};

use super::request::{FunctionCall, ToolCall};

/// Token counts of one request.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Usage {
    /// Tokens in the prompt.
    pub prompt_tokens: u32,
    /// Tokens generated.
    pub completion_tokens: u32,
    /// Sum of both.
    pub total_tokens: u32,
    /// Details of the prompt tokens (how many came from the prefix cache).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
    /// Details of the completion tokens (how many were a thinking model's reasoning).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_tokens_details: Option<CompletionTokensDetails>,
}

/// OpenAI's `usage.completion_tokens_details`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct CompletionTokensDetails {
    /// Generated tokens of the model's reasoning (its thinking block, markers included).
    pub reasoning_tokens: u32,
}

/// OpenAI's `usage.prompt_tokens_details`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PromptTokensDetails {
    /// Prompt tokens whose keys and values were reused from an earlier request.
    pub cached_tokens: u32,
}

/// The assistant message of a non-streaming answer.
///
/// `content` and `tool_calls` are always serialized (null when absent): client code
/// indexes `message["tool_calls"]` after dumping the SDK object.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct AssistantMessage {
    /// Always `assistant`.
    pub role: String,
    /// Text of the answer, or the text before the calls; null when empty.
    pub content: Option<String>,
    /// The calls the model made; null when none.
    pub tool_calls: Option<Vec<ToolCall>>,
    /// Legacy call (only for requests that used `functions`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function_call: Option<FunctionCall>,
}

/// The result of parsing model output into OpenAI's uniform shape.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ParsedOutput {
    /// Text outside the calls; `None` when there is none.
    pub content: Option<String>,
    /// The calls, in order.
    pub tool_calls: Vec<ToolCall>,
}

/// An error body in OpenAI's shape: `{"error": {...}}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ErrorResponse {
    /// The error.
    pub error: ErrorBody,
}

/// The inside of an OpenAI error body.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ErrorBody {
    /// Human-readable message.
    pub message: String,
    /// Error class, e.g. `invalid_request_error`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The offending parameter, if any.
    pub param: Option<String>,
    /// A machine-readable code, if any.
    pub code: Option<String>,
}
