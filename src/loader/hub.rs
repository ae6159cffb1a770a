//! Downloads from the Hugging Face Hub with `hf-hub` (its cache, its progress bars).
//!
//! `HF_HOME` / `HF_HUB_CACHE` choose the cache and `HF_TOKEN` authenticates, as in the
//! Python tooling, so files already fetched by `huggingface-cli` are reused.

use super::{ModelFiles, SourceError};

/// Files fetched for a safetensors checkpoint, besides the weights.
const CHECKPOINT_FILES: &[(&str, bool)] = &[
    ("config.json", true),
    ("tokenizer.json", true),
    ("tokenizer_config.json", false),
    ("generation_config.json", false),
    ("chat_template.jinja", false),
    ("chat_template.json", false),
];

/// Downloads `file` (a GGUF) from `repo`, or the whole safetensors checkpoint when `file`
/// is `None`; returns where the files are.
pub fn download(repo: &str, file: Option<&str>) -> Result<ModelFiles, SourceError> {
    let err = |file: &str, msg: String| SourceError::Download {
        repo: repo.to_string(),
        file: file.to_string(),
        msg,
    };
    let mut builder = hf_hub::api::sync::ApiBuilder::from_env().with_progress(true);
    if let Ok(token) = std::env::var("HF_TOKEN") {
        builder = builder.with_token(Some(token));
    }
    let api = builder.build().map_err(|e| err("", e.to_string()))?;
    let r = api.model(repo.to_string());
    if let Some(f) = file {
        tracing::info!(repo, file = f, "fetching GGUF from the Hugging Face Hub");
        let path = r.get(f).map_err(|e| err(f, e.to_string()))?;
        return Ok(ModelFiles::Gguf(path));
    }
    tracing::info!(repo, "fetching checkpoint from the Hugging Face Hub");
    let mut dir = None;
    for (f, required) in CHECKPOINT_FILES {
        match r.get(f) {
            Ok(p) => dir = dir.or_else(|| p.parent().map(|d| d.to_path_buf())),
            Err(e) if *required => return Err(err(f, e.to_string())),
            Err(_) => {}
        }
    }
    let dir = dir.ok_or_else(|| err("config.json", "no files".into()))?;
    match r.get("model.safetensors.index.json") {
        Ok(index) => {
            let text = std::fs::read_to_string(&index)
                .map_err(|e| err("model.safetensors.index.json", e.to_string()))?;
            let v: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| err("model.safetensors.index.json", e.to_string()))?;
            let mut shards: Vec<String> = v
                .get("weight_map")
                .and_then(|m| m.as_object())
                .map(|m| {
                    m.values()
                        .filter_map(|x| x.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            shards.sort();
            shards.dedup();
            for s in shards {
                r.get(&s).map_err(|e| err(&s, e.to_string()))?;
            }
        }
        Err(_) => {
            r.get("model.safetensors")
                .map_err(|e| err("model.safetensors", e.to_string()))?;
        }
    }
    Ok(ModelFiles::Dir(dir))
}
