//! Python-compatible serialization of template values: `json.dumps` and `repr`.
//!
//! transformers' `tojson` is `json.dumps(x, ensure_ascii=False, indent=indent,
//! separators=separators, sort_keys=sort_keys)`: default separators `", "` / `": "` without
//! indent, `","` / `": "` with it; key order kept; no HTML escaping. minijinja's own `tojson`
//! is compact and HTML-escapes, so callm registers this one instead.
//!
//! Both writers stop with an "out of fuel" error as soon as their output passes a byte limit
//! (templates pass what their remaining fuel pays for, see [`super::limits`]), and walk
//! sequences lazily: a lazily repeated list of 10^8 items costs nothing until it is written.

use minijinja::value::{Value, ValueKind};
use minijinja::{Error, ErrorKind};
use std::fmt::Write;

use super::limits::over_budget;
use super::protect::is_placeholder_char;

/// Options of a `json.dumps` call.
#[derive(Debug, Clone)]
pub struct DumpOptions {
    /// Escape every non-ASCII character as `\uXXXX` (Python's default is `true`).
    pub ensure_ascii: bool,
    /// Pretty-print with this many spaces per level; `None` = one line.
    pub indent: Option<String>,
    /// Item separator (default `", "`, or `","` when indenting).
    pub item_sep: String,
    /// Key separator (default `": "`).
    pub key_sep: String,
    /// Sort object keys.
    pub sort_keys: bool,
    /// Fail once the output passes this many bytes.
    pub max_bytes: usize,
}

impl DumpOptions {
    /// The options of transformers' `tojson` with the given indent (`ensure_ascii=False`).
    pub fn transformers(indent: Option<usize>) -> Self {
        Self::python(false, indent)
    }

    /// Python `json.dumps` defaults with the given `ensure_ascii` and indent.
    pub fn python(ensure_ascii: bool, indent: Option<usize>) -> Self {
        DumpOptions {
            ensure_ascii,
            indent: indent.map(|n| " ".repeat(n)),
            item_sep: if indent.is_some() { "," } else { ", " }.to_string(),
            key_sep: ": ".to_string(),
            sort_keys: false,
            max_bytes: usize::MAX,
        }
    }
}

/// Serializes `value` exactly as Python's `json.dumps` would with `opts`.
pub fn dumps(value: &Value, opts: &DumpOptions) -> Result<String, Error> {
    let mut out = String::new();
    write_value(&mut out, value, opts, 0)?;
    Ok(out)
}

/// Fails once an output of `len` bytes is longer than `max`.
fn check_len(len: usize, max: usize) -> Result<(), Error> {
    if len > max {
        return Err(over_budget(format!(
            "serialized value passes the {max} bytes left to this render"
        )));
    }
    Ok(())
}

fn write_value(out: &mut String, v: &Value, opts: &DumpOptions, level: usize) -> Result<(), Error> {
    match v.kind() {
        ValueKind::Undefined => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                "Object of type Undefined is not JSON serializable",
            ))
        }
        ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
        ValueKind::Number => write_number(out, v, true),
        ValueKind::String => write_json_str_within(out, v.as_str().unwrap_or_default(), opts)?,
        ValueKind::Bytes => write_json_str_within(
            out,
            &String::from_utf8_lossy(v.as_bytes().unwrap_or_default()),
            opts,
        )?,
        ValueKind::Map => write_map(out, v, opts, level)?,
        ValueKind::Seq | ValueKind::Iterable => write_seq(out, v, opts, level)?,
        _ => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("Object of type {} is not JSON serializable", v.kind()),
            ))
        }
    }
    Ok(())
}

fn newline(out: &mut String, opts: &DumpOptions, level: usize) {
    if let Some(ind) = &opts.indent {
        out.push('\n');
        for _ in 0..level {
            out.push_str(ind);
        }
    }
}

fn write_seq(out: &mut String, v: &Value, opts: &DumpOptions, level: usize) -> Result<(), Error> {
    out.push('[');
    let mut empty = true;
    for (i, item) in v.try_iter()?.enumerate() {
        if i > 0 {
            out.push_str(&opts.item_sep);
        }
        newline(out, opts, level + 1);
        write_value(out, &item, opts, level + 1)?;
        check_len(out.len(), opts.max_bytes)?;
        empty = false;
    }
    if !empty {
        newline(out, opts, level);
    }
    out.push(']');
    Ok(())
}

fn write_map(out: &mut String, v: &Value, opts: &DumpOptions, level: usize) -> Result<(), Error> {
    let mut entries = Vec::new();
    let mut key_bytes = out.len();
    for key in v.try_iter()? {
        let val = v.get_item(&key)?;
        let key = key_string(&key)?;
        key_bytes = key_bytes.saturating_add(key.len());
        check_len(key_bytes, opts.max_bytes)?;
        entries.push((key, val));
    }
    if opts.sort_keys {
        entries.sort_by(|a, b| a.0.cmp(&b.0));
    }
    if entries.is_empty() {
        out.push_str("{}");
        return Ok(());
    }
    out.push('{');
    for (i, (k, val)) in entries.iter().enumerate() {
        if i > 0 {
            out.push_str(&opts.item_sep);
        }
        newline(out, opts, level + 1);
        write_json_str_within(out, k, opts)?;
        out.push_str(&opts.key_sep);
        write_value(out, val, opts, level + 1)?;
        check_len(out.len(), opts.max_bytes)?;
    }
    newline(out, opts, level);
    out.push('}');
    Ok(())
}

/// Python converts non-string keys: numbers by repr, `True` -> "true", `None` -> "null".
fn key_string(key: &Value) -> Result<String, Error> {
    Ok(match key.kind() {
        ValueKind::String => key.as_str().unwrap_or_default().to_string(),
        ValueKind::Bool => if key.is_true() { "true" } else { "false" }.to_string(),
        ValueKind::None => "null".to_string(),
        ValueKind::Number => {
            let mut s = String::new();
            write_number(&mut s, key, true);
            s
        }
        _ => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                format!(
                    "keys must be str, int, float, bool or None, not {}",
                    key.kind()
                ),
            ))
        }
    })
}

/// Writes a number as Python does; `json` spells non-finite floats `NaN`/`Infinity`, repr `nan`/`inf`.
fn write_number(out: &mut String, v: &Value, json: bool) {
    if v.is_integer() {
        let _ = write!(out, "{v}");
        return;
    }
    match f64::try_from(v.clone()) {
        Ok(f) => out.push_str(&py_float_repr(f, json)),
        Err(_) => {
            let _ = write!(out, "{v}");
        }
    }
}

/// Python's `repr(float)`: shortest round-trip digits, exponent form below 1e-4 and from 1e16.
pub fn py_float_repr(f: f64, json: bool) -> String {
    if f.is_nan() {
        return if json { "NaN" } else { "nan" }.to_string();
    }
    if f.is_infinite() {
        let s = if json { "Infinity" } else { "inf" };
        return if f < 0.0 {
            format!("-{s}")
        } else {
            s.to_string()
        };
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0.0" } else { "0.0" }.to_string();
    }
    // Rust's `{:e}` gives the shortest round-trip digits: "1.2345e14", "-5e-7".
    let sci = format!("{:e}", f.abs());
    let (mant, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mant.chars().filter(|c| *c != '.').collect();
    let sign = if f < 0.0 { "-" } else { "" };
    let decpt = exp + 1;
    if !(-4 < decpt && decpt <= 16) {
        let mut m = digits[..1].to_string();
        if digits.len() > 1 {
            m.push('.');
            m.push_str(&digits[1..]);
        }
        let esign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{m}e{esign}{:02}", exp.abs());
    }
    let n = digits.len() as i32;
    let body = if decpt <= 0 {
        format!("0.{}{}", "0".repeat((-decpt) as usize), digits)
    } else if decpt >= n {
        format!("{}{}.0", digits, "0".repeat((decpt - n) as usize))
    } else {
        format!(
            "{}.{}",
            &digits[..decpt as usize],
            &digits[decpt as usize..]
        )
    };
    format!("{sign}{body}")
}

/// Writes a JSON string literal with Python's escaping rules.
pub fn write_json_str(out: &mut String, s: &str, ensure_ascii: bool) {
    let opts = DumpOptions::python(ensure_ascii, None);
    // Cannot fail: there is no byte limit.
    let _ = write_json_str_within(out, s, &opts);
}

/// [`write_json_str`] that fails once `out` passes `opts.max_bytes`.
fn write_json_str_within(out: &mut String, s: &str, opts: &DumpOptions) -> Result<(), Error> {
    let ensure_ascii = opts.ensure_ascii;
    check_len(out.len().saturating_add(s.len()), opts.max_bytes)?;
    out.push('"');
    for c in s.chars() {
        // Escapes can make the text up to 6 times longer than `s`: check as it grows.
        check_len(out.len(), opts.max_bytes)?;
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            // Placeholders of protected control-token text pass through to be restored later.
            c if ensure_ascii && (c as u32) > 0x7e && !is_placeholder_char(c) => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    Ok(())
}

/// Python's `repr()` of a value: `'str'`, `True`, `None`, `[1, 2]`, `{'k': 'v'}`.
pub fn py_repr(v: &Value) -> Result<String, Error> {
    py_repr_within(v, usize::MAX)
}

/// [`py_repr`] that fails once the text passes `max_bytes`.
pub fn py_repr_within(v: &Value, max_bytes: usize) -> Result<String, Error> {
    let mut out = String::new();
    write_repr(&mut out, v, max_bytes)?;
    Ok(out)
}

fn write_repr(out: &mut String, v: &Value, max: usize) -> Result<(), Error> {
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("None"),
        ValueKind::Bool => out.push_str(if v.is_true() { "True" } else { "False" }),
        ValueKind::Number => write_number(out, v, false),
        ValueKind::String => {
            write_py_str_within(out, v.as_str().unwrap_or_default(), max)?;
        }
        ValueKind::Map => {
            out.push('{');
            for (i, key) in v.try_iter()?.enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_repr(out, &key, max)?;
                out.push_str(": ");
                write_repr(out, &v.get_item(&key)?, max)?;
                check_len(out.len(), max)?;
            }
            out.push('}');
        }
        ValueKind::Seq | ValueKind::Iterable => {
            out.push('[');
            for (i, item) in v.try_iter()?.enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_repr(out, &item, max)?;
                check_len(out.len(), max)?;
            }
            out.push(']');
        }
        _ => {
            let _ = write!(out, "{v}");
        }
    }
    Ok(())
}

/// Python's string repr: single quotes unless the text has `'` and no `"`.
pub fn write_py_str(out: &mut String, s: &str) {
    // Cannot fail: there is no byte limit.
    let _ = write_py_str_within(out, s, usize::MAX);
}

/// [`write_py_str`] that fails once `out` passes `max` bytes.
fn write_py_str_within(out: &mut String, s: &str, max: usize) -> Result<(), Error> {
    check_len(out.len().saturating_add(s.len()), max)?;
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in s.chars() {
        // Escapes can make the text up to 4 times longer than `s`: check as it grows.
        check_len(out.len(), max)?;
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_like_python() {
        let cases = [
            (1.0, "1.0"),
            (0.5, "0.5"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-2.5e-7, "-2.5e-07"),
            (123.456, "123.456"),
            (1.5e300, "1.5e+300"),
        ];
        for (f, want) in cases {
            assert_eq!(py_float_repr(f, true), want, "{f}");
        }
    }

    #[test]
    fn dumps_like_python() {
        let v = crate::template::env::to_value(
            serde_json::json!({"b": [1, 2.0, "é\n"], "a": {}, "c": []}),
        );
        assert_eq!(
            dumps(&v, &DumpOptions::transformers(None)).unwrap(),
            r#"{"b": [1, 2.0, "é\n"], "a": {}, "c": []}"#
        );
        assert_eq!(
            dumps(&v, &DumpOptions::python(true, Some(2))).unwrap(),
            "{\n  \"b\": [\n    1,\n    2.0,\n    \"\\u00e9\\n\"\n  ],\n  \"a\": {},\n  \"c\": []\n}"
        );
        let v = Value::from("😀<>&'");
        assert_eq!(
            dumps(&v, &DumpOptions::python(true, None)).unwrap(),
            r#""\ud83d\ude00<>&'""#
        );
    }

    #[test]
    fn repr_like_python() {
        let v = crate::template::env::to_value(
            serde_json::json!({"a": "it's", "b": [true, null, 1.5], "c": "x'\"y"}),
        );
        assert_eq!(
            py_repr(&v).unwrap(),
            r#"{'a': "it's", 'b': [True, None, 1.5], 'c': 'x\'"y'}"#
        );
    }
}
