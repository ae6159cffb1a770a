//! ChatGLM2/3: reading its `config.json` (`num_layers`, `multi_query_group_num`,
//! `kv_channels`, `padded_vocab_size`, `seq_length`, ...) into a [`ModelConfig`].
//!
//! The network itself is the Llama-style [`super::Decoder`]: ChatGLM3 is an RMSNorm/SwiGLU
//! decoder whose q/k/v (with bias) and gate/up projections are fused, with grouped
//! key/value heads and rotary encoding on the first half of each head as interleaved pairs.

use serde_json::Value;

use super::config::{get_usize, token_ids, Arch, ModelConfig, RopeScaling};
use super::ModelError;

fn get_bool(v: &Value, key: &str) -> Option<bool> {
    v.get(key).and_then(Value::as_bool)
}

/// Parses a ChatGLM2/3 `config.json` (already decoded); `origin` names the file in errors.
pub fn config_from_hf(v: &Value, origin: &str) -> Result<ModelConfig, ModelError> {
    let err = |msg: String| ModelError::Config {
        file: origin.to_string(),
        msg,
    };
    let need = |key: &str| {
        get_usize(v, key).ok_or_else(|| err(format!("missing or non-integer \"{key}\"")))
    };
    // Variants this implementation does not cover fail loudly instead of computing garbage.
    let unsupported = [
        ("rmsnorm", false, "LayerNorm instead of RMSNorm"),
        ("original_rope", false, "the non-original rotary layout"),
        (
            "apply_residual_connection_post_layernorm",
            true,
            "residuals taken after the layer norm",
        ),
        (
            "add_bias_linear",
            true,
            "biases on the dense/MLP projections",
        ),
    ];
    for (key, bad, what) in unsupported {
        if get_bool(v, key) == Some(bad) {
            return Err(err(format!(
                "\"{key}\": {bad} ({what}) is not supported; ChatGLM2/3 checkpoints use {}",
                !bad
            )));
        }
    }
    let hidden_size = need("hidden_size")?;
    let num_heads = need("num_attention_heads")?;
    if num_heads == 0 {
        return Err(err("\"num_attention_heads\" is 0".into()));
    }
    let head_dim = get_usize(v, "kv_channels").unwrap_or(hidden_size / num_heads);
    let num_kv_heads = if get_bool(v, "multi_query_attention").unwrap_or(false) {
        need("multi_query_group_num")?
    } else {
        num_heads
    };
    if num_kv_heads == 0 || num_heads % num_kv_heads != 0 {
        return Err(err(format!(
            "num_attention_heads {num_heads} is not a multiple of multi_query_group_num {num_kv_heads}"
        )));
    }
    if head_dim < 4 || !head_dim.is_multiple_of(4) {
        return Err(err(format!(
            "kv_channels {head_dim} must be a positive multiple of 4 (rotary covers half of it in pairs)"
        )));
    }
    let vocab_size = get_usize(v, "padded_vocab_size")
        .or_else(|| get_usize(v, "vocab_size"))
        .ok_or_else(|| err("missing \"padded_vocab_size\"".into()))?;
    // ChatGLM3-6B-32K and later scale the rotary base by `rope_ratio`.
    let rope_ratio = v.get("rope_ratio").and_then(Value::as_f64).unwrap_or(1.0);
    Ok(ModelConfig {
        arch: Arch::ChatGlm,
        hidden_size,
        intermediate_size: need("ffn_hidden_size")?,
        num_layers: need("num_layers")?,
        num_heads,
        num_kv_heads,
        head_dim,
        vocab_size,
        rms_norm_eps: v
            .get("layernorm_epsilon")
            .and_then(Value::as_f64)
            .unwrap_or(1e-5),
        rope_theta: 10_000.0 * rope_ratio,
        rope_scaling: RopeScaling::None,
        max_position_embeddings: get_usize(v, "seq_length").unwrap_or(8192),
        context: 0,
        kv_cache: None,
        keys: Default::default(),
        tie_word_embeddings: false,
        qkv_bias: get_bool(v, "add_qkv_bias").unwrap_or(true),
        sliding_window: None,
        rope_interleaved: true,
        rotary_dim: head_dim / 2,
        final_norm: get_bool(v, "post_layer_norm").unwrap_or(true),
        mpt: None,
        bos_token_id: None,
        eos_token_ids: token_ids(v.get("eos_token_id")),
        opts: Default::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> Value {
        let p = crate::paths::fixtures_dir().join("tiny-models/chatglm3/config.json");
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    }

    #[test]
    fn reads_chatglm3_keys() {
        let c = ModelConfig::from_hf_value(&fixture(), "config.json").unwrap();
        assert_eq!(c.arch, Arch::ChatGlm);
        assert_eq!((c.num_heads, c.num_kv_heads, c.head_dim), (4, 2, 16));
        assert_eq!((c.vocab_size, c.max_position_embeddings), (512, 256));
        assert_eq!(
            (c.rotary_dim, c.intermediate_size, c.num_layers),
            (8, 128, 2)
        );
        assert!(c.qkv_bias && c.rope_interleaved && c.final_norm);
        assert_eq!(c.eos_token_ids, vec![2]);
    }

    #[test]
    fn rotary_frequencies_match_the_reference_buffer() {
        // golden.json "position_encoding.rope_inv_freq" (the model's own inv_freq buffer).
        let c = ModelConfig::from_hf_value(&fixture(), "config.json").unwrap();
        let want = [1.0f32, 0.1, 0.01, 0.001];
        let got = c.rope_inv_freq();
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() <= 1e-6 * w, "{g} vs {w}");
        }
    }

    #[test]
    fn unsupported_variants_are_named() {
        let mut v = fixture();
        v["rmsnorm"] = false.into();
        let e = ModelConfig::from_hf_value(&v, "cfg.json")
            .unwrap_err()
            .to_string();
        assert!(e.contains("rmsnorm") && e.contains("cfg.json"), "{e}");
        let mut v = fixture();
        v["multi_query_group_num"] = 3.into();
        assert!(ModelConfig::from_hf_value(&v, "cfg.json").is_err());
    }
}
