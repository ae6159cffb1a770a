//! Special tokens that a family's own tokenizer puts after the sentencepiece vocabulary.
//!
//! Some families keep role and mask tokens outside their `tokenizer.model`: the reference
//! tokenizer appends them, in a fixed order, with ids starting at the number of pieces. The data
//! here is a plain list of (token, id) pairs, so a registry entry can declare such a list per
//! family (e.g. a `spm_special_tokens = [...]` array appended after the vocabulary).

use tokenizers::AddedToken;

use super::SpmTokenizer;
use crate::tokenizer::{Result, TokenizerError};

/// ChatGLM3's extra tokens, in the order its `SPTokenizer` appends them after the sentencepiece
/// vocabulary (for chatglm3-6b, whose model has 64789 pieces: `[gMASK]` = 64790, `sop` = 64792,
/// `<|system|>` = 64794, `<|user|>` = 64795, `<|assistant|>` = 64796, `<|observation|>` = 64797).
pub const CHATGLM3_SPECIAL_TOKENS: [&str; 9] = [
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

/// Pairs each token with consecutive ids starting at `first_id` (usually the piece count).
pub fn append_after_vocab(tokens: &[&str], first_id: usize) -> Vec<(String, u32)> {
    (first_id..)
        .zip(tokens)
        .map(|(id, t)| (t.to_string(), id as u32))
        .collect()
}

/// ChatGLM3's special tokens with the ids its reference tokenizer gives a model of `n_pieces`.
pub fn chatglm3_special_tokens(n_pieces: usize) -> Vec<(String, u32)> {
    append_after_vocab(&CHATGLM3_SPECIAL_TOKENS, n_pieces)
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
