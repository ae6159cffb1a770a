//! Downloads from the Hugging Face Hub with `hf-hub` (its cache, its progress bars).
//!
//! `HF_HOME` / `HF_HUB_CACHE` choose the cache and `HF_TOKEN` authenticates, as in the
//! Python tooling, so files already fetched by `huggingface-cli` are reused.

use super::{ModelFiles, SourceError};
use crate::model::index_shards;

/// Files fetched for a checkpoint besides the weights and the tokenizer (required or not).
const CHECKPOINT_FILES: &[(&str, bool)] = &[
    ("config.json", true),
    ("tokenizer_config.json", false),
    ("generation_config.json", false),
    ("chat_template.jinja", false),
    ("chat_template.json", false),
];

/// Tokenizer files in order of preference: the first one the repo has is fetched.
const TOKENIZER_FILES: &[&str] = &[
    "tokenizer.json",
    crate::tokenizer::SPM_FILES[0],
    crate::tokenizer::SPM_FILES[1],
];

/// How a repo stores its weights, in order of preference.
const WEIGHT_LAYOUTS: &[(&str, bool)] = &[
    ("model.safetensors.index.json", true),
    ("model.safetensors", false),
    ("pytorch_model.bin.index.json", true),
    ("pytorch_model.bin", false),
];

/// The first of `candidates` present in the repo `listing` (all of them when the listing
/// could not be read, so each is tried in turn).
fn pick<'a>(listing: Option<&[String]>, candidates: &[&'a str]) -> Vec<&'a str> {
    match listing {
        Some(files) => candidates
            .iter()
            .find(|c| files.iter().any(|f| f == *c))
            .map(|c| vec![*c])
            .unwrap_or_default(),
        None => candidates.to_vec(),
    }
}

/// Downloads `file` (a GGUF) from `repo`, or the whole checkpoint when `file` is `None`:
/// config, tokenizer (`tokenizer.json`, else a SentencePiece model), and the weights
/// (safetensors, else PyTorch `.bin` shards); returns where the files are.
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
    let listing: Option<Vec<String>> = match r.info() {
        Ok(info) => Some(info.siblings.into_iter().map(|s| s.rfilename).collect()),
        Err(e) => {
            tracing::warn!("cannot list {repo}: {e}; trying the usual file names");
            None
        }
    };
    let mut dir = None;
    for (f, required) in CHECKPOINT_FILES {
        match r.get(f) {
            Ok(p) => dir = dir.or_else(|| p.parent().map(|d| d.to_path_buf())),
            Err(e) if *required => return Err(err(f, e.to_string())),
            Err(_) => {}
        }
    }
    let dir = dir.ok_or_else(|| err("config.json", "no files".into()))?;
    let tokenizer = pick(listing.as_deref(), TOKENIZER_FILES)
        .into_iter()
        .find(|f| r.get(f).is_ok());
    if tokenizer.is_none() {
        return Err(err(
            "tokenizer.json",
            "the repo has no tokenizer.json, tokenizer.model or spiece.model".into(),
        ));
    }
    let names: Vec<&str> = WEIGHT_LAYOUTS.iter().map(|(f, _)| *f).collect();
    for f in pick(listing.as_deref(), &names) {
        let Ok(path) = r.get(f) else { continue };
        let is_index = WEIGHT_LAYOUTS.iter().any(|(n, idx)| *n == f && *idx);
        if is_index {
            let text = std::fs::read_to_string(&path).map_err(|e| err(f, e.to_string()))?;
            for shard in index_shards(&text).map_err(|e| err(f, e))? {
                r.get(&shard).map_err(|e| err(&shard, e.to_string()))?;
            }
        }
        return Ok(ModelFiles::Dir(dir));
    }
    Err(err(
        "model.safetensors",
        "the repo has no safetensors or pytorch_model*.bin weights (for a GGUF repo, name the file: REPO:FILE.gguf)".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefers_safetensors_and_tokenizer_json_but_falls_back() {
        let chatglm: Vec<String> = [
            "config.json",
            "tokenizer.model",
            "pytorch_model.bin.index.json",
            "pytorch_model-00001-of-00007.bin",
            "model.safetensors.index.json",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let names: Vec<&str> = WEIGHT_LAYOUTS.iter().map(|(f, _)| *f).collect();
        assert_eq!(
            pick(Some(&chatglm), &names),
            vec!["model.safetensors.index.json"]
        );
        assert_eq!(
            pick(Some(&chatglm), TOKENIZER_FILES),
            vec!["tokenizer.model"]
        );
        let replit: Vec<String> = ["config.json", "spiece.model", "pytorch_model.bin"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(pick(Some(&replit), &names), vec!["pytorch_model.bin"]);
        assert_eq!(pick(Some(&replit), TOKENIZER_FILES), vec!["spiece.model"]);
        assert_eq!(pick(None, TOKENIZER_FILES).len(), 3);
    }

    #[test]
    fn index_lists_each_shard_once() {
        let idx =
            r#"{"metadata": {}, "weight_map": {"a": "m-2.bin", "b": "m-1.bin", "c": "m-2.bin"}}"#;
        assert_eq!(index_shards(idx).unwrap(), vec!["m-1.bin", "m-2.bin"]);
        assert!(index_shards("{}").is_err());
    }
}
