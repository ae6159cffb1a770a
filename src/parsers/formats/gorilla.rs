//! `gorilla`: Python call syntax (Gorilla OpenFunctions v2),
//! `get_current_weather(location='Boston, MA', unit='fahrenheit')`; several calls come
//! separated by `<<function>>` or as a list `[f(a=1), g(b='x')]`.
//!
//! A call is a (dotted) name directly followed by `(` at a word boundary, whose arguments
//! are all Python literals; anything else is content. The end marker `<|EOT|>` is dropped.

use super::pythonic::call_list;
use crate::parsers::scan::{marker_at, py_call_at, skip_ws, MarkerAt, Read};
use crate::parsers::{CallGrammar, CallList, CallSyntax, ScanCx, Step, ToolFormat};

const MARKER: &str = "<<function>>";

/// The Gorilla format.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gorilla;

impl ToolFormat for Gorilla {
    fn grammar(&self) -> CallGrammar {
        CallGrammar::new(CallSyntax::Python).with_bare(CallList::new("", MARKER, ""))
    }

    fn end_markers(&self) -> &'static [&'static str] {
        &["<|EOT|>"]
    }

    fn scan(&self, cx: &ScanCx<'_>, pos: usize) -> Step {
        let b = cx.text.as_bytes();
        match marker_at(cx, pos, MARKER) {
            MarkerAt::Yes => {
                let i = skip_ws(cx.text, pos + MARKER.len());
                if i == b.len() {
                    return if cx.eof {
                        Step::Calls {
                            len: i - pos,
                            calls: vec![],
                        }
                    } else {
                        Step::NeedMore
                    };
                }
                return match candidate(cx, i) {
                    Some(Step::Calls { len, calls }) => Step::Calls {
                        len: len + i - pos,
                        calls,
                    },
                    Some(Step::NeedMore) => Step::NeedMore,
                    _ => Step::Content(MARKER.len()),
                };
            }
            MarkerAt::Maybe => return Step::NeedMore,
            MarkerAt::No => {}
        }
        if b[pos] == b'[' || starts_word(cx.text, pos) {
            if let Some(step) = candidate(cx, pos) {
                return step;
            }
        }
        let next = (pos + 1..b.len())
            .find(|&i| {
                b[i] == b'['
                    || (b[i] == b'<' && marker_at(cx, i, MARKER) != MarkerAt::No)
                    || starts_word(cx.text, i)
            })
            .unwrap_or(b.len());
        Step::Content(next - pos)
    }
}

/// Whether an identifier starts at `i` (not in the middle of a word or dotted name).
fn starts_word(text: &str, i: usize) -> bool {
    let b = text.as_bytes();
    (b[i].is_ascii_alphabetic() || b[i] == b'_')
        && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_' || b[i - 1] == b'.'))
}

/// A call or a list of calls at `i`; `None` when there is none.
fn candidate(cx: &ScanCx<'_>, i: usize) -> Option<Step> {
    let b = cx.text.as_bytes();
    if b[i] == b'[' {
        return call_list(cx, i);
    }
    if !starts_word(cx.text, i) {
        return None;
    }
    let end = i + cx.text[i..]
        .bytes()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.'))
        .count();
    match b.get(end) {
        Some(b'(') => {}
        Some(_) => return None,
        None => return (!cx.eof).then_some(Step::NeedMore),
    }
    match py_call_at(cx, i) {
        Read::Done(call, end) => Some(Step::Calls {
            len: end - i,
            calls: vec![call],
        }),
        Read::More => Some(Step::NeedMore),
        Read::Bad => None,
        Read::Deep(t) => Some(Step::Content(t.max(i + 1) - i)),
    }
}
