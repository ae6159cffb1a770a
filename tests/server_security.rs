//! The server's defences against browsers on the same machine and misbehaving clients,
//! over real TCP (raw HTTP/1.1 where a client library would hide the bytes): `Host` and
//! `Origin` checks of keyless servers (DNS rebinding, cross-site requests), JSON-only bodies,
//! the allow flags, an empty `--api-key` refused at start, header and body read timeouts,
//! an early 413, and 500s that name only the request id (also with `RUST_BACKTRACE` set).

mod server_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use callm::server::Access;
use serde_json::{json, Value};
use server_support::{assert_error_shape, sse_data, start, Config, TestServer, MODEL};

const CHAT: &str = "/v1/chat/completions";

fn chat_body(content: &str) -> String {
    json!({"model": MODEL, "messages": [{"role": "user", "content": content}]}).to_string()
}

/// A raw HTTP/1.1 exchange: status, headers (lower-case names) and body.
struct Raw {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn error(&self) -> Value {
        let v: Value = serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body));
        assert_error_shape(&v)
    }
}

/// Sends `head` (request line and headers, without the blank line) and `body`, with
/// `Connection: close`, and reads the whole answer.
async fn raw(s: &TestServer, head: &str, body: &str) -> Raw {
    let req = format!(
        "{head}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let addr = s.addr;
    let buf = tokio::task::spawn_blocking(move || {
        let mut conn = connect(addr);
        conn.write_all(req.as_bytes()).expect("write");
        read_all(&mut conn)
    })
    .await
    .expect("exchange");
    parse(&buf)
}

/// A connection whose reads give up after 20 s (far beyond any timeout under test).
fn connect(addr: std::net::SocketAddr) -> TcpStream {
    let c = TcpStream::connect(addr).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("read timeout");
    c
}

/// Reads until the server closes the connection; panics when the read times out.
fn read_all(c: &mut TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    c.read_to_end(&mut buf)
        .expect("the server answered and closed in time");
    buf
}

fn parse(buf: &[u8]) -> Raw {
    let text = String::from_utf8_lossy(buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Raw {
        status,
        headers,
        body: body.to_string(),
    }
}

fn post_head(host: &str, extra: &str) -> String {
    let mut h = format!("POST {CHAT} HTTP/1.1\r\nHost: {host}");
    if !extra.is_empty() {
        h.push_str("\r\n");
        h.push_str(extra);
    }
    h
}

const JSON: &str = "Content-Type: application/json";

#[tokio::test]
async fn keyless_server_answers_only_loopback_hosts_and_origins() {
    let s = start(Config::default()).await;
    let port = s.addr.port();
    let body = chat_body("hi");
    // Loopback names and addresses, with and without the port: answered.
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        "localhost".to_string(),
        format!("api.localhost:{port}"),
    ] {
        let r = raw(&s, &post_head(&host, JSON), &body).await;
        assert_eq!(r.status, 200, "Host {host}: {}", r.body);
    }
    let calls = s.mock.calls();
    // DNS rebinding: the attacker's name resolves to 127.0.0.1, the browser sends it as Host.
    for host in [
        format!("evil.example:{port}"),
        format!("127.0.0.1.nip.io:{port}"),
        format!("localhost.evil.example:{port}"),
    ] {
        let r = raw(&s, &post_head(&host, JSON), &body).await;
        assert_eq!(r.status, 403, "Host {host}");
        assert_eq!(r.error()["code"], "host_not_allowed");
        assert!(r
            .header("x-request-id")
            .is_some_and(|id| id.starts_with("req_")));
        let r = raw(&s, &format!("GET /v1/models HTTP/1.1\r\nHost: {host}"), "").await;
        assert_eq!(r.status, 403, "GET with Host {host}");
        let r = raw(&s, &format!("GET /health HTTP/1.1\r\nHost: {host}"), "").await;
        assert_eq!(r.status, 403, "health with Host {host}");
    }
    // A page of a foreign site posting cross-site (no preflight for these content types).
    let local = format!("127.0.0.1:{port}");
    for ct in [
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
        "application/json",
    ] {
        for origin in ["http://evil.example", "null", "https://evil.example:8080"] {
            let extra = format!("Content-Type: {ct}\r\nOrigin: {origin}");
            let r = raw(&s, &post_head(&local, &extra), &body).await;
            assert_eq!(r.status, 403, "{ct} from {origin}");
            assert_eq!(r.error()["code"], "origin_not_allowed");
        }
    }
    assert_eq!(
        s.mock.calls(),
        calls,
        "a refused request reached the engine"
    );
    // Pages of loopback origins and of the server itself are answered.
    for origin in [
        format!("http://127.0.0.1:{port}"),
        "http://localhost:3000".to_string(),
        "http://[::1]:5173".to_string(),
    ] {
        let extra = format!("{JSON}\r\nOrigin: {origin}");
        let r = raw(&s, &post_head(&local, &extra), &body).await;
        assert_eq!(r.status, 200, "Origin {origin}: {}", r.body);
    }
}

#[tokio::test]
async fn json_endpoints_take_only_json_bodies() {
    let s = start(Config::default()).await;
    let host = format!("127.0.0.1:{}", s.addr.port());
    let body = chat_body("hi");
    let calls = s.mock.calls();
    for ct in [
        "Content-Type: text/plain;charset=UTF-8",
        "Content-Type: application/x-www-form-urlencoded",
        "Content-Type: multipart/form-data; boundary=x",
        "",
    ] {
        let r = raw(&s, &post_head(&host, ct), &body).await;
        assert_eq!(r.status, 415, "{ct:?}: {}", r.body);
        assert_eq!(r.error()["code"], "unsupported_media_type");
        let head = format!("POST /v1/completions HTTP/1.1\r\nHost: {host}\r\n{ct}");
        let r = raw(&s, head.trim_end(), r#"{"prompt": "x"}"#).await;
        assert_eq!(r.status, 415, "completions {ct:?}");
    }
    assert_eq!(s.mock.calls(), calls);
    let r = raw(
        &s,
        &post_head(&host, "Content-Type: application/json; charset=utf-8"),
        &body,
    )
    .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn with_a_key_the_key_is_the_protection() {
    let s = start(Config {
        api_key: Some("sekrit".into()),
        ..Config::default()
    })
    .await;
    let body = chat_body("hi");
    let auth = "Authorization: Bearer sekrit";
    let r = raw(
        &s,
        &post_head("server.lan:8080", &format!("{JSON}\r\n{auth}")),
        &body,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let extra = format!("{JSON}\r\n{auth}\r\nOrigin: https://app.example");
    let r = raw(&s, &post_head("server.lan", &extra), &body).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = raw(&s, &post_head("server.lan", JSON), &body).await;
    assert_eq!(r.status, 401);
    // JSON endpoints take JSON whatever the key.
    let extra = format!("Content-Type: text/plain\r\n{auth}");
    let r = raw(&s, &post_head("server.lan", &extra), &body).await;
    assert_eq!(r.status, 415);
}

#[tokio::test]
async fn allow_flags_open_what_they_name() {
    let s = start(Config {
        access: Access::new(&["box.lan".into()], &["http://app.lan:3000".into()]),
        ..Config::default()
    })
    .await;
    let body = chat_body("hi");
    let r = raw(&s, &post_head("box.lan:8080", JSON), &body).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = raw(&s, &post_head("other.lan:8080", JSON), &body).await;
    assert_eq!(r.status, 403);
    let extra = format!("{JSON}\r\nOrigin: http://app.lan:3000");
    assert_eq!(
        raw(&s, &post_head("box.lan", &extra), &body).await.status,
        200
    );
    let extra = format!("{JSON}\r\nOrigin: http://app.lan:3001");
    assert_eq!(
        raw(&s, &post_head("box.lan", &extra), &body).await.status,
        403
    );
}

#[test]
fn an_empty_api_key_is_refused_at_start() {
    let run = |args: &[&str], env: Option<&str>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_mock_server"));
        cmd.args(["serve", "--port", "0"]).args(args);
        cmd.env_remove("CALLM_API_KEY");
        if let Some(v) = env {
            cmd.env("CALLM_API_KEY", v);
        }
        let mut child = cmd
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn mock_server");
        // A refused start exits at once; a server would run until killed.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                let out = child.wait_with_output().expect("output");
                return (
                    status.success(),
                    String::from_utf8_lossy(&out.stderr).into_owned(),
                );
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return (true, "still running".to_string());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    for (args, env) in [
        (&["--api-key", ""][..], None),
        (&["--api-key", "  "][..], None),
        (&[][..], Some("")),
    ] {
        let (ok, stderr) = run(args, env);
        assert!(!ok, "{args:?} {env:?} started");
        assert!(stderr.contains("--api-key"), "{stderr}");
    }
}

#[tokio::test]
async fn half_sent_request_heads_are_closed_after_the_header_timeout() {
    let timeout = Duration::from_millis(1500);
    let s = start(Config {
        header_read_timeout: timeout,
        ..Config::default()
    })
    .await;
    let addr = s.addr;
    let (closed, elapsed) = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let mut conns = Vec::new();
        for i in 0..300 {
            let mut c = connect(addr);
            // A third send nothing, the rest stop inside the head.
            if i % 3 != 0 {
                let part = format!("POST {CHAT} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: {i}");
                c.write_all(part.as_bytes()).expect("write");
            }
            conns.push(c);
        }
        // Every connection is closed by the server (EOF or reset, no answer needed) within
        // the timeout and a generous margin for a loaded machine, far below the 20 s a read
        // waits here.
        let mut closed = 0;
        let deadline = started + Duration::from_secs(20);
        for mut c in conns {
            let left = deadline.saturating_duration_since(Instant::now());
            c.set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .expect("read timeout");
            let mut buf = [0u8; 1024];
            loop {
                match c.read(&mut buf) {
                    Ok(0) => break closed += 1,
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break closed += 1,
                    Err(_) => break,
                }
            }
        }
        (closed, started.elapsed())
    })
    .await
    .expect("connections");
    assert_eq!(closed, 300, "connections left open");
    assert!(elapsed >= timeout, "closed before the timeout");
    // The server still answers.
    let r = raw(&s, &post_head("127.0.0.1", JSON), &chat_body("hi")).await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn a_trickled_body_is_a_408_after_the_body_timeout() {
    let s = start(Config {
        body_read_timeout: Duration::from_millis(1000),
        ..Config::default()
    })
    .await;
    let head = format!(
        "{}\r\nContent-Length: 1000\r\n\r\n{{\"messages\"",
        post_head("127.0.0.1", JSON)
    );
    let addr = s.addr;
    let buf = tokio::task::spawn_blocking(move || {
        let mut c = connect(addr);
        c.write_all(head.as_bytes()).expect("write");
        read_all(&mut c)
    })
    .await
    .expect("exchange");
    let r = parse(&buf);
    assert_eq!(r.status, 408, "{}", r.body);
    assert_eq!(r.error()["code"], "request_timeout");
}

#[tokio::test]
async fn a_declared_oversized_body_is_a_413_at_once() {
    // The body timeout is far beyond the 20 s a read waits: a 413 must not wait for the body.
    let s = start(Config {
        max_body: 4096,
        body_read_timeout: Duration::from_secs(600),
        ..Config::default()
    })
    .await;
    let head = format!(
        "{}\r\nContent-Length: 15000000\r\n\r\n{{\"messages\": [",
        post_head("127.0.0.1", JSON)
    );
    let addr = s.addr;
    let buf = tokio::task::spawn_blocking(move || {
        let mut c = connect(addr);
        c.write_all(head.as_bytes()).expect("write");
        let mut buf = vec![0u8; 4096];
        let n = c.read(&mut buf).expect("a 413 before the body");
        buf.truncate(n);
        buf
    })
    .await
    .expect("exchange");
    let r = parse(&buf);
    assert_eq!(r.status, 413, "{}", r.body);
    assert_eq!(r.error()["code"], "payload_too_large");
    // A body larger than the limit without a declared length (chunked) is cut at the limit.
    let big = chat_body(&"x".repeat(10_000));
    let resp = s
        .client
        .post(format!("{}{CHAT}", s.base))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(vec![
            Ok::<_, std::io::Error>(big),
        ])))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status().as_u16(), 413);
}

/// Log lines written by the test process's subscriber.
fn log() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = buf.clone();
        let _ = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || LogWriter(writer.clone()))
            .try_init();
        buf
    })
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logged() -> String {
    String::from_utf8_lossy(&log().lock().unwrap_or_else(|p| p.into_inner())).into_owned()
}

#[tokio::test]
async fn internal_errors_name_only_the_request_id_and_log_the_details() {
    log();
    let s = start(Config::default()).await;
    for marker in ["[[internal]]", "[[panic]]"] {
        let resp = s
            .client
            .post(format!("{}{CHAT}", s.base))
            .json(&json!({"messages": [{"role": "user", "content": marker}]}))
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status().as_u16(), 500);
        let id = resp
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .expect("x-request-id")
            .to_string();
        let text = resp.text().await.expect("body");
        let e = assert_error_shape(&serde_json::from_str(&text).expect("json"));
        assert_eq!(e["message"], format!("internal error (request id {id})"));
        assert_eq!(e["type"], "server_error");
        for leak in ["mock", "backtrace", "panicked", "src/"] {
            assert!(!text.contains(leak), "{leak} in {text}");
        }
        if marker == "[[internal]]" {
            let log = logged();
            let line = log
                .lines()
                .find(|l| l.contains(&id) && l.contains("internal error"))
                .unwrap_or_else(|| panic!("no log line for {id}: {log}"));
            assert!(line.contains("mock engine failure"), "{line}");
        }
    }
    // Mid-stream: the error event names the request too.
    let resp = s
        .client
        .post(format!("{}{CHAT}", s.base))
        .json(
            &json!({"stream": true, "messages": [{"role": "user", "content": "[[fail-midway]]"}]}),
        )
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status().as_u16(), 200);
    let id = resp.headers()["x-request-id"]
        .to_str()
        .expect("id")
        .to_string();
    let data = sse_data(&resp.text().await.expect("body"));
    let last: Value = serde_json::from_str(data.last().expect("events")).expect("json");
    let e = assert_error_shape(&last);
    assert_eq!(e["message"], format!("internal error (request id {id})"));
    // Every answer carries an id, also errors that are not 500s.
    for path in ["/v1/models", "/v1/nowhere", "/health"] {
        let resp = s
            .client
            .get(format!("{}{path}", s.base))
            .send()
            .await
            .expect("send");
        let id = resp.headers().get("x-request-id").expect("x-request-id");
        assert!(id.to_str().is_ok_and(|v| v.starts_with("req_")));
    }
}

/// The test above again, in a child of this test binary with `RUST_BACKTRACE=full` set from
/// its start (the variable cannot be set safely inside a running multi-threaded test): a
/// backtrace never reaches a body.
#[test]
fn internal_errors_leak_nothing_with_rust_backtrace_set() {
    let name = "internal_errors_name_only_the_request_id_and_log_the_details";
    let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([name, "--exact", "--test-threads=1"])
        .env("RUST_BACKTRACE", "full")
        .output()
        .expect("run the child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
