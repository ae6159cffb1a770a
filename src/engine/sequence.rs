//! A sequence's side of the scheduler: the messages between a request's thread and the
//! scheduler's, and [`SeqHandle`], through which the token loop gets its logits and feeds its
//! sampled tokens back. Dropping the handle takes the sequence out of the batch at once.

use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use candle_core::Tensor;

use super::generate::CancelToken;
use super::EngineError;

/// How often a thread waiting for its logits looks at its cancel flag.
const CANCEL_POLL: Duration = Duration::from_millis(20);

/// What a request's thread tells the scheduler.
pub(super) enum Msg {
    /// A new sequence wants to run.
    Join(Join),
    /// The sequence's next token, sampled from the logits it was given.
    Token { seq: u64, id: u32 },
    /// The sequence is done (finished, cancelled, or its thread gone).
    Leave { seq: u64 },
    /// Answer once every earlier message is handled (finished sequences are in the prefix
    /// cache).
    Sync(Sender<()>),
}

/// A sequence that asks to join the batch.
pub(super) struct Join {
    pub seq: u64,
    pub prompt: Vec<u32>,
    /// Positions its cache may grow to (prompt and generated tokens).
    pub capacity: usize,
    pub cancel: CancelToken,
    pub reply: Sender<Event>,
    pub arrived: Instant,
}

/// What the scheduler tells a sequence's thread.
pub(super) enum Event {
    /// Admitted: this many prompt tokens came from the prefix cache.
    Started { cached: usize },
    /// The logits of the next token (after the prompt, then after each fed token): row `row`
    /// of the step's logits `[rows, vocab]`, shared by every sequence of the step. The
    /// sequence's own thread copies its row out, so the scheduler's thread, which the next
    /// step waits for, copies nothing.
    Logits { all: Tensor, row: usize },
    /// Cancelled (its flag was set) and out of the batch.
    Cancelled,
    /// The forward pass failed.
    Failed(String),
}

/// A running (or waiting) sequence, as its token loop sees it.
pub struct SeqHandle {
    pub(super) seq: u64,
    pub(super) tx: Sender<Msg>,
    pub(super) rx: Receiver<Event>,
    pub(super) cached: usize,
}

impl SeqHandle {
    /// Waits for the next logits; `Ok(None)` when the sequence was cancelled (by `cancel`,
    /// checked while waiting, or by the scheduler).
    pub fn logits(&mut self, cancel: &CancelToken) -> Result<Option<Vec<f32>>, EngineError> {
        loop {
            if cancel.is_cancelled() {
                return Ok(None);
            }
            match self.rx.recv_timeout(CANCEL_POLL) {
                Ok(Event::Started { cached }) => self.cached = cached,
                Ok(Event::Logits { all, row }) => {
                    return all
                        .get(row)
                        .and_then(|r| r.to_vec1::<f32>())
                        .map(Some)
                        .map_err(EngineError::Model)
                }
                Ok(Event::Cancelled) => return Ok(None),
                Ok(Event::Failed(e)) => return Err(EngineError::Model(candle_core::Error::Msg(e))),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(EngineError::Model(candle_core::Error::Msg(
                        "the scheduler stopped".into(),
                    )))
                }
            }
        }
    }

    /// Feeds the sampled token: the next [`SeqHandle::logits`] are those after it.
    pub fn feed(&self, id: u32) -> Result<(), EngineError> {
        self.tx.send(Msg::Token { seq: self.seq, id }).map_err(|_| {
            EngineError::Model(candle_core::Error::Msg("the scheduler stopped".into()))
        })
    }

    /// Prompt tokens that came from the prefix cache (known once the first logits came).
    pub fn cached_tokens(&self) -> usize {
        self.cached
    }
}

impl Drop for SeqHandle {
    fn drop(&mut self) {
        let _ = self.tx.send(Msg::Leave { seq: self.seq });
    }
}
