//! Special tokens that a family's own tokenizer puts after the sentencepiece vocabulary.
//!
//! Some families keep role and mask tokens outside their `tokenizer.model`: the reference
//! tokenizer appends them, in a fixed order, with ids starting at the number of pieces. The
//! lists live in the registry (`spm_special_tokens` in models.toml, e.g. ChatGLM3's).

use tokenizers::AddedToken;

use super::SpmTokenizer;
use crate::tokenizer::{Result, TokenizerError};

/// Pairs each token with consecutive ids starting at `first_id` (usually the piece count).
pub fn append_after_vocab(tokens: &[&str], first_id: usize) -> Vec<(String, u32)> {
    (first_id..)
        .zip(tokens)
        .map(|(id, t)| (t.to_string(), id as u32))
        .collect()
}

impl SpmTokenizer {
    /// Adds special tokens at explicit ids: each id must be the next free one after the pieces
    /// and the tokens added so far, or a piece that already has this text (then it is only
    /// marked special). Nothing is added if any pair does not fit.
    pub fn add_special_tokens(&mut self, tokens: &[(String, u32)]) -> Result<()> {
        let mut sorted: Vec<&(String, u32)> = tokens.iter().collect();
        sorted.sort_by_key(|(_, id)| *id);
        let mut next = self.vocab_size() as u32;
        let mut new = Vec::new();
        for (text, id) in sorted {
            let bad = |why: String| {
                TokenizerError::Build(format!("special token {text:?} at id {id}: {why}"))
            };
            if text.is_empty() {
                return Err(bad("the token text is empty".to_string()));
            }
            match self.tokenizer.token_to_id(text) {
                Some(existing) if existing == *id => {}
                Some(existing) => return Err(bad(format!("the text already has id {existing}"))),
                None if *id == next => next += 1,
                None if *id < next => {
                    let holder = self.tokenizer.id_to_token(*id).unwrap_or_default();
                    return Err(bad(format!("the id is taken by {holder:?}")));
                }
                None => {
                    return Err(bad(format!(
                        "ids must follow on, the next free id is {next}"
                    )))
                }
            }
            new.push((text.clone(), *id));
        }
        for (text, id) in new {
            let token =
                AddedToken::from(text.clone(), true).normalized(self.normalized_added_tokens);
            self.tokenizer.add_special_tokens(&[token]);
            if self.tokenizer.token_to_id(&text) != Some(id) {
                return Err(TokenizerError::Build(format!(
                    "special token {text:?} did not get id {id}"
                )));
            }
            for ids in [&mut self.special_token_ids, &mut self.added_token_ids] {
                if let Err(pos) = ids.binary_search(&id) {
                    ids.insert(pos, id);
                }
            }
        }
        Ok(())
    }
}
