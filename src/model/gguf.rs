//! Reading a decoder configuration and weights from a GGUF file.

use std::path::Path;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::{DType, Device};

use super::config::{Arch, ModelConfig, RopeScaling, SUPPORTED_ARCHS};
use super::gguf_arch;
use super::mpt::MptSettings;
use super::weights::GgufSource;
use super::{LanguageModel, ModelError};

/// An opened GGUF file: its header, ready to load weights from.
pub struct GgufFile {
    src: GgufSource,
}

impl GgufFile {
    /// Opens `path` and reads its header; a missing, truncated or non-GGUF file is an error
    /// naming the file.
    pub fn open(path: &Path, device: &Device) -> Result<Self, ModelError> {
        let err = |msg: String| ModelError::Weights {
            file: path.display().to_string(),
            msg,
        };
        let mut file = std::fs::File::open(path).map_err(|e| err(format!("cannot open: {e}")))?;
        let content = gguf_file::Content::read(&mut file)
            .map_err(|e| err(format!("not a valid GGUF file: {e}")))?;
        let len = file.metadata().map_err(|e| err(e.to_string()))?.len();
        // Every tensor must lie inside the file: catches truncated downloads up front.
        let mut end = 0u64;
        for info in content.tensor_infos.values() {
            let elems = info.shape.elem_count() as u64;
            let bytes =
                elems / info.ggml_dtype.block_size() as u64 * info.ggml_dtype.type_size() as u64;
            end = end.max(content.tensor_data_offset + info.offset + bytes);
        }
        if end > len {
            return Err(err(format!(
                "file is truncated: {len} bytes, its tensors need {end} bytes"
            )));
        }
        Ok(GgufFile {
            src: GgufSource::new(content, file, path, device),
        })
    }

    /// The GGUF header.
    pub fn content(&self) -> &gguf_file::Content {
        self.src.content()
    }

    /// A metadata string, if present.
    pub fn meta_str(&self, key: &str) -> Option<&str> {
        self.content()
            .metadata
            .get(key)
            .and_then(|v| v.to_string().ok())
            .map(|s| s.as_str())
    }

    /// The decoder configuration the metadata describes.
    pub fn config(&self) -> Result<ModelConfig, ModelError> {
        config_from_gguf(self.content(), &self.src_path())
    }

    fn src_path(&self) -> String {
        self.meta_str("general.name").unwrap_or("gguf").to_string()
    }

    /// Loads the model (quantized weights stay quantized; activations in f32 on CPU).
    pub fn load_decoder(mut self, device: &Device) -> Result<Box<dyn LanguageModel>, ModelError> {
        let mut cfg = self.config()?;
        if self.src.contains_name("rope_freqs.weight") {
            let half = cfg.rotary_dim / 2;
            let t = self.src.qtensor("rope_freqs.weight", &[half])?;
            let factors = t
                .dequantize(&Device::Cpu)
                .and_then(|t| t.to_vec1::<f32>())
                .map_err(ModelError::Candle)?;
            cfg.rope_scaling = RopeScaling::Factors(factors);
        }
        let qkv_bias = ["blk.0.attn_q.bias", "blk.0.attn_qkv.bias"];
        cfg.qkv_bias = qkv_bias.iter().any(|n| self.src.contains_name(n));
        cfg.tie_word_embeddings = !self.src.contains_name("output.weight");
        let dtype = if device.is_cpu() {
            DType::F32
        } else {
            DType::F16
        };
        super::load_model(cfg, &mut self.src, dtype, device)
    }
}

impl GgufSource {
    /// Whether a tensor of that GGUF name exists.
    pub fn contains_name(&self, name: &str) -> bool {
        self.content().tensor_infos.contains_key(name)
    }
}

/// A metadata value.
pub(super) fn md<'a>(c: &'a gguf_file::Content, key: &str) -> Option<&'a Value> {
    c.metadata.get(key)
}

/// A metadata integer.
pub(super) fn md_usize(c: &gguf_file::Content, key: &str) -> Option<usize> {
    let v = md(c, key)?;
    v.to_u32()
        .map(|x| x as usize)
        .or_else(|_| v.to_u64().map(|x| x as usize))
        .or_else(|_| v.to_i32().map(|x| x as usize))
        .ok()
}

/// A metadata number.
pub(super) fn md_f64(c: &gguf_file::Content, key: &str) -> Option<f64> {
    let v = md(c, key)?;
    v.to_f32().map(|x| x as f64).or_else(|_| v.to_f64()).ok()
}

/// Builds a [`ModelConfig`] from GGUF metadata (llama.cpp key names).
pub fn config_from_gguf(c: &gguf_file::Content, origin: &str) -> Result<ModelConfig, ModelError> {
    let err = |msg: String| ModelError::Config {
        file: origin.to_string(),
        msg,
    };
    let arch_name = md(c, "general.architecture")
        .and_then(|v| v.to_string().ok())
        .ok_or_else(|| err("GGUF metadata has no general.architecture".into()))?
        .clone();
    let arch = Arch::from_name(&arch_name).ok_or_else(|| {
        err(format!(
            "unsupported GGUF architecture \"{arch_name}\"; supported: {SUPPORTED_ARCHS}"
        ))
    })?;
    let key = |k: &str| format!("{arch_name}.{k}");
    let need = |k: &str| {
        md_usize(c, &key(k)).ok_or_else(|| err(format!("GGUF metadata misses {}", key(k))))
    };
    let hidden_size = need("embedding_length")?;
    let num_heads = need("attention.head_count")?;
    let num_kv_heads = md_usize(c, &key("attention.head_count_kv")).unwrap_or(num_heads);
    if num_heads == 0 || num_kv_heads == 0 || num_heads % num_kv_heads != 0 {
        return Err(err(format!(
            "bad head counts: {num_heads} heads, {num_kv_heads} kv heads"
        )));
    }
    let head_dim = md_usize(c, &key("attention.key_length")).unwrap_or(hidden_size / num_heads);
    let vocab_size = c
        .tensor_infos
        .get("token_embd.weight")
        .map(|t| t.shape.dims()[0])
        .ok_or_else(|| err("GGUF file has no token_embd.weight".into()))?;
    let rope_theta = md_f64(c, &key("rope.freq_base")).unwrap_or(match arch {
        Arch::Qwen2 | Arch::Qwen3 | Arch::Qwen3Moe | Arch::Gemma3 => 1e6,
        _ => 1e4,
    });
    let rope_scaling = match (
        md(c, &key("rope.scaling.type")).and_then(|v| v.to_string().ok()),
        md_f64(c, &key("rope.scaling.factor")),
    ) {
        (Some(t), Some(f)) if t == "linear" => RopeScaling::Linear(f),
        _ => RopeScaling::None,
    };
    let has = |name: &str| c.tensor_infos.contains_key(name);
    let eps = match arch {
        Arch::Mpt => md_f64(c, &key("attention.layer_norm_epsilon")),
        _ => md_f64(c, &key("attention.layer_norm_rms_epsilon")),
    };
    let mpt = (arch == Arch::Mpt).then(|| MptSettings {
        alibi_bias_max: md_f64(c, &key("attention.max_alibi_bias")).filter(|&m| m > 0.0),
        clip_qkv: md_f64(c, &key("attention.clamp_kqv")).filter(|&m| m > 0.0),
        softmax_scale: None,
        logit_scale: None,
        learned_pos_emb: has("position_embd.weight"),
        bias: has("blk.0.attn_qkv.bias"),
    });
    let rotary_dim = match arch {
        Arch::Mpt => 0,
        Arch::ChatGlm => md_usize(c, &key("rope.dimension_count")).unwrap_or(head_dim / 2),
        _ => md_usize(c, &key("rope.dimension_count")).unwrap_or(head_dim),
    };
    let eos = md_usize(c, "tokenizer.ggml.eos_token_id")
        .map(|x| vec![x as u32])
        .unwrap_or_default();
    let num_layers = need("block_count")?;
    let dims = gguf_arch::Dims {
        num_layers,
        hidden_size,
        num_heads,
    };
    let opts = gguf_arch::options(c, arch, &arch_name, &dims).map_err(err)?;
    // A mixture-of-experts file may have no dense MLP at all.
    let intermediate_size = match (&opts.moe, md_usize(c, &key("feed_forward_length"))) {
        (_, Some(ff)) => ff,
        (Some(_), None) => 0,
        (None, None) => need("feed_forward_length")?,
    };
    let sliding_window = match arch {
        Arch::Gemma3 | Arch::Phi3 => {
            md_usize(c, &key("attention.sliding_window")).filter(|&w| w > 0)
        }
        _ => None,
    };
    Ok(ModelConfig {
        arch,
        hidden_size,
        intermediate_size,
        num_layers,
        num_heads,
        num_kv_heads,
        head_dim,
        vocab_size,
        rms_norm_eps: eps.unwrap_or(1e-5),
        rope_theta,
        rope_scaling,
        max_position_embeddings: md_usize(c, &key("context_length")).unwrap_or(4096),
        tie_word_embeddings: false,
        qkv_bias: false,
        sliding_window,
        rope_interleaved: gguf_arch::rope_interleaved(arch),
        rotary_dim,
        final_norm: true,
        mpt,
        bos_token_id: md_usize(c, "tokenizer.ggml.bos_token_id").map(|x| x as u32),
        eos_token_ids: eos,
        opts,
    })
}
