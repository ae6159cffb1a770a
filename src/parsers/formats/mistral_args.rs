//! `mistral_args`: `[TOOL_CALLS]NAME[ARGS]{...}`, one marker per call (Devstral, Magistral and
//! Mistral's other models since the v11 tokenizer).
//!
//! Read by the shared Mistral scanner ([`scan_mistral`]), which also takes the older
//! `[TOOL_CALLS] [{...}]` list and a `[CALL_ID]` before `[ARGS]`; this format's grammar
//! writes `[TOOL_CALLS]NAME[ARGS]{...}`, `[TOOL_CALLS]`, `[ARGS]` as the control tokens they
//! are in these models' tokenizers. Call ids are 9 alphanumerics; `</s>` is dropped.

use super::mistral::{scan_mistral, ARGS, MARKER, MISTRAL_END};
use crate::parsers::{CallGrammar, CallList, CallSyntax, IdStyle, ScanCx, Step, ToolFormat};

/// The `[TOOL_CALLS]NAME[ARGS]{...}` format.
#[derive(Debug, Clone, Copy, Default)]
pub struct MistralArgs;

impl ToolFormat for MistralArgs {
    fn grammar(&self) -> CallGrammar {
        CallGrammar::new(CallSyntax::NamedJson {
            id: None,
            sep: ARGS,
            tail: "",
        })
        .with_marker(MARKER, CallList::new("", "", ""))
        .repeat_blocks("")
        .with_controls(&[ARGS])
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
