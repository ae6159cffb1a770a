//! Checks a parsed call against the request's tools and coerces argument values.
//!
//! Rules: without tools every call is accepted as-is. With tools, an undeclared function is
//! rejected (its text goes back to the content, with a warning). Arguments must be a JSON
//! object (a string holding one is decoded; `null` is `{}`), otherwise the call is rejected.
//! Values are coerced where the schema is clear: `"5"` → 5 for `integer`, `"2.5"` → 2.5 for
//! `number`, `"true"` → true for `boolean`, `"null"` → null for `null`, numbers and booleans
//! → text for `string`, a string holding JSON → the array/object for `array`/`object`
//! (formats whose values are raw text, like Qwen3-Coder's XML, are typed this way); recursively through
//! `properties` and `items`. Missing required or undeclared parameters are only warned about.

use serde_json::{Map, Value};

use crate::openai::Tool;

use super::{pylit, RawCall};

/// The outcome of checking one call.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// A valid call: the name and its arguments as JSON text of an object.
    Accepted {
        /// The function name.
        name: String,
        /// The arguments object, as JSON text.
        arguments: String,
    },
    /// Not a valid call: its source text, to be kept as content.
    Rejected(String),
}

/// Checks `call` against `tools` (see the module doc).
pub fn check(call: RawCall, tools: Option<&[Tool]>) -> Verdict {
    let Some(mut args) = arguments_object(call.arguments) else {
        tracing::warn!(name = %call.name, "tool call arguments are not an object; kept as content");
        return Verdict::Rejected(call.raw);
    };
    if call.name.is_empty() {
        return Verdict::Rejected(call.raw);
    }
    if let Some(tools) = tools {
        let Some(tool) = tools.iter().find(|t| t.function.name == call.name) else {
            tracing::warn!(name = %call.name, "model called an undeclared function; kept as content");
            return Verdict::Rejected(call.raw);
        };
        if let Some(schema) = &tool.function.parameters {
            coerce_object(&mut args, schema);
            warn_params(&call.name, &args, schema);
        }
    }
    Verdict::Accepted {
        name: call.name,
        arguments: Value::Object(args).to_string(),
    }
}

/// The arguments as an object: objects as-is, `null` as `{}`, strings holding an object decoded.
pub fn arguments_object(v: Value) -> Option<Map<String, Value>> {
    match v {
        Value::Object(m) => Some(m),
        Value::Null => Some(Map::new()),
        Value::String(s) => match decode_text(&s)? {
            Value::Object(m) => Some(m),
            _ => None,
        },
        _ => None,
    }
}

/// Decodes text holding JSON (or, leniently, a Python literal).
pub fn decode_text(s: &str) -> Option<Value> {
    let t = s.trim();
    if t.is_empty() {
        return Some(Value::Object(Map::new()));
    }
    if let Ok(v) = serde_json::from_str::<Value>(t) {
        return Some(v);
    }
    pylit::parse_literal(t)
        .ok()
        .map(|v| pylit::to_json(&v, None))
}

fn warn_params(name: &str, args: &Map<String, Value>, schema: &Value) {
    if let Some(req) = schema.get("required").and_then(Value::as_array) {
        for r in req.iter().filter_map(Value::as_str) {
            if !args.contains_key(r) {
                tracing::warn!(function = %name, param = %r, "tool call misses a required parameter");
            }
        }
    }
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for k in args.keys().filter(|k| !props.contains_key(k.as_str())) {
            tracing::warn!(function = %name, param = %k, "tool call has an undeclared parameter");
        }
    }
}

fn coerce_object(args: &mut Map<String, Value>, schema: &Value) {
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return;
    };
    for (k, v) in args.iter_mut() {
        if let Some(s) = props.get(k) {
            coerce(v, s);
        }
    }
}

fn types_of(schema: &Value) -> Vec<&str> {
    match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

fn matches_type(v: &Value, t: &str) -> bool {
    match t {
        "string" => v.is_string(),
        "integer" => v.as_i64().is_some() || v.as_u64().is_some(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        "null" => v.is_null(),
        _ => true,
    }
}

/// Coerces `v` in place to the type `schema` declares, when that is unambiguous.
pub fn coerce(v: &mut Value, schema: &Value) {
    let types = types_of(schema);
    if !types.is_empty() && !types.iter().any(|t| matches_type(v, t)) {
        if let Some(new) = types.iter().find_map(|t| convert(v, t)) {
            *v = new;
        }
    }
    match v {
        Value::Object(m) => coerce_object(m, schema),
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for x in items.iter_mut() {
                    coerce(x, item_schema);
                }
            }
        }
        _ => {}
    }
}

fn convert(v: &Value, t: &str) -> Option<Value> {
    match (t, v) {
        ("integer", Value::String(s)) => {
            let s = s.trim();
            s.parse::<i64>()
                .ok()
                .map(Value::from)
                .or_else(|| {
                    let f: f64 = s.parse().ok()?;
                    integral(f)
                })
                .or_else(|| whole_literal(s))
        }
        ("integer", Value::Number(n)) => integral(n.as_f64()?),
        ("number", Value::String(s)) => {
            let s = s.trim();
            if let Ok(i) = s.parse::<i64>() {
                return Some(Value::from(i));
            }
            let f: f64 = s.parse().ok()?;
            serde_json::Number::from_f64(f).map(Value::Number)
        }
        ("boolean", Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "true" => Some(Value::Bool(true)),
            "false" => Some(Value::Bool(false)),
            _ => None,
        },
        ("string", Value::Number(n)) => Some(Value::String(n.to_string())),
        ("string", Value::Bool(b)) => Some(Value::String(b.to_string())),
        ("null", Value::String(s)) if s.trim() == "null" => Some(Value::Null),
        ("array", Value::String(s)) => decode_text(s).filter(Value::is_array),
        ("object", Value::String(s)) => decode_text(s).filter(Value::is_object),
        _ => None,
    }
}

/// A whole number written in full that no machine integer holds (`123456789012345678901234`):
/// the JSON number a JSON call would have had for it (a float of the same value).
fn whole_literal(s: &str) -> Option<Value> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let v = pylit::to_json(&pylit::parse_literal(s).ok()?, None);
    v.as_f64().is_some_and(|f| f.fract() == 0.0).then_some(v)
}

fn integral(f: f64) -> Option<Value> {
    (f.fract() == 0.0 && f.abs() < 9.0e15).then(|| Value::from(f as i64))
}
