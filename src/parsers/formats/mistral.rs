//! `mistral`: `[TOOL_CALLS] [{"name": ..., "arguments": {...}}, ...]` (Mistral 7B Instruct v0.3).
//!
//! Also accepted: a single object after the marker, and the newer
//! `[TOOL_CALLS]name[ARGS]{...}` form, with or without a `[CALL_ID]id` before `[ARGS]`
//! (Mistral Small 3.2; the model's id is not used: callm gives every call a fresh one).
//! Call ids for Mistral models are 9 alphanumerics. The end marker `</s>` is dropped.
//! [`scan_mistral`] is shared by the newer Mistral formats (`mistral_args`,
//! `mistral_call_id`), which differ from this one only in the form their grammar writes.

use crate::parsers::scan::{
    content_until_trigger, json_at, json_calls_after_marker, marker_at, skip_ws, AfterMarker,
    MarkerAt, Read,
};
use crate::parsers::{
    pylit, CallGrammar, CallList, CallSyntax, IdStyle, RawCall, ScanCx, Step, ToolFormat,
};

/// The call marker.
pub const MARKER: &str = "[TOOL_CALLS]";
/// Between a call's name (or id) and its arguments.
pub const ARGS: &str = "[ARGS]";
/// Before a call's id (Mistral Small 3.2).
pub const CALL_ID: &str = "[CALL_ID]";
/// Mistral's end of turn.
pub const MISTRAL_END: &[&str] = &["</s>"];

/// The Mistral format.
#[derive(Debug, Clone, Copy, Default)]
pub struct Mistral;

impl ToolFormat for Mistral {
    fn grammar(&self) -> CallGrammar {
        CallGrammar::new(CallSyntax::Json("arguments"))
            .with_marker(MARKER, CallList::new(" [", ", ", "]"))
    }

    fn end_markers(&self) -> &'static [&'static str] {
        MISTRAL_END
    }

    fn id_style(&self) -> IdStyle {
        IdStyle::Mistral9
    }

    fn scan(&self, cx: &ScanCx<'_>, pos: usize) -> Step {
        scan_mistral(cx, pos)
    }
}

/// The scanner of every Mistral format: the list form and the `name[ARGS]` form, with or
/// without `[CALL_ID]`.
pub fn scan_mistral(cx: &ScanCx<'_>, pos: usize) -> Step {
    match marker_at(cx, pos, MARKER) {
        MarkerAt::Yes => after_marker(cx, pos),
        MarkerAt::Maybe => Step::NeedMore,
        MarkerAt::No => content_until_trigger(cx, pos, &[MARKER], b""),
    }
}

fn after_marker(cx: &ScanCx<'_>, pos: usize) -> Step {
    let i = match json_calls_after_marker(cx, pos, MARKER.len()) {
        AfterMarker::Decided(step) => return step,
        AfterMarker::Other { at } => at,
    };
    let text = cx.text;
    let not_call = Step::Content(MARKER.len());
    // `name[ARGS]{...}`
    let n = name_len(text, i);
    if n == 0 {
        return not_call;
    }
    let mut a = i + n;
    if a == text.len() {
        return if cx.eof { not_call } else { Step::NeedMore };
    }
    match marker_at(cx, a, CALL_ID) {
        MarkerAt::Yes => {
            // `[CALL_ID]` and the model's id (alphanumerics), skipped.
            let id = a + CALL_ID.len();
            let id_len = text[id..]
                .bytes()
                .take_while(u8::is_ascii_alphanumeric)
                .count();
            a = id + id_len;
            if a == text.len() {
                return if cx.eof { not_call } else { Step::NeedMore };
            }
        }
        MarkerAt::Maybe => return Step::NeedMore,
        MarkerAt::No => {}
    }
    match marker_at(cx, a, ARGS) {
        MarkerAt::Yes => {}
        MarkerAt::Maybe => return Step::NeedMore,
        MarkerAt::No => return not_call,
    }
    let j = skip_ws(text, a + ARGS.len());
    if j == text.len() {
        return if cx.eof { not_call } else { Step::NeedMore };
    }
    match json_at(cx, j) {
        Read::Done(arguments, end) => {
            let raw = text[i..end].to_string();
            Step::Calls {
                len: end - pos,
                calls: vec![RawCall {
                    name: text[i..i + n].to_string(),
                    arguments,
                    raw,
                }],
            }
        }
        Read::More => Step::NeedMore,
        Read::Bad | Read::Deep(_) => not_call,
    }
}

/// Length of a function name (identifier characters, `.` and `-`) at `i`.
fn name_len(text: &str, i: usize) -> usize {
    if pylit::ident_len(text, i) == 0 {
        return 0;
    }
    text[i..]
        .bytes()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'))
        .count()
}
