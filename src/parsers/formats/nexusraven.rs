//! `nexusraven`: `Call: f(a=1); g(b=h(c='x'))<bot_end>` (NexusRaven-V2), then an optional
//! `Thought: ...` which is dropped (as is any `<bot_end>` token, an end marker of the format).
//!
//! Calls are separated by `;`. An argument that is itself a call is kept, without loss, as
//! `{"__call__": "h", "arguments": {"c": "x"}}` (positional arguments of the nested call
//! are named after its declared parameters when `h` is a declared tool, else `_0`, `_1`...).
//! A call list at the very start of the output is read even without `Call:`.

use crate::parsers::scan::{marker_at, py_call_at, skip_blank, skip_ws, MarkerAt, Read};
use crate::parsers::{CallGrammar, CallList, CallSyntax, RawCall, ScanCx, Step, ToolFormat};

const CALL: &str = "Call:";
const BOT_END: &str = "<bot_end>";
const THOUGHT: &str = "Thought:";

/// The NexusRaven format.
#[derive(Debug, Clone, Copy, Default)]
pub struct NexusRaven;

impl ToolFormat for NexusRaven {
    fn grammar(&self) -> CallGrammar {
        CallGrammar::new(CallSyntax::Python).with_marker(CALL, CallList::new(" ", "; ", ""))
    }

    fn end_markers(&self) -> &'static [&'static str] {
        &[BOT_END]
    }

    fn scan(&self, cx: &ScanCx<'_>, pos: usize) -> Step {
        let text = cx.text;
        match marker_at(cx, pos, CALL) {
            MarkerAt::Yes => {
                let start = skip_ws(text, pos + CALL.len());
                return match calls(cx, start) {
                    Some(Step::Calls { len, calls }) => Step::Calls {
                        len: len + start - pos,
                        calls,
                    },
                    Some(step) => step,
                    None => Step::Content(CALL.len()),
                };
            }
            MarkerAt::Maybe => return Step::NeedMore,
            MarkerAt::No => {}
        }
        // The thought after the calls is dropped, to the end of the output.
        match marker_at(cx, pos, THOUGHT) {
            MarkerAt::Yes if cx.eof => {
                return Step::Calls {
                    len: text.len() - pos,
                    calls: vec![],
                }
            }
            MarkerAt::Yes | MarkerAt::Maybe => return Step::NeedMore,
            MarkerAt::No => {}
        }
        // A call list at the start of the output, after any blank: the same decision whatever
        // the chunking, so the start is found by skipping the blank here, not by where the
        // previous chunk ended. The byte test first: it is cheap, the prefix test reads all
        // text before `pos`.
        let blank = text
            .as_bytes()
            .get(pos)
            .is_some_and(u8::is_ascii_whitespace);
        if (blank || pylit_ident(text, pos))
            && text.as_bytes()[..pos].iter().all(u8::is_ascii_whitespace)
        {
            let start = skip_ws(text, pos);
            if start == text.len() && !cx.eof {
                return Step::NeedMore;
            }
            if pylit_ident(text, start) {
                match calls(cx, start) {
                    Some(Step::Calls { len, calls }) => {
                        return Step::Calls {
                            len: len + start - pos,
                            calls,
                        }
                    }
                    Some(step) => return step,
                    None => {}
                }
            }
        }
        crate::parsers::scan::content_until_trigger(cx, pos, &[CALL, THOUGHT], b"")
    }
}

fn pylit_ident(text: &str, pos: usize) -> bool {
    crate::parsers::pylit::ident_len(text, pos) > 0
}

/// `f(...); g(...)` at `i`, up to the first thing that is not `;` and another call.
fn calls(cx: &ScanCx<'_>, start: usize) -> Option<Step> {
    let text = cx.text;
    if start == text.len() {
        return (!cx.eof).then_some(Step::NeedMore);
    }
    let mut out: Vec<RawCall> = Vec::new();
    let mut i = start;
    loop {
        match py_call_at(cx, i) {
            Read::Done(call, end) => {
                out.push(call);
                i = end;
            }
            Read::More => return Some(Step::NeedMore),
            Read::Bad | Read::Deep(_) if out.is_empty() => return None,
            Read::Bad | Read::Deep(_) => {
                return Some(Step::Calls {
                    len: i - start,
                    calls: out,
                })
            }
        }
        let j = skip_blank(text, i);
        match text.as_bytes().get(j) {
            Some(b';') => {}
            Some(_) => {
                return Some(Step::Calls {
                    len: i - start,
                    calls: out,
                })
            }
            None if cx.eof => {
                return Some(Step::Calls {
                    len: i - start,
                    calls: out,
                })
            }
            None => return Some(Step::NeedMore),
        }
        let k = skip_blank(text, j + 1);
        if k == text.len() {
            return Some(if cx.eof {
                Step::Calls {
                    len: k - start,
                    calls: out,
                }
            } else {
                Step::NeedMore
            });
        }
        i = k;
    }
}
