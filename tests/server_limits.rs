//! Requests that reach the engine's internal limits, through the HTTP server over a real
//! engine (a tiny random-weight model with the byte-level test tokenizer, 256 positions):
//! each is a 400 naming the parameter, in bounded time, never a 500 with internal state;
//! and an answer cut by `max_tokens` says `length` and keeps half-written calls out.

mod server_support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use server_support::{assert_error_shape, start_tiny, TestServer};

/// The tiny model's window (positions of the fixture models).
const CONTEXT: usize = 256;

async fn server() -> TestServer {
    // Failures show the server's log (a 500's details are only there).
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("callm=warn")
        .try_init();
    start_tiny("qwen2", "qwen2.5", CONTEXT).await
}

fn chat(extra: Value) -> Value {
    let mut b = json!({"messages": [{"role": "user", "content": "Call it."}],
        "max_tokens": 8, "seed": 1});
    for (k, v) in extra.as_object().expect("object") {
        b[k] = v.clone();
    }
    b
}

fn tool(name: &str, parameters: Value) -> Value {
    json!({"type": "function", "function": {"name": name, "parameters": parameters}})
}

/// Posts `body`, expects a 400 naming `param` within `secs` seconds; returns the message.
async fn expect_400(s: &TestServer, path: &str, body: &Value, param: &str, secs: u64) -> String {
    let t0 = Instant::now();
    let (status, text) = s.post(path, body).await;
    let took = t0.elapsed();
    assert_eq!(status, 400, "{param}: {text}");
    let v: Value = serde_json::from_str(&text).expect("json");
    let e = assert_error_shape(&v);
    assert_eq!(e["param"], param, "{text}");
    let message = e["message"].as_str().unwrap_or("").to_string();
    for leak in [
        "panicked",
        "assertion",
        "backtrace",
        "internal",
        "non-verbose",
    ] {
        assert!(!message.contains(leak), "{leak} in {message}");
    }
    assert!(message.len() < 2000, "a long message: {message}");
    assert!(
        took < Duration::from_secs(secs),
        "{param}: {took:?} for a refusal"
    );
    message
}

/// A schema whose only instances are infinitely deep: `next` is required and recursive.
fn endless() -> Value {
    json!({"type": "object", "$defs": {"node": {"type": "object",
        "properties": {"next": {"$ref": "#/$defs/node"}}, "required": ["next"]}},
        "properties": {"head": {"$ref": "#/$defs/node"}}, "required": ["head"]})
}

fn huge_pattern() -> Value {
    json!({"type": "object", "properties": {"code": {"type": "string", "pattern": "^a{1000000}$"}},
        "required": ["code"]})
}

/// An integer bound beyond `i64`: llguidance 1.9 recursed forever on it (a stack overflow
/// that aborted the whole server).
fn boundless() -> Value {
    json!({"type": "object", "properties": {"n": {"type": "integer", "minimum": -1e308,
        "maximum": -1e308}}, "required": ["n"]})
}

#[tokio::test]
async fn schemas_the_grammar_cannot_hold_are_400s_naming_them() {
    let s = server().await;
    let p = "/v1/chat/completions";
    for schema in [endless(), huge_pattern(), boundless()] {
        for choice in [
            json!("required"),
            json!({"type": "function", "function": {"name": "f"}}),
        ] {
            let body = chat(json!({"tools": [tool("f", schema.clone())], "tool_choice": choice}));
            expect_400(&s, p, &body, "tools[0].function.parameters", 60).await;
        }
        let two = json!([tool("ok", json!({})), tool("f", schema.clone())]);
        let named = json!({"type": "function", "function": {"name": "f"}});
        let body = chat(json!({"tools": two, "tool_choice": named}));
        expect_400(&s, p, &body, "tools[1].function.parameters", 60).await;
        // The grammar lets the model choose: the schema is reached only if it picks `f`,
        // while generating; then the answer is a 400 naming it all the same.
        let mut reached = 0;
        for seed in 0..12 {
            let body = chat(
                json!({"tools": two, "tool_choice": "required", "seed": seed,
                "temperature": 1.0, "max_tokens": 40}),
            );
            let (status, text) = s.post(p, &body).await;
            match status {
                200 => {}
                400 => {
                    let v: Value = serde_json::from_str(&text).expect("json");
                    assert_eq!(
                        v["error"]["param"], "tools[1].function.parameters",
                        "{text}"
                    );
                    reached += 1;
                }
                _ => panic!("seed {seed}: {text}"),
            }
        }
        assert!(reached > 0, "no seed picked the endless tool");
        let body = chat(json!({"response_format": {"type": "json_schema",
            "json_schema": {"name": "x", "schema": schema.clone()}}}));
        expect_400(&s, p, &body, "response_format.json_schema.schema", 60).await;
    }
}

#[tokio::test]
async fn too_many_or_duplicate_tools_are_refused_at_the_edge() {
    let s = server().await;
    let p = "/v1/chat/completions";
    let many: Vec<Value> = (0..2000)
        .map(|i| tool(&format!("f{i}"), json!({})))
        .collect();
    let body = chat(json!({"tools": many, "tool_choice": "required"}));
    expect_400(&s, p, &body, "tools", 10).await;
    let body = chat(json!({"tools": [tool("a", json!({})), tool("a", json!({}))]}));
    expect_400(&s, p, &body, "tools[1].function.name", 10).await;
}

#[tokio::test]
async fn huge_prompts_are_refused_before_tokenizing() {
    let s = server().await;
    let text = "word ".repeat(3_000_000);
    let body = chat(json!({"messages": [{"role": "user", "content": text}]}));
    let m = expect_400(&s, "/v1/chat/completions", &body, "messages", 10).await;
    assert!(m.contains("bytes"), "{m}");
    // Spread over messages, and through a template that adds to it.
    let messages: Vec<Value> = (0..300)
        .map(|_| json!({"role": "user", "content": "word ".repeat(7)}))
        .collect();
    let body = chat(json!({"messages": messages}));
    let (status, text) = s.post("/v1/chat/completions", &body).await;
    assert_eq!(status, 400, "{text}");
    let body = json!({"prompt": "word ".repeat(3_000_000), "max_tokens": 4});
    expect_400(&s, "/v1/completions", &body, "prompt", 10).await;
}

#[tokio::test]
async fn logit_bias_ids_must_exist_in_the_models_vocabulary() {
    let s = server().await;
    // The vocabulary as Hugging Face tokenizers counts it (with added tokens) for the
    // tokenizer the server loaded; the model's output layer (512) is larger.
    let lm = server_support::tiny_model("qwen2", "qwen2.5", CONTEXT);
    let vocab = lm.tokenizer.inner().get_vocab_size(true);
    assert!(
        vocab < 512,
        "the test needs a tokenizer smaller than the output layer"
    );
    for id in [
        vocab.to_string(),
        "511".into(),
        "100000".into(),
        "4294967295".into(),
    ] {
        let body = chat(json!({"logit_bias": {&id: 5}}));
        let m = expect_400(&s, "/v1/chat/completions", &body, "logit_bias", 10).await;
        assert!(m.contains(&id), "{m}");
        let body = json!({"prompt": "hi", "max_tokens": 2, "logit_bias": {&id: 5}});
        expect_400(&s, "/v1/completions", &body, "logit_bias", 10).await;
    }
    let last = (vocab - 1).to_string();
    let body = chat(json!({"logit_bias": {last: -100, "0": 3}}));
    let (status, text) = s.post("/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{text}");
}

/// Calls under `required` with room for about one and a half: every answer the limit cut
/// says `length`, keeps its complete calls, and holds no half-written call anywhere.
#[tokio::test]
async fn a_call_cut_by_max_tokens_finishes_with_length_and_stays_out_of_content() {
    let s = server().await;
    let tools = json!([tool("ping", json!({})), tool("pong", json!({}))]);
    let max_tokens = 48;
    let (mut cut, mut cut_after_a_call) = (0, 0);
    for seed in 0..24 {
        for stream in [false, true] {
            let body = chat(
                json!({"tools": tools, "tool_choice": "required", "seed": seed,
                "temperature": 1.0, "max_tokens": max_tokens, "stream": stream}),
            );
            let (status, text) = s.post("/v1/chat/completions", &body).await;
            assert_eq!(status, 200, "{text}");
            let (finish, content, calls, completion) = if stream {
                from_stream(&text)
            } else {
                let v: Value = serde_json::from_str(&text).expect("json");
                let c = &v["choices"][0];
                let calls = c["message"]["tool_calls"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                (
                    c["finish_reason"].as_str().unwrap_or("").to_string(),
                    c["message"]["content"].as_str().unwrap_or("").to_string(),
                    calls,
                    v["usage"]["completion_tokens"].as_u64(),
                )
            };
            for call in &calls {
                let args = call["function"]["arguments"].as_str().expect("arguments");
                let parsed: Value = serde_json::from_str(args).unwrap_or_else(|e| {
                    panic!("seed {seed}: a cut call was returned ({e}): {args}")
                });
                assert!(parsed.is_object());
            }
            assert!(
                !content.contains("tool_call") && !content.contains('{'),
                "seed {seed} stream {stream}: call markup in content: {content:?}"
            );
            if completion == Some(max_tokens) || finish == "length" {
                assert_eq!(finish, "length", "seed {seed} stream {stream}: {text}");
                cut += 1;
                cut_after_a_call += usize::from(!calls.is_empty());
            } else {
                assert_eq!(finish, "tool_calls", "seed {seed}: {text}");
                assert!(!calls.is_empty());
            }
        }
    }
    // The case in question happened: complete calls, then one the limit cut.
    assert!(
        cut_after_a_call > 0,
        "no answer was cut after a complete call ({cut} cut)"
    );
}

/// finish_reason, content, calls and completion tokens of a chat stream.
fn from_stream(text: &str) -> (String, String, Vec<Value>, Option<u64>) {
    let mut finish = String::new();
    let mut content = String::new();
    let mut calls: Vec<Value> = Vec::new();
    for d in server_support::sse_data(text) {
        if d == "[DONE]" {
            continue;
        }
        let v: Value = serde_json::from_str(&d).expect("chunk");
        let Some(c) = v["choices"].get(0) else {
            continue;
        };
        if let Some(f) = c["finish_reason"].as_str() {
            finish = f.to_string();
        }
        if let Some(t) = c["delta"]["content"].as_str() {
            content.push_str(t);
        }
        for tc in c["delta"]["tool_calls"].as_array().into_iter().flatten() {
            let i = tc["index"].as_u64().unwrap_or(0) as usize;
            while calls.len() <= i {
                calls.push(json!({"function": {"arguments": ""}}));
            }
            if let Some(a) = tc["function"]["arguments"].as_str() {
                let prev = calls[i]["function"]["arguments"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                calls[i]["function"]["arguments"] = json!(prev + a);
            }
        }
    }
    (finish, content, calls, None)
}
