//! Continuous batching: one thread per model owns every running sequence and its KV cache and
//! runs one batched forward pass per step.
//!
//! A step holds every running sequence's next token (decode) and prefill chunks of sequences
//! that joined. While others decode, a step prefills only as many prompt tokens as keep it
//! within [`PREFILL_SLOWDOWN`] times a decode-only step (measured, `pacing`; at most
//! [`SchedulerConfig::step_tokens`]), so that a long prompt does not freeze the streams already
//! running; when nothing decodes, [`SchedulerConfig::prefill_chunk`] tokens. Sequences join at the next step
//! (FIFO, up to [`SchedulerConfig::max_batch`] at once, and only when their worst-case KV cache
//! fits the memory budget: otherwise they wait, they never fail or swap) and leave at once when
//! they finish or are cancelled, freeing their memory and offering their cache to the prefix
//! cache. A joining sequence starts from the longest cached prefix of its prompt.
//!
//! Sampling, logit bias, penalties, seeds, grammar masks, stop strings, detokenization and
//! cancellation stay with each request's own thread (the token loop in `generate`): the
//! scheduler hands a sequence its logits over a channel and waits for the sampled token (a
//! short grace for threads still sampling, then it runs without them). What a sequence
//! computes does not depend on the batch it ran in (`model::batch`), so none of this
//! scheduling changes an output.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::generate::CancelToken;
use super::pacing::Pacer;
use super::prefix_cache::PrefixCache;
use super::sequence::{Event, Join, Msg, SeqHandle};
use super::EngineError;
use crate::metrics::Metrics;
use crate::model::{BatchItem, KvCache, LanguageModel, Logits};
use candle_core::Tensor;

/// How long a step waits for threads still sampling their sequence's next token.
const GRACE: Duration = Duration::from_millis(10);
/// A step that prefills while sequences decode may take this many times a decode-only step:
/// the running streams' inter-token latency during a long prefill (issue 16 asks for at most
/// 3x their unloaded median at the 95th percentile; 2 leaves room for the noise of the clock).
pub const PREFILL_SLOWDOWN: f64 = 2.0;
/// Prefill tokens per step while sequences decode, before the pacer has measured the costs.
const START_PREFILL: usize = 8;

/// How the scheduler batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchedulerConfig {
    /// Sequences running at once (the batch size).
    pub max_batch: usize,
    /// Bytes the running sequences' KV caches may reserve; `None`: the context window times
    /// `max_batch`.
    pub kv_budget_bytes: Option<usize>,
    /// The most prefill tokens a step takes while sequences decode (the pacer takes fewer when
    /// more would slow the running streams beyond [`PREFILL_SLOWDOWN`]).
    pub step_tokens: usize,
    /// Prefill tokens per step when no sequence decodes.
    pub prefill_chunk: usize,
}

/// Default batch size (`--max-concurrent`): where the aggregate decode speed on a 2-core CPU
/// has grown several times over one sequence's (BENCHMARKS.md).
pub const DEFAULT_MAX_BATCH: usize = 8;

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            max_batch: DEFAULT_MAX_BATCH,
            kv_budget_bytes: None,
            step_tokens: 64,
            prefill_chunk: 512,
        }
    }
}

/// The scheduler of one model: submit sequences, get [`SeqHandle`]s.
pub struct Scheduler {
    tx: Sender<Msg>,
    next: AtomicU64,
    /// KV bytes one position takes, and the budget in bytes.
    position_bytes: usize,
    budget: usize,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("budget", &self.budget)
            .finish()
    }
}

impl Scheduler {
    /// Starts the scheduler thread of `model` (which exits once the scheduler and every
    /// handle are dropped); `context` sizes the default KV budget.
    pub fn start(
        model: Arc<dyn LanguageModel>,
        prefix: Arc<PrefixCache>,
        metrics: Arc<Metrics>,
        context: usize,
        cfg: SchedulerConfig,
    ) -> Result<Self, EngineError> {
        let position_bytes = model.new_cache(1)?.position_bytes().max(1);
        let max_batch = cfg.max_batch.max(1);
        let budget = cfg.kv_budget_bytes.unwrap_or(
            context
                .saturating_mul(max_batch)
                .saturating_mul(position_bytes),
        );
        let (tx, rx) = channel();
        let state = State {
            model,
            prefix,
            metrics: metrics.clone(),
            cfg: SchedulerConfig { max_batch, ..cfg },
            rx,
            queue: VecDeque::new(),
            running: Vec::new(),
            reserved: 0,
            budget,
            position_bytes,
            last_step: Instant::now(),
            pacer: Pacer::new(PREFILL_SLOWDOWN, START_PREFILL, cfg.step_tokens),
        };
        std::thread::Builder::new()
            .name("callm-scheduler".into())
            .spawn(move || state.run())
            .map_err(|e| EngineError::Model(candle_core::Error::Msg(e.to_string())))?;
        Ok(Scheduler {
            tx,
            next: AtomicU64::new(1),
            position_bytes,
            budget,
            metrics,
        })
    }

    /// Positions of KV cache the whole budget holds (no sequence can use more).
    pub fn budget_positions(&self) -> usize {
        self.budget / self.position_bytes
    }

    /// Returns once the scheduler has handled every message sent before (so sequences whose
    /// handles were dropped are in the prefix cache, and the metrics' gauges are current).
    pub fn sync(&self) {
        let (done, wait) = channel();
        if self.tx.send(Msg::Sync(done)).is_ok() {
            let _ = wait.recv();
        }
    }

    /// The metrics the scheduler records into.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Queues `prompt` (at least one token) for a cache of `capacity` positions (at most
    /// [`Scheduler::budget_positions`]); its handle yields the logits after the prompt.
    pub fn submit(
        &self,
        prompt: Vec<u32>,
        capacity: usize,
        cancel: CancelToken,
    ) -> Result<SeqHandle, EngineError> {
        if prompt.is_empty() {
            return Err(EngineError::EmptyPrompt);
        }
        if capacity > self.budget_positions() {
            return Err(EngineError::KvBudget {
                positions: capacity,
                budget: self.budget_positions(),
            });
        }
        if prompt.len() >= capacity {
            return Err(EngineError::ContextTooLong {
                prompt: prompt.len(),
                context: capacity,
            });
        }
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        let (reply, rx) = channel();
        let join = Join {
            seq,
            prompt,
            capacity,
            cancel,
            reply,
            arrived: Instant::now(),
        };
        self.tx.send(Msg::Join(join)).map_err(|_| {
            EngineError::Model(candle_core::Error::Msg("the scheduler stopped".into()))
        })?;
        Ok(SeqHandle {
            seq,
            tx: self.tx.clone(),
            rx,
            cached: 0,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Prompt tokens left to compute.
    Prefill,
    /// Logits sent; waiting for the sampled token.
    Sampling,
    /// The next token is in: decodes at the next step.
    Ready,
}

/// A sequence in the batch.
struct Running {
    seq: u64,
    /// The prompt, then each fed token.
    tokens: Vec<u32>,
    prompt_len: usize,
    cache: KvCache,
    phase: Phase,
    reply: Sender<Event>,
    cancel: CancelToken,
    /// Bytes reserved for its cache's capacity.
    reserved: usize,
    arrived: Instant,
    /// When its last logits were sent.
    last: Option<Instant>,
}

/// The scheduler thread's state.
struct State {
    model: Arc<dyn LanguageModel>,
    prefix: Arc<PrefixCache>,
    metrics: Arc<Metrics>,
    cfg: SchedulerConfig,
    rx: Receiver<Msg>,
    queue: VecDeque<Join>,
    running: Vec<Running>,
    reserved: usize,
    budget: usize,
    position_bytes: usize,
    last_step: Instant,
    pacer: Pacer,
}

impl State {
    fn run(mut self) {
        loop {
            if !self.has_work() {
                match self.rx.recv() {
                    Ok(m) => self.handle(m),
                    Err(_) => return,
                }
            }
            while let Ok(m) = self.rx.try_recv() {
                self.handle(m);
            }
            self.wait_for_samplers();
            self.reap_cancelled();
            self.admit();
            self.step();
            self.record_gauges();
        }
    }

    /// Whether a step could run now (or a waiting sequence could join).
    fn has_work(&self) -> bool {
        self.running.iter().any(|r| r.phase != Phase::Sampling) || self.can_admit()
    }

    /// Whether the first waiting sequence fits the batch and the KV budget now.
    fn can_admit(&self) -> bool {
        self.running.len() < self.cfg.max_batch
            && self.queue.front().is_some_and(|j| {
                self.reserved + j.capacity.saturating_mul(self.position_bytes) <= self.budget
            })
    }

    /// Gives threads still sampling a short grace to feed their token, when others are ready.
    fn wait_for_samplers(&mut self) {
        let deadline = self.last_step + GRACE;
        while self.running.iter().any(|r| r.phase == Phase::Sampling) && self.has_work() {
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            match self.rx.recv_timeout(deadline - now) {
                Ok(m) => self.handle(m),
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    fn handle(&mut self, m: Msg) {
        match m {
            Msg::Join(j) => self.queue.push_back(j),
            Msg::Token { seq, id } => {
                if let Some(r) = self.running.iter_mut().find(|r| r.seq == seq) {
                    r.tokens.push(id);
                    r.phase = Phase::Ready;
                }
            }
            Msg::Sync(done) => {
                // Everything handled before this message shows in the gauges.
                self.record_gauges();
                let _ = done.send(());
            }
            Msg::Leave { seq } => {
                if let Some(i) = self.running.iter().position(|r| r.seq == seq) {
                    let r = self.running.swap_remove(i);
                    self.finish(r);
                } else {
                    self.queue.retain(|j| j.seq != seq);
                }
            }
        }
    }

    /// Takes a sequence out of the batch: its memory back, its cache to the prefix cache.
    fn finish(&mut self, r: Running) {
        self.reserved -= r.reserved;
        let n = r.cache.len();
        self.prefix
            .insert(&r.tokens[..n.min(r.tokens.len())], r.cache);
    }

    fn reap_cancelled(&mut self) {
        let mut i = 0;
        while i < self.running.len() {
            if self.running[i].cancel.is_cancelled() {
                let r = self.running.swap_remove(i);
                let _ = r.reply.send(Event::Cancelled);
                self.finish(r);
            } else {
                i += 1;
            }
        }
        self.queue.retain(|j| {
            let gone = j.cancel.is_cancelled();
            if gone {
                let _ = j.reply.send(Event::Cancelled);
            }
            !gone
        });
    }

    /// Admits waiting sequences in arrival order while the batch and the KV budget have room.
    fn admit(&mut self) {
        while self.can_admit() {
            let Some(j) = self.queue.pop_front() else {
                return;
            };
            let need = j.capacity.saturating_mul(self.position_bytes);
            let (cache, cached) = match self.prefix.lookup(&j.prompt, j.capacity) {
                Ok(Some(r)) => (Ok(r.cache), r.tokens),
                Ok(None) => (self.model.new_cache(j.capacity), 0),
                Err(e) => (Err(e), 0),
            };
            let cache = match cache {
                Ok(c) => c,
                Err(e) => {
                    let _ = j.reply.send(Event::Failed(e.to_string()));
                    continue;
                }
            };
            if cached > 0 {
                self.metrics.prefix_hits.inc();
                self.metrics.prefix_reused_tokens.inc_by(cached as u64);
            }
            let _ = j.reply.send(Event::Started { cached });
            self.reserved += need;
            self.running.push(Running {
                seq: j.seq,
                prompt_len: j.prompt.len(),
                tokens: j.prompt,
                cache,
                phase: Phase::Prefill,
                reply: j.reply,
                cancel: j.cancel,
                reserved: need,
                arrived: j.arrived,
                last: None,
            });
        }
    }

    /// The tokens each running sequence takes this step (and whether it wants logits).
    fn plan(&mut self) -> Vec<Option<(usize, Logits)>> {
        // A sequence whose cache is full cannot decode: out, with an error (the token loop
        // stops at the capacity, so this is a guard).
        let mut i = 0;
        while i < self.running.len() {
            let r = &self.running[i];
            if r.phase == Phase::Ready && r.cache.len() + 1 > r.cache.capacity() {
                let r = self.running.swap_remove(i);
                let _ = r
                    .reply
                    .send(Event::Failed("the sequence's cache is full".into()));
                self.finish(r);
            } else {
                i += 1;
            }
        }
        let decoding = self
            .running
            .iter()
            .filter(|r| r.phase == Phase::Ready)
            .count();
        let mut budget = if decoding == 0 {
            self.cfg.prefill_chunk.max(1)
        } else if self.pacer.refresh_due() {
            0
        } else {
            self.pacer.budget()
        };
        self.running
            .iter()
            .map(|r| match r.phase {
                Phase::Ready => Some((1, Logits::Last)),
                Phase::Sampling => None,
                Phase::Prefill => {
                    let left = r.prompt_len - r.cache.len();
                    let n = left.min(budget);
                    budget -= n;
                    (n > 0).then_some((
                        n,
                        if n == left {
                            Logits::Last
                        } else {
                            Logits::None
                        },
                    ))
                }
            })
            .collect()
    }

    /// One batched forward pass; sends each sequence that wanted logits its row.
    fn step(&mut self) {
        let plan = self.plan();
        if plan.iter().all(Option::is_none) {
            return;
        }
        let mut items = Vec::new();
        let mut tokens = 0;
        let (mut decoding, mut prefill) = (0, 0);
        for (r, p) in self.running.iter_mut().zip(&plan) {
            if let Some((n, logits)) = *p {
                if r.phase == Phase::Ready {
                    decoding += 1;
                } else {
                    prefill += n;
                }
                let Running {
                    tokens: t, cache, ..
                } = r;
                let start = cache.len();
                items.push(BatchItem {
                    tokens: &t[start..start + n],
                    cache,
                    logits,
                });
                tokens += n;
            }
        }
        let started = Instant::now();
        let result = self.model.forward_batch(&mut items).and_then(host_f32);
        self.pacer
            .record(decoding, prefill, started.elapsed().as_secs_f64());
        self.metrics.batch_sequences.observe(items.len() as f64);
        self.metrics.batch_tokens.observe(tokens as f64);
        drop(items);
        self.last_step = Instant::now();
        let rows = match result {
            Ok(rows) => rows,
            Err(e) => {
                tracing::error!("forward pass failed: {e}");
                let msg = e.to_string();
                let mut i = self.running.len();
                while i > 0 {
                    i -= 1;
                    if plan[i].is_some() {
                        let r = self.running.swap_remove(i);
                        let _ = r.reply.send(Event::Failed(msg.clone()));
                        self.finish(r);
                    }
                }
                return;
            }
        };
        let n_rows = rows.dims().first().copied().unwrap_or(0);
        let mut next_row = 0;
        let now = Instant::now();
        for (r, p) in self.running.iter_mut().zip(&plan) {
            if let Some((_, Logits::Last)) = p {
                if next_row >= n_rows {
                    break;
                }
                let row = next_row;
                next_row += 1;
                match r.last {
                    None => self.metrics.ttft.observe((now - r.arrived).as_secs_f64()),
                    Some(t) => self.metrics.itl.observe((now - t).as_secs_f64()),
                }
                r.last = Some(now);
                r.phase = Phase::Sampling;
                let _ = r.reply.send(Event::Logits {
                    all: rows.clone(),
                    row,
                });
            }
        }
    }

    fn record_gauges(&self) {
        let m = &self.metrics;
        m.running.set(self.running.len() as i64);
        m.kv_reserved_bytes.set(self.reserved as i64);
        m.kv_bytes.set(
            self.running
                .iter()
                .map(|r| r.cache.size_bytes())
                .sum::<usize>() as i64,
        );
        m.kv_waiting.set(self.queue.len() as i64);
    }
}

/// The step's logits as f32 on the CPU, where every sequence's thread reads its row: as they
/// are when the model computed them there (the CPU path: no copy), else one conversion or
/// transfer for the whole step.
fn host_f32(logits: Tensor) -> candle_core::Result<Tensor> {
    logits.dims2()?;
    let logits = logits.to_device(&candle_core::Device::Cpu)?;
    if logits.dtype() == candle_core::DType::F32 {
        Ok(logits)
    } else {
        logits.to_dtype(candle_core::DType::F32)
    }
}
