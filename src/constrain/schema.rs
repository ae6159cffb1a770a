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
