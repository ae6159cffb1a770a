//! Loading a Hugging Face-style checkpoint directory through the full `LoadedModel` path:
//! config.json + model.safetensors + tokenizer.json + generation_config.json.

use std::path::PathBuf;

use callm::engine::{CancelToken, SamplingParams};
use callm::registry::Registry;
use callm::runtime::LoadOptions;
use callm::runtime::LoadedModel;

fn checkpoint_dir(tag: &str, with_tokenizer: bool) -> PathBuf {
    let fx = callm::paths::fixtures_dir();
    let dir = std::env::temp_dir().join(format!("callm-ckpt-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let copy = |src: PathBuf, name: &str| {
        let dst = dir.join(name);
        let _ = std::fs::remove_file(&dst);
        std::fs::copy(src, dst).unwrap();
    };
    copy(
        fx.join("tiny-models/llama3/config_legacy.json"),
        "config.json",
    );
    copy(
        fx.join("tiny-models/llama3/model.safetensors"),
        "model.safetensors",
    );
    if with_tokenizer {
        // A tokenizer of exactly the tiny model's 512 ids (a larger one, such as the real
        // Llama 3 tokenizer, is refused at load; a smaller one would keep sampling below it):
        // the byte-level test tokenizer padded with added tokens.
        let tok = callm::constrain::testing::byte_tokenizer().unwrap();
        let mut json: serde_json::Value =
            serde_json::from_str(&tok.inner().to_string(false).unwrap()).unwrap();
        let added = json["added_tokens"].as_array_mut().unwrap();
        let next = added
            .iter()
            .map(|t| t["id"].as_u64().unwrap())
            .max()
            .unwrap()
            + 1;
        for id in next..512 {
            added.push(
                serde_json::json!({"id": id, "content": format!("<pad{id}>"),
                "single_word": false, "lstrip": false, "rstrip": false,
                "normalized": false, "special": true}),
            );
        }
        std::fs::write(dir.join("tokenizer.json"), json.to_string()).unwrap();
    }
    std::fs::write(
        dir.join("generation_config.json"),
        r#"{"eos_token_id": [7, 9]}"#,
    )
    .unwrap();
    dir
}

fn golden_case0() -> (Vec<u32>, Vec<u32>) {
    let path = callm::paths::fixtures_dir().join("tiny-models/llama3/golden.json");
    let g: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let ids = |v: &serde_json::Value| {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect()
    };
    (
        ids(&g["cases"][0]["input_ids"]),
        ids(&g["cases"][0]["greedy_continuation"]),
    )
}

#[test]
fn checkpoint_directory_loads_and_generates_like_transformers() {
    let dir = checkpoint_dir("ok", true);
    let opts = LoadOptions {
        model: dir.display().to_string(),
        ..Default::default()
    };
    let lm = LoadedModel::load(&opts, &Registry::builtin()).unwrap();
    // eos ids from config.json (2) and generation_config.json (7, 9) all stop generation.
    for id in [2, 7, 9] {
        assert!(lm.stop_token_ids.contains(&id), "{:?}", lm.stop_token_ids);
    }
    assert_eq!(
        lm.context, 256,
        "context defaults to the model's max_position_embeddings"
    );
    // Greedy through the engine's own loop equals transformers' greedy continuation.
    let (input, want) = golden_case0();
    let mut params = lm.default_params();
    params.sampling = SamplingParams::greedy();
    params.max_tokens = Some(want.len());
    params.ignore_eos = true;
    let stats = lm
        .generate(&input, &params, &CancelToken::new(), &mut |_| true)
        .unwrap();
    assert_eq!(stats.output_ids, want);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn cancellation_stops_generation() {
    let dir = checkpoint_dir("cancel", true);
    let lm = LoadedModel::load(
        &LoadOptions {
            model: dir.display().to_string(),
            ..Default::default()
        },
        &Registry::builtin(),
    )
    .unwrap();
    let (input, _) = golden_case0();
    let mut params = lm.default_params();
    params.max_tokens = Some(100);
    params.ignore_eos = true;
    let cancel = CancelToken::new();
    let mut n = 0;
    let stats = lm
        .generate(&input, &params, &cancel, &mut |_| {
            n += 1;
            if n == 3 {
                cancel.cancel();
            }
            true
        })
        .unwrap();
    assert_eq!(stats.finish, callm::engine::FinishReason::Cancelled);
    assert_eq!(stats.completion_tokens, 3);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn tokenizer_larger_than_the_embedding_is_refused_at_load() {
    // The real Llama 3 tokenizer (128k tokens) with the tiny model's 512 embedding rows: every
    // prompt with an id past 511 would fail, so the model is refused when it loads.
    let dir = checkpoint_dir("bigtok", false);
    std::fs::copy(
        callm::paths::fixtures_dir().join("tokenizers/llama3/tokenizer.json"),
        dir.join("tokenizer.json"),
    )
    .unwrap();
    let err = LoadedModel::load(
        &LoadOptions {
            model: dir.display().to_string(),
            ..Default::default()
        },
        &Registry::builtin(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("tokenizer has 128256 tokens") && err.contains("512 rows"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn directory_without_tokenizer_is_a_clear_error() {
    let dir = checkpoint_dir("notok", false);
    let err = LoadedModel::load(
        &LoadOptions {
            model: dir.display().to_string(),
            ..Default::default()
        },
        &Registry::builtin(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("tokenizer.json") && err.contains(&dir.display().to_string()),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_directory_load_reports_its_progress_up_to_every_tensor_byte() {
    // The CLI's progress bar is told the bytes of tensors loaded after each one: they only
    // grow, and end at the size of all the tensors the safetensors header lists.
    let dir = checkpoint_dir("progress", true);
    let file = std::fs::read(dir.join("model.safetensors")).unwrap();
    let n = u64::from_le_bytes(file[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&file[8..8 + n]).unwrap();
    let want: u64 = header
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| *k != "__metadata__")
        .map(|(_, t)| {
            let o = &t["data_offsets"];
            o[1].as_u64().unwrap() - o[0].as_u64().unwrap()
        })
        .sum();
    let calls = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = calls.clone();
    let opts = LoadOptions {
        model: dir.display().to_string(),
        progress: Some(callm::model::weights::LoadProgress(std::sync::Arc::new(
            move |read, total| seen.lock().unwrap().push((read, total)),
        ))),
        ..Default::default()
    };
    LoadedModel::load(&opts, &Registry::builtin()).unwrap();
    std::fs::remove_dir_all(&dir).ok();
    let calls = calls.lock().unwrap();
    assert!(calls.len() > 1, "{calls:?}");
    assert!(
        calls.iter().all(|&(_, total)| total == want),
        "{calls:?} vs {want}"
    );
    assert!(calls.windows(2).all(|w| w[0].0 <= w[1].0), "{calls:?}");
    assert_eq!(calls.last().map(|c| c.0), Some(want));
}
