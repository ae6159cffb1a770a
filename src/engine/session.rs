//! One generation over a model with its prefix cache: size a KV cache for the request,
//! start it from the longest cached prefix, run the token loop, offer the sequence back.

use super::generate::{self, CancelToken, Detokenize, GenerateParams, GenerateStats, TokenEvent};
use super::prefix_cache::PrefixCache;
use super::EngineError;
use crate::model::LanguageModel;
use crate::tokenizer::{DecodeStream, Tokenizer};

/// What the token loop needs of a loaded model: weights, tokenizer, the context window
/// allocated per sequence, and the prefix cache shared by its requests.
#[derive(Clone, Copy)]
pub struct Generator<'a> {
    /// The decoder.
    pub model: &'a dyn LanguageModel,
    /// The tokenizer (for incremental detokenization).
    pub tokenizer: &'a Tokenizer,
    /// Context window per sequence.
    pub context: usize,
    /// Key/value caches of recent sequences.
    pub prefix_cache: &'a PrefixCache,
}

impl Generator<'_> {
    /// Generates from prompt token ids with a fresh cache, sized to what the request can
    /// use (prompt + `max_tokens`, at most the context window).
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
        let needed = match params.max_tokens {
            Some(m) => prompt.len().saturating_add(m).saturating_add(1),
            None => self.context,
        };
        let capacity = needed.min(self.context);
        let mut cache = match self.prefix_cache.lookup(prompt, capacity)? {
            Some(reused) => {
                tracing::debug!(
                    reused = reused.tokens,
                    prompt = prompt.len(),
                    "prefix cache hit"
                );
                reused.cache
            }
            None => self.model.new_cache(capacity)?,
        };
        let mut detok = StreamDetok(self.tokenizer.decode_stream(false));
        let stats = generate::generate(
            self.model, &mut cache, prompt, params, &mut detok, cancel, on_token,
        )?;
        if self.prefix_cache.enabled() {
            let mut seq = Vec::with_capacity(prompt.len() + stats.output_ids.len());
            seq.extend_from_slice(prompt);
            seq.extend_from_slice(&stats.output_ids);
            self.prefix_cache.insert(&seq, prompt.len(), cache);
        }
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
