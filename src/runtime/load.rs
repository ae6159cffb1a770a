//! Loading a [`LoadedModel`] from any model source: resolve the files, read weights,
//! tokenizer and templates, detect the family, derive stops and the prompt renderer.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use candle_core::Device;

use super::LoadedModel;
use crate::engine::prefix_cache::PrefixCache;
use crate::engine::{Scheduler, SchedulerConfig};
use crate::loader::{self, ModelFiles};
use crate::metrics::Metrics;
use crate::model::{self, gguf::GgufFile, KvType, LanguageModel};
use crate::parsers;
use crate::registry::{ModelHints, Registry};
use crate::template::{ModelTemplateInfo, PromptRenderer};
use crate::tokenizer::Tokenizer;

/// How to load a model.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `--model`: directory, GGUF file, Hub repo id or registry name.
    pub model: String,
    /// `--family`: overrides detection.
    pub family: Option<String>,
    /// `--device`.
    pub device: Option<String>,
    /// `--ctx`: context window to allocate (default: the model's, capped at 8192).
    pub context: Option<usize>,
    /// `--tokenizer`: a directory or tokenizer.json overriding the model's tokenizer.
    pub tokenizer: Option<PathBuf>,
    /// `--kv-cache-type`: the KV cache's type on the CPU (default: by the weights).
    pub kv_cache: Option<KvType>,
    /// How the scheduler batches sequences (`--max-concurrent`, `--kv-cache-mb`).
    pub batch: SchedulerConfig,
    /// Told the bytes of weights read as a GGUF file or a checkpoint directory loads (the CLI
    /// draws a progress bar).
    pub progress: Option<crate::model::weights::LoadProgress>,
}

pub use crate::model::config::DEFAULT_MAX_CONTEXT;

impl LoadedModel {
    /// Resolves, downloads if needed, and loads a model.
    pub fn load(opts: &LoadOptions, registry: &Registry) -> anyhow::Result<Self> {
        let t0 = Instant::now();
        let device = crate::device::select(opts.device.as_deref())?;
        let resolved = loader::resolve(&opts.model, registry)?;
        let (model, tokenizer, template, archs, mut names): Loaded = match &resolved.files {
            ModelFiles::Gguf(path) => load_gguf(path, &device, opts)?,
            ModelFiles::Dir(dir) => load_dir(dir, &device, opts)?,
        };
        // Where a SentencePiece tokenizer is read from once the family is known.
        let mut spm_dir = match &resolved.files {
            ModelFiles::Dir(dir) => Some(dir.clone()),
            ModelFiles::Gguf(_) => None,
        };
        let tokenizer = match &opts.tokenizer {
            Some(p) if p.is_dir() && !p.join("tokenizer.json").is_file() => {
                spm_dir = Some(p.clone());
                None
            }
            Some(p) if p.is_dir() => Some(Tokenizer::from_file(p.join("tokenizer.json"))?),
            Some(p) => Some(Tokenizer::from_file(p)?),
            None => tokenizer,
        };
        names.extend(resolved.names.iter().cloned());
        let family_name = opts.family.clone().or(resolved.family.clone());
        let first_template = template.templates.first().map(|(_, t)| t.as_str());
        let family = match family_name {
            Some(n) => registry.require(&n)?.clone(),
            None => registry
                .detect(&ModelHints {
                    architectures: archs,
                    names,
                    template: first_template,
                })
                .clone(),
        };
        // A directory without tokenizer.json: its SentencePiece model, plus the special tokens
        // the family's reference tokenizer appends to it.
        let tokenizer = match (tokenizer, spm_dir) {
            (Some(t), _) => t,
            (None, Some(dir)) => Tokenizer::from_model_dir(&dir, &family.spm_special_tokens)
                .with_context(|| format!("{}: loading the tokenizer", dir.display()))?,
            (None, None) => anyhow::bail!("{}: no tokenizer found", opts.model),
        };
        let cfg = model.config();
        let context = cfg.context;
        check_runs(model.as_ref(), &tokenizer, &opts.model)?;
        let mut stop_token_ids = cfg.eos_token_ids.clone();
        stop_token_ids.extend(tokenizer.eos_token_ids());
        let mut stop_strings = vec![];
        for s in &family.stop {
            match tokenizer.token_to_id(s) {
                Some(id) => stop_token_ids.push(id),
                None => stop_strings.push(s.clone()),
            }
        }
        if let Some(eos) = template
            .eos_token
            .as_deref()
            .and_then(|t| tokenizer.token_to_id(t))
        {
            stop_token_ids.push(eos);
        }
        let renderer = match ModelTemplateInfo::for_family(&family, Some(template.clone())) {
            Ok(info) => PromptRenderer::new(info, Some(&family))?,
            Err(e) => {
                // No template at all: a plain ChatML fallback keeps chat usable; --raw needs none.
                tracing::warn!("{e}; falling back to ChatML");
                let info = ModelTemplateInfo::from_template(
                    CHATML,
                    template.bos_token.clone(),
                    template.eos_token.clone(),
                );
                PromptRenderer::new(info, Some(&family))?
            }
        }
        .with_tokenizer(tokenizer.inner());
        let parsers = parsers::chain(&family.parsers)?;
        stop_token_ids.sort_unstable();
        stop_token_ids.dedup();
        tracing::info!(
            model = %opts.model, family = %family.name, arch = cfg.arch.name(), layers = cfg.num_layers,
            context, device = ?device, seconds = t0.elapsed().as_secs_f64(), "model loaded"
        );
        let prefix_cache = Arc::new(PrefixCache::new(PrefixCache::budget_from_env()));
        let metrics = Metrics::new();
        let scheduler = Scheduler::start(
            model.clone(),
            prefix_cache.clone(),
            metrics.clone(),
            context,
            opts.batch,
        )?;
        Ok(LoadedModel {
            name: opts.model.clone(),
            family,
            model,
            tokenizer: Arc::new(tokenizer),
            template,
            renderer,
            parsers,
            stop_token_ids,
            stop_strings,
            context,
            device,
            load_seconds: t0.elapsed().as_secs_f64(),
            prefix_cache,
            scheduler,
            metrics,
            constraints: Default::default(),
        })
    }
}

type Loaded = (
    Arc<dyn LanguageModel>,
    Option<Tokenizer>,
    ModelTemplateInfo,
    Vec<String>,
    Vec<String>,
);

/// What a GGUF file's metadata says besides the weights: tokenizer, chat template(s),
/// architecture and names.
pub struct GgufMeta {
    /// The tokenizer built from `tokenizer.ggml.*`.
    pub tokenizer: Tokenizer,
    /// `tokenizer.chat_template` (and named `tokenizer.chat_template.NAME`) with bos/eos strings.
    pub template: ModelTemplateInfo,
    /// `general.architecture`.
    pub architectures: Vec<String>,
    /// `general.name`, `general.basename`, `general.finetune`.
    pub names: Vec<String>,
}

/// Reads tokenizer, template and names from an opened GGUF file.
pub fn gguf_meta(gguf: &GgufFile, path: &Path) -> anyhow::Result<GgufMeta> {
    let tokenizer = Tokenizer::from_gguf(gguf.content()).with_context(|| {
        format!(
            "{}: building the tokenizer from GGUF metadata",
            path.display()
        )
    })?;
    let mut template = ModelTemplateInfo::default();
    if let Some(t) = gguf.meta_str("tokenizer.chat_template") {
        template.templates.push(("default".into(), t.to_string()));
    }
    // Named templates (llama.cpp writes tokenizer.chat_template.NAME).
    for (k, v) in &gguf.content().metadata {
        if let Some(name) = k.strip_prefix("tokenizer.chat_template.") {
            if let Ok(t) = v.to_string() {
                template.templates.push((name.to_string(), t.clone()));
            }
        }
    }
    template.bos_token = tokenizer
        .bos_token_id()
        .and_then(|id| tokenizer.id_to_token(id));
    template.eos_token = tokenizer
        .eos_token_id()
        .and_then(|id| tokenizer.id_to_token(id));
    let architectures = gguf
        .meta_str("general.architecture")
        .map(String::from)
        .into_iter()
        .collect();
    let names = ["general.name", "general.basename", "general.finetune"]
        .iter()
        .filter_map(|k| gguf.meta_str(k).map(String::from))
        .collect();
    Ok(GgufMeta {
        tokenizer,
        template,
        architectures,
        names,
    })
}

/// Refuses, at load, a model that cannot run: a tokenizer with ids beyond the embedding
/// (every prompt using them would fail), or weights whose first step gives non-finite logits.
fn check_runs(model: &dyn LanguageModel, tokenizer: &Tokenizer, name: &str) -> anyhow::Result<()> {
    let cfg = model.config();
    if tokenizer.vocab_size() > cfg.vocab_size {
        anyhow::bail!(
            "{name}: the tokenizer has {} tokens but the model's embedding only {} rows; \
             this tokenizer does not belong to these weights",
            tokenizer.vocab_size(),
            cfg.vocab_size
        );
    }
    let token = tokenizer.bos_token_id().unwrap_or(0);
    let mut cache = model
        .new_cache(1)
        .with_context(|| format!("{name}: allocating a key/value cache"))?;
    let logits = model
        .forward(&[token], &mut cache, false)
        .and_then(|l| l.flatten_all()?.to_vec1::<f32>())
        .with_context(|| format!("{name}: the model cannot run one step"))?;
    if let Some(bad) = logits.iter().find(|x| !x.is_finite()) {
        anyhow::bail!(
            "{name}: the model's first step gives a non-finite logit ({bad}); its weights or \
             metadata are broken"
        );
    }
    Ok(())
}

fn load_gguf(path: &Path, device: &Device, opts: &LoadOptions) -> anyhow::Result<Loaded> {
    let gguf = GgufFile::open(path, device)?.with_progress(opts.progress.clone());
    let meta = gguf_meta(&gguf, path)?;
    let mut cfg = gguf.config()?;
    cfg.set_context(opts.context)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    cfg.kv_cache = opts.kv_cache;
    let decoder = gguf.load_with(cfg, device)?;
    Ok((
        Arc::from(decoder),
        Some(meta.tokenizer),
        meta.template,
        meta.architectures,
        meta.names,
    ))
}

fn load_dir(dir: &Path, device: &Device, opts: &LoadOptions) -> anyhow::Result<Loaded> {
    // tokenizer.json now; a SentencePiece model once the family (and its extra tokens) is known.
    let tok_path = dir.join("tokenizer.json");
    let tokenizer = if tok_path.is_file() {
        Some(Tokenizer::from_file(&tok_path)?)
    } else if Tokenizer::dir_has_tokenizer(dir) {
        None
    } else {
        anyhow::bail!(
            "{}: missing tokenizer.json (or a SentencePiece tokenizer.model / spiece.model), needed to tokenize prompts",
            dir.display()
        );
    };
    let template = ModelTemplateInfo::read_model_dir(dir)?;
    let dtype = model::default_dtype(device);
    let mut model_cfg = model::read_dir_config(dir)?;
    model_cfg
        .set_context(opts.context)
        .map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
    model_cfg.kv_cache = opts.kv_cache;
    let decoder = model::load_dir_with(dir, model_cfg, dtype, device, opts.progress.clone())?;
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json"))?)?;
    let mut archs: Vec<String> = cfg
        .get("architectures")
        .and_then(|a| a.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    archs.extend(
        cfg.get("model_type")
            .and_then(|x| x.as_str())
            .map(String::from),
    );
    let names: Vec<String> = cfg
        .get("_name_or_path")
        .and_then(|x| x.as_str())
        .map(String::from)
        .into_iter()
        .collect();
    Ok((Arc::from(decoder), tokenizer, template, archs, names))
}

/// Fallback template for models that ship none.
const CHATML: &str = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
