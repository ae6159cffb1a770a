//! The seam between the HTTP server (and `callm chat`) and the inference engine.

use crate::chat::{ChatError, ChatEvent, ChatFinish, ChatOutcome};
use crate::engine::CancelToken;
use crate::openai::{ChatCompletionRequest, CompletionRequest, Usage};

/// The result of one raw completion choice (`/v1/completions`).
#[derive(Debug, Clone, PartialEq)]
pub struct CompletionOutcome {
    /// The generated text (without the prompt; the server handles `echo`).
    pub text: String,
    /// Why it ended.
    pub finish: ChatFinish,
    /// Token counts.
    pub usage: Usage,
}

/// An inference engine that can serve chat and raw completions.
///
/// The server validates requests at the wire level before calling it (roles, ranges,
/// content parts, tool choices), checks the model name, and runs every call on a
/// blocking thread while holding one of the `--max-concurrent` slots.
pub trait ChatBackend: Send + Sync + 'static {
    /// The model id served (`--served-model-name` or the model's name).
    fn model_id(&self) -> &str;

    /// Runs one chat choice to the end. Blocking (CPU-bound): call it from tokio::task::spawn_blocking.
    /// `choice` is the index among `n` choices (the backend derives per-choice seeds from it).
    /// `on_event` gets streamed events; returning false cancels (client gone).
    fn chat(
        &self,
        req: &ChatCompletionRequest,
        choice: u32,
        cancel: &CancelToken,
        on_event: &mut dyn FnMut(ChatEvent) -> bool,
    ) -> Result<ChatOutcome, ChatError>;

    /// Raw completion for /v1/completions (no template); `on_text` streams text.
    fn complete(
        &self,
        req: &CompletionRequest,
        prompt: &str,
        choice: u32,
        cancel: &CancelToken,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<CompletionOutcome, ChatError>;
}

/// A backend served under another model id (`--served-model-name`).
pub struct RenamedBackend {
    inner: std::sync::Arc<dyn ChatBackend>,
    name: String,
}

impl RenamedBackend {
    /// Serves `inner` as `name`.
    pub fn new(inner: std::sync::Arc<dyn ChatBackend>, name: impl Into<String>) -> Self {
        RenamedBackend {
            inner,
            name: name.into(),
        }
    }
}

impl ChatBackend for RenamedBackend {
    fn model_id(&self) -> &str {
        &self.name
    }

    fn chat(
        &self,
        req: &ChatCompletionRequest,
        choice: u32,
        cancel: &CancelToken,
        on_event: &mut dyn FnMut(ChatEvent) -> bool,
    ) -> Result<ChatOutcome, ChatError> {
        self.inner.chat(req, choice, cancel, on_event)
    }

    fn complete(
        &self,
        req: &CompletionRequest,
        prompt: &str,
        choice: u32,
        cancel: &CancelToken,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<CompletionOutcome, ChatError> {
        self.inner.complete(req, prompt, choice, cancel, on_text)
    }
}
