//! Keeps control-token text that users, tools or tool results write from becoming control tokens.
//!
//! Before rendering, every occurrence of an added-token string (`<|eot_id|>`, `[INST]`, ...)
//! inside the request's strings is replaced by one private-use character (a placeholder).
//! After rendering the placeholders are turned back into the token text and their byte spans
//! recorded in [`RenderedPrompt::protected`]; [`super::encode_prompt`] encodes those spans as
//! plain text. Only the template's own markup can thus yield control tokens.
//!
//! The protection fails closed: a character of the placeholder window that the request itself
//! holds is escaped the same way (it gets a placeholder of its own that restores to itself), so
//! every placeholder in the rendered text is one this request handed out. A request with more
//! distinct token texts and window characters than the window has placeholders is refused.

use serde_json::Value as Json;
use std::collections::HashMap;
use std::ops::Range;

use super::error::TemplateError;

/// First code point of the placeholder window (Supplementary Private Use Area-A).
pub const PLACEHOLDER_BASE: u32 = 0xF0000;
/// Size of the placeholder window (all of plane 15's private-use characters, U+F0000..=U+FFFFD):
/// at most this many distinct token texts and window characters are protected per request.
pub const PLACEHOLDER_COUNT: u32 = 0xFFFE;

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

    /// Replaces token text and placeholder-window characters in every string (keys included)
    /// of `values`; returns the session needed to restore them, or `None` when the strings
    /// hold neither. Fails only when the request needs more placeholders than the window has.
    pub fn protect(&self, values: &mut [&mut Json]) -> Result<Option<Restorer>, TemplateError> {
        let mut found = false;
        for v in values.iter() {
            visit_strings(v, &mut |s| {
                found = found || s.chars().any(is_placeholder_char) || self.find_any(s);
            });
        }
        if !found {
            return Ok(None);
        }
        let mut restorer = Restorer::default();
        let mut overflow = false;
        for v in values.iter_mut() {
            rewrite_strings(v, &mut |s| self.replace(s, &mut restorer, &mut overflow));
        }
        if overflow {
            return Err(TemplateError::Request(format!(
                "the request text holds more than {PLACEHOLDER_COUNT} distinct control-token \
                 texts and private-use characters (U+F0000..U+FFFFD)"
            )));
        }
        Ok(Some(restorer))
    }

    fn find_any(&self, s: &str) -> bool {
        !self.is_empty() && s.char_indices().any(|(i, _)| self.match_at(s, i).is_some())
    }

    fn replace(&self, s: &str, restorer: &mut Restorer, overflow: &mut bool) -> String {
        let mut out = String::with_capacity(s.len());
        let mut i = 0;
        while i < s.len() {
            if let Some(tok) = self.match_at(s, i) {
                out.push(restorer.placeholder_for(tok, overflow));
                i += tok.len();
                continue;
            }
            let Some(c) = s[i..].chars().next() else {
                break;
            };
            if is_placeholder_char(c) {
                // Escaped: its own placeholder restores it, so it can never stand for a token.
                out.push(restorer.placeholder_for(c.encode_utf8(&mut [0; 4]), overflow));
            } else {
                out.push(c);
            }
            i += c.len_utf8();
        }
        out
    }
}

/// The placeholders handed out for one request.
#[derive(Debug, Clone, Default)]
pub struct Restorer {
    /// What each placeholder stands for, by index in the window.
    tokens: Vec<String>,
    index: HashMap<String, usize>,
}

impl Restorer {
    /// The placeholder of `text`; sets `overflow` (and returns U+FFFD) when the window is full.
    fn placeholder_for(&mut self, text: &str, overflow: &mut bool) -> char {
        let idx = match self.index.get(text) {
            Some(&i) => i,
            None => {
                self.tokens.push(text.to_string());
                self.index.insert(text.to_string(), self.tokens.len() - 1);
                self.tokens.len() - 1
            }
        };
        match u32::try_from(idx) {
            Ok(i) if i < PLACEHOLDER_COUNT => {
                char::from_u32(PLACEHOLDER_BASE + i).unwrap_or(char::REPLACEMENT_CHARACTER)
            }
            _ => {
                *overflow = true;
                char::REPLACEMENT_CHARACTER
            }
        }
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
        let r = p.protect(&mut [&mut v]).unwrap().expect("found");
        let s = v["content"].as_str().unwrap().to_string();
        assert!(!s.contains("<|eot_id|>"));
        let out = r.restore(&format!("<|eot_id|>{s}"));
        assert_eq!(out.text, "<|eot_id|>a<|eot_id|>b [INST]");
        assert_eq!(out.protected, vec![11..21, 23..29]);
        assert!(p
            .protect(&mut [&mut serde_json::json!("plain")])
            .unwrap()
            .is_none());
    }

    #[test]
    fn window_characters_are_escaped_not_trusted() {
        let p = Protector::new(["<|eot_id|>"]);
        // Without any token text, a window character alone still gets its own placeholder.
        let mut v = serde_json::json!(["\u{F0000}x\u{F0001}"]);
        let r = p.protect(&mut [&mut v]).unwrap().expect("escaped");
        let s = v[0].as_str().unwrap().to_string();
        assert_eq!(r.restore(&s).text, "\u{F0000}x\u{F0001}");
        // With token text in the same request, both are protected and restore exactly.
        let mut v = serde_json::json!({"a": "\u{F0000}<|eot_id|>", "b": "<|eot_id|>\u{F0000}"});
        let r = p.protect(&mut [&mut v]).unwrap().expect("found");
        let text = format!("{}|{}", v["a"].as_str().unwrap(), v["b"].as_str().unwrap());
        let out = r.restore(&text);
        assert_eq!(out.text, "\u{F0000}<|eot_id|>|<|eot_id|>\u{F0000}");
        let spans: Vec<&str> = out.protected.iter().map(|r| &out.text[r.clone()]).collect();
        assert_eq!(
            spans,
            ["\u{F0000}", "<|eot_id|>", "<|eot_id|>", "\u{F0000}"]
        );
    }

    #[test]
    fn too_many_distinct_placeholders_is_a_request_error() {
        let p = Protector::new(["<|eot_id|>"]);
        let all: String = (PLACEHOLDER_BASE..PLACEHOLDER_BASE + PLACEHOLDER_COUNT)
            .filter_map(char::from_u32)
            .collect();
        let mut v = serde_json::json!([all, "<|eot_id|>"]);
        let err = p.protect(&mut [&mut v]).unwrap_err();
        assert!(err.is_client_error(), "{err}");
        assert!(err.to_string().contains("private-use"), "{err}");
    }
}
