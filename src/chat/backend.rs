//! The seam between front ends (the HTTP server, `callm chat`) and inference: the
//! [`ChatBackend`] trait, and [`EngineBackend`], a loaded model behind it (chat choices
//! through the chat pipeline, raw completions straight through the tokenizer).

use std::sync::Arc;

use super::prepare::sampling_params;
use super::types::{ChatError, ChatEvent, ChatFinish, ChatOutcome, TokenUsage};
use crate::engine::{CancelToken, FinishReason};
use crate::metrics::Metrics;
use crate::request::{ChatRequest, TextRequest};
use crate::runtime::LoadedModel;

/// The result of one raw completion choice (`/v1/completions`).
#[derive(Debug, Clone, PartialEq)]
pub struct CompletionOutcome {
    /// The generated text (without the prompt; the front end handles `echo`).
    pub text: String,
    /// Why it ended ([`ChatFinish::Stop`] or [`ChatFinish::Length`]).
    pub finish: ChatFinish,
    /// Token counts.
    pub usage: TokenUsage,
}

/// An inference engine that can serve chat and raw completions.
///
/// Front ends hand it domain requests (validated at their edge), check the model name, and
/// run every call on a blocking thread (the server holds one of its `--max-concurrent`
/// slots meanwhile).
pub trait ChatBackend: Send + Sync + 'static {
    /// The model id served (`--served-model-name` or the model's name).
    fn model_id(&self) -> &str;

    /// Runs one chat choice to the end. Blocking (CPU-bound): call it from tokio::task::spawn_blocking.
    /// `choice` is the index among `n` choices (the backend derives per-choice seeds from it).
    /// `on_event` gets streamed events; returning false cancels (client gone).
    fn chat(
        &self,
        req: &ChatRequest,
        choice: u32,
        cancel: &CancelToken,
        on_event: &mut dyn FnMut(ChatEvent) -> bool,
    ) -> Result<ChatOutcome, ChatError>;

    /// Raw completion of one of `req`'s prompts (no template); `on_text` streams text.
    fn complete(
        &self,
        req: &TextRequest,
        prompt: &str,
        choice: u32,
        cancel: &CancelToken,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<CompletionOutcome, ChatError>;

    /// The prompt ids a chat choice of `req` starts from (template applied, forced answer
    /// start included): what `usage` counts as its prompt tokens.
    fn prompt_tokens(&self, req: &ChatRequest) -> Result<Vec<u32>, ChatError>;

    /// Token ids of `text` (special-token strings become their ids); `add_special` adds the
    /// BOS/EOS the model expects.
    fn tokenize(&self, text: &str, add_special: bool) -> Result<Vec<u32>, ChatError>;

    /// The text of token ids, special tokens kept. An id outside the vocabulary is an
    /// invalid request about `tokens`.
    fn detokenize(&self, ids: &[u32]) -> Result<String, ChatError>;

    /// The engine's metrics, when it keeps any (`GET /metrics` reports them).
    fn metrics(&self) -> Option<Arc<Metrics>> {
        None
    }
}

/// A backend served under another model id (`--served-model-name`).
pub struct RenamedBackend {
    inner: Arc<dyn ChatBackend>,
    name: String,
}

impl RenamedBackend {
    /// Serves `inner` as `name`.
    pub fn new(inner: Arc<dyn ChatBackend>, name: impl Into<String>) -> Self {
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
        req: &ChatRequest,
        choice: u32,
        cancel: &CancelToken,
        on_event: &mut dyn FnMut(ChatEvent) -> bool,
    ) -> Result<ChatOutcome, ChatError> {
        self.inner.chat(req, choice, cancel, on_event)
    }

    fn complete(
        &self,
        req: &TextRequest,
        prompt: &str,
        choice: u32,
        cancel: &CancelToken,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<CompletionOutcome, ChatError> {
        self.inner.complete(req, prompt, choice, cancel, on_text)
    }

    fn prompt_tokens(&self, req: &ChatRequest) -> Result<Vec<u32>, ChatError> {
        self.inner.prompt_tokens(req)
    }

    fn tokenize(&self, text: &str, add_special: bool) -> Result<Vec<u32>, ChatError> {
        self.inner.tokenize(text, add_special)
    }

    fn detokenize(&self, ids: &[u32]) -> Result<String, ChatError> {
        self.inner.detokenize(ids)
    }

    fn metrics(&self) -> Option<Arc<Metrics>> {
        self.inner.metrics()
    }
}

/// A loaded model served through the chat pipeline.
pub struct EngineBackend {
    lm: Arc<LoadedModel>,
    id: String,
}

impl EngineBackend {
    /// Serves `lm` under the file or repo name it was loaded by.
    pub fn new(lm: Arc<LoadedModel>) -> Self {
        let id = std::path::Path::new(&lm.name)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| lm.name.clone());
        EngineBackend { lm, id }
    }
}

impl ChatBackend for EngineBackend {
    fn model_id(&self) -> &str {
        &self.id
    }

    fn metrics(&self) -> Option<Arc<Metrics>> {
        Some(self.lm.metrics.clone())
    }

    fn chat(
        &self,
        req: &ChatRequest,
        choice: u32,
        cancel: &CancelToken,
        on_event: &mut dyn FnMut(ChatEvent) -> bool,
    ) -> Result<ChatOutcome, ChatError> {
        super::run(&self.lm, req, choice, cancel, on_event)
    }

    fn complete(
        &self,
        req: &TextRequest,
        prompt: &str,
        choice: u32,
        cancel: &CancelToken,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<CompletionOutcome, ChatError> {
        let lm = &self.lm;
        super::limits::check_prompt_bytes(lm, prompt.len(), "prompt")?;
        super::limits::check_logit_bias(&req.sampling, super::limits::vocabulary(lm))?;
        let ids = lm
            .tokenizer
            .encode(prompt, lm.tokenizer.add_bos_token())
            .map_err(|e| ChatError::Internal(e.to_string()))?;
        let mut params = lm.default_params();
        params.max_tokens = Some(req.max_tokens as usize);
        params.sampling = sampling_params(&req.sampling, choice);
        params.stop_strings.extend(req.stop.iter().cloned());
        let mut text = String::new();
        let stats = lm.generate(&ids, &params, cancel, &mut |ev| {
            text.push_str(&ev.text);
            ev.text.is_empty() || on_text(&ev.text)
        })?;
        Ok(CompletionOutcome {
            text,
            finish: if stats.finish == FinishReason::Length {
                ChatFinish::Length
            } else {
                ChatFinish::Stop
            },
            usage: TokenUsage {
                prompt_tokens: stats.prompt_tokens as u32,
                completion_tokens: stats.completion_tokens as u32,
                cached_tokens: Some(stats.cached_tokens as u32),
                // Raw completions are not split into reasoning and answer.
                reasoning_tokens: None,
            },
        })
    }

    fn prompt_tokens(&self, req: &ChatRequest) -> Result<Vec<u32>, ChatError> {
        super::prompt_ids(&self.lm, req)
    }

    fn tokenize(&self, text: &str, add_special: bool) -> Result<Vec<u32>, ChatError> {
        self.lm
            .tokenizer
            .encode(text, add_special)
            .map_err(|e| ChatError::Internal(e.to_string()))
    }

    fn detokenize(&self, ids: &[u32]) -> Result<String, ChatError> {
        let tok = &self.lm.tokenizer;
        if let Some(bad) = ids.iter().find(|&&id| id as usize >= tok.vocab_size()) {
            return Err(ChatError::invalid(
                "tokens",
                format!(
                    "Token id {bad} is outside the vocabulary (ids 0 to {}).",
                    tok.vocab_size().saturating_sub(1)
                ),
            ));
        }
        tok.decode(ids, false)
            .map_err(|e| ChatError::Internal(e.to_string()))
    }
}
