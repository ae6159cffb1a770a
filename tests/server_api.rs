//! API-shape tests of the server over the mock engine: routes, OpenAI response shapes
//! (non-streaming and streaming) and tolerance of SDK bodies.

mod server_support;

use serde_json::{json, Value};
use server_support::{keys, names, sse_data, start, tools, Config, MODEL};

fn chat(content: &str) -> Value {
    json!({"model": MODEL, "messages": [{"role": "user", "content": content}]})
}

fn parse_stream(body: &str) -> Vec<Value> {
    let data = sse_data(body);
    assert_eq!(
        data.last().map(String::as_str),
        Some("[DONE]"),
        "stream must end with [DONE]: {body}"
    );
    data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap_or_else(|e| panic!("chunk not JSON ({e}): {d}")))
        .collect()
}

#[tokio::test]
async fn routes_with_and_without_v1() {
    let s = start(Config::default()).await;
    for prefix in ["/v1", ""] {
        let (status, v) = s
            .post_json(&format!("{prefix}/chat/completions"), &chat("hi"))
            .await;
        assert_eq!(status, 200, "{prefix}: {v}");
        assert_eq!(v["object"], "chat.completion");
        let (status, v) = s
            .post_json(
                &format!("{prefix}/completions"),
                &json!({"model": MODEL, "prompt": "Once"}),
            )
            .await;
        assert_eq!(status, 200, "{prefix}: {v}");
        assert_eq!(v["object"], "text_completion");
        let models: Value = s
            .client
            .get(format!("{}{prefix}/models", s.base))
            .send()
            .await
            .expect("send")
            .json()
            .await
            .expect("json");
        assert_eq!(keys(&models), names(&["object", "data"]));
        assert_eq!(models["object"], "list");
        assert_eq!(
            keys(&models["data"][0]),
            names(&["id", "object", "created", "owned_by"])
        );
        assert_eq!(models["data"][0]["id"], MODEL);
        assert_eq!(models["data"][0]["object"], "model");
        let health = s
            .client
            .get(format!("{}{prefix}/health", s.base))
            .send()
            .await
            .expect("send");
        assert_eq!(health.status().as_u16(), 200);
    }
    let one = s
        .client
        .get(format!("{}/v1/models/{MODEL}", s.base))
        .send()
        .await
        .expect("send");
    assert_eq!(one.status().as_u16(), 200);
}

#[tokio::test]
async fn chat_completion_shape() {
    let s = start(Config::default()).await;
    let (status, v) = s
        .post_json("/v1/chat/completions", &chat("hello there"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        keys(&v),
        names(&[
            "id",
            "object",
            "created",
            "model",
            "choices",
            "usage",
            "system_fingerprint"
        ])
    );
    assert!(v["id"]
        .as_str()
        .is_some_and(|id| id.starts_with("chatcmpl-")));
    assert_eq!(v["object"], "chat.completion");
    assert!(v["created"].as_u64().is_some_and(|c| c > 1_600_000_000));
    assert_eq!(v["model"], MODEL);
    assert!(v["system_fingerprint"].is_string());
    let choice = &v["choices"][0];
    assert_eq!(
        keys(choice),
        names(&["index", "message", "logprobs", "finish_reason"])
    );
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["logprobs"], Value::Null);
    assert_eq!(choice["finish_reason"], "stop");
    let msg = &choice["message"];
    assert_eq!(
        keys(msg),
        names(&["role", "content", "refusal", "tool_calls"])
    );
    assert_eq!(msg["role"], "assistant");
    assert_eq!(msg["content"], "Hello! You said: hello there");
    assert_eq!(msg["tool_calls"], Value::Null);
    let u = &v["usage"];
    assert_eq!(
        keys(u),
        names(&["prompt_tokens", "completion_tokens", "total_tokens"])
    );
    assert_eq!(
        u["total_tokens"].as_u64(),
        Some(
            u["prompt_tokens"].as_u64().unwrap_or(0) + u["completion_tokens"].as_u64().unwrap_or(0)
        )
    );
    // A missing model is accepted.
    let (status, _) = s
        .post_json(
            "/v1/chat/completions",
            &json!({"messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn tool_calls_non_streaming() {
    let s = start(Config::default()).await;
    let body = json!({"model": MODEL, "tools": tools(),
        "messages": [{"role": "user", "content": "What is the weather in Paris?"}]});
    let (status, v) = s.post_json("/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{v}");
    let choice = &v["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    let msg = &choice["message"];
    assert_eq!(msg["content"], Value::Null);
    let calls = msg["tool_calls"].as_array().expect("tool_calls");
    assert_eq!(calls.len(), 1);
    assert_eq!(keys(&calls[0]), names(&["id", "type", "function"]));
    assert_eq!(calls[0]["type"], "function");
    assert_eq!(keys(&calls[0]["function"]), names(&["name", "arguments"]));
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    let args: Value =
        serde_json::from_str(calls[0]["function"]["arguments"].as_str().expect("str"))
            .expect("json");
    assert_eq!(args, json!({"city": "Paris"}));
    // Named choice forces the other tool.
    let mut named = body.clone();
    named["tool_choice"] = json!({"type": "function", "function": {"name": "get_temperature"}});
    let (_, v) = s.post_json("/v1/chat/completions", &named).await;
    assert_eq!(
        v["choices"][0]["message"]["tool_calls"][0]["function"]["name"],
        "get_temperature"
    );
    // none answers text.
    let mut none = body.clone();
    none["tool_choice"] = json!("none");
    let (_, v) = s.post_json("/v1/chat/completions", &none).await;
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["choices"][0]["message"]["tool_calls"], Value::Null);
}

#[tokio::test]
async fn legacy_functions() {
    let s = start(Config::default()).await;
    let functions: Vec<Value> = tools()
        .as_array()
        .expect("tools")
        .iter()
        .map(|t| t["function"].clone())
        .collect();
    let body = json!({"model": MODEL, "functions": functions,
        "messages": [{"role": "user", "content": "weather in Paris?"}]});
    let (status, v) = s.post_json("/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["choices"][0]["finish_reason"], "function_call");
    let msg = &v["choices"][0]["message"];
    assert_eq!(
        keys(msg),
        names(&["role", "content", "refusal", "tool_calls", "function_call"])
    );
    assert_eq!(msg["tool_calls"], Value::Null);
    assert_eq!(msg["function_call"]["name"], "get_weather");
    assert!(msg["function_call"]["arguments"].is_string());

    let mut stream = body.clone();
    stream["stream"] = json!(true);
    let (status, text) = s.post("/v1/chat/completions", &stream).await;
    assert_eq!(status, 200);
    let chunks = parse_stream(&text);
    let mut name = String::new();
    let mut args = String::new();
    for c in &chunks {
        let d = &c["choices"][0]["delta"];
        assert!(
            d.get("tool_calls").is_none(),
            "legacy stream has no tool_calls: {c}"
        );
        if let Some(fc) = d.get("function_call") {
            name.push_str(fc["name"].as_str().unwrap_or(""));
            args.push_str(fc["arguments"].as_str().unwrap_or(""));
        }
    }
    assert_eq!(name, "get_weather");
    assert!(serde_json::from_str::<Value>(&args).is_ok_and(|a| a.is_object()));
    assert_eq!(
        chunks
            .last()
            .map(|c| c["choices"][0]["finish_reason"].clone()),
        Some(json!("function_call"))
    );

    // An empty `tools` list counts as none: the functions are offered and the answer is a
    // legacy `function_call`, as without `tools`.
    let mut empty_tools = body.clone();
    empty_tools["tools"] = json!([]);
    let (status, v) = s.post_json("/v1/chat/completions", &empty_tools).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["choices"][0]["finish_reason"], "function_call");
    let msg = &v["choices"][0]["message"];
    assert_eq!(msg["tool_calls"], Value::Null);
    assert_eq!(msg["function_call"]["name"], "get_weather");
}

#[tokio::test]
async fn streaming_shape_with_tools_and_usage() {
    let s = start(Config::default()).await;
    let body = json!({"model": MODEL, "tools": tools(), "stream": true,
        "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "weather and temperature in Paris?"}]});
    let (status, text) = s.post("/v1/chat/completions", &body).await;
    assert_eq!(status, 200);
    let chunks = parse_stream(&text);
    let (last, body_chunks) = chunks.split_last().expect("chunks");
    assert_eq!(last["choices"], json!([]));
    assert_eq!(
        keys(&last["usage"]),
        names(&["prompt_tokens", "completion_tokens", "total_tokens"])
    );
    let first = &body_chunks[0];
    assert_eq!(
        keys(first),
        names(&[
            "id",
            "object",
            "created",
            "model",
            "system_fingerprint",
            "choices",
            "usage"
        ])
    );
    assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
    let mut calls: Vec<(String, String, String)> = Vec::new();
    for c in body_chunks {
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["id"], first["id"]);
        assert_eq!(c["usage"], Value::Null);
        let ch = &c["choices"][0];
        assert_eq!(
            keys(ch),
            names(&["index", "delta", "logprobs", "finish_reason"])
        );
        for tc in ch["delta"]["tool_calls"].as_array().into_iter().flatten() {
            let i = tc["index"].as_u64().expect("index") as usize;
            if let Some(id) = tc.get("id") {
                assert_eq!(i, calls.len());
                assert_eq!(tc["type"], "function");
                assert_eq!(tc["function"]["arguments"], "");
                calls.push((
                    id.as_str().expect("id").into(),
                    tc["function"]["name"].as_str().expect("name").into(),
                    String::new(),
                ));
            } else {
                assert_eq!(keys(tc), names(&["index", "function"]));
                assert_eq!(keys(&tc["function"]), names(&["arguments"]));
                calls[i]
                    .2
                    .push_str(tc["function"]["arguments"].as_str().expect("fragment"));
            }
        }
    }
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].1, "get_weather");
    assert_eq!(calls[1].1, "get_temperature");
    for (_, _, args) in &calls {
        assert!(
            serde_json::from_str::<Value>(args).is_ok_and(|a| a.is_object()),
            "{args}"
        );
    }
    let finish = body_chunks.last().expect("finish");
    assert_eq!(finish["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(finish["choices"][0]["delta"], json!({}));
}

#[tokio::test]
async fn streaming_content_and_n() {
    let s = start(Config::default()).await;
    let mut body = chat("two ways");
    body["stream"] = json!(true);
    body["n"] = json!(2);
    let (status, text) = s.post("/chat/completions", &body).await;
    assert_eq!(status, 200);
    let chunks = parse_stream(&text);
    for index in 0..2 {
        let mine: Vec<&Value> = chunks
            .iter()
            .filter(|c| c["choices"][0]["index"] == index)
            .collect();
        assert_eq!(mine[0]["choices"][0]["delta"]["role"], "assistant");
        assert!(mine[1..]
            .iter()
            .all(|c| c["choices"][0]["delta"].get("role").is_none()));
        let text: String = mine
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(text, "Hello! You said: two ways");
        assert_eq!(
            mine.last()
                .map(|c| c["choices"][0]["finish_reason"].clone()),
            Some(json!("stop"))
        );
        assert!(chunks.iter().all(|c| c.get("usage").is_none()));
    }
    body["stream"] = json!(false);
    let (_, v) = s.post_json("/chat/completions", &body).await;
    let idx: Vec<u64> = v["choices"]
        .as_array()
        .expect("choices")
        .iter()
        .filter_map(|c| c["index"].as_u64())
        .collect();
    assert_eq!(idx, vec![0, 1]);
}

#[tokio::test]
async fn seeds_and_logprobs() {
    let s = start(Config::default()).await;
    let mut body = chat("tell me");
    body["temperature"] = json!(0.8);
    body["seed"] = json!(42);
    let (_, a) = s.post_json("/v1/chat/completions", &body).await;
    let (_, b) = s.post_json("/v1/chat/completions", &body).await;
    assert_eq!(
        a["choices"][0]["message"]["content"],
        b["choices"][0]["message"]["content"]
    );
    body["logprobs"] = json!(true);
    body["top_logprobs"] = json!(3);
    let (status, v) = s.post_json("/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{v}");
    let content = v["choices"][0]["logprobs"]["content"]
        .as_array()
        .expect("logprobs.content");
    assert!(!content.is_empty());
    assert_eq!(
        keys(&content[0]),
        names(&["token", "logprob", "bytes", "top_logprobs"])
    );
    assert_eq!(content[0]["top_logprobs"].as_array().map(Vec::len), Some(3));
}

/// A second-turn body as the openai SDK sends it after `model_dump()` of its own message.
#[tokio::test]
async fn tolerates_sdk_bodies_with_nulls() {
    let s = start(Config::default()).await;
    let body = json!({
        "messages": [
            {"role": "system", "content": "You are helpful."},
            {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
            {"content": null, "refusal": null, "role": "assistant", "annotations": null, "audio": null,
             "function_call": null,
             "tool_calls": [{"id": "call_abc", "function": {"arguments": "{\"city\":\"Paris\"}", "name": "get_weather"}, "type": "function"}]},
            {"role": "tool", "tool_call_id": "call_abc", "content": "{\"sky\": \"sunny\"}"}
        ],
        "model": MODEL, "tools": tools(), "tool_choice": "auto", "stream": false,
        "n": null, "stop": null, "temperature": null, "stream_options": null, "seed": null,
        "top_p": 1, "frequency_penalty": 0, "presence_penalty": 0, "user": "tester", "metadata": {"a": "b"},
        "store": false, "service_tier": null
    });
    let (status, v) = s.post_json("/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Based on the tool results: {\"sky\": \"sunny\"}"
    );
}

#[tokio::test]
async fn completions_shapes() {
    let s = start(Config::default()).await;
    let (status, v) = s
        .post_json(
            "/v1/completions",
            &json!({"model": MODEL, "prompt": ["a", "b"], "n": 2, "echo": true}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        keys(&v),
        names(&[
            "id",
            "object",
            "created",
            "model",
            "choices",
            "usage",
            "system_fingerprint"
        ])
    );
    assert!(v["id"].as_str().is_some_and(|id| id.starts_with("cmpl-")));
    let choices = v["choices"].as_array().expect("choices");
    assert_eq!(choices.len(), 4);
    assert_eq!(
        keys(&choices[0]),
        names(&["text", "index", "logprobs", "finish_reason"])
    );
    assert_eq!(choices[2]["index"], 2);
    assert!(choices[2]["text"]
        .as_str()
        .is_some_and(|t| t.starts_with('b')));
    assert_eq!(v["usage"]["prompt_tokens"], 2);

    let body = json!({"model": MODEL, "prompt": "Once", "stream": true, "stream_options": {"include_usage": true}});
    let (status, text) = s.post("/v1/completions", &body).await;
    assert_eq!(status, 200);
    let chunks = parse_stream(&text);
    let (last, rest) = chunks.split_last().expect("chunks");
    assert_eq!(last["choices"], json!([]));
    assert!(last["usage"]["completion_tokens"]
        .as_u64()
        .is_some_and(|n| n > 0));
    let text: String = rest
        .iter()
        .filter_map(|c| c["choices"][0]["text"].as_str())
        .collect();
    assert_eq!(text, " and then 3 words");
    assert!(rest.iter().all(|c| c["object"] == "text_completion"));
    assert_eq!(
        rest.last()
            .map(|c| c["choices"][0]["finish_reason"].clone()),
        Some(json!("stop"))
    );
}
