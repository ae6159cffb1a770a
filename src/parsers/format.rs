//! What a tool-call format is: the [`ToolFormat`] trait each format file implements, and the
//! description of its call syntax ([`CallGrammar`]) from which `constrain` builds the
//! grammars and from which the forced call openings are derived.

use super::{IdStyle, ScanCx, Step};

/// One tool-call output format: everything callm knows about it, in one place.
///
/// Implemented once per format, in `src/parsers/formats/NAME.rs`, and listed once in
/// `formats/mod.rs`. The scanner serves both one-shot and streaming parsing (through the
/// shared loop in `stream`); the grammar description serves constrained decoding
/// (`constrain::grammar`); the openings are what the prompt forces for `tool_choice`
/// `required` / named, and by default follow from the grammar, so they always fit it.
///
/// A format's registry name (what `models.toml` `parsers = [...]` says) is its file's name.
pub trait ToolFormat: Send + Sync + std::fmt::Debug {
    /// Decides what the text at byte `pos` (a char boundary, `pos < text.len()`) is.
    fn scan(&self, cx: &ScanCx<'_>, pos: usize) -> Step;

    /// How calls are written, for the constrained-decoding grammars.
    fn grammar(&self) -> CallGrammar;

    /// The id shape this format's models need.
    fn id_style(&self) -> IdStyle {
        IdStyle::OpenAi
    }

    /// End-of-turn markers this format's models write: dropped wherever they appear, before
    /// scanning (see `markers`).
    fn end_markers(&self) -> &'static [&'static str] {
        &[]
    }

    /// Role labels this format's models write at the very start of an answer: dropped there.
    fn leading_labels(&self) -> &'static [&'static str] {
        &[]
    }

    /// Text forced at the start of the answer for `tool_choice: "required"` (may be empty).
    fn required_opening(&self) -> String {
        self.grammar().required_opening()
    }

    /// Text forced at the start of the answer for a named `tool_choice` of `name`.
    fn named_opening(&self, name: &str) -> String {
        self.grammar().named_opening(name)
    }
}

/// How one call is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallSyntax {
    /// A JSON object `{"name": NAME, "KEY": {arguments}}`, with this arguments key.
    Json(&'static str),
    /// A Python call `NAME(keyword=value, ...)`.
    Python,
    /// ChatGLM3's layout: the name on its own line, then
    /// ```` ```python\ntool_call(keyword=value, ...)\n``` ````.
    GlmFence,
    /// The name, then `sep`, then the JSON arguments, then `tail`: Functionary v3.1's
    /// `NAME>{...}</function>` (after its `<function=` marker), Functionary v3.2's
    /// `NAME\n{...}`, Mistral's `NAME[ARGS]{...}`. With `id`, a 9-character call id follows
    /// that marker before `sep`: Mistral Small 3.2's `NAME[CALL_ID]a1b2c3d4e[ARGS]{...}`.
    NamedJson {
        /// Marker of a call id between the name and `sep`.
        id: Option<&'static str>,
        /// Between the name (or the id) and the arguments.
        sep: &'static str,
        /// After the arguments.
        tail: &'static str,
    },
    /// Qwen3-Coder's XML: `<function=NAME>\n`, then per argument
    /// `<parameter=KEY>\nVALUE\n</parameter>\n` (strings raw, other types as JSON), then
    /// `</function>`.
    Xml,
}

impl CallSyntax {
    /// The text of a call of `name` up to its arguments.
    ///
    /// For a call with an id ([`CallSyntax::NamedJson`] with `id`), the name alone: the id
    /// is the grammar's to write.
    pub fn head(&self, name: &str) -> String {
        match self {
            CallSyntax::Json(key) => format!("{{\"name\": {}, \"{key}\": ", json_str(name)),
            CallSyntax::Python => format!("{name}("),
            CallSyntax::GlmFence => format!("{name}\n```python\ntool_call("),
            CallSyntax::NamedJson { id: Some(_), .. } => name.to_string(),
            CallSyntax::NamedJson { id: None, sep, .. } => format!("{name}{sep}"),
            CallSyntax::Xml => format!("<function={name}>\n"),
        }
    }

    /// The text that closes a call after its arguments.
    pub fn tail(&self) -> &'static str {
        match self {
            CallSyntax::Json(_) => "}",
            CallSyntax::Python => ")",
            CallSyntax::GlmFence => ")\n```",
            CallSyntax::NamedJson { tail, .. } => tail,
            CallSyntax::Xml => "</function>",
        }
    }

    /// The text of any call up to its name (a JSON call's name is a string).
    fn before_name(&self) -> &'static str {
        match self {
            CallSyntax::Json(_) => "{\"name\": \"",
            CallSyntax::Xml => "<function=",
            CallSyntax::Python | CallSyntax::GlmFence | CallSyntax::NamedJson { .. } => "",
        }
    }
}

/// Text before the first call of a list, between calls, and after the last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CallList {
    /// Before the first call.
    pub open: &'static str,
    /// Between two calls.
    pub sep: &'static str,
    /// After the last call.
    pub close: &'static str,
}

impl CallList {
    /// A list with these delimiters.
    pub const fn new(open: &'static str, sep: &'static str, close: &'static str) -> Self {
        CallList { open, sep, close }
    }
}

/// The layout of a format's calls in an answer: what `constrain::grammar` turns into lark
/// for `required`, named and `auto` tool choices. Built with [`CallGrammar::new`] and the
/// `with_*` methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallGrammar {
    /// How one call is written.
    pub call: CallSyntax,
    /// Marker that opens calls anywhere in the text, followed by [`CallGrammar::list`].
    pub marker: Option<&'static str>,
    /// The calls after the marker.
    pub list: CallList,
    /// Several calls repeat the whole marker block, separated by this (Hermes).
    pub repeat_block: Option<&'static str>,
    /// Calls may stand bare at the start of the answer, in this list; forced (`required`,
    /// named) answers are then written in this form.
    pub bare: Option<CallList>,
    /// The format has only one call per answer.
    pub single: bool,
    /// Texts that may be control tokens of the model (`[ARGS]`, `<|/tool_call|>`...): where
    /// they occur in the call syntax or the list delimiters, the grammar writes the token.
    pub controls: &'static [&'static str],
}

impl CallGrammar {
    /// A grammar of `call`s with no marker and no bare form yet.
    pub const fn new(call: CallSyntax) -> Self {
        CallGrammar {
            call,
            marker: None,
            list: CallList::new("", "", ""),
            repeat_block: None,
            bare: None,
            single: false,
            controls: &[],
        }
    }

    /// These texts may be control tokens (see [`CallGrammar::controls`]).
    pub const fn with_controls(self, controls: &'static [&'static str]) -> Self {
        CallGrammar { controls, ..self }
    }

    /// Calls open with `marker`, followed by `list`.
    pub const fn with_marker(self, marker: &'static str, list: CallList) -> Self {
        CallGrammar {
            marker: Some(marker),
            list,
            ..self
        }
    }

    /// Calls may stand bare, in `list`, at the start of the answer.
    pub const fn with_bare(self, list: CallList) -> Self {
        CallGrammar {
            bare: Some(list),
            ..self
        }
    }

    /// Several calls repeat the marker block, separated by `sep`.
    pub const fn repeat_blocks(self, sep: &'static str) -> Self {
        CallGrammar {
            repeat_block: Some(sep),
            ..self
        }
    }

    /// One call per answer.
    pub const fn single_call(self) -> Self {
        CallGrammar {
            single: true,
            ..self
        }
    }

    /// Whether `required`/named answers are written in the marker form (the format has a
    /// marker and no bare form).
    pub fn forced_in_marker_form(&self) -> bool {
        self.marker.is_some() && self.bare.is_none()
    }

    /// The text of a `required`/named answer before its first call.
    fn forced_start(&self) -> String {
        match (self.marker, self.bare) {
            (Some(m), _) if self.forced_in_marker_form() => format!("{m}{}", self.list.open),
            (_, Some(bare)) => bare.open.to_string(),
            _ => self.list.open.to_string(),
        }
    }

    /// The answer start forced for `tool_choice: "required"`: up to the function name.
    pub fn required_opening(&self) -> String {
        format!("{}{}", self.forced_start(), self.call.before_name())
    }

    /// The answer start forced for a named `tool_choice`: up to the arguments.
    pub fn named_opening(&self, name: &str) -> String {
        format!("{}{}", self.forced_start(), self.call.head(name))
    }
}

/// A JSON string literal.
fn json_str(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".into())
}
