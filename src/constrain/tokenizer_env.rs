//! callm's [`Tokenizer`] as llguidance sees it: the exact bytes of every token id (special
//! tokens marked with llguidance's 0xFF prefix), in a [`TokTrie`], behind [`TokenizerEnv`].
//!
//! Built from callm's own tokenizer (no second `tokenizers` build): byte-level BPE vocabularies
//! are mapped back through the GPT-2 byte alphabet, sentencepiece-style ones through `▁` and
//! `<0xNN>` byte tokens, anything else through the tokenizer's decoder.

use std::sync::Arc;

use toktrie::{TokEnv, TokRxInfo, TokTrie, TokenId, TokenizerEnv};

use crate::tokenizer::Tokenizer;

/// How a vocabulary spells bytes in its token strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spelling {
    /// GPT-2 byte-level BPE (`Ġ` for a space).
    ByteLevel,
    /// Sentencepiece style: `▁` for a space, `<0xNN>` byte-fallback tokens.
    Sentencepiece,
    /// Unknown: ask the decoder, token by token.
    Decoder,
}

fn spelling(tok: &Tokenizer) -> Spelling {
    let decoder = tok
        .inner()
        .get_decoder()
        .and_then(|d| serde_json::to_string(d).ok())
        .unwrap_or_default();
    if decoder.contains("\"ByteLevel\"") {
        Spelling::ByteLevel
    } else if decoder.contains("\"ByteFallback\"") || decoder.contains('\u{2581}') {
        Spelling::Sentencepiece
    } else {
        Spelling::Decoder
    }
}

/// The GPT-2 byte alphabet: the character that stands for each byte in byte-level vocabularies.
fn byte_level_alphabet() -> std::collections::HashMap<char, u8> {
    let printable =
        |b: u8| matches!(b, b'!'..=b'~') || matches!(b, 0xA1..=0xAC) || matches!(b, 0xAE..=0xFF);
    let mut map = std::collections::HashMap::with_capacity(256);
    let mut next = 256u32;
    for b in 0..=255u8 {
        let c = if printable(b) {
            char::from(b)
        } else {
            let c = char::from_u32(next).unwrap_or('\u{FFFD}');
            next += 1;
            c
        };
        map.insert(c, b);
    }
    map
}

/// The bytes of every token id below `vocab` (empty for ids the tokenizer does not know);
/// special tokens start with [`TokTrie::SPECIAL_TOKEN_MARKER`].
pub fn token_bytes(tok: &Tokenizer, vocab: usize) -> (Vec<Vec<u8>>, bool) {
    let spell = spelling(tok);
    let alphabet = byte_level_alphabet();
    let added: std::collections::HashSet<u32> = tok.added_token_ids().iter().copied().collect();
    let mut out = Vec::with_capacity(vocab);
    for id in 0..vocab as u32 {
        let Some(piece) = tok.id_to_token(id) else {
            out.push(Vec::new());
            continue;
        };
        let bytes = if tok.is_special(id) {
            let mut b = vec![TokTrie::SPECIAL_TOKEN_MARKER];
            b.extend_from_slice(piece.as_bytes());
            b
        } else if added.contains(&id) {
            piece.into_bytes()
        } else {
            match spell {
                Spelling::ByteLevel => piece
                    .chars()
                    .map(|c| alphabet.get(&c).copied())
                    .collect::<Option<Vec<u8>>>()
                    .unwrap_or_else(|| piece.into_bytes()),
                Spelling::Sentencepiece => match byte_token(&piece) {
                    Some(b) => vec![b],
                    None => piece.replace('\u{2581}', " ").into_bytes(),
                },
                Spelling::Decoder => tok
                    .decode(&[id], false)
                    .map(String::into_bytes)
                    .unwrap_or_default(),
            }
        };
        out.push(bytes);
    }
    (out, spell == Spelling::ByteLevel)
}

/// `<0xNN>` → the byte NN.
fn byte_token(piece: &str) -> Option<u8> {
    let hex = piece.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

/// callm's tokenizer behind llguidance's [`TokenizerEnv`].
pub struct CallmTokEnv {
    trie: TokTrie,
    tokenizer: Arc<Tokenizer>,
    canonical: bool,
}

impl CallmTokEnv {
    /// A token environment over `vocab` ids (the model's output size, at least the
    /// tokenizer's); `stop_ids` end a finished grammar.
    pub fn new(tokenizer: Arc<Tokenizer>, vocab: usize, stop_ids: &[u32]) -> Self {
        let vocab = vocab.max(tokenizer.vocab_size()).max(1);
        let (words, byte_level) = token_bytes(&tokenizer, vocab);
        let stops: Vec<TokenId> = stop_ids
            .iter()
            .copied()
            .filter(|&t| (t as usize) < vocab)
            .collect();
        let eos = stops
            .first()
            .copied()
            .or(tokenizer.eos_token_id())
            .unwrap_or(0);
        let mut info = TokRxInfo::new(vocab as u32, eos);
        info.tok_bos = tokenizer.bos_token_id();
        let mut trie = TokTrie::from(&info, &words);
        if !stops.is_empty() {
            trie = trie.with_eos_tokens(&stops);
        }
        CallmTokEnv {
            trie,
            tokenizer,
            canonical: byte_level,
        }
    }

    /// This environment as llguidance's shared handle.
    pub fn into_env(self) -> TokEnv {
        Arc::new(self)
    }

    /// The id of a special (control) token whose text is exactly `text`.
    pub fn special_id(&self, text: &str) -> Option<u32> {
        self.tokenizer
            .token_to_id(text)
            .filter(|&id| self.tokenizer.is_special(id) && (id as usize) < self.trie.vocab_size())
    }

    /// Token ids spelling `text` exactly: special-token strings become their ids, the rest
    /// is tokenized as text (canonically when possible).
    pub fn tokens_for(&self, text: &str) -> Vec<TokenId> {
        let specials: Vec<(String, u32)> = self
            .tokenizer
            .special_token_ids()
            .iter()
            .filter_map(|&id| self.tokenizer.id_to_token(id).map(|s| (s, id)))
            .filter(|(s, _)| !s.is_empty())
            .collect();
        let mut out = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            let next = specials
                .iter()
                .filter_map(|(s, id)| rest.find(s.as_str()).map(|at| (at, s.len(), *id)))
                .min_by_key(|&(at, len, _)| (at, std::cmp::Reverse(len)));
            match next {
                Some((at, len, id)) => {
                    out.extend(self.tokenize_bytes(&rest.as_bytes()[..at]));
                    out.push(id);
                    rest = &rest[at + len..];
                }
                None => {
                    out.extend(self.tokenize_bytes(rest.as_bytes()));
                    rest = "";
                }
            }
        }
        out
    }
}

impl TokenizerEnv for CallmTokEnv {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    fn tokenize_bytes(&self, s: &[u8]) -> Vec<TokenId> {
        if s.is_empty() {
            return Vec::new();
        }
        if self.canonical {
            if let Ok(text) = std::str::from_utf8(s) {
                if let Ok(ids) = self.tokenizer.encode(text, false) {
                    let ok = ids.iter().all(|&t| {
                        (t as usize) < self.trie.vocab_size() && !self.trie.is_special_token(t)
                    }) && self.trie.decode_raw(&ids) == s;
                    if ok {
                        return ids;
                    }
                }
            }
        }
        self.trie.greedy_tokenize(s)
    }

    fn tokenize_is_canonical(&self) -> bool {
        self.canonical
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_alphabet_is_a_bijection() {
        let m = byte_level_alphabet();
        assert_eq!(m.len(), 256);
        assert_eq!(m[&'\u{120}'], b' ');
        assert_eq!(m[&'a'], b'a');
        assert_eq!(m[&'\u{10A}'], b'\n');
    }

    #[test]
    fn byte_tokens_parse() {
        assert_eq!(byte_token("<0x0A>"), Some(b'\n'));
        assert_eq!(byte_token("<0xZZ>"), None);
        assert_eq!(byte_token("<0x0A0>"), None);
    }
}
