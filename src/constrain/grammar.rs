//! Lark grammars (llguidance's dialect) for what a request allows the model to write: tool
//! calls in the family's own syntax, or a JSON document.
//!
//! Each format describes its calls in a [`CallGrammar`] (in its own file under
//! `parsers/formats/`): the call syntax (JSON objects or Python calls), the marker and the
//! delimiters around them. This module turns that description into lark. The grammar always
//! describes the whole answer, including any text the prompt forced (the format's call
//! opening), which is fed to the matcher before generation starts.
//!
//! `auto` mode lets the model write freely; its grammar switches on at the format's marker
//! (a `lazy` lark rule ends the free text at the first marker) or, for formats with bare
//! calls, when the answer starts like a call (free text may not start that way).

use serde_json::Value;

use super::pycall;
use super::schema::{arguments_schema, embed, lit};
use super::ConstrainError;
use crate::openai::Tool;
use crate::parsers::{CallGrammar, CallSyntax, Format};

/// Which calls a tool grammar allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolMode {
    /// Free text; a call, once opened, completes validly.
    Auto,
    /// One or more calls and nothing else.
    Required,
    /// Exactly one call of this function.
    Named(String),
}

/// What a constraint enforces.
#[derive(Debug, Clone)]
pub enum GrammarSpec {
    /// Tool calls in a parser format's syntax.
    Tools {
        /// The tool-call format (its first format, for a family's chain).
        format: Format,
        /// The request's tools.
        tools: Vec<Tool>,
        /// Which calls are allowed.
        mode: ToolMode,
        /// Whether several calls may come (`parallel_tool_calls`).
        parallel: bool,
    },
    /// Any JSON object (`response_format: json_object`).
    JsonObject,
    /// A JSON document valid against a schema (`response_format: json_schema`).
    JsonSchema {
        /// The schema.
        schema: Value,
        /// `strict: true`: unknown keywords are errors rather than ignored.
        strict: bool,
    },
}

/// Builds the lark grammar for `spec`; `marker` turns marker text into a lark element (a
/// special-token reference when the tokenizer has one, else a string literal).
pub fn lark(spec: &GrammarSpec, marker: &dyn Fn(&str) -> String) -> Result<String, ConstrainError> {
    match spec {
        GrammarSpec::JsonObject => Ok(format!(
            "start: json\njson: {}\n",
            embed(&serde_json::json!({"type": "object"}), true)
        )),
        GrammarSpec::JsonSchema { schema, strict } => {
            if !(schema.is_object() || schema.is_boolean()) {
                return Err(ConstrainError::bad(
                    "response_format.json_schema.schema",
                    "the schema must be a JSON object",
                ));
            }
            Ok(format!("start: json\njson: {}\n", embed(schema, !strict)))
        }
        GrammarSpec::Tools {
            format,
            tools,
            mode,
            parallel,
        } => tools_lark(*format, tools, mode, *parallel, marker),
    }
}

fn tools_lark(
    format: Format,
    tools: &[Tool],
    mode: &ToolMode,
    parallel: bool,
    marker: &dyn Fn(&str) -> String,
) -> Result<String, ConstrainError> {
    let l = format.def().grammar();
    let mut g = String::new();
    // One rule per tool: `call_i`; `call` is their union.
    let chosen: Vec<(usize, &Tool)> = match mode {
        ToolMode::Named(n) => tools
            .iter()
            .enumerate()
            .filter(|(_, t)| &t.function.name == n)
            .collect(),
        _ => tools.iter().enumerate().collect(),
    };
    if chosen.is_empty() {
        return Err(ConstrainError::bad("tool_choice", "no tool to call"));
    }
    let mut alts = Vec::new();
    for (i, t) in &chosen {
        let param = format!("tools[{i}].function.parameters");
        let lenient = t.function.strict != Some(true);
        let args = arguments_schema(t.function.parameters.as_ref(), &param)?;
        let name = &t.function.name;
        let head = lit(&l.call.head(name));
        let tail = lit(l.call.tail());
        match l.call {
            CallSyntax::Json(_) => g.push_str(&format!(
                "call_{i}: {head} args_{i} {tail}\nargs_{i}: {}\n",
                embed(&args, lenient)
            )),
            CallSyntax::Python | CallSyntax::GlmFence => {
                pycall::check_name(name, *i)?;
                let kwargs = pycall::kwargs_rules(&mut g, *i, &args, lenient, &param)?;
                g.push_str(&format!("call_{i}: {head} {kwargs} {tail}\n"));
            }
        }
        alts.push(format!("call_{i}"));
    }
    g.push_str(&format!("call: {}\n", alts.join(" | ")));
    let many = parallel && !l.single && !matches!(mode, ToolMode::Named(_));
    let list = |open: &str, sep: &str, close: &str| -> String {
        let more = if many && !sep.is_empty() {
            format!(" ({} call)*", lit(sep))
        } else {
            String::new()
        };
        let mut parts = Vec::new();
        if !open.is_empty() {
            parts.push(lit(open));
        }
        parts.push(format!("call{more}"));
        if !close.is_empty() {
            parts.push(lit(close));
        }
        parts.join(" ")
    };
    // `block`: marker + calls (one marker block); `bare`: calls standing alone.
    let block = l.marker.map(|m| {
        let calls = list(l.list.open, l.list.sep, l.list.close);
        format!("block: {} {calls}\n", marker(m))
    });
    let bare = l
        .bare
        .map(|b| format!("bare: {}\n", list(b.open, b.sep, b.close)));
    if let Some(b) = &block {
        g.push_str(b);
    }
    if let Some(b) = &bare {
        g.push_str(b);
    }
    let blocks = |g: &mut String| match l.repeat_block {
        Some(sep) if many => g.push_str(&format!("blocks: block ({} block)*\n", lit(sep))),
        _ => g.push_str("blocks: block\n"),
    };
    match mode {
        ToolMode::Required | ToolMode::Named(_) => {
            if l.forced_in_marker_form() {
                blocks(&mut g);
                g.push_str("start: blocks\n");
            } else if l.bare.is_some() {
                g.push_str("start: bare\n");
            } else {
                return Err(ConstrainError::Unsupported(format!(
                    "the tool-call format \"{format}\" describes neither a call marker nor bare calls"
                )));
            }
        }
        ToolMode::Auto => {
            g.push_str("TEXT: /(?s:.*)/\n");
            let first_text = match bare_start_regex(&l, tools) {
                Some(rx) => {
                    g.push_str(&format!("TEXT0: /(?s:.*)/ & ~/{rx}(?s:.*)/\n"));
                    "TEXT0"
                }
                None => "TEXT",
            };
            let mut starts = Vec::new();
            if l.bare.is_some() && l.call == CallSyntax::GlmFence {
                starts.push("bare".to_string());
            } else if l.bare.is_some() {
                g.push_str("LEAD_WS: /[ \\t\\r\\n]+/\n");
                starts.push("LEAD_WS? bare".to_string());
            }
            match l.marker {
                Some(m) => {
                    let lazy = if is_token_ref(&marker(m)) {
                        ""
                    } else {
                        "[lazy]"
                    };
                    let mref = marker(m);
                    g.push_str(&format!("pre0{lazy}: {first_text} {mref}\n"));
                    g.push_str(&format!("pre{lazy}: TEXT {mref}\n"));
                    let body = list(l.list.open, l.list.sep, l.list.close);
                    g.push_str(&format!("after0: pre0 {body}\n"));
                    g.push_str(&format!("after: pre {body}\n"));
                    let rest = if parallel && !l.single {
                        "(after)* TEXT"
                    } else {
                        "TEXT"
                    };
                    starts.push(format!("after0 {rest}"));
                    starts.push(first_text.to_string());
                }
                None => starts.push(first_text.to_string()),
            }
            g.push_str(&format!("start: {}\n", starts.join(" | ")));
        }
    }
    Ok(g)
}

/// Whether a lark element is a special-token reference.
fn is_token_ref(e: &str) -> bool {
    e.starts_with('<')
}

/// A regex (for `~/.../`) matching the start of a bare call, which free text in `auto`
/// mode may not begin with.
fn bare_start_regex(l: &CallGrammar, tools: &[Tool]) -> Option<String> {
    let open = l.bare?.open;
    let names = || {
        tools
            .iter()
            .map(|t| regex_escape(&t.function.name))
            .collect::<Vec<_>>()
            .join("|")
    };
    Some(match (l.call, open) {
        (CallSyntax::Json(_), "") => r"[ \t\r\n]*\{".to_string(),
        (_, o) if !o.is_empty() => format!(r"[ \t\r\n]*{}", regex_escape(o)),
        (CallSyntax::Python, _) => format!(r"[ \t\r\n]*({})\(", names()),
        (CallSyntax::GlmFence, _) => format!(r"({})\n", names()),
        (CallSyntax::Json(_), _) => return None,
    })
}

/// Escapes regex metacharacters (and `/`, the lark regex delimiter).
pub fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$#&-~/\"".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
