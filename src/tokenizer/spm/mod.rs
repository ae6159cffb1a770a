//! Reads a SentencePiece `tokenizer.model` (the protobuf sentencepiece's trainer writes) into a
//! Hugging Face `tokenizers::Tokenizer`, for models that ship no `tokenizer.json`.
//!
//! - UNIGRAM models become a `Unigram` model with the piece scores; BPE models become a `BPE` model
//!   whose merges are derived from the scores (as for GGUF `llama` vocabularies). Byte fallback and
//!   the unknown piece come from the trainer settings; every piece keeps its index as its id.
//! - The normaliser settings are honoured: the precompiled character map (e.g. `nmt_nfkc`) through
//!   the `Precompiled` normaliser, `remove_extra_whitespaces`, `add_dummy_prefix` (see
//!   [`DummyPrefix`]) and `escape_whitespaces` (spaces as `▁`).
//! - CONTROL and UNKNOWN pieces become special added tokens and USER_DEFINED pieces plain added
//!   tokens, so all of them are matched as single tokens in text (sentencepiece itself matches
//!   only USER_DEFINED ones; chat templates need the control tokens matched too).
//! - Families that put extra special tokens after the sentencepiece vocabulary (ChatGLM3) add
//!   them with [`SpmTokenizer::add_special_tokens`]; see the `special` module.

mod proto;
pub mod special;

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use prost::Message;
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::models::unigram::Unigram;
use tokenizers::normalizers::precompiled::Precompiled;
use tokenizers::normalizers::replace::ReplacePattern;
use tokenizers::normalizers::{Prepend, Replace, Sequence as NormalizerSequence};
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::{
    AddedToken, DecoderWrapper, ModelWrapper, NormalizerWrapper, PreTokenizerWrapper,
};

pub use special::append_after_vocab;

use super::gguf::{
    TOKEN_TYPE_BYTE, TOKEN_TYPE_CONTROL, TOKEN_TYPE_NORMAL, TOKEN_TYPE_UNKNOWN,
    TOKEN_TYPE_USER_DEFINED,
};
use super::{Result, TokenizerError};

/// The sentencepiece word-boundary marker.
pub(crate) const SPM_SPACE: &str = "\u{2581}";

/// Text run through a freshly built tokenizer to catch a corrupt character map before use.
const PROBE: &str = "Hello  world\t\n①ﬁ ｈｅｌｌｏ 天気 café 🦙 \u{301}e\u{301}";

/// The segmentation algorithm a sentencepiece model uses (`TrainerSpec.model_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpmModelType {
    /// Unigram language model (sentencepiece's default; e.g. T5, ALBERT).
    Unigram,
    /// Byte-pair encoding (e.g. Llama 2, CodeLlama, Mistral).
    Bpe,
}

/// Where the dummy-prefix space (`add_dummy_prefix`) goes when text holds added tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DummyPrefix {
    /// Like Hugging Face `tokenizer.json` conversions (`Metaspace`, prepend scheme "first"):
    /// only before the first text segment, and not when the text already starts with a space.
    #[default]
    FirstSegment,
    /// Like the sentencepiece library on plain text: before every text segment, even one that
    /// starts with a space (segments are the runs of text between added tokens).
    EverySegment,
}

/// A tokenizer rebuilt from a sentencepiece model, with the special-token facts it declares.
pub struct SpmTokenizer {
    /// The rebuilt tokenizer.
    pub tokenizer: tokenizers::Tokenizer,
    /// The model's segmentation algorithm.
    pub model_type: SpmModelType,
    /// Number of sentencepiece pieces (their ids are `0..n_pieces`).
    pub n_pieces: usize,
    /// Id of the UNKNOWN piece.
    pub unk_token_id: u32,
    /// `TrainerSpec.bos_id`, unless it is -1.
    pub bos_token_id: Option<u32>,
    /// `TrainerSpec.eos_id`, unless it is -1.
    pub eos_token_id: Option<u32>,
    /// `TrainerSpec.pad_id`, unless it is -1.
    pub pad_token_id: Option<u32>,
    /// Whether `Tokenizer::encode(text, true)` should start with BOS (default: a BOS exists, as
    /// for Llama, CodeLlama and Mistral; families such as ChatGLM3 turn it off).
    pub add_bos_token: bool,
    /// Ids of special tokens: CONTROL and UNKNOWN pieces plus added special tokens (sorted).
    pub special_token_ids: Vec<u32>,
    /// Ids of all added tokens: the special ones and USER_DEFINED pieces (sorted).
    pub added_token_ids: Vec<u32>,
    /// Whether added tokens are matched in normalised text (see `add_piece_tokens`).
    normalized_added_tokens: bool,
}

impl SpmTokenizer {
    /// Number of token ids: the pieces plus special tokens added after them.
    pub fn vocab_size(&self) -> usize {
        self.added_token_ids
            .last()
            .map_or(self.n_pieces, |&id| self.n_pieces.max(id as usize + 1))
    }
}

/// The error for an unusable sentencepiece model.
fn invalid(message: impl Into<String>) -> TokenizerError {
    TokenizerError::InvalidSentencePiece {
        origin: "the data".to_string(),
        message: message.into(),
    }
}

/// Reads a `tokenizer.model` file with the default [`DummyPrefix::FirstSegment`] behaviour.
pub fn tokenizer_from_spm_file(path: impl AsRef<Path>) -> Result<SpmTokenizer> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| TokenizerError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    tokenizer_from_spm(&bytes).map_err(|e| match e {
        TokenizerError::InvalidSentencePiece { message, .. } => {
            TokenizerError::InvalidSentencePiece {
                origin: path.display().to_string(),
                message,
            }
        }
        other => other,
    })
}

/// Builds a tokenizer from the bytes of a `tokenizer.model` ([`DummyPrefix::FirstSegment`]).
pub fn tokenizer_from_spm(bytes: &[u8]) -> Result<SpmTokenizer> {
    tokenizer_from_spm_with(bytes, DummyPrefix::default())
}

/// Builds a tokenizer from the bytes of a `tokenizer.model`, placing the dummy prefix as asked.
pub fn tokenizer_from_spm_with(bytes: &[u8], prefix: DummyPrefix) -> Result<SpmTokenizer> {
    if bytes.starts_with(b"version https://git-lfs") {
        return Err(invalid(
            "it is a Git LFS pointer, not the model: fetch the real file (git lfs pull)",
        ));
    }
    if bytes.is_empty() {
        return Err(invalid("the file is empty"));
    }
    let model = proto::ModelProto::decode(bytes)
        .map_err(|e| invalid(format!("cannot decode the protobuf: {e}")))?;
    catch_unwind(AssertUnwindSafe(|| build(&model, prefix)))
        .map_err(|_| invalid("the tokenizers library panicked while building it"))?
}

/// The validated vocabulary: piece strings, scores and types, in id order.
struct Pieces<'a> {
    tokens: Vec<&'a str>,
    scores: Vec<f32>,
    types: Vec<i32>,
}

fn read_pieces(model: &proto::ModelProto) -> Result<Pieces<'_>> {
    let n = model.pieces.len();
    if n == 0 {
        return Err(invalid("it has no pieces"));
    }
    let mut seen: HashMap<&str, usize> = HashMap::with_capacity(n);
    let mut pieces = Pieces {
        tokens: Vec::with_capacity(n),
        scores: Vec::with_capacity(n),
        types: Vec::with_capacity(n),
    };
    for (i, p) in model.pieces.iter().enumerate() {
        let text = p.piece.as_deref().unwrap_or_default();
        if text.is_empty() {
            return Err(invalid(format!("piece {i} is empty")));
        }
        if let Some(first) = seen.insert(text, i) {
            return Err(invalid(format!(
                "piece {i} ({text:?}) repeats piece {first}"
            )));
        }
        let score = p.score.unwrap_or(0.0);
        if !score.is_finite() {
            return Err(invalid(format!("piece {i} ({text:?}) has score {score}")));
        }
        let kind = p.kind.unwrap_or(TOKEN_TYPE_NORMAL);
        if !(TOKEN_TYPE_NORMAL..=TOKEN_TYPE_BYTE).contains(&kind) {
            return Err(invalid(format!(
                "piece {i} ({text:?}) has unknown type {kind}"
            )));
        }
        pieces.tokens.push(text);
        pieces.scores.push(score);
        pieces.types.push(kind);
    }
    Ok(pieces)
}

/// A trainer-spec id: `None` for -1 (or a default that does not fit), an error if set out of range.
fn special_id(field: &str, set: Option<i32>, default: i32, n: usize) -> Result<Option<u32>> {
    let id = set.unwrap_or(default);
    match u32::try_from(id) {
        Ok(id) if (id as usize) < n => Ok(Some(id)),
        _ if id == -1 || set.is_none() => Ok(None),
        _ => Err(invalid(format!(
            "trainer_spec.{field} = {id} is not a piece id (there are {n} pieces)"
        ))),
    }
}

fn build(model: &proto::ModelProto, prefix: DummyPrefix) -> Result<SpmTokenizer> {
    let pieces = read_pieces(model)?;
    let n = pieces.tokens.len();
    let trainer = model.trainer_spec.clone().unwrap_or_default();
    let norm = model.normalizer_spec.clone().unwrap_or_default();
    if trainer.treat_whitespace_as_suffix.unwrap_or(false) {
        return Err(invalid("treat_whitespace_as_suffix is not supported"));
    }
    let unk = pieces
        .types
        .iter()
        .position(|&t| t == TOKEN_TYPE_UNKNOWN)
        .ok_or_else(|| invalid("it has no UNKNOWN piece"))?;
    let byte_fallback = trainer.byte_fallback.unwrap_or(false);
    let model_type = match trainer.model_type.unwrap_or(1) {
        1 => SpmModelType::Unigram,
        2 => SpmModelType::Bpe,
        3 => {
            return Err(invalid(
                "model type WORD is not supported (only UNIGRAM and BPE)",
            ))
        }
        4 => {
            return Err(invalid(
                "model type CHAR is not supported (only UNIGRAM and BPE)",
            ))
        }
        other => return Err(invalid(format!("unknown model type {other}"))),
    };
    let model: ModelWrapper = match model_type {
        SpmModelType::Unigram => {
            let vocab = pieces
                .tokens
                .iter()
                .zip(&pieces.scores)
                .map(|(t, &s)| (t.to_string(), f64::from(s)))
                .collect();
            Unigram::from(vocab, Some(unk), byte_fallback)
                .map_err(|e| TokenizerError::Build(format!("sentencepiece unigram: {e}")))?
                .into()
        }
        SpmModelType::Bpe => {
            let merges = spm_merges(&pieces.tokens, &pieces.scores, &pieces.types);
            let vocab: Vocab = (0u32..)
                .zip(&pieces.tokens)
                .map(|(i, t)| (t.to_string(), i))
                .collect();
            sp_bpe(
                vocab,
                merges,
                Some(pieces.tokens[unk].to_string()),
                byte_fallback,
            )?
            .into()
        }
    };

    let add_dummy_prefix = norm.add_dummy_prefix.unwrap_or(true);
    let escape = norm.escape_whitespaces.unwrap_or(true);
    let build_err = |e: tokenizers::Error| TokenizerError::Build(format!("normaliser: {e}"));
    let mut normalizers = Vec::new();
    let charsmap = norm.precompiled_charsmap.as_deref().unwrap_or_default();
    if !charsmap.is_empty() {
        let pre = Precompiled::from(charsmap)
            .map_err(|e| invalid(format!("normalizer_spec.precompiled_charsmap: {e}")))?;
        normalizers.push(NormalizerWrapper::Precompiled(pre));
    }
    let metaspace = escape && prefix == DummyPrefix::FirstSegment;
    if norm.remove_extra_whitespaces.unwrap_or(true) {
        // `Metaspace` prefixes only text that starts at offset 0 of the input: with it, one
        // leading space is kept to serve as the dummy prefix instead of being removed.
        let ends = if metaspace && add_dummy_prefix {
            r" \z"
        } else {
            r"\A | \z"
        };
        for (pattern, content) in [(" {2,}", " "), (ends, "")] {
            let re = ReplacePattern::Regex(pattern.to_string());
            normalizers.push(Replace::new(re, content).map_err(build_err)?.into());
        }
    }
    let mut pre_tokenizer = None;
    if metaspace {
        let scheme = if add_dummy_prefix {
            PrependScheme::First
        } else {
            PrependScheme::Never
        };
        pre_tokenizer = Some(PreTokenizerWrapper::Metaspace(Metaspace::new(
            '\u{2581}', scheme, false,
        )));
    } else {
        normalizers.extend(sp_space_normalizers(add_dummy_prefix, escape)?);
    }

    let mut tokenizer = tokenizers::Tokenizer::new(model);
    if !normalizers.is_empty() {
        tokenizer.with_normalizer(Some(NormalizerSequence::new(normalizers)));
    }
    tokenizer.with_decoder(Some(sp_decoder(add_dummy_prefix)?));
    // With the prefix and `▁` left to the pre-tokenizer, the normaliser (character map, extra
    // spaces) can run over the whole text before added tokens are split off, as in sentencepiece.
    let normalized_added_tokens = pre_tokenizer.is_some();
    tokenizer.with_pre_tokenizer(pre_tokenizer);
    let (special_token_ids, added_token_ids) = add_piece_tokens(
        &mut tokenizer,
        &pieces.tokens,
        &pieces.types,
        &[TOKEN_TYPE_CONTROL, TOKEN_TYPE_UNKNOWN],
        normalized_added_tokens,
    );
    if !charsmap.is_empty()
        && catch_unwind(AssertUnwindSafe(|| tokenizer.encode(PROBE, false))).is_err()
    {
        return Err(invalid("normalizer_spec.precompiled_charsmap is corrupt"));
    }

    let bos_token_id = special_id("bos_id", trainer.bos_id, 1, n)?;
    Ok(SpmTokenizer {
        tokenizer,
        model_type,
        n_pieces: n,
        unk_token_id: unk as u32,
        bos_token_id,
        eos_token_id: special_id("eos_id", trainer.eos_id, 2, n)?,
        pad_token_id: special_id("pad_id", trainer.pad_id, -1, n)?,
        add_bos_token: bos_token_id.is_some(),
        special_token_ids,
        added_token_ids,
        normalized_added_tokens,
    })
}

/// Derives BPE merges from sentencepiece scores: a NORMAL piece made of two NORMAL pieces is a
/// merge; merges are ranked by the score of the merged piece, highest first (ties keep id order).
pub(crate) fn spm_merges(tokens: &[&str], scores: &[f32], types: &[i32]) -> Vec<(String, String)> {
    let normal = |i: usize| types[i] == TOKEN_TYPE_NORMAL;
    let mut index: HashMap<&str, u32> = HashMap::with_capacity(tokens.len());
    for (i, tok) in tokens.iter().enumerate() {
        if normal(i) {
            index.entry(*tok).or_insert(i as u32);
        }
    }
    let mut ranked: Vec<(f32, u32, u32)> = Vec::new();
    let mut local: Vec<(u32, u32)> = Vec::new();
    for (i, tok) in tokens.iter().enumerate() {
        if !normal(i) || index.get(*tok) != Some(&(i as u32)) {
            continue;
        }
        local.clear();
        for (pos, _) in tok.char_indices().skip(1) {
            let (left, right) = tok.split_at(pos);
            if let (Some(&l), Some(&r)) = (index.get(left), index.get(right)) {
                local.push((l, r));
            }
        }
        local.sort_unstable();
        ranked.extend(local.iter().map(|&(l, r)| (scores[i], l, r)));
    }
    // Stable sort: equal scores keep token order, then (left id, right id) order.
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
    ranked
        .into_iter()
        .map(|(_, l, r)| {
            (
                tokens[l as usize].to_string(),
                tokens[r as usize].to_string(),
            )
        })
        .collect()
}

/// Normalisers that put a space before every text segment (when `add_prefix`) and write spaces
/// as `▁` (when `escape`), as sentencepiece does on plain text.
pub(crate) fn sp_space_normalizers(
    add_prefix: bool,
    escape: bool,
) -> Result<Vec<NormalizerWrapper>> {
    let space = if escape { SPM_SPACE } else { " " };
    let mut normalizers = Vec::new();
    if add_prefix {
        normalizers.push(Prepend::new(space.to_string()).into());
    }
    if escape {
        let replace = Replace::new(" ", SPM_SPACE)
            .map_err(|e| TokenizerError::Build(format!("sentencepiece rules: {e}")))?;
        normalizers.push(replace.into());
    }
    Ok(normalizers)
}

/// A sentencepiece-style BPE model: unknown runs fused into one unknown token, optional byte
/// fallback to `<0xNN>` pieces.
pub(crate) fn sp_bpe(
    vocab: Vocab,
    merges: Vec<(String, String)>,
    unk: Option<String>,
    byte_fallback: bool,
) -> Result<BPE> {
    let mut builder = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .byte_fallback(byte_fallback)
        .fuse_unk(true);
    if let Some(unk) = unk {
        builder = builder.unk_token(unk);
    }
    builder
        .build()
        .map_err(|e| TokenizerError::Build(format!("sentencepiece BPE: {e}")))
}

/// The sentencepiece decoder: `▁` to space, byte pieces to bytes, and (when the encoder put a
/// dummy prefix before the text) one leading space removed.
pub(crate) fn sp_decoder(strip_prefix: bool) -> Result<DecoderWrapper> {
    let replace = Replace::new(SPM_SPACE, " ")
        .map_err(|e| TokenizerError::Build(format!("sentencepiece decoder: {e}")))?;
    let mut decoders = vec![
        DecoderWrapper::Replace(replace),
        DecoderWrapper::ByteFallback(ByteFallback::new()),
        DecoderWrapper::Fuse(Fuse::new()),
    ];
    if strip_prefix {
        decoders.push(DecoderWrapper::Strip(Strip::new(' ', 1, 0)));
    }
    Ok(DecoderWrapper::Sequence(DecoderSequence::new(decoders)))
}

/// Registers pieces as added tokens, matched whole in text: those whose type is in
/// `special_types` as special tokens, USER_DEFINED ones as plain added tokens. `normalized`
/// tokens are matched after the normaliser ran over the whole text, others before it (and then
/// the normaliser runs on each stretch of text between them).
/// Returns the (sorted) ids of the special tokens and of all added tokens.
pub(crate) fn add_piece_tokens(
    tokenizer: &mut tokenizers::Tokenizer,
    tokens: &[&str],
    types: &[i32],
    special_types: &[i32],
    normalized: bool,
) -> (Vec<u32>, Vec<u32>) {
    let mut special_ids = Vec::new();
    let mut added_ids = Vec::new();
    let mut special = Vec::new();
    let mut user = Vec::new();
    for (i, (&tok, &ty)) in tokens.iter().zip(types).enumerate() {
        if tok.is_empty() {
            continue;
        }
        if special_types.contains(&ty) {
            special_ids.push(i as u32);
            added_ids.push(i as u32);
            special.push(AddedToken::from(tok.to_string(), true).normalized(normalized));
        } else if ty == TOKEN_TYPE_USER_DEFINED {
            added_ids.push(i as u32);
            user.push(AddedToken::from(tok.to_string(), false).normalized(normalized));
        }
    }
    tokenizer.add_special_tokens(&special);
    tokenizer.add_tokens(&user);
    (special_ids, added_ids)
}
