//! The HTTP server over the real engine with continuous batching on by default (issue 16):
//! 32 concurrent streaming clients, some of which disconnect mid-stream, each answer complete
//! and equal to the same request served alone (or a clean 429), then `GET /metrics` in
//! Prometheus' text format with every sequence gone. The model is the tiny random-weight
//! Qwen2 fixture with a byte-level tokenizer (as in `server_constrain.rs`).

use std::sync::Arc;
use std::time::Duration;

use callm::chat::EngineBackend;
use callm::registry::Registry;
use callm::runtime::{LoadOptions, LoadedModel};
use callm::server::{router, serve_on, AppState};
use futures::StreamExt;
use serde_json::{json, Value};

const MODEL: &str = "callm-server-batch-qwen2";

fn load_tiny() -> LoadedModel {
    let dir = std::env::temp_dir().join(format!("{MODEL}-{}", std::process::id()));
    callm::constrain::testing::tiny_model_dir("qwen2", &dir, r#"{"eos_token": "<|im_end|>"}"#)
        .unwrap();
    let opts = LoadOptions {
        model: dir.display().to_string(),
        family: Some("qwen2.5".into()),
        context: Some(256),
        ..Default::default()
    };
    let lm = LoadedModel::load(&opts, &Registry::builtin()).unwrap();
    std::fs::remove_dir_all(&dir).ok();
    lm
}

/// Serves the tiny model with the server's default batch (`--max-concurrent` 8) and a waiting
/// room of 16: base URL and shutdown handle.
async fn start() -> (String, tokio::sync::oneshot::Sender<()>) {
    let lm = Arc::new(load_tiny());
    let defaults = callm::cli::serve::ServeOptions::default();
    assert_eq!(defaults.max_concurrent, 8, "batching on by default");
    let state = AppState::new(
        Arc::new(EngineBackend::new(lm)),
        defaults.max_concurrent,
        16,
        None,
    );
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

/// Client `i`'s request: its own prompt, seed and length; odd clients sample, even ones are
/// greedy.
fn body(i: usize) -> Value {
    let mut b = json!({
        "messages": [{"role": "user", "content": format!("client {i}: {}", "abc ".repeat(i % 5))}],
        "max_tokens": 10 + i % 7,
        "stream": true,
    });
    if i % 2 == 1 {
        b["temperature"] = json!(0.8);
        b["seed"] = json!(1000 + i);
    } else {
        b["temperature"] = json!(0.0);
    }
    b
}

/// The streamed content and finish reason of a complete chat stream (panics on anything else).
fn content(sse: &str) -> (String, String) {
    let data: Vec<&str> = sse
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(data.last(), Some(&"[DONE]"), "incomplete stream: {sse}");
    let mut text = String::new();
    let mut finish = String::new();
    for d in &data[..data.len() - 1] {
        let v: Value = serde_json::from_str(d).unwrap();
        let c = &v["choices"][0];
        if let Some(t) = c["delta"]["content"].as_str() {
            text.push_str(t);
        }
        if let Some(f) = c["finish_reason"].as_str() {
            finish = f.to_string();
        }
    }
    (text, finish)
}

async fn stream(client: &reqwest::Client, base: &str, i: usize) -> (u16, String) {
    let resp = client
        .post(format!("{base}/v1/chat/completions"))
        .json(&body(i))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batched_streams_match_each_request_alone_and_metrics_report_them() {
    let (base, tx) = start().await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    // Each request alone, one after the other.
    let mut alone = Vec::new();
    for i in 0..32 {
        let (status, sse) = stream(&client, &base, i).await;
        assert_eq!(status, 200, "{sse}");
        alone.push(content(&sse));
    }
    // All 32 at once; every fourth client goes away after its first chunk.
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let (client, base) = (client.clone(), base.clone());
            tokio::spawn(async move {
                if i % 4 == 3 {
                    let resp = client
                        .post(format!("{base}/v1/chat/completions"))
                        .json(&body(i))
                        .send()
                        .await
                        .unwrap();
                    let status = resp.status().as_u16();
                    let mut chunks = resp.bytes_stream();
                    let _ = chunks.next().await;
                    return (i, status, None);
                }
                let (status, sse) = stream(&client, &base, i).await;
                (i, status, Some(sse))
            })
        })
        .collect();
    let (mut served, mut refused) = (0, 0);
    for t in tasks {
        let (i, status, sse) = t.await.unwrap();
        match (status, sse) {
            (200, Some(sse)) => {
                assert_eq!(content(&sse), alone[i], "client {i}: batched vs alone");
                served += 1;
            }
            (200, None) => {}
            (429, Some(sse)) => {
                let v: Value = serde_json::from_str(&sse).unwrap();
                assert_eq!(v["error"]["code"], "queue_full", "{v}");
                refused += 1;
            }
            (429, None) => refused += 1,
            (s, sse) => panic!("client {i}: status {s}: {sse:?}"),
        }
    }
    assert!(served >= 8, "served {served}, refused {refused}");

    // Every sequence has left the batch and freed its cache (disconnected ones included).
    let mut text = String::new();
    for _ in 0..200 {
        let resp = client.get(format!("{base}/metrics")).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
        assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
        text = resp.text().await.unwrap();
        if metric(&text, "callm_running_sequences") == Some(0.0)
            && metric(&text, "callm_kv_cache_reserved_bytes") == Some(0.0)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        metric(&text, "callm_running_sequences"),
        Some(0.0),
        "{text}"
    );
    assert_eq!(metric(&text, "callm_kv_cache_bytes"), Some(0.0), "{text}");
    assert_eq!(
        metric(&text, "callm_kv_cache_reserved_bytes"),
        Some(0.0),
        "{text}"
    );
    assert_eq!(metric(&text, "callm_queue_waiting"), Some(0.0), "{text}");
    let ok = metric(
        &text,
        r#"callm_requests_total{endpoint="/v1/chat/completions",status="200"}"#,
    )
    .unwrap_or(0.0);
    assert!(ok >= 32.0 + served as f64, "{text}");
    if refused > 0 {
        assert_eq!(
            metric(
                &text,
                r#"callm_requests_total{endpoint="/v1/chat/completions",status="429"}"#
            ),
            Some(refused as f64),
            "{text}"
        );
    }
    // The alone run's streams are in the token counters and histograms.
    let out: f64 = alone.len() as f64;
    assert!(metric(&text, "callm_completion_tokens_total").unwrap() >= out * 10.0);
    assert!(metric(&text, "callm_time_to_first_token_seconds_count").unwrap() >= out);
    assert!(metric(&text, "callm_inter_token_seconds_count").unwrap() >= out * 9.0);
    // Batches of more than one sequence happened: the sum of sequences exceeds the steps.
    let (seqs, steps) = (
        metric(&text, "callm_batch_sequences_sum").unwrap(),
        metric(&text, "callm_batch_sequences_count").unwrap(),
    );
    assert!(seqs > steps, "{seqs} sequences in {steps} steps");
    // A repeated request reuses its prefix.
    assert!(metric(&text, "callm_prefix_cache_hits_total").unwrap() >= 1.0);
    assert!(metric(&text, "callm_prefix_cache_reused_tokens_total").unwrap() >= 1.0);
    let _ = tx.send(());
}

/// The value of the sample line `name value` in a Prometheus text exposition.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}
