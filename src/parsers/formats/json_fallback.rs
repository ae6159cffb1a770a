//! `json_fallback`: a bare JSON call object `{"name": ..., "arguments"|"parameters": {...}}`,
//! an array of them, or either inside a ```` ```json ```` fence, anywhere in the output.
//!
//! For models that drift from their trained format. Text starting with `{`, `[` or a fence
//! is held back while streaming until it is known to be a call or not.

use crate::parsers::scan::{bare_json_at, content_until_trigger, BARE_BYTES, FENCE};
use crate::parsers::{CallGrammar, CallList, CallSyntax, ScanCx, Step, ToolFormat};

/// The bare-JSON fallback format.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonFallback;

impl ToolFormat for JsonFallback {
    fn grammar(&self) -> CallGrammar {
        CallGrammar::new(CallSyntax::Json("arguments")).with_bare(CallList::new("[", ", ", "]"))
    }

    fn scan(&self, cx: &ScanCx<'_>, pos: usize) -> Step {
        if let Some(step) = bare_json_at(cx, pos, false) {
            return step;
        }
        content_until_trigger(cx, pos, &[FENCE], BARE_BYTES)
    }
}
