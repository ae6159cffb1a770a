//! A model ready to serve: what a loaded model bundles above the engine. The decoder and
//! tokenizer, the registry family, the chat template renderer, the tool-call parser chain,
//! the constrained-decoding engine (built on first use), the prefix cache and the stop
//! rules, loaded from any model source ([`load`]).
//!
//! The engine (`crate::engine`) and constrained decoding (`crate::constrain`) both sit
//! below this bundle: it hands the engine a model and parameters ([`LoadedModel::generate`])
//! and builds the constraint engine from its tokenizer ([`LoadedModel::constraint_engine`]).

pub mod load;

use std::sync::Arc;

use candle_core::Device;

pub use load::{gguf_meta, GgufMeta, LoadOptions, DEFAULT_MAX_CONTEXT};

use crate::constrain::{ConstrainError, ConstraintEngine, EngineCache};
use crate::engine::prefix_cache::PrefixCache;
use crate::engine::{
    CancelToken, EngineError, GenerateParams, GenerateStats, Generator, Scheduler, TokenEvent,
};
use crate::metrics::Metrics;
use crate::model::LanguageModel;
use crate::parsers::ParserChain;
use crate::registry::Family;
use crate::template::{ModelTemplateInfo, PromptRenderer};
use crate::tokenizer::Tokenizer;

/// A loaded model with everything needed to turn requests into tokens and back.
pub struct LoadedModel {
    /// The name the model was loaded by.
    pub name: String,
    /// The model family (registry entry).
    pub family: Family,
    /// The decoder.
    pub model: Arc<dyn LanguageModel>,
    /// The tokenizer.
    pub tokenizer: Arc<Tokenizer>,
    /// The model's own chat template(s), if it has any.
    pub template: ModelTemplateInfo,
    /// The compiled prompt renderer (the family's bundled template or the model's own).
    pub renderer: PromptRenderer,
    /// The family's tool-call parser chain.
    pub parsers: ParserChain,
    /// Token ids that end generation.
    pub stop_token_ids: Vec<u32>,
    /// Strings that end generation (registry stops that are not single tokens).
    pub stop_strings: Vec<String>,
    /// Context window allocated per sequence.
    pub context: usize,
    /// The device the model runs on.
    pub device: Device,
    /// Seconds spent loading.
    pub load_seconds: f64,
    /// Key/value caches of recent sequences, reused for prompts that share their prefix.
    pub prefix_cache: Arc<PrefixCache>,
    /// The scheduler that batches this model's running sequences (owns their KV caches).
    pub scheduler: Scheduler,
    /// What `GET /metrics` reports for this model.
    pub metrics: Arc<Metrics>,
    /// The constrained-decoding engine, built on first use (`constraint_engine()`).
    pub constraints: EngineCache,
}

impl std::fmt::Debug for LoadedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedModel")
            .field("name", &self.name)
            .field("family", &self.family.name)
            .finish()
    }
}

impl LoadedModel {
    /// Default generation parameters for this model (its stop tokens and strings).
    pub fn default_params(&self) -> GenerateParams {
        let vocab = self.tokenizer.vocab_size();
        GenerateParams {
            stop_token_ids: self.stop_token_ids.clone(),
            stop_strings: self.stop_strings.clone(),
            vocab_limit: (vocab < self.model.config().vocab_size).then_some(vocab),
            ..Default::default()
        }
    }

    /// The engine's view of this model: its scheduler, tokenizer and context window.
    pub fn generator(&self) -> Generator<'_> {
        Generator {
            scheduler: &self.scheduler,
            tokenizer: &self.tokenizer,
            context: self.context,
        }
    }

    /// Empties the prefix cache, after the scheduler has put back every sequence that ended
    /// before this call.
    pub fn clear_prefix_cache(&self) {
        self.scheduler.sync();
        self.prefix_cache.clear();
    }

    /// Generates from prompt token ids (see [`Generator::generate`]).
    pub fn generate(
        &self,
        prompt: &[u32],
        params: &GenerateParams,
        cancel: &CancelToken,
        on_token: &mut dyn FnMut(TokenEvent) -> bool,
    ) -> Result<GenerateStats, EngineError> {
        self.generator().generate(prompt, params, cancel, on_token)
    }

    /// This model's constrained-decoding engine (built on first use, then shared).
    pub fn constraint_engine(&self) -> Result<Arc<ConstraintEngine>, ConstrainError> {
        self.constraints.get(|| {
            ConstraintEngine::new(
                self.tokenizer.clone(),
                self.model.config().vocab_size,
                &self.stop_token_ids,
            )
        })
    }
}
