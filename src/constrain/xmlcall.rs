//! Qwen3-Coder's XML call syntax: `<function=NAME>\n` then, per argument,
//! `<parameter=KEY>\nVALUE\n</parameter>\n`, then `</function>`, with arguments that follow
//! the tool's JSON Schema.
//!
//! A string parameter's value is raw text (an `enum` of strings: one of them; else any text
//! without `</parameter>`, within `minLength`/`maxLength`); every other value is JSON for its
//! schema (the format's parser types the text back by the schema). Parameters come in the
//! schema's property order; required ones always, optional ones may be left out.

use serde_json::Value;

use super::grammar::regex_escape;
use super::schema::{embed, lit};
use super::ConstrainError;

/// Checks that a tool name can stand in `<function=NAME>`.
pub fn check_name(name: &str, index: usize) -> Result<(), ConstrainError> {
    if is_xml_name(name) {
        Ok(())
    } else {
        Err(ConstrainError::bad(
            &format!("tools[{index}].function.name"),
            format!("\"{name}\" cannot be written in this model's XML call syntax"),
        ))
    }
}

/// Whether `name` can stand in `<function=...>` / `<parameter=...>`.
fn is_xml_name(name: &str) -> bool {
    !name.is_empty() && !name.contains(['<', '>', '\n', '\r'])
}

/// Whether a property is written as raw text: its type is `string` (alone or with `null`),
/// or it declares no type (the parser keeps such values as text).
pub fn is_text(schema: &Value) -> bool {
    match schema.get("type") {
        Some(Value::String(t)) => t == "string",
        Some(Value::Array(ts)) => {
            ts.iter().any(|t| t == "string") && ts.iter().all(|t| t == "string" || t == "null")
        }
        Some(_) => false,
        None => ![
            "enum",
            "const",
            "anyOf",
            "oneOf",
            "allOf",
            "$ref",
            "properties",
            "items",
        ]
        .iter()
        .any(|k| schema.get(*k).is_some()),
    }
}

/// Adds the parameter rules of tool `i` to `g`; returns the rule to reference.
pub fn params_rules(
    g: &mut String,
    i: usize,
    args: &Value,
    lenient: bool,
    param: &str,
) -> Result<String, ConstrainError> {
    let (props, required) = super::pycall::properties(args, param)?;
    if props.is_empty() {
        return Ok(lit(""));
    }
    let mut seq = Vec::new();
    for (j, (k, s)) in props.iter().enumerate() {
        if !is_xml_name(k) {
            return Err(ConstrainError::bad(
                param,
                format!("parameter \"{k}\" cannot be written as an XML parameter name"),
            ));
        }
        let value = match value_rule(s, lenient, param)? {
            ValueGrammar::Rule(body) => body,
            ValueGrammar::Terminal(rx) => {
                g.push_str(&format!("VT_{i}_{j}: {rx}\n"));
                format!("VT_{i}_{j}")
            }
        };
        g.push_str(&format!("v_{i}_{j}: {value}\n"));
        g.push_str(&format!(
            "p_{i}_{j}: {} v_{i}_{j} {}\n",
            lit(&format!("<parameter={k}>\n")),
            lit("\n</parameter>\n")
        ));
        let opt = if required.contains(&k.as_str()) {
            ""
        } else {
            "?"
        };
        seq.push(format!("p_{i}_{j}{opt}"));
    }
    g.push_str(&format!("params_{i}: {}\n", seq.join(" ")));
    Ok(format!("params_{i}"))
}

/// A parameter's value grammar: a rule body, or a terminal (a regex) to name.
enum ValueGrammar {
    Rule(String),
    Terminal(String),
}

/// The value grammar of one parameter.
fn value_rule(schema: &Value, lenient: bool, param: &str) -> Result<ValueGrammar, ConstrainError> {
    if !is_text(schema) {
        return Ok(ValueGrammar::Rule(embed(schema, lenient)));
    }
    let strings: Option<Vec<&str>> = match (schema.get("enum"), schema.get("const")) {
        (Some(Value::Array(e)), _) => e.iter().map(Value::as_str).collect(),
        (_, Some(Value::String(c))) => Some(vec![c.as_str()]),
        _ => None,
    };
    if let Some(options) = strings.filter(|o| !o.is_empty()) {
        let alts: Vec<String> = options.iter().map(|o| lit(o)).collect();
        return Ok(ValueGrammar::Rule(alts.join(" | ")));
    }
    if !lenient && (schema.get("pattern").is_some() || schema.get("format").is_some()) {
        return Err(ConstrainError::bad(
            param,
            "a strict string parameter with a pattern or format cannot be enforced in this \
             model's XML call syntax",
        ));
    }
    let bound = |k: &str| schema.get(k).and_then(Value::as_u64);
    let min = bound("minLength").unwrap_or(0);
    let range = match bound("maxLength") {
        Some(max) => format!("{{{min},{}}}", max.max(min)),
        None => format!("{{{min},}}"),
    };
    Ok(ValueGrammar::Terminal(format!(
        "/(?s:.{range})/ & ~/(?s:.*){}(?s:.*)/",
        regex_escape("</parameter>")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strings_are_text_other_types_json() {
        assert!(is_text(&json!({"type": "string"})));
        assert!(is_text(&json!({"type": ["string", "null"]})));
        assert!(is_text(&json!({"description": "anything"})));
        assert!(!is_text(&json!({"type": "integer"})));
        assert!(!is_text(&json!({"type": ["integer", "string"]})));
        assert!(!is_text(&json!({"enum": [1, 2]})));
    }

    #[test]
    fn names_must_fit_the_tags() {
        assert!(check_name("get_weather", 0).is_ok());
        assert!(check_name("a>b", 2)
            .unwrap_err()
            .to_string()
            .contains("tools[2].function.name"));
    }
}
