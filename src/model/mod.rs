//! Model architectures and weight loading.
//!
//! One decoder implementation ([`decoder::Decoder`]) covers the Llama family (Llama 3.x,
//! Mistral, Qwen2, DeepSeek/Gorilla, CodeLlama/NexusRaven, SmolLM), ChatGLM2/3 and, through
//! per-architecture options ([`options::ArchOptions`]), Qwen3, Qwen3-MoE, Gemma 3, Phi-3,
//! Granite and SmolLM3; [`mpt::Mpt`] covers MPT (replit-code, Glaive). Both load dense safetensors (or PyTorch `.bin`) and
//! quantized GGUF weights; [`LanguageModel`] is the interface the engine drives and
//! [`load_model`] picks the implementation by [`Arch`].

mod attention;
pub mod batch;
pub mod chatglm;
pub mod config;
pub mod decoder;
pub mod embedding;
pub mod gguf;
mod gguf_arch;
pub mod gguf_source;
pub mod kv_cache;
mod mlp;
pub mod mpt;
pub mod names;
pub mod options;
pub mod rope;
pub mod safetensors;
pub mod validate;
pub mod weights;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

pub use batch::{BatchItem, Logits};
pub use config::{Arch, ModelConfig};
pub use decoder::Decoder;
pub use kv_cache::{KvCache, KvType};

/// Errors loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A configuration file is missing a key or holds a bad value.
    #[error("{file}: {msg}")]
    Config {
        /// The file.
        file: String,
        /// What is wrong.
        msg: String,
    },
    /// A weights file is missing, truncated or holds tensors of the wrong shape.
    #[error("{file}: {msg}")]
    Weights {
        /// The file(s).
        file: String,
        /// What is wrong.
        msg: String,
    },
    /// A tensor operation failed.
    #[error("tensor error: {0}")]
    Candle(#[from] candle_core::Error),
}

/// A causal language model the engine can drive.
///
/// One forward pass takes a batch of sequences ([`BatchItem`]: new tokens and the sequence's
/// own cache); a single sequence is the batch of one ([`LanguageModel::forward`]). On the CPU
/// with f32 activations a sequence's logits are the same bit for bit whatever else shares the
/// pass and however its prompt was split into passes (see [`batch`]).
pub trait LanguageModel: Send + Sync {
    /// The model's configuration.
    fn config(&self) -> &ModelConfig;
    /// A new, empty cache for `capacity` positions.
    fn new_cache(&self, capacity: usize) -> candle_core::Result<KvCache>;
    /// Runs each item's tokens after what its cache holds, all in one pass; returns the logits
    /// the items asked for ([`Logits`]), in item order, `[rows, vocab]` f32.
    fn forward_batch(&self, items: &mut [BatchItem<'_>]) -> candle_core::Result<Tensor>;
    /// Runs `tokens` after the cached ones; logits `[n, vocab]` (all positions) or `[1, vocab]`.
    fn forward(
        &self,
        tokens: &[u32],
        cache: &mut KvCache,
        all_positions: bool,
    ) -> candle_core::Result<Tensor> {
        let logits = if all_positions {
            Logits::All
        } else {
            Logits::Last
        };
        self.forward_batch(&mut [BatchItem {
            tokens,
            cache,
            logits,
        }])
    }
}

impl LanguageModel for Decoder {
    fn config(&self) -> &ModelConfig {
        Decoder::config(self)
    }
    fn new_cache(&self, capacity: usize) -> candle_core::Result<KvCache> {
        Decoder::new_cache(self, capacity)
    }
    fn forward_batch(&self, items: &mut [BatchItem<'_>]) -> candle_core::Result<Tensor> {
        crate::device::on_pool(|| Decoder::forward_batch(self, items))
    }
}

impl LanguageModel for mpt::Mpt {
    fn config(&self) -> &ModelConfig {
        mpt::Mpt::config(self)
    }
    fn new_cache(&self, capacity: usize) -> candle_core::Result<KvCache> {
        mpt::Mpt::new_cache(self, capacity)
    }
    fn forward_batch(&self, items: &mut [BatchItem<'_>]) -> candle_core::Result<Tensor> {
        crate::device::on_pool(|| mpt::Mpt::forward_batch(self, items))
    }
}

/// Loads the implementation `cfg.arch` needs from `src`; `dtype` is the activation dtype.
/// The tensors are checked against `cfg` first ([`validate::tensors`]).
pub fn load_model(
    cfg: ModelConfig,
    src: &mut dyn weights::WeightSource,
    dtype: DType,
    device: &Device,
) -> Result<Box<dyn LanguageModel>, ModelError> {
    if cfg.arch != Arch::Mpt {
        validate::tensors(&cfg, src).map_err(|msg| ModelError::Weights {
            file: src.origin(),
            msg,
        })?;
    }
    Ok(match cfg.arch {
        Arch::Mpt => Box::new(mpt::Mpt::load(cfg, src, dtype, device)?),
        Arch::Llama
        | Arch::Mistral
        | Arch::Qwen2
        | Arch::Qwen3
        | Arch::Qwen3Moe
        | Arch::Gemma3
        | Arch::Phi3
        | Arch::Granite
        | Arch::SmolLm3
        | Arch::ChatGlm => Box::new(Decoder::load(cfg, src, dtype, device)?),
    })
}

/// The compute dtype to use for dense weights on `device`: f32 on CPU (fastest there),
/// bf16 on CUDA and Metal.
pub fn default_dtype(device: &Device) -> DType {
    if device.is_cpu() {
        DType::F32
    } else {
        DType::BF16
    }
}

/// The shard files a checkpoint index (`*.index.json`) lists in its `weight_map`, each once.
pub fn index_shards(text: &str) -> Result<Vec<String>, String> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
    let map = v
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or("no \"weight_map\" object")?;
    let mut shards: Vec<String> = map
        .values()
        .filter_map(|x| x.as_str().map(String::from))
        .collect();
    shards.sort();
    shards.dedup();
    Ok(shards)
}

/// The shards `dir/index` lists, all checked to exist; `None` when there is no such index.
fn indexed_files(dir: &Path, index: &str) -> Result<Option<Vec<PathBuf>>, ModelError> {
    let index = dir.join(index);
    if !index.is_file() {
        return Ok(None);
    }
    let err = |msg: String| ModelError::Weights {
        file: index.display().to_string(),
        msg,
    };
    let text = std::fs::read_to_string(&index).map_err(|e| err(e.to_string()))?;
    let files: Vec<PathBuf> = index_shards(&text)
        .map_err(err)?
        .iter()
        .map(|f| dir.join(f))
        .collect();
    for f in &files {
        if !f.is_file() {
            return Err(ModelError::Weights {
                file: f.display().to_string(),
                msg: format!("listed in {} but missing", index.display()),
            });
        }
    }
    Ok(Some(files))
}

/// The safetensors files of a checkpoint directory: those listed by
/// `model.safetensors.index.json`, or `model.safetensors`, or every `*.safetensors`.
pub fn safetensors_files(dir: &Path) -> Result<Vec<PathBuf>, ModelError> {
    if let Some(files) = indexed_files(dir, "model.safetensors.index.json")? {
        return Ok(files);
    }
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| ModelError::Weights {
            file: dir.display().to_string(),
            msg: e.to_string(),
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(ModelError::Weights {
            file: dir.display().to_string(),
            msg: "no weights found (expected model.safetensors, model.safetensors.index.json, or pytorch_model*.bin)".into(),
        });
    }
    Ok(files)
}

/// The PyTorch checkpoint files of a directory: those listed by
/// `pytorch_model.bin.index.json`, or `pytorch_model.bin`, or every `pytorch_model*.bin`.
pub fn pth_files(dir: &Path) -> Result<Vec<PathBuf>, ModelError> {
    if let Some(files) = indexed_files(dir, "pytorch_model.bin.index.json")? {
        return Ok(files);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.extension().is_some_and(|x| x == "bin")
                        && p.file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| n.starts_with("pytorch_model"))
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    Ok(files)
}

/// Reads a checkpoint directory's `config.json`, with the end-of-sequence ids that
/// `generation_config.json` adds.
pub fn read_dir_config(dir: &Path) -> Result<ModelConfig, ModelError> {
    let cfg_path = dir.join("config.json");
    let text = std::fs::read_to_string(&cfg_path).map_err(|e| ModelError::Config {
        file: cfg_path.display().to_string(),
        msg: format!("cannot read: {e}"),
    })?;
    let mut cfg = ModelConfig::from_hf_json(&text, &cfg_path.display().to_string())?;
    if let Ok(text) = std::fs::read_to_string(dir.join("generation_config.json")) {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
            for id in config::token_ids(v.get("eos_token_id")) {
                if !cfg.eos_token_ids.contains(&id) {
                    cfg.eos_token_ids.push(id);
                }
            }
        }
    }
    Ok(cfg)
}

/// Loads a model from a Hugging Face checkpoint directory: `config.json` plus safetensors, or
/// PyTorch `pytorch_model*.bin` shards when there are no safetensors.
pub fn load_safetensors_dir(
    dir: &Path,
    dtype: DType,
    device: &Device,
) -> Result<Box<dyn LanguageModel>, ModelError> {
    load_dir_with(dir, read_dir_config(dir)?, dtype, device, None)
}

/// Loads the weights of a checkpoint directory with `cfg` (from [`read_dir_config`], its
/// context possibly changed), telling `progress` the bytes of tensors loaded.
pub fn load_dir_with(
    dir: &Path,
    cfg: ModelConfig,
    dtype: DType,
    device: &Device,
    progress: Option<weights::LoadProgress>,
) -> Result<Box<dyn LanguageModel>, ModelError> {
    let mut src = match safetensors_files(dir) {
        Ok(files) => weights::SafetensorsSource::open(&files, dtype, device)?,
        Err(e) => {
            let pth = pth_files(dir)?;
            if pth.is_empty() {
                return Err(e);
            }
            tracing::info!(
                files = pth.len(),
                "no safetensors; reading PyTorch .bin weights"
            );
            weights::SafetensorsSource::open_pth(&pth, dtype, device)?
        }
    }
    .with_progress(progress);
    load_model(cfg, &mut src, dtype, device)
}
