//! A batched forward pass: the tokens of several sequences in one call, each sequence with its
//! own cache and positions (a ragged batch). The rows of all sequences go through the
//! projections, norms and MLPs together; attention splits them again, each sequence's rows
//! attending to its own cache. What a row computes does not depend on the other rows (every op
//! on the CPU path is row-invariant, see `kernels`), so a sequence's numbers are the same alone
//! or in any batch.

use candle_core::{Device, Tensor};

use super::kv_cache::KvCache;

/// Which logits a sequence wants from a forward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logits {
    /// None (a prefill chunk that does not end the prompt).
    None,
    /// The last new position's.
    Last,
    /// Every new position's.
    All,
}

/// One sequence's part of a batched forward pass: its new tokens, after what its cache holds.
pub struct BatchItem<'a> {
    /// The new tokens (at least one).
    pub tokens: &'a [u32],
    /// The sequence's cache, extended by the pass.
    pub cache: &'a mut KvCache,
    /// The logits wanted back.
    pub logits: Logits,
}

/// Where one sequence's rows sit in a batched call.
#[derive(Debug, Clone, Copy)]
pub(super) struct Span {
    /// First row of the sequence in the call.
    pub row0: usize,
    /// Its rows (new tokens).
    pub n: usize,
    /// The absolute position of its first new token.
    pub pos: usize,
}

/// The rows of a batched call.
pub(super) struct Rows {
    pub spans: Vec<Span>,
    /// Absolute position of every row.
    pub positions: Vec<usize>,
    /// Every row's token.
    pub ids: Vec<u32>,
}

impl Rows {
    /// The rows of `items`, checking that each cache has room for its tokens (and, for the
    /// kernel's layouts, making that room).
    pub fn new(items: &mut [BatchItem<'_>]) -> candle_core::Result<Rows> {
        if items.is_empty() {
            candle_core::bail!("forward called with no sequences");
        }
        let mut spans = Vec::with_capacity(items.len());
        let mut positions = Vec::new();
        let mut ids = Vec::new();
        for it in items.iter_mut() {
            let n = it.tokens.len();
            let pos = it.cache.start_of(n)?;
            it.cache.reserve(n)?;
            spans.push(Span {
                row0: ids.len(),
                n,
                pos,
            });
            positions.extend(pos..pos + n);
            ids.extend_from_slice(it.tokens);
        }
        Ok(Rows {
            spans,
            positions,
            ids,
        })
    }

    /// The tokens as a tensor `[rows]`.
    pub fn ids_tensor(&self, device: &Device) -> candle_core::Result<Tensor> {
        Tensor::new(self.ids.as_slice(), device)
    }

    /// The positions as a tensor `[rows]` (u32).
    pub fn positions_tensor(&self, device: &Device) -> candle_core::Result<Tensor> {
        let p: Vec<u32> = self.positions.iter().map(|&p| p as u32).collect();
        Tensor::new(p.as_slice(), device)
    }

    /// The rows whose logits the items want, in item order.
    pub fn logit_rows(&self, items: &[BatchItem<'_>]) -> Vec<u32> {
        let mut rows = Vec::new();
        for (it, s) in items.iter().zip(&self.spans) {
            match it.logits {
                Logits::None => {}
                Logits::Last => rows.push((s.row0 + s.n - 1) as u32),
                Logits::All => rows.extend((s.row0..s.row0 + s.n).map(|r| r as u32)),
            }
        }
        rows
    }

    /// Marks every item's new positions as cached.
    pub fn advance(&self, items: &mut [BatchItem<'_>]) {
        for (it, s) in items.iter_mut().zip(&self.spans) {
            it.cache.advance(s.n);
        }
    }
}

/// The rows `rows` of `x` (`[total, hidden]`); `x` itself when they are all of its rows.
pub(super) fn select_rows(x: &Tensor, rows: &[u32]) -> candle_core::Result<Tensor> {
    let total = x.dim(0)?;
    if rows.len() == total && rows.iter().enumerate().all(|(i, &r)| r as usize == i) {
        return Ok(x.clone());
    }
    if let (Some(&first), true) = (rows.first(), !rows.is_empty()) {
        let contiguous = rows.iter().enumerate().all(|(i, &r)| r == first + i as u32);
        if contiguous {
            return x.narrow(0, first as usize, rows.len());
        }
    }
    x.index_select(&Tensor::new(rows, x.device())?, 0)
}

/// A tensor's values as one f32 vector (a copy, in row-major order).
pub(super) fn to_f32_vec(t: &Tensor) -> candle_core::Result<Vec<f32>> {
    t.to_dtype(candle_core::DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()
}
