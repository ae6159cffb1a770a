//! The Llama-family decoder: one implementation for dense safetensors and quantized GGUF
//! weights, covering Llama 1-3.x, Mistral, Qwen2, DeepSeek, CodeLlama, SmolLM, ChatGLM2/3
//! (fused projections, half-head rotary) and, through [`super::options::ArchOptions`], Qwen3
//! (q/k norms), Qwen3-MoE (routed experts), Gemma 3 (sandwich norms, interleaved sliding-window
//! layers with their own rope base, GeGLU, scaled embeddings), Phi-3 (fused projections,
//! partial rotary), Granite (multipliers) and SmolLM3 (layers without rope).
//!
//! Attention is in [`super::attention`], the MLPs and experts in [`super::mlp`].

use candle_core::{DType, Device, Tensor};

use super::attention::{Attention, AttnSettings, Ctx, QkvProj, RopeTable};
use super::batch::{select_rows, BatchItem, Rows};
use super::config::{Arch, ModelConfig};
use super::kv_cache::{KvCache, KvType};
use super::mlp::{Experts, GateUpProj, GatedMlp, Mlp};
use super::weights::{Embedding, LayerWeight as LW, Linear, Weight, WeightSource};
use super::ModelError;

struct Layer {
    attn_norm: Tensor,
    attn: Attention,
    post_attn_norm: Option<Tensor>,
    mlp_norm: Tensor,
    mlp: Mlp,
    post_mlp_norm: Option<Tensor>,
}

/// A loaded Llama-family decoder.
pub struct Decoder {
    cfg: ModelConfig,
    embed: Embedding,
    layers: Vec<Layer>,
    norm: Option<Tensor>,
    lm_head: Linear,
    /// The global table first, then the sliding layers' own (Gemma 3) if any.
    ropes: Vec<RopeTable>,
    attn: AttnSettings,
    device: Device,
    dtype: DType,
}

/// Reads the weights of one decoder from a source, in its naming.
struct Loader<'a> {
    cfg: &'a ModelConfig,
    src: &'a mut dyn WeightSource,
    dtype: DType,
}

impl Loader<'_> {
    fn name(&self, w: Weight) -> String {
        w.name(self.cfg.arch, self.src.naming())
    }

    fn layer(&self, i: usize, w: LW) -> String {
        self.name(Weight::Layer(i, w))
    }

    /// A norm weight of `len`, with the configured offset added (Gemma's `1 + w`).
    fn norm(&mut self, name: &str, len: usize) -> Result<Tensor, ModelError> {
        let t = self.src.vector(name, len)?;
        let offset = self.cfg.opts.norm_weight_offset;
        let t = if offset != 0.0 {
            t.affine(1.0, offset as f64)?
        } else {
            t
        };
        Ok(t.to_dtype(self.dtype)?)
    }

    fn linear(&mut self, name: &str, out: usize, inp: usize) -> Result<Linear, ModelError> {
        self.src.linear(name, out, inp, false)
    }

    fn attention(&mut self, i: usize) -> Result<Attention, ModelError> {
        let c = self.cfg;
        let (h, q_out, kv_out) = (
            c.hidden_size,
            c.num_heads * c.head_dim,
            c.num_kv_heads * c.head_dim,
        );
        let bias = c.qkv_bias;
        let fused = c.arch == Arch::ChatGlm
            || (c.arch == Arch::Phi3 && self.src.contains(&self.layer(i, LW::Qkv)));
        let qkv = if fused {
            let name = self.layer(i, LW::Qkv);
            QkvProj::Fused(self.src.linear(&name, q_out + 2 * kv_out, h, bias)?)
        } else {
            let (qn, kn, vn) = (
                self.layer(i, LW::Q),
                self.layer(i, LW::K),
                self.layer(i, LW::V),
            );
            let (q, k, v) = (
                self.src.linear(&qn, q_out, h, bias)?,
                self.src.linear(&kn, kv_out, h, bias)?,
                self.src.linear(&vn, kv_out, h, bias)?,
            );
            match Linear::stack(&[&q, &k, &v]) {
                Some(qkv) => QkvProj::Fused(qkv),
                None => QkvProj::Separate { q, k, v },
            }
        };
        let (q_norm, k_norm) = if c.opts.qk_norm {
            let (qn, kn) = (self.layer(i, LW::QNorm), self.layer(i, LW::KNorm));
            (
                Some(self.norm(&qn, c.head_dim)?),
                Some(self.norm(&kn, c.head_dim)?),
            )
        } else {
            (None, None)
        };
        let local = c.opts.local_rope_theta.is_some() && c.opts.is_sliding(i);
        let o = self.layer(i, LW::O);
        Ok(Attention {
            qkv,
            q_norm,
            k_norm,
            o: self.linear(&o, h, q_out)?,
            window: c.layer_window(i),
            rope: c.opts.uses_rope(i).then_some(usize::from(local)),
        })
    }

    fn gated(
        &mut self,
        gate: &str,
        up: &str,
        down: &str,
        ff: usize,
    ) -> Result<GatedMlp, ModelError> {
        let h = self.cfg.hidden_size;
        let (gate, up) = (self.linear(gate, ff, h)?, self.linear(up, ff, h)?);
        let gate_up = match Linear::stack(&[&gate, &up]) {
            Some(gu) => GateUpProj::Fused(gu),
            None => GateUpProj::Separate { gate, up },
        };
        Ok(GatedMlp {
            gate_up,
            down: self.linear(down, h, ff)?,
            width: ff,
        })
    }

    fn mlp(&mut self, i: usize) -> Result<Mlp, ModelError> {
        let c = self.cfg;
        let (h, ff) = (c.hidden_size, c.intermediate_size);
        if let (true, Some(moe)) = (c.opts.is_sparse(i), &c.opts.moe) {
            let (e, eff) = (moe.num_experts, moe.expert_intermediate_size);
            let router = self.layer(i, LW::Router);
            let router = self.linear(&router, e, h)?;
            let stacked = self.layer(i, LW::ExpertsGate);
            let experts = if self.src.contains(&stacked) {
                let (up, down) = (self.layer(i, LW::ExpertsUp), self.layer(i, LW::ExpertsDown));
                let gates = self.src.stacked_linears(&stacked, e, eff, h)?;
                let ups = self.src.stacked_linears(&up, e, eff, h)?;
                let downs = self.src.stacked_linears(&down, e, h, eff)?;
                gates
                    .into_iter()
                    .zip(ups)
                    .zip(downs)
                    .map(|((gate, up), down)| GatedMlp {
                        gate_up: GateUpProj::Separate { gate, up },
                        down,
                        width: eff,
                    })
                    .collect()
            } else {
                (0..e)
                    .map(|x| {
                        let g = self.layer(i, LW::ExpertGate(x));
                        let u = self.layer(i, LW::ExpertUp(x));
                        let d = self.layer(i, LW::ExpertDown(x));
                        self.gated(&g, &u, &d, eff)
                    })
                    .collect::<Result<_, _>>()?
            };
            return Ok(Mlp::Experts(Experts {
                router,
                experts,
                top_k: moe.top_k,
                norm_topk_prob: moe.norm_topk_prob,
            }));
        }
        let (down, fused) = (
            self.layer(i, LW::Down),
            matches!(c.arch, Arch::ChatGlm | Arch::Phi3),
        );
        if fused {
            let gu = self.layer(i, LW::GateUp);
            return Ok(Mlp::Dense(GatedMlp {
                gate_up: GateUpProj::Fused(self.linear(&gu, 2 * ff, h)?),
                down: self.linear(&down, h, ff)?,
                width: ff,
            }));
        }
        let (gate, up) = (self.layer(i, LW::Gate), self.layer(i, LW::Up));
        Ok(Mlp::Dense(self.gated(&gate, &up, &down, ff)?))
    }

    fn layer_weights(&mut self, i: usize) -> Result<Layer, ModelError> {
        let h = self.cfg.hidden_size;
        let sandwich = self.cfg.opts.sandwich_norms;
        let optional_norm = |this: &mut Self, w: LW| -> Result<Option<Tensor>, ModelError> {
            if sandwich {
                let name = this.layer(i, w);
                Ok(Some(this.norm(&name, h)?))
            } else {
                Ok(None)
            }
        };
        let attn_norm = self.layer(i, LW::AttnNorm);
        let mlp_norm = self.layer(i, LW::MlpNorm);
        Ok(Layer {
            attn_norm: self.norm(&attn_norm, h)?,
            attn: self.attention(i)?,
            post_attn_norm: optional_norm(self, LW::PostAttnNorm)?,
            mlp_norm: self.norm(&mlp_norm, h)?,
            mlp: self.mlp(i)?,
            post_mlp_norm: optional_norm(self, LW::PostMlpNorm)?,
        })
    }
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
        let mut l = Loader {
            cfg: &cfg,
            src,
            dtype,
        };
        let embed = l.src.embedding(&l.name(Weight::Embed), cfg.vocab_size, h)?;
        let layers = (0..cfg.num_layers)
            .map(|i| l.layer_weights(i))
            .collect::<Result<Vec<_>, _>>()?;
        let norm = if cfg.final_norm {
            let name = l.name(Weight::FinalNorm);
            Some(l.norm(&name, h)?)
        } else {
            None
        };
        let head = l.name(Weight::LmHead);
        let lm_head = if cfg.tie_word_embeddings || !l.src.contains(&head) {
            embed.as_linear()?
        } else {
            l.linear(&head, cfg.vocab_size, h)?
        };
        let mut ropes = vec![rope_table(
            &cfg.rope_inv_freq(),
            cfg.rope_position_scale(),
            &cfg,
        )?];
        if let Some(local) = cfg.local_rope_inv_freq() {
            ropes.push(rope_table(&local, 1.0, &cfg)?);
        }
        let attn = AttnSettings {
            heads: cfg.num_heads,
            kv_heads: cfg.num_kv_heads,
            head_dim: cfg.head_dim,
            rotary_dim: cfg.rotary_dim,
            interleaved: cfg.rope_interleaved,
            scale: cfg
                .opts
                .attention_scale
                .unwrap_or(1.0 / (cfg.head_dim as f64).sqrt()),
            softcap: cfg.opts.attn_logit_softcap,
            eps: cfg.rms_norm_eps as f32,
            fused: (device.is_cpu() && dtype == DType::F32 && crate::kernels::fused_attention())
                .then(|| {
                    KvType::choose(
                        cfg.kv_cache,
                        layers.first().is_some_and(|l| l.attn.o.is_quantized()),
                    )
                }),
        };
        Ok(Decoder {
            cfg,
            embed,
            layers,
            norm,
            lm_head,
            ropes,
            attn,
            device: device.clone(),
            dtype,
        })
    }

    /// The model's configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// A new, empty cache for `capacity` positions (at most the model's context), in the
    /// layouts of callm's attention kernel when it runs.
    pub fn new_cache(&self, capacity: usize) -> candle_core::Result<KvCache> {
        KvCache::for_model(
            &self.cfg,
            capacity,
            self.dtype,
            &self.device,
            self.attn.fused,
        )
    }

    /// One forward pass over a batch of sequences (see [`super::batch`]): each item's tokens
    /// run after what its cache holds; returns the logits the items asked for, in item order,
    /// `[rows, vocab]` f32.
    pub fn forward_batch(&self, items: &mut [BatchItem<'_>]) -> candle_core::Result<Tensor> {
        let rows = Rows::new(items)?;
        let ids = rows.ids_tensor(&self.device)?;
        let mut x = self.embed.forward(&ids, self.dtype)?; // [rows, h]
        let o = &self.cfg.opts;
        if let Some(s) = o.embedding_scale {
            x = (x * s as f64)?;
        }
        let ctx = Ctx {
            rows: &rows,
            ropes: &self.ropes,
            dtype: self.dtype,
            device: &self.device,
        };
        let eps = self.cfg.rms_norm_eps as f32;
        let norm = |t: &Tensor, w: &Option<Tensor>| match w {
            Some(w) => crate::kernels::rms_norm(t, w, eps),
            None => Ok(t.clone()),
        };
        // The residual stream: `x + scale * branch`.
        let add = |x: Tensor, branch: Tensor| {
            crate::kernels::residual_add(&x, &branch, o.residual_scale.map(f64::from))
        };
        for (i, layer) in self.layers.iter().enumerate() {
            let h = crate::kernels::rms_norm(&x, &layer.attn_norm, eps)?;
            let a = layer.attn.forward(&self.attn, &ctx, i, &h, items)?;
            x = add(x, norm(&a, &layer.post_attn_norm)?)?;
            let h = crate::kernels::rms_norm(&x, &layer.mlp_norm, eps)?;
            let m = layer.mlp.forward(&h, o.activation)?;
            x = add(x, norm(&m, &layer.post_mlp_norm)?)?;
        }
        rows.advance(items);
        let x = select_rows(&x, &rows.logit_rows(items))?;
        let vocab = self.cfg.vocab_size;
        if x.dim(0)? == 0 {
            return Tensor::zeros((0, vocab), DType::F32, &self.device);
        }
        let x = norm(&x, &self.norm)?;
        let mut logits = self.lm_head.forward(&x)?.to_dtype(DType::F32)?;
        if let Some(d) = o.logits_divisor {
            logits = (logits / d as f64)?;
        }
        if let Some(cap) = o.final_logit_softcap {
            logits = ((logits / cap as f64)?.tanh()? * cap as f64)?;
        }
        Ok(logits)
    }
}

/// Cos/sin tables `[cfg.context, inv_freq.len()]` (the allocated context, not the declared
/// one); positions are divided by `scale`, cos and sin multiplied by the rope attention factor
/// (longrope's).
fn rope_table(inv: &[f32], scale: f64, cfg: &ModelConfig) -> candle_core::Result<RopeTable> {
    let half = inv.len();
    let max = cfg.context;
    let mscale = cfg.rope_attention_factor() as f32;
    let n = max
        .checked_mul(half)
        .ok_or_else(|| candle_core::Error::Msg(format!("rope table of {max} x {half}")))?;
    let alloc = || -> candle_core::Result<Vec<f32>> {
        let mut v = Vec::new();
        v.try_reserve_exact(n).map_err(|e| {
            candle_core::Error::Msg(format!(
                "cannot allocate a rope table of {max} positions: {e}"
            ))
        })?;
        Ok(v)
    };
    let (mut cos, mut sin) = (alloc()?, alloc()?);
    for p in 0..max {
        let p = p as f64 / scale;
        for &f in inv {
            // Angles in f32 like transformers (inv_freq f32 times position f32).
            let a = (p as f32) * f;
            cos.push(a.cos() * mscale);
            sin.push(a.sin() * mscale);
        }
    }
    Ok(RopeTable { cos, sin })
}
