//! `callm chat` over the mock engine: in-process with scripted input, and as a process
//! (`mock_server chat`) with piped, non-TTY stdin.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use callm::cli::chat::{run_chat_io, ChatOptions};
use callm::server::mock::MockBackend;

fn tools_file(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("tools.json");
    let tools = serde_json::json!([
        {"type": "function", "function": {"name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}},
        {"name": "get_temperature", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}
    ]);
    std::fs::write(&path, tools.to_string()).expect("write tools");
    path
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("callm-chat-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

#[test]
fn scripted_chat_with_tool_round() {
    let dir = temp_dir("inproc");
    let opts = ChatOptions {
        tools: Some(tools_file(&dir)),
        system: Some("Be brief.".into()),
        ..Default::default()
    };
    let mock = MockBackend::new("mock-model", Duration::ZERO);
    let script = "hello\nWhat is the weather in Paris?\n{\"sky\": \"clear\"}\n/reset\nagain\n/exit\nnever read\n";
    let mut input = std::io::Cursor::new(script.as_bytes());
    let mut out = Vec::new();
    run_chat_io(&mock, &opts, &mut input, &mut out, false).expect("chat runs");
    let out = String::from_utf8(out).expect("utf8");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "Hello! You said: hello");
    assert!(lines[1].starts_with("tool call: {\"id\":\"call_"), "{out}");
    assert!(
        lines[1].contains("\"name\":\"get_weather\",\"arguments\":{\"city\":\"Paris\"}"),
        "{out}"
    );
    assert_eq!(lines[2], "Based on the tool results: {\"sky\": \"clear\"}");
    assert_eq!(lines[3], "Hello! You said: again");
    assert_eq!(lines.len(), 4, "{out}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn engine_errors_do_not_end_the_chat() {
    let mock = MockBackend::new("mock-model", Duration::ZERO);
    let mut input = std::io::Cursor::new(&b"[[context]]\nfine\n"[..]);
    let mut out = Vec::new();
    run_chat_io(&mock, &ChatOptions::default(), &mut input, &mut out, false).expect("chat runs");
    let out = String::from_utf8(out).expect("utf8");
    assert!(
        out.contains("error: this model's maximum context length is 4096"),
        "{out}"
    );
    assert!(out.ends_with("Hello! You said: fine\n"), "{out}");
}

#[test]
fn piped_stdin_to_the_binary() {
    let dir = temp_dir("bin");
    let tools = tools_file(&dir);
    let mut child = Command::new(env!("CARGO_BIN_EXE_mock_server"))
        .args(["chat", "--tools"])
        .arg(&tools)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mock_server");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"temperature in Paris please\n21C\n")
        .expect("write");
    let output = child.wait_with_output().expect("wait");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(out.contains("tool call: {"), "{out}");
    assert!(out.contains("\"name\":\"get_temperature\""), "{out}");
    assert!(out.contains("Based on the tool results: 21C"), "{out}");
    let _ = std::fs::remove_dir_all(dir);
}
