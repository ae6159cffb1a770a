//! Output the token limit cut: what is still undecided at the cut is a call (or its
//! marker) the limit interrupted, so it never becomes content. Complete calls in front of
//! it are kept, also inside one list (`[TOOL_CALLS] [{...}, {...`, `[f(a=1), g(`), by
//! closing the list after the last complete item, in the format's own syntax
//! ([`super::CallList`]), and keeping the result only if the chain reads it back as calls
//! and nothing else.

use super::format::CallSyntax;
use super::validate::{self, Verdict};
use super::{ParserChain, RawCall, ScanCx, Step};
use crate::openai::Tool;

/// Item ends tried, from the last one back (each try scans the undecided text once).
const MAX_TRIES: usize = 32;

/// The complete calls at the start of `rest` (undecided text at the cut), if any: the
/// longest prefix ending after a whole call that, closed as the chain's formats close
/// their lists, reads back as valid calls only.
pub fn salvage(chain: &ParserChain, tools: Option<&[Tool]>, rest: &str) -> Option<Vec<RawCall>> {
    let closes = closes(chain);
    // XML calls hold raw text, where braces end nothing: they end at their closing tag.
    let xml = chain
        .formats()
        .first()
        .is_some_and(|f| matches!(f.def().grammar().call, CallSyntax::Xml));
    let ends = if xml {
        let tail = CallSyntax::Xml.tail();
        rest.match_indices(tail).map(|(i, t)| i + t.len()).collect()
    } else {
        item_ends(rest)
    };
    for end in ends.into_iter().rev().take(MAX_TRIES) {
        for close in &closes {
            let candidate = format!("{}{close}", &rest[..end]);
            if let Some(calls) = calls_only(chain, tools, &candidate) {
                return Some(calls);
            }
        }
    }
    None
}

/// How the chain's formats end a call list: nothing, or a list's closing text.
fn closes(chain: &ParserChain) -> Vec<&'static str> {
    let mut out = vec![""];
    for f in chain.formats() {
        let g = f.def().grammar();
        for close in [Some(g.list.close), g.bare.map(|b| b.close)]
            .into_iter()
            .flatten()
        {
            if !out.contains(&close) {
                out.push(close);
            }
        }
    }
    out
}

/// Byte offsets just after a `}` or `)` (outside string literals) that closes an item at
/// the top level or inside one enclosing list: where a complete call may end.
fn item_ends(text: &str) -> Vec<usize> {
    let mut ends = Vec::new();
    let mut depth = 0usize;
    let mut quote: Option<u8> = None;
    let mut escaped = false;
    for (i, &b) in text.as_bytes().iter().enumerate() {
        if let Some(q) = quote {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                _ if b == q => quote = None,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' | b'\'' => quote = Some(b),
            b'{' | b'(' | b'[' => depth += 1,
            b'}' | b')' | b']' => {
                depth = depth.saturating_sub(1);
                if b != b']' && depth <= 1 {
                    ends.push(i + 1);
                }
            }
            _ => {}
        }
    }
    ends
}

/// The calls of `text` read at the end of output, when it holds valid calls and nothing
/// but whitespace besides.
fn calls_only(chain: &ParserChain, tools: Option<&[Tool]>, text: &str) -> Option<Vec<RawCall>> {
    let cx = ScanCx {
        text,
        eof: true,
        tools,
    };
    let mut until = vec![0; chain.len()];
    let mut pos = 0;
    let mut calls = Vec::new();
    while pos < text.len() {
        match chain.scan(&cx, pos, &mut until) {
            Step::Calls { len, calls: found } if len > 0 => {
                calls.extend(found);
                pos += len;
            }
            Step::Content(n) => {
                let mut end = (pos + n.max(1)).min(text.len());
                while !text.is_char_boundary(end) {
                    end += 1;
                }
                if !text[pos..end].trim().is_empty() {
                    return None;
                }
                pos = end;
            }
            _ => return None,
        }
    }
    let valid = calls
        .iter()
        .all(|c| matches!(validate::check(c.clone(), tools), Verdict::Accepted { .. }));
    (valid && !calls.is_empty()).then_some(calls)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_ends_skip_strings_and_nested_values() {
        let t = r#"[{"a": "})", "b": {"c": [1, 2]}}, {"d": 1}, {"e": "#;
        let ends = item_ends(t);
        let ends: Vec<&str> = ends.iter().map(|&e| &t[..e]).collect();
        assert_eq!(
            ends,
            vec![
                r#"[{"a": "})", "b": {"c": [1, 2]}}"#,
                r#"[{"a": "})", "b": {"c": [1, 2]}}, {"d": 1}"#
            ]
        );
        // Without a list, inner calls end at depth 1 too: candidates, refused when read back.
        let t = "f(a='x)', b=g(1)); h(";
        let last = item_ends(t).last().map(|&e| &t[..e]);
        assert_eq!(last, Some("f(a='x)', b=g(1))"));
    }
}
