//! Reading a decoder configuration and weights from a GGUF file.

use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::{DType, Device};

use super::config::{Arch, KeyStyle, LongRopeScaling, ModelConfig, RopeScaling, SUPPORTED_ARCHS};
use super::mpt::MptSettings;
use super::weights::GgufSource;
use super::{gguf_arch, validate};
use super::{LanguageModel, ModelError};
use crate::gguf_header;

/// An opened GGUF file: its header, checked and read, ready to load weights from.
pub struct GgufFile {
    src: GgufSource,
    path: PathBuf,
}

impl GgufFile {
    /// Opens `path` and reads its header; a missing, truncated, corrupt or non-GGUF file is an
    /// error naming the file (and the key or tensor at fault).
    pub fn open(path: &Path, device: &Device) -> Result<Self, ModelError> {
        let err = |msg: String| ModelError::Weights {
            file: path.display().to_string(),
            msg,
        };
        let mut file = std::fs::File::open(path).map_err(|e| err(format!("cannot open: {e}")))?;
        // Checked before candle reads it: candle trusts the alignment, shapes and offsets.
        let facts = gguf_header::check(&mut file)
            .map_err(|e| err(format!("not a valid GGUF file: {e}")))?;
        if let Some((tensor, id)) = facts.unsupported {
            let kind = gguf_header::unsupported_type_name(id)
                .map_or(format!("GGUF type {id}, unknown to ggml"), |n| {
                    format!("{n} (GGUF type {id})")
                });
            return Err(err(format!(
                "tensor {tensor} is stored as {kind}, which callm cannot load. callm loads F32, \
                 F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K to Q6_K, IQ4_NL and IQ4_XS: use \
                 a file quantized to one of those (Q4_K_M is the usual choice, IQ4_XS a smaller \
                 one; the IQ1, IQ2 and IQ3 kinds are not supported yet)"
            )));
        }
        let content = gguf_header::read_content(&mut file, &facts)
            .map_err(|e| err(format!("not a valid GGUF file: {e}")))?;
        let callm_only = facts
            .callm_only
            .into_iter()
            .map(|t| (t.name, t.kind))
            .collect();
        Ok(GgufFile {
            src: GgufSource::new(content, file, path, device).with_callm_only(callm_only),
            path: path.to_path_buf(),
        })
    }

    /// The GGUF header. A tensor in a block type candle does not know (IQ4_NL, IQ4_XS) is
    /// listed under a stand-in type: [`GgufFile::tensor_kind`] gives its true one.
    pub fn content(&self) -> &gguf_file::Content {
        self.src.content()
    }

    /// The block type of a tensor that only callm's kernels read (IQ4_NL, IQ4_XS); `None` for
    /// the others (their type is the one `content()` lists) and for a missing tensor.
    pub fn tensor_kind(&self, name: &str) -> Option<callm_kernels::BlockKind> {
        self.src.callm_only_kind(name)
    }

    /// A metadata string, if present.
    pub fn meta_str(&self, key: &str) -> Option<&str> {
        self.content()
            .metadata
            .get(key)
            .and_then(|v| v.to_string().ok())
            .map(|s| s.as_str())
    }

    /// The decoder configuration the metadata and tensors describe, every value checked
    /// (errors name the key and its value; the tensors are checked against it when the model
    /// loads); the context is the default one ([`ModelConfig::set_context`] changes it).
    pub fn config(&self) -> Result<ModelConfig, ModelError> {
        let origin = self.path.display().to_string();
        let err = |msg: String| ModelError::Config {
            file: origin.clone(),
            msg,
        };
        let mut cfg = config_from_gguf(self.content(), &origin)?;
        let half = cfg.rotary_dim / 2;
        if self.src.contains_name("rope_freqs.weight") {
            cfg.rope_scaling =
                RopeScaling::Factors(self.src.vector_f32("rope_freqs.weight", half)?);
        }
        if let Some(s) = self.longrope(&cfg, half)? {
            cfg.rope_scaling = RopeScaling::LongRope(s);
        }
        let qkv_bias = ["blk.0.attn_q.bias", "blk.0.attn_qkv.bias"];
        cfg.qkv_bias = qkv_bias.iter().any(|n| self.src.contains_name(n));
        cfg.tie_word_embeddings = !self.src.contains_name("output.weight");
        cfg.finish().map_err(err)
    }

    /// Phi-3's "longrope" as llama.cpp writes it: `rope_factors_short`/`rope_factors_long`
    /// tensors, `rope.scaling.original_context_length` (default: the context length) and
    /// `rope.scaling.attn_factor` (default: transformers' formula from the two lengths).
    fn longrope(
        &self,
        cfg: &ModelConfig,
        half: usize,
    ) -> Result<Option<LongRopeScaling>, ModelError> {
        let (short, long) = ("rope_factors_short.weight", "rope_factors_long.weight");
        if !self.src.contains_name(short) && !self.src.contains_name(long) {
            return Ok(None);
        }
        let c = self.content();
        let KeyStyle::Gguf(prefix) = &cfg.keys else {
            return Ok(None);
        };
        let origin = self.path.display().to_string();
        let err = |msg: String| ModelError::Config {
            file: origin.clone(),
            msg,
        };
        let key = |k: &str| format!("{prefix}.rope.scaling.{k}");
        let original = md_usize(c, &key("original_context_length"))
            .map_err(err)?
            .unwrap_or(cfg.max_position_embeddings);
        if original == 0 {
            return Err(err(format!("{} = 0", key("original_context_length"))));
        }
        let attention_factor = match md_f64(c, &key("attn_factor")).map_err(err)? {
            Some(f) => f,
            None => LongRopeScaling::default_attention_factor(
                cfg.max_position_embeddings as f64 / original as f64,
                original,
            ),
        };
        Ok(Some(LongRopeScaling {
            short_factor: self.src.vector_f32(short, half)?,
            long_factor: self.src.vector_f32(long, half)?,
            original_max_position_embeddings: original,
            attention_factor,
        }))
    }

    /// Loads the model with the default context (quantized weights stay quantized;
    /// activations in f32 on CPU).
    pub fn load_decoder(self, device: &Device) -> Result<Box<dyn LanguageModel>, ModelError> {
        let cfg = self.config()?;
        self.load_with(cfg, device)
    }

    /// Reports the weights' bytes read to `progress` while [`GgufFile::load_with`] loads.
    pub fn with_progress(mut self, progress: Option<super::weights::LoadProgress>) -> Self {
        self.src.set_progress(progress);
        self
    }

    /// Loads the model with `cfg` (from [`GgufFile::config`], its context possibly changed).
    pub fn load_with(
        mut self,
        cfg: ModelConfig,
        device: &Device,
    ) -> Result<Box<dyn LanguageModel>, ModelError> {
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

/// A metadata integer; another type, or a negative value, is an error naming the key.
pub(super) fn md_usize(c: &gguf_file::Content, key: &str) -> Result<Option<usize>, String> {
    let Some(v) = md(c, key) else { return Ok(None) };
    let n: i128 = match v {
        Value::U8(x) => (*x).into(),
        Value::I8(x) => (*x).into(),
        Value::U16(x) => (*x).into(),
        Value::I16(x) => (*x).into(),
        Value::U32(x) => (*x).into(),
        Value::I32(x) => (*x).into(),
        Value::U64(x) => (*x).into(),
        Value::I64(x) => (*x).into(),
        other => {
            return Err(format!(
                "{key} is a {:?}, not an integer",
                other.value_type()
            ))
        }
    };
    usize::try_from(n)
        .map(Some)
        .map_err(|_| format!("{key} = {n}: must not be negative"))
}

/// A metadata number; another type, NaN or an infinity is an error naming the key.
pub(super) fn md_f64(c: &gguf_file::Content, key: &str) -> Result<Option<f64>, String> {
    let Some(v) = md(c, key) else { return Ok(None) };
    let x = match v {
        Value::F32(x) => f64::from(*x),
        Value::F64(x) => *x,
        other => match md_usize(c, key) {
            Ok(Some(n)) => n as f64,
            _ => return Err(format!("{key} is a {:?}, not a number", other.value_type())),
        },
    };
    if !x.is_finite() {
        return Err(format!("{key} = {x}: not a finite number"));
    }
    Ok(Some(x))
}

/// Builds a [`ModelConfig`] from GGUF metadata (llama.cpp key names); values are typed and
/// the layer count bounded here, the rest checked by [`ModelConfig::finish`].
fn config_from_gguf(c: &gguf_file::Content, origin: &str) -> Result<ModelConfig, ModelError> {
    let err = |msg: String| ModelError::Config {
        file: origin.to_string(),
        msg,
    };
    let arch_name = md(c, "general.architecture")
        .and_then(|v| v.to_string().ok())
        .ok_or_else(|| err("GGUF metadata has no general.architecture string".into()))?
        .clone();
    let arch = Arch::from_name(&arch_name).ok_or_else(|| {
        err(format!(
            "unsupported GGUF architecture \"{arch_name}\"; supported: {SUPPORTED_ARCHS}"
        ))
    })?;
    let key = |k: &str| format!("{arch_name}.{k}");
    let int = |k: &str| md_usize(c, &key(k)).map_err(err);
    let float = |k: &str| md_f64(c, &key(k)).map_err(err);
    let need = |k: &str| int(k)?.ok_or_else(|| err(format!("GGUF metadata misses {}", key(k))));
    let hidden_size = need("embedding_length")?;
    let num_heads = need("attention.head_count")?;
    if num_heads == 0 {
        return Err(err(format!("{} = 0", key("attention.head_count"))));
    }
    let num_kv_heads = int("attention.head_count_kv")?.unwrap_or(num_heads);
    let head_dim = int("attention.key_length")?.unwrap_or(hidden_size / num_heads);
    let vocab_size = c
        .tensor_infos
        .get("token_embd.weight")
        .and_then(|t| t.shape.dims().first().copied())
        .ok_or_else(|| err("GGUF file has no token_embd.weight".into()))?;
    let rope_theta = float("rope.freq_base")?.unwrap_or(match arch {
        Arch::Qwen2 | Arch::Qwen3 | Arch::Qwen3Moe | Arch::Gemma3 => 1e6,
        _ => 1e4,
    });
    let scaling_type = md(c, &key("rope.scaling.type")).and_then(|v| v.to_string().ok());
    let rope_scaling = match (scaling_type, float("rope.scaling.factor")?) {
        (Some(t), Some(f)) if t == "linear" => RopeScaling::Linear(f),
        _ => RopeScaling::None,
    };
    let has = |name: &str| c.tensor_infos.contains_key(name);
    let eps = match arch {
        Arch::Mpt => float("attention.layer_norm_epsilon")?,
        _ => float("attention.layer_norm_rms_epsilon")?,
    };
    let mpt = match arch {
        Arch::Mpt => Some(MptSettings {
            alibi_bias_max: float("attention.max_alibi_bias")?.filter(|&m| m > 0.0),
            clip_qkv: float("attention.clamp_kqv")?.filter(|&m| m > 0.0),
            softmax_scale: None,
            logit_scale: None,
            learned_pos_emb: has("position_embd.weight"),
            bias: has("blk.0.attn_qkv.bias"),
        }),
        _ => None,
    };
    let rotary_dim = match arch {
        Arch::Mpt => 0,
        Arch::ChatGlm => int("rope.dimension_count")?.unwrap_or(head_dim / 2),
        _ => int("rope.dimension_count")?.unwrap_or(head_dim),
    };
    let token_id = |k: &str| -> Result<Option<u32>, ModelError> {
        md_usize(c, k)
            .map_err(err)?
            .map(|x| u32::try_from(x).map_err(|_| err(format!("{k} = {x}: not a token id"))))
            .transpose()
    };
    let eos = token_id("tokenizer.ggml.eos_token_id")?;
    // Checked before anything is sized by it (per-layer option lists).
    let num_layers = validate::count(
        &key("block_count"),
        need("block_count")?,
        1,
        validate::MAX_LAYERS,
    )
    .map_err(err)?;
    let dims = gguf_arch::Dims {
        num_layers,
        hidden_size,
        num_heads,
    };
    let opts = gguf_arch::options(c, arch, &arch_name, &dims).map_err(err)?;
    // A mixture-of-experts file may have no dense MLP at all.
    let intermediate_size = match (&opts.moe, int("feed_forward_length")?) {
        (_, Some(ff)) => ff,
        (Some(_), None) => 0,
        (None, None) => need("feed_forward_length")?,
    };
    let sliding_window = match arch {
        Arch::Gemma3 | Arch::Phi3 => int("attention.sliding_window")?.filter(|&w| w > 0),
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
        max_position_embeddings: int("context_length")?.unwrap_or(4096),
        context: 0,
        kv_cache: None,
        keys: KeyStyle::Gguf(arch_name.clone()),
        tie_word_embeddings: false,
        qkv_bias: false,
        sliding_window,
        rope_interleaved: gguf_arch::rope_interleaved(arch),
        rotary_dim,
        final_norm: true,
        mpt,
        bos_token_id: token_id("tokenizer.ggml.bos_token_id")?,
        eos_token_ids: eos.into_iter().collect(),
        opts,
    })
}
