//! Shared helpers of the server integration tests: a server over the mock engine on an
//! ephemeral loopback port, and SSE parsing.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use callm::server::listen::serve_with_timeout;
use callm::server::mock::MockBackend;
use callm::server::{router, Access, AppState};
use serde_json::Value;

/// Settings of a test server.
#[derive(Debug, Clone)]
pub struct Config {
    pub delay_ms: u64,
    pub max_concurrent: usize,
    pub queue: usize,
    pub api_key: Option<String>,
    pub max_body: usize,
    /// `Host`s and `Origin`s accepted beyond loopback (keyless servers).
    pub access: Access,
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            delay_ms: 0,
            max_concurrent: 2,
            queue: 64,
            api_key: None,
            max_body: 1 << 20,
            access: Access::default(),
            header_read_timeout: callm::server::HEADER_READ_TIMEOUT,
            body_read_timeout: callm::server::BODY_READ_TIMEOUT,
        }
    }
}

/// A running server; shut down when dropped.
pub struct TestServer {
    pub base: String,
    pub mock: Arc<MockBackend>,
    pub client: reqwest::Client,
    pub addr: std::net::SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

pub const MODEL: &str = "mock-model";

/// Starts a server over a fresh mock on 127.0.0.1 and an ephemeral port.
pub async fn start(cfg: Config) -> TestServer {
    let mock = Arc::new(MockBackend::new(MODEL, Duration::from_millis(cfg.delay_ms)));
    start_backend(mock.clone(), mock, cfg).await
}

/// Starts a server over `backend` (`mock` is only what the handle reports on).
pub async fn start_backend(
    backend: Arc<dyn callm::chat::ChatBackend>,
    mock: Arc<MockBackend>,
    cfg: Config,
) -> TestServer {
    let mut state = AppState::new(backend, cfg.max_concurrent, cfg.queue, cfg.api_key.clone())
        .with_access(cfg.access.clone());
    state.body_read_timeout = cfg.body_read_timeout;
    let app = router(state, cfg.max_body);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let stop = async {
            let _ = rx.await;
        };
        let _ = serve_with_timeout(listener, app, stop, cfg.header_read_timeout).await;
    });
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("client");
    TestServer {
        base: format!("http://{addr}"),
        mock,
        client,
        addr,
        shutdown: Some(tx),
    }
}

impl TestServer {
    /// POSTs JSON to `path`; returns status and body text.
    pub async fn post(&self, path: &str, body: &Value) -> (u16, String) {
        let resp = self
            .client
            .post(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await
            .expect("send");
        let status = resp.status().as_u16();
        (status, resp.text().await.expect("body"))
    }

    /// POSTs JSON to `path` and parses the JSON answer.
    pub async fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        let (status, text) = self.post(path, body).await;
        let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
        (status, v)
    }

    /// Waits (bounded) until `cond` holds on the mock.
    pub async fn wait_for(&self, what: &str, cond: impl Fn(&MockBackend) -> bool) {
        for _ in 0..500 {
            if cond(&self.mock) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting for {what}");
    }
}

/// The `data:` payloads of an SSE body, in order.
pub fn sse_data(body: &str) -> Vec<String> {
    body.split("\n\n")
        .flat_map(|event| event.lines())
        .filter_map(|line| line.strip_prefix("data:"))
        .map(|d| d.trim_start().to_string())
        .collect()
}

/// Sorted keys of a JSON object.
pub fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    k.sort();
    k
}

/// Sorted list of the given names.
pub fn names(list: &[&str]) -> Vec<String> {
    let mut k: Vec<String> = list.iter().map(|s| s.to_string()).collect();
    k.sort();
    k
}

/// Asserts the OpenAI error shape and returns the inner error object.
pub fn assert_error_shape(v: &Value) -> Value {
    assert_eq!(keys(v), names(&["error"]), "error body: {v}");
    let e = v["error"].clone();
    assert_eq!(
        keys(&e),
        names(&["message", "type", "param", "code"]),
        "error body: {v}"
    );
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert!(e["type"].is_string());
    e
}

/// A weather tool and a temperature tool, OpenAI style.
pub fn tools() -> Value {
    serde_json::json!([
        {"type": "function", "function": {
            "name": "get_weather", "description": "Current weather of a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
        {"type": "function", "function": {
            "name": "get_temperature", "description": "Temperature of a city",
            "parameters": {"type": "object", "properties": {
                "city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                "required": ["city"]}}}
    ])
}

/// A tiny random-weight fixture model (`tiny-models/ARCH`) with the byte-level test
/// tokenizer of `callm::constrain::testing`, loaded as `family` with `context` positions.
pub fn tiny_model(arch: &str, family: &str, context: usize) -> callm::runtime::LoadedModel {
    let fx = callm::paths::fixtures_dir().join("tiny-models").join(arch);
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!(
        "callm-tiny-{arch}-{family}-{}-{n}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(fx.join(f), dir.join(f)).expect("fixture");
    }
    let tok = callm::constrain::testing::byte_tokenizer().expect("tokenizer");
    let json = tok.inner().to_string(false).expect("tokenizer json");
    std::fs::write(dir.join("tokenizer.json"), json).expect("write");
    std::fs::write(
        dir.join("tokenizer_config.json"),
        r#"{"eos_token": "<|im_end|>"}"#,
    )
    .expect("write");
    let opts = callm::runtime::LoadOptions {
        model: dir.display().to_string(),
        family: Some(family.to_string()),
        context: Some(context),
        ..Default::default()
    };
    callm::runtime::LoadedModel::load(&opts, &callm::registry::Registry::builtin())
        .expect("tiny model")
}

/// A server over a tiny fixture model (see [`tiny_model`]); requests name no model.
pub async fn start_tiny(arch: &str, family: &str, context: usize) -> TestServer {
    let lm = Arc::new(tiny_model(arch, family, context));
    let backend = Arc::new(callm::chat::EngineBackend::new(lm));
    let unused = Arc::new(MockBackend::new(MODEL, Duration::ZERO));
    let cfg = Config {
        max_body: 32 << 20,
        ..Config::default()
    };
    start_backend(backend, unused, cfg).await
}

/// The events of an SSE body, in order: `(event name, data)`.
pub fn sse_events(body: &str) -> Vec<(Option<String>, String)> {
    body.split("\n\n")
        .filter_map(|event| {
            let mut name = None;
            let mut data = Vec::new();
            for line in event.lines() {
                if let Some(n) = line.strip_prefix("event:") {
                    name = Some(n.trim().to_string());
                } else if let Some(d) = line.strip_prefix("data:") {
                    data.push(d.trim_start().to_string());
                }
            }
            (!data.is_empty()).then(|| (name, data.join("\n")))
        })
        .collect()
}

/// Asserts Anthropic's error shape with the given type and returns the message.
pub fn assert_anthropic_error(v: &Value, kind: &str) -> String {
    assert_eq!(keys(v), names(&["type", "error"]), "error body: {v}");
    assert_eq!(v["type"], "error", "{v}");
    assert_eq!(keys(&v["error"]), names(&["type", "message"]), "{v}");
    assert_eq!(v["error"]["type"], kind, "{v}");
    let m = v["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(!m.is_empty(), "{v}");
    m
}

/// Anthropic-style tools: weather and temperature.
pub fn anthropic_tools() -> Value {
    serde_json::json!([
        {"name": "get_weather", "description": "Current weather of a city",
         "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
        {"name": "get_temperature", "description": "Temperature of a city",
         "input_schema": {"type": "object", "properties": {
            "city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["city"]}}
    ])
}
