//! What a request may ask of the loaded model, checked before any work: the prompt's size
//! in bytes (before tokenizing) and `logit_bias` token ids (the vocabulary is the model's).

use super::types::ChatError;
use crate::request::Sampling;
use crate::runtime::LoadedModel;

/// Bytes of prompt text per token of the context window beyond which a prompt is refused
/// before it is tokenized. Text averages 3 to 5 bytes per token (code with deep
/// indentation rarely 10), so a prompt over 32 bytes per context token cannot fit; checking
/// the bytes first spares tokenizing megabytes only to refuse them (a 15 MB prompt took 8 s
/// and 1.3 GB).
pub const PROMPT_BYTES_PER_TOKEN: usize = 32;

/// The largest prompt, in bytes, for `lm`'s context window.
pub fn max_prompt_bytes(lm: &LoadedModel) -> usize {
    lm.context.saturating_mul(PROMPT_BYTES_PER_TOKEN)
}

/// Refuses a prompt of `bytes` that cannot fit the context window (a client error about
/// `param`: `messages`, `prompt`).
pub fn check_prompt_bytes(lm: &LoadedModel, bytes: usize, param: &str) -> Result<(), ChatError> {
    let limit = max_prompt_bytes(lm);
    if bytes <= limit {
        return Ok(());
    }
    Err(ChatError::invalid(
        param,
        format!(
            "the prompt is {bytes} bytes, more than this model's context of {} tokens can hold \
             (at most {limit} bytes, {PROMPT_BYTES_PER_TOKEN} per token)",
            lm.context
        ),
    ))
}

/// The token ids `lm` can sample: its tokenizer's and its output layer's, whichever is fewer.
pub fn vocabulary(lm: &LoadedModel) -> usize {
    lm.tokenizer.vocab_size().min(lm.model.config().vocab_size)
}

/// Refuses `logit_bias` entries for token ids outside `vocab`.
pub fn check_logit_bias(s: &Sampling, vocab: usize) -> Result<(), ChatError> {
    match s.logit_bias.iter().find(|(id, _)| *id as usize >= vocab) {
        Some((id, _)) => Err(ChatError::invalid(
            "logit_bias",
            format!(
                "`logit_bias` names token {id}, but this model's vocabulary has ids 0 to {}.",
                vocab.saturating_sub(1)
            ),
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logit_bias_ids_must_be_in_the_vocabulary() {
        let s = Sampling {
            logit_bias: vec![(0, 1.0), (511, -100.0)],
            ..Sampling::default()
        };
        assert!(check_logit_bias(&s, 512).is_ok());
        let e = check_logit_bias(&s, 511).unwrap_err();
        assert_eq!(e.param(), Some("logit_bias"));
        assert!(e.to_string().contains("511"), "{e}");
    }
}
