//! `functionary_v3_1`: `<function=NAME>{"arg": ...}</function>` (Functionary v3.1, on Llama
//! 3.1), several in a row, text around them kept as content.
//!
//! The arguments are one JSON object; a call whose `</function>` never comes is still read
//! at the end of the output (drift). The end markers `<|eot_id|>` and `<|eom_id|>` are
//! dropped.

use super::llama3_json::LLAMA_END;
use crate::parsers::scan::{content_until_trigger, json_at, marker_at, skip_ws, MarkerAt, Read};
use crate::parsers::{CallGrammar, CallList, CallSyntax, RawCall, ScanCx, Step, ToolFormat};

const OPEN: &str = "<function=";
const CLOSE: &str = "</function>";

/// The Functionary v3.1 format.
#[derive(Debug, Clone, Copy, Default)]
pub struct FunctionaryV31;

impl ToolFormat for FunctionaryV31 {
    fn grammar(&self) -> CallGrammar {
        CallGrammar::new(CallSyntax::NamedJson {
            id: None,
            sep: ">",
            tail: CLOSE,
        })
        .with_marker(OPEN, CallList::new("", "", ""))
        .repeat_blocks("")
    }

    fn end_markers(&self) -> &'static [&'static str] {
        LLAMA_END
    }

    fn scan(&self, cx: &ScanCx<'_>, pos: usize) -> Step {
        match marker_at(cx, pos, OPEN) {
            MarkerAt::Yes => call(cx, pos),
            MarkerAt::Maybe => Step::NeedMore,
            MarkerAt::No => content_until_trigger(cx, pos, &[OPEN], b""),
        }
    }
}

/// A `<function=NAME>{...}</function>` at `pos`.
fn call(cx: &ScanCx<'_>, pos: usize) -> Step {
    let text = cx.text;
    let not_call = Step::Content(OPEN.len());
    let start = pos + OPEN.len();
    let name_len = text[start..]
        .bytes()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'))
        .count();
    let gt = start + name_len;
    match text.as_bytes().get(gt) {
        None if !cx.eof => return Step::NeedMore,
        Some(b'>') if name_len > 0 => {}
        _ => return not_call,
    }
    let j = skip_ws(text, gt + 1);
    if j == text.len() && !cx.eof {
        return Step::NeedMore;
    }
    let (arguments, end) = match json_at(cx, j) {
        Read::Done(v, end) => (v, end),
        Read::More => return Step::NeedMore,
        Read::Bad | Read::Deep(_) => return not_call,
    };
    let k = skip_ws(text, end);
    let seg_end = match marker_at(cx, k, CLOSE) {
        MarkerAt::Yes => k + CLOSE.len(),
        MarkerAt::Maybe => return Step::NeedMore,
        MarkerAt::No => end,
    };
    Step::Calls {
        len: seg_end - pos,
        calls: vec![RawCall {
            name: text[start..gt].to_string(),
            arguments,
            raw: text[pos..seg_end].to_string(),
        }],
    }
}
