//! [`Embedding`]: a token-embedding table, and the same table as a tied output projection.

use std::sync::Arc;

use candle_core::quantized::QTensor;
use candle_core::{DType, Device, Tensor};

use super::weights::{dense_linear, packed_with_bias, quant_linear, Linear};
use crate::kernels::{self, BlockKind, PackedLinear};

/// A token-embedding table, dense or quantized.
#[derive(Debug, Clone)]
pub enum Embedding {
    /// Dense `[vocab, hidden]`.
    Dense(Tensor),
    /// Quantized `[vocab, hidden]`, rows dequantized on lookup.
    Quant(Arc<QTensor>),
    /// Quantized `[vocab, hidden]` in a block type candle does not know (IQ4_NL, IQ4_XS): the
    /// file's blocks, rows dequantized on lookup by callm's kernels crate.
    Blocks(BlockTable),
}

/// The blocks of an [`Embedding::Blocks`] table.
#[derive(Debug, Clone)]
pub struct BlockTable {
    kind: BlockKind,
    data: Arc<[u8]>,
    vocab: usize,
    hidden: usize,
    device: Device,
}

impl Embedding {
    /// A table of `kind` blocks, `data` holding whole rows of `hidden` values; `None` when
    /// `hidden` is not whole blocks or `data` not whole rows.
    pub fn blocks(kind: BlockKind, data: Vec<u8>, hidden: usize, device: &Device) -> Option<Self> {
        let per = kind.block_values();
        if hidden == 0 || !hidden.is_multiple_of(per) {
            return None;
        }
        let row = hidden / per * kind.block_bytes();
        if !data.len().is_multiple_of(row) {
            return None;
        }
        Some(Embedding::Blocks(BlockTable {
            kind,
            vocab: data.len() / row,
            data: data.into(),
            hidden,
            device: device.clone(),
        }))
    }

    /// Looks up rows for `ids` (`[n]` u32) and returns `[n, hidden]` in `dtype`.
    pub fn forward(&self, ids: &Tensor, dtype: DType) -> candle_core::Result<Tensor> {
        match self {
            Embedding::Dense(t) => t.index_select(ids, 0)?.to_dtype(dtype),
            Embedding::Quant(q) => q.embedding(ids)?.to_dtype(dtype),
            Embedding::Blocks(b) => b.rows(&ids.to_vec1::<u32>()?)?.to_dtype(dtype),
        }
    }

    /// The same table used as an output projection (tied embeddings).
    pub fn as_linear(&self) -> candle_core::Result<Linear> {
        Ok(match self {
            Embedding::Dense(t) => dense_linear(t.clone(), None),
            Embedding::Quant(q) => quant_linear(q.clone(), None)?,
            Embedding::Blocks(b) => b.as_linear()?,
        })
    }
}

impl BlockTable {
    /// Bytes of one row.
    fn row_bytes(&self) -> usize {
        self.hidden / self.kind.block_values() * self.kind.block_bytes()
    }

    /// Rows `ids`, dequantized, as `[n, hidden]` f32 on the table's device.
    fn rows(&self, ids: &[u32]) -> candle_core::Result<Tensor> {
        let row = self.row_bytes();
        let mut out = vec![0f32; ids.len() * self.hidden];
        for (o, &id) in out.chunks_mut(self.hidden).zip(ids) {
            let at = id as usize * row;
            let bytes = self.data.get(at..at + row).ok_or_else(|| {
                candle_core::Error::Msg(format!(
                    "token id {id} is outside the embedding's {} rows",
                    self.vocab
                ))
            })?;
            kernels::dequantize(self.kind, bytes, o);
        }
        Tensor::from_vec(out, (ids.len(), self.hidden), &self.device)
    }

    /// The table as a projection: packed for callm's kernels on the CPU, else dequantized
    /// (f32, 4 bytes a value: other devices and `CALLM_KERNELS=off` only).
    fn as_linear(&self) -> candle_core::Result<Linear> {
        if self.device.is_cpu() && kernels::enabled() {
            if let Some(p) = PackedLinear::from_raw(self.kind, &self.data, self.vocab, self.hidden)
            {
                return packed_with_bias(p, None);
            }
        }
        let all: Vec<u32> = (0..self.vocab as u32).collect();
        Ok(dense_linear(self.rows(&all)?, None))
    }
}
