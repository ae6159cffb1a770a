//! The token loop: prefill, then sample one token at a time until a stop token, a stop
//! string, `max_tokens`, the end of the context, or cancellation.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::sampling::{Sampler, SamplingParams, TokenLogprob};
use super::stop::StopMatcher;
use super::EngineError;
use crate::constrain::Constraint;
use crate::model::{KvCache, LanguageModel};

/// Prompt tokens fed to the model per forward pass during prefill. Chunks sit on a fixed grid
/// of absolute positions (`[0, 64)`, `[64, 128)`, ...), so a prompt's keys and values come out
/// bit for bit the same whether it is prefilled whole or from a reused prefix that ends on the
/// grid (quantized activations turn the last-bit differences of other batchings into visibly
/// different logits, and so different sampled text for the same seed).
pub const PREFILL_CHUNK: usize = 64;

/// A shared flag that stops a generation at the next token.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A token that is not cancelled.
    pub fn new() -> Self {
        Self::default()
    }
    /// Requests cancellation.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
    /// Whether cancellation was requested.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// A stop token or stop string.
    Stop,
    /// `max_tokens` or the context window was reached.
    Length,
    /// The caller cancelled.
    Cancelled,
}

/// Turns token ids into text incrementally (implemented by the tokenizer's decode stream).
pub trait Detokenize {
    /// Feeds one token; returns the text it completes (possibly empty).
    fn push(&mut self, id: u32) -> Result<String, String>;
    /// Returns any text still held back at the end.
    fn finish(&mut self) -> Result<String, String>;
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenerateParams {
    /// Most tokens to generate (`None`: until the context is full).
    pub max_tokens: Option<usize>,
    /// Sampling settings.
    pub sampling: SamplingParams,
    /// Token ids that end generation (not emitted).
    pub stop_token_ids: Vec<u32>,
    /// Strings that end generation (not emitted, also when split across tokens).
    pub stop_strings: Vec<String>,
    /// Return this many alternatives' log-probabilities per token.
    pub top_logprobs: Option<usize>,
    /// Keep generating through stop tokens (benchmarks).
    pub ignore_eos: bool,
    /// A grammar the output must follow (token mask per step), see `constrain`.
    pub constraint: Option<Constraint>,
    /// Ids at or above this are never sampled: a model's padded vocabulary beyond what its
    /// tokenizer knows (ChatGLM3 has 65024 logits for 64798 tokens). `None`: no limit.
    pub vocab_limit: Option<usize>,
}

impl Default for GenerateParams {
    fn default() -> Self {
        GenerateParams {
            max_tokens: Some(256),
            sampling: SamplingParams::default(),
            stop_token_ids: vec![],
            stop_strings: vec![],
            top_logprobs: None,
            ignore_eos: false,
            constraint: None,
            vocab_limit: None,
        }
    }
}

/// One generated token.
#[derive(Debug, Clone)]
pub struct TokenEvent {
    /// The token id.
    pub id: u32,
    /// Text released by this token (may be empty while bytes or a possible stop string are held).
    pub text: String,
    /// Log-probabilities, when asked for.
    pub logprob: Option<TokenLogprob>,
}

/// Counts and timings of one generation.
#[derive(Debug, Clone)]
pub struct GenerateStats {
    /// Why it ended.
    pub finish: FinishReason,
    /// Prompt length.
    pub prompt_tokens: usize,
    /// Prompt tokens whose cache was reused instead of recomputed.
    pub cached_tokens: usize,
    /// Generated tokens (stop tokens excluded).
    pub completion_tokens: usize,
    /// The stop string that ended generation, when one did.
    pub stop_string: Option<String>,
    /// Time spent on the prompt.
    pub prefill_time: Duration,
    /// Time spent generating after the first token.
    pub decode_time: Duration,
    /// The generated ids.
    pub output_ids: Vec<u32>,
}

/// Runs the prompt through `model` and generates; `cache` may already hold a prefix of
/// `prompt` (its positions are reused). `on_token` returns `false` to stop (client gone).
pub fn generate(
    model: &dyn LanguageModel,
    cache: &mut KvCache,
    prompt: &[u32],
    params: &GenerateParams,
    detok: &mut dyn Detokenize,
    cancel: &CancelToken,
    on_token: &mut dyn FnMut(TokenEvent) -> bool,
) -> Result<GenerateStats, EngineError> {
    params
        .sampling
        .validate()
        .map_err(EngineError::InvalidParams)?;
    if prompt.is_empty() {
        return Err(EngineError::EmptyPrompt);
    }
    // The request's context check is `Generator::generate`'s; this one only guards the
    // capacity of a cache the caller brought.
    let context = cache.capacity();
    if prompt.len() >= context {
        return Err(EngineError::ContextTooLong {
            prompt: prompt.len(),
            context,
        });
    }
    // Reuse what the cache holds of the prompt, but always recompute the last token.
    let reuse = cache.len().min(prompt.len() - 1);
    cache.truncate(reuse);
    let t0 = Instant::now();
    let mut logits = None;
    let mut start = reuse;
    while start < prompt.len() {
        // Up to the next grid point.
        let end = ((start / PREFILL_CHUNK + 1) * PREFILL_CHUNK).min(prompt.len());
        let chunk = &prompt[start..end];
        start = end;
        if cancel.is_cancelled() {
            return Ok(stats(
                FinishReason::Cancelled,
                prompt.len(),
                reuse,
                vec![],
                t0.elapsed(),
                Duration::ZERO,
            ));
        }
        logits = Some(model.forward(chunk, cache, false)?);
    }
    let prefill_time = t0.elapsed();
    let mut logits: Vec<f32> = match logits {
        Some(l) => l.squeeze(0)?.to_vec1()?,
        None => return Err(EngineError::EmptyPrompt),
    };
    let room = context - prompt.len();
    let max_new = params.max_tokens.unwrap_or(room).min(room);
    let mut sampler = Sampler::new(params.sampling.clone(), prompt);
    let mut stop = StopMatcher::new(params.stop_strings.clone());
    let mut out = Vec::new();
    let t1 = Instant::now();
    let mut finish = FinishReason::Length;
    let mut stop_string = None;
    let mut grammar = params.constraint.as_ref().map(Constraint::start);
    while out.len() < max_new {
        if cancel.is_cancelled() {
            finish = FinishReason::Cancelled;
            break;
        }
        if let Some(limit) = params.vocab_limit.filter(|&l| l > 0 && l < logits.len()) {
            logits[limit..].fill(f32::NEG_INFINITY);
        }
        if let Some(g) = grammar.as_mut() {
            if !g.mask(&mut logits)? {
                finish = FinishReason::Stop;
                break;
            }
        }
        let (id, logprob) = sampler.sample(&mut logits, params.top_logprobs);
        let is_stop = params.stop_token_ids.contains(&id);
        // A stop token the grammar allowed ends a complete answer (even when benchmarking).
        if is_stop && (!params.ignore_eos || grammar.is_some()) {
            finish = FinishReason::Stop;
            break;
        }
        if let Some(g) = grammar.as_mut() {
            g.commit(id)?;
        }
        out.push(id);
        let piece = detok.push(id).map_err(EngineError::Tokenizer)?;
        let step = stop.push(&piece);
        let keep_going = on_token(TokenEvent {
            id,
            text: step.emit,
            logprob,
        });
        if step.stopped {
            finish = FinishReason::Stop;
            stop_string = step.matched;
            break;
        }
        if !keep_going {
            finish = FinishReason::Cancelled;
            break;
        }
        if out.len() >= max_new {
            break;
        }
        logits = model.forward(&[id], cache, false)?.squeeze(0)?.to_vec1()?;
    }
    if stop_string.is_none() {
        // Release text held for incomplete characters or possible stop strings.
        let tail = detok.finish().map_err(EngineError::Tokenizer)?;
        let step = stop.push(&tail);
        let mut rest = step.emit;
        if step.stopped {
            finish = FinishReason::Stop;
            stop_string = step.matched;
        } else {
            rest.push_str(&stop.flush());
        }
        if !rest.is_empty() {
            if let Some(&last) = out.last() {
                on_token(TokenEvent {
                    id: last,
                    text: rest,
                    logprob: None,
                });
            }
        }
    }
    let decode_time = t1.elapsed();
    let mut done = stats(finish, prompt.len(), reuse, out, prefill_time, decode_time);
    done.stop_string = stop_string;
    Ok(done)
}

fn stats(
    finish: FinishReason,
    prompt_tokens: usize,
    cached_tokens: usize,
    output_ids: Vec<u32>,
    prefill_time: Duration,
    decode_time: Duration,
) -> GenerateStats {
    GenerateStats {
        finish,
        prompt_tokens,
        cached_tokens,
        completion_tokens: output_ids.len(),
        stop_string: None,
        prefill_time,
        decode_time,
        output_ids,
    }
}
