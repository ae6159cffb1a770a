//! Normalised decoder configuration, read from a Hugging Face `config.json` (both the
//! transformers-5 `rope_parameters` keys and the legacy `rope_theta`/`rope_scaling` keys)
//! or from GGUF metadata.

use serde_json::Value;

use super::kv_cache::KvType;
use super::options::{self, ArchOptions};
use super::rope::rope_scaling_of;
pub use super::rope::{Llama3RopeScaling, LongRopeScaling, RopeScaling};
pub use super::validate::KeyStyle;
use super::ModelError;

/// Default cap on the allocated context when `--ctx` is not given.
pub const DEFAULT_MAX_CONTEXT: usize = 8192;

/// Decoder architectures callm implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// Llama 1/2/3.x, CodeLlama, DeepSeek(-Coder), SmolLM.
    Llama,
    /// Mistral (Llama layout, optional sliding window).
    Mistral,
    /// Qwen2 / Qwen2.5 (q/k/v biases).
    Qwen2,
    /// Qwen3 dense (per-head q/k RMSNorm before rope, no biases).
    Qwen3,
    /// Qwen3-MoE (Qwen3 attention, routed SwiGLU experts).
    Qwen3Moe,
    /// Gemma 3 text (sandwich norms, `1 + w` norms, interleaved sliding-window layers, GeGLU).
    Gemma3,
    /// Phi-3 / Phi-4-mini (fused q/k/v and gate/up, partial rotary).
    Phi3,
    /// Granite 3.x (embedding, attention, residual and logit multipliers).
    Granite,
    /// SmolLM3 (layers without rope).
    SmolLm3,
    /// ChatGLM2/3 (fused q/k/v with bias, MQA groups, rotary on half of each head).
    ChatGlm,
    /// MPT (replit-code, Glaive function-calling): LayerNorm, ALiBi, GELU MLP.
    Mpt,
}

/// The architecture names callm loads, for error messages.
pub const SUPPORTED_ARCHS: &str =
    "llama, mistral, qwen2, qwen3, qwen3_moe, gemma3, phi3, granite, smollm3, chatglm, mpt";

impl Arch {
    /// Parses an architecture name (`model_type`, a class in `architectures`, GGUF
    /// `general.architecture`).
    pub fn from_name(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "llama" | "llamaforcausallm" | "codellama" | "deepseek" | "smollm" => Some(Arch::Llama),
            "mistral" | "mistralforcausallm" => Some(Arch::Mistral),
            "qwen2" | "qwen2forcausallm" => Some(Arch::Qwen2),
            "qwen3" | "qwen3forcausallm" => Some(Arch::Qwen3),
            "qwen3_moe" | "qwen3moe" | "qwen3moeforcausallm" => Some(Arch::Qwen3Moe),
            "gemma3" | "gemma3_text" | "gemma3forcausallm" => Some(Arch::Gemma3),
            "phi3" | "phi3forcausallm" => Some(Arch::Phi3),
            "granite" | "graniteforcausallm" => Some(Arch::Granite),
            "smollm3" | "smollm3forcausallm" => Some(Arch::SmolLm3),
            "chatglm" | "chatglmmodel" | "chatglmforconditionalgeneration" => Some(Arch::ChatGlm),
            "mpt" | "mptforcausallm" => Some(Arch::Mpt),
            _ => None,
        }
    }

    /// The registry's name for this architecture.
    pub fn name(&self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Mistral => "mistral",
            Arch::Qwen2 => "qwen2",
            Arch::Qwen3 => "qwen3",
            Arch::Qwen3Moe => "qwen3_moe",
            Arch::Gemma3 => "gemma3",
            Arch::Phi3 => "phi3",
            Arch::Granite => "granite",
            Arch::SmolLm3 => "smollm3",
            Arch::ChatGlm => "chatglm",
            Arch::Mpt => "mpt",
        }
    }
}

/// Everything the decoder needs to know about a checkpoint's shape.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// The architecture.
    pub arch: Arch,
    /// Model width.
    pub hidden_size: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// Number of decoder layers.
    pub num_layers: usize,
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads (GQA).
    pub num_kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// Vocabulary size (rows of the embedding).
    pub vocab_size: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// Rotary base.
    pub rope_theta: f64,
    /// Rotary scaling.
    pub rope_scaling: RopeScaling,
    /// Longest context the model supports (declared).
    pub max_position_embeddings: usize,
    /// Positions allocated: rope tables and caches hold this many (`--ctx`; by default the
    /// declared context up to [`DEFAULT_MAX_CONTEXT`]). Set with [`ModelConfig::set_context`].
    pub context: usize,
    /// The type of the KV cache in the CPU kernel's layouts (`--kv-cache-type`); `None`: f16
    /// for quantized weights, f32 for float ones ([`KvType::choose`]).
    pub kv_cache: Option<KvType>,
    /// Which file's key names errors about this configuration use.
    pub keys: KeyStyle,
    /// Output projection shares the embedding matrix.
    pub tie_word_embeddings: bool,
    /// q/k/v projections carry biases.
    pub qkv_bias: bool,
    /// Sliding attention window (Mistral v0.1), if any.
    pub sliding_window: Option<usize>,
    /// Rotary uses interleaved (even, odd) pairs instead of rotate-half (GGUF llama layout).
    pub rope_interleaved: bool,
    /// Leading dimensions of each head that rotary encoding applies to (`head_dim` for most
    /// models; half of it for ChatGLM). The rest pass through unchanged.
    pub rotary_dim: usize,
    /// Whether a norm is applied after the last layer (ChatGLM's `post_layer_norm` may be off).
    pub final_norm: bool,
    /// MPT-only settings (ALiBi, clipping, biases); `None` for other architectures.
    pub mpt: Option<super::mpt::MptSettings>,
    /// Beginning-of-sequence token id.
    pub bos_token_id: Option<u32>,
    /// End-of-sequence token ids.
    pub eos_token_ids: Vec<u32>,
    /// What the decoder does beyond the Llama layout (norms, multipliers, per-layer
    /// windows and rope, experts).
    pub opts: ArchOptions,
}

/// An unsigned integer field of a JSON object.
pub(crate) fn get_usize(v: &Value, key: &str) -> Option<usize> {
    v.get(key).and_then(Value::as_u64).map(|x| x as usize)
}

pub(crate) fn get_f64(v: &Value, key: &str) -> Option<f64> {
    v.get(key).and_then(Value::as_f64)
}

/// Reads token ids given as a number or a list of numbers.
pub fn token_ids(v: Option<&Value>) -> Vec<u32> {
    match v {
        Some(Value::Number(n)) => n.as_u64().map(|x| vec![x as u32]).unwrap_or_default(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_u64)
            .map(|x| x as u32)
            .collect(),
        _ => vec![],
    }
}

impl ModelConfig {
    /// Parses a Hugging Face `config.json`; `origin` names the file in errors.
    pub fn from_hf_json(text: &str, origin: &str) -> Result<Self, ModelError> {
        let v: Value = serde_json::from_str(text).map_err(|e| ModelError::Config {
            file: origin.to_string(),
            msg: format!("not valid JSON: {e}"),
        })?;
        Self::from_hf_value(&v, origin)
    }

    /// Parses an already-decoded `config.json`; every value is checked
    /// ([`super::validate::config`]) and the context set to its default.
    pub fn from_hf_value(v: &Value, origin: &str) -> Result<Self, ModelError> {
        let err = |msg: String| ModelError::Config {
            file: origin.to_string(),
            msg,
        };
        let cfg = match v.get("model_type").and_then(Value::as_str) {
            Some("chatglm") => super::chatglm::config_from_hf(v, origin)?,
            Some("mpt") => super::mpt::config_from_hf(v, origin)?,
            _ => Self::from_hf_llama(v, origin)?,
        };
        cfg.finish().map_err(err)
    }

    /// Sets the default context and checks every value.
    pub(crate) fn finish(mut self) -> Result<Self, String> {
        self.context = self.max_position_embeddings.min(DEFAULT_MAX_CONTEXT);
        super::validate::config(&self)?;
        Ok(self)
    }

    /// Sets the positions to allocate (`--ctx`); `None` keeps the default (the declared
    /// context up to [`DEFAULT_MAX_CONTEXT`]). Out of `1..=max_position_embeddings`, or a key/value
    /// cache whose size overflows, is an error.
    pub fn set_context(&mut self, context: Option<usize>) -> Result<(), String> {
        let Some(n) = context else { return Ok(()) };
        if n == 0 || n > self.max_position_embeddings {
            return Err(format!(
                "--ctx {n} is out of range: this model supports 1..={}",
                self.max_position_embeddings
            ));
        }
        let per_position = self.num_layers * 2 * self.num_kv_heads * self.head_dim;
        if per_position
            .checked_mul(n)
            .and_then(|x| x.checked_mul(4))
            .is_none()
        {
            return Err(format!(
                "--ctx {n}: the key/value cache would not fit in memory"
            ));
        }
        self.context = n;
        Ok(())
    }

    /// The Llama-layout architectures' `config.json`.
    fn from_hf_llama(v: &Value, origin: &str) -> Result<Self, ModelError> {
        let err = |msg: String| ModelError::Config {
            file: origin.to_string(),
            msg,
        };
        let need = |key: &str| {
            get_usize(v, key).ok_or_else(|| err(format!("missing or non-integer \"{key}\"")))
        };
        let model_type = v.get("model_type").and_then(Value::as_str).unwrap_or("");
        let from_archs = v
            .get("architectures")
            .and_then(Value::as_array)
            .and_then(|a| a.iter().filter_map(Value::as_str).find_map(Arch::from_name));
        let arch = Arch::from_name(model_type).or(from_archs).ok_or_else(|| {
            err(format!(
                "unsupported architecture (model_type \"{model_type}\"); supported: {SUPPORTED_ARCHS}"
            ))
        })?;
        let hidden_size = need("hidden_size")?;
        let num_heads = need("num_attention_heads")?;
        if num_heads == 0 || hidden_size % num_heads != 0 && get_usize(v, "head_dim").is_none() {
            return Err(err(format!(
                "hidden_size {hidden_size} is not divisible by num_attention_heads {num_heads}"
            )));
        }
        let num_kv_heads = get_usize(v, "num_key_value_heads").unwrap_or(num_heads);
        if num_kv_heads == 0 || num_heads % num_kv_heads != 0 {
            return Err(err(format!("num_attention_heads {num_heads} is not a multiple of num_key_value_heads {num_kv_heads}")));
        }
        // Rope: transformers 5 nests theta and scaling in `rope_parameters` (Gemma 3: one set
        // per layer type, the global one under "full_attention"); Hub checkpoints use top-level
        // `rope_theta` and `rope_scaling`.
        let params = v.get("rope_parameters").filter(|p| p.is_object());
        let params = params.map(|p| p.get("full_attention").unwrap_or(p));
        let scaling = params.or_else(|| v.get("rope_scaling").filter(|p| p.is_object()));
        let default_theta = match arch {
            Arch::Qwen2 | Arch::Qwen3 | Arch::Qwen3Moe | Arch::Mistral | Arch::Gemma3 => 1e6,
            _ => 1e4,
        };
        let rope_theta = params
            .and_then(|p| get_f64(p, "rope_theta"))
            .or_else(|| get_f64(v, "rope_theta"))
            .unwrap_or(default_theta);
        let max_position_embeddings = get_usize(v, "max_position_embeddings").unwrap_or(4096);
        let rope_scaling = match scaling {
            None => RopeScaling::None,
            Some(s) => rope_scaling_of(v, s, max_position_embeddings).map_err(err)?,
        };
        let sliding_window = match v.get("use_sliding_window").and_then(Value::as_bool) {
            Some(false) => None,
            _ => get_usize(v, "sliding_window"),
        };
        // Checked before anything is sized by it (per-layer option lists).
        let num_layers = super::validate::count(
            "num_hidden_layers",
            need("num_hidden_layers")?,
            1,
            super::validate::MAX_LAYERS,
        )
        .map_err(err)?;
        let head_dim = get_usize(v, "head_dim").unwrap_or(match arch {
            Arch::Gemma3 => 256,
            _ => hidden_size / num_heads,
        });
        // Phi-3: rope on the first `partial_rotary_factor` of each head.
        let partial = params
            .and_then(|p| get_f64(p, "partial_rotary_factor"))
            .or_else(|| get_f64(v, "partial_rotary_factor"))
            .unwrap_or(1.0);
        let rotary_dim = (head_dim as f64 * partial).round() as usize;
        if rotary_dim == 0 || rotary_dim > head_dim || !rotary_dim.is_multiple_of(2) {
            return Err(err(format!(
                "partial_rotary_factor {partial} gives {rotary_dim} rotary dimensions of {head_dim}"
            )));
        }
        let opts = options::from_hf(v, arch, num_layers, hidden_size).map_err(err)?;
        Ok(ModelConfig {
            arch,
            hidden_size,
            intermediate_size: need("intermediate_size")?,
            num_layers,
            num_heads,
            num_kv_heads,
            head_dim,
            vocab_size: need("vocab_size")?,
            rms_norm_eps: get_f64(v, "rms_norm_eps").unwrap_or(1e-6),
            rope_theta,
            rope_scaling,
            max_position_embeddings,
            context: 0,
            kv_cache: None,
            keys: KeyStyle::ConfigJson,
            tie_word_embeddings: v
                .get("tie_word_embeddings")
                .and_then(Value::as_bool)
                .unwrap_or(arch == Arch::Gemma3),
            qkv_bias: arch == Arch::Qwen2
                || v.get("attention_bias")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
            sliding_window,
            rope_interleaved: false,
            rotary_dim,
            final_norm: true,
            mpt: None,
            bos_token_id: v
                .get("bos_token_id")
                .and_then(Value::as_u64)
                .map(|x| x as u32),
            eos_token_ids: token_ids(v.get("eos_token_id")),
            opts,
        })
    }

    /// Keys a layer sees at most, itself included (`usize::MAX`: no window).
    pub fn layer_window(&self, layer: usize) -> usize {
        match self.sliding_window {
            Some(w) if w > 0 && self.opts.is_sliding(layer) => w,
            _ => usize::MAX,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture_config(arch: &str, file: &str) -> ModelConfig {
        let dir = crate::paths::fixtures_dir().join("tiny-models").join(arch);
        ModelConfig::from_hf_json(&std::fs::read_to_string(dir.join(file)).unwrap(), file).unwrap()
    }

    #[test]
    fn both_key_styles_agree() {
        let a = fixture_config("llama3", "config.json");
        assert_eq!(a, fixture_config("llama3", "config_legacy.json"));
        assert_eq!(a.rope_theta, 5e5);
        assert!(matches!(a.rope_scaling, RopeScaling::Llama3(_)));
        // The newer architectures: per-layer types, expert counts, partial rotary and the
        // multipliers sit under different keys in the two files.
        for arch in ["qwen3", "qwen3_moe", "gemma3", "phi3", "granite", "smollm3"] {
            let a = fixture_config(arch, "config.json");
            assert_eq!(a, fixture_config(arch, "config_legacy.json"), "{arch}");
        }
    }

    #[test]
    fn new_arch_settings_read_from_config() {
        // The fixture README's table of settings that matter.
        let g = fixture_config("gemma3", "config.json");
        assert_eq!((g.rope_theta, g.opts.local_rope_theta), (1e6, Some(1e4)));
        assert_eq!((g.layer_window(0), g.layer_window(1)), (16, usize::MAX));
        assert_eq!(g.opts.embedding_scale, Some(8.0));
        assert_eq!(g.opts.attention_scale, Some(0.25));
        assert!(g.tie_word_embeddings && g.opts.sandwich_norms && g.opts.qk_norm);
        let m = fixture_config("qwen3_moe", "config.json");
        let moe = m.opts.moe.unwrap();
        assert_eq!(
            (moe.num_experts, moe.top_k, moe.expert_intermediate_size),
            (4, 2, 64)
        );
        assert!(moe.norm_topk_prob);
        let p = fixture_config("phi3", "config.json");
        assert_eq!(p.rotary_dim, 12);
        let s = fixture_config("smollm3", "config.json");
        assert!(s.opts.uses_rope(0) && !s.opts.uses_rope(1));
        let r = fixture_config("granite", "config.json");
        assert_eq!(
            (
                r.opts.embedding_scale,
                r.opts.residual_scale,
                r.opts.logits_divisor
            ),
            (Some(12.0), Some(0.22), Some(8.0))
        );
        assert_eq!(r.opts.attention_scale, Some(0.0625));
    }

    fn golden_freqs(arch: &str, key: &str) -> Vec<f64> {
        let dir = crate::paths::fixtures_dir().join("tiny-models").join(arch);
        let golden: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("golden.json")).unwrap())
                .unwrap();
        golden["position_encoding"][key]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    }

    fn assert_freqs(got: &[f32], want: &[f64]) {
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            assert!(
                ((*g as f64) - w).abs() <= 1e-6 * w.abs().max(1e-6),
                "{g} vs {w}"
            );
        }
    }

    #[test]
    fn partial_and_local_rope_frequencies_match_transformers() {
        let p = fixture_config("phi3", "config_legacy.json");
        assert_freqs(&p.rope_inv_freq(), &golden_freqs("phi3", "rope_inv_freq"));
        let g = fixture_config("gemma3", "config_legacy.json");
        assert_freqs(&g.rope_inv_freq(), &golden_freqs("gemma3", "rope_inv_freq"));
        let local = g.local_rope_inv_freq().unwrap();
        assert_freqs(&local, &golden_freqs("gemma3", "rope_inv_freq_local"));
    }

    #[test]
    fn llama3_inv_freq_matches_transformers() {
        // golden.json "position_encoding.rope_inv_freq", computed by transformers.
        let c = fixture_config("llama3", "config.json");
        assert_freqs(&c.rope_inv_freq(), &golden_freqs("llama3", "rope_inv_freq"));
    }

    #[test]
    fn bad_configs_are_errors() {
        assert!(ModelConfig::from_hf_json("{", "x").is_err());
        assert!(ModelConfig::from_hf_json(r#"{"model_type":"gpt2"}"#, "x")
            .unwrap_err()
            .to_string()
            .contains("unsupported"));
        let e = ModelConfig::from_hf_json(r#"{"model_type":"llama","hidden_size":64}"#, "cfg.json")
            .unwrap_err();
        assert!(
            e.to_string().contains("cfg.json") && e.to_string().contains("num_attention_heads"),
            "{e}"
        );
    }
}
