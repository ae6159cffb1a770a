//! The generation engine: the scheduler that batches every running sequence into one forward
//! pass per step ([`scheduler`]), the token loop each request runs on its own thread
//! ([`generate`]), one request's run over a model's scheduler ([`Generator`]), sampling, stop
//! handling and the prefix cache. It takes a model and parameters; it knows nothing of APIs,
//! chat templates or model families (`crate::runtime` bundles those).

pub mod generate;
mod pacing;
pub mod prefix_cache;
pub mod sampling;
pub mod scheduler;
pub mod sequence;
pub mod session;
pub mod stop;

pub use generate::{
    CancelToken, FinishReason, GenerateParams, GenerateStats, Steer, SteerFactory, TokenEvent,
};
pub use scheduler::{Scheduler, SchedulerConfig};
pub use sequence::SeqHandle;
pub use session::Generator;

pub use sampling::{SamplingParams, TokenLogprob};

/// Errors from generation.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The prompt does not fit in the context window.
    #[error("prompt is {prompt} tokens but the context window is {context} tokens (at least one token must be left to generate)")]
    ContextTooLong {
        /// Prompt length in tokens.
        prompt: usize,
        /// Context window in tokens.
        context: usize,
    },
    /// A sequence's cache would need more memory than the whole KV budget.
    #[error("a cache of {positions} positions is more than the KV-cache budget holds ({budget} positions; raise --kv-cache-mb)")]
    KvBudget {
        /// Positions asked for.
        positions: usize,
        /// Positions the budget holds.
        budget: usize,
    },
    /// The prompt is empty.
    #[error("the prompt is empty")]
    EmptyPrompt,
    /// Bad sampling parameters.
    #[error("invalid sampling parameters: {0}")]
    InvalidParams(String),
    /// A tensor operation failed.
    #[error("model error: {0}")]
    Model(#[from] candle_core::Error),
    /// Tokenization or detokenization failed.
    #[error("tokenizer error: {0}")]
    Tokenizer(String),
    /// The grammar constraint failed.
    #[error(transparent)]
    Constraint(#[from] crate::constrain::ConstrainError),
}
