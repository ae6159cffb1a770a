//! Lark grammars (llguidance's dialect) for what a request allows the model to write: tool
//! calls in the family's own syntax, or a JSON document.
//!
//! Each parser format has one call syntax: JSON objects (`llama3_json`, `mistral`, `hermes`,
//! `glaive`, `json_fallback`) or Python calls (`pythonic`, `gorilla`, `nexusraven`,
//! `chatglm3`), wrapped the way that format's parser reads them. The grammar always describes
//! the whole answer, including any text the prompt forced (`call_prefix`), which is fed to
//! the matcher before generation starts.
//!
//! `auto` mode lets the model write freely; its grammar switches on at the format's marker
//! (a `lazy` lark rule ends the free text at the first marker) or, for formats with bare
//! calls, when the answer starts like a call (free text may not start that way).

use serde_json::Value;

use super::pycall;
use super::schema::{arguments_schema, embed, json_str, lit};
use super::ConstrainError;
use crate::openai::Tool;

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
        /// The parser format (`hermes`, `pythonic`, ...).
        format: String,
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

/// How a call is written: JSON object with this arguments key, or a Python call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallSyntax {
    Json(&'static str),
    Python,
    Glm,
}

/// The layout of one parser format.
struct Layout {
    call: CallSyntax,
    /// Marker that opens calls anywhere in the text.
    marker: Option<&'static str>,
    /// Text between the marker and the first call, between calls, and after the last.
    open: &'static str,
    sep: &'static str,
    close: &'static str,
    /// Several calls repeat the whole marker block, separated by this (hermes).
    repeat_block: Option<&'static str>,
    /// Calls may stand bare at the start of the answer (with this open/sep/close).
    bare: Option<(&'static str, &'static str, &'static str)>,
    /// `required`/named write the marker form (else the bare form).
    required_marker: bool,
    /// The format has only one call per answer.
    single: bool,
}

fn layout(format: &str) -> Result<Layout, ConstrainError> {
    let base = Layout {
        call: CallSyntax::Json("arguments"),
        marker: None,
        open: "",
        sep: "",
        close: "",
        repeat_block: None,
        bare: None,
        required_marker: true,
        single: false,
    };
    Ok(match format {
        "hermes" => Layout {
            marker: Some("<tool_call>"),
            open: "\n",
            close: "\n</tool_call>",
            repeat_block: Some("\n"),
            ..base
        },
        "mistral" => Layout {
            marker: Some("[TOOL_CALLS]"),
            open: " [",
            sep: ", ",
            close: "]",
            ..base
        },
        "glaive" => Layout {
            marker: Some("<functioncall>"),
            open: " ",
            single: true,
            ..base
        },
        "llama3_json" => Layout {
            call: CallSyntax::Json("parameters"),
            marker: Some("<|python_tag|>"),
            sep: "; ",
            bare: Some(("", "; ", "")),
            required_marker: false,
            ..base
        },
        "json_fallback" => Layout {
            bare: Some(("[", ", ", "]")),
            required_marker: false,
            ..base
        },
        "pythonic" => Layout {
            call: CallSyntax::Python,
            marker: Some("<|python_tag|>"),
            open: "[",
            sep: ", ",
            close: "]",
            bare: Some(("[", ", ", "]")),
            required_marker: false,
            ..base
        },
        "gorilla" => Layout {
            call: CallSyntax::Python,
            bare: Some(("", "<<function>>", "")),
            required_marker: false,
            ..base
        },
        "nexusraven" => Layout {
            call: CallSyntax::Python,
            marker: Some("Call:"),
            open: " ",
            sep: "; ",
            ..base
        },
        "chatglm3" => Layout {
            call: CallSyntax::Glm,
            bare: Some(("", "", "")),
            required_marker: false,
            single: true,
            ..base
        },
        other => {
            return Err(ConstrainError::Unsupported(format!(
                "no call grammar for the tool-call format \"{other}\""
            )))
        }
    })
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
        } => tools_lark(format, tools, mode, *parallel, marker),
    }
}

fn tools_lark(
    format: &str,
    tools: &[Tool],
    mode: &ToolMode,
    parallel: bool,
    marker: &dyn Fn(&str) -> String,
) -> Result<String, ConstrainError> {
    let l = layout(format)?;
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
        match l.call {
            CallSyntax::Json(key) => {
                let head = format!("{{\"name\": {}, \"{key}\": ", json_str(name));
                g.push_str(&format!(
                    "call_{i}: {} args_{i} \"}}\"\nargs_{i}: {}\n",
                    lit(&head),
                    embed(&args, lenient)
                ));
            }
            CallSyntax::Python | CallSyntax::Glm => {
                pycall::check_name(name, *i)?;
                let kwargs = pycall::kwargs_rules(&mut g, *i, &args, lenient, &param)?;
                let head = if l.call == CallSyntax::Glm {
                    format!("{name}\n```python\ntool_call(")
                } else {
                    format!("{name}(")
                };
                let tail = if l.call == CallSyntax::Glm {
                    ")\n```"
                } else {
                    ")"
                };
                g.push_str(&format!(
                    "call_{i}: {} {kwargs} {}\n",
                    lit(&head),
                    lit(tail)
                ));
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
    let block = l
        .marker
        .map(|m| format!("block: {} {}\n", marker(m), list(l.open, l.sep, l.close)));
    let bare = l.bare.map(|(o, s, c)| format!("bare: {}\n", list(o, s, c)));
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
            if l.required_marker || l.bare.is_none() {
                blocks(&mut g);
                g.push_str("start: blocks\n");
            } else {
                g.push_str("start: bare\n");
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
            if l.bare.is_some() && l.call == CallSyntax::Glm {
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
                    let body = list(l.open, l.sep, l.close);
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
fn bare_start_regex(l: &Layout, tools: &[Tool]) -> Option<String> {
    let (open, _, _) = l.bare?;
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
        (CallSyntax::Glm, _) => format!(r"({})\n", names()),
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
