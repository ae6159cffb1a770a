//! `llama3_json`: Llama 3.x JSON calls `{"name": ..., "parameters"|"arguments": {...}}`,
//! with or without a leading `<|python_tag|>`, several separated by `;` or newlines.
//!
//! After `<|python_tag|>` the built-in tool form `brave_search.call(query="...")` is read as a
//! call of `brave_search` (any `NAME.call(...)`), and a plain Python call `f(a=1)` as a call
//! of `f`. A `;` right after a call belongs to it (it is not content). The end markers
//! `<|eot_id|>` and `<|eom_id|>` are dropped.

use crate::parsers::scan::{
    bare_json_at, content_until_trigger, json_calls_after_marker, marker_at, py_call_at, skip_ws,
    AfterMarker, MarkerAt, Read, BARE_BYTES, FENCE,
};
use crate::parsers::{CallGrammar, CallList, CallSyntax, ScanCx, Step, ToolFormat};

/// The `<|python_tag|>` control token.
pub const PYTHON_TAG: &str = "<|python_tag|>";

/// Llama 3's end-of-turn tokens: `<|eom_id|>` after a call that awaits its result, else
/// `<|eot_id|>`.
pub const LLAMA_END: &[&str] = &["<|eot_id|>", "<|eom_id|>"];

/// The Llama 3 JSON format.
#[derive(Debug, Clone, Copy, Default)]
pub struct Llama3Json;

impl ToolFormat for Llama3Json {
    fn grammar(&self) -> CallGrammar {
        CallGrammar::new(CallSyntax::Json("parameters"))
            .with_marker(PYTHON_TAG, CallList::new("", "; ", ""))
            .with_bare(CallList::new("", "; ", ""))
    }

    fn end_markers(&self) -> &'static [&'static str] {
        LLAMA_END
    }

    fn scan(&self, cx: &ScanCx<'_>, pos: usize) -> Step {
        match marker_at(cx, pos, PYTHON_TAG) {
            MarkerAt::Yes => return with_separator(cx, pos, after_tag(cx, pos)),
            MarkerAt::Maybe => return Step::NeedMore,
            MarkerAt::No => {}
        }
        if let Some(step) = bare_json_at(cx, pos, false) {
            return with_separator(cx, pos, step);
        }
        content_until_trigger(cx, pos, &[PYTHON_TAG, FENCE], BARE_BYTES)
    }
}

fn after_tag(cx: &ScanCx<'_>, pos: usize) -> Step {
    let i = match json_calls_after_marker(cx, pos, PYTHON_TAG.len()) {
        AfterMarker::Decided(step) => return step,
        AfterMarker::Other { at } => at,
    };
    let not_call = Step::Content(PYTHON_TAG.len());
    match py_call_at(cx, i) {
        Read::Done(mut call, end) => {
            if let Some(base) = call.name.strip_suffix(".call") {
                call.name = base.to_string();
            }
            Step::Calls {
                len: end - pos,
                calls: vec![call],
            }
        }
        Read::More => Step::NeedMore,
        Read::Bad | Read::Deep(_) => not_call,
    }
}

/// Extends a call segment over a following `;` (waiting while only whitespace follows).
pub fn with_separator(cx: &ScanCx<'_>, pos: usize, step: Step) -> Step {
    let Step::Calls { len, calls } = step else {
        return step;
    };
    let j = skip_ws(cx.text, pos + len);
    match cx.text.as_bytes().get(j) {
        None if !cx.eof => Step::NeedMore,
        Some(b';') => Step::Calls {
            len: j + 1 - pos,
            calls,
        },
        _ => Step::Calls { len, calls },
    }
}
