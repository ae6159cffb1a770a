//! Tokenizers rebuilt from GGUF metadata: the real Qwen2.5-Coder and SmolLM2 files, and a
//! sentencepiece (`llama`) vocabulary written to an in-memory GGUF from the Llama 2 fixture.

#[path = "tokenizer_support/mod.rs"]
mod support;

use std::io::Cursor;
use std::sync::OnceLock;

use callm::tokenizer::Tokenizer;
use candle_core::quantized::gguf_file::{self, Content, Value};

/// Text mixing ChatML control tokens, CJK, emoji, accents, code, numbers and whitespace runs.
const MIXED: &str = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n\
<|im_start|>user\nWhat's the weather in 東京 today? 🌤️🦙 Café naïve résumé — ÜNÏCÖDÉ! 你好，世界。\n\
```python\ndef f(x):\n    return x**2 + 3.14159 * 1234567 // 0x1F\n```\n\
\t\ttabs   and    spaces \n\n\n   \r\n<|im_end|>\n<|im_start|>assistant\n<|endoftext|>";

fn qwen_gguf() -> Option<&'static Tokenizer> {
    static TOK: OnceLock<Tokenizer> = OnceLock::new();
    let path = support::real_model(support::QWEN25_CODER)?;
    Some(TOK.get_or_init(|| Tokenizer::from_gguf_file(&path).unwrap_or_else(|e| panic!("{e}"))))
}

fn smollm_gguf() -> Option<&'static Tokenizer> {
    static TOK: OnceLock<Tokenizer> = OnceLock::new();
    let path = support::real_model(support::SMOLLM2)?;
    Some(TOK.get_or_init(|| Tokenizer::from_gguf_file(&path).unwrap_or_else(|e| panic!("{e}"))))
}

fn hf(name: &str) -> Tokenizer {
    Tokenizer::from_file(support::tokenizer_json(name)).unwrap_or_else(|e| panic!("{e}"))
}

fn enc(tok: &Tokenizer, text: &str, add_special: bool) -> Vec<u32> {
    tok.encode(text, add_special)
        .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn qwen_gguf_matches_hf_tokenizer_on_mixed_text() {
    let Some(gguf) = qwen_gguf() else { return };
    let hf = hf("qwen2");
    let ids = enc(gguf, MIXED, false);
    assert_eq!(ids, enc(&hf, MIXED, false));
    assert_eq!(enc(gguf, MIXED, true), enc(&hf, MIXED, true));
    assert_eq!(ids[0], 151644, "<|im_start|> is one token");
    assert_eq!(
        ids.iter().filter(|&&i| i == 151645).count(),
        2,
        "<|im_end|> x2"
    );
    assert_eq!(ids.last(), Some(&151643), "<|endoftext|>");
    assert_eq!(
        gguf.decode(&ids, false).unwrap_or_else(|e| panic!("{e}")),
        MIXED
    );
    for line in MIXED.lines() {
        assert_eq!(enc(gguf, line, false), enc(&hf, line, false), "{line:?}");
    }
}

#[test]
fn qwen_gguf_matches_vectors() {
    let Some(gguf) = qwen_gguf() else { return };
    let cases = support::read_vectors("qwen2");
    for (i, (text, expected)) in cases.iter().enumerate() {
        assert_eq!(&enc(gguf, text, false), expected, "vector #{i} {text:?}");
    }
}

#[test]
fn qwen_gguf_special_tokens() {
    let Some(gguf) = qwen_gguf() else { return };
    assert_eq!(gguf.vocab_size(), 151936);
    assert_eq!(gguf.eos_token_id(), Some(151645));
    assert_eq!(gguf.bos_token_id(), Some(151643));
    assert!(!gguf.add_bos_token());
    assert_eq!(
        enc(gguf, "hi", true),
        enc(gguf, "hi", false),
        "no BOS for Qwen"
    );
    assert_eq!(gguf.token_to_id("<|im_start|>"), Some(151644));
    assert_eq!(gguf.id_to_token(151657).as_deref(), Some("<tool_call>"));
    let ids = enc(gguf, "<tool_call>\n{\"name\": \"f\"}\n</tool_call>", false);
    assert_eq!(ids.first(), Some(&151657));
    assert_eq!(ids.last(), Some(&151658));
    assert!(gguf.is_special(151645));
    assert!(
        !gguf.is_special(151657),
        "<tool_call> is user-defined, not control"
    );
    assert!(gguf.added_token_ids().contains(&151657));
    assert_eq!(gguf.special_token_ids().len(), 20);
    // Visible in a stream with special tokens kept.
    let mut stream = gguf.decode_stream(false);
    let text = stream.push_all(&ids).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(text, "<tool_call>\n{\"name\": \"f\"}\n</tool_call>");
}

#[test]
fn smollm_gguf_round_trips_and_special_ids() {
    let Some(tok) = smollm_gguf() else { return };
    assert_eq!(tok.vocab_size(), 49152);
    assert_eq!(tok.bos_token_id(), Some(1));
    assert_eq!(tok.eos_token_id(), Some(2));
    assert!(!tok.add_bos_token());
    assert_eq!(
        tok.special_token_ids(),
        (0..=16).collect::<Vec<u32>>().as_slice()
    );
    assert_eq!(enc(tok, "<|im_start|>", false), vec![1]);
    assert_eq!(enc(tok, "<|im_end|>", false), vec![2]);
    let chat = "<|im_start|>user\nHello there!<|im_end|>\n<|im_start|>assistant\n";
    let ids = enc(tok, chat, true);
    assert_eq!(ids[0], 1);
    assert_eq!(ids.iter().filter(|&&i| i == 1).count(), 2);
    assert_eq!(ids.iter().filter(|&&i| i == 2).count(), 1);
    assert_eq!(
        tok.decode(&ids, false).unwrap_or_else(|e| panic!("{e}")),
        chat
    );
    // smollm splits every digit on its own.
    assert_eq!(enc(tok, "12345", false).len(), 5);
    let hello = enc(tok, "Hello world", false);
    let pieces: Vec<_> = hello.iter().filter_map(|&i| tok.id_to_token(i)).collect();
    assert_eq!(pieces, ["Hello", "\u{120}world"]);

    let mut texts: Vec<String> = support::read_vectors("llama-bpe")
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    texts.push(MIXED.to_string());
    for text in &texts {
        let ids = enc(tok, text, false);
        let back = tok.decode(&ids, false).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&back, text, "round trip of {text:?}");
    }
}

/// Writes a `llama` (sentencepiece) GGUF vocabulary built from the Llama 2 fixture, reads it back.
fn synthetic_llama_spm() -> Tokenizer {
    let path = support::tokenizer_json("llama2-spm");
    let json: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let vocab = json["model"]["vocab"].as_object().expect("vocab object");
    let mut tokens = vec![String::new(); vocab.len()];
    for (tok, id) in vocab {
        tokens[id.as_u64().expect("id") as usize] = tok.clone();
    }
    let types: Vec<Value> = (0..tokens.len())
        .map(|i| {
            Value::I32(match i {
                0 => 2,
                1 | 2 => 3,
                3..=258 => 6,
                _ => 1,
            })
        })
        .collect();
    // Sentencepiece scores rank the pieces; the fixture's merge list is sorted by them, so the
    // rank of the first merge producing a piece stands in for its score.
    let mut score = vec![-1e9f32; tokens.len()];
    let merges = json["model"]["merges"].as_array().expect("merges array");
    for (rank, m) in merges.iter().enumerate() {
        let merged = match m {
            serde_json::Value::String(s) => s.replacen(' ', "", 1),
            serde_json::Value::Array(parts) => parts.iter().filter_map(|p| p.as_str()).collect(),
            other => panic!("unexpected merge {other:?}"),
        };
        let id = vocab[&merged].as_u64().expect("merged id") as usize;
        if score[id] == -1e9 {
            score[id] = -(rank as f32);
        }
    }
    let scores: Vec<Value> = score.into_iter().map(Value::F32).collect();
    let metadata = [
        ("tokenizer.ggml.model", Value::String("llama".into())),
        (
            "tokenizer.ggml.tokens",
            Value::Array(tokens.into_iter().map(Value::String).collect()),
        ),
        ("tokenizer.ggml.scores", Value::Array(scores)),
        ("tokenizer.ggml.token_type", Value::Array(types)),
        ("tokenizer.ggml.bos_token_id", Value::U32(1)),
        ("tokenizer.ggml.eos_token_id", Value::U32(2)),
        ("tokenizer.ggml.unknown_token_id", Value::U32(0)),
        ("tokenizer.ggml.add_bos_token", Value::Bool(true)),
    ];
    let refs: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
    let mut buf = Cursor::new(Vec::new());
    gguf_file::write(&mut buf, &refs, &[]).unwrap_or_else(|e| panic!("{e}"));
    buf.set_position(0);
    let content = Content::read(&mut buf).unwrap_or_else(|e| panic!("{e}"));
    Tokenizer::from_gguf(&content).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn llama_spm_gguf_matches_vectors_and_hf() {
    let tok = synthetic_llama_spm();
    let hf = hf("llama2-spm");
    assert_eq!(tok.vocab_size(), 32000);
    assert_eq!(tok.bos_token_id(), Some(1));
    assert!(tok.add_bos_token());
    let mut failures = Vec::new();
    for (i, (text, expected)) in support::read_vectors("llama-spm").iter().enumerate() {
        let got = enc(&tok, text, false);
        if &got != expected {
            failures.push(format!("#{i} {text:?}: expected {expected:?} got {got:?}"));
        }
        assert_eq!(
            tok.decode(&got, false).unwrap_or_else(|e| panic!("{e}")),
            hf.decode(expected, false).unwrap_or_else(|e| panic!("{e}"))
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let text = "Hello <s>world</s> 東京 🦙 x  y\n\tz";
    assert_eq!(enc(&tok, text, true), enc(&hf, text, true));
    assert_eq!(enc(&tok, text, true)[0], 1);
}

/// Writes a `gpt2` GGUF vocabulary from a fixture `tokenizer.json` with the given
/// `tokenizer.ggml.pre`, reads it back and builds the tokenizer.
fn synthetic_gpt2(fixture: &str, pre: &str) -> Tokenizer {
    let path = support::tokenizer_json(fixture);
    let json: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let vocab = json["model"]["vocab"].as_object().expect("vocab object");
    let added = json["added_tokens"].as_array().expect("added_tokens");
    let max_id = vocab
        .values()
        .filter_map(|v| v.as_u64())
        .chain(added.iter().filter_map(|t| t["id"].as_u64()))
        .max()
        .expect("ids") as usize;
    let mut tokens: Vec<String> = (0..=max_id).map(|i| format!("[HOLE{i}]")).collect();
    let mut types = vec![5i32; max_id + 1];
    for (tok, id) in vocab {
        let id = id.as_u64().expect("id") as usize;
        tokens[id] = tok.clone();
        types[id] = 1;
    }
    for t in added {
        let id = t["id"].as_u64().expect("id") as usize;
        tokens[id] = t["content"].as_str().expect("content").to_string();
        types[id] = if t["special"].as_bool() == Some(true) {
            3
        } else {
            4
        };
    }
    let merges: Vec<Value> = json["model"]["merges"]
        .as_array()
        .expect("merges")
        .iter()
        .map(|m| match m {
            serde_json::Value::String(s) => Value::String(s.clone()),
            serde_json::Value::Array(p) => Value::String(
                p.iter()
                    .filter_map(|x| x.as_str())
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            other => panic!("unexpected merge {other:?}"),
        })
        .collect();
    let metadata = [
        ("tokenizer.ggml.model", Value::String("gpt2".into())),
        ("tokenizer.ggml.pre", Value::String(pre.into())),
        (
            "tokenizer.ggml.tokens",
            Value::Array(tokens.into_iter().map(Value::String).collect()),
        ),
        (
            "tokenizer.ggml.token_type",
            Value::Array(types.into_iter().map(Value::I32).collect()),
        ),
        ("tokenizer.ggml.merges", Value::Array(merges)),
    ];
    let refs: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
    let mut buf = Cursor::new(Vec::new());
    gguf_file::write(&mut buf, &refs, &[]).unwrap_or_else(|e| panic!("{e}"));
    buf.set_position(0);
    let content = Content::read(&mut buf).unwrap_or_else(|e| panic!("{e}"));
    Tokenizer::from_gguf(&content).unwrap_or_else(|e| panic!("{e}"))
}

/// Each `tokenizer.ggml.pre` split rule reproduces the llama.cpp vectors of its family.
#[test]
fn gpt2_gguf_pre_rules_match_vectors() {
    for (fixture, pre, vectors) in [
        ("llama3", "llama-bpe", "llama-bpe"),
        ("qwen2", "qwen2", "qwen2"),
        ("deepseek-llm", "deepseek-llm", "deepseek-llm"),
        ("deepseek-coder", "deepseek-coder", "deepseek-coder"),
        ("gpt-neox", "mpt", "mpt"),
    ] {
        let tok = synthetic_gpt2(fixture, pre);
        let mut failures = Vec::new();
        let cases = support::read_vectors(vectors);
        for (i, (text, expected)) in cases.iter().enumerate() {
            let got = enc(&tok, text, false);
            if &got != expected {
                failures.push(format!("#{i} {text:?}: expected {expected:?} got {got:?}"));
            }
        }
        assert!(
            failures.is_empty(),
            "pre={pre}: {} of {} vectors differ:\n{}",
            failures.len(),
            cases.len(),
            failures.join("\n")
        );
        let hf = hf(fixture);
        let text = "Hello World! 東京 🦙 x  y\n\n\tz 12345 don't";
        assert_eq!(enc(&tok, text, false), enc(&hf, text, false), "pre={pre}");
    }
}
