//! Prompt text -> token ids, with protected spans encoded as plain text.
//!
//! Without protected spans this is exactly `tokenizer.encode(text, add_special_tokens=false)`
//! (templates write the bos text themselves). With them, the text goes through the
//! tokenizer's own stages by hand: the added-token matches the tokenizer itself finds
//! (its matcher, with its lstrip/rstrip/single-word rules) become token splits unless they
//! overlap a protected span; everything else is normalized, pre-tokenized and run through
//! the model as one string, offsets kept, so position-dependent rules such as Metaspace's
//! "prepend only at the start" behave as in a plain `encode`. No second tokenizer is built.

use std::ops::Range;
use tokenizers::normalizer::Range as NRange;
use tokenizers::{
    Model, Normalizer, NormalizerWrapper, OffsetReferential, OffsetType, PreTokenizedString,
    PreTokenizer, Token, Tokenizer,
};

use super::error::TemplateError;
use super::protect::RenderedPrompt;

fn tok_err(e: impl std::fmt::Display) -> TemplateError {
    TemplateError::Tokenize(e.to_string())
}

/// Encodes a rendered prompt; control tokens come only from unprotected text.
pub fn encode_prompt(tok: &Tokenizer, prompt: &RenderedPrompt) -> Result<Vec<u32>, TemplateError> {
    if prompt.protected.is_empty() {
        let enc = tok.encode(prompt.text.as_str(), false).map_err(tok_err)?;
        return Ok(enc.get_ids().to_vec());
    }
    encode_with_protection(tok, &prompt.text, &prompt.protected)
}

/// The added-token matches of `text` outside `protected`: (byte range, id).
fn control_tokens(
    tok: &Tokenizer,
    text: &str,
    protected: &[Range<usize>],
) -> Vec<(Range<usize>, u32)> {
    let found = tok
        .get_added_vocabulary()
        .extract_and_normalize(None::<&NormalizerWrapper>, text);
    found
        .get_splits(OffsetReferential::Original, OffsetType::Byte)
        .into_iter()
        .filter_map(|(_, (a, b), toks)| {
            let id = toks.as_ref()?.first()?.id;
            let overlaps = protected.iter().any(|p| p.start < b && a < p.end);
            (!overlaps).then_some((a..b, id))
        })
        .collect()
}

/// The manual pipeline; public for tests that compare it with the tokenizer's own `encode`.
pub fn encode_with_protection(
    tok: &Tokenizer,
    text: &str,
    protected: &[Range<usize>],
) -> Result<Vec<u32>, TemplateError> {
    let controls = control_tokens(tok, text, protected);
    let mut pre = PreTokenizedString::from(text);
    pre.split(|_, whole| {
        let mut splits = Vec::with_capacity(2 * controls.len() + 1);
        let mut pos = 0;
        for (r, id) in &controls {
            if pos < r.start {
                if let Some(s) = whole.slice(NRange::Original(pos..r.start)) {
                    splits.push((s, None));
                }
            }
            if let Some(s) = whole.slice(NRange::Original(r.clone())) {
                let content = s.get().to_string();
                let len = content.len();
                splits.push((s, Some(vec![Token::new(*id, content, (0, len))])));
            }
            pos = r.end;
        }
        if pos < text.len() {
            if let Some(s) = whole.slice(NRange::Original(pos..text.len())) {
                splits.push((s, None));
            }
        }
        Ok(splits)
    })
    .map_err(tok_err)?;
    if let Some(n) = tok.get_normalizer() {
        pre.normalize(|s| n.normalize(s)).map_err(tok_err)?;
    }
    if let Some(p) = tok.get_pre_tokenizer() {
        p.pre_tokenize(&mut pre).map_err(tok_err)?;
    }
    let model = tok.get_model();
    pre.tokenize(|s| model.tokenize(s.get())).map_err(tok_err)?;
    let enc = pre
        .into_encoding(None, 0, OffsetType::Byte)
        .map_err(tok_err)?;
    Ok(enc.get_ids().to_vec())
}
