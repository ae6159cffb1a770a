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

use super::schema::{arguments_schema, embed, lit};
use super::ConstrainError;
use super::{pycall, xmlcall};
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

/// A reasoning block a thinking model writes before its answer (`<think>...</think>`): the
/// grammar lets it come first, bounded, then requires what the request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thinking {
    /// The text that opens the block.
    pub open: String,
    /// The text that closes it.
    pub close: String,
    /// Most characters inside the block; then the grammar requires the close.
    pub max_chars: usize,
    /// The prompt already opened the block: the answer starts inside it.
    pub started: bool,
}

/// Builds the lark grammar for `spec`; `marker` turns marker text into a lark element (a
/// special-token reference when the tokenizer has one, else a string literal).
pub fn lark(spec: &GrammarSpec, marker: &dyn Fn(&str) -> String) -> Result<String, ConstrainError> {
    lark_with(spec, None, marker)
}

/// [`lark`] with a reasoning block allowed first (required where the prompt opened it).
pub fn lark_with(
    spec: &GrammarSpec,
    thinking: Option<&Thinking>,
    marker: &dyn Fn(&str) -> String,
) -> Result<String, ConstrainError> {
    let mut g = match spec {
        GrammarSpec::JsonObject => format!(
            "main: json\njson: {}\n",
            embed(&serde_json::json!({"type": "object"}), true)
        ),
        GrammarSpec::JsonSchema { schema, strict } => {
            if !(schema.is_object() || schema.is_boolean()) {
                return Err(ConstrainError::bad(
                    "response_format.json_schema.schema",
                    "the schema must be a JSON object",
                ));
            }
            format!("main: json\njson: {}\n", embed(schema, !strict))
        }
        GrammarSpec::Tools {
            format,
            tools,
            mode,
            parallel,
        } => tools_lark(*format, tools, mode, *parallel, thinking, marker)?,
    };
    match thinking {
        None => g.push_str("start: main\n"),
        Some(t) => {
            // A close marker that is a control token cannot occur in text: the body stops at
            // it. A textual one ends the block at its first occurrence (a lazy lexeme).
            let close = marker(&t.close);
            let open = if t.started {
                String::new()
            } else {
                format!("{} ", marker(&t.open))
            };
            let body = format!("/(?s:.{{0,{}}})/", t.max_chars);
            if is_token_ref(&close) {
                g.push_str(&format!(
                    "think_block: {open}THINK_BODY {close}\nTHINK_BODY: {body}\n"
                ));
            } else {
                g.push_str(&format!("think_block[lazy]: {open}{body} {close}\n"));
            }
            g.push_str("THINK_WS: /[ \\t\\r\\n]*/\nthink: think_block THINK_WS\n");
            if t.started {
                g.push_str("start: think main\n");
            } else {
                g.push_str("start: think main | main\n");
            }
        }
    }
    Ok(g)
}

/// Lark for `text`, with the control texts of `controls` in it written by `marker`
/// (control tokens where the tokenizer has them).
fn seq(text: &str, controls: &[&str], marker: &dyn Fn(&str) -> String) -> String {
    let mut parts = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let next = controls
            .iter()
            .filter(|c| !c.is_empty())
            .filter_map(|c| rest.find(c).map(|i| (i, *c)))
            .min_by_key(|(i, c)| (*i, std::cmp::Reverse(c.len())));
        match next {
            Some((i, c)) => {
                if i > 0 {
                    parts.push(lit(&rest[..i]));
                }
                parts.push(marker(c));
                rest = &rest[i + c.len()..];
            }
            None => {
                parts.push(lit(rest));
                rest = "";
            }
        }
    }
    if parts.is_empty() {
        lit("")
    } else {
        parts.join(" ")
    }
}

fn tools_lark(
    format: Format,
    tools: &[Tool],
    mode: &ToolMode,
    parallel: bool,
    thinking: Option<&Thinking>,
    marker: &dyn Fn(&str) -> String,
) -> Result<String, ConstrainError> {
    let l = format.def().grammar();
    let text = |t: &str| seq(t, l.controls, marker);
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
        let head = text(&l.call.head(name));
        let tail = text(l.call.tail());
        match l.call {
            CallSyntax::Json(_) | CallSyntax::NamedJson { id: None, .. } => g.push_str(&format!(
                "call_{i}: {head} args_{i} {tail}\nargs_{i}: {}\n",
                embed(&args, lenient)
            )),
            CallSyntax::NamedJson {
                id: Some(id), sep, ..
            } => g.push_str(&format!(
                "call_{i}: {head} {} CALL_ID {} args_{i} {tail}\nargs_{i}: {}\n",
                text(id),
                text(sep),
                embed(&args, lenient)
            )),
            CallSyntax::Python | CallSyntax::GlmFence => {
                pycall::check_name(name, *i)?;
                let kwargs = pycall::kwargs_rules(&mut g, *i, &args, lenient, &param)?;
                g.push_str(&format!("call_{i}: {head} {kwargs} {tail}\n"));
            }
            CallSyntax::Xml => {
                xmlcall::check_name(name, *i)?;
                let params = xmlcall::params_rules(&mut g, *i, &args, lenient, &param)?;
                g.push_str(&format!("call_{i}: {head} {params} {tail}\n"));
            }
        }
        alts.push(format!("call_{i}"));
    }
    g.push_str(&format!("call: {}\n", alts.join(" | ")));
    if matches!(l.call, CallSyntax::NamedJson { id: Some(_), .. }) {
        g.push_str("CALL_ID: /[A-Za-z0-9]{9}/\n");
    }
    let many = parallel && !l.single && !matches!(mode, ToolMode::Named(_));
    let list = |open: &str, sep: &str, close: &str| -> String {
        let more = if many && !sep.is_empty() {
            format!(" ({} call)*", text(sep))
        } else {
            String::new()
        };
        let mut parts = Vec::new();
        if !open.is_empty() {
            parts.push(text(open));
        }
        parts.push(format!("call{more}"));
        if !close.is_empty() {
            parts.push(text(close));
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
        Some(sep) if many => g.push_str(&format!("blocks: block ({} block)*\n", text(sep))),
        _ => g.push_str("blocks: block\n"),
    };
    match mode {
        ToolMode::Required | ToolMode::Named(_) => {
            if l.forced_in_marker_form() {
                blocks(&mut g);
                g.push_str("main: blocks\n");
            } else if l.bare.is_some() {
                g.push_str("main: bare\n");
            } else {
                return Err(ConstrainError::Unsupported(format!(
                    "the tool-call format \"{format}\" describes neither a call marker nor bare calls"
                )));
            }
        }
        ToolMode::Auto => {
            g.push_str("TEXT: /(?s:.*)/\n");
            // Free text may not start like a bare call, nor (for a thinking model) like the
            // reasoning block, which the grammar then reads as such.
            let mut not_first: Vec<String> = bare_start_regex(&l, tools).into_iter().collect();
            if let Some(t) = thinking.filter(|t| !t.started) {
                not_first.push(format!(r"[ \t\r\n]*{}", regex_escape(&t.open)));
            }
            let first_text = if not_first.is_empty() {
                "TEXT"
            } else {
                let excluded: Vec<String> = not_first
                    .iter()
                    .map(|rx| format!(" & ~/{rx}(?s:.*)/"))
                    .collect();
                g.push_str(&format!("TEXT0: /(?s:.*)/{}\n", excluded.concat()));
                "TEXT0"
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
            g.push_str(&format!("main: {}\n", starts.join(" | ")));
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
        (CallSyntax::NamedJson { id, sep, .. }, _) => {
            format!(
                r"[ \t\r\n]*({}){}",
                names(),
                regex_escape(id.unwrap_or(sep))
            )
        }
        (CallSyntax::Xml, _) => r"[ \t\r\n]*<function=".to_string(),
        (CallSyntax::Json(_), _) => return None,
    })
}

/// Escapes regex metacharacters (and `/`, the lark regex delimiter); newlines, tabs and
/// carriage returns become their escapes.
pub fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\n' => out.push_str(r"\n"),
            '\r' => out.push_str(r"\r"),
            '\t' => out.push_str(r"\t"),
            _ => {
                if "\\.+*?()|[]{}^$#&-~/\"".contains(c) {
                    out.push('\\');
                }
                out.push(c);
            }
        }
    }
    out
}
