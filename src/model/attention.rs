//! The decoder's self-attention over a batch of sequences: projections (separate or fused
//! q/k/v) and optional per-head q/k norms for all rows together, then rotary encoding at each
//! row's own position and causal attention of each sequence over its own cache, optionally
//! within a sliding window.
//!
//! On the CPU with f32 activations every row goes through callm's attention kernel
//! ([`crate::kernels::attention`]): one algorithm for prefill and decode whose result for a
//! row does not depend on the other rows, so batching, chunking and prefix reuse never change a
//! number. Elsewhere (GPUs, other dtypes, `CALLM_KERNELS=off`) each sequence runs the plain
//! path of candle ops (scores, additive mask, softmax, values), which is not batch-invariant.

use candle_core::{DType, Device, Tensor};

use super::batch::{to_f32_vec, BatchItem, Rows, Span};
use super::kv_cache::{BlockView, KvType};
use super::weights::Linear;
use crate::kernels::attention::{attend, AttnParams, CacheElem, SeqKv};
use crate::kernels::rope::Rope;

/// The attention input projections: separate, or one fused `[q; k; v]` matrix.
pub(super) enum QkvProj {
    /// `q`, `k` and `v` projections.
    Separate { q: Linear, k: Linear, v: Linear },
    /// One projection whose rows are q, then k, then v.
    Fused(Linear),
}

/// What every layer's attention shares.
pub(super) struct AttnSettings {
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    /// Leading dimensions of each head that rotary encoding applies to.
    pub rotary_dim: usize,
    /// Rotary pairs are interleaved (even, odd) rather than the two halves (rotate-half).
    pub interleaved: bool,
    /// Score scale.
    pub scale: f64,
    /// Scores become `cap * tanh(scores / cap)`.
    pub softcap: Option<f32>,
    /// Epsilon of the q/k norms.
    pub eps: f32,
    /// Whether attention runs on callm's CPU kernel (f32 on the CPU), and the type of the
    /// values its caches hold.
    pub fused: Option<KvType>,
}

/// Rotary cos/sin tables, `rotary_dim / 2` values per position (f32, on the host).
pub(super) struct RopeTable {
    pub cos: Vec<f32>,
    pub sin: Vec<f32>,
}

/// What a call's layers share: its rows and the rotary tables.
pub(super) struct Ctx<'a> {
    pub rows: &'a Rows,
    /// The global table first, then the sliding layers' own (Gemma 3) if any.
    pub ropes: &'a [RopeTable],
    pub dtype: DType,
    pub device: &'a Device,
}

/// One layer's attention.
pub(super) struct Attention {
    pub qkv: QkvProj,
    pub q_norm: Option<Tensor>,
    pub k_norm: Option<Tensor>,
    pub o: Linear,
    /// Keys a query sees at most, itself included (`usize::MAX`: no window).
    pub window: usize,
    /// Which rotary table this layer uses; `None`: no rotary encoding (NoPE).
    pub rope: Option<usize>,
}

impl Attention {
    /// Attention of `h` `[rows, hidden]` (all sequences' rows) over each sequence's cache of
    /// layer `layer` (which it extends); output `[rows, hidden]`.
    pub fn forward(
        &self,
        s: &AttnSettings,
        ctx: &Ctx<'_>,
        layer: usize,
        h: &Tensor,
        items: &mut [BatchItem<'_>],
    ) -> candle_core::Result<Tensor> {
        let t = h.dim(0)?;
        let (nh, nkv, hd) = (s.heads, s.kv_heads, s.head_dim);
        let (q, k, v) = match &self.qkv {
            QkvProj::Separate { q, k, v } => (q.forward(h)?, k.forward(h)?, v.forward(h)?),
            QkvProj::Fused(qkv) => {
                let y = qkv.forward(h)?;
                let (q_out, kv_out) = (nh * hd, nkv * hd);
                (
                    y.narrow(1, 0, q_out)?,
                    y.narrow(1, q_out, kv_out)?,
                    y.narrow(1, q_out + kv_out, kv_out)?,
                )
            }
        };
        // The per-head norms over `hd`, rows kept token-major: `[rows, heads * hd]`.
        let norm = |x: Tensor, count: usize, w: &Option<Tensor>| match w {
            Some(w) => crate::kernels::rms_norm(&x.reshape((t, count, hd))?, w, s.eps)?
                .reshape((t, count * hd)),
            None => Ok(x),
        };
        let q = norm(q, nh, &self.q_norm)?;
        let k = norm(k, nkv, &self.k_norm)?;
        let table = self.rope.and_then(|r| ctx.ropes.get(r));
        let out = if s.fused.is_some() && items.iter().all(|it| it.cache.is_blocks()) {
            let rope = table.map(|tb| Rope {
                heads: 0,
                head_dim: hd,
                rotary_dim: s.rotary_dim,
                interleaved: s.interleaved,
                cos: &tb.cos,
                sin: &tb.sin,
            });
            let params = AttnParams {
                heads: nh,
                kv_heads: nkv,
                head_dim: hd,
                scale: s.scale as f32,
                window: self.window,
                softcap: s.softcap,
                alibi: None,
            };
            let out = attend_fused(&params, rope, ctx.rows, layer, items, &q, &k, &v)?;
            Tensor::from_vec(out, (t, nh * hd), ctx.device)?.to_dtype(ctx.dtype)?
        } else {
            let mut outs = Vec::with_capacity(items.len());
            for (it, span) in items.iter_mut().zip(&ctx.rows.spans) {
                let (q, k, v) = (
                    q.narrow(0, span.row0, span.n)?,
                    k.narrow(0, span.row0, span.n)?,
                    v.narrow(0, span.row0, span.n)?,
                );
                outs.push(self.plain(s, ctx, table, layer, span.pos, &q, &k, &v, it.cache)?);
            }
            Tensor::cat(&outs, 0)?
        };
        self.o.forward(&out)
    }

    /// The plain path for one sequence: `q`, `k`, `v` `[n, heads * hd]` at positions
    /// `pos..pos + n`; output `[n, heads * hd]`.
    #[allow(clippy::too_many_arguments)]
    fn plain(
        &self,
        s: &AttnSettings,
        ctx: &Ctx<'_>,
        table: Option<&RopeTable>,
        layer: usize,
        pos: usize,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        cache: &mut super::KvCache,
    ) -> candle_core::Result<Tensor> {
        let (nh, nkv, hd) = (s.heads, s.kv_heads, s.head_dim);
        let n = q.dim(0)?;
        let heads =
            |t: &Tensor, count: usize| t.reshape((1, n, count, hd))?.transpose(1, 2)?.contiguous();
        let (mut q, mut k, v) = (heads(q, nh)?, heads(k, nkv)?, heads(v, nkv)?);
        if let Some(tb) = table {
            let half = s.rotary_dim / 2;
            let rows = |t: &[f32]| -> candle_core::Result<Tensor> {
                let Some(r) = t.get(pos * half..(pos + n) * half) else {
                    candle_core::bail!("rope: positions beyond the table");
                };
                Tensor::from_slice(r, (n, half), ctx.device)?.to_dtype(ctx.dtype)
            };
            let (cos, sin) = (rows(&tb.cos)?, rows(&tb.sin)?);
            q = rotary(s, &q, &cos, &sin)?;
            k = rotary(s, &k, &cos, &sin)?;
        }
        let (k_all, v_all) = cache.append(layer, &k.squeeze(0)?, &v.squeeze(0)?)?;
        let total = k_all.dim(1)?;
        let mask = (n > 1 || self.window < total)
            .then(|| causal_mask(pos, n, self.window, ctx.dtype, ctx.device))
            .transpose()?;
        let out = attend_plain(
            &q,
            &k_all,
            &v_all,
            s.scale,
            s.softcap,
            mask.as_ref(),
            nh / nkv,
        )?;
        out.reshape((nh, n, hd))?
            .transpose(0, 1)?
            .reshape((n, nh * hd))
    }
}

/// The fused CPU path of one layer for a batch: `q` `[rows, heads * hd]`, `k` and `v`
/// `[rows, kv_heads * hd]`; rotary encoding at each row's position (when `rope`), the keys and
/// values written into each sequence's cache, then [`attend`]. Returns `[rows, heads * hd]`.
#[allow(clippy::too_many_arguments)]
pub(super) fn attend_fused(
    p: &AttnParams<'_>,
    rope: Option<Rope<'_>>,
    rows: &Rows,
    layer: usize,
    items: &mut [BatchItem<'_>],
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
) -> candle_core::Result<Vec<f32>> {
    let (mut qv, mut kv, vv) = (to_f32_vec(q)?, to_f32_vec(k)?, to_f32_vec(v)?);
    if let Some(r) = rope {
        Rope {
            heads: p.heads,
            ..r
        }
        .apply(&mut qv, &rows.positions)?;
        Rope {
            heads: p.kv_heads,
            ..r
        }
        .apply(&mut kv, &rows.positions)?;
    }
    // Each sequence's keys and values into its own cache: sequences in parallel (the writes
    // into the transposed key blocks touch a cache line per value).
    let w = p.kv_heads * p.head_dim;
    let write = |it: &mut BatchItem<'_>, span: &Span| {
        let (a, b) = (span.row0 * w, (span.row0 + span.n) * w);
        let (Some(k), Some(v)) = (kv.get(a..b), vv.get(a..b)) else {
            candle_core::bail!("attention: rows {a}..{b} beyond the batch's keys");
        };
        it.cache.write_rows(layer, span.pos, span.n, k, v, w)
    };
    if items.len() >= 2 {
        use rayon::prelude::*;
        items
            .par_iter_mut()
            .zip(rows.spans.par_iter())
            .try_for_each(|(it, span)| write(it, span))?;
    } else {
        for (it, span) in items.iter_mut().zip(&rows.spans) {
            write(it, span)?;
        }
    }
    let mut out = vec![0f32; qv.len()];
    let views = items
        .iter()
        .map(|it| it.cache.block_view(layer))
        .collect::<Option<Vec<_>>>();
    let Some(views) = views else {
        candle_core::bail!("attention: a cache is not in the kernel's layouts");
    };
    // Every cache of a model holds the same type; a mix is refused, not converted.
    fn seq<'a, E: CacheElem>(span: &Span, k: &'a [E], v: &'a [E]) -> SeqKv<'a, E> {
        SeqKv {
            row0: span.row0,
            n: span.n,
            pos: span.pos,
            k,
            v,
        }
    }
    let (mut f32s, mut f16s) = (Vec::new(), Vec::new());
    for (view, span) in views.iter().zip(&rows.spans) {
        match *view {
            BlockView::F32 { k, v } => f32s.push(seq(span, k, v)),
            BlockView::F16 { k, v } => f16s.push(seq(span, k, v)),
        }
    }
    match (f32s.is_empty(), f16s.is_empty()) {
        (_, true) => attend(p, &qv, &f32s, &mut out)?,
        (true, false) => attend(p, &qv, &f16s, &mut out)?,
        (false, false) => candle_core::bail!("attention: caches of different types in one batch"),
    }
    Ok(out)
}

/// Attention from candle ops: `q` `[1, heads, n, hd]`, `k_all` and `v_all`
/// `[kv_heads, L, hd]`, an additive `bias` broadcastable to `[kv_heads, rep, n, L]` (the causal
/// mask, ALiBi); output `[kv_heads, rep * n, hd]`.
pub(super) fn attend_plain(
    q: &Tensor,
    k_all: &Tensor,
    v_all: &Tensor,
    scale: f64,
    softcap: Option<f32>,
    bias: Option<&Tensor>,
    rep: usize,
) -> candle_core::Result<Tensor> {
    let (nkv, total, hd) = k_all.dims3()?;
    let n = q.dim(2)?;
    // Query head j uses kv head j / rep: group the rep query heads of each kv head.
    let q = q.reshape((nkv, rep * n, hd))?;
    let scores = (q.matmul(&k_all.t()?)? * scale)?; // [nkv, rep*n, L]
    let scores = match softcap {
        Some(cap) => ((scores / cap as f64)?.tanh()? * cap as f64)?,
        None => scores,
    };
    let scores = match bias {
        Some(b) => scores
            .reshape((nkv, rep, n, total))?
            .broadcast_add(b)?
            .reshape((nkv, rep * n, total))?,
        None => scores,
    };
    let probs =
        candle_nn::ops::softmax_last_dim(&scores.to_dtype(DType::F32)?)?.to_dtype(q.dtype())?;
    probs.matmul(v_all)
}

/// Rotary encoding of `x` `[1, heads, n, hd]` on its first `rotary_dim` dimensions.
fn rotary(s: &AttnSettings, x: &Tensor, cos: &Tensor, sin: &Tensor) -> candle_core::Result<Tensor> {
    let rope = |t: &Tensor| {
        if s.interleaved {
            candle_nn::rotary_emb::rope_i(t, cos, sin)
        } else {
            candle_nn::rotary_emb::rope(t, cos, sin)
        }
    };
    let (rd, hd) = (s.rotary_dim, s.head_dim);
    if rd >= hd {
        return rope(x);
    }
    let rotated = rope(&x.narrow(3, 0, rd)?.contiguous()?)?;
    Tensor::cat(&[&rotated, &x.narrow(3, rd, hd - rd)?], 3)?.contiguous()
}

/// Additive mask `[n, pos + n]`: 0 where a query at `pos + i` may attend (causal, within
/// `window` keys), -inf elsewhere.
pub(super) fn causal_mask(
    pos: usize,
    n: usize,
    window: usize,
    dtype: DType,
    device: &Device,
) -> candle_core::Result<Tensor> {
    let total = pos + n;
    let mut m = vec![0f32; n * total];
    for i in 0..n {
        let qpos = pos + i;
        for j in 0..total {
            if j > qpos || qpos - j >= window {
                m[i * total + j] = f32::NEG_INFINITY;
            }
        }
    }
    Tensor::from_vec(m, (n, total), device)?.to_dtype(dtype)
}
