//! `pythonic`: a Python list of calls `[f(a=1), g(b='x')]` (Llama 3.2 / 3.3), also after
//! `<|python_tag|>`, where a bare call `f(a=1)` (several separated by `;`) is accepted too.
//!
//! Arguments are Python literals read by [`crate::parsers::pylit`]; positional arguments are named
//! after the declared tool's parameters.
//! Llama's end markers `<|eot_id|>` and `<|eom_id|>` are dropped.

use super::llama3_json::{with_separator, LLAMA_END, PYTHON_TAG};
use crate::parsers::scan::{content_until_trigger, marker_at, py_call_at, skip_ws, MarkerAt, Read};
use crate::parsers::{pylit, CallGrammar, CallList, CallSyntax, RawCall, ScanCx, Step, ToolFormat};

/// The pythonic-list format.
#[derive(Debug, Clone, Copy, Default)]
pub struct Pythonic;

impl ToolFormat for Pythonic {
    fn grammar(&self) -> CallGrammar {
        CallGrammar::new(CallSyntax::Python)
            .with_marker(PYTHON_TAG, CallList::new("[", ", ", "]"))
            .with_bare(CallList::new("[", ", ", "]"))
    }

    fn end_markers(&self) -> &'static [&'static str] {
        LLAMA_END
    }

    fn scan(&self, cx: &ScanCx<'_>, pos: usize) -> Step {
        match marker_at(cx, pos, PYTHON_TAG) {
            MarkerAt::Yes => return after_tag(cx, pos),
            MarkerAt::Maybe => return Step::NeedMore,
            MarkerAt::No => {}
        }
        if cx.text.as_bytes()[pos] == b'[' {
            if let Some(step) = call_list(cx, pos) {
                return step;
            }
        }
        content_until_trigger(cx, pos, &[PYTHON_TAG], b"[")
    }
}

fn after_tag(cx: &ScanCx<'_>, pos: usize) -> Step {
    let text = cx.text;
    let i = skip_ws(text, pos + PYTHON_TAG.len());
    if i == text.len() {
        return if cx.eof {
            Step::Content(text.len() - pos)
        } else {
            Step::NeedMore
        };
    }
    if text.as_bytes()[i] == b'[' {
        return match call_list(cx, i) {
            Some(Step::Calls { len, calls }) => Step::Calls {
                len: len + i - pos,
                calls,
            },
            Some(Step::NeedMore) => Step::NeedMore,
            _ => Step::Content(PYTHON_TAG.len()),
        };
    }
    match py_call_at(cx, i) {
        Read::Done(call, end) => with_separator(
            cx,
            pos,
            Step::Calls {
                len: end - pos,
                calls: vec![call],
            },
        ),
        Read::More => Step::NeedMore,
        Read::Bad | Read::Deep(_) => Step::Content(PYTHON_TAG.len()),
    }
}

/// `[call, call, ...]` at `pos` (the cursor on `[`); `None` when it is not a call list.
pub fn call_list(cx: &ScanCx<'_>, pos: usize) -> Option<Step> {
    let text = cx.text;
    let b = text.as_bytes();
    let mut i = skip_ws(text, pos + 1);
    // A quick look: the list must start with a name.
    match b.get(i) {
        None => return (!cx.eof).then_some(Step::NeedMore),
        Some(_) if pylit::ident_len(text, i) == 0 => return None,
        Some(_) => {}
    }
    let mut calls: Vec<RawCall> = Vec::new();
    loop {
        match py_call_at(cx, i) {
            Read::Done(call, end) => {
                calls.push(call);
                i = skip_ws(text, end);
            }
            Read::More => return Some(Step::NeedMore),
            Read::Bad => return None,
            Read::Deep(t) => return Some(Step::Content(t.max(pos + 1) - pos)),
        }
        match b.get(i) {
            Some(b',') => i = skip_ws(text, i + 1),
            Some(b']') => {
                return Some(Step::Calls {
                    len: i + 1 - pos,
                    calls,
                })
            }
            Some(_) => return None,
            // An unclosed list at the end of the output still holds its calls (drift).
            None if cx.eof => {
                return Some(Step::Calls {
                    len: i - pos,
                    calls,
                })
            }
            None => return Some(Step::NeedMore),
        }
        if b.get(i) == Some(&b']') {
            return Some(Step::Calls {
                len: i + 1 - pos,
                calls,
            });
        }
        if i == b.len() {
            return Some(if cx.eof {
                Step::Calls {
                    len: i - pos,
                    calls,
                }
            } else {
                Step::NeedMore
            });
        }
    }
}
