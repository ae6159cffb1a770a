//! Built-ins whose output can be much larger than their input, replaced by versions that check
//! the render's budget ([`super::limits`]) before they build anything.
//!
//! minijinja 3.1 itself checks `"x" * n`, `replace`, `join`, `format` (the filter), `indent`
//! (against the fuel only) and `range` (10^5 items). callm adds: an `indent` width limit,
//! `str.format` widths and precisions (minijinja-contrib's pycompat does not check them), and
//! bounded text of non-string values handed to these.

use minijinja::value::{from_args, Kwargs, Rest, StringInput, Value, ValueKind, ValueOrKwargs};
use minijinja::{Error, State};
use std::borrow::Cow;

use super::limits::{ensure_bytes, over_budget, serialized_budget, MAX_INDENT};
use super::pyjson::py_repr_within;

/// The text of a value as Python's `str()` gives it, containers within the render's budget.
pub fn text_of<'a>(state: &State, value: &'a Value) -> Result<Cow<'a, str>, Error> {
    if let Some(s) = value.as_str() {
        return Ok(Cow::Borrowed(s));
    }
    Ok(Cow::Owned(match value.kind() {
        ValueKind::Map | ValueKind::Seq | ValueKind::Iterable => {
            py_repr_within(value, serialized_budget(state))?
        }
        ValueKind::None | ValueKind::Undefined => "None".to_string(),
        ValueKind::Bool => if value.is_true() { "True" } else { "False" }.to_string(),
        _ => value.to_string(),
    }))
}

/// `indent(width=4, first=false, blank=false)` with `width <= MAX_INDENT` and its result
/// checked against the budget before it is built.
pub fn indent(state: &State, args: Rest<ValueOrKwargs>) -> Result<Value, Error> {
    let args = args.into_values();
    let (value, width, first, blank, kwargs): (
        &Value,
        Option<usize>,
        Option<bool>,
        Option<bool>,
        Kwargs,
    ) = from_args(&args)?;
    let width = match width {
        Some(w) => w,
        None => kwargs.get::<Option<usize>>("width")?.unwrap_or(4),
    };
    let first = match first {
        Some(f) => f,
        None => kwargs.get::<Option<bool>>("first")?.unwrap_or(false),
    };
    let blank = match blank {
        Some(b) => b,
        None => kwargs.get::<Option<bool>>("blank")?.unwrap_or(false),
    };
    kwargs.assert_all_used()?;
    if width > MAX_INDENT {
        return Err(over_budget(format!(
            "indent width {width} is over the limit of {MAX_INDENT}"
        )));
    }
    let text = Value::from(text_of(state, value)?.into_owned());
    let lines = text.as_str().map_or(0, |s| s.matches('\n').count()) + 1;
    let len = text.as_str().map_or(0, str::len);
    ensure_bytes(
        state,
        width.saturating_mul(lines).saturating_add(len),
        "indent",
    )?;
    let no_kwargs: Kwargs = std::iter::empty::<(&str, Value)>().collect();
    minijinja::filters::indent(
        StringInput::new(state, &text)?,
        Some(width),
        Some(first),
        Some(blank),
        no_kwargs,
    )
}

/// minijinja-contrib's Python methods, with `str.format`'s widths and precisions checked
/// against the budget first.
pub fn unknown_method(
    state: &mut State,
    value: &Value,
    method: &str,
    args: &[Value],
) -> Result<Value, Error> {
    if method == "format" {
        if let Some(fmt) = value.as_str() {
            ensure_bytes(
                state,
                format_padding(fmt).saturating_add(fmt.len()),
                "str.format",
            )?;
        }
    }
    minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args)
}

/// An upper bound of the padding a `str.format` string asks for: the sum of the numbers
/// (widths, precisions) in its replacement fields' format specs.
pub fn format_padding(fmt: &str) -> usize {
    let mut total = 0usize;
    let mut rest = fmt;
    while let Some(open) = rest.find('{') {
        rest = &rest[open + 1..];
        if let Some(after) = rest.strip_prefix('{') {
            rest = after;
            continue;
        }
        let end = rest.find('}').unwrap_or(rest.len());
        if let Some((_, spec)) = rest[..end].split_once(':') {
            let numbers = spec
                .split(|c: char| !c.is_ascii_digit())
                .filter(|n| !n.is_empty())
                .map(|n| n.parse::<usize>().unwrap_or(usize::MAX));
            for n in numbers {
                total = total.saturating_add(n);
            }
        }
        rest = &rest[end..];
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_padding_sums_widths_and_precisions_only() {
        assert_eq!(format_padding("Year 2024: {0} {name}"), 0);
        assert_eq!(format_padding("{:>10}|{0:.3f}|{{:99}}"), 13);
        assert_eq!(format_padding("{:>99999999999999999999999}"), usize::MAX);
    }
}
