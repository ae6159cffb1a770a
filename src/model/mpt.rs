//! MPT (MosaicML; replit-code-v1-3b and so Glaive function-calling-v1): pre-LayerNorm blocks,
//! one fused q/k/v projection, ALiBi attention biases instead of rotary positions, an exact-GELU
//! MLP and tied input/output embeddings. Dense safetensors/`.bin` or quantized GGUF weights.

use candle_core::{DType, Device, Tensor};
use serde_json::Value;

use super::attention::{attend_fused, attend_plain};
use super::batch::{select_rows, BatchItem, Rows, Span};
use super::config::{get_usize, token_ids, Arch, ModelConfig, RopeScaling};
use super::kv_cache::{KvCache, KvType};
use super::names::Naming;
use super::weights::{Embedding, Linear, WeightSource};
use super::ModelError;
use crate::kernels::attention::AttnParams;

/// Settings only MPT checkpoints have.
#[derive(Debug, Clone, PartialEq)]
pub struct MptSettings {
    /// `alibi_bias_max` when ALiBi is on; `None` means no position information besides
    /// learned position embeddings.
    pub alibi_bias_max: Option<f64>,
    /// Clamp q/k/v to `[-clip, clip]` (`clip_qkv`).
    pub clip_qkv: Option<f64>,
    /// Attention scale (`softmax_scale`; default `1/sqrt(head_dim)`).
    pub softmax_scale: Option<f64>,
    /// Multiplier on the output logits (`logit_scale`).
    pub logit_scale: Option<f64>,
    /// A learned position-embedding table is added to the token embeddings.
    pub learned_pos_emb: bool,
    /// Linear layers and norms carry biases (`no_bias: false`).
    pub bias: bool,
}

/// Parses an MPT `config.json` (already decoded); `origin` names the file in errors.
pub fn config_from_hf(v: &Value, origin: &str) -> Result<ModelConfig, ModelError> {
    let err = |msg: String| ModelError::Config {
        file: origin.to_string(),
        msg,
    };
    let need = |key: &str| {
        get_usize(v, key).ok_or_else(|| err(format!("missing or non-integer \"{key}\"")))
    };
    let empty = Value::Object(Default::default());
    let attn = v.get("attn_config").unwrap_or(&empty);
    for key in ["qk_ln", "prefix_lm", "attn_uses_sequence_id"] {
        if attn.get(key).and_then(Value::as_bool) == Some(true) {
            return Err(err(format!(
                "attn_config.{key} = true is not supported (replit-code and MPT-7B use false)"
            )));
        }
    }
    let hidden_size = need("d_model")?;
    let num_heads = need("n_heads")?;
    if num_heads == 0 || hidden_size % num_heads != 0 {
        return Err(err(format!(
            "d_model {hidden_size} is not divisible by n_heads {num_heads}"
        )));
    }
    let num_kv_heads = match attn.get("attn_type").and_then(Value::as_str) {
        None | Some("multihead_attention") => num_heads,
        Some("multiquery_attention") => 1,
        Some("grouped_query_attention") => get_usize(attn, "kv_n_heads")
            .ok_or_else(|| err("grouped_query_attention without attn_config.kv_n_heads".into()))?,
        Some(other) => {
            return Err(err(format!(
                "unsupported attn_config.attn_type \"{other}\""
            )))
        }
    };
    if num_kv_heads == 0 || num_heads % num_kv_heads != 0 {
        return Err(err(format!(
            "n_heads {num_heads} is not a multiple of kv_n_heads {num_kv_heads}"
        )));
    }
    let ffn = v
        .get("ffn_config")
        .and_then(|f| get_usize(f, "ffn_hidden_size"));
    let intermediate_size = match ffn {
        Some(n) => n,
        None => {
            let ratio = v
                .get("expansion_ratio")
                .and_then(Value::as_f64)
                .unwrap_or(4.0);
            (ratio * hidden_size as f64) as usize
        }
    };
    let alibi = attn.get("alibi").and_then(Value::as_bool).unwrap_or(false);
    let f64_of = |o: &Value, k: &str| o.get(k).and_then(Value::as_f64);
    let logit_scale = match v.get("logit_scale") {
        Some(Value::String(s)) if s == "inv_sqrt_d_model" => {
            Some(1.0 / (hidden_size as f64).sqrt())
        }
        Some(x) => x.as_f64(),
        None => None,
    };
    let mpt = MptSettings {
        alibi_bias_max: alibi.then(|| f64_of(attn, "alibi_bias_max").unwrap_or(8.0)),
        clip_qkv: f64_of(attn, "clip_qkv"),
        softmax_scale: f64_of(attn, "softmax_scale"),
        logit_scale,
        learned_pos_emb: v
            .get("learned_pos_emb")
            .and_then(Value::as_bool)
            .unwrap_or(true),
        bias: !v.get("no_bias").and_then(Value::as_bool).unwrap_or(false),
    };
    Ok(ModelConfig {
        arch: Arch::Mpt,
        hidden_size,
        intermediate_size,
        num_layers: need("n_layers")?,
        num_heads,
        num_kv_heads,
        head_dim: hidden_size / num_heads,
        vocab_size: need("vocab_size")?,
        rms_norm_eps: f64_of(v, "layer_norm_epsilon").unwrap_or(1e-5),
        rope_theta: 0.0,
        rope_scaling: RopeScaling::None,
        max_position_embeddings: get_usize(v, "max_seq_len").unwrap_or(2048),
        context: 0,
        kv_cache: None,
        keys: Default::default(),
        tie_word_embeddings: true,
        qkv_bias: mpt.bias,
        sliding_window: None,
        rope_interleaved: false,
        rotary_dim: 0,
        final_norm: true,
        mpt: Some(mpt),
        bos_token_id: v
            .get("bos_token_id")
            .and_then(Value::as_u64)
            .map(|x| x as u32),
        eos_token_ids: token_ids(v.get("eos_token_id")),
        opts: Default::default(),
    })
}

/// ALiBi slopes for `n_heads` heads, as MPT computes them: geometric in `alibi_bias_max / n`
/// over the next power of two heads, interleaved when `n_heads` is not a power of two.
pub fn alibi_slopes(n_heads: usize, alibi_bias_max: f64) -> Vec<f32> {
    let n = n_heads.next_power_of_two();
    let slopes: Vec<f64> = (1..=n)
        .map(|i| 1.0 / 2f64.powf(i as f64 * alibi_bias_max / n as f64))
        .collect();
    if n == n_heads {
        return slopes.iter().map(|&s| s as f32).collect();
    }
    slopes
        .iter()
        .skip(1)
        .step_by(2)
        .chain(slopes.iter().step_by(2))
        .take(n_heads)
        .map(|&s| s as f32)
        .collect()
}

/// A LayerNorm with an optional bias.
struct Norm {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Norm {
    fn forward(&self, x: &Tensor, eps: f64) -> candle_core::Result<Tensor> {
        let bias = match &self.bias {
            Some(b) => b.clone(),
            None => self.weight.zeros_like()?,
        };
        candle_nn::ops::layer_norm(x, &self.weight, &bias, eps as f32)
    }
}

struct Block {
    norm_1: Norm,
    wqkv: Linear,
    out_proj: Linear,
    norm_2: Norm,
    up: Linear,
    down: Linear,
}

/// Tensor names of one MPT checkpoint layout.
struct Names(Naming);

impl Names {
    fn top(&self, hf: &str, gguf: &str) -> String {
        match self.0 {
            Naming::HuggingFace => format!("transformer.{hf}.weight"),
            Naming::Gguf => format!("{gguf}.weight"),
        }
    }
    fn block(&self, i: usize, hf: &str, gguf: &str) -> String {
        match self.0 {
            Naming::HuggingFace => format!("transformer.blocks.{i}.{hf}.weight"),
            Naming::Gguf => format!("blk.{i}.{gguf}.weight"),
        }
    }
}

/// A loaded MPT decoder.
pub struct Mpt {
    cfg: ModelConfig,
    settings: MptSettings,
    wte: Embedding,
    wpe: Option<Tensor>,
    blocks: Vec<Block>,
    norm_f: Norm,
    lm_head: Linear,
    slopes: Option<Vec<f32>>,
    /// Whether attention runs on callm's CPU kernel (f32 on the CPU), and its caches' type.
    fused: Option<KvType>,
    device: Device,
    dtype: DType,
}

impl Mpt {
    /// Loads every tensor from `src`; `dtype` is the activation and cache dtype.
    pub fn load(
        cfg: ModelConfig,
        src: &mut dyn WeightSource,
        dtype: DType,
        device: &Device,
    ) -> Result<Self, ModelError> {
        let settings = cfg.mpt.clone().ok_or_else(|| ModelError::Config {
            file: "config".into(),
            msg: "MPT decoder given a non-MPT configuration".into(),
        })?;
        let names = Names(src.naming());
        let (h, ff) = (cfg.hidden_size, cfg.intermediate_size);
        let qkv_out = (cfg.num_heads + 2 * cfg.num_kv_heads) * cfg.head_dim;
        let bias = settings.bias;
        let norm = |src: &mut dyn WeightSource, name: String| -> Result<Norm, ModelError> {
            let bias_name = name.replace(".weight", ".bias");
            Ok(Norm {
                weight: src.vector(&name, h)?.to_dtype(dtype)?,
                bias: if src.contains(&bias_name) {
                    Some(src.vector(&bias_name, h)?.to_dtype(dtype)?)
                } else {
                    None
                },
            })
        };
        let wte = src.embedding(&names.top("wte", "token_embd"), cfg.vocab_size, h)?;
        let wpe = if settings.learned_pos_emb {
            let name = names.top("wpe", "position_embd");
            let table = src.embedding(&name, cfg.max_position_embeddings, h)?;
            let all = Tensor::arange(0u32, cfg.max_position_embeddings as u32, device)?;
            Some(table.forward(&all, dtype)?)
        } else {
            None
        };
        let mut blocks = Vec::with_capacity(cfg.num_layers);
        for i in 0..cfg.num_layers {
            let b = |hf: &str, gguf: &str| names.block(i, hf, gguf);
            blocks.push(Block {
                norm_1: norm(src, b("norm_1", "attn_norm"))?,
                wqkv: src.linear(&b("attn.Wqkv", "attn_qkv"), qkv_out, h, bias)?,
                out_proj: src.linear(&b("attn.out_proj", "attn_output"), h, h, bias)?,
                norm_2: norm(src, b("norm_2", "ffn_norm"))?,
                up: src.linear(&b("ffn.up_proj", "ffn_up"), ff, h, bias)?,
                down: src.linear(&b("ffn.down_proj", "ffn_down"), h, ff, bias)?,
            });
        }
        let norm_f = norm(src, names.top("norm_f", "output_norm"))?;
        // MPT ties the output projection to the embedding; a GGUF may still carry `output`.
        let head_name = match src.naming() {
            Naming::HuggingFace => "lm_head.weight".to_string(),
            Naming::Gguf => "output.weight".to_string(),
        };
        let lm_head = if src.contains(&head_name) {
            src.linear(&head_name, cfg.vocab_size, h, false)?
        } else {
            wte.as_linear()?
        };
        let slopes = settings
            .alibi_bias_max
            .map(|max| alibi_slopes(cfg.num_heads, max));
        let fused = (device.is_cpu() && dtype == DType::F32 && crate::kernels::fused_attention())
            .then(|| {
                KvType::choose(
                    cfg.kv_cache,
                    blocks.first().is_some_and(|b| b.out_proj.is_quantized()),
                )
            });
        Ok(Mpt {
            cfg,
            settings,
            wte,
            wpe,
            blocks,
            norm_f,
            lm_head,
            slopes,
            fused,
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
        KvCache::for_model(&self.cfg, capacity, self.dtype, &self.device, self.fused)
    }

    /// One forward pass over a batch of sequences (see [`super::batch`]); returns the logits
    /// the items asked for, in item order, `[rows, vocab]` f32.
    pub fn forward_batch(&self, items: &mut [BatchItem<'_>]) -> candle_core::Result<Tensor> {
        let rows = Rows::new(items)?;
        let ids = rows.ids_tensor(&self.device)?;
        let mut x = self.wte.forward(&ids, self.dtype)?;
        if let Some(wpe) = &self.wpe {
            x = (x + wpe.index_select(&rows.positions_tensor(&self.device)?, 0)?)?;
        }
        let eps = self.cfg.rms_norm_eps;
        for (i, b) in self.blocks.iter().enumerate() {
            let a = b.norm_1.forward(&x, eps)?;
            x = (x + self.attention(i, b, &a, &rows, items)?)?;
            let m = b.norm_2.forward(&x, eps)?;
            x = (x + b.down.forward(&b.up.forward(&m)?.gelu_erf()?)?)?;
        }
        rows.advance(items);
        let x = select_rows(&x, &rows.logit_rows(items))?;
        if x.dim(0)? == 0 {
            return Tensor::zeros((0, self.cfg.vocab_size), DType::F32, &self.device);
        }
        let x = self.norm_f.forward(&x, eps)?;
        let logits = self.lm_head.forward(&x)?.to_dtype(DType::F32)?;
        match self.settings.logit_scale {
            Some(s) => logits * s,
            None => Ok(logits),
        }
    }

    fn scale(&self) -> f64 {
        self.settings
            .softmax_scale
            .unwrap_or(1.0 / (self.cfg.head_dim as f64).sqrt())
    }

    /// Causal mask plus ALiBi for one sequence, `[heads, n, pos + n]`: `slope_h * (k - q)`
    /// where query `q` may see key `k`, -inf elsewhere.
    fn attention_bias(&self, pos: usize, n: usize) -> candle_core::Result<Tensor> {
        let total = pos + n;
        let heads = self.cfg.num_heads;
        let mut bias = vec![0f32; heads * n * total];
        for h in 0..heads {
            let slope = self.slopes.as_ref().map_or(0.0, |s| s[h]);
            for i in 0..n {
                let q = pos + i;
                let row = &mut bias[(h * n + i) * total..(h * n + i + 1) * total];
                for (k, b) in row.iter_mut().enumerate() {
                    *b = if k > q {
                        f32::NEG_INFINITY
                    } else {
                        slope * (k as f32 - q as f32)
                    };
                }
            }
        }
        Tensor::from_vec(bias, (heads, n, total), &self.device)?.to_dtype(self.dtype)
    }

    fn attention(
        &self,
        layer: usize,
        b: &Block,
        x: &Tensor,
        rows: &Rows,
        items: &mut [BatchItem<'_>],
    ) -> candle_core::Result<Tensor> {
        let c = &self.cfg;
        let t = x.dim(0)?;
        let (nh, nkv, hd) = (c.num_heads, c.num_kv_heads, c.head_dim);
        let mut qkv = b.wqkv.forward(x)?;
        if let Some(clip) = self.settings.clip_qkv {
            qkv = qkv.clamp(-clip, clip)?;
        }
        let q = qkv.narrow(1, 0, nh * hd)?;
        let k = qkv.narrow(1, nh * hd, nkv * hd)?;
        let v = qkv.narrow(1, (nh + nkv) * hd, nkv * hd)?;
        let out = if self.fused.is_some() && items.iter().all(|it| it.cache.is_blocks()) {
            let params = AttnParams {
                heads: nh,
                kv_heads: nkv,
                head_dim: hd,
                scale: self.scale() as f32,
                window: usize::MAX,
                softcap: None,
                alibi: self.slopes.as_deref(),
            };
            let out = attend_fused(&params, None, rows, layer, items, &q, &k, &v)?;
            Tensor::from_vec(out, (t, nh * hd), &self.device)?.to_dtype(self.dtype)?
        } else {
            let mut outs = Vec::with_capacity(items.len());
            for (it, span) in items.iter_mut().zip(&rows.spans) {
                outs.push(self.plain(layer, span, &q, &k, &v, it.cache)?);
            }
            Tensor::cat(&outs, 0)?
        };
        b.out_proj.forward(&out)
    }

    /// The plain path (candle ops) for one sequence's rows; output `[n, heads * hd]`.
    fn plain(
        &self,
        layer: usize,
        span: &Span,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        cache: &mut KvCache,
    ) -> candle_core::Result<Tensor> {
        let c = &self.cfg;
        let (nh, nkv, hd, n) = (c.num_heads, c.num_kv_heads, c.head_dim, span.n);
        let shape = |t: &Tensor, heads: usize| -> candle_core::Result<Tensor> {
            t.narrow(0, span.row0, n)?
                .reshape((n, heads, hd))?
                .transpose(0, 1)?
                .contiguous()
        };
        let (q, k, v) = (shape(q, nh)?, shape(k, nkv)?, shape(v, nkv)?);
        let (k_all, v_all) = cache.append(layer, &k, &v)?; // [nkv, L, hd]
        let total = k_all.dim(1)?;
        let rep = nh / nkv;
        let bias = self
            .attention_bias(span.pos, n)?
            .reshape((nkv, rep, n, total))?;
        let q = q.unsqueeze(0)?;
        let out = attend_plain(&q, &k_all, &v_all, self.scale(), None, Some(&bias), rep)?;
        out.reshape((nh, n, hd))?
            .transpose(0, 1)?
            .reshape((n, nh * hd))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slopes_match_mpt_for_power_of_two_and_other_head_counts() {
        // golden.json of the mpt fixture: 4 heads, alibi_bias_max 8.
        assert_eq!(
            alibi_slopes(4, 8.0),
            vec![0.25, 0.0625, 0.015625, 0.00390625]
        );
        // 12 heads: slopes over 16 heads (powers 1/2^(i/2)), odd positions first, then even.
        let s = alibi_slopes(12, 8.0);
        let base: Vec<f32> = (1..=16).map(|i| 1.0 / 2f32.powf(i as f32 / 2.0)).collect();
        let want: Vec<f32> = [1, 3, 5, 7, 9, 11, 13, 15, 0, 2, 4, 6]
            .iter()
            .map(|&i| base[i])
            .collect();
        for (a, b) in s.iter().zip(&want) {
            assert!((a - b).abs() < 1e-7, "{s:?} vs {want:?}");
        }
    }

    #[test]
    fn reads_both_config_styles() {
        let dir = crate::paths::fixtures_dir().join("tiny-models/mpt");
        let read = |f: &str| -> ModelConfig {
            let v: Value =
                serde_json::from_str(&std::fs::read_to_string(dir.join(f)).unwrap()).unwrap();
            ModelConfig::from_hf_value(&v, f).unwrap()
        };
        let a = read("config.json");
        assert_eq!(a, read("config_legacy.json"));
        assert_eq!(a.arch, Arch::Mpt);
        assert_eq!((a.num_heads, a.num_kv_heads, a.head_dim), (4, 4, 16));
        assert_eq!(a.intermediate_size, 256);
        let s = a.mpt.unwrap();
        assert_eq!(s.alibi_bias_max, Some(8.0));
        assert!(!s.bias && !s.learned_pos_emb);
    }
}
