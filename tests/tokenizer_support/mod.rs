//! Shared helpers for the tokenizer tests: where fixtures and models live, and the vector files.
//!
//! Included by the other `tokenizer_*` tests with `#[path]`; compiled alone it has no tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// Fixture root: `$CALLM_FIXTURES`, else `<manifest>/../shared/fixtures`.
pub fn fixtures_dir() -> PathBuf {
    let dir = match std::env::var_os("CALLM_FIXTURES") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures"),
    };
    assert!(
        dir.is_dir(),
        "fixture directory {} not found: set CALLM_FIXTURES to the shared fixtures folder",
        dir.display()
    );
    dir
}

/// Path of a fixture `tokenizer.json`, e.g. `tokenizer_json("qwen2")`.
pub fn tokenizer_json(name: &str) -> PathBuf {
    fixtures_dir()
        .join("tokenizers")
        .join(name)
        .join("tokenizer.json")
}

/// Model root: `$CALLM_MODELS_DIR`, else `~/.cache/callm/models`.
pub fn models_dir() -> PathBuf {
    match std::env::var_os("CALLM_MODELS_DIR") {
        Some(d) => PathBuf::from(d),
        None => {
            let home = std::env::var_os("HOME").unwrap_or_else(|| ".".into());
            PathBuf::from(home).join(".cache/callm/models")
        }
    }
}

/// A real model file, or `None` (loudly) when `CALLM_SKIP_REAL_MODELS=1`; panics if it is missing.
pub fn real_model(file: &str) -> Option<PathBuf> {
    if std::env::var("CALLM_SKIP_REAL_MODELS").is_ok_and(|v| v == "1") {
        // Written straight to stderr so the test harness does not capture it.
        let note = format!("SKIPPED: test needs real model {file} but CALLM_SKIP_REAL_MODELS=1\n");
        let _ = std::io::Write::write_all(&mut std::io::stderr(), note.as_bytes());
        return None;
    }
    let path = models_dir().join(file);
    assert!(
        path.is_file(),
        "real model {} is missing: run scripts/fetch-models.sh (or set CALLM_MODELS_DIR; \
         CALLM_SKIP_REAL_MODELS=1 skips these tests)",
        path.display()
    );
    Some(path)
}

/// The SmolLM2 GGUF file name.
pub const SMOLLM2: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
/// The Qwen2.5-Coder GGUF file name.
pub const QWEN25_CODER: &str = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf";

/// Reads `tokenizer-vectors/ggml-vocab-NAME.gguf.{inp,out}` into (text, ids) pairs.
///
/// `.inp` holds strings each followed by the line `__ggml_vocab_test__` (so the file ends with
/// `\n__ggml_vocab_test__\n`); `.out` holds one line of space-separated ids per string.
pub fn read_vectors(name: &str) -> Vec<(String, Vec<u32>)> {
    let dir = fixtures_dir().join("tokenizer-vectors");
    let inp_path = dir.join(format!("ggml-vocab-{name}.gguf.inp"));
    let out_path = dir.join(format!("ggml-vocab-{name}.gguf.out"));
    let inp = std::fs::read_to_string(&inp_path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", inp_path.display()));
    let out = std::fs::read_to_string(&out_path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", out_path.display()));
    const SEP: &str = "\n__ggml_vocab_test__\n";
    let body = inp.strip_suffix(SEP).unwrap_or_else(|| {
        panic!(
            "{} does not end with the separator line",
            inp_path.display()
        )
    });
    let texts: Vec<&str> = body.split(SEP).collect();
    let lines: Vec<&str> = out.strip_suffix('\n').unwrap_or(&out).split('\n').collect();
    assert_eq!(
        texts.len(),
        lines.len(),
        "{name}: {} strings but {} id lines",
        texts.len(),
        lines.len()
    );
    texts
        .iter()
        .zip(lines)
        .map(|(t, l)| {
            let ids = l
                .split_whitespace()
                .map(|x| {
                    x.parse::<u32>()
                        .unwrap_or_else(|e| panic!("{name}: bad id {x:?}: {e}"))
                })
                .collect();
            (t.to_string(), ids)
        })
        .collect()
}
