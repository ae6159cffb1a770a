//! A raw-text completion request (no chat template).

use super::Sampling;

/// One raw completion request, validated: prompts, sampling, stops and limits.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TextRequest {
    /// The prompts, each completed `n` times (at least one).
    pub prompts: Vec<String>,
    /// Sampling settings.
    pub sampling: Sampling,
    /// Strings that end a completion (none empty).
    pub stop: Vec<String>,
    /// Most generated tokens per completion (at least 1).
    pub max_tokens: u32,
    /// Completions per prompt.
    pub n: u32,
    /// Answer with the prompt followed by its completion.
    pub echo: bool,
}
