//! `hermes`: `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` blocks (Qwen2.5,
//! Hermes 2 Pro / 3), text around them kept as content.
//!
//! A block may hold several JSON call objects (or an array); a block left open at the end
//! of the output is still read (drift). With the request's tools known, bare JSON calls
//! (no tags, possibly in a ```` ```json ```` fence) naming a declared tool are calls too.
//! The end marker `<|im_end|>` is dropped.

use crate::parsers::scan::{
    bare_json_at, calls_in_value, content_until_trigger, json_at, marker_at, skip_ws, MarkerAt,
    Read, BARE_BYTES, FENCE,
};
use crate::parsers::{CallGrammar, CallList, CallSyntax, RawCall, ScanCx, Step, ToolFormat};

const OPEN: &str = "<tool_call>";
const CLOSE: &str = "</tool_call>";

/// The Hermes / Qwen2.5 format.
#[derive(Debug, Clone, Copy, Default)]
pub struct Hermes;

impl ToolFormat for Hermes {
    fn grammar(&self) -> CallGrammar {
        CallGrammar::new(CallSyntax::Json("arguments"))
            .with_marker(OPEN, CallList::new("\n", "", "\n</tool_call>"))
            .repeat_blocks("\n")
    }

    fn end_markers(&self) -> &'static [&'static str] {
        &["<|im_end|>"]
    }

    fn scan(&self, cx: &ScanCx<'_>, pos: usize) -> Step {
        match marker_at(cx, pos, OPEN) {
            MarkerAt::Yes => return block(cx, pos),
            MarkerAt::Maybe => return Step::NeedMore,
            MarkerAt::No => {}
        }
        if cx.tools.is_some() {
            if let Some(step) = bare_json_at(cx, pos, true) {
                return step;
            }
            return content_until_trigger(cx, pos, &[OPEN, FENCE], BARE_BYTES);
        }
        content_until_trigger(cx, pos, &[OPEN], b"")
    }
}

/// A `<tool_call>` block at `pos`.
fn block(cx: &ScanCx<'_>, pos: usize) -> Step {
    let text = cx.text;
    let body = pos + OPEN.len();
    let (body_end, seg_end) = match text[body..].find(CLOSE) {
        Some(i) => (body + i, body + i + CLOSE.len()),
        None if cx.eof => (text.len(), text.len()),
        // The close tag may still come; a partial one at the end is fine to wait on too.
        None => return Step::NeedMore,
    };
    let sub = ScanCx {
        text: &text[..body_end],
        eof: true,
        tools: cx.tools,
    };
    let mut calls: Vec<RawCall> = Vec::new();
    let mut i = skip_ws(sub.text, body);
    while i < body_end {
        let Read::Done(v, end) = json_at(&sub, i) else {
            return Step::Content(seg_end - pos);
        };
        let Some(cs) = calls_in_value(&v, false, &text[i..end]) else {
            return Step::Content(seg_end - pos);
        };
        calls.extend(cs);
        let j = skip_ws(sub.text, end);
        i = match sub.text.as_bytes().get(j) {
            Some(b',' | b';') => skip_ws(sub.text, j + 1),
            _ => j,
        };
    }
    if calls.is_empty() {
        return Step::Content(seg_end - pos);
    }
    Step::Calls {
        len: seg_end - pos,
        calls,
    }
}
