//! `response_format` and constrained tool calls through the HTTP server over the real engine
//! (a tiny random-weight model with a byte-level tokenizer, see `constrain_tiny.rs`):
//! answer shapes, streaming, and 400s naming the bad schema.

use std::sync::Arc;
use std::time::Duration;

use callm::chat::EngineBackend;
use callm::registry::Registry;
use callm::runtime::LoadOptions;
use callm::runtime::LoadedModel;
use callm::server::{router, serve_on, AppState};
use serde_json::{json, Value};

fn load_tiny() -> LoadedModel {
    let dir = std::env::temp_dir().join(model_id());
    callm::constrain::testing::tiny_model_dir("qwen2", &dir, r#"{"eos_token": "<|im_end|>"}"#)
        .unwrap();
    let opts = LoadOptions {
        model: dir.display().to_string(),
        family: Some("qwen2.5".into()),
        context: Some(256),
        ..Default::default()
    };
    LoadedModel::load(&opts, &Registry::builtin()).unwrap()
}

async fn start() -> (String, tokio::sync::oneshot::Sender<()>) {
    let lm = Arc::new(load_tiny());
    let state = AppState::new(Arc::new(EngineBackend::new(lm)), 2, 16, None);
    let app = router(state, 1 << 20);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = serve_on(listener, app, async {
            let _ = rx.await;
        })
        .await;
    });
    (format!("http://{addr}"), tx)
}

async fn post(base: &str, body: Value) -> (u16, String) {
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
    (resp.status().as_u16(), resp.text().await.unwrap())
}

fn schema() -> Value {
    json!({"type": "object", "properties": {
        "answer": {"enum": ["yes", "no"]},
        "n": {"type": "integer", "minimum": 1, "maximum": 9}
    }, "required": ["answer", "n"], "additionalProperties": false})
}

fn model_id() -> String {
    format!("callm-server-constrain-{}", std::process::id())
}

fn body(extra: Value) -> Value {
    let mut b = json!({"model": model_id(), "messages": [{"role": "user", "content": "Yes or no?"}],
        "seed": 3, "temperature": 1.0});
    for (k, v) in extra.as_object().unwrap() {
        b[k] = v.clone();
    }
    b
}

fn valid(schema: &Value, text: &str) {
    let v: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text:?}"));
    let val = jsonschema::validator_for(schema).unwrap();
    assert!(val.is_valid(&v), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_formats_and_schema_errors() {
    let (base, _stop) = start().await;

    // json_schema: the content is JSON valid against the schema.
    let rf = json!({"type": "json_schema", "json_schema": {"name": "a", "schema": schema(), "strict": true}});
    for seed in 0..4 {
        let mut b = body(json!({ "response_format": rf }));
        b["seed"] = json!(seed);
        let (status, text) = post(&base, b).await;
        assert_eq!(status, 200, "{text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["choices"][0]["finish_reason"], "stop", "{v}");
        valid(
            &schema(),
            v["choices"][0]["message"]["content"].as_str().unwrap(),
        );
    }

    // Streaming: the content deltas concatenate to valid JSON.
    let (status, text) = post(&base, body(json!({"response_format": rf, "stream": true}))).await;
    assert_eq!(status, 200, "{text}");
    let mut content = String::new();
    for line in text.lines().filter_map(|l| l.strip_prefix("data: ")) {
        if line == "[DONE]" {
            break;
        }
        let chunk: Value = serde_json::from_str(line).unwrap();
        if let Some(c) = chunk["choices"][0]["delta"]["content"].as_str() {
            content.push_str(c);
        }
    }
    valid(&schema(), &content);

    // json_object: the answer starts an object (the forced opening) and is JSON when complete.
    let (status, text) = post(
        &base,
        body(json!({"response_format": {"type": "json_object"}, "max_tokens": 40})),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    let content = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(content.starts_with('{'), "{content}");

    // Schemas that cannot be enforced are 400s naming the field.
    let bad = [
        (
            json!({"response_format": {"type": "json_schema", "json_schema": {"name": "a",
                "schema": {"type": "object", "properties": {"x": {"$ref": "#/$defs/nope"}}}}}}),
            "response_format.json_schema.schema",
        ),
        (
            json!({"response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": 5}}}),
            "response_format.json_schema.schema",
        ),
        (
            json!({"tools": [{"type": "function", "function": {"name": "f",
                "parameters": {"type": "string"}}}], "tool_choice": "required"}),
            "tools[0].function.parameters",
        ),
    ];
    for (extra, param) in bad {
        let (status, text) = post(&base, body(extra)).await;
        assert_eq!(status, 400, "{text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["error"]["param"], param, "{v}");
        assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
    }

    // A named tool choice is one valid call.
    let tools = json!([{"type": "function", "function": {"name": "pick", "parameters": schema()}}]);
    let (status, text) = post(
        &base,
        body(json!({"tools": tools, "tool_choice": {"type": "function", "function": {"name": "pick"}}})),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    let calls = v["choices"][0]["message"]["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1, "{v}");
    assert_eq!(calls[0]["function"]["name"], "pick");
    valid(
        &schema(),
        calls[0]["function"]["arguments"].as_str().unwrap(),
    );

    // Call ids are unique across requests whatever their seed: the same seed twice samples
    // the same call, under two different ids (a conversation's history never repeats one).
    let named = json!({"tools": tools, "tool_choice": {"type": "function", "function": {"name": "pick"}}, "n": 2});
    let mut ids = Vec::new();
    let mut arguments = Vec::new();
    for _ in 0..2 {
        let (status, text) = post(&base, body(named.clone())).await;
        assert_eq!(status, 200, "{text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        let first = &v["choices"][0]["message"]["tool_calls"][0];
        arguments.push(first["function"]["arguments"].clone());
        for choice in v["choices"].as_array().unwrap() {
            let id = choice["message"]["tool_calls"][0]["id"].as_str().unwrap();
            assert!(id.starts_with("call_") && id.len() == 29, "{id}");
            ids.push(id.to_string());
        }
    }
    assert_eq!(arguments[0], arguments[1], "the seed reproduces the call");
    let distinct: std::collections::HashSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), ids.len(), "repeated ids: {ids:?}");
}
