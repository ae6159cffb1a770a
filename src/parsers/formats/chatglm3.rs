//! `chatglm3`: the first line is the tool name, then a code block
//! "```python\ntool_call(symbol='10111', unit=\"celsius\")\n```" (ChatGLM3-6B).
//!
//! Plain answers have an empty first line (then everything is content). A tool block is
//! looked for at the start of the output and right after an `<|assistant|>` role token
//! (which is dropped). A missing closing fence at the end of the output is accepted.

use serde_json::Value;

use crate::parsers::pylit;
use crate::parsers::scan::{content_until_trigger, marker_at, skip_blank, skip_ws, MarkerAt, Read};
use crate::parsers::{CallGrammar, CallList, CallSyntax, RawCall, ScanCx, Step, ToolFormat};

const ASSISTANT: &str = "<|assistant|>";
const FENCE: &str = "```";

/// The ChatGLM3 format.
#[derive(Debug, Clone, Copy, Default)]
pub struct ChatGlm3;

impl ToolFormat for ChatGlm3 {
    fn grammar(&self) -> CallGrammar {
        CallGrammar::new(CallSyntax::GlmFence)
            .with_bare(CallList::new("", "", ""))
            .single_call()
    }

    fn scan(&self, cx: &ScanCx<'_>, pos: usize) -> Step {
        match marker_at(cx, pos, ASSISTANT) {
            MarkerAt::Yes => {
                return Step::Calls {
                    len: ASSISTANT.len(),
                    calls: vec![],
                }
            }
            MarkerAt::Maybe => return Step::NeedMore,
            MarkerAt::No => {}
        }
        if pos == 0 || cx.text[..pos].ends_with(ASSISTANT) {
            match tool_block(cx, pos) {
                Read::Done(call, end) => {
                    return Step::Calls {
                        len: end - pos,
                        calls: vec![call],
                    }
                }
                Read::More => return Step::NeedMore,
                Read::Bad | Read::Deep(_) => {}
            }
        }
        content_until_trigger(cx, pos, &[ASSISTANT], b"")
    }
}

fn is_name_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.')
}

fn tool_block(cx: &ScanCx<'_>, pos: usize) -> Read<RawCall> {
    let text = cx.text;
    let b = text.as_bytes();
    let more = if cx.eof { Read::Bad } else { Read::More };
    // First line: the tool name.
    let start = skip_blank(text, pos);
    let name_end = start
        + text[start..]
            .bytes()
            .take_while(|&c| is_name_char(c))
            .count();
    let line_end = skip_blank(text, name_end);
    match b.get(line_end) {
        None => return more,
        Some(b'\n' | b'\r') if name_end > start => {}
        Some(_) => return Read::Bad,
    }
    let name = text[start..name_end].to_string();
    // The code block.
    let f = skip_ws(text, line_end);
    match marker_at(cx, f, FENCE) {
        MarkerAt::Yes => {}
        MarkerAt::Maybe => return Read::More,
        MarkerAt::No => return if f == text.len() { more } else { Read::Bad },
    }
    let lang = pylit::ident_len(text, f + 3);
    let c = skip_ws(text, f + 3 + lang);
    if c == text.len() {
        return more;
    }
    let (call, end) = match crate::parsers::scan::read(cx, pylit::parse_call_at(text, c, cx.eof)) {
        Read::Done(call, end) => (call, end),
        Read::More => return Read::More,
        Read::Bad | Read::Deep(_) => return Read::Bad,
    };
    let mut seg_end = end;
    let g = skip_ws(text, end);
    match marker_at(cx, g, FENCE) {
        MarkerAt::Yes => seg_end = g + 3,
        MarkerAt::Maybe => return Read::More,
        MarkerAt::No if g == text.len() => {
            if !cx.eof {
                return Read::More;
            }
        }
        MarkerAt::No => {}
    }
    let named = pylit::PyCall {
        name: name.clone(),
        args: call.args,
        kwargs: call.kwargs,
    };
    let arguments = Value::Object(pylit::call_arguments(&named, cx.tools));
    Read::Done(
        RawCall {
            name,
            arguments,
            raw: text[pos..seg_end].to_string(),
        },
        seg_end,
    )
}
