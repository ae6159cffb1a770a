//! The Messages and Responses APIs over the real engine (a tiny random-weight Qwen2 with a
//! byte-level tokenizer, as in `server_constrain.rs`): the grammar enforces `tool_choice`
//! any/tool/required and `json_schema`, streamed argument fragments concatenate to the final
//! arguments, stop sequences are reported, request text never becomes a control token, and a
//! `previous_response_id` continuation starts from the prefix cache.

use std::sync::Arc;
use std::time::Duration;

use callm::chat::{EngineBackend, RenamedBackend};
use callm::registry::Registry;
use callm::runtime::{LoadOptions, LoadedModel};
use callm::server::{router, serve_on, AppState};
use serde_json::{json, Value};

fn model_id() -> String {
    format!("callm-apis-tiny-{}", std::process::id())
}

fn load_tiny() -> LoadedModel {
    // One directory per server: a file another test rewrites under a mapped model is a SIGBUS.
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("{}-{n}", model_id()));
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

struct Server {
    base: String,
    client: reqwest::Client,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Server {
    async fn start() -> Server {
        let lm = Arc::new(load_tiny());
        let backend = RenamedBackend::new(Arc::new(EngineBackend::new(lm)), model_id());
        let state = AppState::new(Arc::new(backend), 1, 16, None);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let app = router(state, 1 << 20);
        tokio::spawn(async move {
            let _ = serve_on(listener, app, async {
                let _ = rx.await;
            })
            .await;
        });
        Server {
            base: format!("http://{addr}"),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(120))
                .build()
                .unwrap(),
            _stop: tx,
        }
    }

    async fn post(&self, path: &str, body: &Value) -> (u16, String) {
        let resp = self
            .client
            .post(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    async fn json(&self, path: &str, body: &Value) -> Value {
        let (status, text) = self.post(path, body).await;
        assert_eq!(status, 200, "{text}");
        serde_json::from_str(&text).unwrap()
    }
}

/// The data of each event of an SSE body.
fn events(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

fn schema() -> Value {
    json!({"type": "object", "properties": {
        "answer": {"enum": ["yes", "no"]},
        "n": {"type": "integer", "minimum": 1, "maximum": 9}
    }, "required": ["answer", "n"], "additionalProperties": false})
}

fn valid(v: &Value) {
    let val = jsonschema::validator_for(&schema()).unwrap();
    assert!(val.is_valid(v), "{v}");
}

fn anthropic(extra: Value) -> Value {
    let mut b = json!({"model": model_id(), "max_tokens": 60, "temperature": 0.0,
        "messages": [{"role": "user", "content": "Yes or no?"}]});
    for (k, v) in extra.as_object().unwrap() {
        b[k] = v.clone();
    }
    b
}

fn responses(extra: Value) -> Value {
    let mut b = json!({"model": model_id(), "input": "Yes or no?", "temperature": 0.0,
        "max_output_tokens": 60});
    for (k, v) in extra.as_object().unwrap() {
        b[k] = v.clone();
    }
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_tool_choice_is_enforced_and_streamed_input_is_the_input() {
    let s = Server::start().await;
    let tools = json!([{"name": "pick", "description": "Pick", "input_schema": schema()}]);
    // One call each (parallel calls may run into `max_tokens`, which then is the reason).
    for choice in [
        json!({"type": "any", "disable_parallel_tool_use": true}),
        json!({"type": "tool", "name": "pick"}),
    ] {
        let body = anthropic(json!({"tools": tools, "tool_choice": choice}));
        let v = s.json("/v1/messages", &body).await;
        assert_eq!(v["stop_reason"], "tool_use", "{v}");
        let calls: Vec<&Value> = v["content"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|b| b["type"] == "tool_use")
            .collect();
        assert!(!calls.is_empty(), "{v}");
        for c in &calls {
            assert_eq!(c["name"], "pick");
            assert!(c["id"].as_str().unwrap().starts_with("toolu_"));
            valid(&c["input"]);
        }
        // The same greedy answer streamed: fragments concatenate to the same input.
        let mut stream = body.clone();
        stream["stream"] = json!(true);
        let (status, text) = s.post("/v1/messages", &stream).await;
        assert_eq!(status, 200, "{text}");
        let mut partial = String::new();
        for e in events(&text) {
            if e["type"] == "content_block_delta" && e["index"] == 0 {
                partial += e["delta"]["partial_json"].as_str().unwrap_or_default();
            }
        }
        let input: Value = serde_json::from_str(&partial).unwrap();
        assert_eq!(&input, &calls[0]["input"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_json_schema_and_required_calls_are_enforced() {
    let s = Server::start().await;
    let format =
        json!({"format": {"type": "json_schema", "name": "a", "schema": schema(), "strict": true}});
    let v = s
        .json("/v1/responses", &responses(json!({"text": format})))
        .await;
    assert_eq!(v["status"], "completed", "{v}");
    let text = v["output"][0]["content"][0]["text"].as_str().unwrap();
    valid(&serde_json::from_str(text).unwrap());

    let tools =
        json!([{"type": "function", "name": "pick", "parameters": schema(), "strict": true}]);
    let body =
        responses(json!({"tools": tools, "tool_choice": "required", "parallel_tool_calls": false}));
    let v = s.json("/v1/responses", &body).await;
    let call = &v["output"][0];
    assert_eq!(call["type"], "function_call", "{v}");
    assert_eq!(call["name"], "pick");
    let args: Value = serde_json::from_str(call["arguments"].as_str().unwrap()).unwrap();
    valid(&args);
    let mut stream = body.clone();
    stream["stream"] = json!(true);
    let (_, text) = s.post("/v1/responses", &stream).await;
    let evs = events(&text);
    let streamed: String = evs
        .iter()
        .filter(|e| e["type"] == "response.function_call_arguments.delta" && e["output_index"] == 0)
        .map(|e| e["delta"].as_str().unwrap())
        .collect();
    let done = &evs.last().unwrap()["response"]["output"][0];
    assert_eq!(streamed, done["arguments"].as_str().unwrap());
    assert_eq!(
        done["arguments"], call["arguments"],
        "greedy: the same call"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_sequences_end_the_answer_where_the_free_answer_had_them() {
    let s = Server::start().await;
    let free = s
        .json("/v1/messages", &anthropic(json!({"max_tokens": 40})))
        .await;
    assert_eq!(free["stop_reason"], "max_tokens", "{free}");
    let text: Vec<char> = free["content"][0]["text"]
        .as_str()
        .unwrap()
        .chars()
        .collect();
    assert!(text.len() > 8, "{free}");
    let stop: String = text[text.len() / 2..text.len() / 2 + 2].iter().collect();
    let whole: String = text.iter().collect();
    let before = &whole[..whole.find(&stop).unwrap()];
    let v = s
        .json(
            "/v1/messages",
            &anthropic(json!({"max_tokens": 40, "stop_sequences": ["\u{1}never", stop]})),
        )
        .await;
    assert_eq!(v["stop_reason"], "stop_sequence", "{v}");
    assert_eq!(v["stop_sequence"], stop);
    let got = v["content"]
        .as_array()
        .unwrap()
        .first()
        .map_or("", |b| b["text"].as_str().unwrap());
    assert_eq!(got, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_text_never_becomes_a_control_token() {
    let s = Server::start().await;
    // Tokenized as text (llama.cpp's /tokenize parses special tokens): one control token.
    let v = s.json("/tokenize", &json!({"content": "<|im_end|>"})).await;
    assert_eq!(v["count"], 1, "{v}");
    let count = |text: &str| {
        let body = json!({"model": model_id(), "messages": [{"role": "user", "content": text}]});
        let s = &s;
        async move {
            s.json("/v1/messages/count_tokens", &body).await["input_tokens"]
                .as_u64()
                .unwrap()
        }
    };
    let plain = count("").await;
    let with_token = count("<|im_end|>").await;
    assert!(
        with_token >= plain + 5,
        "a control token slipped in: {plain} vs {with_token}"
    );
    let used = |text: &str| {
        let body = responses(json!({"input": text, "max_output_tokens": 1}));
        let s = &s;
        async move {
            s.json("/v1/responses", &body).await["usage"]["input_tokens"]
                .as_u64()
                .unwrap()
        }
    };
    assert!(used("<|im_end|>").await >= used("").await + 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_continued_response_starts_from_the_prefix_cache() {
    let s = Server::start().await;
    let first = s
        .json(
            "/v1/responses",
            &responses(json!({"instructions": "You answer questions about the weather in European capitals.",
                "input": "Is it sunny in Paris today?", "max_output_tokens": 4})),
        )
        .await;
    assert_eq!(
        first["usage"]["input_tokens_details"]["cached_tokens"], 0,
        "{first}"
    );
    let second = s
        .json(
            "/v1/responses",
            &responses(json!({"instructions": "You answer questions about the weather in European capitals.",
                "previous_response_id": first["id"], "input": "And Rome?", "max_output_tokens": 4})),
        )
        .await;
    let cached = second["usage"]["input_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap();
    assert!(cached >= 64, "{second}");
    assert!(
        second["usage"]["input_tokens"].as_u64().unwrap()
            > first["usage"]["input_tokens"].as_u64().unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_output_config_format_is_enforced() {
    let s = Server::start().await;
    let body = anthropic(
        json!({"output_config": {"format": {"type": "json_schema", "schema": schema()}}}),
    );
    let v = s.json("/v1/messages", &body).await;
    assert_eq!(v["stop_reason"], "end_turn", "{v}");
    valid(&serde_json::from_str(v["content"][0]["text"].as_str().unwrap()).unwrap());
}
