//! The domain request: what a client asks of the chat pipeline, whatever API it came by.
//!
//! Each API front end converts its wire body into a [`ChatRequest`] (or a [`TextRequest`]
//! for raw completions) in one `TryFrom`: [`openai`] for Chat Completions and Completions,
//! [`anthropic`] for Anthropic's Messages, [`responses`] for OpenAI's Responses.
//! Every "bad request" decision is made there, with the offending parameter carried in the
//! [`RequestError`]; nothing downstream looks at a wire field again. What only the loaded
//! model can judge (the template, the context window, whether a schema compiles) is the chat
//! pipeline's, and it reports those as data too (`chat::ChatError`).
//!
//! The domain types name what the pipeline needs, in its own terms: roles as an enum, text
//! content, tool calls with parsed arguments, tool results with their call id, a typed tool
//! choice and response format. They carry no wire enums or JSON blobs for what they type.

pub mod anthropic;
pub mod chat;
pub mod openai;
pub mod reasoning;
pub mod responses;
pub mod sampling;
pub mod text;

pub use chat::{
    ChatRequest, Limits, Message, PromptEnd, ResponseFormat, Role, Tool, ToolCall, ToolChoice,
};
pub use reasoning::{Effort, ReasoningControl};
pub use sampling::Sampling;
pub use text::TextRequest;

/// A request a front end refused: which parameter is wrong and why (a client error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RequestError {
    /// The offending parameter as the client wrote it, e.g. `messages[0].role`.
    pub param: String,
    /// Human-readable explanation.
    pub message: String,
}

impl RequestError {
    /// An error about `param`.
    pub fn new(param: impl Into<String>, message: impl Into<String>) -> Self {
        RequestError {
            param: param.into(),
            message: message.into(),
        }
    }
}
