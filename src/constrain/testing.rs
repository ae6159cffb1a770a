//! Test and benchmark support: a small byte-level BPE tokenizer (ids below 512, like the
//! tiny fixture models) with the call markers of every format, and a random walk through a
//! grammar (what a model that emits noise writes under a constraint).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Map};

use super::{ConstrainError, Constraint};
use crate::tokenizer::Tokenizer;

/// Special (control) tokens of [`byte_tokenizer`], from id 500 on; the first ends generation.
pub const SPECIALS: &[&str] = &[
    "<|im_end|>",
    "<|python_tag|>",
    "[TOOL_CALLS]",
    "<|eom_id|>",
    "[ARGS]",
    "[CALL_ID]",
    "<|tool_call|>",
    "<|/tool_call|>",
];
/// Added non-special tokens of [`byte_tokenizer`] (as in Qwen2.5's vocabulary).
pub const ADDED: &[&str] = &["<tool_call>", "</tool_call>"];
/// Characters whose pairs become merged tokens.
const MERGE_CHARS: &str = "{}[]\":, _=()'ae";

/// The GPT-2 byte alphabet character of a byte.
fn byte_char(b: u8) -> char {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    if printable(b) {
        return char::from(b);
    }
    let n = (0..b).filter(|&x| !printable(x)).count() as u32;
    char::from_u32(256 + n).unwrap_or('?')
}

/// A byte-level BPE tokenizer over ids 0..512: 256 byte tokens, merges of common JSON and
/// Python-call character pairs, [`ADDED`] and [`SPECIALS`] (`<|im_end|>` is its EOS).
pub fn byte_tokenizer() -> Result<Tokenizer, ConstrainError> {
    let mut vocab = Map::new();
    let mut next = 0u32;
    for b in 0..=255u8 {
        vocab.insert(byte_char(b).to_string(), json!(next));
        next += 1;
    }
    let mut merges = Vec::new();
    for a in MERGE_CHARS.chars() {
        for b in MERGE_CHARS.chars() {
            let (ca, cb) = (byte_char(a as u8), byte_char(b as u8));
            let merged = format!("{ca}{cb}");
            if vocab.contains_key(&merged) || next >= 480 {
                continue;
            }
            vocab.insert(merged, json!(next));
            merges.push(json!([ca.to_string(), cb.to_string()]));
            next += 1;
        }
    }
    let mut added = Vec::new();
    for (i, t) in ADDED.iter().enumerate() {
        added.push(
            json!({"id": 490 + i, "content": t, "single_word": false, "lstrip": false,
            "rstrip": false, "normalized": false, "special": false}),
        );
    }
    for (i, t) in SPECIALS.iter().enumerate() {
        added.push(
            json!({"id": 500 + i, "content": t, "single_word": false, "lstrip": false,
            "rstrip": false, "normalized": false, "special": true}),
        );
    }
    let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false,
        "trim_offsets": true, "use_regex": false});
    let doc = json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
        "normalizer": null, "pre_tokenizer": byte_level, "post_processor": null,
        "decoder": byte_level,
        "model": {"type": "BPE", "dropout": null, "unk_token": null,
            "continuing_subword_prefix": null, "end_of_word_suffix": null, "fuse_unk": false,
            "byte_fallback": false, "ignore_merges": false, "vocab": vocab, "merges": merges}
    });
    let inner: tokenizers::Tokenizer = doc
        .to_string()
        .parse()
        .map_err(|e| ConstrainError::Internal(format!("test tokenizer: {e}")))?;
    let mut tok = Tokenizer::from_inner(inner)
        .map_err(|e| ConstrainError::Internal(format!("test tokenizer: {e}")))?;
    tok.set_eos_token_ids(vec![500]);
    Ok(tok)
}

/// Walks `constraint` with uniformly random allowed tokens (seeded) until the grammar ends,
/// a stop token is drawn or `max_tokens` is reached; returns the tokens and whether the
/// walk ended by the grammar's own end.
pub fn random_walk(
    constraint: &Constraint,
    vocab: usize,
    stop_ids: &[u32],
    seed: u64,
    max_tokens: usize,
) -> Result<(Vec<u32>, bool), ConstrainError> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut st = constraint.start();
    let mut out = Vec::new();
    let mut logits = vec![0.0f32; vocab];
    while out.len() < max_tokens {
        logits.iter_mut().for_each(|l| *l = 0.0);
        if !st.mask(&mut logits)? {
            return Ok((out, true));
        }
        let allowed: Vec<u32> = (0..vocab as u32)
            .filter(|&i| logits[i as usize].is_finite())
            .collect();
        let t = allowed[rng.random_range(0..allowed.len())];
        if stop_ids.contains(&t) {
            return Ok((out, true));
        }
        st.commit(t)?;
        out.push(t);
    }
    Ok((out, false))
}

/// A model directory for tests, `dir`: the tiny `arch` fixture's config and weights
/// (`fixtures/tiny-models/ARCH`) with [`byte_tokenizer`] and `tokenizer_config` (JSON text).
/// Each caller names its own directory: a file rewritten under a mapped model is a SIGBUS.
pub fn tiny_model_dir(
    arch: &str,
    dir: &std::path::Path,
    tokenizer_config: &str,
) -> std::io::Result<()> {
    let fx = crate::paths::fixtures_dir().join("tiny-models").join(arch);
    std::fs::create_dir_all(dir)?;
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(fx.join(f), dir.join(f))?;
    }
    let tok = byte_tokenizer().map_err(std::io::Error::other)?;
    let json = tok
        .inner()
        .to_string(false)
        .map_err(std::io::Error::other)?;
    std::fs::write(dir.join("tokenizer.json"), json)?;
    std::fs::write(dir.join("tokenizer_config.json"), tokenizer_config)
}
