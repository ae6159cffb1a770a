//! Reasoning kept apart, end to end on a tiny model: the random-weight Qwen3 fixture with a
//! byte-level tokenizer, loaded as family `qwen3`, under its grammars (what a model that
//! writes noise does when constrained). The answer's reasoning is `reasoning_content`, never
//! content nor a call; under `tool_choice: required` the reasoning comes first, bounded by
//! `max_reasoning_chars`, then valid calls; `enable_thinking: false` (or `reasoning_effort:
//! "none"`) leaves no reasoning.
//! Through the server: `message.reasoning_content` and `delta.reasoning_content`.

use std::sync::Arc;
use std::time::Duration;

use callm::chat::{self, ChatEvent, ChatFinish, EngineBackend};
use callm::engine::CancelToken;
use callm::openai::ChatCompletionRequest;
use callm::registry::Registry;
use callm::request::ChatRequest;
use callm::runtime::{LoadOptions, LoadedModel};
use callm::server::{router, serve_on, AppState};
use serde_json::{json, Value};

/// Qwen3's generation prompt (thinking on, or the empty block of `enable_thinking: false`)
/// after a plain ChatML conversation: the full template's tool list would not fit the tiny
/// model's 256 positions.
const TEMPLATE: &str = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}<|im_start|>assistant\n{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}";

fn model_id() -> String {
    format!("callm-thinking-tiny-{}", std::process::id())
}

fn load() -> LoadedModel {
    load_with(Default::default())
}

/// [`load`] with a server's default reasoning settings (`serve --reasoning-effort`).
fn load_with(reasoning: callm::request::ReasoningControl) -> LoadedModel {
    // One directory per load: the tests run in parallel, and a model file another test rewrites
    // while this one maps or reads it fails the load (seen: "too short to be a safetensors
    // file") or is a SIGBUS. The model's own directory keeps the name the server serves it by.
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let top = std::env::temp_dir().join(format!("{}-{n}", model_id()));
    let dir = top.join(model_id());
    callm::constrain::testing::tiny_model_dir(
        "qwen3",
        &dir,
        &json!({"eos_token": "<|im_end|>", "chat_template": TEMPLATE}).to_string(),
    )
    .unwrap();
    let opts = LoadOptions {
        model: dir.display().to_string(),
        family: Some("qwen3".into()),
        context: Some(256),
        ..Default::default()
    };
    let mut lm = LoadedModel::load(&opts, &Registry::builtin()).unwrap();
    lm.renderer.set_default_reasoning(reasoning);
    // Loaded (the weights stay mapped after the files are unlinked).
    std::fs::remove_dir_all(&top).ok();
    lm
}

fn tools() -> Value {
    json!([{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string", "maxLength": 8}},
        "required": ["city"]}}}])
}

fn request(extra: Value) -> ChatRequest {
    let mut body = json!({"model": model_id(), "messages": [{"role": "user", "content": "Weather?"}],
        "tools": tools(), "tool_choice": "required", "max_reasoning_chars": 24, "parallel_tool_calls": false,
        "temperature": 1.0, "max_tokens": 160});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let wire: ChatCompletionRequest = serde_json::from_value(body).unwrap();
    ChatRequest::try_from(wire).unwrap()
}

#[test]
fn reasoning_first_then_a_valid_call() {
    let lm = load();
    let mut reasoned = 0;
    for seed in 0..8 {
        let req = request(json!({ "seed": seed }));
        let mut streamed = String::new();
        let mut content_events = String::new();
        let outcome = chat::run(&lm, &req, 0, &CancelToken::new(), &mut |ev| {
            match ev {
                ChatEvent::Reasoning(t) => streamed.push_str(&t),
                ChatEvent::Content(t) => content_events.push_str(&t),
                _ => {}
            }
            true
        })
        .unwrap();
        let m = &outcome.message;
        assert_eq!(outcome.finish, ChatFinish::ToolCalls, "seed {seed}: {m:?}");
        assert_eq!(m.content, None, "seed {seed}: {m:?}");
        assert!(content_events.is_empty(), "seed {seed}: {content_events:?}");
        assert!(!m.tool_calls.is_empty(), "seed {seed}");
        for c in &m.tool_calls {
            assert_eq!(c.name, "get_weather");
            let args: Value = serde_json::from_str(&c.arguments).unwrap();
            assert!(
                args["city"].as_str().unwrap().chars().count() <= 8,
                "{args}"
            );
        }
        // The streamed reasoning is the outcome's, within the budget, without the markers.
        assert_eq!(m.reasoning_content.clone().unwrap_or_default(), streamed);
        if let Some(r) = &m.reasoning_content {
            reasoned += 1;
            assert!(r.chars().count() <= 24, "{r:?}");
            assert!(!r.contains("<think>") && !r.contains("</think>"), "{r:?}");
        }
    }
    assert!(reasoned > 0, "no seed reasoned first");
}

/// `reasoning_tokens` against the generated tokens themselves (their texts, from the
/// logprobs): a block that opens the answer ends with the first token after which the
/// output holds the close marker, and every token up to that one is the block's.
#[test]
fn reasoning_tokens_count_the_block() {
    let lm = load();
    let mut with = 0;
    for seed in 0..8 {
        let req = request(json!({ "seed": seed, "logprobs": true }));
        let mut tokens: Vec<String> = Vec::new();
        let outcome = chat::run(&lm, &req, 0, &CancelToken::new(), &mut |ev| {
            if let ChatEvent::Logprob(e) = ev {
                tokens.push(e.token);
            }
            true
        })
        .unwrap();
        let u = outcome.usage;
        assert_eq!(tokens.len(), u.completion_tokens as usize, "seed {seed}");
        let want = if outcome.message.reasoning_content.is_some() {
            with += 1;
            let mut text = String::new();
            let end = tokens
                .iter()
                .position(|t| {
                    text.push_str(t);
                    text.contains("</think>")
                })
                .expect("a closed block (a call follows it)");
            assert!(
                text.trim_start().starts_with("<think>"),
                "seed {seed}: {text:?}"
            );
            end + 1
        } else {
            0
        };
        assert_eq!(
            u.reasoning_tokens,
            Some(want as u32),
            "seed {seed}: {tokens:?}"
        );
        assert!(
            want < tokens.len(),
            "seed {seed}: the call's tokens follow the block"
        );
    }
    assert!(with > 0, "no seed reasoned");
}

/// What the reasoning budget feeds once the block is full (the templates' close).
const CLOSE: &str = "\n</think>\n\n";

/// One run of `req` with its tokens' texts (from the logprobs) and its usage's
/// `reasoning_tokens`.
fn run_tokens(lm: &LoadedModel, req: &ChatRequest) -> (Vec<String>, usize, ChatFinish) {
    let mut tokens = Vec::new();
    let outcome = chat::run(lm, req, 0, &CancelToken::new(), &mut |ev| {
        if let ChatEvent::Logprob(e) = ev {
            tokens.push(e.token);
        }
        true
    })
    .unwrap();
    assert_eq!(tokens.len(), outcome.usage.completion_tokens as usize);
    let reasoning = outcome.usage.reasoning_tokens.unwrap_or(0) as usize;
    (tokens, reasoning, outcome.finish)
}

/// Checks a block closed by the budget and returns where the close began: the `n_close`
/// tokens there are the close, at most 3 tokens after the first `budget` (the close waits for
/// a whole character: UTF-8 takes up to 4 bytes, one token each with the byte-level test
/// tokenizer), and the block's tokens end with the one that completes the close marker.
fn closed_at(
    tokens: &[String],
    reasoning: usize,
    budget: usize,
    n_close: usize,
    seed: u64,
) -> usize {
    let start = (budget..=budget + 3)
        .find(|&s| tokens.len() >= s + n_close && tokens[s..s + n_close].concat() == CLOSE)
        .unwrap_or_else(|| panic!("seed {seed}: no close after {budget} tokens: {tokens:?}"));
    let through_marker = (1..=n_close)
        .find(|&j| tokens[start..start + j].concat().contains("</think>"))
        .expect("the close holds the marker");
    assert_eq!(reasoning, start + through_marker, "seed {seed}: {tokens:?}");
    start
}

/// `max_reasoning_tokens` (Anthropic's `thinking.budget_tokens`) under a required call: a
/// block that reaches the budget is closed by the templates' close right there, the tokens
/// before it are those the same seed gives without a budget, and a valid call follows.
#[test]
fn max_reasoning_tokens_closes_the_block_then_the_call_follows() {
    // More than the byte-level test tokenizer's open marker takes (7 tokens).
    const BUDGET: usize = 12;
    let lm = load();
    let n_close = lm.tokenizer.encode(CLOSE, false).unwrap().len();
    let (mut capped, mut longer_free) = (0, 0);
    for seed in 0..8 {
        let base = json!({"seed": seed, "logprobs": true, "max_reasoning_chars": 64});
        let (free, free_reasoning, _) = run_tokens(&lm, &request(base.clone()));
        if free_reasoning > BUDGET + n_close {
            longer_free += 1;
        }
        let mut with = base;
        with["max_reasoning_tokens"] = json!(BUDGET);
        let (tokens, reasoning, finish) = run_tokens(&lm, &request(with));
        if reasoning > BUDGET {
            capped += 1;
            let start = closed_at(&tokens, reasoning, BUDGET, n_close, seed);
            assert_eq!(tokens[..start], free[..start], "seed {seed}");
        } else {
            // Closed by the model within the budget: as without one.
            assert_eq!(tokens, free, "seed {seed}");
        }
        assert_eq!(finish, ChatFinish::ToolCalls, "seed {seed}: {tokens:?}");
    }
    assert!(capped > 0, "no block reached the budget");
    assert!(longer_free > 0, "no block ran past the budget without it");
}

/// A prompt that opens the block (thinking templates' `<think>\n` generation prompt), with
/// no grammar: the first `max_reasoning_tokens` tokens are reasoning, then the close, then
/// the answer.
#[test]
fn max_reasoning_tokens_bounds_a_block_the_prompt_opened() {
    const BUDGET: usize = 3;
    let dir = std::env::temp_dir().join(format!("{}-opened", model_id()));
    let template = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}<|im_start|>assistant\n<think>\n";
    callm::constrain::testing::tiny_model_dir(
        "qwen3",
        &dir,
        &json!({"eos_token": "<|im_end|>", "chat_template": template}).to_string(),
    )
    .unwrap();
    let opts = LoadOptions {
        model: dir.display().to_string(),
        family: Some("qwen3".into()),
        context: Some(256),
        ..Default::default()
    };
    let lm = LoadedModel::load(&opts, &Registry::builtin()).unwrap();
    let n_close = lm.tokenizer.encode(CLOSE, false).unwrap().len();
    let mut capped = 0;
    for seed in 0..6 {
        let body = json!({"model": model_id(), "messages": [{"role": "user", "content": "Hi"}],
            "temperature": 1.0, "max_tokens": 40, "seed": seed, "logprobs": true,
            "max_reasoning_tokens": BUDGET});
        let wire: ChatCompletionRequest = serde_json::from_value(body).unwrap();
        let (tokens, reasoning, _) = run_tokens(&lm, &ChatRequest::try_from(wire).unwrap());
        if tokens.len() >= BUDGET + 3 + n_close {
            // Still open after the budget (no end token, no close of its own): closed there.
            capped += 1;
            closed_at(&tokens, reasoning, BUDGET, n_close, seed);
        } else {
            assert!(reasoning <= tokens.len(), "seed {seed}: {tokens:?}");
        }
    }
    assert!(capped > 0, "no answer ran past the budget");
}

/// Thinking switched off by the template variable, or by the effort level `none` (which the
/// template layer turns into the variable this template reads).
#[test]
fn thinking_switched_off_leaves_no_reasoning() {
    let lm = load();
    for off in [
        json!({"chat_template_kwargs": {"enable_thinking": false}}),
        json!({"reasoning_effort": "none"}),
    ] {
        let prompt = chat::prepare(&lm, &request(off.clone()), 0).unwrap();
        // The call opening is forced again: the prompt closed the (empty) block already.
        assert_eq!(prompt.forced, "<tool_call>\n{\"name\": \"", "{off}");
        for seed in 0..4 {
            let mut body = off.clone();
            body["seed"] = json!(seed);
            let req = request(body);
            let outcome = chat::run(&lm, &req, 0, &CancelToken::new(), &mut |_| true).unwrap();
            assert_eq!(outcome.message.reasoning_content, None);
            assert_eq!(outcome.usage.reasoning_tokens.unwrap_or(0), 0);
            assert_eq!(outcome.finish, ChatFinish::ToolCalls);
        }
    }
    // Any other level leaves thinking on: the grammar lets the block come first.
    let on = chat::prepare(&lm, &request(json!({"reasoning_effort": "low"})), 0).unwrap();
    assert_eq!(on.forced, "");
}

/// A server started with `--reasoning-effort none`: requests that say nothing of reasoning
/// get thinking off; one that asks for a level, or sets the template variable, keeps it.
#[test]
fn a_default_effort_applies_to_requests_that_ask_nothing() {
    use callm::request::{Effort, ReasoningControl};
    let lm = load_with(ReasoningControl::effort(Effort::None));
    let forced = |extra: Value| chat::prepare(&lm, &request(extra), 0).unwrap().forced;
    assert_eq!(forced(json!({})), "<tool_call>\n{\"name\": \"");
    let outcome = chat::run(
        &lm,
        &request(json!({"seed": 1})),
        0,
        &CancelToken::new(),
        &mut |_| true,
    )
    .unwrap();
    assert_eq!(outcome.message.reasoning_content, None);
    assert_eq!(forced(json!({"reasoning_effort": "high"})), "");
    assert_eq!(
        forced(json!({"chat_template_kwargs": {"enable_thinking": true}})),
        ""
    );
}

async fn post(base: &str, body: Value) -> String {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    let resp = client
        .post(format!("{base}/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    resp.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_answers_reasoning_content() {
    let lm = Arc::new(load());
    // A seed whose answer reasons first (found through the pipeline itself).
    let seed = (0..8)
        .find(|&s| {
            chat::run(
                &lm,
                &request(json!({ "seed": s })),
                0,
                &CancelToken::new(),
                &mut |_| true,
            )
            .unwrap()
            .message
            .reasoning_content
            .is_some()
        })
        .expect("a seed that reasons");
    let state = AppState::new(Arc::new(EngineBackend::new(lm)), 2, 16, None);
    let app = router(state, 1 << 20);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (_stop, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = serve_on(listener, app, async {
            let _ = rx.await;
        })
        .await;
    });
    let body = json!({"model": model_id(), "messages": [{"role": "user", "content": "Weather?"}],
        "tools": tools(), "tool_choice": "required", "max_reasoning_chars": 24, "parallel_tool_calls": false,
        "temperature": 1.0, "max_tokens": 160, "seed": seed});
    let v: Value = serde_json::from_str(&post(&base, body.clone()).await).unwrap();
    let message = &v["choices"][0]["message"];
    let reasoning = message["reasoning_content"]
        .as_str()
        .expect("reasoning_content");
    assert!(!reasoning.is_empty());
    assert_eq!(message["content"], Value::Null);
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    // OpenAI's usage names the reasoning's share of the completion tokens.
    let reasoning_tokens = v["usage"]["completion_tokens_details"]["reasoning_tokens"]
        .as_u64()
        .expect("completion_tokens_details.reasoning_tokens");
    let completion_tokens = v["usage"]["completion_tokens"].as_u64().unwrap();
    assert!(
        reasoning_tokens >= 2 && reasoning_tokens < completion_tokens,
        "{}",
        v["usage"]
    );

    let mut streamed = body;
    streamed["stream"] = json!(true);
    let text = post(&base, streamed).await;
    let mut deltas = String::new();
    for line in text.lines() {
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        if data == "[DONE]" {
            break;
        }
        let chunk: Value = serde_json::from_str(data).unwrap();
        let delta = &chunk["choices"][0]["delta"];
        if let Some(r) = delta["reasoning_content"].as_str() {
            deltas.push_str(r);
        }
        assert!(
            delta["content"].as_str().unwrap_or("").is_empty(),
            "content delta in {data}"
        );
    }
    assert_eq!(deltas, reasoning);
}
