//! Builds a Hugging Face `tokenizers::Tokenizer` from the `tokenizer.ggml.*` metadata of a GGUF file.
//!
//! Two vocabulary kinds are supported:
//! - `gpt2`: byte-level BPE with explicit merges; the split rules come from `tokenizer.ggml.pre`.
//! - `llama`: sentencepiece-style BPE with byte fallback; merges are derived from the token scores
//!   (the higher the score of the merged piece, the earlier the merge), spaces become `▁` and a
//!   `▁` is prepended to the text unless `tokenizer.ggml.add_space_prefix` is false.
//!
//! Every token keeps its GGUF index as its id. CONTROL tokens become special added tokens and
//! USER_DEFINED tokens become plain added tokens, so both are matched as single tokens in text.

use std::collections::HashMap;

use candle_core::quantized::gguf_file::{Content, Value};
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::normalizers::Sequence as NormalizerSequence;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::DecoderWrapper;

use super::pre::PreTokenizerKind;
use super::spm::{add_piece_tokens, sp_bpe, sp_decoder, sp_space_normalizers, spm_merges};
use super::{Result, TokenizerError};

/// GGUF token type of an ordinary vocabulary entry.
pub const TOKEN_TYPE_NORMAL: i32 = 1;
/// GGUF token type of the unknown token.
pub const TOKEN_TYPE_UNKNOWN: i32 = 2;
/// GGUF token type of a control (special) token such as `<|im_start|>`.
pub const TOKEN_TYPE_CONTROL: i32 = 3;
/// GGUF token type of a user-defined added token such as `<tool_call>`.
pub const TOKEN_TYPE_USER_DEFINED: i32 = 4;
/// GGUF token type of an unused (padding) slot.
pub const TOKEN_TYPE_UNUSED: i32 = 5;
/// GGUF token type of a byte-fallback token such as `<0x0A>`.
pub const TOKEN_TYPE_BYTE: i32 = 6;

/// A tokenizer rebuilt from GGUF metadata, with the special-token facts the file declares.
pub struct GgufTokenizer {
    /// The rebuilt tokenizer.
    pub tokenizer: tokenizers::Tokenizer,
    /// Number of tokens listed in `tokenizer.ggml.tokens` (ids are `0..n_tokens`).
    pub n_tokens: usize,
    /// `tokenizer.ggml.bos_token_id`, if present.
    pub bos_token_id: Option<u32>,
    /// `tokenizer.ggml.eos_token_id`, if present.
    pub eos_token_id: Option<u32>,
    /// Other end-of-turn ids (`tokenizer.ggml.eot_token_id`, `tokenizer.ggml.eom_token_id`).
    pub extra_eos_token_ids: Vec<u32>,
    /// Whether a BOS token is prepended when encoding with special tokens.
    pub add_bos_token: bool,
    /// Whether an EOS token is appended when encoding with special tokens.
    pub add_eos_token: bool,
    /// Ids of CONTROL tokens (sorted).
    pub control_token_ids: Vec<u32>,
    /// Ids of CONTROL and USER_DEFINED tokens (sorted).
    pub added_token_ids: Vec<u32>,
}

/// Read-only view over GGUF metadata with typed, error-reporting accessors.
struct Meta<'a>(&'a HashMap<String, Value>);

impl<'a> Meta<'a> {
    fn get(&self, key: &str) -> Option<&'a Value> {
        self.0.get(key)
    }

    fn invalid(key: &str, message: impl Into<String>) -> TokenizerError {
        TokenizerError::InvalidMetadata {
            key: key.to_string(),
            message: message.into(),
        }
    }

    fn string(&self, key: &str) -> Result<Option<&'a str>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(v) => Err(Self::invalid(
                key,
                format!("expected a string, found {:?}", v.value_type()),
            )),
        }
    }

    fn required_string(&self, key: &str, expected: &'static str) -> Result<&'a str> {
        self.string(key)?
            .ok_or_else(|| TokenizerError::MissingMetadata {
                key: key.to_string(),
                expected,
            })
    }

    fn u32(&self, key: &str) -> Result<Option<u32>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => {
                let n = value_as_i64(v).ok_or_else(|| {
                    Self::invalid(
                        key,
                        format!("expected an integer, found {:?}", v.value_type()),
                    )
                })?;
                u32::try_from(n)
                    .map(Some)
                    .map_err(|_| Self::invalid(key, format!("{n} is not a valid token id")))
            }
        }
    }

    fn bool(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => match value_as_i64(v) {
                Some(n) => Ok(Some(n != 0)),
                None => Err(Self::invalid(
                    key,
                    format!("expected a bool, found {:?}", v.value_type()),
                )),
            },
        }
    }

    fn array(&self, key: &str) -> Result<Option<&'a [Value]>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a.as_slice())),
            Some(v) => Err(Self::invalid(
                key,
                format!("expected an array, found {:?}", v.value_type()),
            )),
        }
    }

    fn strings(&self, key: &str) -> Result<Option<Vec<&'a str>>> {
        let Some(items) = self.array(key)? else {
            return Ok(None);
        };
        items
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => Ok(s.as_str()),
                other => Err(Self::invalid(
                    key,
                    format!("element {i} is {:?}, expected a string", other.value_type()),
                )),
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    /// An array of numbers of exactly `len` elements, converted by `conv`.
    fn numbers<T>(
        &self,
        key: &str,
        len: usize,
        conv: fn(&Value) -> Option<T>,
    ) -> Result<Option<Vec<T>>> {
        let Some(items) = self.array(key)? else {
            return Ok(None);
        };
        if items.len() != len {
            return Err(Self::invalid(
                key,
                format!("has {} elements but there are {len} tokens", items.len()),
            ));
        }
        items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                conv(v).ok_or_else(|| {
                    Self::invalid(
                        key,
                        format!("element {i} is {:?}, expected a number", v.value_type()),
                    )
                })
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }
}

/// Converts any GGUF integer value to `i64`.
fn value_as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::U8(x) => Some(i64::from(*x)),
        Value::I8(x) => Some(i64::from(*x)),
        Value::U16(x) => Some(i64::from(*x)),
        Value::I16(x) => Some(i64::from(*x)),
        Value::U32(x) => Some(i64::from(*x)),
        Value::I32(x) => Some(i64::from(*x)),
        Value::U64(x) => i64::try_from(*x).ok(),
        Value::I64(x) => Some(*x),
        _ => None,
    }
}

/// Converts a GGUF integer value to an `i32` token type.
fn value_as_i32(v: &Value) -> Option<i32> {
    value_as_i64(v).and_then(|x| i32::try_from(x).ok())
}

/// Converts a GGUF float (or integer) value to an `f32` score.
fn value_as_f32(v: &Value) -> Option<f32> {
    match v {
        Value::F32(x) => Some(*x),
        Value::F64(x) => Some(*x as f32),
        other => value_as_i64(other).map(|x| x as f32),
    }
}

/// Builds the tokenizer described by the `tokenizer.ggml.*` keys of `content`.
pub fn tokenizer_from_gguf(content: &Content) -> Result<GgufTokenizer> {
    let meta = Meta(&content.metadata);
    let model = meta.required_string(
        "tokenizer.ggml.model",
        "the tokenizer kind (\"gpt2\" or \"llama\")",
    )?;
    let tokens =
        meta.strings("tokenizer.ggml.tokens")?
            .ok_or_else(|| TokenizerError::MissingMetadata {
                key: "tokenizer.ggml.tokens".to_string(),
                expected: "the list of token strings",
            })?;
    if tokens.is_empty() {
        return Err(Meta::invalid("tokenizer.ggml.tokens", "is empty"));
    }
    let n = tokens.len();
    let types = meta
        .numbers("tokenizer.ggml.token_type", n, value_as_i32)?
        .unwrap_or_else(|| vec![TOKEN_TYPE_NORMAL; n]);
    let pre = meta.string("tokenizer.ggml.pre")?;

    let check_id = |key: &str| -> Result<Option<u32>> {
        match meta.u32(key)? {
            Some(id) if id as usize >= n => Err(Meta::invalid(
                key,
                format!("token id {id} is out of range (vocabulary has {n} tokens)"),
            )),
            other => Ok(other),
        }
    };
    let bos_token_id = check_id("tokenizer.ggml.bos_token_id")?;
    let eos_token_id = check_id("tokenizer.ggml.eos_token_id")?;
    let unknown_token_id = check_id("tokenizer.ggml.unknown_token_id")?;
    let mut extra_eos_token_ids = Vec::new();
    for key in ["tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"] {
        if let Some(id) = check_id(key)? {
            if Some(id) != eos_token_id && !extra_eos_token_ids.contains(&id) {
                extra_eos_token_ids.push(id);
            }
        }
    }

    let vocab = build_vocab(&tokens);
    let (mut tokenizer, default_add_bos) = match model {
        "gpt2" => {
            let merges = meta.strings("tokenizer.ggml.merges")?.ok_or_else(|| {
                TokenizerError::MissingMetadata {
                    key: "tokenizer.ggml.merges".to_string(),
                    expected: "the BPE merges of a gpt2 tokenizer",
                }
            })?;
            let kind = PreTokenizerKind::from_gguf_pre(pre);
            (
                build_gpt2(vocab, &merges, kind)?,
                kind == PreTokenizerKind::Llama3,
            )
        }
        "llama" => {
            let scores = meta
                .numbers("tokenizer.ggml.scores", n, value_as_f32)?
                .unwrap_or_else(|| (0..n).map(|i| -(i as f32)).collect());
            let add_space_prefix = meta
                .bool("tokenizer.ggml.add_space_prefix")?
                .unwrap_or(true);
            let unk = unknown_token_id
                .map(|id| id as usize)
                .or_else(|| types.iter().position(|&t| t == TOKEN_TYPE_UNKNOWN))
                .map(|i| tokens[i].to_string());
            let merges = spm_merges(&tokens, &scores, &types);
            (build_spm(vocab, merges, unk, add_space_prefix)?, true)
        }
        other => return Err(TokenizerError::UnsupportedModel(other.to_string())),
    };

    let (control_token_ids, added_token_ids) = add_piece_tokens(
        &mut tokenizer,
        &tokens,
        &types,
        &[TOKEN_TYPE_CONTROL],
        false,
    );

    Ok(GgufTokenizer {
        tokenizer,
        n_tokens: n,
        bos_token_id,
        eos_token_id,
        extra_eos_token_ids,
        add_bos_token: meta
            .bool("tokenizer.ggml.add_bos_token")?
            .unwrap_or(default_add_bos),
        add_eos_token: meta.bool("tokenizer.ggml.add_eos_token")?.unwrap_or(false),
        control_token_ids,
        added_token_ids,
    })
}

/// Maps every token string to its index; a repeated string keeps its first index.
fn build_vocab(tokens: &[&str]) -> Vocab {
    let mut vocab = Vocab::with_capacity(tokens.len());
    let mut duplicates = 0usize;
    for (i, tok) in tokens.iter().enumerate() {
        if vocab.contains_key(*tok) {
            duplicates += 1;
        } else {
            vocab.insert((*tok).to_string(), i as u32);
        }
    }
    if duplicates > 0 {
        tracing::warn!(
            duplicates,
            "GGUF vocabulary repeats token strings; later copies cannot be produced by encoding"
        );
    }
    vocab
}

/// Builds a byte-level BPE tokenizer (`tokenizer.ggml.model = "gpt2"`).
fn build_gpt2(
    vocab: Vocab,
    merges: &[&str],
    kind: PreTokenizerKind,
) -> Result<tokenizers::Tokenizer> {
    let merges = merges
        .iter()
        .enumerate()
        .map(|(i, m)| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| {
                    Meta::invalid(
                        "tokenizer.ggml.merges",
                        format!("merge {i} ({m:?}) is not two tokens separated by a space"),
                    )
                })
        })
        .collect::<Result<Vec<_>>>()?;
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .ignore_merges(kind.ignore_merges())
        .build()
        .map_err(|e| TokenizerError::Build(format!("byte-level BPE from GGUF: {e}")))?;
    let mut tokenizer = tokenizers::Tokenizer::new(bpe);
    tokenizer.with_pre_tokenizer(Some(kind.build()?));
    tokenizer.with_decoder(Some(DecoderWrapper::ByteLevel(ByteLevel::new(
        true, true, true,
    ))));
    Ok(tokenizer)
}

/// Builds a sentencepiece-style BPE tokenizer (`tokenizer.ggml.model = "llama"`).
fn build_spm(
    vocab: Vocab,
    merges: Vec<(String, String)>,
    unk: Option<String>,
    add_space_prefix: bool,
) -> Result<tokenizers::Tokenizer> {
    let mut tokenizer = tokenizers::Tokenizer::new(sp_bpe(vocab, merges, unk, true)?);
    tokenizer.with_normalizer(Some(NormalizerSequence::new(sp_space_normalizers(
        add_space_prefix,
        true,
    )?)));
    tokenizer.with_decoder(Some(sp_decoder(add_space_prefix)?));
    Ok(tokenizer)
}
