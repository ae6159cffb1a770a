//! Bodies of `POST /tokenize` and `/detokenize`, as llama.cpp's server and vLLM take them.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A `POST /tokenize` body: text (`content`, llama.cpp; `prompt`, vLLM) or a chat
/// (`messages` with the fields of a chat completion request, vLLM).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TokenizeRequest {
    /// The model name the client asked for.
    #[serde(default)]
    pub model: Option<String>,
    /// Text to tokenize (llama.cpp's name; `add_special` defaults to false).
    #[serde(default)]
    pub content: Option<String>,
    /// Text to tokenize (vLLM's name; `add_special_tokens` defaults to true).
    #[serde(default)]
    pub prompt: Option<String>,
    /// A conversation to render with the chat template, then tokenize.
    #[serde(default)]
    pub messages: Option<Value>,
    /// Add the model's BOS/EOS (llama.cpp).
    #[serde(default)]
    pub add_special: Option<bool>,
    /// Add the model's BOS/EOS (vLLM).
    #[serde(default)]
    pub add_special_tokens: Option<bool>,
    /// Answer `[{"id", "piece"}]` instead of ids (llama.cpp).
    #[serde(default)]
    pub with_pieces: Option<bool>,
}

/// A `POST /detokenize` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DetokenizeRequest {
    /// The model name the client asked for.
    #[serde(default)]
    pub model: Option<String>,
    /// Token ids.
    pub tokens: Vec<u32>,
}
