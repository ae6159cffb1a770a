//! `qwen3_coder`: Qwen3-Coder's XML calls,
//! `<tool_call>\n<function=NAME>\n<parameter=KEY>\nVALUE\n</parameter>\n</function>\n</tool_call>`.
//!
//! Values are raw text: the line breaks the template writes around a value are removed (one
//! on each side), the rest is the value. They are typed by the tool's schema when the call is
//! checked (`validate`: `"5"` for an integer parameter is 5, JSON text for an object or array
//! parameter is decoded); without a schema they stay text, as Qwen's own parser keeps them.
//! A block may hold several functions; a missing `</parameter>` ends the value at the next
//! `<parameter=` or `</function>`, and a block left open at the end of the output is still
//! read. The end marker `<|im_end|>` is dropped.

use serde_json::{Map, Value};

use crate::parsers::scan::{content_until_trigger, marker_at, skip_ws, MarkerAt};
use crate::parsers::{CallGrammar, CallList, CallSyntax, RawCall, ScanCx, Step, ToolFormat};

const OPEN: &str = "<tool_call>";
const CLOSE: &str = "</tool_call>";
const FUNCTION: &str = "<function=";
const END_FUNCTION: &str = "</function>";
const PARAMETER: &str = "<parameter=";
const END_PARAMETER: &str = "</parameter>";

/// The Qwen3-Coder format.
#[derive(Debug, Clone, Copy, Default)]
pub struct Qwen3Coder;

impl ToolFormat for Qwen3Coder {
    fn grammar(&self) -> CallGrammar {
        CallGrammar::new(CallSyntax::Xml)
            .with_marker(OPEN, CallList::new("\n", "", "\n</tool_call>"))
            .repeat_blocks("\n")
    }

    fn end_markers(&self) -> &'static [&'static str] {
        &["<|im_end|>"]
    }

    fn scan(&self, cx: &ScanCx<'_>, pos: usize) -> Step {
        match marker_at(cx, pos, OPEN) {
            MarkerAt::Yes => block(cx, pos),
            MarkerAt::Maybe => Step::NeedMore,
            MarkerAt::No => content_until_trigger(cx, pos, &[OPEN], b""),
        }
    }
}

/// A `<tool_call>` block at `pos`: its functions, or content when it holds none.
fn block(cx: &ScanCx<'_>, pos: usize) -> Step {
    let text = cx.text;
    let body = pos + OPEN.len();
    let (body_end, seg_end) = match text[body..].find(CLOSE) {
        Some(i) => (body + i, body + i + CLOSE.len()),
        None if cx.eof => (text.len(), text.len()),
        None => return Step::NeedMore,
    };
    let inner = &text[body..body_end];
    let mut calls = Vec::new();
    let mut i = skip_ws(inner, 0);
    while i < inner.len() {
        let Some((call, end)) = function(inner, i) else {
            return Step::Content(seg_end - pos);
        };
        calls.push(call);
        i = skip_ws(inner, end);
    }
    if calls.is_empty() {
        return Step::Content(seg_end - pos);
    }
    Step::Calls {
        len: seg_end - pos,
        calls,
    }
}

/// A `<function=NAME>...</function>` at `i` of `inner` (a closed block's body): the call and
/// where it ends. A missing `</function>` runs to the end of the body.
fn function(inner: &str, i: usize) -> Option<(RawCall, usize)> {
    let rest = inner[i..].strip_prefix(FUNCTION)?;
    let name_len = rest.find('>')?;
    let name = rest[..name_len].trim();
    if name.is_empty() || name.contains(['<', '\n']) {
        return None;
    }
    let start = i + FUNCTION.len() + name_len + 1;
    let (body_end, end) = match inner[start..].find(END_FUNCTION) {
        Some(k) => (start + k, start + k + END_FUNCTION.len()),
        None => (inner.len(), inner.len()),
    };
    let arguments = parameters(&inner[start..body_end])?;
    Some((
        RawCall {
            name: name.to_string(),
            arguments: Value::Object(arguments),
            raw: inner[i..end].to_string(),
        },
        end,
    ))
}

/// The `<parameter=KEY>VALUE</parameter>` list of a function body, values as text.
fn parameters(body: &str) -> Option<Map<String, Value>> {
    let mut out = Map::new();
    let mut i = skip_ws(body, 0);
    while i < body.len() {
        let rest = body[i..].strip_prefix(PARAMETER)?;
        let key_len = rest.find('>')?;
        let key = rest[..key_len].trim();
        if key.is_empty() || key.contains(['<', '\n']) {
            return None;
        }
        let start = i + PARAMETER.len() + key_len + 1;
        let after = &body[start..];
        // The value ends at `</parameter>`, or (drift) at the next parameter or the end;
        // each search stops at the next parameter, so a body is read in linear time.
        let next = after.find(PARAMETER).unwrap_or(after.len());
        let (len, skip) = match after[..next].find(END_PARAMETER) {
            Some(k) => (k, END_PARAMETER.len()),
            None => (next, 0),
        };
        out.insert(key.to_string(), Value::String(value_text(&after[..len])));
        i = skip_ws(body, start + len + skip);
    }
    Some(out)
}

/// A value without the line break the template writes on each side of it.
fn value_text(raw: &str) -> String {
    let v = raw.strip_prefix("\r\n").or_else(|| raw.strip_prefix('\n'));
    let v = v.unwrap_or(raw);
    let v = v
        .strip_suffix("\r\n")
        .or_else(|| v.strip_suffix('\n'))
        .unwrap_or(v);
    v.to_string()
}
