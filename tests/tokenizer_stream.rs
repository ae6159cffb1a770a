//! The incremental detokenizer: concatenated pieces equal a full decode, UTF-8 is never broken,
//! special tokens stay visible, and the decoding window stays small.

#[path = "tokenizer_support/mod.rs"]
mod support;

use callm::tokenizer::{DecodeStream, Tokenizer};

fn load(name: &str) -> Tokenizer {
    Tokenizer::from_file(support::tokenizer_json(name)).unwrap_or_else(|e| panic!("{e}"))
}

/// Streams `ids` one at a time; returns the emitted pieces (flush included).
fn stream_pieces(tok: &Tokenizer, ids: &[u32], skip_special: bool) -> Vec<String> {
    let mut stream = DecodeStream::new(tok, skip_special);
    let mut pieces = Vec::new();
    for &id in ids {
        if let Some(p) = stream.push(id).unwrap_or_else(|e| panic!("{e}")) {
            pieces.push(p);
        }
        assert!(
            stream.window_len() <= 16,
            "window grew to {}",
            stream.window_len()
        );
    }
    pieces.extend(stream.flush().unwrap_or_else(|e| panic!("{e}")));
    pieces
}

const EXTRA: &[&str] = &[
    "Hello world! 你好，世界。 🌤️🦙 Café naïve — ÜNÏCÖDÉ",
    "  leading spaces and trailing   ",
    "\n\nnewlines\r\n\ttabs",
    "def f(x):\n    return {\"a\": [1, 2, 3]}  # ok",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𐍈 ꙮ",
];

/// The stream reproduces `decode(all, skip_special=false)` on every vector text.
fn check_property(name: &str, vectors: &str) {
    let tok = load(name);
    let mut texts: Vec<String> = support::read_vectors(vectors)
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    texts.extend(EXTRA.iter().map(|s| s.to_string()));
    for text in &texts {
        for add_special in [false, true] {
            let ids = tok
                .encode(text, add_special)
                .unwrap_or_else(|e| panic!("{e}"));
            let pieces = stream_pieces(&tok, &ids, false);
            let full = tok.decode(&ids, false).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                pieces.concat(),
                full,
                "{name}: stream of {text:?} (add_special={add_special})"
            );
            for p in &pieces {
                assert!(
                    !p.contains('\u{FFFD}') || full.contains('\u{FFFD}'),
                    "{name}: broken UTF-8 piece {p:?}"
                );
            }
        }
    }
}

#[test]
fn stream_equals_full_decode_llama3() {
    check_property("llama3", "llama-bpe");
}

#[test]
fn stream_equals_full_decode_mistral() {
    check_property("mistral-v0.3", "llama-spm");
}

#[test]
fn stream_equals_full_decode_qwen2() {
    check_property("qwen2", "qwen2");
}

#[test]
fn stream_equals_full_decode_llama2_spm() {
    check_property("llama2-spm", "llama-spm");
}

#[test]
fn byte_fallback_characters_are_held_until_complete() {
    let tok = load("llama2-spm");
    let text = "a🦙b";
    let ids = tok.encode(text, false).unwrap_or_else(|e| panic!("{e}"));
    let bytes: Vec<_> = ids
        .iter()
        .filter_map(|&i| tok.id_to_token(i))
        .filter(|t| t.starts_with("<0x"))
        .collect();
    assert_eq!(
        bytes.len(),
        4,
        "the emoji is four byte-fallback tokens: {bytes:?}"
    );
    let mut stream = tok.decode_stream(false);
    let mut outputs = Vec::new();
    for &id in &ids {
        outputs.push(stream.push(id).unwrap_or_else(|e| panic!("{e}")));
    }
    assert!(
        outputs.iter().filter(|o| o.is_none()).count() >= 3,
        "{outputs:?}"
    );
    let joined: String = outputs.into_iter().flatten().collect();
    assert_eq!(joined, text);
}

#[test]
fn byte_level_characters_are_held_until_complete() {
    let tok = load("llama3");
    // Rare CJK/emoji characters are split across byte-level tokens.
    let text = "𝔘𝔫𝔦 🫠 ꙮ";
    let ids = tok.encode(text, false).unwrap_or_else(|e| panic!("{e}"));
    let pieces = stream_pieces(&tok, &ids, false);
    assert!(
        pieces.len() < ids.len(),
        "some tokens must be held: {} pieces for {} ids",
        pieces.len(),
        ids.len()
    );
    assert!(pieces.iter().all(|p| !p.contains('\u{FFFD}')), "{pieces:?}");
    assert_eq!(pieces.concat(), text);
}

#[test]
fn special_tokens_stay_visible() {
    let cases: [(&str, &str, &[&str]); 3] = [
        (
            "llama3",
            "<|python_tag|>get_weather(city=\"Paris\")<|eom_id|>",
            &["<|python_tag|>", "<|eom_id|>"],
        ),
        (
            "mistral-v0.3",
            "[TOOL_CALLS] [{\"name\": \"f\", \"arguments\": {}}]</s>",
            &["[TOOL_CALLS]", "</s>"],
        ),
        (
            "qwen2",
            "<|im_start|>assistant\nhi<|im_end|>",
            &["<|im_start|>", "<|im_end|>"],
        ),
    ];
    for (name, text, markers) in cases {
        let tok = load(name);
        let ids = tok.encode(text, false).unwrap_or_else(|e| panic!("{e}"));
        let shown = stream_pieces(&tok, &ids, false).concat();
        assert_eq!(
            shown,
            tok.decode(&ids, false).unwrap_or_else(|e| panic!("{e}"))
        );
        let hidden = stream_pieces(&tok, &ids, true).concat();
        for marker in markers {
            let id = tok
                .token_to_id(marker)
                .unwrap_or_else(|| panic!("{marker}"));
            assert!(
                ids.contains(&id),
                "{name}: {marker} is not one token in {ids:?}"
            );
            assert!(
                shown.contains(marker),
                "{name}: {marker:?} missing from {shown:?}"
            );
            assert!(
                !hidden.contains(marker),
                "{name}: skip_special kept {marker:?}"
            );
        }
    }
}

#[test]
fn window_stays_small_on_long_text() {
    let tok = load("qwen2");
    let text = "The quick brown fox jumps over the lazy dog. 東京タワー 🦊 ".repeat(200);
    let ids = tok.encode(&text, false).unwrap_or_else(|e| panic!("{e}"));
    assert!(ids.len() > 2000);
    let pieces = stream_pieces(&tok, &ids, false);
    assert_eq!(pieces.concat(), text);
}

#[test]
fn reset_starts_over() {
    let tok = load("llama2-spm");
    let ids = tok
        .encode("Hello world", false)
        .unwrap_or_else(|e| panic!("{e}"));
    let mut stream = tok.decode_stream(false);
    let first = stream.push_all(&ids).unwrap_or_else(|e| panic!("{e}"));
    stream.reset();
    let second = stream.push_all(&ids).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(first, "Hello world");
    assert_eq!(first, second);
    assert_eq!(stream.flush().unwrap_or_else(|e| panic!("{e}")), None);
}
