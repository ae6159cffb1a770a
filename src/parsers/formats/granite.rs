//! `granite`: `<|tool_call|>[{"name": ..., "arguments": {...}}, ...]` (Granite 3.x Instruct,
//! whose default system prompt asks for "<|tool_call|> followed by a JSON list of tools used").
//!
//! After the marker: a JSON list of call objects, one object, or several objects separated by
//! commas; an optional closing `<|/tool_call|>` is part of the segment ([`calls_after_tag`],
//! shared with `phi4_mini`, which writes that close). The end marker `<|end_of_text|>` is
//! dropped.

use crate::parsers::scan::{
    calls_in_value, content_until_trigger, json_at, marker_at, skip_ws, MarkerAt, Read,
};
use crate::parsers::{CallGrammar, CallList, CallSyntax, RawCall, ScanCx, Step, ToolFormat};

/// The call marker (a control token of Granite's and Phi-4-mini's tokenizers).
pub const TOOL_CALL: &str = "<|tool_call|>";
/// The closing marker Phi-4-mini writes after its calls.
pub const END_TOOL_CALL: &str = "<|/tool_call|>";

/// The Granite 3.x format.
#[derive(Debug, Clone, Copy, Default)]
pub struct Granite;

impl ToolFormat for Granite {
    fn grammar(&self) -> CallGrammar {
        CallGrammar::new(CallSyntax::Json("arguments"))
            .with_marker(TOOL_CALL, CallList::new("[", ", ", "]"))
    }

    fn end_markers(&self) -> &'static [&'static str] {
        &["<|end_of_text|>"]
    }

    fn scan(&self, cx: &ScanCx<'_>, pos: usize) -> Step {
        match marker_at(cx, pos, TOOL_CALL) {
            MarkerAt::Yes => calls_after_tag(cx, pos),
            MarkerAt::Maybe => Step::NeedMore,
            MarkerAt::No => content_until_trigger(cx, pos, &[TOOL_CALL], b""),
        }
    }
}

/// The calls after a `<|tool_call|>` at `pos`: a JSON list, or objects separated by commas,
/// then an optional `<|/tool_call|>`. The marker alone is content when no call follows.
pub fn calls_after_tag(cx: &ScanCx<'_>, pos: usize) -> Step {
    let text = cx.text;
    let not_call = Step::Content(TOOL_CALL.len());
    let mut calls: Vec<RawCall> = Vec::new();
    let mut i = skip_ws(text, pos + TOOL_CALL.len());
    loop {
        if i >= text.len() {
            if !cx.eof {
                return Step::NeedMore;
            }
            break;
        }
        if !matches!(text.as_bytes()[i], b'{' | b'[') {
            break;
        }
        let (v, end) = match json_at(cx, i) {
            Read::Done(v, end) => (v, end),
            Read::More => return Step::NeedMore,
            Read::Bad | Read::Deep(_) => return not_call,
        };
        match calls_in_value(&v, false, &text[i..end]) {
            Some(cs) => calls.extend(cs),
            None => return not_call,
        }
        let j = skip_ws(text, end);
        match text.as_bytes().get(j) {
            Some(b',') => i = skip_ws(text, j + 1),
            None if !cx.eof => return Step::NeedMore,
            _ => {
                i = end;
                break;
            }
        }
    }
    if calls.is_empty() {
        return not_call;
    }
    let j = skip_ws(text, i);
    let end = match marker_at(cx, j, END_TOOL_CALL) {
        MarkerAt::Yes => j + END_TOOL_CALL.len(),
        MarkerAt::Maybe => return Step::NeedMore,
        MarkerAt::No => i,
    };
    Step::Calls {
        len: end - pos,
        calls,
    }
}
