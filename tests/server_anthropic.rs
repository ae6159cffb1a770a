//! Anthropic's Messages API (`/v1/messages`, `/v1/messages/count_tokens`) over the mock
//! engine: the documented shapes of the message object, the event stream (`event:` lines,
//! order, `input_json_delta` fragments concatenating to the final `input`), stop reasons,
//! errors in Anthropic's shape and statuses (529 `overloaded_error` for a full queue),
//! `x-api-key`, and cancellation when the client goes away.

mod server_support;

use futures::StreamExt;
use serde_json::{json, Value};
use server_support::{
    anthropic_tools, assert_anthropic_error, keys, names, sse_events, start, Config, MODEL,
};

fn body(content: &str) -> Value {
    json!({"model": MODEL, "max_tokens": 256, "messages": [{"role": "user", "content": content}]})
}

fn tool_body(content: &str) -> Value {
    let mut b = body(content);
    b["tools"] = anthropic_tools();
    b
}

/// The documented keys of a message object, and its fixed fields.
fn check_message(v: &Value) {
    assert_eq!(
        keys(v),
        names(&[
            "id",
            "type",
            "role",
            "model",
            "content",
            "stop_reason",
            "stop_sequence",
            "usage"
        ]),
        "{v}"
    );
    assert!(v["id"].as_str().unwrap().starts_with("msg_"), "{v}");
    assert_eq!(v["type"], "message");
    assert_eq!(v["role"], "assistant");
    assert_eq!(v["model"], MODEL);
    assert_eq!(
        keys(&v["usage"]),
        names(&[
            "input_tokens",
            "output_tokens",
            "cache_read_input_tokens",
            "cache_creation_input_tokens"
        ]),
        "{v}"
    );
    for block in v["content"].as_array().unwrap() {
        match block["type"].as_str().unwrap() {
            "text" => assert_eq!(keys(block), names(&["type", "text"])),
            "thinking" => {
                assert_eq!(keys(block), names(&["type", "thinking", "signature"]));
                assert!(block["thinking"].is_string() && block["signature"].is_string());
            }
            "tool_use" => {
                assert_eq!(keys(block), names(&["type", "id", "name", "input"]));
                assert!(
                    block["id"].as_str().unwrap().starts_with("toolu_"),
                    "{block}"
                );
                assert!(block["input"].is_object(), "{block}");
            }
            other => panic!("unexpected block {other}"),
        }
    }
}

#[tokio::test]
async fn a_text_answer_is_a_message() {
    let s = start(Config::default()).await;
    for path in ["/v1/messages", "/messages"] {
        let (status, v) = s.post_json(path, &body("hello there")).await;
        assert_eq!(status, 200, "{v}");
        check_message(&v);
        assert_eq!(
            v["content"],
            json!([{"type": "text", "text": "Hello! You said: hello there"}])
        );
        assert_eq!(v["stop_reason"], "end_turn");
        assert_eq!(v["stop_sequence"], Value::Null);
        assert!(v["usage"]["output_tokens"].as_u64().unwrap() > 0);
    }
}

#[tokio::test]
async fn the_two_step_tool_flow() {
    let s = start(Config::default()).await;
    let (status, v) = s
        .post_json("/v1/messages", &tool_body("What is the weather in Paris?"))
        .await;
    assert_eq!(status, 200, "{v}");
    check_message(&v);
    assert_eq!(v["stop_reason"], "tool_use");
    let call = &v["content"][0];
    assert_eq!(call["name"], "get_weather");
    assert_eq!(call["input"], json!({"city": "Paris"}));
    // The result goes back as a tool_result block answering the tool_use id.
    let mut next = tool_body("What is the weather in Paris?");
    next["messages"]
        .as_array_mut()
        .unwrap()
        .push(json!({"role": "assistant", "content": v["content"]}));
    next["messages"]
        .as_array_mut()
        .unwrap()
        .push(json!({"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": call["id"], "content": "sunny, 21 C"}]}));
    let (status, v) = s.post_json("/v1/messages", &next).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["stop_reason"], "end_turn");
    assert_eq!(
        v["content"][0]["text"],
        "Based on the tool results: sunny, 21 C"
    );
}

#[tokio::test]
async fn tool_choice_any_tool_none_and_disabled_parallel_calls() {
    let s = start(Config::default()).await;
    let both = "weather and temperature in Paris";
    let with = |choice: Value| {
        let mut b = tool_body(both);
        b["tool_choice"] = choice;
        b
    };
    let (_, v) = s
        .post_json("/v1/messages", &with(json!({"type": "any"})))
        .await;
    assert_eq!(v["content"].as_array().unwrap().len(), 2, "{v}");
    let one = with(json!({"type": "any", "disable_parallel_tool_use": true}));
    let (_, v) = s.post_json("/v1/messages", &one).await;
    assert_eq!(v["content"].as_array().unwrap().len(), 1, "{v}");
    let (_, v) = s
        .post_json(
            "/v1/messages",
            &with(json!({"type": "tool", "name": "get_temperature"})),
        )
        .await;
    assert_eq!(v["content"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["content"][0]["name"], "get_temperature");
    let (_, v) = s
        .post_json("/v1/messages", &with(json!({"type": "none"})))
        .await;
    assert_eq!(v["stop_reason"], "end_turn");
    assert_eq!(v["content"][0]["type"], "text");
}

#[tokio::test]
async fn stop_sequences_and_max_tokens_end_the_answer() {
    let s = start(Config::default()).await;
    let mut b = body("stop here please");
    b["stop_sequences"] = json!(["never", "here"]);
    let (_, v) = s.post_json("/v1/messages", &b).await;
    assert_eq!(v["stop_reason"], "stop_sequence", "{v}");
    assert_eq!(v["stop_sequence"], "here");
    assert_eq!(v["content"][0]["text"], "Hello! You said: stop ");
    let mut b = body("[[tokens=50]]");
    b["max_tokens"] = json!(3);
    let (_, v) = s.post_json("/v1/messages", &b).await;
    assert_eq!(v["stop_reason"], "max_tokens", "{v}");
    assert_eq!(v["usage"]["output_tokens"], 3);
}

/// Checks the documented event order and returns the events' data.
fn check_stream(text: &str) -> Vec<Value> {
    let events = sse_events(text);
    let data: Vec<Value> = events
        .iter()
        .map(|(name, d)| {
            let v: Value = serde_json::from_str(d).unwrap();
            assert_eq!(
                name.as_deref(),
                v["type"].as_str(),
                "event line and type agree"
            );
            v
        })
        .collect();
    let types: Vec<&str> = data.iter().map(|v| v["type"].as_str().unwrap()).collect();
    assert_eq!(&types[..2], ["message_start", "ping"], "{types:?}");
    assert_eq!(&types[types.len() - 2..], ["message_delta", "message_stop"]);
    let start = &data[0]["message"];
    assert!(start["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(start["content"], json!([]));
    assert_eq!(start["stop_reason"], Value::Null);
    // Blocks: start, deltas, stop, with consecutive indices.
    let mut open: Option<u64> = None;
    let mut next = 0;
    for v in &data[2..data.len() - 2] {
        match v["type"].as_str().unwrap() {
            "content_block_start" => {
                assert_eq!(open, None, "{v}");
                assert_eq!(v["index"], next);
                open = Some(next);
                next += 1;
            }
            "content_block_delta" => assert_eq!(Some(v["index"].as_u64().unwrap()), open),
            "content_block_stop" => {
                assert_eq!(Some(v["index"].as_u64().unwrap()), open);
                open = None;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(open, None);
    data
}

#[tokio::test]
async fn streaming_text_and_tool_use() {
    let s = start(Config::default()).await;
    let mut b = body("hello there");
    b["stream"] = json!(true);
    let (status, text) = s.post("/v1/messages", &b).await;
    assert_eq!(status, 200, "{text}");
    let data = check_stream(&text);
    let streamed: String = data
        .iter()
        .filter(|v| v["type"] == "content_block_delta")
        .map(|v| {
            assert_eq!(v["delta"]["type"], "text_delta");
            v["delta"]["text"].as_str().unwrap()
        })
        .collect();
    assert_eq!(streamed, "Hello! You said: hello there");
    let delta = &data[data.len() - 2];
    assert_eq!(
        delta["delta"],
        json!({"stop_reason": "end_turn", "stop_sequence": null})
    );
    assert!(delta["usage"]["output_tokens"].as_u64().unwrap() > 0);
    assert!(delta["usage"]["input_tokens"].as_u64().unwrap() > 0);

    let mut b = tool_body("weather and temperature in Paris");
    b["stream"] = json!(true);
    let (_, text) = s.post("/v1/messages", &b).await;
    let data = check_stream(&text);
    let starts: Vec<&Value> = data
        .iter()
        .filter(|v| v["type"] == "content_block_start")
        .collect();
    assert_eq!(starts.len(), 2);
    let mut streamed = vec![String::new(); 2];
    for v in data.iter().filter(|v| v["type"] == "content_block_delta") {
        assert_eq!(v["delta"]["type"], "input_json_delta");
        streamed[v["index"].as_u64().unwrap() as usize] +=
            v["delta"]["partial_json"].as_str().unwrap();
    }
    let (_, whole) = s
        .post_json(
            "/v1/messages",
            &tool_body("weather and temperature in Paris"),
        )
        .await;
    for (i, start) in starts.iter().enumerate() {
        let block = &start["content_block"];
        assert_eq!(keys(block), names(&["type", "id", "name", "input"]));
        assert!(block["id"].as_str().unwrap().starts_with("toolu_"));
        assert_eq!(block["input"], json!({}));
        let input: Value = serde_json::from_str(&streamed[i]).unwrap();
        assert_eq!(
            input, whole["content"][i]["input"],
            "fragments concatenate to the input"
        );
        assert_eq!(block["name"], whole["content"][i]["name"]);
    }
    assert_eq!(data[data.len() - 2]["delta"]["stop_reason"], "tool_use");

    let mut b = body("stop here please");
    b["stream"] = json!(true);
    b["stop_sequences"] = json!(["here"]);
    let (_, text) = s.post("/v1/messages", &b).await;
    let data = check_stream(&text);
    assert_eq!(
        data[data.len() - 2]["delta"],
        json!({"stop_reason": "stop_sequence", "stop_sequence": "here"})
    );
}

#[tokio::test]
async fn reasoning_is_a_thinking_block_first_and_streams_as_thinking_deltas() {
    let s = start(Config::default()).await;
    // The answer's reasoning is the first block, before the calls.
    let (status, v) = s
        .post_json("/v1/messages", &tool_body("[[think]] weather in Paris?"))
        .await;
    assert_eq!(status, 200, "{v}");
    check_message(&v);
    assert_eq!(
        v["content"][0],
        json!({"type": "thinking", "thinking": "Let me think about it.", "signature": ""})
    );
    assert_eq!(v["content"][1]["type"], "tool_use");
    assert_eq!(v["stop_reason"], "tool_use");

    let mut b = body("[[think]] hello");
    b["stream"] = json!(true);
    let (status, text) = s.post("/v1/messages", &b).await;
    assert_eq!(status, 200, "{text}");
    let data = check_stream(&text);
    let starts: Vec<&Value> = data
        .iter()
        .filter(|v| v["type"] == "content_block_start")
        .map(|v| &v["content_block"])
        .collect();
    assert_eq!(
        starts,
        [
            &json!({"type": "thinking", "thinking": "", "signature": ""}),
            &json!({"type": "text", "text": ""})
        ]
    );
    let mut blocks = vec![String::new(); 2];
    for v in data.iter().filter(|v| v["type"] == "content_block_delta") {
        let (i, d) = (v["index"].as_u64().unwrap() as usize, &v["delta"]);
        match d["type"].as_str().unwrap() {
            "thinking_delta" => {
                assert_eq!(i, 0);
                blocks[0] += d["thinking"].as_str().unwrap();
            }
            "text_delta" => {
                assert_eq!(i, 1);
                blocks[1] += d["text"].as_str().unwrap();
            }
            other => panic!("unexpected delta {other}"),
        }
    }
    assert_eq!(blocks[0], "Let me think about it.");
    assert_eq!(blocks[1], "Hello! You said: [[think]] hello");

    // A thinking block sent back is the assistant turn's reasoning, not its text.
    let mut next = body("[[think]] hello");
    next["messages"].as_array_mut().unwrap().extend([
        json!({"role": "assistant", "content": [
            {"type": "thinking", "thinking": "Let me think about it.", "signature": ""},
            {"type": "text", "text": "Hello!"}]}),
        json!({"role": "user", "content": "and again"}),
    ]);
    let (status, v) = s.post_json("/v1/messages", &next).await;
    assert_eq!(status, 200, "{v}");
    // A `thinking` setting the model's template may read is accepted; a bad one is named.
    let mut b = body("hello");
    b["thinking"] = json!({"type": "enabled", "budget_tokens": 1024});
    assert_eq!(s.post_json("/v1/messages", &b).await.0, 200);
    b["thinking"] = json!({"type": "sometimes"});
    let (status, v) = s.post_json("/v1/messages", &b).await;
    assert_eq!(status, 400, "{v}");
    assert_anthropic_error(&v, "invalid_request_error");
}

#[tokio::test]
async fn count_tokens_counts_the_prompt_the_message_uses() {
    let s = start(Config::default()).await;
    let mut b = tool_body("What is the weather in Paris today?");
    b["system"] = json!("Be brief.");
    let (_, msg) = s.post_json("/v1/messages", &b).await;
    b.as_object_mut().unwrap().remove("max_tokens");
    let (status, v) = s.post_json("/v1/messages/count_tokens", &b).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(keys(&v), names(&["input_tokens"]));
    let used = msg["usage"]["input_tokens"].as_u64().unwrap()
        + msg["usage"]["cache_read_input_tokens"].as_u64().unwrap();
    assert_eq!(v["input_tokens"].as_u64().unwrap(), used);
    let (status, v) = s
        .post_json("/v1/messages/count_tokens", &json!({"model": MODEL}))
        .await;
    assert_eq!(status, 400);
    assert_anthropic_error(&v, "invalid_request_error");
}

#[tokio::test]
async fn errors_have_anthropic_shapes_and_statuses() {
    let s = start(Config::default()).await;
    let raw = |body: &'static str| {
        let s = &s;
        async move {
            let resp = s
                .client
                .post(format!("{}/v1/messages", s.base))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        }
    };
    let (status, v) = raw("{not json").await;
    assert_eq!(status, 400);
    assert_anthropic_error(&v, "invalid_request_error");
    let (status, v) = raw("").await;
    assert_eq!(status, 400);
    assert_anthropic_error(&v, "invalid_request_error");
    let (status, v) = raw(r#"{"max_tokens": 5, "messages": "x"}"#).await;
    assert_eq!(status, 400);
    assert_anthropic_error(&v, "invalid_request_error");

    let mut b = body("x");
    b.as_object_mut().unwrap().remove("max_tokens");
    let (status, v) = s.post_json("/v1/messages", &b).await;
    assert_eq!(status, 400);
    assert!(assert_anthropic_error(&v, "invalid_request_error").contains("max_tokens"));

    let image = json!({"model": MODEL, "max_tokens": 5, "messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}]}]});
    let (status, v) = s.post_json("/v1/messages", &image).await;
    assert_eq!(status, 400);
    assert!(assert_anthropic_error(&v, "invalid_request_error").contains("text only"));

    let mut b = body("x");
    b["tools"] = json!([{"type": "web_search_20250305", "name": "web_search"}]);
    let (status, v) = s.post_json("/v1/messages", &b).await;
    assert_eq!(status, 400);
    assert_anthropic_error(&v, "invalid_request_error");

    let mut b = body("x");
    b["model"] = json!("claude-nope");
    let (status, v) = s.post_json("/v1/messages", &b).await;
    assert_eq!(status, 404);
    assert_anthropic_error(&v, "not_found_error");

    let (status, v) = s.post_json("/v1/messages", &body("[[context]]")).await;
    assert_eq!(status, 400);
    assert_anthropic_error(&v, "invalid_request_error");
    let (status, v) = s.post_json("/v1/messages", &body("[[internal]]")).await;
    assert_eq!(status, 500);
    assert_anthropic_error(&v, "api_error");

    let resp = s
        .client
        .get(format!("{}/v1/messages", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 405);
    assert_anthropic_error(&resp.json().await.unwrap(), "invalid_request_error");

    // A failure after the stream started is an `error` event.
    let mut b = body("[[fail-midway]] [[tokens=20]]");
    b["stream"] = json!(true);
    let (status, text) = s.post("/v1/messages", &b).await;
    assert_eq!(status, 200);
    let events = sse_events(&text);
    let (name, data) = events.last().unwrap();
    assert_eq!(name.as_deref(), Some("error"));
    assert_anthropic_error(&serde_json::from_str(data).unwrap(), "api_error");
}

#[tokio::test]
async fn x_api_key_or_bearer_when_a_key_is_set() {
    let s = start(Config {
        api_key: Some("sekrit".into()),
        ..Config::default()
    })
    .await;
    let url = format!("{}/v1/messages", s.base);
    let send = |req: reqwest::RequestBuilder| async move {
        let resp = req.json(&body("x")).send().await.unwrap();
        (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
    };
    let (status, v) = send(s.client.post(&url)).await;
    assert_eq!(status, 401);
    assert_anthropic_error(&v, "authentication_error");
    let (status, v) = send(s.client.post(&url).header("x-api-key", "wrong")).await;
    assert_eq!(status, 401);
    assert_anthropic_error(&v, "authentication_error");
    let (status, _) = send(s.client.post(&url).header("x-api-key", "sekrit")).await;
    assert_eq!(status, 200);
    let (status, _) = send(s.client.post(&url).bearer_auth("sekrit")).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_is_529_overloaded_and_a_gone_client_is_cancelled() {
    let s = start(Config {
        delay_ms: 20,
        max_concurrent: 1,
        queue: 0,
        ..Config::default()
    })
    .await;
    let mut long = body("[[tokens=100000]]");
    long["stream"] = json!(true);
    let a = s
        .client
        .post(format!("{}/v1/messages", s.base))
        .json(&long)
        .send()
        .await
        .unwrap();
    assert_eq!(a.status().as_u16(), 200);
    let (status, v) = s.post_json("/v1/messages", &body("x")).await;
    assert_eq!(status, 529, "{v}");
    assert_anthropic_error(&v, "overloaded_error");
    let mut stream = a.bytes_stream();
    assert!(!stream.next().await.unwrap().unwrap().is_empty());
    drop(stream);
    s.wait_for("the generation to be cancelled", |m| {
        m.cancelled() == 1 && m.active() == 0
    })
    .await;
    let (status, _) = s.post_json("/v1/messages", &body("x")).await;
    assert_eq!(status, 200);
}
