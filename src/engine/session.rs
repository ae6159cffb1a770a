//! One generation over a model's scheduler: size the sequence's cache for the request, submit
//! it (the scheduler starts it from the longest cached prefix and offers it back to the prefix
//! cache when it leaves), run the token loop.

use super::generate::{self, CancelToken, Detokenize, GenerateParams, GenerateStats, TokenEvent};
use super::scheduler::Scheduler;
use super::EngineError;
use crate::tokenizer::{DecodeStream, Tokenizer};

/// What the token loop needs of a loaded model: its scheduler (weights, running batch, prefix
/// cache), tokenizer and the context window allocated per sequence.
#[derive(Clone, Copy)]
pub struct Generator<'a> {
    /// The model's scheduler.
    pub scheduler: &'a Scheduler,
    /// The tokenizer (for incremental detokenization).
    pub tokenizer: &'a Tokenizer,
    /// Context window per sequence.
    pub context: usize,
}

impl Generator<'_> {
    /// Generates from prompt token ids, in the scheduler's batch, with a cache sized to what
    /// the request can use (prompt + `max_tokens`, at most the context window and the KV
    /// budget).
    ///
    /// This is the authoritative context-length check of every request path: a prompt of
    /// `context` tokens or more is [`EngineError::ContextTooLong`].
    pub fn generate(
        &self,
        prompt: &[u32],
        params: &GenerateParams,
        cancel: &CancelToken,
        on_token: &mut dyn FnMut(TokenEvent) -> bool,
    ) -> Result<GenerateStats, EngineError> {
        if prompt.len() >= self.context {
            return Err(EngineError::ContextTooLong {
                prompt: prompt.len(),
                context: self.context,
            });
        }
        params
            .sampling
            .validate()
            .map_err(EngineError::InvalidParams)?;
        let needed = match params.max_tokens {
            Some(m) => prompt.len().saturating_add(m).saturating_add(1),
            None => self.context,
        };
        let capacity = needed
            .min(self.context)
            .min(self.scheduler.budget_positions());
        let mut seq = self
            .scheduler
            .submit(prompt.to_vec(), capacity, cancel.clone())?;
        let mut detok = StreamDetok(self.tokenizer.decode_stream(false));
        let stats = generate::generate(
            &mut seq, prompt, capacity, params, &mut detok, cancel, on_token,
        )?;
        let m = self.scheduler.metrics();
        m.prompt_tokens.inc_by(stats.prompt_tokens as u64);
        m.completion_tokens.inc_by(stats.completion_tokens as u64);
        Ok(stats)
    }
}

struct StreamDetok<'a>(DecodeStream<'a>);

impl Detokenize for StreamDetok<'_> {
    fn push(&mut self, id: u32) -> Result<String, String> {
        self.0
            .push(id)
            .map(|s| s.unwrap_or_default())
            .map_err(|e| e.to_string())
    }
    fn finish(&mut self) -> Result<String, String> {
        self.0
            .flush()
            .map(|s| s.unwrap_or_default())
            .map_err(|e| e.to_string())
    }
}
