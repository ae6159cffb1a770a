//! The per-architecture options ([`ArchOptions`]) a GGUF file describes, in llama.cpp's
//! metadata keys (`{arch}.expert_count`, `gemma3.attention.sliding_window`,
//! `granite.embedding_scale`, ...) and tensor layout, with llama.cpp's defaults where it has
//! no key (Gemma 3's global layer every 6th and local rope base 10000, SmolLM3's layer
//! without rope every 4th, Qwen3-MoE's renormalised top-k).

use candle_core::quantized::gguf_file::{Content, Value};

use super::config::Arch;
use super::gguf::{md, md_f64, md_usize};
use super::options::{Activation, ArchOptions, MoeOptions};

/// Whether llama.cpp stores this architecture's q/k rows permuted for rotary on interleaved
/// pairs (its "normal" rope: Llama-derived converters) rather than in Hugging Face's
/// rotate-half order ("neox": Qwen, Gemma, Phi-3).
pub(super) fn rope_interleaved(arch: Arch) -> bool {
    match arch {
        Arch::Llama | Arch::Mistral | Arch::ChatGlm | Arch::Granite | Arch::SmolLm3 => true,
        Arch::Qwen2 | Arch::Qwen3 | Arch::Qwen3Moe | Arch::Gemma3 | Arch::Phi3 | Arch::Mpt => false,
    }
}

/// Reads a per-layer pattern key that llama.cpp accepts as a period `n` (layer `i` is
/// sliding unless `i % n == n - 1`) or as one bool per layer.
fn sliding_pattern(v: &Value, num_layers: usize) -> Result<Vec<bool>, String> {
    if let Value::Array(items) = v {
        if items.len() != num_layers {
            return Err(format!(
                "sliding_window_pattern has {} entries for {num_layers} layers",
                items.len()
            ));
        }
        return items
            .iter()
            .map(|x| match x {
                Value::Bool(b) => Ok(*b),
                other => other
                    .to_u32()
                    .map(|n| n != 0)
                    .map_err(|_| "sliding_window_pattern holds a non-bool".to_string()),
            })
            .collect();
    }
    let n = v
        .to_u32()
        .or_else(|_| v.to_i32().map(|x| x as u32))
        .map_err(|_| "sliding_window_pattern is not a number".to_string())? as usize;
    Ok((0..num_layers).map(|i| n == 0 || i % n < n - 1).collect())
}

/// Shapes the options depend on.
pub(super) struct Dims {
    pub num_layers: usize,
    pub hidden_size: usize,
    pub num_heads: usize,
}

/// The options of `arch` from the metadata of `c`; `prefix` is the architecture's key prefix.
pub(super) fn options(
    c: &Content,
    arch: Arch,
    prefix: &str,
    d: &Dims,
) -> Result<ArchOptions, String> {
    let key = |k: &str| format!("{prefix}.{k}");
    let float = |k: &str| md_f64(c, &key(k));
    let f32_of = |k: &str| -> Result<Option<f32>, String> {
        Ok(float(k)?.filter(|x| *x > 0.0).map(|x| x as f32))
    };
    let mut o = ArchOptions::default();
    match arch {
        Arch::Qwen3 => o.qk_norm = true,
        Arch::Qwen3Moe => {
            o.qk_norm = true;
            let need =
                |k: &str| md_usize(c, &key(k))?.ok_or(format!("GGUF metadata misses {}", key(k)));
            let num_experts = need("expert_count")?;
            let top_k = need("expert_used_count")?;
            if num_experts == 0 || top_k == 0 || top_k > num_experts {
                return Err(format!(
                    "{top_k} experts per token out of {num_experts} is not a valid routing"
                ));
            }
            let norm = match md(c, &key("expert_weights_norm")) {
                Some(Value::Bool(b)) => *b,
                _ => true,
            };
            o.moe = Some(MoeOptions {
                num_experts,
                top_k,
                expert_intermediate_size: need("expert_feed_forward_length")?,
                norm_topk_prob: norm,
                sparse_layers: (0..d.num_layers)
                    .map(|i| {
                        c.tensor_infos
                            .contains_key(&format!("blk.{i}.ffn_gate_inp.weight"))
                    })
                    .collect(),
            });
        }
        Arch::Gemma3 => {
            o.qk_norm = true;
            o.sandwich_norms = true;
            // The converter stores Gemma's norm weights as `1 + w` already.
            o.norm_weight_offset = 0.0;
            o.embedding_scale = Some((d.hidden_size as f64).sqrt() as f32);
            o.activation = Activation::GeluTanh;
            o.final_logit_softcap = f32_of("final_logit_softcapping")?;
            o.attn_logit_softcap = f32_of("attn_logit_softcapping")?;
            // llama.cpp: 1/sqrt(hidden / heads) for the 62-layer 27B (its query_pre_attn_scalar),
            // 1/sqrt(head_dim) otherwise (the key_length the caller reads).
            if d.num_layers == 62 {
                o.attention_scale = Some(1.0 / ((d.hidden_size / d.num_heads) as f64).sqrt());
            }
            o.sliding_layers = match md(c, &key("attention.sliding_window_pattern")) {
                Some(v) => sliding_pattern(v, d.num_layers)?,
                None => (0..d.num_layers).map(|i| i % 6 < 5).collect(),
            };
            o.local_rope_theta = Some(float("rope.freq_base_swa")?.unwrap_or(10_000.0));
        }
        Arch::Granite => {
            o.embedding_scale = f32_of("embedding_scale")?;
            o.residual_scale = f32_of("residual_scale")?;
            o.attention_scale = float("attention.scale")?.filter(|x| *x > 0.0);
            o.logits_divisor = f32_of("logit_scale")?;
        }
        Arch::SmolLm3 => {
            // llama.cpp has no key for it and fixes the period at 4 (SmolLM3-3B's); callm also
            // reads `smollm3.no_rope_layer_interval` (the config.json name), which only a file
            // written by callm's own tests carries.
            let every = md_usize(c, &key("no_rope_layer_interval"))?
                .unwrap_or(4)
                .max(1);
            o.rope_layers = (0..d.num_layers).map(|i| (i + 1) % every != 0).collect();
        }
        Arch::Llama | Arch::Mistral | Arch::Qwen2 | Arch::Phi3 | Arch::ChatGlm | Arch::Mpt => {}
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_as_period_or_list() {
        let p = sliding_pattern(&Value::U32(6), 12).unwrap();
        let global: Vec<usize> = (0..12).filter(|&i| !p[i]).collect();
        assert_eq!(global, vec![5, 11]);
        let p = sliding_pattern(&Value::U32(2), 2).unwrap();
        assert_eq!(p, vec![true, false]);
        let list = Value::Array(vec![Value::Bool(false), Value::Bool(true)]);
        assert_eq!(sliding_pattern(&list, 2).unwrap(), vec![false, true]);
        assert!(sliding_pattern(&list, 3).is_err());
    }
}
