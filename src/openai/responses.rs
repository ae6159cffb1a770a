//! Request-side types of the Responses API (`POST /v1/responses`).
//!
//! Input items are read permissively (one struct whose fields depend on `type`), so the
//! edge can name what it refuses; an output item the server wrote (a message with
//! `output_text`, a `function_call`) reads back as an input item, which is how a stored
//! response continues a conversation (`previous_response_id`).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A `POST /v1/responses` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ResponsesRequest {
    /// The model name the client asked for.
    #[serde(default)]
    pub model: Option<String>,
    /// A string (one user message) or a list of input items.
    #[serde(default)]
    pub input: Option<ResponseInput>,
    /// A system (developer) message put first; not carried over by `previous_response_id`.
    #[serde(default)]
    pub instructions: Option<String>,
    /// Tools the model may call.
    #[serde(default)]
    pub tools: Option<Vec<ResponseTool>>,
    /// `"none"`, `"auto"`, `"required"` or `{"type": "function", "name": ...}`.
    #[serde(default)]
    pub tool_choice: Option<ResponseToolChoice>,
    /// `false`: at most one call per answer.
    #[serde(default)]
    pub parallel_tool_calls: Option<bool>,
    /// Most tokens to generate.
    #[serde(default)]
    pub max_output_tokens: Option<u32>,
    /// Sampling temperature in [0, 2].
    #[serde(default)]
    pub temperature: Option<f32>,
    /// Nucleus sampling mass.
    #[serde(default)]
    pub top_p: Option<f32>,
    /// Reasoning options: `{"effort": "none" | "minimal" | "low" | "medium" | "high" |
    /// "xhigh", "summary": "auto" | "concise" | "detailed"}`.
    #[serde(default)]
    pub reasoning: Option<ReasoningOptions>,
    /// Most generated tokens in a thinking model's reasoning block (callm extension, as in
    /// Chat Completions).
    #[serde(default)]
    pub max_reasoning_tokens: Option<u32>,
    /// Most characters of reasoning before a required call or a JSON answer (callm extension,
    /// as in Chat Completions).
    #[serde(default)]
    pub max_reasoning_chars: Option<u32>,
    /// Text output options: `{"format": {"type": "text" | "json_object" | "json_schema", ...}}`.
    #[serde(default)]
    pub text: Option<TextOptions>,
    /// Stream the answer as server-sent events.
    #[serde(default)]
    pub stream: Option<bool>,
    /// Keep the response for `previous_response_id` and `GET /v1/responses/{id}` (default true).
    #[serde(default)]
    pub store: Option<bool>,
    /// Continue the conversation of a stored response.
    #[serde(default)]
    pub previous_response_id: Option<String>,
    /// Key-value pairs echoed in the response.
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
    /// End-user identifier (logged only).
    #[serde(default)]
    pub user: Option<String>,
    /// Run in the background (refused: callm answers in the request).
    #[serde(default)]
    pub background: Option<bool>,
    /// A hosted conversation (refused: use `previous_response_id`).
    #[serde(default)]
    pub conversation: Option<Value>,
    /// A hosted prompt template (refused).
    #[serde(default)]
    pub prompt: Option<Value>,
}

/// `input`: a string or items.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ResponseInput {
    /// One user message.
    Text(String),
    /// Input items, in order.
    Items(Vec<InputItem>),
}

/// One input item: a message (`type` `message` or absent, with `role` and `content`), a
/// `function_call` (`call_id`, `name`, `arguments`) or a `function_call_output` (`call_id`,
/// `output`); other types are refused at the edge (`reasoning` items are skipped).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct InputItem {
    /// The item type; absent for the short message form `{"role", "content"}`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The item id (output items carry one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// A message's role: `user`, `assistant`, `system` or `developer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// A message's content: a string or parts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<ItemContent>,
    /// A function call's (or its output's) call id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_id: Option<String>,
    /// A function call's function name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A function call's arguments, as JSON text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<String>,
    /// A function call output's result: a string or parts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<ItemContent>,
}

/// A message's content or a call output: a string or typed parts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum ItemContent {
    /// Plain text.
    Text(String),
    /// Parts: `input_text`, `output_text` (text), `refusal`; images and files are refused.
    Parts(Vec<ContentPart>),
}

/// One content part.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ContentPart {
    /// `input_text`, `output_text`, `refusal`, `input_image`, `input_file`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// The text of an `input_text` or `output_text` part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The text of a `refusal` part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
}

/// A tool: `{"type": "function", "name", "description", "parameters", "strict"}`; hosted
/// tools (`web_search`, `file_search`, ...) are refused at the edge.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ResponseTool {
    /// `function`, or a hosted tool's type.
    #[serde(rename = "type")]
    pub kind: String,
    /// The function's name.
    #[serde(default)]
    pub name: Option<String>,
    /// What the function does.
    #[serde(default)]
    pub description: Option<String>,
    /// JSON Schema of the arguments object.
    #[serde(default)]
    pub parameters: Option<Value>,
    /// Strict schema adherence (the Responses API's default is true).
    #[serde(default)]
    pub strict: Option<bool>,
}

/// `tool_choice`: a mode or an object.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum ResponseToolChoice {
    /// `"none"`, `"auto"` or `"required"`.
    Mode(String),
    /// `{"type": "function", "name": ...}` (other types are refused).
    Object(ToolChoiceObject),
}

/// An object `tool_choice`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ToolChoiceObject {
    /// `function`, or a hosted tool's type.
    #[serde(rename = "type")]
    pub kind: String,
    /// The function to call.
    #[serde(default)]
    pub name: Option<String>,
}

/// `reasoning`: how much a reasoning model reasons, and the summary asked for.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ReasoningOptions {
    /// The effort level.
    #[serde(default)]
    pub effort: Option<String>,
    /// The kind of summary (callm writes none: its reasoning item holds the text itself).
    #[serde(default)]
    pub summary: Option<String>,
}

/// `text`: the output format.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TextOptions {
    /// `{"type": "text"}`, `{"type": "json_object"}` or `{"type": "json_schema", "name",
    /// "schema", "strict"}`.
    #[serde(default)]
    pub format: Option<Value>,
}
