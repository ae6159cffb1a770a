//! The scanning loop: feeds text to a [`ParserChain`], emits [`StreamEvent`]s.
//!
//! One-shot parsing is this loop run on the whole text, so streaming and one-shot agree.
//! Content is trimmed at both ends: leading whitespace is dropped, and a run of whitespace
//! is held back until non-whitespace content follows it (dropped at the end).

use crate::openai::{FunctionCall, ParsedOutput, ToolCall};

use super::markers::MarkerFilter;
use super::validate::{self, Verdict};
use super::{IdGen, ParseOptions, ParserChain, ScanCx, Step};

/// Buffers at least this long are rescanned only after growing by a quarter (keeps
/// tiny-chunk streaming of huge undecided text linear).
const RESCAN_FREE: usize = 4096;

/// One streaming event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    /// Text outside calls.
    Content(String),
    /// A thinking model's reasoning (split off before parsing: `answer::AnswerStream`).
    Reasoning(String),
    /// A call begins.
    ToolCallStart {
        /// Index of the call in the output (0-based).
        index: usize,
        /// The call id.
        id: String,
        /// The function name.
        name: String,
    },
    /// A fragment of the call's arguments JSON text.
    ArgumentsDelta {
        /// Index of the call.
        index: usize,
        /// The fragment.
        delta: String,
    },
    /// The call is complete.
    ToolCallEnd {
        /// Index of the call.
        index: usize,
    },
}

/// The reasoning of an answer's events, `None` when there is none.
pub fn collect_reasoning(events: &[StreamEvent]) -> Option<String> {
    let text: String = events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::Reasoning(t) => Some(t.as_str()),
            _ => None,
        })
        .collect();
    (!text.is_empty()).then_some(text)
}

/// Adds events up into the uniform output (reasoning aside: [`collect_reasoning`]).
pub fn collect_events(events: &[StreamEvent]) -> ParsedOutput {
    let mut content = String::new();
    let mut calls: Vec<ToolCall> = Vec::new();
    for e in events {
        match e {
            StreamEvent::Content(s) => content.push_str(s),
            StreamEvent::ToolCallStart { index, id, name } => {
                while calls.len() <= *index {
                    calls.push(ToolCall {
                        id: String::new(),
                        kind: "function".into(),
                        function: FunctionCall::default(),
                    });
                }
                calls[*index].id = id.clone();
                calls[*index].function.name = name.clone();
            }
            StreamEvent::ArgumentsDelta { index, delta } => {
                if let Some(c) = calls.get_mut(*index) {
                    c.function.arguments.push_str(delta);
                }
            }
            StreamEvent::ToolCallEnd { .. } | StreamEvent::Reasoning(_) => {}
        }
    }
    ParsedOutput {
        content: (!content.is_empty()).then_some(content),
        tool_calls: calls,
    }
}

/// An incremental parser of one model output.
#[derive(Debug)]
pub struct StreamParser {
    chain: ParserChain,
    opts: ParseOptions,
    ids: IdGen,
    markers: MarkerFilter,
    /// The filtered text received so far.
    text: String,
    pos: usize,
    scanned_len: usize,
    until: Vec<usize>,
    started: bool,
    pending_ws: String,
    next_index: usize,
    finished: bool,
}

impl StreamParser {
    /// A parser for one output, using `chain` and `opts`.
    pub fn new(chain: ParserChain, opts: ParseOptions) -> Self {
        let style = opts.id_style.unwrap_or_else(|| chain.id_style());
        let ids = IdGen::new(style, opts.id_seed);
        let n = chain.len();
        StreamParser {
            markers: chain.marker_filter(),
            chain,
            opts,
            ids,
            text: String::new(),
            pos: 0,
            scanned_len: 0,
            until: vec![0; n],
            started: false,
            pending_ws: String::new(),
            next_index: 0,
            finished: false,
        }
    }

    /// Feeds the next chunk of decoded text; returns the events it decides.
    pub fn push(&mut self, chunk: &str) -> Vec<StreamEvent> {
        let mut out = Vec::new();
        if self.finished || chunk.is_empty() {
            return out;
        }
        let chunk = self.markers.push(chunk, false);
        if chunk.is_empty() {
            return out;
        }
        self.text.push_str(&chunk);
        let pending = self.text.len() - self.pos;
        if pending >= RESCAN_FREE && self.text.len() < self.scanned_len + pending / 4 {
            return out;
        }
        self.run(false, &mut out);
        out
    }

    /// Ends the output: decides everything still held back.
    pub fn finish(&mut self) -> Vec<StreamEvent> {
        let mut out = Vec::new();
        if self.finished {
            return out;
        }
        let tail = self.markers.push("", true);
        self.text.push_str(&tail);
        self.run(true, &mut out);
        self.finished = true;
        self.pending_ws.clear();
        out
    }

    /// Ends an output the token limit cut: decides what later text could not have changed,
    /// then drops the undecided rest (a call the limit interrupted, or its marker) instead
    /// of making it content; complete calls at its start are kept (see [`super::cut`]).
    pub fn finish_cut(&mut self) -> Vec<StreamEvent> {
        let mut out = Vec::new();
        if self.finished {
            return out;
        }
        let tail = self.markers.push("", true);
        self.text.push_str(&tail);
        self.scanned_len = 0;
        self.run(false, &mut out);
        let text = std::mem::take(&mut self.text);
        let rest = &text[self.pos..];
        let tools = self.opts.tools.clone();
        if let Some(calls) = super::cut::salvage(&self.chain, tools.as_deref(), rest) {
            let cx = ScanCx {
                text: rest,
                eof: true,
                tools: tools.as_deref(),
            };
            self.calls(rest, calls, &cx, &mut out);
        }
        self.pos = text.len();
        self.text = text;
        self.finished = true;
        self.pending_ws.clear();
        out
    }

    /// The text received so far, end markers and leading labels dropped (the tail of a
    /// possible marker may still be held back).
    pub fn text(&self) -> &str {
        &self.text
    }

    fn run(&mut self, eof: bool, out: &mut Vec<StreamEvent>) {
        let text = std::mem::take(&mut self.text);
        let tools = self.opts.tools.clone();
        let cx = ScanCx {
            text: &text,
            eof,
            tools: tools.as_deref(),
        };
        while self.pos < text.len() {
            let rest = text.len() - self.pos;
            match self.chain.scan(&cx, self.pos, &mut self.until) {
                Step::NeedMore if !eof => break,
                Step::NeedMore => {
                    self.content(&text[self.pos..], out);
                    self.pos = text.len();
                }
                Step::Content(n) => {
                    let end = ceil_boundary(&text, self.pos + n.clamp(1, rest));
                    self.content(&text[self.pos..end], out);
                    self.pos = end;
                }
                Step::Calls { len, calls } => {
                    let end = ceil_boundary(&text, self.pos + len.clamp(1, rest));
                    let segment = &text[self.pos..end];
                    self.calls(segment, calls, &cx, out);
                    self.pos = end;
                }
            }
        }
        self.scanned_len = text.len();
        self.text = text;
    }

    fn calls(
        &mut self,
        segment: &str,
        calls: Vec<super::RawCall>,
        cx: &ScanCx<'_>,
        out: &mut Vec<StreamEvent>,
    ) {
        if calls.is_empty() {
            return;
        }
        let verdicts: Vec<Verdict> = calls
            .into_iter()
            .map(|c| validate::check(c, cx.tools))
            .collect();
        if verdicts.iter().all(|v| matches!(v, Verdict::Rejected(_))) {
            self.content(segment, out);
            return;
        }
        for v in verdicts {
            match v {
                Verdict::Accepted { name, arguments } => {
                    let index = self.next_index;
                    self.next_index += 1;
                    out.push(StreamEvent::ToolCallStart {
                        index,
                        id: self.ids.next_id(),
                        name,
                    });
                    out.push(StreamEvent::ArgumentsDelta {
                        index,
                        delta: arguments,
                    });
                    out.push(StreamEvent::ToolCallEnd { index });
                }
                Verdict::Rejected(raw) => self.content(&raw, out),
            }
        }
    }

    fn content(&mut self, piece: &str, out: &mut Vec<StreamEvent>) {
        let piece = if self.started {
            piece
        } else {
            piece.trim_start()
        };
        if piece.is_empty() {
            return;
        }
        let body = piece.trim_end();
        if body.is_empty() {
            self.pending_ws.push_str(piece);
            return;
        }
        let mut s = std::mem::take(&mut self.pending_ws);
        s.push_str(body);
        self.pending_ws.push_str(&piece[body.len()..]);
        self.started = true;
        match out.last_mut() {
            Some(StreamEvent::Content(prev)) => prev.push_str(&s),
            _ => out.push(StreamEvent::Content(s)),
        }
    }
}

fn ceil_boundary(s: &str, mut i: usize) -> usize {
    while i < s.len() && !s.is_char_boundary(i) {
        i += 1;
    }
    i.min(s.len())
}
