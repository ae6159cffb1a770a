//! A safe parser of Python literals and call expressions (nothing is ever evaluated).
//!
//! Accepted: calls `f(1, k='v')` with dotted names (`brave_search.call(...)`), strings in
//! every quote style (`'..'`, `".."`, triple quotes, `r`/`b`/`u` prefixes and their
//! combinations) with Python and JSON escapes, ints (signed, `_` separators, `0x`/`0o`/`0b`),
//! floats, `True`/`False`/`None`, lists, tuples, dicts and sets (sets become lists).
//! As a leniency for drifting models, the JSON keywords `true`/`false`/`null` are accepted
//! too, so every JSON document is also accepted.
//!
//! Nesting is capped at [`MAX_DEPTH`]; deeper input is an error, never a stack overflow.
//! The parser knows whether the text may still grow (`eof == false`): running into the end
//! of the text is then [`PyError::Incomplete`], which streaming parsers use to wait.
//!
//! Conversion to JSON lives in [`super::pylit_json`]: tuples and sets become arrays, non-string dict keys
//! their JSON text, ints beyond 64 bits floats, and a nested call becomes
//! `{"__call__": NAME, "arguments": {...}}` with positional arguments named as for a
//! top-level call.

/// Deepest nesting of containers and calls accepted.
pub const MAX_DEPTH: usize = 128;

/// A parsed Python literal.
#[derive(Debug, Clone, PartialEq)]
pub enum PyValue {
    /// `None` (or `null`).
    None,
    /// `True`/`False` (or `true`/`false`).
    Bool(bool),
    /// An integer.
    Int(i128),
    /// A float.
    Float(f64),
    /// A string (bytes literals are read as text).
    Str(String),
    /// A list or a set.
    List(Vec<PyValue>),
    /// A tuple.
    Tuple(Vec<PyValue>),
    /// A dict, keys in source order.
    Dict(Vec<(PyValue, PyValue)>),
    /// A call expression.
    Call(PyCall),
}

/// A call expression: `name(args..., key=value...)`.
#[derive(Debug, Clone, PartialEq)]
pub struct PyCall {
    /// The (possibly dotted) function name.
    pub name: String,
    /// Positional arguments, in order.
    pub args: Vec<PyValue>,
    /// Keyword arguments, in order.
    pub kwargs: Vec<(String, PyValue)>,
}

/// Why a text is not (yet) a literal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PyError {
    /// The text ends inside the expression (more text may complete it).
    #[error("input ends inside an expression")]
    Incomplete,
    /// The text is not a valid literal.
    #[error("invalid Python literal at byte {pos}: {what}")]
    Invalid {
        /// Byte offset of the problem.
        pos: usize,
        /// What was wrong.
        what: &'static str,
    },
    /// Nesting deeper than [`MAX_DEPTH`].
    #[error("nesting deeper than {MAX_DEPTH} at byte {pos}")]
    TooDeep {
        /// Byte offset where the limit was hit.
        pos: usize,
    },
}

type R<T> = Result<T, PyError>;

/// Parses a whole text as one literal (surrounding whitespace allowed).
pub fn parse_literal(text: &str) -> R<PyValue> {
    let mut p = Parser::new(text, 0, true);
    p.ws();
    let v = p.expr()?;
    p.ws();
    if p.pos != text.len() {
        return Err(p.invalid("trailing text"));
    }
    Ok(v)
}

/// Parses one expression starting at `pos` (no leading whitespace skipped); returns it and its end.
pub fn parse_expr_at(text: &str, pos: usize, eof: bool) -> R<(PyValue, usize)> {
    let mut p = Parser::new(text, pos, eof);
    let v = p.expr()?;
    Ok((v, p.pos))
}

/// Parses a call expression `name(...)` starting at `pos`; returns it and its end.
pub fn parse_call_at(text: &str, pos: usize, eof: bool) -> R<(PyCall, usize)> {
    let mut p = Parser::new(text, pos, eof);
    let name = p.dotted_name()?;
    p.ws();
    match p.peek() {
        Some(b'(') => {}
        Some(_) => return Err(p.invalid("expected '(' after a function name")),
        None => return Err(PyError::Incomplete),
    }
    let call = p.call_args(name)?;
    Ok((call, p.pos))
}

/// Length of the identifier (ASCII letters, digits, `_`, not starting with a digit) at `pos`.
pub fn ident_len(text: &str, pos: usize) -> usize {
    let b = text.as_bytes();
    let mut i = pos;
    while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
        if i == pos && b[i].is_ascii_digit() {
            return 0;
        }
        i += 1;
    }
    i - pos
}

struct Parser<'a> {
    s: &'a str,
    b: &'a [u8],
    pos: usize,
    eof: bool,
    depth: usize,
}

impl<'a> Parser<'a> {
    fn new(s: &'a str, pos: usize, eof: bool) -> Self {
        Parser {
            s,
            b: s.as_bytes(),
            pos: pos.min(s.len()),
            eof,
            depth: 0,
        }
    }

    fn invalid(&self, what: &'static str) -> PyError {
        PyError::Invalid {
            pos: self.pos,
            what,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    fn need(&self) -> R<u8> {
        self.peek().ok_or(PyError::Incomplete)
    }

    fn ws(&mut self) {
        while let Some(c) = self.peek() {
            if c == b' ' || c == b'\t' || c == b'\n' || c == b'\r' {
                self.pos += 1;
            } else if c == b'\\' && matches!(self.b.get(self.pos + 1), Some(b'\n')) {
                self.pos += 2;
            } else {
                break;
            }
        }
    }

    fn enter(&mut self) -> R<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(PyError::TooDeep { pos: self.pos });
        }
        Ok(())
    }

    /// An identifier; running into the end of a growing text is `Incomplete`.
    fn ident(&mut self) -> R<&'a str> {
        let n = ident_len(self.s, self.pos);
        if n == 0 {
            return match self.peek() {
                None => Err(PyError::Incomplete),
                Some(_) => Err(self.invalid("expected a name")),
            };
        }
        let start = self.pos;
        self.pos += n;
        if self.pos == self.b.len() && !self.eof {
            return Err(PyError::Incomplete);
        }
        Ok(&self.s[start..self.pos])
    }

    fn dotted_name(&mut self) -> R<String> {
        let mut name = self.ident()?.to_string();
        while self.peek() == Some(b'.') {
            self.pos += 1;
            name.push('.');
            name.push_str(self.ident()?);
        }
        Ok(name)
    }

    fn expr(&mut self) -> R<PyValue> {
        let c = self.need()?;
        match c {
            b'\'' | b'"' => self.string(false),
            b'[' => self.list(),
            b'(' => self.paren(),
            b'{' => self.dict(),
            b'-' | b'+' | b'0'..=b'9' | b'.' => self.number(),
            c if c.is_ascii_alphabetic() || c == b'_' => self.word(),
            _ => Err(self.invalid("unexpected character")),
        }
    }

    fn word(&mut self) -> R<PyValue> {
        let start = self.pos;
        let n = ident_len(self.s, start);
        let w = &self.s[start..start + n];
        if n <= 2 && matches!(self.b.get(start + n), Some(b'\'' | b'"')) {
            let lw = w.to_ascii_lowercase();
            if matches!(lw.as_str(), "r" | "u" | "b" | "rb" | "br") {
                self.pos += n;
                return self.string(lw.contains('r'));
            }
        }
        let name = self.dotted_name()?;
        let after = self.pos;
        self.ws();
        if self.peek() == Some(b'(') {
            self.enter()?;
            let call = self.call_args(name)?;
            self.depth -= 1;
            return Ok(PyValue::Call(call));
        }
        if self.peek().is_none() && !self.eof {
            return Err(PyError::Incomplete);
        }
        self.pos = after;
        match name.as_str() {
            "True" | "true" => Ok(PyValue::Bool(true)),
            "False" | "false" => Ok(PyValue::Bool(false)),
            "None" | "null" => Ok(PyValue::None),
            _ => Err(PyError::Invalid {
                pos: start,
                what: "a bare name is not a literal",
            }),
        }
    }

    /// The argument list of a call, the cursor on `(`.
    fn call_args(&mut self, name: String) -> R<PyCall> {
        self.pos += 1;
        let mut call = PyCall {
            name,
            args: Vec::new(),
            kwargs: Vec::new(),
        };
        loop {
            self.ws();
            if self.need()? == b')' {
                self.pos += 1;
                return Ok(call);
            }
            let save = self.pos;
            let n = ident_len(self.s, save);
            let mut keyword = None;
            if n > 0 {
                self.pos += n;
                self.ws();
                if self.peek().is_none() {
                    return Err(PyError::Incomplete);
                }
                if self.peek() == Some(b'=') && self.b.get(self.pos + 1) != Some(&b'=') {
                    if self.pos + 1 >= self.b.len() {
                        return Err(PyError::Incomplete);
                    }
                    keyword = Some(self.s[save..save + n].to_string());
                    self.pos += 1;
                    self.ws();
                } else {
                    self.pos = save;
                }
            }
            let v = self.expr()?;
            match keyword {
                Some(k) => call.kwargs.push((k, v)),
                None => call.args.push(v),
            }
            self.ws();
            match self.need()? {
                b',' => self.pos += 1,
                b')' => {}
                _ => return Err(self.invalid("expected ',' or ')' in a call")),
            }
        }
    }

    fn items(&mut self, close: u8) -> R<(Vec<PyValue>, bool)> {
        let mut out = Vec::new();
        let mut comma = false;
        loop {
            self.ws();
            if self.need()? == close {
                self.pos += 1;
                return Ok((out, comma));
            }
            out.push(self.expr()?);
            self.ws();
            match self.need()? {
                b',' => {
                    comma = true;
                    self.pos += 1;
                }
                c if c == close => {}
                _ => return Err(self.invalid("expected ',' or a closing bracket")),
            }
        }
    }

    fn list(&mut self) -> R<PyValue> {
        self.enter()?;
        self.pos += 1;
        let (items, _) = self.items(b']')?;
        self.depth -= 1;
        Ok(PyValue::List(items))
    }

    fn paren(&mut self) -> R<PyValue> {
        self.enter()?;
        self.pos += 1;
        let (mut items, comma) = self.items(b')')?;
        self.depth -= 1;
        if items.len() == 1 && !comma {
            return Ok(items.remove(0));
        }
        Ok(PyValue::Tuple(items))
    }

    fn dict(&mut self) -> R<PyValue> {
        self.enter()?;
        self.pos += 1;
        self.ws();
        if self.need()? == b'}' {
            self.pos += 1;
            self.depth -= 1;
            return Ok(PyValue::Dict(Vec::new()));
        }
        let first = self.expr()?;
        self.ws();
        if self.need()? != b':' {
            // A set literal: read the rest as items.
            let mut items = vec![first];
            match self.need()? {
                b',' => self.pos += 1,
                b'}' => {}
                _ => return Err(self.invalid("expected ':' , ',' or '}'")),
            }
            let (rest, _) = self.items(b'}')?;
            items.extend(rest);
            self.depth -= 1;
            return Ok(PyValue::List(items));
        }
        let mut pairs = Vec::new();
        let mut key = first;
        loop {
            self.pos += 1; // ':'
            self.ws();
            let v = self.expr()?;
            pairs.push((key, v));
            self.ws();
            match self.need()? {
                b',' => self.pos += 1,
                b'}' => {
                    self.pos += 1;
                    self.depth -= 1;
                    return Ok(PyValue::Dict(pairs));
                }
                _ => return Err(self.invalid("expected ',' or '}' in a dict")),
            }
            self.ws();
            if self.need()? == b'}' {
                self.pos += 1;
                self.depth -= 1;
                return Ok(PyValue::Dict(pairs));
            }
            key = self.expr()?;
            self.ws();
            if self.need()? != b':' {
                return Err(self.invalid("expected ':' in a dict"));
            }
        }
    }

    fn number(&mut self) -> R<PyValue> {
        let mut neg = false;
        while let Some(c @ (b'-' | b'+')) = self.peek() {
            if c == b'-' {
                neg = !neg;
            }
            self.pos += 1;
            self.ws();
        }
        let start = self.pos;
        let mut prev = 0u8;
        while let Some(c) = self.peek() {
            let exp_sign = (c == b'+' || c == b'-') && (prev == b'e' || prev == b'E');
            if c.is_ascii_alphanumeric() || c == b'_' || c == b'.' || exp_sign {
                prev = c;
                self.pos += 1;
            } else {
                break;
            }
        }
        if self.pos == self.b.len() && !self.eof {
            return Err(PyError::Incomplete);
        }
        let tok: String = self.s[start..self.pos]
            .chars()
            .filter(|&c| c != '_')
            .collect();
        let lower = tok.to_ascii_lowercase();
        let radix = match lower.get(..2) {
            Some("0x") => 16,
            Some("0o") => 8,
            Some("0b") => 2,
            _ => 10,
        };
        let bad = PyError::Invalid {
            pos: start,
            what: "malformed number",
        };
        if radix != 10 {
            let v = i128::from_str_radix(&lower[2..], radix).map_err(|_| bad)?;
            return Ok(PyValue::Int(if neg { -v } else { v }));
        }
        if tok.is_empty() || !tok.as_bytes()[0].is_ascii_digit() && tok.as_bytes()[0] != b'.' {
            return Err(bad);
        }
        if !lower.contains(['.', 'e']) {
            if let Ok(v) = tok.parse::<i128>() {
                return Ok(PyValue::Int(if neg { -v } else { v }));
            }
        }
        if lower.contains(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | 'e' | '+' | '-'))) {
            return Err(bad);
        }
        let v: f64 = tok.parse().map_err(|_| bad)?;
        Ok(PyValue::Float(if neg { -v } else { v }))
    }

    /// A string literal, the cursor on its opening quote.
    fn string(&mut self, raw: bool) -> R<PyValue> {
        let q = self.b[self.pos];
        let triple = self.b.get(self.pos + 1) == Some(&q) && self.b.get(self.pos + 2) == Some(&q);
        if !triple
            && self.b.get(self.pos + 1) == Some(&q)
            && self.pos + 2 >= self.b.len()
            && !self.eof
        {
            return Err(PyError::Incomplete); // `''` may still become `'''`
        }
        self.pos += if triple { 3 } else { 1 };
        let mut out = String::new();
        loop {
            let rest = &self.s[self.pos..];
            // Copy the run up to the next quote or backslash in one go.
            let stop = rest
                .bytes()
                .position(|c| c == q || c == b'\\')
                .ok_or(PyError::Incomplete)?;
            out.push_str(&rest[..stop]);
            self.pos += stop;
            if self.b[self.pos] == q {
                if !triple {
                    self.pos += 1;
                    return Ok(PyValue::Str(out));
                }
                if self.b.get(self.pos + 1) == Some(&q) && self.b.get(self.pos + 2) == Some(&q) {
                    self.pos += 3;
                    return Ok(PyValue::Str(out));
                }
                if self.pos + 2 >= self.b.len() {
                    return Err(PyError::Incomplete);
                }
                out.push(q as char);
                self.pos += 1;
                continue;
            }
            // Backslash.
            let Some(&e) = self.b.get(self.pos + 1) else {
                return Err(PyError::Incomplete);
            };
            if raw {
                let ch_len = self.s[self.pos + 1..]
                    .chars()
                    .next()
                    .map_or(1, char::len_utf8);
                out.push_str(&self.s[self.pos..self.pos + 1 + ch_len]);
                self.pos += 1 + ch_len;
                continue;
            }
            self.pos += 2;
            match e {
                b'\n' => {}
                b'\\' => out.push('\\'),
                b'\'' => out.push('\''),
                b'"' => out.push('"'),
                b'/' => out.push('/'),
                b'n' => out.push('\n'),
                b'r' => out.push('\r'),
                b't' => out.push('\t'),
                b'a' => out.push('\x07'),
                b'b' => out.push('\x08'),
                b'f' => out.push('\x0c'),
                b'v' => out.push('\x0b'),
                b'0'..=b'7' => {
                    let mut v = u32::from(e - b'0');
                    for _ in 0..2 {
                        match self.peek() {
                            Some(d @ b'0'..=b'7') => {
                                v = v * 8 + u32::from(d - b'0');
                                self.pos += 1;
                            }
                            None => return Err(PyError::Incomplete),
                            _ => break,
                        }
                    }
                    out.push(char::from_u32(v).unwrap_or('\u{fffd}'));
                }
                b'x' => out.push(self.hex_char(2)?),
                b'u' => {
                    let hi = self.hex(4)?;
                    if (0xD800..0xDC00).contains(&hi) && self.s[self.pos..].starts_with("\\u") {
                        let save = self.pos;
                        self.pos += 2;
                        let lo = self.hex(4)?;
                        if (0xDC00..0xE000).contains(&lo) {
                            let c = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                            out.push(char::from_u32(c).unwrap_or('\u{fffd}'));
                            continue;
                        }
                        self.pos = save;
                    }
                    out.push(char::from_u32(hi).unwrap_or('\u{fffd}'));
                }
                b'U' => out.push(self.hex_char(8)?),
                _ => {
                    // Unknown escape: Python keeps the backslash.
                    self.pos -= 1;
                    out.push('\\');
                }
            }
        }
    }

    fn hex(&mut self, n: usize) -> R<u32> {
        let Some(digits) = self.s.get(self.pos..self.pos + n) else {
            return if self.eof {
                Err(self.invalid("short escape"))
            } else {
                Err(PyError::Incomplete)
            };
        };
        let v = u32::from_str_radix(digits, 16).map_err(|_| self.invalid("bad hex escape"))?;
        self.pos += n;
        Ok(v)
    }

    fn hex_char(&mut self, n: usize) -> R<char> {
        Ok(char::from_u32(self.hex(n)?).unwrap_or('\u{fffd}'))
    }
}

pub use super::pylit_json::{call_arguments, to_json};
