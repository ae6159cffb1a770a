//! Tests with the real GGUF models that `scripts/fetch-models.sh` fetches (see
//! ../shared/ASSETS.md): SmolLM2-135M-Instruct Q4_1 and Qwen2.5-Coder-0.5B-Instruct Q4_K_M.
//!
//! A missing model fails the test with a message saying how to fetch it; set
//! `CALLM_SKIP_REAL_MODELS=1` to skip these tests explicitly.

use std::path::PathBuf;
use std::sync::OnceLock;

use callm::engine::{CancelToken, SamplingParams};
use callm::model::config::RopeScaling;
use callm::registry::Registry;
use callm::runtime::LoadOptions;
use callm::runtime::LoadedModel;

const SMOLLM2: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
const QWEN: &str = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf";

fn model_path(file: &str) -> Option<PathBuf> {
    if std::env::var_os("CALLM_SKIP_REAL_MODELS").is_some() {
        eprintln!("CALLM_SKIP_REAL_MODELS is set: skipping the test that needs {file}");
        return None;
    }
    let p = callm::paths::models_dir().join(file);
    assert!(
        p.is_file(),
        "{} is missing: run scripts/fetch-models.sh (or set CALLM_SKIP_REAL_MODELS=1)",
        p.display()
    );
    Some(p)
}

fn load(file: &str) -> Option<&'static LoadedModel> {
    static SMOL: OnceLock<LoadedModel> = OnceLock::new();
    static QW: OnceLock<LoadedModel> = OnceLock::new();
    let path = model_path(file)?;
    let cell = if file == SMOLLM2 { &SMOL } else { &QW };
    Some(cell.get_or_init(|| {
        let opts = LoadOptions {
            model: path.display().to_string(),
            context: Some(4096),
            ..Default::default()
        };
        LoadedModel::load(&opts, &Registry::builtin()).unwrap()
    }))
}

fn greedy(lm: &LoadedModel, prompt: &[u32], n: usize) -> String {
    let mut params = lm.default_params();
    params.sampling = SamplingParams::greedy();
    params.max_tokens = Some(n);
    let mut text = String::new();
    lm.generate(prompt, &params, &CancelToken::new(), &mut |ev| {
        text.push_str(&ev.text);
        true
    })
    .unwrap();
    text
}

#[test]
fn smollm2_loads_with_the_documented_shape_and_generates() {
    let Some(lm) = load(SMOLLM2) else { return };
    // Shape as documented in ASSETS.md (an independent description of the file).
    let c = lm.model.config();
    assert_eq!(
        (c.num_layers, c.hidden_size, c.num_heads, c.num_kv_heads),
        (30, 576, 9, 3)
    );
    assert_eq!(c.rope_theta, 1e5);
    assert!(c.tie_word_embeddings);
    assert_eq!(lm.family.name, "generic");
    assert!(lm
        .template
        .templates
        .iter()
        .any(|(_, t)| t.contains("<|im_start|>")));
    let ids = lm
        .tokenizer
        .encode(
            "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
            false,
        )
        .unwrap();
    let text = greedy(lm, &ids, 12);
    assert!(text.contains("Paris"), "{text:?}");
}

#[test]
fn qwen_coder_loads_with_the_documented_shape() {
    let Some(lm) = load(QWEN) else { return };
    let c = lm.model.config();
    assert_eq!(
        (
            c.num_layers,
            c.hidden_size,
            c.num_heads,
            c.num_kv_heads,
            c.vocab_size
        ),
        (24, 896, 14, 2, 151936)
    );
    assert!(c.qkv_bias);
    assert!(!c.rope_interleaved);
    assert_eq!(c.rope_scaling, RopeScaling::None);
    assert_eq!(lm.family.name, "qwen2.5");
    let im_end = lm.tokenizer.token_to_id("<|im_end|>").unwrap();
    assert!(lm.stop_token_ids.contains(&im_end));
}

/// The Qwen2.5 tool prompt, written by hand from the model's documented format
/// (FORMATS.md: tools as JSON lines inside <tools></tools> in the system message).
fn qwen_tool_prompt(question: &str) -> String {
    let tool = r#"{"type": "function", "function": {"name": "get_weather", "description": "Get the current weather in a city", "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "The city name"}}, "required": ["city"]}}}"#;
    format!(
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.\n\n# Tools\n\n\
You may call one or more functions to assist with the user query.\n\n\
You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n{tool}\n</tools>\n\n\
For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n\
<tool_call>\n{{\"name\": <function-name>, \"arguments\": <args-json-object>}}\n</tool_call><|im_end|>\n\
<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"
    )
}

#[test]
fn qwen_coder_calls_the_offered_tool() {
    let Some(lm) = load(QWEN) else { return };
    let ids = lm
        .tokenizer
        .encode(
            &qwen_tool_prompt("What is the weather like in Paris right now?"),
            false,
        )
        .unwrap();
    let text = greedy(lm, &ids, 64);
    // The small model writes the call as bare JSON, a fenced json block or inside <tool_call>:
    // find the JSON object and check it names the offered tool with a city argument.
    let start = text
        .find('{')
        .unwrap_or_else(|| panic!("no JSON in {text:?}"));
    let end = text
        .rfind('}')
        .unwrap_or_else(|| panic!("no JSON in {text:?}"));
    let call: serde_json::Value =
        serde_json::from_str(&text[start..=end]).unwrap_or_else(|e| panic!("{e}: {text:?}"));
    assert_eq!(call["name"], "get_weather", "{text:?}");
    let args = &call["arguments"];
    assert!(
        args["city"].as_str().unwrap_or_default().contains("Paris"),
        "{text:?}"
    );
}

#[test]
fn same_seed_same_output_on_a_real_model() {
    let Some(lm) = load(SMOLLM2) else { return };
    let ids = lm
        .tokenizer
        .encode(
            "<|im_start|>user\nTell me a story.<|im_end|>\n<|im_start|>assistant\n",
            false,
        )
        .unwrap();
    let run = |seed| {
        let mut params = lm.default_params();
        params.sampling = SamplingParams {
            temperature: 1.0,
            top_p: 0.9,
            seed: Some(seed),
            ..Default::default()
        };
        params.max_tokens = Some(24);
        lm.generate(&ids, &params, &CancelToken::new(), &mut |_| true)
            .unwrap()
            .output_ids
    };
    assert_eq!(run(42), run(42));
    assert_ne!(run(42), run(43));
}

#[test]
fn context_overflow_is_a_clear_error() {
    let Some(lm) = load(SMOLLM2) else { return };
    let ids = vec![100u32; lm.context + 5];
    let err = lm
        .generate(&ids, &lm.default_params(), &CancelToken::new(), &mut |_| {
            true
        })
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&lm.context.to_string()) && err.contains(&ids.len().to_string()),
        "{err}"
    );
}

#[test]
fn truncated_gguf_is_a_clear_error() {
    let Some(src) = model_path(SMOLLM2) else {
        return;
    };
    let tmp = std::env::temp_dir().join(format!("callm-trunc-{}.gguf", std::process::id()));
    let bytes = std::fs::read(&src).unwrap();
    std::fs::write(&tmp, &bytes[..bytes.len() / 3]).unwrap();
    let opts = LoadOptions {
        model: tmp.display().to_string(),
        ..Default::default()
    };
    let err = LoadedModel::load(&opts, &Registry::builtin())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("truncated") && err.contains("callm-trunc"),
        "{err}"
    );
    std::fs::write(&tmp, b"GGUF not really").unwrap();
    let err = LoadedModel::load(&opts, &Registry::builtin())
        .unwrap_err()
        .to_string();
    assert!(err.contains("callm-trunc"), "{err}");
    std::fs::remove_file(&tmp).ok();
}

/// Generation (greedy, or sampled with a seed) that also reports how many prompt tokens came
/// from the prefix cache.
fn run_ids(lm: &LoadedModel, prompt: &[u32], n: usize, seed: Option<u64>) -> (Vec<u32>, usize) {
    let mut params = lm.default_params();
    params.sampling = match seed {
        None => SamplingParams::greedy(),
        Some(s) => SamplingParams {
            temperature: 0.8,
            seed: Some(s),
            ..Default::default()
        },
    };
    params.max_tokens = Some(n);
    let stats = lm
        .generate(prompt, &params, &CancelToken::new(), &mut |_| true)
        .unwrap();
    (stats.output_ids, stats.cached_tokens)
}

#[test]
fn prefix_cache_reuses_the_shared_prompt_and_changes_no_output() {
    let Some(path) = model_path(QWEN) else { return };
    // Its own instance, so no other test touches its cache.
    let opts = LoadOptions {
        model: path.display().to_string(),
        context: Some(2048),
        ..Default::default()
    };
    let lm = LoadedModel::load(&opts, &Registry::builtin()).unwrap();
    let encode = |q: &str| lm.tokenizer.encode(&qwen_tool_prompt(q), false).unwrap();
    let first = encode("What is the weather like in Paris right now?");
    let second = encode("And how is the weather in Rome today?");
    let shared = first
        .iter()
        .zip(&second)
        .take_while(|(a, b)| a == b)
        .count();
    assert!(shared > 100, "the tool prompt should be shared: {shared}");

    // Reuse starts at any token (see engine::prefix_cache).
    for seed in [None, Some(7), Some(1234)] {
        // Reference outputs, each from an empty cache.
        lm.clear_prefix_cache();
        let (want_second, cached) = run_ids(&lm, &second, 24, seed);
        assert_eq!(cached, 0);
        lm.clear_prefix_cache();
        let (want_first, _) = run_ids(&lm, &first, 24, seed);

        // The second request after the first: the shared tools prefix is reused...
        let (got_second, cached) = run_ids(&lm, &second, 24, seed);
        assert_eq!(cached, shared.min(first.len()), "reused prompt tokens");
        assert!(cached > 100);
        // ...and the output is the same as without reuse, greedy or sampled with a seed.
        assert_eq!(got_second, want_second, "seed {seed:?}");
        // Repeating a request reuses everything but its last token.
        let (again, cached) = run_ids(&lm, &first, 24, seed);
        assert_eq!(cached, first.len() - 1);
        assert_eq!(again, want_first, "seed {seed:?}");
    }
}
