//! ChatGLM3 and Glaive (MPT) end to end, from a checkpoint directory laid out like the real
//! ones: the tiny random-weight fixture model (`config.json` + weights) with a SentencePiece
//! `tokenizer.model` and no `tokenizer.json`. The tokenizers are the 503-piece ChatGLM3-style
//! and 512-piece replit-style models `scripts/gen-spm-fixtures.sh` trains; ChatGLM3's nine
//! special tokens are appended after the vocabulary as its reference tokenizer does, which
//! fills the fixture's 512-id vocabulary exactly.
//!
//! Checked: family detection, the prompt's token layout (FORMATS.md), stop tokens and strings,
//! generation, and that `callm render`, `generate`, `bench` and `serve` run for both.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use callm::openai::ChatCompletionRequest;
use callm::registry::Registry;
use callm::request::ChatRequest;
use callm::runtime::LoadOptions;
use callm::runtime::LoadedModel;
use serde_json::{json, Value};

const SCRIPT: &str = "scripts/gen-spm-fixtures.sh";

static CHECKPOINTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn spm_model(name: &str) -> PathBuf {
    let dir = std::env::var_os("CALLM_SPM_FIXTURES").map_or_else(
        || {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/callm/spm-fixtures")
        },
        PathBuf::from,
    );
    let p = dir.join(name).join("tokenizer.model");
    assert!(
        p.is_file(),
        "{} is missing: run {SCRIPT} (it trains the test tokenizers)",
        p.display()
    );
    p
}

/// A checkpoint directory: the fixture's config and weights plus a SentencePiece model.
fn checkpoint(fixture: &str, spm: &str) -> PathBuf {
    let src = callm::paths::fixtures_dir()
        .join("tiny-models")
        .join(fixture);
    // A neutral name: the family must be recognised from config.json, not from the path.
    let n = CHECKPOINTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("callm-ckpt-{n}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(src.join("model.safetensors"), dir.join("model.safetensors")).unwrap();
    // Room for tool prompts: the fixtures declare 256 positions, but none has a learned
    // position table (rotary or ALiBi), so more is valid.
    let mut cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    for key in ["seq_length", "max_seq_len", "max_position_embeddings"] {
        if cfg.get(key).is_some() {
            cfg[key] = 2048.into();
        }
    }
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    std::fs::copy(spm_model(spm), dir.join("tokenizer.model")).unwrap();
    dir
}

fn load(dir: &Path) -> LoadedModel {
    load_as(dir, None)
}

/// Loads with an explicit family (`--family`), or detects it when `None`.
fn load_as(dir: &Path, family: Option<&str>) -> LoadedModel {
    let opts = LoadOptions {
        model: dir.display().to_string(),
        device: Some("cpu".into()),
        family: family.map(String::from),
        ..Default::default()
    };
    LoadedModel::load(&opts, &Registry::builtin()).unwrap()
}

fn weather_tools() -> Value {
    json!([{"type": "function", "function": {"name": "get_weather",
        "description": "Get the weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
            "required": ["city"]}}}])
}

/// A two-turn tool conversation: question, the assistant's call, its result, a follow-up.
fn tool_conversation() -> ChatRequest {
    let body: ChatCompletionRequest = serde_json::from_value(json!({
        "model": "m",
        "tools": weather_tools(),
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp\": 21}"},
            {"role": "user", "content": "And in Rome?"}
        ]
    }))
    .unwrap();
    ChatRequest::try_from(body).unwrap()
}

#[test]
fn chatglm3_prompt_has_single_role_tokens_and_observation_results() {
    let dir = checkpoint("chatglm3", "chatglm3-tiny");
    let lm = load(&dir);
    assert_eq!(lm.family.name, "chatglm3-6b");
    let tok = &lm.tokenizer;
    // Appended after the 503 pieces in the reference order.
    let id = |t: &str| tok.token_to_id(t).unwrap_or_else(|| panic!("{t} missing"));
    let want = [
        ("[MASK]", 503),
        ("[gMASK]", 504),
        ("[sMASK]", 505),
        ("sop", 506),
        ("eop", 507),
        ("<|system|>", 508),
        ("<|user|>", 509),
        ("<|assistant|>", 510),
        ("<|observation|>", 511),
    ];
    for (t, i) in want {
        assert_eq!(id(t), i, "{t}");
    }
    // Stops: eos, <|user|>, <|observation|>.
    for stop in [2, 509, 511] {
        assert!(lm.stop_token_ids.contains(&stop), "{:?}", lm.stop_token_ids);
    }
    let ids = callm::chat::prompt_ids(&lm, &tool_conversation()).unwrap();
    // [gMASK] sop, then one role token per message (system with tools, user, assistant call,
    // observation, user) and the generation prompt; no other special id anywhere.
    assert_eq!(&ids[..2], &[504, 506]);
    let specials: Vec<u32> = ids.iter().copied().filter(|&i| i >= 503).collect();
    assert_eq!(specials, vec![504, 506, 508, 509, 510, 511, 509, 510]);
    assert_eq!(*ids.last().unwrap(), 510, "ends with <|assistant|>");
    // The text between role tokens is ordinary text: metadata line, then the content.
    let text = tok.decode(&ids, false).unwrap();
    assert!(
        text.contains("<|assistant|>get_weather\n ```python\ntool_call(city='Paris')\n```"),
        "{text}"
    );
    assert!(
        text.contains("<|observation|>\n {\"temp\": 21}<|user|>\n And in Rome?"),
        "{text}"
    );
    // Tool descriptions are JSON text after the system line, never special tokens.
    assert!(text.contains("\"name\": \"get_weather\""), "{text}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn glaive_prompt_and_stops_follow_its_format() {
    let dir = checkpoint("mpt", "replit-tiny");
    let lm = load(&dir);
    assert_eq!(lm.family.name, "glaive-function-calling-v1");
    let eot = lm.tokenizer.token_to_id("<|endoftext|>").unwrap();
    assert!(lm.stop_token_ids.contains(&eot));
    assert!(lm.stop_strings.iter().any(|s| s == "USER:"));
    let ids = callm::chat::prompt_ids(&lm, &tool_conversation()).unwrap();
    let text = lm.tokenizer.decode(&ids, false).unwrap();
    assert!(
        text.starts_with(
            "SYSTEM: You are an helpful assistant who has access to the following functions"
        ),
        "{text}"
    );
    assert!(text.contains("USER: Weather in Paris?"), "{text}");
    assert!(
        text.contains("<functioncall> {\"name\": \"get_weather\""),
        "{text}"
    );
    assert!(text.contains("FUNCTION RESPONSE: {\"temp\": 21}"), "{text}");
    std::fs::remove_dir_all(&dir).ok();
}

fn callm(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_callm"))
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn cli_render_generate_and_bench_run_for_both_families() {
    for (fixture, spm, opening) in [
        ("chatglm3", "chatglm3-tiny", "[504,506,508"),
        ("mpt", "replit-tiny", "["),
    ] {
        let dir = checkpoint(fixture, spm);
        let d = dir.display().to_string();
        let req = dir.join("request.json");
        let body = json!({"model": "m", "tools": weather_tools(),
            "messages": [{"role": "user", "content": "Weather in Paris?"}]});
        std::fs::write(&req, body.to_string()).unwrap();
        let (ok, out) = callm(&[
            "render",
            "-m",
            &d,
            "--request",
            &req.display().to_string(),
            "--ids",
        ]);
        assert!(ok && out.starts_with(opening), "{fixture} render: {out}");
        let (ok, out) = callm(&[
            "generate",
            "-m",
            &d,
            "--prompt",
            "Weather in Paris?",
            "-n",
            "8",
            "--seed",
            "1",
        ]);
        assert!(ok, "{fixture} generate: {out}");
        let (ok, out) = callm(&["bench", "-m", &d, "-p", "16", "-n", "4", "-r", "1"]);
        assert!(
            ok && out.contains("pp16") && out.contains("tg4"),
            "{fixture} bench: {out}"
        );
        // The batching bench: sweeps over the client counts, each count's aggregate against
        // the first count's in the same sweep (so the first is exactly 1).
        let run = Command::new(env!("CARGO_BIN_EXE_callm"))
            .args([
                "bench",
                "-m",
                &d,
                "--concurrent",
                "1,2",
                "-p",
                "8",
                "-n",
                "4",
                "-r",
                "2",
                "--json",
            ])
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&run.stdout);
        assert!(
            run.status.success(),
            "{fixture} bench --concurrent: {out}{}",
            String::from_utf8_lossy(&run.stderr)
        );
        let v: Value = serde_json::from_str(&out).expect("bench --json prints JSON");
        // The report names the kernels that ran: on x86-64 the best set this CPU has (detected
        // here on its own), unless CALLM_KERNELS chooses.
        #[cfg(target_arch = "x86_64")]
        if std::env::var_os("CALLM_KERNELS").is_none() {
            let has = |f: &str| match f {
                "avx512" => {
                    std::is_x86_feature_detected!("avx512f")
                        && std::is_x86_feature_detected!("avx512bw")
                        && std::is_x86_feature_detected!("avx512vl")
                        && std::is_x86_feature_detected!("avx512vnni")
                }
                "avxvnni" => std::is_x86_feature_detected!("avxvnni"),
                _ => {
                    std::is_x86_feature_detected!("avx2")
                        && std::is_x86_feature_detected!("fma")
                        && std::is_x86_feature_detected!("f16c")
                }
            };
            let want = match (has("avx2"), has("avxvnni"), has("avx512")) {
                (false, ..) => "candle",
                (true, _, true) => "avx512vnni",
                (true, true, false) => "avxvnni",
                (true, false, false) => "avx2",
            };
            assert_eq!(v["kernels"], want, "{out}");
        }
        let runs = v["concurrent"].as_array().expect("one result per count");
        assert_eq!(runs.len(), 2, "{out}");
        assert_eq!(runs[0]["clients"], 1);
        assert_eq!(runs[0]["ratio_to_first"], 1.0, "{out}");
        assert!(
            runs[1]["ratio_to_first"].as_f64().is_some_and(|r| r > 0.0),
            "{out}"
        );
        assert!(
            runs[1]["aggregate_ts"].as_f64().is_some_and(|r| r > 0.0),
            "{out}"
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}

/// POSTs a chat completion request and returns the JSON answer.
async fn chat(client: &reqwest::Client, base: &str, body: &Value) -> Value {
    let resp = client
        .post(format!("{base}/v1/chat/completions"))
        .json(body)
        .send()
        .await
        .unwrap();
    resp.json().await.unwrap()
}

/// POSTs the request with `stream: true` and returns the SSE body.
async fn chat_stream(client: &reqwest::Client, base: &str, body: &Value) -> String {
    let mut body = body.clone();
    body["stream"] = true.into();
    let resp = client
        .post(format!("{base}/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    resp.text().await.unwrap()
}

/// Serves `lm` on an ephemeral loopback port: base URL, served model id, shutdown handle.
async fn serve(lm: LoadedModel) -> (String, String, tokio::sync::oneshot::Sender<()>) {
    let backend = Arc::new(callm::chat::EngineBackend::new(Arc::new(lm)));
    let served = callm::chat::ChatBackend::model_id(backend.as_ref()).to_string();
    let state = callm::server::AppState::new(backend, 2, 8, None);
    let app = callm::server::router(state, 1 << 20);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = callm::server::serve_on(listener, app, async {
            let _ = rx.await;
        })
        .await;
    });
    (base, served, tx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_answers_and_streams_for_both_families() {
    for fixture in ["chatglm3", "mpt"] {
        let spm = if fixture == "mpt" {
            "replit-tiny"
        } else {
            "chatglm3-tiny"
        };
        let dir = checkpoint(fixture, spm);
        let (base, served, tx) = serve(load(&dir)).await;
        let client = reqwest::Client::new();
        let body = json!({"model": served, "tools": weather_tools(), "max_tokens": 8, "seed": 3,
            "messages": [{"role": "user", "content": "Weather in Paris?"}]});
        let resp = client
            .post(format!("{base}/v1/chat/completions"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{fixture}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["object"], "chat.completion", "{fixture}: {v}");
        assert!(
            v["usage"]["completion_tokens"].as_u64().unwrap() >= 1,
            "{v}"
        );
        // The same request again starts from the prefix cache: every prompt token but the last
        // (reuse starts at any token).
        let again: Value = chat(&client, &base, &body).await;
        let prompt = again["usage"]["prompt_tokens"].as_u64().unwrap();
        assert_eq!(
            again["usage"]["prompt_tokens_details"]["cached_tokens"].as_u64(),
            Some(prompt - 1),
            "{again}"
        );
        assert_eq!(
            again["choices"], v["choices"],
            "same seed, same answer with reuse"
        );
        let text = chat_stream(&client, &base, &body).await;
        assert!(
            text.trim_end().ends_with("data: [DONE]"),
            "{fixture}: {text}"
        );
        let _ = tx.send(());
        std::fs::remove_dir_all(&dir).ok();
    }
}

/// The arguments of the single call in a chat.completion, checked against the tool's schema.
fn single_call_city(v: &Value) -> String {
    let calls = v["choices"][0]["message"]["tool_calls"]
        .as_array()
        .unwrap_or_else(|| panic!("no tool_calls: {v}"));
    assert_eq!(calls.len(), 1, "{v}");
    assert_eq!(calls[0]["function"]["name"], "get_weather", "{v}");
    let args: Value =
        serde_json::from_str(calls[0]["function"]["arguments"].as_str().unwrap()).unwrap();
    let obj = args.as_object().unwrap();
    assert_eq!(obj.keys().collect::<Vec<_>>(), vec!["city"], "{v}");
    let city = obj["city"]
        .as_str()
        .unwrap_or_else(|| panic!("city not a string: {v}"));
    assert!(city.chars().count() <= 10, "{v}");
    city.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_calls_from_noise_models_parse_also_while_streaming() {
    // The random-weight models write noise; under a named tool_choice the grammar makes every
    // sampled answer a valid call in the family's own syntax (ChatGLM3's tool-name line and
    // code block, Glaive's <functioncall> JSON, Gorilla's and NexusRaven's Python calls), which
    // the family parser reads back, in one piece and as a stream. Gorilla and NexusRaven run on
    // the tiny DeepSeek- and CodeLlama-style fixtures with a small SentencePiece tokenizer.
    let tools = json!([{"type": "function", "function": {"name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 10}},
            "required": ["city"]}}}]);
    let cases = [
        ("chatglm3", "chatglm3-tiny", None),
        ("mpt", "replit-tiny", None),
        (
            "deepseek-llama",
            "replit-tiny",
            Some("gorilla-openfunctions-v2"),
        ),
        ("codellama", "replit-tiny", Some("nexusraven-v2")),
    ];
    for (fixture, spm, family) in cases {
        let dir = checkpoint(fixture, spm);
        let (base, served, tx) = serve(load_as(&dir, family)).await;
        let client = reqwest::Client::new();
        for seed in 0..6 {
            let body = json!({"model": served, "tools": tools, "max_tokens": 200, "seed": seed,
                "temperature": 1.0,
                "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
                "messages": [{"role": "user", "content": "Weather in Paris?"}]});
            let v: Value = chat(&client, &base, &body).await;
            assert_eq!(
                v["choices"][0]["finish_reason"], "tool_calls",
                "{fixture}: {v}"
            );
            let city = single_call_city(&v);
            // Streamed: the argument fragments concatenate to the same call.
            let text = chat_stream(&client, &base, &body).await;
            let mut name = String::new();
            let mut args = String::new();
            let mut finish = Value::Null;
            for line in text.lines().filter_map(|l| l.strip_prefix("data: ")) {
                if line == "[DONE]" {
                    break;
                }
                let chunk: Value = serde_json::from_str(line).unwrap();
                let choice = &chunk["choices"][0];
                if let Some(calls) = choice["delta"]["tool_calls"].as_array() {
                    for c in calls {
                        name.push_str(c["function"]["name"].as_str().unwrap_or(""));
                        args.push_str(c["function"]["arguments"].as_str().unwrap_or(""));
                    }
                }
                if !choice["finish_reason"].is_null() {
                    finish = choice["finish_reason"].clone();
                }
            }
            assert_eq!(finish, "tool_calls", "{fixture} seed {seed}: {text}");
            assert_eq!(name, "get_weather", "{fixture}: {text}");
            let streamed: Value = serde_json::from_str(&args).unwrap();
            assert_eq!(streamed, json!({"city": city}), "{fixture} seed {seed}");
        }
        let _ = tx.send(());
        std::fs::remove_dir_all(&dir).ok();
    }
}

#[test]
fn ids_beyond_the_tokenizer_are_never_sampled() {
    // A model whose output layer is wider than its tokenizer (as ChatGLM3's 65024 logits over
    // 64798 tokens): the MPT fixture (512 logits) with the 503-piece tokenizer. Sampling at a
    // high temperature from noise would otherwise pick one of the 9 extra ids almost surely.
    let dir = checkpoint("mpt", "chatglm3-tiny");
    let lm = load(&dir);
    assert_eq!(lm.tokenizer.vocab_size(), 503);
    let prompt = lm.tokenizer.encode("hello world", false).unwrap();
    for seed in 0..4 {
        let mut params = lm.default_params();
        params.sampling.temperature = 2.0;
        params.sampling.seed = Some(seed);
        params.max_tokens = Some(150);
        params.ignore_eos = true;
        let stats = lm
            .generate(
                &prompt,
                &params,
                &callm::engine::CancelToken::new(),
                &mut |_| true,
            )
            .unwrap();
        assert_eq!(stats.output_ids.len(), 150);
        assert!(
            stats.output_ids.iter().all(|&id| id < 503),
            "{:?}",
            stats.output_ids
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}
