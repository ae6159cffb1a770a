//! A preallocated key/value cache: one buffer per layer, written in place, no per-token concat.

use candle_core::{DType, Device, Tensor};

/// Keys and values of one layer: `[kv_heads, capacity, head_dim]` each.
#[derive(Debug, Clone)]
struct LayerKv {
    k: Tensor,
    v: Tensor,
}

/// The attention state of one sequence.
#[derive(Debug, Clone)]
pub struct KvCache {
    layers: Vec<LayerKv>,
    len: usize,
    capacity: usize,
}

impl KvCache {
    /// Allocates room for `capacity` positions.
    pub fn new(
        num_layers: usize,
        kv_heads: usize,
        head_dim: usize,
        capacity: usize,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Self> {
        let mut layers = Vec::with_capacity(num_layers);
        for _ in 0..num_layers {
            layers.push(LayerKv {
                k: Tensor::zeros((kv_heads, capacity, head_dim), dtype, device)?,
                v: Tensor::zeros((kv_heads, capacity, head_dim), dtype, device)?,
            });
        }
        Ok(KvCache {
            layers,
            len: 0,
            capacity,
        })
    }

    /// A new, empty cache shaped for `cfg`, for `capacity` positions (at most its allocated
    /// context).
    pub fn for_model(
        cfg: &super::ModelConfig,
        capacity: usize,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Self> {
        Self::new(
            cfg.num_layers,
            cfg.num_kv_heads,
            cfg.head_dim,
            capacity.min(cfg.context),
            dtype,
            device,
        )
    }

    /// Checks that `n` more tokens (at least one) fit; returns the position they start at.
    pub fn start_of(&self, n: usize) -> candle_core::Result<usize> {
        if n == 0 {
            candle_core::bail!("forward called with no tokens");
        }
        if self.len + n > self.capacity {
            candle_core::bail!(
                "context full: {} cached + {n} new tokens > {} positions",
                self.len,
                self.capacity
            );
        }
        Ok(self.len)
    }

    /// Number of cached positions.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Most positions the cache holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Forgets everything after the first `len` positions (prefix reuse).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Writes `k`, `v` (`[kv_heads, n, head_dim]`) of `layer` at the current end and returns
    /// views of all cached keys and values, `[kv_heads, len + n, head_dim]`.
    ///
    /// The length only advances in [`KvCache::advance`], after every layer has appended.
    pub fn append(
        &mut self,
        layer: usize,
        k: &Tensor,
        v: &Tensor,
    ) -> candle_core::Result<(Tensor, Tensor)> {
        let n = k.dim(1)?;
        if self.len + n > self.capacity {
            candle_core::bail!(
                "kv cache full: {} + {n} positions > capacity {}",
                self.len,
                self.capacity
            );
        }
        let l = &self.layers[layer];
        l.k.slice_set(&k.contiguous()?, 1, self.len)?;
        l.v.slice_set(&v.contiguous()?, 1, self.len)?;
        Ok((
            l.k.narrow(1, 0, self.len + n)?,
            l.v.narrow(1, 0, self.len + n)?,
        ))
    }

    /// Marks `n` more positions as cached.
    pub fn advance(&mut self, n: usize) {
        self.len += n;
    }

    /// Bytes the cache's buffers occupy (its full capacity, not only the used part).
    pub fn size_bytes(&self) -> usize {
        self.layers
            .iter()
            .map(|l| (l.k.elem_count() + l.v.elem_count()) * l.k.dtype().size_in_bytes())
            .sum()
    }

    /// A new cache with room for `capacity` positions holding a copy of this one's first
    /// `n` positions (`n` is capped at what is cached and at `capacity`).
    pub fn copy_prefix(&self, n: usize, capacity: usize) -> candle_core::Result<KvCache> {
        let n = n.min(self.len).min(capacity);
        let mut layers = Vec::with_capacity(self.layers.len());
        for l in &self.layers {
            let (heads, _, hd) = l.k.dims3()?;
            let (dtype, device) = (l.k.dtype(), l.k.device());
            let k = Tensor::zeros((heads, capacity, hd), dtype, device)?;
            let v = Tensor::zeros((heads, capacity, hd), dtype, device)?;
            if n > 0 {
                k.slice_set(&l.k.narrow(1, 0, n)?.contiguous()?, 1, 0)?;
                v.slice_set(&l.v.narrow(1, 0, n)?.contiguous()?, 1, 0)?;
            }
            layers.push(LayerKv { k, v });
        }
        Ok(KvCache {
            layers,
            len: n,
            capacity,
        })
    }
}
