//! The minijinja environment configured like transformers' Jinja2 sandbox.
//!
//! transformers renders chat templates with `trim_blocks=True`, `lstrip_blocks=True`, no
//! autoescape, and the globals `raise_exception` and `strftime_now`, and replaces `tojson`
//! by `json.dumps(x, ensure_ascii=False, indent=..., separators=..., sort_keys=...)`.
//! Python string/dict methods come from minijinja-contrib's pycompat callback.
//!
//! Filters callm adds (usable by the bundled templates, harmless for the others):
//! - `tojson(ensure_ascii=false, indent=none, separators=none, sort_keys=false)`: Python's json.dumps.
//! - `py_repr`: Python's `repr()` of a value (`'text'`, `True`, `None`, `[1, 2]`).
//! - `py_call`: a tool call `{name, arguments}` as Python call syntax `name(a='x', b=1)`.
//! - `py_stub`: a function definition as a Python stub with a docstring (NexusRaven).
//!
//! Printed values follow Python's `str()`: `None`, `True`/`False`, `{'k': 'v'}`.
//!
//! Every render runs on a budget ([`super::limits`]): minijinja's fuel, a recursion limit,
//! and callm's filters, formatter and Python methods check the budget before they build text.

use minijinja::value::{Kwargs, Value, ValueKind};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, Output, State};
use std::fmt::Write;

use super::bounded::{indent, text_of, unknown_method};
use super::limits::{
    charge_serialized, ensure_bytes, over_budget, serialized_budget, MAX_INDENT, MAX_RECURSION,
    RENDER_FUEL,
};
use super::pyjson::{dumps, py_float_repr, py_repr_within, DumpOptions};
use super::pystub::{py_call, py_stub};

/// The name under which a compiled chat template is stored in its environment.
pub const TEMPLATE_NAME: &str = "chat_template";

/// The error a template's `raise_exception(message)` produces, found again by downcasting.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct RaisedByTemplate(pub String);

/// What `strftime_now` reads: the local clock, or a pinned instant (reproducible prompts
/// for templates that print today's date, such as gpt-oss, Mistral Small 3.2, Granite 3.3).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Clock {
    /// The machine's local time.
    #[default]
    Local,
    /// Always this local date and time.
    Fixed(chrono::NaiveDateTime),
}

/// A fresh environment with transformers' settings, callm's filters and `source` compiled;
/// `strftime_now` reads `clock`.
pub fn build_environment(source: String, clock: Clock) -> Result<Environment<'static>, Error> {
    let mut env = Environment::new();
    let syntax = minijinja::syntax::SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .keep_trailing_newline(false)
        .build()?;
    env.set_syntax(syntax);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_fuel(Some(RENDER_FUEL));
    env.set_recursion_limit(MAX_RECURSION);
    env.set_unknown_method_callback(unknown_method);
    env.set_formatter(python_formatter);
    env.add_test("iterable", is_iterable);
    env.add_function("raise_exception", raise_exception);
    env.add_function("strftime_now", move |state: &State, format: &Value| {
        strftime_now(state, format, clock)
    });
    env.add_filter("tojson", tojson);
    env.add_filter("indent", indent);
    env.add_filter("py_repr", |state: &State, v: &Value| {
        let text = py_repr_within(v, serialized_budget(state))?;
        charge_serialized(state, text.len())?;
        Ok::<_, Error>(text)
    });
    env.add_filter("py_call", py_call);
    env.add_filter("py_stub", py_stub);
    env.add_template_owned(TEMPLATE_NAME, source)?;
    Ok(env)
}

/// Jinja2's `iterable` test: whether `iter(value)` succeeds. `none` is not iterable in Python
/// (minijinja's own test says it is: Qwen3-Coder's `tools is iterable and tools | length > 0`
/// then fails on `tools=None`); undefined values are (Jinja2's `Undefined` iterates as empty).
fn is_iterable(value: &Value) -> bool {
    value.kind() != ValueKind::None && (value.is_undefined() || value.try_iter().is_ok())
}

fn raise_exception(state: &State, message: &Value) -> Result<Value, Error> {
    let message = text_of(state, message)?.into_owned();
    Err(Error::new(ErrorKind::InvalidOperation, message.clone())
        .with_source(RaisedByTemplate(message)))
}

/// Longest text one strftime directive writes (`%c`: "Sun Jul  8 00:34:60 2001" and the like).
const STRFTIME_EXPANSION: usize = 32;

fn strftime_now(state: &State, format: &Value, clock: Clock) -> Result<Value, Error> {
    use chrono::format::{Item, StrftimeItems};
    let format = text_of(state, format)?;
    ensure_bytes(
        state,
        format.len().saturating_mul(STRFTIME_EXPANSION),
        "strftime_now",
    )?;
    let items: Vec<Item<'_>> = StrftimeItems::new(&format).collect();
    if items.iter().any(|i| matches!(i, Item::Error)) {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("invalid strftime format {format:?}"),
        ));
    }
    let mut out = String::new();
    let written = match clock {
        Clock::Local => write!(
            out,
            "{}",
            chrono::Local::now().format_with_items(items.iter())
        ),
        Clock::Fixed(t) => write!(out, "{}", t.format_with_items(items.iter())),
    };
    written.map_err(|_| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("cannot format date with {format:?}"),
        )
    })?;
    Ok(Value::from(out))
}

/// transformers' `tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)`,
/// with `indent` at most [`MAX_INDENT`] and the output within the render's budget.
fn tojson(
    state: &State,
    value: &Value,
    ensure_ascii: Option<Value>,
    indent: Option<Value>,
    kwargs: Kwargs,
) -> Result<Value, Error> {
    let ensure_ascii = match kwargs
        .get::<Option<Value>>("ensure_ascii")?
        .or(ensure_ascii)
    {
        Some(v) => v.is_true(),
        None => false,
    };
    let indent = match kwargs.get::<Option<Value>>("indent")?.or(indent) {
        Some(v) if v.is_none() || v.is_undefined() => None,
        Some(v) if v.kind() == ValueKind::String => {
            let s = v.as_str().unwrap_or_default();
            if s.chars().count() > MAX_INDENT {
                return Err(over_budget(format!(
                    "tojson indent string of {} characters is over the limit of {MAX_INDENT}",
                    s.chars().count()
                )));
            }
            Some(s.to_string())
        }
        Some(v) => {
            let n = v.as_i64().ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidOperation,
                    "tojson indent must be an integer",
                )
            })?;
            // Python treats a negative indent as 0 (newlines, no spaces).
            let n = usize::try_from(n.max(0)).unwrap_or(usize::MAX);
            if n > MAX_INDENT {
                return Err(over_budget(format!(
                    "tojson indent {n} is over the limit of {MAX_INDENT}"
                )));
            }
            Some(" ".repeat(n))
        }
        None => None,
    };
    let mut opts = DumpOptions::python(ensure_ascii, None);
    if indent.is_some() {
        opts.item_sep = ",".to_string();
    }
    opts.indent = indent;
    if let Some(seps) = kwargs.get::<Option<Value>>("separators")? {
        if !seps.is_none() {
            let parts: Vec<Value> = seps.try_iter()?.collect();
            match parts.as_slice() {
                [a, b] => {
                    opts.item_sep = a.as_str().unwrap_or(", ").to_string();
                    opts.key_sep = b.as_str().unwrap_or(": ").to_string();
                }
                _ => {
                    return Err(Error::new(
                        ErrorKind::InvalidOperation,
                        "tojson separators must be a pair",
                    ))
                }
            }
        }
    }
    opts.sort_keys = kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(false);
    kwargs.assert_all_used()?;
    opts.max_bytes = serialized_budget(state);
    let text = dumps(value, &opts)?;
    charge_serialized(state, text.len())?;
    Ok(Value::from(text))
}

/// Prints values as Python's `str()` does.
fn python_formatter(out: &mut Output, state: &mut State, value: &Value) -> Result<(), Error> {
    let text = match value.kind() {
        ValueKind::None => "None".to_string(),
        ValueKind::Bool => if value.is_true() { "True" } else { "False" }.to_string(),
        ValueKind::Number if !value.is_integer() => match f64::try_from(value.clone()) {
            Ok(f) => py_float_repr(f, false),
            Err(_) => value.to_string(),
        },
        // The engine charges the fuel of what is written; the budget caps it beforehand.
        ValueKind::Map | ValueKind::Seq | ValueKind::Iterable => {
            py_repr_within(value, serialized_budget(state))?
        }
        _ => return minijinja::escape_formatter(out, state, value),
    };
    out.write_str(&text)
        .map_err(|_| Error::new(ErrorKind::WriteFailure, "cannot write output"))
}

/// A template value from anything serializable (JSON values, request types).
pub fn to_value<T: serde::Serialize>(v: T) -> Value {
    Value::from(minijinja::value::Serde(v))
}

/// Finds the message of a `raise_exception` call in a render error.
pub fn raised_message(err: &Error) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(r) = e.downcast_ref::<RaisedByTemplate>() {
            return Some(r.0.clone());
        }
        cur = e.source();
    }
    None
}
