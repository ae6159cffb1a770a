//! Python call syntax for the Python-call formats: `name(a=1, b="x")` whose keyword
//! arguments follow the tool's JSON Schema.
//!
//! Values are written as JSON, which is also Python literal syntax for strings, numbers,
//! lists and dicts (callm's Python-literal reader takes the rest); booleans and null are
//! written `True`/`False`/`None` where a parameter is plainly boolean or null. Keyword
//! arguments come in the schema's property order; required ones always, optional ones
//! may be left out.

use serde_json::Value;

use super::schema::{embed, lit};
use super::ConstrainError;

/// Checks that a tool name can be written as a (dotted) Python name.
pub fn check_name(name: &str, index: usize) -> Result<(), ConstrainError> {
    if !name.is_empty() && name.split('.').all(is_ident) {
        Ok(())
    } else {
        Err(ConstrainError::bad(
            &format!("tools[{index}].function.name"),
            format!("\"{name}\" cannot be written in this model's Python call syntax"),
        ))
    }
}

fn is_ident(s: &str) -> bool {
    let mut cs = s.chars();
    matches!(cs.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && cs.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// A tool's `properties` in order and its `required` names, each required name among the
/// properties.
pub(crate) type Properties<'a> = (Vec<(&'a String, &'a Value)>, Vec<&'a str>);

/// Reads a tool's `properties` and `required` (shared by the keyword-argument and XML-call
/// grammars).
pub(crate) fn properties<'a>(
    args: &'a Value,
    param: &str,
) -> Result<Properties<'a>, ConstrainError> {
    let props: Vec<(&String, &Value)> = match args.get("properties") {
        Some(Value::Object(p)) => p.iter().collect(),
        Some(_) => {
            return Err(ConstrainError::bad(
                param,
                "\"properties\" must be an object",
            ))
        }
        None => Vec::new(),
    };
    let required: Vec<&str> = args
        .get("required")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for r in &required {
        if !props.iter().any(|(k, _)| k.as_str() == *r) {
            return Err(ConstrainError::bad(
                param,
                format!("required parameter \"{r}\" is not among the properties"),
            ));
        }
    }
    Ok((props, required))
}

/// Adds the keyword-argument rules of tool `i` to `g`; returns the rule to reference.
pub fn kwargs_rules(
    g: &mut String,
    i: usize,
    args: &Value,
    lenient: bool,
    param: &str,
) -> Result<String, ConstrainError> {
    let (props, required) = properties(args, param)?;
    let n = props.len();
    if n == 0 {
        return Ok(lit(""));
    }
    for (j, (k, s)) in props.iter().enumerate() {
        if !is_ident(k) {
            return Err(ConstrainError::bad(
                param,
                format!("parameter \"{k}\" cannot be written as a Python keyword argument"),
            ));
        }
        g.push_str(&format!("v_{i}_{j}: {}\n", value_rule(s, lenient)));
    }
    // a_i_j_f: parameters j.. with nothing written yet; a_i_j_n: after something.
    for j in (0..n).rev() {
        let (k, _) = props[j];
        let req = required.contains(&k.as_str());
        let next_n = if j + 1 < n {
            format!(" a_{i}_{}_n", j + 1)
        } else {
            String::new()
        };
        let next_f = if j + 1 < n {
            format!("a_{i}_{}_f", j + 1)
        } else {
            lit("")
        };
        let next_n_alone = if j + 1 < n {
            format!("a_{i}_{}_n", j + 1)
        } else {
            lit("")
        };
        let first = format!("{} v_{i}_{j}{next_n}", lit(&format!("{k}=")));
        let later = format!("{} v_{i}_{j}{next_n}", lit(&format!(", {k}=")));
        if req {
            g.push_str(&format!("a_{i}_{j}_f: {first}\n"));
            g.push_str(&format!("a_{i}_{j}_n: {later}\n"));
        } else {
            g.push_str(&format!("a_{i}_{j}_f: {first} | {next_f}\n"));
            g.push_str(&format!("a_{i}_{j}_n: {later} | {next_n_alone}\n"));
        }
    }
    Ok(format!("a_{i}_0_f"))
}

/// The value grammar of one parameter.
fn value_rule(schema: &Value, lenient: bool) -> String {
    let plain = |t: &str| {
        schema.get("type").and_then(Value::as_str) == Some(t)
            && schema.get("enum").is_none()
            && schema.get("const").is_none()
    };
    if plain("boolean") {
        return format!("{} | {}", lit("True"), lit("False"));
    }
    if plain("null") {
        return lit("None");
    }
    embed(schema, lenient)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_python_names() {
        assert!(check_name("get_weather", 0).is_ok());
        assert!(check_name("math.add", 0).is_ok());
        assert!(check_name("get-weather", 3)
            .unwrap_err()
            .to_string()
            .contains("tools[3].function.name"));
        assert!(check_name("", 0).is_err());
    }
}
