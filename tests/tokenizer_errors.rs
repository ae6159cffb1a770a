//! Broken inputs give clear errors naming the file or key, never panics.

#[path = "tokenizer_support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::path::PathBuf;

use callm::tokenizer::{Tokenizer, TokenizerError};
use candle_core::quantized::gguf_file::{Content, Value, VersionedMagic};

fn temp_file(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("callm-tokenizer-errors-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("{e}"));
    path
}

#[test]
fn truncated_tokenizer_json_is_a_clear_error() {
    let full = std::fs::read(support::tokenizer_json("qwen2")).unwrap_or_else(|e| panic!("{e}"));
    let path = temp_file("truncated-tokenizer.json", &full[..full.len() / 3]);
    let err = Tokenizer::from_file(&path).expect_err("truncated file must fail");
    assert!(
        matches!(err, TokenizerError::InvalidTokenizerJson { .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains("truncated-tokenizer.json"), "{msg}");
    assert!(msg.contains("tokenizer.json"), "{msg}");
    assert!(msg.contains("EOF") || msg.contains("line"), "{msg}");
}

#[test]
fn garbage_and_empty_tokenizer_json_are_clear_errors() {
    for (name, bytes) in [
        ("garbage.json", &b"\x00\xffnot json at all"[..]),
        ("empty.json", &b"  \n"[..]),
        ("wrong-shape.json", &b"{\"hello\": [1, 2, 3]}"[..]),
        ("array.json", &b"[1, 2, 3]"[..]),
    ] {
        let path = temp_file(name, bytes);
        let err = Tokenizer::from_file(&path).expect_err(name);
        assert!(
            matches!(err, TokenizerError::InvalidTokenizerJson { .. }),
            "{name}: {err:?}"
        );
        assert!(err.to_string().contains(name), "{err}");
    }
}

#[test]
fn missing_tokenizer_json_names_the_path() {
    let err = Tokenizer::from_file("/nonexistent/dir/tokenizer.json").expect_err("missing");
    assert!(matches!(err, TokenizerError::Io { .. }), "{err:?}");
    assert!(
        err.to_string().contains("/nonexistent/dir/tokenizer.json"),
        "{err}"
    );
}

fn content(entries: Vec<(&str, Value)>) -> Content {
    Content {
        magic: VersionedMagic::GgufV3,
        metadata: entries
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect::<HashMap<_, _>>(),
        tensor_infos: HashMap::new(),
        tensor_data_offset: 0,
    }
}

fn strings(items: &[&str]) -> Value {
    Value::Array(items.iter().map(|s| Value::String(s.to_string())).collect())
}

fn gguf_err(entries: Vec<(&str, Value)>) -> TokenizerError {
    Tokenizer::from_gguf(&content(entries)).expect_err("must fail")
}

#[test]
fn gguf_without_tokenizer_keys_is_a_clear_error() {
    let err = gguf_err(vec![(
        "general.architecture",
        Value::String("llama".into()),
    )]);
    assert!(
        matches!(err, TokenizerError::MissingMetadata { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("tokenizer.ggml.model"), "{err}");

    let err = gguf_err(vec![("tokenizer.ggml.model", Value::String("gpt2".into()))]);
    assert!(err.to_string().contains("tokenizer.ggml.tokens"), "{err}");

    let err = gguf_err(vec![
        ("tokenizer.ggml.model", Value::String("gpt2".into())),
        ("tokenizer.ggml.tokens", strings(&["a", "b", "ab"])),
    ]);
    assert!(err.to_string().contains("tokenizer.ggml.merges"), "{err}");
}

#[test]
fn gguf_with_malformed_tokenizer_keys_is_a_clear_error() {
    let base = |extra: Vec<(&'static str, Value)>| {
        let mut v = vec![
            ("tokenizer.ggml.model", Value::String("gpt2".into())),
            ("tokenizer.ggml.tokens", strings(&["a", "b", "ab"])),
            ("tokenizer.ggml.merges", strings(&["a b"])),
        ];
        v.extend(extra);
        v
    };
    // A working minimal vocabulary first.
    let ok = Tokenizer::from_gguf(&content(base(vec![]))).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        ok.encode("abab", false).unwrap_or_else(|e| panic!("{e}")),
        vec![2, 2]
    );

    let err = gguf_err(base(vec![(
        "tokenizer.ggml.token_type",
        Value::Array(vec![Value::I32(1)]),
    )]));
    assert!(
        matches!(err, TokenizerError::InvalidMetadata { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("tokenizer.ggml.token_type"),
        "{err}"
    );

    let err = gguf_err(base(vec![("tokenizer.ggml.eos_token_id", Value::U32(99))]));
    assert!(err.to_string().contains("out of range"), "{err}");

    let err = gguf_err(base(vec![(
        "tokenizer.ggml.eos_token_id",
        Value::String("x".into()),
    )]));
    assert!(
        err.to_string().contains("tokenizer.ggml.eos_token_id"),
        "{err}"
    );

    let mut bad_merge = base(vec![]);
    bad_merge[2] = ("tokenizer.ggml.merges", strings(&["a c"]));
    let err = gguf_err(bad_merge);
    assert!(matches!(err, TokenizerError::Build(_)), "{err:?}");

    let mut no_space = base(vec![]);
    no_space[2] = ("tokenizer.ggml.merges", strings(&["ab"]));
    assert!(gguf_err(no_space).to_string().contains("merge 0"));

    let mut tokens_not_strings = base(vec![]);
    tokens_not_strings[1] = ("tokenizer.ggml.tokens", Value::Array(vec![Value::U32(1)]));
    assert!(gguf_err(tokens_not_strings)
        .to_string()
        .contains("expected a string"));

    let mut unsupported = base(vec![]);
    unsupported[0] = ("tokenizer.ggml.model", Value::String("bert".into()));
    let err = gguf_err(unsupported);
    assert!(
        matches!(err, TokenizerError::UnsupportedModel(_)),
        "{err:?}"
    );
    assert!(err.to_string().contains("bert"), "{err}");
}

#[test]
fn garbage_and_truncated_gguf_files_are_clear_errors() {
    let path = temp_file("garbage.gguf", b"GGUF\x03\x00\x00\x00garbage");
    let err = Tokenizer::from_gguf_file(&path).expect_err("garbage gguf");
    assert!(matches!(err, TokenizerError::InvalidGguf { .. }), "{err:?}");
    assert!(err.to_string().contains("garbage.gguf"), "{err}");

    let path = temp_file("not-gguf.gguf", b"this is not a gguf file");
    let err = Tokenizer::from_gguf_file(&path).expect_err("not gguf");
    assert!(matches!(err, TokenizerError::InvalidGguf { .. }), "{err:?}");
}

#[test]
fn truncated_real_gguf_is_a_clear_error() {
    let Some(path) = support::real_model(support::SMOLLM2) else {
        return;
    };
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{e}"));
    // The header alone (metadata with the vocabulary) is over 1 MB: cut inside it.
    let cut = temp_file("truncated.gguf", &bytes[..256 * 1024]);
    let err = Tokenizer::from_gguf_file(&cut).expect_err("truncated gguf");
    assert!(matches!(err, TokenizerError::InvalidGguf { .. }), "{err:?}");
    assert!(err.to_string().contains("truncated.gguf"), "{err}");
}
