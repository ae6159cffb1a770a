//! Per-architecture options of the decoder beyond the Llama layout (Qwen3's q/k norms,
//! Qwen3-MoE's routed experts, Gemma 3's sandwich norms and interleaved sliding-window layers,
//! Granite's multipliers, SmolLM3's layers without rope), read from a Hugging Face
//! `config.json`. The GGUF side is in [`super::gguf_arch`].

use serde_json::Value;

use super::config::{get_usize, Arch};

/// The activation of the gated MLP: `down(act(gate x) * up x)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Activation {
    /// SiLU (SwiGLU): Llama, Qwen, Phi-3, Granite, SmolLM3.
    #[default]
    Silu,
    /// GELU with the tanh approximation (GeGLU): Gemma.
    GeluTanh,
}

/// Routed experts (Qwen3-MoE): a softmax over the router logits of every expert, the top
/// `top_k` kept (renormalised to sum 1 when `norm_topk_prob`), and the output the weighted
/// sum of those experts' SwiGLU MLPs.
#[derive(Debug, Clone, PartialEq)]
pub struct MoeOptions {
    /// Experts per sparse layer.
    pub num_experts: usize,
    /// Experts each token is routed to.
    pub top_k: usize,
    /// Intermediate width of one expert.
    pub expert_intermediate_size: usize,
    /// Whether the top-k weights are renormalised to sum 1.
    pub norm_topk_prob: bool,
    /// Per layer: whether its MLP is the routed experts (else a dense MLP of
    /// `intermediate_size`).
    pub sparse_layers: Vec<bool>,
}

/// What a decoder does beyond the Llama layout; the default is plain Llama.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ArchOptions {
    /// RMSNorm over each head's dimensions of q and k, before rope (Qwen3, Gemma 3).
    pub qk_norm: bool,
    /// A norm after attention and after the MLP as well as before each (Gemma 3).
    pub sandwich_norms: bool,
    /// Added to every stored norm weight at load: 1 where the checkpoint stores `w` of a norm
    /// that computes `x * (1 + w)` (Gemma's Hugging Face weights; its GGUFs store `1 + w`).
    pub norm_weight_offset: f32,
    /// Embeddings are multiplied by this (Gemma: `sqrt(hidden)`; Granite's multiplier).
    pub embedding_scale: Option<f32>,
    /// Each residual branch is multiplied by this before it is added (Granite).
    pub residual_scale: Option<f32>,
    /// Attention score scale in place of `1/sqrt(head_dim)` (Granite's multiplier, Gemma's
    /// `query_pre_attn_scalar ** -0.5`).
    pub attention_scale: Option<f64>,
    /// Logits are divided by this (Granite's `logits_scaling`).
    pub logits_divisor: Option<f32>,
    /// Logits become `cap * tanh(logits / cap)` (Gemma 2 style soft-capping).
    pub final_logit_softcap: Option<f32>,
    /// Attention scores become `cap * tanh(scores / cap)` before the mask.
    pub attn_logit_softcap: Option<f32>,
    /// The MLP activation.
    pub activation: Activation,
    /// Per layer: whether it attends within `sliding_window` only. Empty: every layer does
    /// when the model has a window (Mistral).
    pub sliding_layers: Vec<bool>,
    /// Rotary base of the sliding-window layers (Gemma 3's local base); `None`: the global one.
    pub local_rope_theta: Option<f64>,
    /// Per layer: whether it applies rotary encoding (SmolLM3's NoPE layers). Empty: all do.
    pub rope_layers: Vec<bool>,
    /// Routed experts, for mixture-of-experts models.
    pub moe: Option<MoeOptions>,
}

impl ArchOptions {
    /// Whether layer `i` attends within the sliding window only.
    pub fn is_sliding(&self, i: usize) -> bool {
        self.sliding_layers.get(i).copied().unwrap_or(true)
    }

    /// Whether layer `i` applies rotary encoding.
    pub fn uses_rope(&self, i: usize) -> bool {
        self.rope_layers.get(i).copied().unwrap_or(true)
    }

    /// Whether layer `i`'s MLP is the routed experts.
    pub fn is_sparse(&self, i: usize) -> bool {
        self.moe
            .as_ref()
            .is_some_and(|m| m.sparse_layers.get(i).copied().unwrap_or(false))
    }
}

fn f64_of(v: &Value, key: &str) -> Option<f64> {
    v.get(key).and_then(Value::as_f64)
}

fn positive(v: &Value, key: &str) -> Option<f64> {
    f64_of(v, key).filter(|x| *x > 0.0)
}

/// A per-layer flag list of exactly `num_layers` entries, from a JSON list of numbers or bools.
fn layer_flags(v: &Value, key: &str, num_layers: usize) -> Result<Option<Vec<bool>>, String> {
    let Some(list) = v.get(key).filter(|x| !x.is_null()) else {
        return Ok(None);
    };
    let items = list
        .as_array()
        .ok_or_else(|| format!("\"{key}\" is not a list"))?;
    if items.len() != num_layers {
        return Err(format!(
            "\"{key}\" has {} entries for {num_layers} layers",
            items.len()
        ));
    }
    items
        .iter()
        .map(|x| match x {
            Value::Bool(b) => Ok(*b),
            Value::Number(n) => Ok(n.as_f64().is_some_and(|f| f != 0.0)),
            _ => Err(format!("\"{key}\" holds {x}, not a number")),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// Gemma 3's layer types: `layer_types` (transformers 5) or, in older configs, every
/// `sliding_window_pattern`-th layer global and the others sliding (default pattern 6).
fn gemma_sliding_layers(v: &Value, num_layers: usize) -> Result<Vec<bool>, String> {
    if let Some(types) = v.get("layer_types").and_then(Value::as_array) {
        if types.len() != num_layers {
            return Err(format!(
                "\"layer_types\" has {} entries for {num_layers} layers",
                types.len()
            ));
        }
        return types
            .iter()
            .map(|t| match t.as_str() {
                Some("sliding_attention") => Ok(true),
                Some("full_attention") => Ok(false),
                _ => Err(format!("unsupported layer type {t}")),
            })
            .collect();
    }
    let pattern = get_usize(v, "sliding_window_pattern")
        .or_else(|| get_usize(v, "_sliding_window_pattern"))
        .unwrap_or(6);
    if pattern == 0 {
        return Err("\"sliding_window_pattern\" is 0".into());
    }
    Ok((0..num_layers).map(|i| (i + 1) % pattern != 0).collect())
}

/// The rope base of Gemma 3's sliding layers: `rope_parameters.sliding_attention.rope_theta`
/// (transformers 5) or `rope_local_base_freq` (default 10000).
fn gemma_local_theta(v: &Value) -> f64 {
    v.get("rope_parameters")
        .and_then(|p| p.get("sliding_attention"))
        .and_then(|p| f64_of(p, "rope_theta"))
        .or_else(|| f64_of(v, "rope_local_base_freq"))
        .unwrap_or(10_000.0)
}

/// The options a Hugging Face `config.json` describes for `arch`.
pub fn from_hf(
    v: &Value,
    arch: Arch,
    num_layers: usize,
    hidden_size: usize,
) -> Result<ArchOptions, String> {
    let mut o = ArchOptions::default();
    match arch {
        Arch::Qwen3 => o.qk_norm = true,
        Arch::Qwen3Moe => {
            o.qk_norm = true;
            let num_experts = get_usize(v, "num_experts")
                .or_else(|| get_usize(v, "num_local_experts"))
                .ok_or("missing \"num_experts\"")?;
            let top_k =
                get_usize(v, "num_experts_per_tok").ok_or("missing \"num_experts_per_tok\"")?;
            if num_experts == 0 || top_k == 0 || top_k > num_experts {
                return Err(format!(
                    "{top_k} experts per token out of {num_experts} is not a valid routing"
                ));
            }
            let step = get_usize(v, "decoder_sparse_step").unwrap_or(1).max(1);
            let dense: Vec<usize> = v
                .get("mlp_only_layers")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_u64().map(|x| x as usize))
                        .collect()
                })
                .unwrap_or_default();
            o.moe = Some(MoeOptions {
                num_experts,
                top_k,
                expert_intermediate_size: get_usize(v, "moe_intermediate_size")
                    .ok_or("missing \"moe_intermediate_size\"")?,
                norm_topk_prob: v
                    .get("norm_topk_prob")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
                sparse_layers: (0..num_layers)
                    .map(|i| !dense.contains(&i) && (i + 1) % step == 0)
                    .collect(),
            });
        }
        Arch::Gemma3 => {
            o.qk_norm = true;
            o.sandwich_norms = true;
            o.norm_weight_offset = 1.0;
            o.embedding_scale = Some((hidden_size as f64).sqrt() as f32);
            o.attention_scale =
                Some(1.0 / positive(v, "query_pre_attn_scalar").unwrap_or(256.0).sqrt());
            o.final_logit_softcap = positive(v, "final_logit_softcapping").map(|x| x as f32);
            o.attn_logit_softcap = positive(v, "attn_logit_softcapping").map(|x| x as f32);
            o.activation = match v
                .get("hidden_activation")
                .or_else(|| v.get("hidden_act"))
                .and_then(Value::as_str)
                .unwrap_or("gelu_pytorch_tanh")
            {
                "gelu_pytorch_tanh" | "gelu_tanh" | "gelu_new" => Activation::GeluTanh,
                other => return Err(format!("unsupported hidden_activation \"{other}\"")),
            };
            o.sliding_layers = gemma_sliding_layers(v, num_layers)?;
            o.local_rope_theta = Some(gemma_local_theta(v));
        }
        Arch::Granite => {
            o.embedding_scale = positive(v, "embedding_multiplier").map(|x| x as f32);
            o.residual_scale = positive(v, "residual_multiplier").map(|x| x as f32);
            o.attention_scale = positive(v, "attention_multiplier");
            o.logits_divisor = positive(v, "logits_scaling").map(|x| x as f32);
        }
        Arch::SmolLm3 => {
            o.rope_layers = match layer_flags(v, "no_rope_layers", num_layers)? {
                Some(flags) => flags,
                None => {
                    let every = get_usize(v, "no_rope_layer_interval").unwrap_or(4).max(1);
                    (0..num_layers).map(|i| (i + 1) % every != 0).collect()
                }
            };
        }
        Arch::Llama | Arch::Mistral | Arch::Qwen2 | Arch::Phi3 | Arch::ChatGlm | Arch::Mpt => {}
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemma_pattern_marks_every_nth_layer_global() {
        let v: Value = serde_json::json!({ "sliding_window_pattern": 6 });
        let s = gemma_sliding_layers(&v, 12).unwrap();
        let global: Vec<usize> = (0..12).filter(|&i| !s[i]).collect();
        assert_eq!(global, vec![5, 11]);
        let bad = serde_json::json!({ "layer_types": ["full_attention"] });
        assert!(gemma_sliding_layers(&bad, 2).is_err());
    }

    #[test]
    fn smollm3_interval_gives_nope_layers() {
        let v = serde_json::json!({ "no_rope_layer_interval": 4 });
        let o = from_hf(&v, Arch::SmolLm3, 8, 64).unwrap();
        let nope: Vec<usize> = (0..8).filter(|&i| !o.uses_rope(i)).collect();
        assert_eq!(nope, vec![3, 7]);
        let bad = serde_json::json!({ "no_rope_layers": [1] });
        assert!(from_hf(&bad, Arch::SmolLm3, 2, 64).is_err());
    }

    #[test]
    fn bad_moe_routing_is_an_error() {
        let v = serde_json::json!({ "num_experts": 2, "num_experts_per_tok": 3, "moe_intermediate_size": 8 });
        assert!(from_hf(&v, Arch::Qwen3Moe, 2, 64).is_err());
    }
}
