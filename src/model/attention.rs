//! The decoder's self-attention: projections (separate or fused q/k/v), optional per-head
//! q/k norms, rotary encoding (full, partial or none per layer, with the layer's own table),
//! and causal attention over the key/value cache, optionally within a sliding window.
//!
//! On the CPU with f32 activations, single-token steps run callm's fused attention kernel and
//! prefill runs candle's batched matmuls around a fused scale + mask + softmax
//! ([`crate::kernels`]); elsewhere (and where scores are soft-capped) the plain path builds
//! the mask and softmax from candle ops.

use candle_core::{DType, Tensor};

use super::kv_cache::KvCache;
use super::weights::Linear;

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
    /// Whether attention runs on callm's CPU kernels.
    pub fused: bool,
}

/// Per-call inputs shared by the layers: the rotary tables' rows for these positions, and
/// the additive masks of the plain path.
pub(super) struct AttnInputs {
    /// `(cos, sin)` rows `[n, rotary_dim / 2]` for these positions, one pair per table.
    pub ropes: Vec<(Tensor, Tensor)>,
    /// Additive masks `[n, pos + n]` by window, for the plain path of a multi-token call.
    pub masks: Vec<(usize, Tensor)>,
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
    /// Attention of `h` `[n, hidden]` over the cache of layer `layer_idx` (which it extends);
    /// output `[n, hidden]`.
    pub fn forward(
        &self,
        s: &AttnSettings,
        inp: &AttnInputs,
        layer_idx: usize,
        h: &Tensor,
        cache: &mut KvCache,
    ) -> candle_core::Result<Tensor> {
        let n = h.dim(0)?;
        let (nh, nkv, hd) = (s.heads, s.kv_heads, s.head_dim);
        let rep = nh / nkv;
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
        // [n, heads*hd] -> [1, heads, n, hd], with the per-head norm over hd first.
        let heads = |t: Tensor, count: usize, norm: &Option<Tensor>| {
            let t = t.reshape((n, count, hd))?;
            let t = match norm {
                Some(w) => candle_nn::ops::rms_norm(&t.contiguous()?, w, s.eps)?,
                None => t,
            };
            t.reshape((1, n, count, hd))?.transpose(1, 2)?.contiguous()
        };
        let mut q = heads(q, nh, &self.q_norm)?;
        let mut k = heads(k, nkv, &self.k_norm)?;
        if let Some((cos, sin)) = self.rope.and_then(|r| inp.ropes.get(r)) {
            q = rotary(s, &q, cos, sin)?;
            k = rotary(s, &k, cos, sin)?;
        }
        let v = heads(v, nkv, &None)?;
        let (k_all, v_all) = cache.append(layer_idx, &k.squeeze(0)?, &v.squeeze(0)?)?; // [nkv, L, hd]
                                                                                       // Query head j uses kv head j / rep: group the rep query heads of each kv head.
        let q = q.reshape((nkv, rep * n, hd))?;
        let window = self.window;
        let out = if s.fused && s.softcap.is_none() && n == 1 {
            let op = crate::kernels::attention::CausalAttention {
                rep,
                scale: s.scale as f32,
                window,
            };
            q.apply_op3_no_bwd(&k_all, &v_all, &op)?
        } else if s.fused && s.softcap.is_none() {
            // Prefill: candle's batched matmuls, with scale, mask and softmax fused between.
            let op = crate::kernels::softmax::CausalSoftmax {
                rep,
                scale: s.scale as f32,
                window,
            };
            let probs = q.matmul(&k_all.t()?)?; // [nkv, rep*n, L], a fresh tensor
            probs.inplace_op1(&op)?;
            probs.matmul(&v_all)?
        } else {
            let total = k_all.dim(1)?;
            let scores = (q.matmul(&k_all.t()?)? * s.scale)?; // [nkv, rep*n, L]
            let scores = match s.softcap {
                Some(cap) => ((scores / cap as f64)?.tanh()? * cap as f64)?,
                None => scores,
            };
            let mask = inp.masks.iter().find(|(w, _)| *w == window).map(|(_, m)| m);
            let scores = match mask {
                Some(m) => scores
                    .reshape((nkv, rep, n, total))?
                    .broadcast_add(m)?
                    .reshape((nkv, rep * n, total))?,
                None => scores,
            };
            let probs = candle_nn::ops::softmax_last_dim(&scores.to_dtype(DType::F32)?)?
                .to_dtype(q.dtype())?;
            probs.matmul(&v_all)?
        }; // [nkv, rep*n, hd]
        let out = out
            .reshape((nh, n, hd))?
            .transpose(0, 1)?
            .reshape((n, nh * hd))?;
        self.o.forward(&out)
    }
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
    device: &candle_core::Device,
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
