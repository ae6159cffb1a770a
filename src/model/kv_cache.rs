//! One sequence's key/value cache. On the CPU with f32 activations it holds the layouts of
//! callm's attention kernel (`kernels::attention`: keys in transposed blocks of 32 positions,
//! values in blocks by position), in f32 or f16 ([`KvType`]), allocated as the sequence grows, in whole
//! blocks, up to its capacity; elsewhere, preallocated `[kv_heads, capacity, head_dim]`
//! tensors per layer written in place.

use candle_core::{DType, Device, Tensor};
use half::f16;

use crate::kernels::attention::{key_block_floats, store_keys, store_values, CacheElem, KEY_BLOCK};

/// The type of the keys and values a cache in the kernel's layouts holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvType {
    /// Exact: what the activations were.
    F32,
    /// Half the memory, and half the bytes every decode step reads from the cache (which,
    /// with several sequences or long contexts, weigh as much as the weights); each value
    /// rounded to nearest (llama.cpp's default cache type).
    F16,
}

impl KvType {
    /// The type of a model's cache: `wanted` when given (`--kv-cache-type`), else f16 when its
    /// weights are quantized (their rounding is far coarser than f16's) and f32 when they are
    /// floats (the exact computation, as transformers does it).
    pub fn choose(wanted: Option<KvType>, quantized: bool) -> KvType {
        match wanted {
            Some(t) => t,
            None if quantized => KvType::F16,
            None => KvType::F32,
        }
    }

    /// Bytes per value.
    pub fn size(self) -> usize {
        match self {
            KvType::F32 => 4,
            KvType::F16 => 2,
        }
    }
}

/// Keys and values of one layer as tensors: `[kv_heads, capacity, head_dim]` each.
#[derive(Debug, Clone)]
struct LayerKv {
    k: Tensor,
    v: Tensor,
}

/// Keys and values of one layer in the kernel's layouts, for `alloc` positions.
#[derive(Debug, Clone, Default)]
struct BlockLayer<E> {
    /// `[block][kv_head][head_dim][32]`.
    k: Vec<E>,
    /// `[block][kv_head][32][head_dim]`.
    v: Vec<E>,
}

impl<E: CacheElem> BlockLayer<E> {
    /// Room for `blocks` blocks of `kf` keys and `vf` values.
    fn resize(&mut self, blocks: usize, kf: usize, vf: usize) {
        self.k.resize(blocks * kf, E::default());
        self.v.resize(blocks * vf, E::default());
    }

    /// A copy of the first `blocks` blocks.
    fn prefix(&self, blocks: usize, kf: usize, vf: usize) -> Self {
        BlockLayer {
            k: self.k[..blocks * kf].to_vec(),
            v: self.v[..blocks * vf].to_vec(),
        }
    }

    /// [`store_keys`] and [`store_values`] for `(kv_heads, head_dim)`: `false` (nothing
    /// written) when they do not fit.
    fn write(
        &mut self,
        (kvh, hd): (usize, usize),
        pos: usize,
        rows: usize,
        k: &[f32],
        v: &[f32],
        stride: usize,
    ) -> bool {
        store_keys(&mut self.k, kvh, hd, pos, k, rows, stride)
            && store_values(&mut self.v, kvh, hd, pos, v, rows, stride)
    }
}

/// Every layer's keys and values, of one type.
#[derive(Debug, Clone)]
enum BlockLayers {
    F32(Vec<BlockLayer<f32>>),
    F16(Vec<BlockLayer<f16>>),
}

/// Runs `$body` with `$l` bound to the layers, whatever their type.
macro_rules! with_layers {
    ($layers:expr, $l:ident => $body:expr) => {
        match $layers {
            BlockLayers::F32($l) => $body,
            BlockLayers::F16($l) => $body,
        }
    };
}

#[derive(Debug, Clone)]
enum Store {
    /// The CPU kernel's layouts, `alloc` positions allocated (a multiple of the key block).
    Blocks {
        layers: BlockLayers,
        kv_heads: usize,
        head_dim: usize,
        alloc: usize,
    },
    /// Preallocated tensors (other devices and dtypes).
    Tensors(Vec<LayerKv>),
}

/// The attention state of one sequence.
#[derive(Debug, Clone)]
pub struct KvCache {
    store: Store,
    len: usize,
    capacity: usize,
    /// Bytes one position takes over all layers.
    position_bytes: usize,
}

/// Keys and values of one layer in the CPU kernel's layouts (see `kernels::attention`): keys
/// `[block][kv_head][head_dim][32]`, values `[block][kv_head][32][head_dim]`.
pub enum BlockView<'a> {
    /// An f32 cache.
    F32 {
        /// Keys.
        k: &'a [f32],
        /// Values.
        v: &'a [f32],
    },
    /// An f16 cache.
    F16 {
        /// Keys.
        k: &'a [f16],
        /// Values.
        v: &'a [f16],
    },
}

impl KvCache {
    /// Preallocated tensors for `capacity` positions (any device and dtype).
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
            store: Store::Tensors(layers),
            len: 0,
            capacity,
            position_bytes: num_layers * 2 * kv_heads * head_dim * dtype.size_in_bytes(),
        })
    }

    /// An empty cache in the CPU attention kernel's layouts, holding values of `ty`, for up
    /// to `capacity` positions; memory is allocated as positions are added.
    pub fn new_blocks(
        num_layers: usize,
        kv_heads: usize,
        head_dim: usize,
        capacity: usize,
        ty: KvType,
    ) -> Self {
        let layers = match ty {
            KvType::F32 => BlockLayers::F32(vec![BlockLayer::default(); num_layers]),
            KvType::F16 => BlockLayers::F16(vec![BlockLayer::default(); num_layers]),
        };
        KvCache {
            store: Store::Blocks {
                layers,
                kv_heads,
                head_dim,
                alloc: 0,
            },
            len: 0,
            capacity,
            position_bytes: num_layers * 2 * kv_heads * head_dim * ty.size(),
        }
    }

    /// A new, empty cache shaped for `cfg`, for `capacity` positions (at most its allocated
    /// context): the kernel's layouts holding values of `blocks`' type when it is set, else
    /// tensors of `dtype` on `device`.
    pub fn for_model(
        cfg: &super::ModelConfig,
        capacity: usize,
        dtype: DType,
        device: &Device,
        blocks: Option<KvType>,
    ) -> candle_core::Result<Self> {
        let capacity = capacity.min(cfg.context);
        let (l, kvh, hd) = (cfg.num_layers, cfg.num_kv_heads, cfg.head_dim);
        if let Some(ty) = blocks {
            Ok(Self::new_blocks(l, kvh, hd, capacity, ty))
        } else {
            Self::new(l, kvh, hd, capacity, dtype, device)
        }
    }

    /// Bytes of keys and values one position takes over all layers.
    pub fn position_bytes(&self) -> usize {
        self.position_bytes
    }

    /// Whether the cache holds the CPU kernel's layouts ([`KvCache::block_view`]).
    pub fn is_blocks(&self) -> bool {
        matches!(self.store, Store::Blocks { .. })
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

    /// Makes room for `n` more positions (the kernel's layouts grow in whole key blocks, at
    /// least doubling, up to the capacity); a no-op for tensor caches.
    pub fn reserve(&mut self, n: usize) -> candle_core::Result<()> {
        let need = self.start_of(n)? + n;
        let cap = self.capacity;
        if let Store::Blocks {
            layers,
            kv_heads,
            head_dim,
            alloc,
        } = &mut self.store
        {
            if need > *alloc {
                let grown = need.max(alloc.saturating_mul(2)).min(cap.max(need));
                let blocks = grown.div_ceil(KEY_BLOCK);
                let (kf, vf) = (
                    key_block_floats(*kv_heads, *head_dim),
                    KEY_BLOCK * *kv_heads * *head_dim,
                );
                with_layers!(layers, ls => ls.iter_mut().for_each(|l| l.resize(blocks, kf, vf)));
                *alloc = blocks * KEY_BLOCK;
            }
        }
        Ok(())
    }

    /// Writes the keys and values of positions `pos..pos + rows` of `layer` (kernel layouts;
    /// [`KvCache::reserve`] first): `k` and `v` hold `rows` rows of `kv_heads * head_dim`
    /// values, one every `stride` values.
    pub fn write_rows(
        &mut self,
        layer: usize,
        pos: usize,
        rows: usize,
        k: &[f32],
        v: &[f32],
        stride: usize,
    ) -> candle_core::Result<()> {
        let Store::Blocks {
            layers,
            kv_heads,
            head_dim,
            alloc,
        } = &mut self.store
        else {
            candle_core::bail!("kv cache: not in the kernel's layouts");
        };
        let (kvh, hd) = (*kv_heads, *head_dim);
        let written = pos + rows <= *alloc
            && with_layers!(layers, ls => match ls.get_mut(layer) {
                Some(l) => l.write((kvh, hd), pos, rows, k, v, stride),
                None => candle_core::bail!("kv cache: no layer {layer}"),
            });
        if !written {
            candle_core::bail!("kv cache: {rows} rows at {pos} do not fit {alloc} positions");
        }
        Ok(())
    }

    /// The keys and values of `layer` in the kernel's layouts (`None` for tensor caches).
    pub fn block_view(&self, layer: usize) -> Option<BlockView<'_>> {
        match &self.store {
            Store::Blocks { layers, .. } => match layers {
                BlockLayers::F32(ls) => ls.get(layer).map(|l| BlockView::F32 { k: &l.k, v: &l.v }),
                BlockLayers::F16(ls) => ls.get(layer).map(|l| BlockView::F16 { k: &l.k, v: &l.v }),
            },
            Store::Tensors(_) => None,
        }
    }

    /// Writes `k`, `v` (`[kv_heads, n, head_dim]`) of `layer` at the current end and returns
    /// views of all cached keys and values, `[kv_heads, len + n, head_dim]` (tensor caches).
    ///
    /// The length only advances in [`KvCache::advance`], after every layer has appended.
    pub fn append(
        &mut self,
        layer: usize,
        k: &Tensor,
        v: &Tensor,
    ) -> candle_core::Result<(Tensor, Tensor)> {
        let Store::Tensors(layers) = &self.store else {
            candle_core::bail!("kv cache: not a tensor cache");
        };
        let n = k.dim(1)?;
        if self.len + n > self.capacity {
            candle_core::bail!(
                "kv cache full: {} + {n} positions > capacity {}",
                self.len,
                self.capacity
            );
        }
        let l = &layers[layer];
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

    /// Bytes the cache's buffers occupy now (tensor caches: their full capacity).
    pub fn size_bytes(&self) -> usize {
        match &self.store {
            Store::Blocks { alloc, .. } => alloc * self.position_bytes,
            Store::Tensors(layers) => layers
                .iter()
                .map(|l| (l.k.elem_count() + l.v.elem_count()) * l.k.dtype().size_in_bytes())
                .sum(),
        }
    }

    /// A new cache with room for `capacity` positions holding a copy of this one's first
    /// `n` positions (`n` is capped at what is cached and at `capacity`).
    pub fn copy_prefix(&self, n: usize, capacity: usize) -> candle_core::Result<KvCache> {
        let n = n.min(self.len).min(capacity);
        let store = match &self.store {
            Store::Blocks {
                layers,
                kv_heads,
                head_dim,
                ..
            } => {
                let blocks = n.div_ceil(KEY_BLOCK);
                let (kf, vf) = (
                    key_block_floats(*kv_heads, *head_dim),
                    KEY_BLOCK * kv_heads * head_dim,
                );
                let prefix = |l: &BlockLayers| match l {
                    BlockLayers::F32(ls) => {
                        BlockLayers::F32(ls.iter().map(|l| l.prefix(blocks, kf, vf)).collect())
                    }
                    BlockLayers::F16(ls) => {
                        BlockLayers::F16(ls.iter().map(|l| l.prefix(blocks, kf, vf)).collect())
                    }
                };
                Store::Blocks {
                    layers: prefix(layers),
                    kv_heads: *kv_heads,
                    head_dim: *head_dim,
                    alloc: blocks * KEY_BLOCK,
                }
            }
            Store::Tensors(layers) => {
                let mut out = Vec::with_capacity(layers.len());
                for l in layers {
                    let (heads, _, hd) = l.k.dims3()?;
                    let (dtype, device) = (l.k.dtype(), l.k.device());
                    let k = Tensor::zeros((heads, capacity, hd), dtype, device)?;
                    let v = Tensor::zeros((heads, capacity, hd), dtype, device)?;
                    if n > 0 {
                        k.slice_set(&l.k.narrow(1, 0, n)?.contiguous()?, 1, 0)?;
                        v.slice_set(&l.v.narrow(1, 0, n)?.contiguous()?, 1, 0)?;
                    }
                    out.push(LayerKv { k, v });
                }
                Store::Tensors(out)
            }
        };
        Ok(KvCache {
            store,
            len: n,
            capacity,
            position_bytes: self.position_bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_cache_type_is_the_one_asked_for_else_follows_the_weights() {
        assert_eq!(KvType::choose(None, true), KvType::F16);
        assert_eq!(KvType::choose(None, false), KvType::F32);
        assert_eq!(KvType::choose(Some(KvType::F32), true), KvType::F32);
        assert_eq!(KvType::choose(Some(KvType::F16), false), KvType::F16);
    }

    use super::*;

    #[test]
    fn block_caches_grow_in_blocks_and_copy_their_prefix() {
        let mut c = KvCache::new_blocks(2, 1, 4, 100, KvType::F32);
        assert_eq!(c.size_bytes(), 0);
        c.reserve(5).unwrap();
        assert_eq!(c.size_bytes(), KEY_BLOCK * c.position_bytes());
        let rows: Vec<f32> = (0..5 * 4).map(|i| i as f32).collect();
        for layer in 0..2 {
            c.write_rows(layer, 0, 5, &rows, &rows, 4).unwrap();
        }
        c.advance(5);
        // Growth doubles, up to the capacity.
        c.reserve(40).unwrap();
        assert_eq!(c.size_bytes(), 64 * c.position_bytes());
        c.reserve(95).unwrap();
        assert_eq!(c.size_bytes(), 128 * c.position_bytes());
        assert!(c.reserve(96).is_err());
        let p = c.copy_prefix(3, 50).unwrap();
        assert_eq!((p.len(), p.capacity()), (3, 50));
        let Some(BlockView::F32 { k, v }) = p.block_view(1) else {
            panic!("an f32 cache gives f32 views");
        };
        assert_eq!(&v[..12], &rows[..12]);
        // Key of position 2, dimension 3: block 0, lane 2, row 3.
        assert_eq!(k[3 * KEY_BLOCK + 2], rows[2 * 4 + 3]);
        // Writing past what was reserved is an error, not a panic.
        let mut fresh = KvCache::new_blocks(1, 1, 4, 10, KvType::F32);
        assert!(fresh.write_rows(0, 0, 1, &rows, &rows, 4).is_err());
    }

    #[test]
    fn f16_caches_take_half_the_bytes_and_round_what_they_hold() {
        let (mut c16, mut c32) = (
            KvCache::new_blocks(2, 2, 8, 64, KvType::F16),
            KvCache::new_blocks(2, 2, 8, 64, KvType::F32),
        );
        assert_eq!(2 * c16.position_bytes(), c32.position_bytes());
        let rows: Vec<f32> = (0..3 * 16).map(|i| 0.1 * i as f32 - 2.0).collect();
        for c in [&mut c16, &mut c32] {
            c.reserve(3).unwrap();
            c.write_rows(1, 0, 3, &rows, &rows, 16).unwrap();
            c.advance(3);
        }
        assert_eq!(2 * c16.size_bytes(), c32.size_bytes());
        let p = c16.copy_prefix(2, 10).unwrap();
        let Some(BlockView::F16 { v, .. }) = p.block_view(1) else {
            panic!("an f16 cache gives f16 views");
        };
        // Values `[block][kv_head][32][head_dim]`: position p of head g at (g * 32 + p) * 8.
        for p in 0..2 {
            for g in 0..2 {
                for d in 0..8 {
                    let x = rows[p * 16 + g * 8 + d];
                    assert_eq!(v[(g * KEY_BLOCK + p) * 8 + d], f16::from_f32(x));
                }
            }
        }
    }
}
