//! `phi4_mini`: `<|tool_call|>[{"name": ..., "arguments": {...}}]<|/tool_call|>` (Phi-4-mini
//! instruct: the format the Berkeley Function-Calling Leaderboard's Phi handler reads, with
//! the drift it documents: the closing tag left out, several objects without the list).
//!
//! Read by the scanner shared with `granite` ([`calls_after_tag`]); the grammar writes the
//! list and the closing tag, both tags as the control tokens they are in Phi-4-mini's
//! tokenizer. The end marker `<|end|>` is dropped.

use super::granite::{calls_after_tag, END_TOOL_CALL, TOOL_CALL};
use crate::parsers::scan::{content_until_trigger, marker_at, MarkerAt};
use crate::parsers::{CallGrammar, CallList, CallSyntax, ScanCx, Step, ToolFormat};

/// The Phi-4-mini format.
#[derive(Debug, Clone, Copy, Default)]
pub struct Phi4Mini;

impl ToolFormat for Phi4Mini {
    fn grammar(&self) -> CallGrammar {
        CallGrammar::new(CallSyntax::Json("arguments"))
            .with_marker(TOOL_CALL, CallList::new("[", ", ", "]<|/tool_call|>"))
            .with_controls(&[END_TOOL_CALL])
    }

    fn end_markers(&self) -> &'static [&'static str] {
        &["<|end|>"]
    }

    fn scan(&self, cx: &ScanCx<'_>, pos: usize) -> Step {
        match marker_at(cx, pos, TOOL_CALL) {
            MarkerAt::Yes => calls_after_tag(cx, pos),
            MarkerAt::Maybe => Step::NeedMore,
            MarkerAt::No => content_until_trigger(cx, pos, &[TOOL_CALL], b""),
        }
    }
}
