//! The sentencepiece `tokenizer.model` reader against independent references: the real Mistral
//! v0.3 model against its Hugging Face `tokenizer.json`, and tiny self-trained unigram and BPE
//! models against the ids the `sentencepiece` library itself gave (scripts/gen-spm-fixtures.sh).

#[path = "tokenizer_support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};

use callm::tokenizer::spm::{
    append_after_vocab, tokenizer_from_spm, tokenizer_from_spm_file, tokenizer_from_spm_with,
    DummyPrefix, SpmModelType, SpmTokenizer,
};
use callm::tokenizer::{Tokenizer, TokenizerError};
use serde_json::Value;

/// Text with code, emoji, CJK, runs of spaces, newlines and Mistral's control tokens.
const MIXED: &str = "[AVAILABLE_TOOLS] [{\"type\": \"function\", \"function\": {\"name\": \
\"get_weather\"}}][/AVAILABLE_TOOLS][INST] What's the weather in 東京 today? 🌧️🦙\n\n\
```python\ndef f(x):\n    return  x  *  2\t# tab\n```[/INST][TOOL_CALLS] [{\"name\": \
\"get_weather\", \"arguments\": {\"city\": \"Tokyo\"}}]</s>[TOOL_RESULTS] {\"content\": 21.5}\
[/TOOL_RESULTS]  trailing   spaces   ";

const SCRIPT: &str = "scripts/gen-spm-fixtures.sh";

/// `$CALLM_SPM_FIXTURES`, else `~/.cache/callm/spm-fixtures`; panics naming the script if absent.
fn spm_fixtures() -> PathBuf {
    let dir = match std::env::var_os("CALLM_SPM_FIXTURES") {
        Some(d) => PathBuf::from(d),
        None => {
            let home = std::env::var_os("HOME").unwrap_or_else(|| ".".into());
            PathBuf::from(home).join(".cache/callm/spm-fixtures")
        }
    };
    assert!(
        dir.join("STAMP").is_file(),
        "sentencepiece fixtures missing in {}: run {SCRIPT} (or set CALLM_SPM_FIXTURES)",
        dir.display()
    );
    dir
}

/// The sentencepiece reference written next to a model by the fixture script.
fn reference(dir: &Path) -> Value {
    let path = dir.join("reference.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {} ({e}): run {SCRIPT}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn ids_of(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap_or_else(|| panic!("expected an id list, found {v}"))
        .iter()
        .map(|x| x.as_u64().and_then(|n| u32::try_from(n).ok()).expect("id"))
        .collect()
}

/// The real Mistral v0.3 `tokenizer.model`: the shared fixture when it is the real file, else the
/// copy the fixture script fetched (the shared one may be just a Git LFS pointer).
fn mistral_model() -> PathBuf {
    let shared = support::fixtures_dir().join("tokenizers/mistral-v0.3/tokenizer.model");
    let real = std::fs::read(&shared).is_ok_and(|b| !b.starts_with(b"version https://git-lfs"));
    if real {
        shared
    } else {
        spm_fixtures().join("mistral-v0.3/tokenizer.model")
    }
}

/// Every string of every tokenizer-vectors `.inp` file, plus the mixed text.
fn vector_texts() -> Vec<String> {
    let mut texts = Vec::new();
    for name in [
        "llama-spm",
        "llama-bpe",
        "deepseek-llm",
        "deepseek-coder",
        "qwen2",
        "mpt",
    ] {
        texts.extend(support::read_vectors(name).into_iter().map(|(t, _)| t));
    }
    texts.push(MIXED.to_string());
    texts
}

fn encode(tok: &tokenizers::Tokenizer, text: &str) -> Vec<u32> {
    tok.encode(text, false)
        .unwrap_or_else(|e| panic!("{text:?}: {e}"))
        .get_ids()
        .to_vec()
}

fn load(path: &Path, prefix: DummyPrefix) -> SpmTokenizer {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    tokenizer_from_spm_with(&bytes, prefix).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn mistral_model_matches_its_tokenizer_json() {
    let spm = load(&mistral_model(), DummyPrefix::FirstSegment);
    let hf = tokenizers::Tokenizer::from_file(support::tokenizer_json("mistral-v0.3"))
        .unwrap_or_else(|e| panic!("{e}"));
    let texts = vector_texts();
    assert!(texts.len() > 250, "only {} texts", texts.len());
    let mut failures = Vec::new();
    for text in &texts {
        let (got, want) = (encode(&spm.tokenizer, text), encode(&hf, text));
        if got != want {
            failures.push(format!("  {text:?}\n    hf  {want:?}\n    spm {got:?}"));
        }
        let decode = |t: &tokenizers::Tokenizer, skip| t.decode(&want, skip).expect("decode");
        assert_eq!(
            decode(&spm.tokenizer, false),
            decode(&hf, false),
            "{text:?}"
        );
        assert_eq!(decode(&spm.tokenizer, true), decode(&hf, true), "{text:?}");
    }
    assert!(
        failures.is_empty(),
        "{} of {} texts differ:\n{}",
        failures.len(),
        texts.len(),
        failures.join("\n")
    );
}

#[test]
fn mistral_tokenizer_facts_match_tokenizer_json() {
    let spm = Tokenizer::from_spm_file(mistral_model()).unwrap_or_else(|e| panic!("{e}"));
    let hf = Tokenizer::from_file(support::tokenizer_json("mistral-v0.3"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(spm.vocab_size(), 32768);
    assert_eq!(spm.vocab_size(), hf.vocab_size());
    assert_eq!(spm.bos_token_id(), Some(1));
    assert_eq!(spm.eos_token_ids(), &[2]);
    assert_eq!(spm.special_token_ids(), hf.special_token_ids());
    assert_eq!(spm.added_token_ids(), hf.added_token_ids());
    for (token, id) in [
        ("[INST]", 3),
        ("[/INST]", 4),
        ("[TOOL_CALLS]", 5),
        ("[AVAILABLE_TOOLS]", 6),
        ("[/AVAILABLE_TOOLS]", 7),
        ("[TOOL_RESULTS]", 8),
        ("[/TOOL_RESULTS]", 9),
    ] {
        assert_eq!(spm.token_to_id(token), Some(id), "{token}");
        assert!(spm.is_special(id), "{token}");
    }
    for text in ["Hello world", MIXED, ""] {
        let with = spm.encode(text, true).expect("encode");
        assert_eq!(with, hf.encode(text, true).expect("encode"), "{text:?}");
        assert_eq!(with.first(), Some(&1));
        assert_eq!(
            spm.decode(&with, false).expect("decode"),
            hf.decode(&with, false).expect("decode")
        );
    }
}

#[test]
fn mistral_model_every_segment_matches_sentencepiece() {
    let spm = load(&mistral_model(), DummyPrefix::EverySegment);
    let reference = reference(&spm_fixtures().join("mistral-v0.3"));
    check_cases(&spm, &reference, "mistral-v0.3 (EverySegment)", |_| {
        Expect::Same
    });
}

/// What a case is expected to give, relative to sentencepiece.
#[derive(PartialEq)]
enum Expect {
    /// The same ids.
    Same,
    /// The same ids less sentencepiece's leading lone `▁` piece (the Hugging Face dummy-prefix
    /// placement, see `DummyPrefix::FirstSegment`).
    NoLeadingSpace,
    /// Not compared (text with added tokens under `DummyPrefix::EverySegment`).
    Skip,
}

/// Compares the reader's ids (and decoded text, where no unknown piece is involved) with the
/// sentencepiece reference on every case, as `expect` says.
fn check_cases(spm: &SpmTokenizer, reference: &Value, name: &str, expect: impl Fn(&str) -> Expect) {
    let cases = reference["cases"].as_array().expect("cases");
    let unk = spm.unk_token_id;
    let space = spm.tokenizer.token_to_id("\u{2581}");
    let mut failures = Vec::new();
    let mut checked = 0;
    for case in cases {
        let text = case["text"].as_str().expect("text");
        let mut want = ids_of(&case["ids"]);
        match expect(text) {
            Expect::Skip => continue,
            Expect::Same => {}
            Expect::NoLeadingSpace => {
                assert_eq!(want.first().copied(), space, "{name}: {text:?}");
                want.remove(0);
            }
        }
        checked += 1;
        let got = encode(&spm.tokenizer, text);
        if got != want {
            let pieces: Vec<String> = got
                .iter()
                .map(|&id| spm.tokenizer.id_to_token(id).unwrap_or_default())
                .collect();
            failures.push(format!(
                "  {text:?}\n    sentencepiece {want:?} {}\n    callm         {got:?} {pieces:?}",
                case["pieces"]
            ));
        } else if !want.contains(&unk) && expect(text) == Expect::Same {
            let decoded = spm.tokenizer.decode(&got, true).expect("decode");
            if decoded != case["decoded"].as_str().expect("decoded") {
                failures.push(format!(
                    "  {text:?}: decoded {decoded:?}, sentencepiece {}",
                    case["decoded"]
                ));
            }
        }
    }
    assert!(checked >= 15, "{name}: only {checked} cases");
    assert!(
        failures.is_empty(),
        "{name}: {} of {checked} cases differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Checks a self-trained model: its facts, then the ids of every reference string; in the Hugging
/// Face placement of the dummy prefix, texts that `hf_differs` selects lack sentencepiece's
/// leading `▁` piece.
fn check_trained(name: &str, kind: SpmModelType, hf_differs: fn(&str) -> bool) {
    let dir = spm_fixtures().join(name);
    let reference = reference(&dir);
    let model = dir.join("tokenizer.model");
    let first = load(&model, DummyPrefix::FirstSegment);
    assert_eq!(first.model_type, kind, "{name}");
    let fact = |key: &str| {
        let n = reference[key].as_i64().expect(key);
        u32::try_from(n).ok()
    };
    assert_eq!(Some(first.n_pieces as u32), fact("vocab_size"), "{name}");
    assert_eq!(Some(first.unk_token_id), fact("unk_id"), "{name}");
    assert_eq!(first.bos_token_id, fact("bos_id"), "{name}");
    assert_eq!(first.eos_token_id, fact("eos_id"), "{name}");
    assert_eq!(first.pad_token_id, fact("pad_id"), "{name}");
    for group in ["user_defined", "control"] {
        for (token, id) in reference[group].as_object().expect(group) {
            let id = id.as_u64().map(|n| n as u32);
            assert_eq!(first.tokenizer.token_to_id(token), id, "{name}: {token}");
            assert_eq!(
                encode(&first.tokenizer, token),
                id.into_iter().collect::<Vec<_>>()
            );
        }
    }
    check_cases(&first, &reference, name, |t| {
        if hf_differs(t) {
            Expect::NoLeadingSpace
        } else {
            Expect::Same
        }
    });
    // sentencepiece placement: exact on text without added tokens.
    let every = load(&model, DummyPrefix::EverySegment);
    let has_added = |t: &str| {
        ["<tool_call>", "</tool_call>", "@@"]
            .iter()
            .any(|s| t.contains(s))
    };
    check_cases(&every, &reference, name, |t| {
        if has_added(t) {
            Expect::Skip
        } else {
            Expect::Same
        }
    });
}

/// No known difference from sentencepiece.
fn none(_: &str) -> bool {
    false
}

/// Hugging Face's `Metaspace` adds no dummy prefix to text that already starts with a space
/// (which survives when `remove_extra_whitespaces` is off).
fn leading_space(text: &str) -> bool {
    text.starts_with(' ')
}

/// Text that starts with an added token gets no dummy prefix in the Hugging Face placement
/// (sentencepiece puts a lone `▁` before the token).
fn leading_added_token(text: &str) -> bool {
    text.starts_with("<tool_call>")
}

#[test]
fn trained_unigram_matches_sentencepiece() {
    check_trained("unigram", SpmModelType::Unigram, none);
}

#[test]
fn trained_unigram_without_byte_fallback_matches_sentencepiece() {
    check_trained("unigram-nofallback", SpmModelType::Unigram, none);
}

#[test]
fn trained_bpe_matches_sentencepiece() {
    check_trained("bpe", SpmModelType::Bpe, none);
}

#[test]
fn trained_bpe_identity_without_byte_fallback_matches_sentencepiece() {
    check_trained("bpe-identity-nofallback", SpmModelType::Bpe, leading_space);
}

#[test]
fn trained_unigram_with_symbols_matches_sentencepiece() {
    check_trained(
        "unigram-symbols",
        SpmModelType::Unigram,
        leading_added_token,
    );
}

#[test]
fn trained_bpe_with_symbols_and_no_prefix_matches_sentencepiece() {
    check_trained("bpe-symbols-noprefix", SpmModelType::Bpe, none);
}

/// ChatGLM3's extra tokens as the registry (models.toml) declares them, with the ids they get
/// after a vocabulary of `n_pieces`.
fn chatglm3_special_tokens(n_pieces: usize) -> Vec<(String, u32)> {
    let registry = callm::registry::Registry::builtin();
    let family = registry.require("chatglm3-6b").expect("chatglm3-6b family");
    let names: Vec<&str> = family
        .spm_special_tokens
        .iter()
        .map(String::as_str)
        .collect();
    append_after_vocab(&names, n_pieces)
}

#[test]
fn chatglm3_tokens_follow_the_vocabulary() {
    let mut spm = load(
        &spm_fixtures().join("unigram/tokenizer.model"),
        DummyPrefix::FirstSegment,
    );
    let n = spm.n_pieces;
    spm.add_special_tokens(&chatglm3_special_tokens(n))
        .unwrap_or_else(|e| panic!("{e}"));
    let tok = Tokenizer::from_spm(spm);
    let order = [
        "[MASK]",
        "[gMASK]",
        "[sMASK]",
        "sop",
        "eop",
        "<|system|>",
        "<|user|>",
        "<|assistant|>",
        "<|observation|>",
    ];
    for (i, token) in order.iter().enumerate() {
        let id = (n + i) as u32;
        assert_eq!(tok.token_to_id(token), Some(id), "{token}");
        assert!(tok.is_special(id), "{token}");
        assert_eq!(tok.decode(&[id], false).expect("decode"), *token);
    }
    assert_eq!(tok.vocab_size(), n + 9);
    // With the real chatglm3-6b model (64789 pieces) these are the reference ids.
    let real = chatglm3_special_tokens(64789);
    let id = |t: &str| real.iter().find(|(s, _)| s == t).map(|(_, id)| *id);
    assert_eq!(id("[gMASK]"), Some(64790));
    assert_eq!(id("sop"), Some(64792));
    assert_eq!(id("<|system|>"), Some(64794));
    assert_eq!(id("<|user|>"), Some(64795));
    assert_eq!(id("<|assistant|>"), Some(64796));
    assert_eq!(id("<|observation|>"), Some(64797));
}

#[test]
fn special_tokens_at_wrong_ids_are_refused() {
    let path = spm_fixtures().join("bpe/tokenizer.model");
    let mut spm = load(&path, DummyPrefix::FirstSegment);
    let n = spm.n_pieces as u32;
    for bad in [
        vec![("<x>".to_string(), n + 1)],
        vec![("<x>".to_string(), 5)],
        vec![("<unk>".to_string(), n)],
        vec![(String::new(), n)],
    ] {
        let err = spm.add_special_tokens(&bad).expect_err("must be refused");
        assert!(matches!(err, TokenizerError::Build(_)), "{err}");
    }
    assert_eq!(spm.vocab_size(), n as usize, "nothing was added");
}

#[test]
fn garbage_truncated_and_lfs_files_give_clear_errors() {
    let model = std::fs::read(mistral_model()).expect("mistral model");
    let mut inputs: Vec<(String, Vec<u8>)> = vec![
        ("empty".into(), Vec::new()),
        ("text".into(), b"this is not a sentencepiece model".to_vec()),
        ("json".into(), b"{\"model\": {\"type\": \"BPE\"}}".to_vec()),
        ("0xff".into(), vec![0xff; 64]),
        (
            "lfs pointer".into(),
            b"version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 1\n".to_vec(),
        ),
    ];
    for cut in [1, 7, 100, 4096, model.len() / 2, model.len() - 3] {
        inputs.push((format!("truncated to {cut} bytes"), model[..cut].to_vec()));
    }
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    for round in 0..20 {
        let mut bytes = model[..20_000].to_vec();
        for _ in 0..50 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let at = (seed % bytes.len() as u64) as usize;
            bytes[at] = (seed >> 32) as u8;
        }
        inputs.push((format!("corrupted #{round}"), bytes));
    }
    for (what, bytes) in &inputs {
        match tokenizer_from_spm(bytes) {
            Err(TokenizerError::InvalidSentencePiece { message, .. }) => {
                assert!(!message.is_empty(), "{what}");
            }
            Err(other) => panic!("{what}: unexpected error kind: {other}"),
            // A corrupted prefix may still decode into a small usable model; it must then work.
            Ok(spm) => {
                assert!(
                    what.starts_with("corrupted") || what.starts_with("truncated"),
                    "{what}"
                );
                let _ = spm.tokenizer.encode("Hello world", false);
            }
        }
    }
    let err = tokenizer_from_spm(b"version https://git-lfs.github.com/spec/v1\n")
        .err()
        .expect("LFS pointer must be refused");
    assert!(err.to_string().contains("Git LFS pointer"), "{err}");

    let dir = std::env::temp_dir().join(format!("callm-spm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("tokenizer.model");
    std::fs::write(&path, b"garbage").expect("write");
    let err = tokenizer_from_spm_file(&path).err().expect("garbage");
    assert!(err.to_string().contains("tokenizer.model"), "{err}");
    let err = Tokenizer::from_spm_file(dir.join("missing.model")).expect_err("missing");
    assert!(matches!(err, TokenizerError::Io { .. }), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn trained_chatglm3_and_replit_style_models_match_sentencepiece() {
    // The tokenizers of the ChatGLM3 / Glaive end-to-end tests (tests/families_e2e.rs).
    check_trained("chatglm3-tiny", SpmModelType::Bpe, leading_space);
    check_trained("replit-tiny", SpmModelType::Bpe, leading_space);
}
