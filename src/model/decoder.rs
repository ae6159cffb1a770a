//! The Llama-family decoder (Llama 1-3.x, Mistral, Qwen2, DeepSeek, CodeLlama, SmolLM, and
//! ChatGLM2/3 with its fused projections and half-head rotary): one implementation for dense
//! safetensors and quantized GGUF weights.

use candle_core::{DType, Device, Tensor};

use super::config::{Arch, ModelConfig};
use super::kv_cache::KvCache;
use super::weights::{Embedding, LayerWeight as LW, Linear, Weight, WeightSource};
use super::ModelError;

/// The attention input projections: separate, or one fused `[q; k; v]` matrix.
enum QkvProj {
    Separate { q: Linear, k: Linear, v: Linear },
    Fused(Linear),
}

/// The MLP input projections: separate gate and up, or one fused `[gate; up]` matrix.
enum GateUpProj {
    Separate { gate: Linear, up: Linear },
    Fused(Linear),
}

struct Layer {
    attn_norm: Tensor,
    qkv: QkvProj,
    o: Linear,
    mlp_norm: Tensor,
    gate_up: GateUpProj,
    down: Linear,
}

/// A loaded Llama-family decoder.
pub struct Decoder {
    cfg: ModelConfig,
    embed: Embedding,
    layers: Vec<Layer>,
    norm: Option<Tensor>,
    lm_head: Linear,
    cos: Tensor,
    sin: Tensor,
    device: Device,
    dtype: DType,
}

impl Decoder {
    /// Loads every tensor from `src`; `dtype` is the activation and cache dtype.
    pub fn load(
        cfg: ModelConfig,
        src: &mut dyn WeightSource,
        dtype: DType,
        device: &Device,
    ) -> Result<Self, ModelError> {
        let h = cfg.hidden_size;
        let q_out = cfg.num_heads * cfg.head_dim;
        let kv_out = cfg.num_kv_heads * cfg.head_dim;
        let ff = cfg.intermediate_size;
        let naming = src.naming();
        let name = |w: Weight| w.name(cfg.arch, naming);
        let fused = cfg.arch == Arch::ChatGlm;
        let embed = src.embedding(&name(Weight::Embed), cfg.vocab_size, h)?;
        let mut layers = Vec::with_capacity(cfg.num_layers);
        for i in 0..cfg.num_layers {
            let w = |lw| name(Weight::Layer(i, lw));
            let qkv = if fused {
                QkvProj::Fused(src.linear(&w(LW::Qkv), q_out + 2 * kv_out, h, cfg.qkv_bias)?)
            } else {
                QkvProj::Separate {
                    q: src.linear(&w(LW::Q), q_out, h, cfg.qkv_bias)?,
                    k: src.linear(&w(LW::K), kv_out, h, cfg.qkv_bias)?,
                    v: src.linear(&w(LW::V), kv_out, h, cfg.qkv_bias)?,
                }
            };
            let gate_up = if fused {
                GateUpProj::Fused(src.linear(&w(LW::GateUp), 2 * ff, h, false)?)
            } else {
                GateUpProj::Separate {
                    gate: src.linear(&w(LW::Gate), ff, h, false)?,
                    up: src.linear(&w(LW::Up), ff, h, false)?,
                }
            };
            layers.push(Layer {
                attn_norm: to_dtype(src.vector(&w(LW::AttnNorm), h)?, dtype)?,
                qkv,
                o: src.linear(&w(LW::O), h, q_out, false)?,
                mlp_norm: to_dtype(src.vector(&w(LW::MlpNorm), h)?, dtype)?,
                gate_up,
                down: src.linear(&w(LW::Down), h, ff, false)?,
            });
        }
        let norm = if cfg.final_norm {
            Some(to_dtype(src.vector(&name(Weight::FinalNorm), h)?, dtype)?)
        } else {
            None
        };
        let lm_head = if cfg.tie_word_embeddings || !src.contains(&name(Weight::LmHead)) {
            embed.as_linear().map_err(ModelError::Candle)?
        } else {
            src.linear(&name(Weight::LmHead), cfg.vocab_size, h, false)?
        };
        let (cos, sin) = rope_tables(&cfg, dtype, device).map_err(ModelError::Candle)?;
        Ok(Decoder {
            cfg,
            embed,
            layers,
            norm,
            lm_head,
            cos,
            sin,
            device: device.clone(),
            dtype,
        })
    }

    /// The model's configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// A new, empty cache for `capacity` positions (at most the model's context).
    pub fn new_cache(&self, capacity: usize) -> candle_core::Result<KvCache> {
        KvCache::for_model(&self.cfg, capacity, self.dtype, &self.device)
    }

    /// Runs `tokens` after what `cache` holds; returns logits `[n, vocab]` for every new
    /// position when `all_positions`, else `[1, vocab]` for the last one. Logits are f32.
    pub fn forward(
        &self,
        tokens: &[u32],
        cache: &mut KvCache,
        all_positions: bool,
    ) -> candle_core::Result<Tensor> {
        let n = tokens.len();
        let pos = cache.start_of(n)?;
        let ids = Tensor::new(tokens, &self.device)?;
        let mut x = self.embed.forward(&ids, self.dtype)?; // [n, h]
        let cos = self.cos.narrow(0, pos, n)?;
        let sin = self.sin.narrow(0, pos, n)?;
        let mask = if n > 1 && !self.fused_attention() {
            Some(self.causal_mask(pos, n)?)
        } else {
            None
        };
        let eps = self.cfg.rms_norm_eps as f32;
        for (i, layer) in self.layers.iter().enumerate() {
            let h = candle_nn::ops::rms_norm(&x, &layer.attn_norm, eps)?;
            let attn = self.attention(i, layer, &h, &cos, &sin, mask.as_ref(), cache)?;
            x = (x + attn)?;
            let h = candle_nn::ops::rms_norm(&x, &layer.mlp_norm, eps)?;
            let (g, u) = match &layer.gate_up {
                GateUpProj::Separate { gate, up } => (gate.forward(&h)?, up.forward(&h)?),
                GateUpProj::Fused(gu) => {
                    let y = gu.forward(&h)?;
                    let ff = self.cfg.intermediate_size;
                    (y.narrow(1, 0, ff)?, y.narrow(1, ff, ff)?)
                }
            };
            let g = candle_nn::ops::silu(&g)?;
            x = (x + layer.down.forward(&(g * u)?)?)?;
        }
        cache.advance(n);
        let x = if all_positions {
            x
        } else {
            x.narrow(0, n - 1, 1)?
        };
        let x = match &self.norm {
            Some(norm) => candle_nn::ops::rms_norm(&x, norm, eps)?,
            None => x,
        };
        self.lm_head.forward(&x)?.to_dtype(DType::F32)
    }

    #[allow(clippy::too_many_arguments)]
    fn attention(
        &self,
        layer_idx: usize,
        l: &Layer,
        h: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        mask: Option<&Tensor>,
        cache: &mut KvCache,
    ) -> candle_core::Result<Tensor> {
        let c = &self.cfg;
        let n = h.dim(0)?;
        let (nh, nkv, hd) = (c.num_heads, c.num_kv_heads, c.head_dim);
        let rep = nh / nkv;
        // [n, heads*hd] -> [1, heads, n, hd]
        let shape =
            |t: Tensor, heads: usize| t.reshape((1, n, heads, hd))?.transpose(1, 2)?.contiguous();
        let (q, k, v) = match &l.qkv {
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
        let q = self.rotary(&shape(q, nh)?, cos, sin)?;
        let k = self.rotary(&shape(k, nkv)?, cos, sin)?;
        let v = shape(v, nkv)?;
        let (k_all, v_all) = cache.append(layer_idx, &k.squeeze(0)?, &v.squeeze(0)?)?; // [nkv, L, hd]
                                                                                       // Query head j uses kv head j / rep: group the rep query heads of each kv head.
        let q = q.reshape((nkv, rep * n, hd))?;
        let scale = 1.0 / (hd as f64).sqrt();
        let window = c.sliding_window.unwrap_or(usize::MAX);
        let out = if n == 1 && self.fused_attention() {
            let op = crate::kernels::attention::CausalAttention {
                rep,
                scale: scale as f32,
                window,
            };
            q.apply_op3_no_bwd(&k_all, &v_all, &op)?
        } else if self.fused_attention() {
            // Prefill: candle's batched matmuls, with scale, mask and softmax fused between.
            let op = crate::kernels::softmax::CausalSoftmax {
                rep,
                scale: scale as f32,
                window,
            };
            let probs = q.matmul(&k_all.t()?)?; // [nkv, rep*n, L], a fresh tensor
            probs.inplace_op1(&op)?;
            probs.matmul(&v_all)?
        } else {
            let total = k_all.dim(1)?;
            let scores = (q.matmul(&k_all.t()?)? * scale)?; // [nkv, rep*n, L]
            let scores = match mask {
                Some(m) => scores
                    .reshape((nkv, rep, n, total))?
                    .broadcast_add(m)?
                    .reshape((nkv, rep * n, total))?,
                None => scores,
            };
            let probs = candle_nn::ops::softmax_last_dim(&scores.to_dtype(DType::F32)?)?
                .to_dtype(self.dtype)?;
            probs.matmul(&v_all)?
        }; // [nkv, rep*n, hd]
        let out = out
            .reshape((nh, n, hd))?
            .transpose(0, 1)?
            .reshape((n, nh * hd))?;
        l.o.forward(&out)
    }

    /// Whether attention runs on callm's CPU kernels (f32 activations on the CPU): the fused
    /// kernel for single-token (decode) steps; for prefill, candle's batched matmuls (faster for
    /// many query rows) around a fused scale + mask + softmax.
    fn fused_attention(&self) -> bool {
        self.device.is_cpu() && self.dtype == DType::F32 && crate::kernels::fused_attention()
    }

    /// Rotary encoding of `x` `[1, heads, n, hd]` on its first `rotary_dim` dimensions.
    fn rotary(&self, x: &Tensor, cos: &Tensor, sin: &Tensor) -> candle_core::Result<Tensor> {
        let rope = |t: &Tensor| {
            if self.cfg.rope_interleaved {
                candle_nn::rotary_emb::rope_i(t, cos, sin)
            } else {
                candle_nn::rotary_emb::rope(t, cos, sin)
            }
        };
        let (rd, hd) = (self.cfg.rotary_dim, self.cfg.head_dim);
        if rd >= hd {
            return rope(x);
        }
        let rotated = rope(&x.narrow(3, 0, rd)?.contiguous()?)?;
        Tensor::cat(&[&rotated, &x.narrow(3, rd, hd - rd)?], 3)?.contiguous()
    }

    /// Additive mask `[n, pos + n]`: 0 where a query may attend, -inf elsewhere.
    fn causal_mask(&self, pos: usize, n: usize) -> candle_core::Result<Tensor> {
        let total = pos + n;
        let window = self.cfg.sliding_window.unwrap_or(usize::MAX);
        let mut m = vec![0f32; n * total];
        for i in 0..n {
            let qpos = pos + i;
            for j in 0..total {
                if j > qpos || qpos - j >= window {
                    m[i * total + j] = f32::NEG_INFINITY;
                }
            }
        }
        Tensor::from_vec(m, (n, total), &self.device)?.to_dtype(self.dtype)
    }
}

fn to_dtype(t: Tensor, dtype: DType) -> Result<Tensor, ModelError> {
    t.to_dtype(dtype).map_err(ModelError::Candle)
}

/// Cos/sin tables `[max_positions, head_dim / 2]`.
fn rope_tables(
    cfg: &ModelConfig,
    dtype: DType,
    device: &Device,
) -> candle_core::Result<(Tensor, Tensor)> {
    let inv: Vec<f32> = cfg.rope_inv_freq();
    let half = inv.len();
    let max = cfg.max_position_embeddings;
    let scale = cfg.rope_position_scale();
    let mut cos = Vec::with_capacity(max * half);
    let mut sin = Vec::with_capacity(max * half);
    for p in 0..max {
        let p = p as f64 / scale;
        for &f in &inv {
            // Angles in f32 like transformers (inv_freq f32 times position f32).
            let a = (p as f32) * f;
            cos.push(a.cos());
            sin.push(a.sin());
        }
    }
    let cos = Tensor::from_vec(cos, (max, half), device)?.to_dtype(dtype)?;
    let sin = Tensor::from_vec(sin, (max, half), device)?.to_dtype(dtype)?;
    Ok((cos, sin))
}
