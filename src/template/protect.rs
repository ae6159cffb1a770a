//! Keeps control-token text that users, tools or tool results write from becoming control tokens.
//!
//! Before rendering, every occurrence of an added-token string (`<|eot_id|>`, `[INST]`, ...)
//! inside the request's strings is replaced by one private-use character (a placeholder).
//! After rendering the placeholders are turned back into the token text and their byte spans
//! recorded in [`RenderedPrompt::protected`]; [`super::encode_prompt`] encodes those spans as
//! plain text. Only the template's own markup can thus yield control tokens.

use serde_json::Value as Json;
use std::collections::HashMap;
use std::ops::Range;

/// First code point of the placeholder window (Supplementary Private Use Area-A).
pub const PLACEHOLDER_BASE: u32 = 0xF0000;
/// Size of the placeholder window: at most this many distinct tokens are protected per request.
pub const PLACEHOLDER_COUNT: u32 = 0x1000;

/// Whether `c` lies in the placeholder window.
pub fn is_placeholder_char(c: char) -> bool {
    (PLACEHOLDER_BASE..PLACEHOLDER_BASE + PLACEHOLDER_COUNT).contains(&(c as u32))
}

/// A rendered prompt: its text and the byte spans that must be encoded as plain text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RenderedPrompt {
    /// The exact prompt text.
    pub text: String,
    /// Byte ranges of control-token text that came from the request, not from the template.
    pub protected: Vec<Range<usize>>,
}

impl RenderedPrompt {
    /// A prompt with nothing protected.
    pub fn plain(text: impl Into<String>) -> Self {
        RenderedPrompt {
            text: text.into(),
            protected: Vec::new(),
        }
    }
}

/// Finds the control-token strings of one tokenizer inside text.
#[derive(Debug, Clone, Default)]
pub struct Protector {
    /// Token strings by first byte, longest first.
    by_first: HashMap<u8, Vec<String>>,
}

impl Protector {
    /// A protector for these token strings (empty strings are ignored).
    pub fn new<I, S>(tokens: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut by_first: HashMap<u8, Vec<String>> = HashMap::new();
        for t in tokens {
            let t: String = t.into();
            if let Some(&b) = t.as_bytes().first() {
                let list = by_first.entry(b).or_default();
                if !list.contains(&t) {
                    list.push(t);
                }
            }
        }
        for list in by_first.values_mut() {
            list.sort_by_key(|t| std::cmp::Reverse(t.len()));
        }
        Protector { by_first }
    }

    /// Whether no token is protected.
    pub fn is_empty(&self) -> bool {
        self.by_first.is_empty()
    }

    /// The leftmost-longest token at byte `i` of `s`, if any.
    fn match_at<'a>(&'a self, s: &str, i: usize) -> Option<&'a str> {
        let list = self.by_first.get(&s.as_bytes()[i])?;
        list.iter()
            .find(|t| s[i..].starts_with(t.as_str()))
            .map(|t| t.as_str())
    }

    /// Replaces token text in every string (keys included) of `values`; returns the session
    /// needed to restore them, or `None` when nothing had to be replaced or a placeholder
    /// character already occurs in the input (then the input is left unchanged).
    pub fn protect(&self, values: &mut [&mut Json]) -> Option<Restorer> {
        if self.is_empty() {
            return None;
        }
        let mut clash = false;
        let mut found = false;
        for v in values.iter() {
            visit_strings(v, &mut |s| {
                clash |= s.chars().any(is_placeholder_char);
                found |= self.find_any(s);
            });
        }
        if clash || !found {
            if clash && found {
                tracing::warn!("request text holds private-use placeholders; control-token text left unprotected");
            }
            return None;
        }
        let mut restorer = Restorer::default();
        for v in values.iter_mut() {
            rewrite_strings(v, &mut |s| self.replace(s, &mut restorer));
        }
        Some(restorer)
    }

    fn find_any(&self, s: &str) -> bool {
        s.char_indices().any(|(i, _)| self.match_at(s, i).is_some())
    }

    fn replace(&self, s: &str, restorer: &mut Restorer) -> String {
        let mut out = String::with_capacity(s.len());
        let mut i = 0;
        while i < s.len() {
            if let Some(tok) = self.match_at(s, i) {
                out.push(restorer.placeholder_for(tok));
                i += tok.len();
            } else {
                let c = s[i..].chars().next().unwrap_or('\0');
                out.push(c);
                i += c.len_utf8().max(1);
            }
        }
        out
    }
}

/// The placeholders handed out for one request.
#[derive(Debug, Clone, Default)]
pub struct Restorer {
    tokens: Vec<String>,
}

impl Restorer {
    fn placeholder_for(&mut self, tok: &str) -> char {
        let idx = match self.tokens.iter().position(|t| t == tok) {
            Some(i) => i,
            None => {
                self.tokens.push(tok.to_string());
                self.tokens.len() - 1
            }
        };
        // The window is far larger than any tokenizer's added vocabulary that occurs in a request.
        let idx = (idx as u32).min(PLACEHOLDER_COUNT - 1);
        char::from_u32(PLACEHOLDER_BASE + idx).unwrap_or('\u{FFFD}')
    }

    /// Turns placeholders in rendered text back into token text, recording their spans.
    pub fn restore(&self, rendered: &str) -> RenderedPrompt {
        let mut text = String::with_capacity(rendered.len() + 16);
        let mut protected = Vec::new();
        for c in rendered.chars() {
            let idx = (c as u32).wrapping_sub(PLACEHOLDER_BASE) as usize;
            match self.tokens.get(idx) {
                Some(tok) if is_placeholder_char(c) => {
                    let start = text.len();
                    text.push_str(tok);
                    protected.push(start..text.len());
                }
                _ => text.push(c),
            }
        }
        RenderedPrompt { text, protected }
    }
}

fn visit_strings(v: &Json, f: &mut impl FnMut(&str)) {
    match v {
        Json::String(s) => f(s),
        Json::Array(a) => a.iter().for_each(|x| visit_strings(x, f)),
        Json::Object(m) => {
            for (k, x) in m {
                f(k);
                visit_strings(x, f);
            }
        }
        _ => {}
    }
}

fn rewrite_strings(v: &mut Json, f: &mut impl FnMut(&str) -> String) {
    match v {
        Json::String(s) => *s = f(s),
        Json::Array(a) => a.iter_mut().for_each(|x| rewrite_strings(x, f)),
        Json::Object(m) => {
            let old = std::mem::take(m);
            for (k, mut x) in old {
                rewrite_strings(&mut x, f);
                m.insert(f(&k), x);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protects_and_restores_with_spans() {
        let p = Protector::new(["<|eot_id|>", "<|eot", "[INST]"]);
        let mut v = serde_json::json!({"content": "a<|eot_id|>b [INST]", "<|eot": 1});
        let r = p.protect(&mut [&mut v]).expect("found");
        let s = v["content"].as_str().unwrap().to_string();
        assert!(!s.contains("<|eot_id|>"));
        let out = r.restore(&format!("<|eot_id|>{s}"));
        assert_eq!(out.text, "<|eot_id|>a<|eot_id|>b [INST]");
        assert_eq!(out.protected, vec![11..21, 23..29]);
        assert!(p.protect(&mut [&mut serde_json::json!("plain")]).is_none());
    }
}
