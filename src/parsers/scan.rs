//! Shared scanning helpers: marker search with held-back partial markers, whitespace,
//! lenient JSON reading and bare-JSON call detection.

use serde_json::Value;

use super::pylit::{self, PyError};
use super::{RawCall, ScanCx, Step};

/// Whether `text[i..]` starts with `marker`, or (text still growing) is a proper prefix of it.
fn trigger_at(cx: &ScanCx<'_>, i: usize, marker: &str) -> bool {
    let rest = &cx.text[i..];
    rest.starts_with(marker) || (!cx.eof && !rest.is_empty() && marker.starts_with(rest))
}

/// The first position `>= from` where a marker starts (or may start) or a trigger byte is.
pub fn next_trigger(cx: &ScanCx<'_>, from: usize, markers: &[&str], bytes: &[u8]) -> Option<usize> {
    let b = cx.text.as_bytes();
    let firsts: Vec<u8> = markers
        .iter()
        .filter_map(|m| m.as_bytes().first().copied())
        .collect();
    (from..b.len()).find(|&i| {
        let c = b[i];
        bytes.contains(&c) || (firsts.contains(&c) && markers.iter().any(|m| trigger_at(cx, i, m)))
    })
}

/// Content from `pos` up to the next trigger after it (or the end).
pub fn content_until_trigger(cx: &ScanCx<'_>, pos: usize, markers: &[&str], bytes: &[u8]) -> Step {
    let next = next_trigger(cx, pos + 1, markers, bytes).unwrap_or(cx.text.len());
    Step::Content(next - pos)
}

/// What a marker at `pos` is: fully there, possibly there (text too short yet), or absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkerAt {
    /// The marker is at `pos`.
    Yes,
    /// The text ends with a prefix of the marker and may still grow.
    Maybe,
    /// No marker at `pos`.
    No,
}

/// Whether `marker` is at `pos`.
pub fn marker_at(cx: &ScanCx<'_>, pos: usize, marker: &str) -> MarkerAt {
    let rest = &cx.text[pos..];
    if rest.starts_with(marker) {
        MarkerAt::Yes
    } else if !cx.eof && marker.starts_with(rest) {
        MarkerAt::Maybe
    } else {
        MarkerAt::No
    }
}

/// The first position `>= pos` that is not ASCII whitespace.
pub fn skip_ws(text: &str, pos: usize) -> usize {
    let b = text.as_bytes();
    let mut i = pos;
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// The first position `>= pos` that is not a space or tab.
pub fn skip_blank(text: &str, pos: usize) -> usize {
    let b = text.as_bytes();
    let mut i = pos;
    while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
        i += 1;
    }
    i
}

/// Outcome of reading a value or call that may be incomplete.
#[derive(Debug, Clone, PartialEq)]
pub enum Read<T> {
    /// Read, ending at the given byte.
    Done(T, usize),
    /// Text ended inside; more may complete it.
    More,
    /// Not valid (at end of output an incomplete value is invalid too).
    Bad,
    /// Nested deeper than the limit at the given byte: text up to there is no call.
    Deep(usize),
}

/// Maps a parse result to [`Read`], treating `Incomplete` by whether the text is final.
pub fn read<T>(cx: &ScanCx<'_>, r: Result<(T, usize), PyError>) -> Read<T> {
    match r {
        Ok((v, end)) => Read::Done(v, end),
        Err(PyError::Incomplete) if !cx.eof => Read::More,
        Err(PyError::TooDeep { pos }) => Read::Deep(pos),
        Err(_) => Read::Bad,
    }
}

/// Reads a JSON value (leniently: Python literal syntax accepted) at `pos`.
pub fn json_at(cx: &ScanCx<'_>, pos: usize) -> Read<Value> {
    match read(cx, pylit::parse_expr_at(cx.text, pos, cx.eof)) {
        Read::Done(v, end) => Read::Done(pylit::to_json(&v, cx.tools), end),
        Read::More => Read::More,
        Read::Bad => Read::Bad,
        Read::Deep(t) => Read::Deep(t),
    }
}

/// Reads a call expression at `pos`, converting arguments to JSON.
pub fn py_call_at(cx: &ScanCx<'_>, pos: usize) -> Read<RawCall> {
    match read(cx, pylit::parse_call_at(cx.text, pos, cx.eof)) {
        Read::Done(c, end) => {
            let arguments = Value::Object(pylit::call_arguments(&c, cx.tools));
            Read::Done(
                RawCall {
                    name: c.name,
                    arguments,
                    raw: cx.text[pos..end].to_string(),
                },
                end,
            )
        }
        Read::More => Read::More,
        Read::Bad => Read::Bad,
        Read::Deep(t) => Read::Deep(t),
    }
}

/// The name and arguments of a call object: `{"name", "arguments"|"parameters"}` or
/// `{"function": {...}}`. With `strict`, the arguments key is required.
pub fn call_from_value(v: &Value, strict: bool) -> Option<(String, Value)> {
    let obj = v.as_object()?;
    if let Some(f @ Value::Object(_)) = obj.get("function") {
        return call_from_value(f, strict);
    }
    let name = obj.get("name")?.as_str()?.trim();
    if name.is_empty() {
        return None;
    }
    let args = obj.get("arguments").or_else(|| obj.get("parameters"));
    match args {
        Some(a) => Some((name.to_string(), a.clone())),
        None if strict => None,
        None => Some((name.to_string(), Value::Null)),
    }
}

/// A raw call from a call object.
pub fn raw_call(v: &Value, strict: bool, raw: &str) -> Option<RawCall> {
    let (name, arguments) = call_from_value(v, strict)?;
    Some(RawCall {
        name,
        arguments,
        raw: raw.to_string(),
    })
}

/// Calls in a JSON value: one call object, or a non-empty array of them.
pub fn calls_in_value(v: &Value, strict: bool, raw: &str) -> Option<Vec<RawCall>> {
    match v {
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .map(|x| raw_call(x, strict, &x.to_string()))
            .collect::<Option<Vec<_>>>(),
        Value::Object(_) => Some(vec![raw_call(v, strict, raw)?]),
        _ => None,
    }
}

/// Markers that start a bare-JSON candidate (a fenced block).
pub const FENCE: &str = "```";

/// Trigger bytes of bare-JSON candidates.
pub const BARE_BYTES: &[u8] = b"{[";

/// Bare JSON calls at `pos`: an object `{"name":..., "arguments"|"parameters":...}`, an array
/// of them, or either inside a ```` ``` ```` fence. With `known_only`, every call must name a
/// declared tool. `None`: no candidate here; `Some(Content(n))`: a value that is no call.
pub fn bare_json_at(cx: &ScanCx<'_>, pos: usize, known_only: bool) -> Option<Step> {
    let text = cx.text;
    let b = text.as_bytes();
    let (start, fenced) = match b[pos] {
        b'{' | b'[' => (pos, false),
        b'`' => match marker_at(cx, pos, FENCE) {
            MarkerAt::Yes => {
                let lang = pylit::ident_len(text, pos + 3);
                let i = skip_ws(text, pos + 3 + lang);
                if i >= b.len() {
                    return (!cx.eof).then_some(Step::NeedMore);
                }
                if !matches!(b[i], b'{' | b'[') || !text[pos + 3 + lang..i].contains('\n') {
                    return None;
                }
                (i, true)
            }
            MarkerAt::Maybe => return Some(Step::NeedMore),
            MarkerAt::No => return None,
        },
        _ => return None,
    };
    // A quick look before reading: `{` must open a key, `[` must hold an object.
    let i = skip_ws(text, start + 1);
    if i >= b.len() {
        return if cx.eof { None } else { Some(Step::NeedMore) };
    }
    let ok = match b[start] {
        b'{' => matches!(b[i], b'"' | b'\''),
        _ => b[i] == b'{',
    };
    if !ok {
        return None;
    }
    let (v, end) = match json_at(cx, start) {
        Read::Done(v, end) => (v, end),
        Read::More => return Some(Step::NeedMore),
        Read::Bad => return None,
        Read::Deep(t) => return Some(Step::Content(t.max(pos + 1) - pos)),
    };
    let mut seg_end = end;
    if fenced {
        let j = skip_ws(text, end);
        match marker_at(cx, j, FENCE) {
            MarkerAt::Yes => seg_end = j + 3,
            MarkerAt::Maybe => return Some(Step::NeedMore),
            MarkerAt::No if j >= b.len() && cx.eof => seg_end = j,
            MarkerAt::No => return None,
        }
    }
    let calls = calls_in_value(&v, true, &text[start..end]);
    match calls {
        Some(calls) if !known_only || calls.iter().all(|c| cx.known(&c.name)) => {
            Some(Step::Calls {
                len: seg_end - pos,
                calls,
            })
        }
        _ if fenced => None,
        _ => Some(Step::Content(end - pos)),
    }
}

/// What follows a call marker (`<|python_tag|>`, `[TOOL_CALLS]`).
pub enum AfterMarker {
    /// The text decides: wait for more, a JSON call object/array, or not a call.
    Decided(Step),
    /// Something other than JSON starts at byte `at`: the format decides.
    Other {
        /// Where the non-JSON text starts (after whitespace).
        at: usize,
    },
}

/// Reads what follows a `marker_len`-byte marker at `pos`: waits at the end of unfinished
/// text, and turns a following JSON object or array of `{name, arguments|parameters}` into
/// calls (the marker alone becomes content when the JSON is not a call).
pub fn json_calls_after_marker(cx: &ScanCx<'_>, pos: usize, marker_len: usize) -> AfterMarker {
    let text = cx.text;
    let i = skip_ws(text, pos + marker_len);
    let Some(&c) = text.as_bytes().get(i) else {
        return AfterMarker::Decided(if cx.eof {
            Step::Content(text.len() - pos)
        } else {
            Step::NeedMore
        });
    };
    if c != b'{' && c != b'[' {
        return AfterMarker::Other { at: i };
    }
    let not_call = Step::Content(marker_len);
    AfterMarker::Decided(match json_at(cx, i) {
        Read::Done(v, end) => match calls_in_value(&v, false, &text[i..end]) {
            Some(calls) => Step::Calls {
                len: end - pos,
                calls,
            },
            None => not_call,
        },
        Read::More => Step::NeedMore,
        Read::Bad | Read::Deep(_) => not_call,
    })
}
