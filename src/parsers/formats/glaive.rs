//! `glaive`: `<functioncall> {"name": ..., "arguments": '{...}'}` (glaive-function-calling-v1).
//!
//! The arguments may be a single-quoted string holding JSON (which is not JSON as a whole
//! and may contain unescaped `'` inside the inner JSON strings), a JSON string, or an object.
//! The `ASSISTANT:` label the model writes itself at the start and `<|endoftext|>` are dropped.

use serde_json::{Map, Value};

use crate::parsers::scan::{content_until_trigger, json_at, marker_at, skip_ws, MarkerAt, Read};
use crate::parsers::{CallGrammar, CallList, CallSyntax, RawCall, ScanCx, Step, ToolFormat};

const MARKER: &str = "<functioncall>";

/// The Glaive format.
#[derive(Debug, Clone, Copy, Default)]
pub struct Glaive;

impl ToolFormat for Glaive {
    fn grammar(&self) -> CallGrammar {
        CallGrammar::new(CallSyntax::Json("arguments"))
            .with_marker(MARKER, CallList::new(" ", "", ""))
            .single_call()
    }

    fn end_markers(&self) -> &'static [&'static str] {
        &["<|endoftext|>"]
    }

    fn leading_labels(&self) -> &'static [&'static str] {
        &["ASSISTANT:"]
    }

    fn scan(&self, cx: &ScanCx<'_>, pos: usize) -> Step {
        match marker_at(cx, pos, MARKER) {
            MarkerAt::Yes => after_marker(cx, pos),
            MarkerAt::Maybe => Step::NeedMore,
            MarkerAt::No => content_until_trigger(cx, pos, &[MARKER], b""),
        }
    }
}

fn after_marker(cx: &ScanCx<'_>, pos: usize) -> Step {
    let text = cx.text;
    let i = skip_ws(text, pos + MARKER.len());
    if i == text.len() {
        return if cx.eof {
            Step::Content(text.len() - pos)
        } else {
            Step::NeedMore
        };
    }
    match object(cx, i) {
        Read::Done(m, end) => {
            let raw = &text[i..end];
            let v = Value::Object(m);
            match crate::parsers::scan::call_from_value(&v, false) {
                Some((name, arguments)) => {
                    let calls = vec![RawCall {
                        name,
                        arguments,
                        raw: raw.to_string(),
                    }];
                    Step::Calls {
                        len: end - pos,
                        calls,
                    }
                }
                None => Step::Content(MARKER.len()),
            }
        }
        Read::More => Step::NeedMore,
        Read::Bad | Read::Deep(_) => Step::Content(MARKER.len()),
    }
}

/// Reads `{key: value, ...}` where a value `'...'` holding JSON is read as that JSON.
fn object(cx: &ScanCx<'_>, pos: usize) -> Read<Map<String, Value>> {
    let text = cx.text;
    let b = text.as_bytes();
    if b.get(pos) != Some(&b'{') {
        return Read::Bad;
    }
    let more = || if cx.eof { Read::Bad } else { Read::More };
    let mut m = Map::new();
    let mut i = skip_ws(text, pos + 1);
    loop {
        let Some(&c) = b.get(i) else { return more() };
        if c == b'}' {
            return Read::Done(m, i + 1);
        }
        let (key, end) = match json_at(cx, i) {
            Read::Done(Value::String(k), end) => (k, end),
            Read::Done(..) | Read::Bad | Read::Deep(_) => return Read::Bad,
            Read::More => return Read::More,
        };
        i = skip_ws(text, end);
        match b.get(i) {
            Some(b':') => i = skip_ws(text, i + 1),
            Some(_) => return Read::Bad,
            None => return more(),
        }
        let (value, end) = match quoted_json(cx, i) {
            Read::Done(v, end) => (v, end),
            Read::More => return Read::More,
            Read::Bad | Read::Deep(_) => match json_at(cx, i) {
                Read::Done(v, end) => (v, end),
                Read::More => return Read::More,
                Read::Bad | Read::Deep(_) => return Read::Bad,
            },
        };
        m.insert(key, value);
        i = skip_ws(text, end);
        match b.get(i) {
            Some(b',') => i = skip_ws(text, i + 1),
            Some(b'}') => {}
            Some(_) => return Read::Bad,
            None => return more(),
        }
    }
}

/// `'{...}'` or `'[...]'`: JSON inside single quotes, read as the JSON value.
fn quoted_json(cx: &ScanCx<'_>, pos: usize) -> Read<Value> {
    let text = cx.text;
    let b = text.as_bytes();
    if b.get(pos) != Some(&b'\'') {
        return Read::Bad;
    }
    let i = skip_ws(text, pos + 1);
    match b.get(i) {
        Some(b'{' | b'[') => {}
        Some(_) => return Read::Bad,
        None => return if cx.eof { Read::Bad } else { Read::More },
    }
    let (v, end) = match json_at(cx, i) {
        Read::Done(v, end) => (v, end),
        other => return other,
    };
    let j = skip_ws(text, end);
    match b.get(j) {
        Some(b'\'') => Read::Done(v, j + 1),
        Some(_) => Read::Bad,
        None => {
            if cx.eof {
                Read::Bad
            } else {
                Read::More
            }
        }
    }
}
