//! `functionary_v3_2`: Functionary v3.2's recipients, `>>>RECIPIENT\nCONTENT`.
//!
//! The prompt ends with `>>>`, so the answer starts with a recipient: `all` (text for the
//! user, up to the next `>>>`) or a function name followed by its JSON arguments. Further
//! segments each start with `>>>`: `all\nLet me check.>>>get_weather\n{"city": "Paris"}`.
//! The `all` recipient lines are dropped; a recipient line that is neither `all` nor a name
//! followed by JSON stays content. The end marker `<|eot_id|>` is dropped.

use crate::parsers::scan::{content_until_trigger, json_at, marker_at, skip_ws, MarkerAt, Read};
use crate::parsers::{CallGrammar, CallList, CallSyntax, RawCall, ScanCx, Step, ToolFormat};

/// Opens every segment after the first.
const MARKER: &str = ">>>";
/// The recipient of text for the user.
const ALL: &str = "all";
/// Longest recipient looked for (function names are at most 64 characters).
const MAX_RECIPIENT: usize = 64;

/// The Functionary v3.2 format.
#[derive(Debug, Clone, Copy, Default)]
pub struct FunctionaryV32;

impl ToolFormat for FunctionaryV32 {
    fn grammar(&self) -> CallGrammar {
        CallGrammar::new(CallSyntax::NamedJson {
            id: None,
            sep: "\n",
            tail: "",
        })
        .with_marker(MARKER, CallList::new("", "", ""))
        .repeat_blocks("")
        .with_bare(CallList::new("", MARKER, ""))
    }

    fn end_markers(&self) -> &'static [&'static str] {
        &["<|eot_id|>"]
    }

    fn scan(&self, cx: &ScanCx<'_>, pos: usize) -> Step {
        if pos == 0 {
            if let Some(step) = segment(cx, 0, 0) {
                return step;
            }
        }
        match marker_at(cx, pos, MARKER) {
            MarkerAt::Yes => segment(cx, pos, MARKER.len()).unwrap_or(Step::Content(MARKER.len())),
            MarkerAt::Maybe => Step::NeedMore,
            MarkerAt::No => content_until_trigger(cx, pos, &[MARKER], b""),
        }
    }
}

/// The segment at `pos` whose recipient starts `skip` bytes later: the dropped `all` line, a
/// call, "wait", or `None` when the text there is no recipient line.
fn segment(cx: &ScanCx<'_>, pos: usize, skip: usize) -> Option<Step> {
    let text = cx.text;
    let r = pos + skip;
    let name_len = text[r..]
        .bytes()
        .take(MAX_RECIPIENT + 1)
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'))
        .count();
    if name_len > MAX_RECIPIENT {
        return None;
    }
    let nl = r + name_len;
    match text.as_bytes().get(nl) {
        None if !cx.eof => return Some(Step::NeedMore),
        Some(b'\n') if name_len > 0 => {}
        _ => return None,
    }
    let name = &text[r..nl];
    if name == ALL {
        return Some(Step::Calls {
            len: nl + 1 - pos,
            calls: vec![],
        });
    }
    let j = skip_ws(text, nl + 1);
    if j == text.len() {
        return (!cx.eof).then_some(Step::NeedMore);
    }
    match json_at(cx, j) {
        Read::Done(arguments, end) => Some(Step::Calls {
            len: end - pos,
            calls: vec![RawCall {
                name: name.to_string(),
                arguments,
                raw: text[pos..end].to_string(),
            }],
        }),
        Read::More => Some(Step::NeedMore),
        Read::Bad | Read::Deep(_) => None,
    }
}
