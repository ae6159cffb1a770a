//! `mistral_call_id`: `[TOOL_CALLS]NAME[CALL_ID]ID[ARGS]{...}`, one marker per call (Mistral
//! Small 3.2, whose template writes past calls in this form and whose output llama.cpp reads
//! in it).
//!
//! Read by the shared Mistral scanner ([`scan_mistral`]), which also takes the forms without
//! an id and the older list; the model's id is not used (callm gives each call a fresh one).
//! The grammar writes a 9-character alphanumeric id; `[TOOL_CALLS]`, `[CALL_ID]` and `[ARGS]`
//! are control tokens where the tokenizer has them. `</s>` is dropped.

use super::mistral::{scan_mistral, ARGS, CALL_ID, MARKER, MISTRAL_END};
use crate::parsers::{CallGrammar, CallList, CallSyntax, IdStyle, ScanCx, Step, ToolFormat};

/// The `[TOOL_CALLS]NAME[CALL_ID]ID[ARGS]{...}` format.
#[derive(Debug, Clone, Copy, Default)]
pub struct MistralCallId;

impl ToolFormat for MistralCallId {
    fn grammar(&self) -> CallGrammar {
        CallGrammar::new(CallSyntax::NamedJson {
            id: Some(CALL_ID),
            sep: ARGS,
            tail: "",
        })
        .with_marker(MARKER, CallList::new("", "", ""))
        .repeat_blocks("")
        .with_controls(&[CALL_ID, ARGS])
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
