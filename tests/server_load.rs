//! Load and lifecycle tests: 32 concurrent streaming clients, disconnects that free their
//! slot at once, and 429 when the waiting queue is full. Loopback only, bounded loops.

mod server_support;

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Value};
use server_support::{assert_error_shape, sse_data, start, Config, MODEL};

fn stream_body(content: &str) -> Value {
    json!({"model": MODEL, "stream": true, "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": content}]})
}

/// Checks a complete chat stream and returns its text.
fn check_stream(body: &str) -> String {
    let data = sse_data(body);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{body}");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).expect("chunk JSON"))
        .collect();
    let (usage, rest) = chunks.split_last().expect("chunks");
    assert_eq!(usage["choices"], json!([]));
    assert!(usage["usage"]["completion_tokens"]
        .as_u64()
        .is_some_and(|n| n > 0));
    assert_eq!(rest[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(
        rest.last()
            .map(|c| c["choices"][0]["finish_reason"].clone()),
        Some(json!("stop"))
    );
    let id = &rest[0]["id"];
    assert!(rest
        .iter()
        .all(|c| &c["id"] == id && c["object"] == "chat.completion.chunk"));
    rest.iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_concurrent_streaming_clients() {
    let s = start(Config {
        delay_ms: 1,
        max_concurrent: 4,
        queue: 64,
        ..Config::default()
    })
    .await;
    let mut tasks = Vec::new();
    for i in 0..32 {
        let client = s.client.clone();
        let url = format!("{}/v1/chat/completions", s.base);
        tasks.push(tokio::spawn(async move {
            let resp = client
                .post(url)
                .json(&stream_body(&format!("client {i}")))
                .send()
                .await
                .expect("send");
            assert_eq!(resp.status().as_u16(), 200);
            let text = resp.text().await.expect("body");
            (i, check_stream(&text))
        }));
    }
    for t in tasks {
        let (i, text) = t.await.expect("client task");
        assert_eq!(text, format!("Hello! You said: client {i}"));
    }
    assert_eq!(s.mock.calls(), 32);
    assert!(
        s.mock.max_active() <= 4,
        "max active {}",
        s.mock.max_active()
    );
    s.wait_for("all generations to end", |m| m.active() == 0)
        .await;
    // Still up and correct afterwards.
    let (status, _) = s.post_json("/health", &json!({})).await;
    assert_eq!(status, 405);
    let resp = s
        .client
        .get(format!("{}/health", s.base))
        .send()
        .await
        .expect("health");
    assert_eq!(resp.status().as_u16(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnecting_stream_frees_its_slot() {
    let s = start(Config {
        delay_ms: 20,
        max_concurrent: 1,
        queue: 4,
        ..Config::default()
    })
    .await;
    let url = format!("{}/v1/chat/completions", s.base);
    let resp = s
        .client
        .post(&url)
        .json(&stream_body("[[tokens=100000]]"))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status().as_u16(), 200);
    let mut body = resp.bytes_stream();
    let first = body.next().await.expect("a first chunk").expect("bytes");
    assert!(!first.is_empty());
    drop(body);
    s.wait_for("the generation to be cancelled", |m| {
        m.cancelled() == 1 && m.active() == 0
    })
    .await;
    // The next request gets the slot and completes.
    let started = Instant::now();
    let resp = s
        .client
        .post(&url)
        .json(&stream_body("next"))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        check_stream(&resp.text().await.expect("body")),
        "Hello! You said: next"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnecting_non_streaming_client_is_cancelled() {
    let s = start(Config {
        delay_ms: 20,
        max_concurrent: 1,
        queue: 4,
        ..Config::default()
    })
    .await;
    let url = format!("{}/v1/chat/completions", s.base);
    let body =
        json!({"model": MODEL, "messages": [{"role": "user", "content": "[[tokens=100000]]"}]});
    let short = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .expect("client");
    assert!(
        short.post(&url).json(&body).send().await.is_err(),
        "the request must time out"
    );
    s.wait_for("the generation to be cancelled", |m| {
        m.cancelled() == 1 && m.active() == 0
    })
    .await;
    let (status, v) = s
        .post_json(
            "/v1/chat/completions",
            &json!({"messages": [{"role": "user", "content": "ok"}]}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_answers_429_and_waiters_proceed_in_order() {
    let s = start(Config {
        delay_ms: 20,
        max_concurrent: 1,
        queue: 1,
        ..Config::default()
    })
    .await;
    let url = format!("{}/v1/chat/completions", s.base);
    // A holds the only slot.
    let a = s
        .client
        .post(&url)
        .json(&stream_body("[[tokens=100000]]"))
        .send()
        .await
        .expect("send");
    assert_eq!(a.status().as_u16(), 200);
    // B waits.
    let client = s.client.clone();
    let burl = url.clone();
    let b = tokio::spawn(async move {
        let resp = client
            .post(burl)
            .json(&stream_body("b"))
            .send()
            .await
            .expect("send");
        (
            resp.status().as_u16(),
            resp.text().await.unwrap_or_default(),
        )
    });
    let mut waiting = 0;
    for _ in 0..300 {
        let h: Value = s
            .client
            .get(format!("{}/health", s.base))
            .send()
            .await
            .expect("health")
            .json()
            .await
            .expect("json");
        waiting = h["waiting"].as_u64().unwrap_or(0);
        if waiting == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(waiting, 1);
    // C is refused at once.
    let started = Instant::now();
    let c = s
        .client
        .post(&url)
        .json(&stream_body("c"))
        .send()
        .await
        .expect("send");
    assert_eq!(c.status().as_u16(), 429);
    assert!(started.elapsed() < Duration::from_secs(2));
    let e = assert_error_shape(&c.json::<Value>().await.expect("json"));
    assert_eq!(e["type"], "rate_limit_error");
    // A leaves; B proceeds.
    drop(a);
    let (status, text) = b.await.expect("b");
    assert_eq!(status, 200);
    assert_eq!(check_stream(&text), "Hello! You said: b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_that_disconnects_leaves_the_queue() {
    let s = start(Config {
        delay_ms: 20,
        max_concurrent: 1,
        queue: 1,
        ..Config::default()
    })
    .await;
    let url = format!("{}/v1/chat/completions", s.base);
    let a = s
        .client
        .post(&url)
        .json(&stream_body("[[tokens=100000]]"))
        .send()
        .await
        .expect("send");
    assert_eq!(a.status().as_u16(), 200);
    // B waits for the slot, then gives up.
    let short = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .expect("client");
    assert!(short
        .post(&url)
        .json(&stream_body("b"))
        .send()
        .await
        .is_err());
    let health = format!("{}/health", s.base);
    let mut waiting = 1;
    for _ in 0..300 {
        let h: Value = s
            .client
            .get(&health)
            .send()
            .await
            .expect("health")
            .json()
            .await
            .expect("json");
        waiting = h["waiting"].as_u64().unwrap_or(1);
        if waiting == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(waiting, 0, "the gone waiter must leave the queue");
    // Its place is free again: C waits (not 429) and runs once A leaves.
    let client = s.client.clone();
    let c = tokio::spawn(async move {
        let resp = client
            .post(url)
            .json(&stream_body("c"))
            .send()
            .await
            .expect("send");
        (
            resp.status().as_u16(),
            resp.text().await.unwrap_or_default(),
        )
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(a);
    let (status, text) = c.await.expect("c");
    assert_eq!(status, 200);
    assert_eq!(check_stream(&text), "Hello! You said: c");
    assert_eq!(
        s.mock.calls(),
        2,
        "the gone waiter never reached the engine"
    );
}
