//! A family's formats tried in order: [`ParserChain`].

use crate::openai::ParsedOutput;

use super::{collect_events, get, id_style_of, Format, IdStyle, ParseOptions, ParserError};
use super::{markers::MarkerFilter, ScanCx, Step, StreamParser};

/// Several formats tried in order: at each position the first that finds a call wins;
/// an earlier format that still waits for text makes the chain wait.
///
/// The first format is the chain's own: its grammar and call openings are the family's.
#[derive(Debug, Clone)]
pub struct ParserChain {
    formats: Vec<Format>,
}

impl ParserChain {
    /// A chain of these formats (at least one).
    pub fn new(formats: Vec<Format>) -> Result<Self, ParserError> {
        if formats.is_empty() {
            return Err(ParserError::Empty);
        }
        Ok(ParserChain { formats })
    }

    /// A chain of one format, by name.
    pub fn single(name: &str) -> Result<Self, ParserError> {
        Self::new(vec![get(name)?])
    }

    /// The names of the formats in the chain.
    pub fn names(&self) -> Vec<&'static str> {
        self.formats.iter().map(|f| f.name()).collect()
    }

    /// The formats of the chain, in order.
    pub fn formats(&self) -> &[Format] {
        &self.formats
    }

    /// The chain's own format (its first): the one the grammar and openings come from.
    pub fn format(&self) -> Format {
        self.formats[0]
    }

    /// The filter of the end markers and leading labels of the chain's formats.
    pub fn marker_filter(&self) -> MarkerFilter {
        let mut ends: Vec<&'static str> = Vec::new();
        let mut labels: Vec<&'static str> = Vec::new();
        for f in &self.formats {
            ends.extend(f.def().end_markers());
            labels.extend(f.def().leading_labels());
        }
        ends.sort_unstable();
        ends.dedup();
        labels.sort_unstable();
        labels.dedup();
        MarkerFilter::new(ends, labels)
    }

    /// The id shape used when the options name none.
    pub fn id_style(&self) -> IdStyle {
        id_style_of(&self.formats)
    }

    /// Parses a complete output.
    pub fn parse(&self, text: &str, opts: &ParseOptions) -> ParsedOutput {
        let mut s = self.stream(opts.clone());
        let mut events = s.push(text);
        events.extend(s.finish());
        collect_events(&events)
    }

    /// A streaming parser for one output.
    pub fn stream(&self, opts: ParseOptions) -> StreamParser {
        StreamParser::new(self.clone(), opts)
    }

    /// How many formats the chain holds.
    pub fn len(&self) -> usize {
        self.formats.len()
    }

    /// Whether the chain is empty (never true for a chain built by [`ParserChain::new`]).
    pub fn is_empty(&self) -> bool {
        self.formats.is_empty()
    }

    /// The combined decision of the chain at `pos`.
    ///
    /// `until[i]` remembers how far format `i` has promised content: it is not asked again
    /// before that position (this keeps chains linear when one format sees far ahead).
    pub fn scan(&self, cx: &ScanCx<'_>, pos: usize, until: &mut [usize]) -> Step {
        let rest = cx.text.len() - pos;
        let mut content = rest;
        for (i, f) in self.formats.iter().enumerate() {
            if let Some(&u) = until.get(i) {
                if u > pos {
                    content = content.min(u - pos);
                    continue;
                }
            }
            match f.def().scan(cx, pos) {
                Step::Calls { len, calls } if len > 0 => {
                    return Step::Calls {
                        len: len.min(rest),
                        calls,
                    }
                }
                Step::Calls { .. } => content = content.min(1),
                Step::NeedMore if !cx.eof => return Step::NeedMore,
                Step::NeedMore => {}
                Step::Content(n) => {
                    let n = n.clamp(1, rest);
                    if let Some(u) = until.get_mut(i) {
                        *u = pos + n;
                    }
                    content = content.min(n);
                }
            }
        }
        Step::Content(content)
    }
}
