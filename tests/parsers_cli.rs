//! Tests of the `parse` subcommand's building blocks.

use callm::cli::parse::{parse_streaming, render, resolve_chain};
use callm::parsers::ParseOptions;
use serde_json::{json, Value};

#[test]
fn family_names_and_parser_lists_resolve() {
    assert_eq!(
        resolve_chain("qwen2.5").expect("family").names(),
        vec!["hermes", "json_fallback"]
    );
    assert_eq!(
        resolve_chain("gorilla, pythonic").expect("list").names(),
        vec!["gorilla", "pythonic"]
    );
    let err = resolve_chain("nope").unwrap_err().to_string();
    assert!(
        err.contains("nope") && err.contains("hermes") && err.contains("qwen2.5"),
        "{err}"
    );
}

#[test]
fn streaming_chunks_print_the_same_as_one_shot() {
    let chain = resolve_chain("llama-3.1").expect("family");
    let text = "Checking é.\n<|python_tag|>{\"name\": \"get_weather\", \"parameters\": {\"city\": \"東京\"}}";
    let opts = ParseOptions {
        tools: None,
        id_style: None,
        id_seed: Some(0),
    };
    let one = render(&chain.parse(text, &opts));
    for n in [1, 2, 3, 7, 1000] {
        assert_eq!(
            render(&parse_streaming(&chain, text, opts.clone(), n)),
            one,
            "chunks of {n}"
        );
    }
    let v: Value = serde_json::from_str(&one).expect("JSON");
    assert_eq!(v["content"], json!("Checking é."));
    assert_eq!(v["tool_calls"][0]["function"]["name"], json!("get_weather"));
    assert_eq!(v["tool_calls"][0]["type"], json!("function"));
}

/// A typo in a `CALLM_MODELS_TOML` registry stops `callm` before anything loads, with an
/// error naming the family entry and the bad value.
#[test]
fn registry_typos_are_named_before_anything_loads() {
    let builtin = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/models.toml"))
        .expect("models.toml");
    let dir = std::env::temp_dir().join(format!("callm-registry-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let cases = [
        (
            "parsers = [\"hermes\", \"json_fallback\"]\nstop = [\"<|im_end|>\", \"<|endoftext|>\"]",
            "parsers = [\"hermes\", \"json_fallbak\"]\nstop = [\"<|im_end|>\", \"<|endoftext|>\"]",
            "json_fallbak",
        ),
        (
            "architecture = \"qwen2\"",
            "architecture = \"qwen-2\"",
            "qwen-2",
        ),
    ];
    for (i, (good, bad, value)) in cases.into_iter().enumerate() {
        assert!(builtin.contains(good), "models.toml changed: {good}");
        let path = dir.join(format!("models-{i}.toml"));
        std::fs::write(&path, builtin.replacen(good, bad, 1)).expect("write");
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_callm"))
            .args(["parse", "--format", "llama-3.1"])
            .env("CALLM_MODELS_TOML", &path)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run callm");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{err}");
        assert!(
            err.contains("family \"qwen2.5\"") && err.contains(value),
            "the error should name the family and {value:?}: {err}"
        );
    }
}

/// `callm parse` gives each call a fresh id on every run, as a server response does.
#[test]
fn parse_ids_differ_between_runs() {
    use std::io::Write as _;
    let run = || {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_callm"))
            .args(["parse", "--format", "mistral-7b-instruct-v0.3"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("run callm");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(br#"[TOOL_CALLS] [{"name": "f", "arguments": {"a": 1}}]"#)
            .expect("write");
        let out = child.wait_with_output().expect("output");
        assert!(out.status.success());
        let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
        let id = v["tool_calls"][0]["id"].as_str().expect("id").to_string();
        assert!(
            id.len() == 9 && id.bytes().all(|c| c.is_ascii_alphanumeric()),
            "{id}"
        );
        id
    };
    assert_ne!(run(), run());
}

#[test]
fn a_closed_stdout_ends_a_listing_quietly() {
    use std::process::{Command, Stdio};
    // `callm models | head -1`: the reader goes away before the table is written.
    for args in [&["models"][..], &["models", "--json"][..]] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_callm"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}
