//! Incremental detokenization: turn a stream of token ids into text pieces as they complete.
//!
//! Each step decodes only a short window of recent tokens: the tokens already emitted in the
//! previous piece (the prefix, which gives the decoder its context: leading `▁`, byte-level
//! spaces) and the tokens not yet emitted. The new text is the window's text minus the
//! prefix's text. Text ending in U+FFFD is held back, so an incomplete UTF-8 character (split
//! over byte-fallback or byte-level tokens) is never emitted. Special tokens are kept visible
//! unless the stream was created with `skip_special = true`.

use super::{Result, Tokenizer};

/// After this many tokens without emitting, text is emitted even if it ends in U+FFFD (a genuine
/// replacement character or invalid bytes): an incomplete character needs at most 4 tokens.
const MAX_PENDING: usize = 8;

/// Incremental detokenizer: push token ids one at a time, get back newly completed text.
#[derive(Debug, Clone)]
pub struct DecodeStream<'a> {
    tokenizer: &'a Tokenizer,
    skip_special: bool,
    /// Window of ids: `ids[..read_offset]` is the emitted prefix, the rest is pending.
    ids: Vec<u32>,
    read_offset: usize,
    /// Decoded text of `ids[..read_offset]`.
    prefix_text: String,
}

impl<'a> DecodeStream<'a> {
    /// Creates an empty stream; `skip_special = false` keeps tokens like `<|python_tag|>` in the text.
    pub fn new(tokenizer: &'a Tokenizer, skip_special: bool) -> Self {
        Self {
            tokenizer,
            skip_special,
            ids: Vec::new(),
            read_offset: 0,
            prefix_text: String::new(),
        }
    }

    /// Adds one token id and returns the text it completes, if any.
    pub fn push(&mut self, id: u32) -> Result<Option<String>> {
        self.ids.push(id);
        let text = self.tokenizer.decode(&self.ids, self.skip_special)?;
        let pending = self.ids.len() - self.read_offset;
        let complete = !text.ends_with('\u{FFFD}');
        if text.len() > self.prefix_text.len() && (complete || pending >= MAX_PENDING) {
            let piece = self.new_suffix(&text);
            self.advance()?;
            return Ok(Some(piece));
        }
        if pending >= MAX_PENDING {
            // Tokens that decode to nothing (e.g. skipped specials): drop them from the window.
            self.advance()?;
        }
        Ok(None)
    }

    /// Adds several token ids and returns the concatenated completed text.
    pub fn push_all(&mut self, ids: &[u32]) -> Result<String> {
        let mut out = String::new();
        for &id in ids {
            if let Some(piece) = self.push(id)? {
                out.push_str(&piece);
            }
        }
        Ok(out)
    }

    /// Emits whatever is still held back (e.g. an incomplete character, as U+FFFD) at the end.
    pub fn flush(&mut self) -> Result<Option<String>> {
        if self.ids.len() == self.read_offset {
            return Ok(None);
        }
        let text = self.tokenizer.decode(&self.ids, self.skip_special)?;
        let piece = self.new_suffix(&text);
        self.advance()?;
        Ok((!piece.is_empty()).then_some(piece))
    }

    /// Forgets all state, as if newly created.
    pub fn reset(&mut self) {
        self.ids.clear();
        self.read_offset = 0;
        self.prefix_text.clear();
    }

    /// Number of ids held in the window (emitted context plus pending), for diagnostics.
    pub fn window_len(&self) -> usize {
        self.ids.len()
    }

    /// The part of the window's text that follows the already emitted prefix text.
    fn new_suffix(&self, text: &str) -> String {
        if let Some(rest) = text.strip_prefix(self.prefix_text.as_str()) {
            return rest.to_string();
        }
        // The decoder changed earlier text (unusual): emit from the first differing character.
        let common = text
            .char_indices()
            .zip(self.prefix_text.chars())
            .take_while(|((_, a), b)| a == b)
            .last()
            .map_or(0, |((i, c), _)| i + c.len_utf8());
        tracing::debug!("decode stream: window text does not extend its prefix");
        text[common..].to_string()
    }

    /// Makes the pending tokens the new prefix and drops the old prefix from the window.
    fn advance(&mut self) -> Result<()> {
        self.ids.drain(..self.read_offset);
        self.read_offset = self.ids.len();
        self.prefix_text = self.tokenizer.decode(&self.ids, self.skip_special)?;
        Ok(())
    }
}
