//! Conversion of parsed Python literals ([`super::pylit`]) to JSON: tuples and sets become
//! arrays, non-string dict keys their JSON text, ints beyond 64 bits floats, and a nested call
//! becomes `{"__call__": NAME, "arguments": {...}}`.

use serde_json::{Map, Number, Value};

use super::pylit::{PyCall, PyValue};
use crate::openai::Tool;

/// Converts a literal to JSON (see the module doc for the mapping).
pub fn to_json(v: &PyValue, tools: Option<&[Tool]>) -> Value {
    match v {
        PyValue::None => Value::Null,
        PyValue::Bool(b) => Value::Bool(*b),
        PyValue::Int(i) => int_json(*i),
        PyValue::Float(f) => Number::from_f64(*f).map_or(Value::Null, Value::Number),
        PyValue::Str(s) => Value::String(s.clone()),
        PyValue::List(items) | PyValue::Tuple(items) => {
            Value::Array(items.iter().map(|x| to_json(x, tools)).collect())
        }
        PyValue::Dict(pairs) => {
            let mut m = Map::new();
            for (k, val) in pairs {
                let key = match k {
                    PyValue::Str(s) => s.clone(),
                    other => to_json(other, tools).to_string(),
                };
                m.insert(key, to_json(val, tools));
            }
            Value::Object(m)
        }
        PyValue::Call(c) => {
            let mut m = Map::new();
            m.insert("__call__".into(), Value::String(c.name.clone()));
            m.insert("arguments".into(), Value::Object(call_arguments(c, tools)));
            Value::Object(m)
        }
    }
}

fn int_json(i: i128) -> Value {
    if let Ok(v) = i64::try_from(i) {
        Value::from(v)
    } else if let Ok(v) = u64::try_from(i) {
        Value::from(v)
    } else {
        Number::from_f64(i as f64).map_or(Value::Null, Value::Number)
    }
}

/// The arguments object of a call: keyword arguments as given, positional ones named after
/// the declared tool's `properties` in order, or `_0`, `_1`... when no name is known.
pub fn call_arguments(c: &PyCall, tools: Option<&[Tool]>) -> Map<String, Value> {
    let names: Vec<String> = tools
        .and_then(|ts| ts.iter().find(|t| t.function.name == c.name))
        .and_then(|t| t.function.parameters.as_ref())
        .and_then(|p| p.get("properties"))
        .and_then(Value::as_object)
        .map(|props| props.keys().cloned().collect())
        .unwrap_or_default();
    let mut m = Map::new();
    for (i, a) in c.args.iter().enumerate() {
        let key = names.get(i).cloned().unwrap_or_else(|| format!("_{i}"));
        m.insert(key, to_json(a, tools));
    }
    for (k, v) in &c.kwargs {
        m.insert(k.clone(), to_json(v, tools));
    }
    m
}
