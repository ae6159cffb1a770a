//! The token loop of one sequence: wait for the logits after the prompt, then sample one token
//! at a time until a stop token, a stop string, `max_tokens`, the end of the sequence's cache,
//! or cancellation. The forward passes run in the scheduler (`engine::scheduler`), batched with
//! other sequences; this loop, on the request's own thread, does everything per sequence:
//! logit masks and bias, sampling, stops, detokenization.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::sampling::{Sampler, SamplingParams, TokenLogprob};
use super::sequence::SeqHandle;
use super::stop::StopMatcher;
use super::EngineError;
use crate::constrain::Constraint;

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
    /// Feeds tokens in place of sampled ones where the request's plan says so (the close of
    /// a reasoning block over its budget); `None`: every token is sampled.
    pub steer: Option<SteerFactory>,
}

/// Decides, token by token, whether a token is fed instead of sampled: the chat layer's
/// reasoning budget (`chat::budget`). The token loop shows it every generated token's text
/// and asks it, before each sampling, for a token to feed; `allowed` says whether the grammar
/// (and the vocabulary limit) let a token come there.
pub trait Steer: Send {
    /// Follows one generated token's text (empty while it ends inside a character).
    fn push(&mut self, text: &str);
    /// The token to feed now instead of sampling, if any.
    fn next(&mut self, allowed: &dyn Fn(u32) -> bool) -> Option<u32>;
}

/// Makes a fresh [`Steer`] for each generation (each choice) of a request.
#[derive(Clone)]
pub struct SteerFactory(pub Arc<dyn Fn() -> Box<dyn Steer> + Send + Sync>);

impl std::fmt::Debug for SteerFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SteerFactory")
    }
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
            steer: None,
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

/// Generates for sequence `seq` (already submitted with `prompt`, its cache holding at most
/// `capacity` positions): waits for the prompt's logits, then samples. `on_token` returns
/// `false` to stop (client gone).
#[allow(clippy::too_many_arguments)]
pub fn generate(
    seq: &mut SeqHandle,
    prompt: &[u32],
    capacity: usize,
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
    if prompt.len() >= capacity {
        return Err(EngineError::ContextTooLong {
            prompt: prompt.len(),
            context: capacity,
        });
    }
    let t0 = Instant::now();
    let Some(mut logits) = seq.logits(cancel)? else {
        return Ok(stats(
            FinishReason::Cancelled,
            prompt.len(),
            seq.cached_tokens(),
            vec![],
            t0.elapsed(),
            Duration::ZERO,
        ));
    };
    let prefill_time = t0.elapsed();
    let reuse = seq.cached_tokens();
    let context = capacity;
    let room = context - prompt.len();
    let max_new = params.max_tokens.unwrap_or(room).min(room);
    let mut sampler = Sampler::new(params.sampling.clone(), prompt);
    let mut stop = StopMatcher::new(params.stop_strings.clone());
    let mut out = Vec::new();
    let t1 = Instant::now();
    let mut finish = FinishReason::Length;
    let mut stop_string = None;
    let mut grammar = params.constraint.as_ref().map(Constraint::start);
    let mut steer = params.steer.as_ref().map(|f| (f.0)());
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
        // A token to feed (the close of a reasoning block over its budget), where the grammar
        // and the vocabulary limit allow it.
        let next = steer.as_mut().and_then(|w| {
            w.next(&|id| {
                logits
                    .get(id as usize)
                    .is_some_and(|l| *l > f32::NEG_INFINITY)
            })
        });
        let (id, logprob) = match next {
            Some(id) => (id, sampler.force(&mut logits, id, params.top_logprobs)),
            None => sampler.sample(&mut logits, params.top_logprobs),
        };
        let is_stop = next.is_none() && params.stop_token_ids.contains(&id);
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
        if let Some(w) = steer.as_mut() {
            w.push(&piece);
        }
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
        seq.feed(id)?;
        match seq.logits(cancel)? {
            Some(l) => logits = l,
            None => {
                finish = FinishReason::Cancelled;
                break;
            }
        }
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
