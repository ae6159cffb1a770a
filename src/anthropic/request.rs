//! Request-side types of the Messages API.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A `POST /v1/messages` body (also `/v1/messages/count_tokens`, which takes no `max_tokens`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MessagesRequest {
    /// The model name the client asked for.
    #[serde(default)]
    pub model: Option<String>,
    /// Most tokens to generate (required by `/v1/messages`; checked at the edge).
    #[serde(default)]
    pub max_tokens: Option<u32>,
    /// The system prompt: a string or a list of text blocks.
    #[serde(default)]
    pub system: Option<Content>,
    /// The conversation: alternating `user` and `assistant` turns.
    pub messages: Vec<InputMessage>,
    /// Tools the model may call.
    #[serde(default)]
    pub tools: Option<Vec<ToolDefinition>>,
    /// How the model must use the tools.
    #[serde(default)]
    pub tool_choice: Option<ToolChoice>,
    /// Strings that end the answer.
    #[serde(default)]
    pub stop_sequences: Option<Vec<String>>,
    /// Sampling temperature in [0, 1].
    #[serde(default)]
    pub temperature: Option<f32>,
    /// Nucleus sampling mass.
    #[serde(default)]
    pub top_p: Option<f32>,
    /// Sample only from the k most likely tokens.
    #[serde(default)]
    pub top_k: Option<u32>,
    /// Stream the answer as server-sent events.
    #[serde(default)]
    pub stream: Option<bool>,
    /// Request metadata (`user_id`, logged only).
    #[serde(default)]
    pub metadata: Option<Metadata>,
    /// Output options: `format` (`{"type": "json_schema", "schema": {...}}`, structured
    /// outputs) and `effort`.
    #[serde(default)]
    pub output_config: Option<OutputConfig>,
    /// Extended thinking: `{"type": "enabled", "budget_tokens": N}` or `{"type": "disabled"}`
    /// (or `"adaptive"`); turns a thinking template's switch on or off (`enable_thinking`,
    /// Granite's `thinking`), and `budget_tokens` caps the reasoning block's tokens.
    #[serde(default)]
    pub thinking: Option<ThinkingConfig>,
}

/// `thinking` of a request.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ThinkingConfig {
    /// `enabled`, `adaptive` or `disabled`.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// Most tokens of thinking (with `enabled`): the block is closed once it holds that many.
    #[serde(default)]
    pub budget_tokens: Option<u32>,
}

/// `output_config` of a request.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct OutputConfig {
    /// The answer's format: `{"type": "json_schema", "schema": {...}}`.
    #[serde(default)]
    pub format: Option<Value>,
    /// How much effort the answer takes: `low`, `medium`, `high`, `xhigh` or `max` (the level
    /// of templates that take one, e.g. gpt-oss's).
    #[serde(default)]
    pub effort: Option<String>,
}

/// `metadata` of a request.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Metadata {
    /// An opaque end-user id.
    #[serde(default)]
    pub user_id: Option<String>,
}

/// One turn of the conversation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InputMessage {
    /// `user` or `assistant`.
    pub role: String,
    /// A string or a list of content blocks.
    pub content: Content,
}

/// Content: a string (one text block) or a list of typed blocks.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Content {
    /// Plain text.
    Text(String),
    /// Content blocks.
    Blocks(Vec<ContentBlock>),
}

impl Content {
    /// The content as blocks (a string is one text block).
    pub fn blocks(&self) -> Vec<ContentBlock> {
        match self {
            Content::Text(t) => vec![ContentBlock::text(t)],
            Content::Blocks(b) => b.clone(),
        }
    }
}

/// One content block. Which fields matter depends on `type`: `text` (`text`), `tool_use`
/// (`id`, `name`, `input`), `tool_result` (`tool_use_id`, `content`, `is_error`), `thinking`
/// (`thinking`); `image` and `document` blocks are refused at the edge.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ContentBlock {
    /// The block type.
    #[serde(rename = "type")]
    pub kind: String,
    /// The text of a `text` block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The call id of a `tool_use` block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The function name of a `tool_use` block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The arguments object of a `tool_use` block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
    /// The call a `tool_result` block answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_use_id: Option<String>,
    /// The result of a `tool_result` block: a string or blocks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Content>,
    /// Whether a `tool_result` reports a failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_error: Option<bool>,
    /// The reasoning text of a `thinking` block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking: Option<String>,
}

impl ContentBlock {
    /// A text block.
    pub fn text(text: &str) -> Self {
        ContentBlock {
            kind: "text".to_string(),
            text: Some(text.to_string()),
            ..Default::default()
        }
    }
}

/// A tool definition: a client tool (`type` absent or `custom`), or a server tool
/// (`web_search_…`, `bash_…`, ...), which callm refuses.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ToolDefinition {
    /// `custom`, absent, or a server tool's versioned type.
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    /// The tool's name.
    #[serde(default)]
    pub name: String,
    /// What the tool does.
    #[serde(default)]
    pub description: Option<String>,
    /// JSON Schema of the tool's input object.
    #[serde(default)]
    pub input_schema: Option<Value>,
    /// Strict schema adherence (unknown schema keywords are then errors).
    #[serde(default)]
    pub strict: Option<bool>,
}

/// `tool_choice`: `{"type": "auto" | "any" | "tool" | "none", "name"?,
/// "disable_parallel_tool_use"?}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ToolChoice {
    /// The mode.
    #[serde(rename = "type")]
    pub kind: String,
    /// The tool to call (`type: "tool"`).
    #[serde(default)]
    pub name: Option<String>,
    /// At most one tool call in the answer.
    #[serde(default)]
    pub disable_parallel_tool_use: Option<bool>,
}
