//! Python-syntax helpers for templates of models trained on Python: call syntax and stubs.
//!
//! `py_stub` turns an OpenAI function definition (JSON Schema parameters) into the stub
//! NexusRaven-V2 reads:
//!
//! ```text
//! def get_weather(city: str, unit: str = None):
//!     """
//!     Current weather of a city.
//!
//!     Args:
//!     city (str): The city name.
//!     unit (str, optional): Temperature unit. Choices: 'celsius', 'fahrenheit'.
//!     """
//! ```
//!
//! Required parameters come first (in schema order), optional ones follow with `= None`;
//! types map `string`->`str`, `integer`->`int`, `number`->`float`, `boolean`->`bool`,
//! `array`->`list` (`list[T]` for scalar items), `object`->`dict`, anything else -> `Any`
//! in the docstring and no annotation in the signature.

use minijinja::value::{Value, ValueKind};
use minijinja::{Error, ErrorKind, State};
use serde_json::Value as Json;

use super::limits::{charge_serialized, serialized_budget};
use super::pyjson::{dumps, py_repr, py_repr_within, write_py_str, DumpOptions};

/// `{name, arguments}` (or an OpenAI tool call holding `function`) as `name(a='x', b=1)`,
/// within the render's budget.
pub fn py_call(state: &State, call: &Value) -> Result<String, Error> {
    let text = py_call_within(call, serialized_budget(state))?;
    charge_serialized(state, text.len())?;
    Ok(text)
}

/// [`py_call`] whose text may have at most `max_bytes` (checked as it grows).
pub fn py_call_within(call: &Value, max_bytes: usize) -> Result<String, Error> {
    let call = match call.get_attr("function") {
        Ok(f) if !f.is_undefined() && !f.is_none() => f,
        _ => call.clone(),
    };
    let name = call.get_attr("name")?;
    let args = call.get_attr("arguments")?;
    let mut out = format!("{}(", name.as_str().unwrap_or_default());
    match args.kind() {
        ValueKind::Map => {
            for (i, key) in args.try_iter()?.enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(key.as_str().unwrap_or_default());
                out.push('=');
                let left = max_bytes.saturating_sub(out.len());
                out.push_str(&py_repr_within(&args.get_item(&key)?, left)?);
            }
        }
        ValueKind::Undefined | ValueKind::None => {}
        // Arguments that were not a JSON object are written as they came.
        ValueKind::String => out.push_str(args.as_str().unwrap_or_default()),
        _ => out.push_str(&py_repr_within(&args, max_bytes.saturating_sub(out.len()))?),
    }
    out.push(')');
    Ok(out)
}

/// A function definition (or an OpenAI tool holding `function`) as a Python stub, within the
/// render's budget.
pub fn py_stub(state: &State, def: &Value) -> Result<String, Error> {
    let stub = py_stub_within(def, serialized_budget(state))?;
    charge_serialized(state, stub.len())?;
    Ok(stub)
}

/// [`py_stub`] of a definition whose JSON has at most `max_bytes`.
pub fn py_stub_within(def: &Value, max_bytes: usize) -> Result<String, Error> {
    let mut opts = DumpOptions::python(false, None);
    opts.max_bytes = max_bytes;
    let text = dumps(def, &opts)?;
    let json: Json = serde_json::from_str(&text)
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("py_stub: {e}")))?;
    let f = json
        .get("function")
        .filter(|f| f.is_object())
        .unwrap_or(&json);
    Ok(stub_of(f))
}

struct Param<'a> {
    name: &'a str,
    ty: Option<String>,
    required: bool,
    schema: &'a Json,
}

fn stub_of(f: &Json) -> String {
    let name = f.get("name").and_then(Json::as_str).unwrap_or("function");
    let desc = f
        .get("description")
        .and_then(Json::as_str)
        .unwrap_or("")
        .trim();
    let params = f.get("parameters").unwrap_or(&Json::Null);
    let required: Vec<&str> = params
        .get("required")
        .and_then(Json::as_array)
        .map(|a| a.iter().filter_map(Json::as_str).collect())
        .unwrap_or_default();
    let mut list: Vec<Param<'_>> = Vec::new();
    if let Some(props) = params.get("properties").and_then(Json::as_object) {
        for (pname, schema) in props {
            list.push(Param {
                name: pname,
                ty: py_type(schema),
                required: required.contains(&pname.as_str()),
                schema,
            });
        }
    }
    // Python wants parameters without defaults first.
    list.sort_by_key(|p| !p.required);

    let sig: Vec<String> = list
        .iter()
        .map(|p| {
            let mut s = p.name.to_string();
            if let Some(t) = &p.ty {
                s.push_str(": ");
                s.push_str(t);
            }
            if !p.required {
                s.push_str(if p.ty.is_some() { " = None" } else { "=None" });
            }
            s
        })
        .collect();
    let mut lines = vec![
        format!("def {name}({}):", sig.join(", ")),
        "    \"\"\"".to_string(),
    ];
    if !desc.is_empty() {
        lines.extend(desc.lines().map(indent));
    }
    if !desc.is_empty() && !list.is_empty() {
        lines.push(String::new());
    }
    if !list.is_empty() {
        lines.push("    Args:".to_string());
        for p in &list {
            lines.push(arg_line(p));
        }
    }
    lines.push("    \"\"\"".to_string());
    lines.join("\n")
}

fn indent(line: &str) -> String {
    if line.is_empty() {
        String::new()
    } else {
        format!("    {line}")
    }
}

fn arg_line(p: &Param<'_>) -> String {
    let mut line = format!("    {} ({}", p.name, p.ty.as_deref().unwrap_or("Any"));
    if !p.required {
        line.push_str(", optional");
    }
    line.push_str("):");
    if let Some(d) = p.schema.get("description").and_then(Json::as_str) {
        let d = d.trim();
        if !d.is_empty() {
            line.push(' ');
            line.push_str(&d.split('\n').collect::<Vec<_>>().join(" "));
        }
    }
    if let Some(choices) = p.schema.get("enum").and_then(Json::as_array) {
        let reprs: Vec<String> = choices.iter().map(json_py_repr).collect();
        line.push_str(" Choices: ");
        line.push_str(&reprs.join(", "));
        line.push('.');
    }
    line
}

fn json_py_repr(v: &Json) -> String {
    match v {
        Json::String(s) => {
            let mut out = String::new();
            write_py_str(&mut out, s);
            out
        }
        other => {
            py_repr(&crate::template::env::to_value(other)).unwrap_or_else(|_| other.to_string())
        }
    }
}

/// The Python annotation of a JSON-Schema type, if it has one.
fn py_type(schema: &Json) -> Option<String> {
    let ty = match schema.get("type") {
        Some(Json::String(s)) => s.as_str(),
        Some(Json::Array(a)) => a.iter().filter_map(Json::as_str).find(|t| *t != "null")?,
        _ => return None,
    };
    Some(match ty {
        "string" => "str".to_string(),
        "integer" => "int".to_string(),
        "number" => "float".to_string(),
        "boolean" => "bool".to_string(),
        "object" => "dict".to_string(),
        "array" => match schema.get("items").and_then(py_type) {
            Some(inner)
                if !matches!(inner.as_str(), "list" | "dict") && !inner.starts_with("list[") =>
            {
                format!("list[{inner}]")
            }
            _ => "list".to_string(),
        },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stub_has_types_defaults_and_choices() {
        let f = serde_json::json!({"type": "function", "function": {
            "name": "get_weather", "description": "Current weather of a city.",
            "parameters": {"type": "object", "properties": {
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "description": "Temperature unit."},
                "city": {"type": "string", "description": "The city name."},
                "days": {"type": "array", "items": {"type": "integer"}}
            }, "required": ["city"]}}});
        let s = py_stub_within(&crate::template::env::to_value(&f), usize::MAX).unwrap();
        assert_eq!(
            s,
            "def get_weather(city: str, unit: str = None, days: list[int] = None):\n    \"\"\"\n    Current weather of a city.\n\n    Args:\n    city (str): The city name.\n    unit (str, optional): Temperature unit. Choices: 'celsius', 'fahrenheit'.\n    days (list[int], optional):\n    \"\"\""
        );
    }

    #[test]
    fn call_in_python_syntax() {
        let c = serde_json::json!({"function": {"name": "f", "arguments": {"a": "it's", "b": [1, true, null]}}});
        assert_eq!(
            py_call_within(&crate::template::env::to_value(&c), usize::MAX).unwrap(),
            "f(a=\"it's\", b=[1, True, None])"
        );
    }
}
