//! JSON Schemas as llguidance compiles them: callm's output style (`", "` and `": "`
//! separators, no free whitespace), closed argument objects, strict or lenient keywords.

use serde_json::{json, Map, Value};

use super::ConstrainError;

/// The schema of a function's arguments: its `parameters`, an empty object when absent.
/// Objects that declare `properties` but say nothing about `additionalProperties` are
/// closed (a call never invents arguments the tool does not declare).
pub fn arguments_schema(parameters: Option<&Value>, param: &str) -> Result<Value, ConstrainError> {
    let mut schema = match parameters {
        None | Some(Value::Null) => json!({"type": "object", "properties": {}}),
        Some(Value::Object(o)) if o.is_empty() => json!({"type": "object", "properties": {}}),
        Some(v @ Value::Object(_)) => v.clone(),
        Some(Value::Bool(true)) => json!({"type": "object"}),
        Some(_) => {
            return Err(ConstrainError::bad(
                param,
                "the parameters must be a JSON Schema object",
            ))
        }
    };
    if let Some(t) = schema.get("type").and_then(Value::as_str) {
        if t != "object" {
            return Err(ConstrainError::bad(
                param,
                format!("the arguments schema must describe an object, not \"{t}\""),
            ));
        }
    }
    close_objects(&mut schema, 0);
    Ok(schema)
}

/// Sets `additionalProperties: false` on every object schema that lists `properties`
/// without saying whether others are allowed (recursively, depth-capped).
pub fn close_objects(schema: &mut Value, depth: usize) {
    if depth > 64 {
        return;
    }
    let Value::Object(o) = schema else {
        return;
    };
    if o.contains_key("properties") && !o.contains_key("additionalProperties") {
        o.insert("additionalProperties".into(), Value::Bool(false));
    }
    for key in ["properties", "$defs", "definitions", "patternProperties"] {
        if let Some(Value::Object(m)) = o.get_mut(key) {
            for v in m.values_mut() {
                close_objects(v, depth + 1);
            }
        }
    }
    for key in ["items", "additionalProperties", "not", "if", "then", "else"] {
        if let Some(v) = o.get_mut(key) {
            close_objects(v, depth + 1);
        }
    }
    for key in ["anyOf", "oneOf", "allOf", "prefixItems"] {
        if let Some(Value::Array(a)) = o.get_mut(key) {
            for v in a {
                close_objects(v, depth + 1);
            }
        }
    }
}

/// Largest magnitude of a number in a schema callm hands to llguidance: 2^62. llguidance
/// 1.9 turns integer bounds, `const` and `enum` numbers into `i64` ranges, saturating, and
/// a value at `i64::MIN` makes its range regex builder recurse forever (one request would
/// overflow the stack and abort the server). Every number in the schema is checked, wherever
/// it stands (a property named `default` holds a schema, not a default).
pub const MAX_NUMBER: f64 = 4_611_686_018_427_387_904.0;

/// Refuses numbers beyond ±[`MAX_NUMBER`] anywhere in `schema` (a client error about `param`).
pub fn check_numbers(schema: &Value, param: &str) -> Result<(), ConstrainError> {
    fn walk(v: &Value, param: &str, depth: usize) -> Result<(), ConstrainError> {
        // serde_json parses at most 128 levels; deeper values cannot come from a request.
        if depth > 256 {
            return Ok(());
        }
        match v {
            Value::Number(n) => match n.as_f64() {
                Some(x) if x.abs() > MAX_NUMBER => Err(ConstrainError::bad(
                    param,
                    format!(
                        "the schema holds the number {n}: numbers beyond ±2^62 are not supported"
                    ),
                )),
                _ => Ok(()),
            },
            Value::Object(o) => o.values().try_for_each(|v| walk(v, param, depth + 1)),
            Value::Array(a) => a.iter().try_for_each(|v| walk(v, param, depth + 1)),
            _ => Ok(()),
        }
    }
    walk(schema, param, 0)
}

/// `schema` with callm's JSON layout options attached (`x-guidance`), as `%json` text for
/// a lark grammar; `lenient` ignores keywords llguidance does not know instead of failing.
pub fn embed(schema: &Value, lenient: bool) -> String {
    let mut s = match schema {
        Value::Object(o) => o.clone(),
        // `true` / other non-objects: any JSON value.
        _ => Map::new(),
    };
    s.insert(
        "x-guidance".into(),
        json!({
            "whitespace_flexible": false,
            "key_separator": ": ",
            "item_separator": ", ",
            "lenient": lenient,
        }),
    );
    format!("%json {}", Value::Object(s))
}

/// A lark string literal for `text`.
pub fn lit(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".into())
}

/// A JSON string literal of `text` (what a JSON document contains for it).
pub fn json_str(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closes_nested_objects_but_keeps_explicit_choices() {
        let mut s = json!({"type": "object", "properties": {
            "a": {"type": "object", "properties": {"b": {"type": "string"}}},
            "c": {"type": "object", "properties": {}, "additionalProperties": true},
            "d": {"type": "array", "items": {"type": "object", "properties": {"e": {}}}}
        }});
        close_objects(&mut s, 0);
        assert_eq!(s["additionalProperties"], json!(false));
        assert_eq!(s["properties"]["a"]["additionalProperties"], json!(false));
        assert_eq!(s["properties"]["c"]["additionalProperties"], json!(true));
        assert_eq!(
            s["properties"]["d"]["items"]["additionalProperties"],
            json!(false)
        );
    }

    #[test]
    fn numbers_beyond_the_integer_range_are_refused() {
        let ok = json!({"type": "integer", "minimum": -4611686018427387904i64, "maximum": 1e18,
            "enum": [1, 2.5], "const": {"a": [-7]}});
        assert!(check_numbers(&ok, "p").is_ok());
        for bad in [
            json!({"type": "integer", "minimum": -1e308}),
            json!({"properties": {"a": {"allOf": [{"maximum": 9.3e18}]}}}),
            json!({"anyOf": [{"exclusiveMinimum": i64::MIN}]}),
            json!({"const": {"x": [i64::MIN]}}),
            json!({"enum": [u64::MAX]}),
        ] {
            let e = check_numbers(&bad, "tools[0].function.parameters").unwrap_err();
            assert_eq!(e.param(), Some("tools[0].function.parameters"), "{bad}");
        }
    }

    #[test]
    fn non_object_parameters_are_rejected_with_the_parameter_named() {
        let e = arguments_schema(
            Some(&json!({"type": "string"})),
            "tools[0].function.parameters",
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("tools[0].function.parameters"),
            "{e}"
        );
        assert!(arguments_schema(Some(&json!(3)), "p").is_err());
        assert!(arguments_schema(None, "p").is_ok());
    }
}
