//! Error tests of the server over the mock engine: every error class answers in OpenAI's
//! error shape with the right status (400, 401, 404, 405, 413, 500, mid-stream SSE errors).

mod server_support;

use serde_json::{json, Value};
use server_support::{assert_error_shape, sse_data, start, tools, Config, MODEL};

fn chat(content: &str) -> Value {
    json!({"model": MODEL, "messages": [{"role": "user", "content": content}]})
}

async fn expect_error(
    s: &server_support::TestServer,
    path: &str,
    body: &str,
    status: u16,
) -> Value {
    let resp = s
        .client
        .post(format!("{}{path}", s.base))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status().as_u16(), status, "body {body}");
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    assert!(ct.starts_with("application/json"), "content-type {ct}");
    let v: Value = resp.json().await.expect("json error body");
    assert_error_shape(&v)
}

#[tokio::test]
async fn bad_requests_are_400_in_openai_shape() {
    let s = start(Config::default()).await;
    let p = "/v1/chat/completions";
    let e = expect_error(&s, p, "{not json", 400).await;
    assert_eq!(e["type"], "invalid_request_error");
    expect_error(&s, p, "", 400).await;
    expect_error(&s, p, "[1,2]", 400).await;
    let e = expect_error(&s, p, r#"{"model":"mock-model"}"#, 400).await;
    assert!(
        e["message"]
            .as_str()
            .is_some_and(|m| m.contains("messages")),
        "{e}"
    );
    let e = expect_error(
        &s,
        p,
        r#"{"messages":[{"role":"user","content":"x"}],"temperature":"hot"}"#,
        400,
    )
    .await;
    assert_eq!(e["param"], "temperature");
    // Valid JSON with a number no double holds: a 400 that names the field, not "could not
    // parse"; and a body with something after its JSON value is still not JSON.
    for (body, param) in [
        (
            r#"{"messages":[{"role":"user","content":"x"}],"temperature":1e400}"#,
            "temperature",
        ),
        (
            r#"{"messages":[{"role":"user","content":"x"}],"logit_bias":{"5":-1e999}}"#,
            "logit_bias.5",
        ),
    ] {
        let e = expect_error(&s, p, body, 400).await;
        assert_eq!(e["param"], param, "{e}");
        let m = e["message"].as_str().unwrap_or("");
        assert!(m.contains("beyond what a 64-bit float holds"), "{e}");
        assert!(!m.contains("could not parse"), "{e}");
    }
    let e = expect_error(&s, p, r#"{"messages":[]} x"#, 400).await;
    assert!(
        e["message"]
            .as_str()
            .is_some_and(|m| m.contains("could not parse") && m.contains("trailing")),
        "{e}"
    );
    let cases = [
        (json!({"messages": []}), "messages"),
        (
            json!({"messages": [{"role": "wizard", "content": "x"}]}),
            "messages[0].role",
        ),
        (
            json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x"}}]}]}),
            "messages[0].content[0].type",
        ),
        (
            json!({"messages": [{"role": "tool", "content": "x"}]}),
            "messages[0].tool_call_id",
        ),
        (
            json!({"messages": [{"role": "user", "content": "x"}], "n": 0}),
            "n",
        ),
        (
            json!({"messages": [{"role": "user", "content": "x"}], "temperature": 3}),
            "temperature",
        ),
        (
            json!({"messages": [{"role": "user", "content": "x"}], "logprobs": true, "top_logprobs": 21}),
            "top_logprobs",
        ),
        (
            json!({"messages": [{"role": "user", "content": "x"}], "tools": tools(), "tool_choice": {"type": "function", "function": {"name": "nope"}}}),
            "tool_choice",
        ),
        (
            json!({"messages": [{"role": "user", "content": "x"}], "tool_choice": "required"}),
            "tool_choice",
        ),
        (
            json!({"messages": [{"role": "user", "content": "x"}], "tool_choice": "sometimes", "tools": tools()}),
            "tool_choice",
        ),
    ];
    for (body, param) in cases {
        let e = expect_error(&s, p, &body.to_string(), 400).await;
        assert_eq!(e["param"], param, "{body}");
    }
    let e = expect_error(&s, "/v1/completions", r#"{"prompt":[1,2,3]}"#, 400).await;
    assert_eq!(e["param"], "prompt");
}

#[tokio::test]
async fn engine_errors_map_to_statuses() {
    let s = start(Config::default()).await;
    let p = "/v1/chat/completions";
    let e = expect_error(&s, p, &chat("[[context]]").to_string(), 400).await;
    assert_eq!(e["code"], "context_length_exceeded");
    let m = e["message"].as_str().unwrap_or("");
    assert!(m.contains("4096") && m.contains("5000"), "{m}");
    let e = expect_error(&s, p, &chat("[[template]]").to_string(), 400).await;
    assert!(e["message"]
        .as_str()
        .is_some_and(|m| m.contains("template")));
    let e = expect_error(&s, p, &chat("[[internal]]").to_string(), 500).await;
    assert_eq!(e["type"], "server_error");
    // Streaming requests that fail before any output also get a real status.
    let mut body = chat("[[context]]");
    body["stream"] = json!(true);
    expect_error(&s, p, &body.to_string(), 400).await;
    // Mid-stream failures: an SSE error event, then the end.
    let mut body = chat("[[fail-midway]]");
    body["stream"] = json!(true);
    let (status, text) = s.post(p, &body).await;
    assert_eq!(status, 200);
    let data = sse_data(&text);
    let last: Value = serde_json::from_str(data.last().expect("events")).expect("json");
    assert_error_shape(&last);
    assert!(!data.iter().any(|d| d == "[DONE]"));
}

#[tokio::test]
async fn not_found_method_and_size_errors() {
    let s = start(Config {
        max_body: 4096,
        ..Config::default()
    })
    .await;
    let mut body = chat("x");
    body["model"] = json!("gpt-4o");
    let e = expect_error(&s, "/v1/chat/completions", &body.to_string(), 404).await;
    assert_eq!(e["code"], "model_not_found");
    let e = expect_error(
        &s,
        "/v1/completions",
        r#"{"model":"other","prompt":"x"}"#,
        404,
    )
    .await;
    assert_eq!(e["param"], "model");
    expect_error(&s, "/v1/nowhere", "{}", 404).await;
    let resp = s
        .client
        .get(format!("{}/v1/unknown/route", s.base))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status().as_u16(), 404);
    assert_error_shape(&resp.json::<Value>().await.expect("json"));
    let resp = s
        .client
        .get(format!("{}/v1/chat/completions", s.base))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status().as_u16(), 405);
    assert_error_shape(&resp.json::<Value>().await.expect("json"));
    let resp = s
        .client
        .get(format!("{}/chat/completions", s.base))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status().as_u16(), 405);
    let big = chat(&"x".repeat(10_000));
    let e = expect_error(&s, "/v1/chat/completions", &big.to_string(), 413).await;
    assert_eq!(e["code"], "payload_too_large");
}

#[tokio::test]
async fn api_key_is_required_when_set() {
    let s = start(Config {
        api_key: Some("sekrit".into()),
        ..Config::default()
    })
    .await;
    let url = format!("{}/v1/chat/completions", s.base);
    let resp = s
        .client
        .post(&url)
        .json(&chat("x"))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status().as_u16(), 401);
    let e = assert_error_shape(&resp.json::<Value>().await.expect("json"));
    assert_eq!(e["code"], "invalid_api_key");
    let resp = s
        .client
        .post(&url)
        .bearer_auth("wrong")
        .json(&chat("x"))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status().as_u16(), 401);
    assert_error_shape(&resp.json::<Value>().await.expect("json"));
    let resp = s
        .client
        .post(&url)
        .bearer_auth("sekrit")
        .json(&chat("x"))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status().as_u16(), 200);
    let resp = s
        .client
        .get(format!("{}/models", s.base))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status().as_u16(), 401);
    let resp = s
        .client
        .get(format!("{}/models", s.base))
        .bearer_auth("sekrit")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status().as_u16(), 200);
    let resp = s
        .client
        .get(format!("{}/health", s.base))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status().as_u16(), 200);
}
