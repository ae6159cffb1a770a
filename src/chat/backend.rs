//! The engine as the server's [`ChatBackend`]: chat choices through the chat pipeline and
//! raw completions straight through the tokenizer.

use std::sync::Arc;

use super::engine_error;
use super::{ChatError, ChatEvent, ChatFinish, ChatOutcome};
use crate::engine::{CancelToken, FinishReason, LoadedModel};
use crate::openai::{ChatCompletionRequest, CompletionRequest, Usage};
use crate::server::backend::{ChatBackend, CompletionOutcome};

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

    fn chat(
        &self,
        req: &ChatCompletionRequest,
        choice: u32,
        cancel: &CancelToken,
        on_event: &mut dyn FnMut(ChatEvent) -> bool,
    ) -> Result<ChatOutcome, ChatError> {
        super::run(&self.lm, req, choice, cancel, on_event)
    }

    fn complete(
        &self,
        req: &CompletionRequest,
        prompt: &str,
        choice: u32,
        cancel: &CancelToken,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<CompletionOutcome, ChatError> {
        let lm = &self.lm;
        let ids = lm
            .tokenizer
            .encode(prompt, lm.tokenizer.add_bos_token())
            .map_err(|e| ChatError::Internal(e.to_string()))?;
        let mut params = lm.default_params();
        params.max_tokens = Some(req.max_tokens.unwrap_or(16).max(1) as usize);
        params.sampling = super::prepare::sampling_params(
            super::prepare::SamplingFields {
                temperature: req.temperature,
                top_p: req.top_p,
                presence_penalty: req.presence_penalty,
                frequency_penalty: req.frequency_penalty,
                logit_bias: req.logit_bias.as_ref(),
                seed: req.seed,
            },
            choice,
        )?;
        if let Some(stop) = &req.stop {
            params
                .stop_strings
                .extend(stop.to_vec().into_iter().filter(|s| !s.is_empty()));
        }
        let mut text = String::new();
        let stats = lm
            .generate(&ids, &params, cancel, &mut |ev| {
                text.push_str(&ev.text);
                ev.text.is_empty() || on_text(&ev.text)
            })
            .map_err(engine_error)?;
        Ok(CompletionOutcome {
            text,
            finish: if stats.finish == FinishReason::Length {
                ChatFinish::Length
            } else {
                ChatFinish::Stop
            },
            usage: Usage {
                prompt_tokens: stats.prompt_tokens as u32,
                completion_tokens: stats.completion_tokens as u32,
                total_tokens: (stats.prompt_tokens + stats.completion_tokens) as u32,
                prompt_tokens_details: Some(crate::openai::PromptTokensDetails {
                    cached_tokens: stats.cached_tokens as u32,
                }),
            },
        })
    }
}
