//! One answer's stream: the reasoning block split off first (thinking families), then the
//! rest parsed for calls by the family's chain (when the request allows calls) or passed on
//! as content. What `chat::run` feeds the model's text through, token by token.

use super::reasoning::{Piece, ReasoningSplitter};
use super::stream::{StreamEvent, StreamParser};

/// Reasoning splitter in front of the call parser (see the module doc).
#[derive(Debug)]
pub struct AnswerStream {
    reasoning: Option<ReasoningSplitter>,
    parser: Option<StreamParser>,
}

impl AnswerStream {
    /// A stream with an optional reasoning splitter and an optional call parser.
    pub fn new(reasoning: Option<ReasoningSplitter>, parser: Option<StreamParser>) -> Self {
        AnswerStream { reasoning, parser }
    }

    /// Feeds the next chunk of output text; returns the events it decides.
    pub fn push(&mut self, chunk: &str) -> Vec<StreamEvent> {
        match self.reasoning.as_mut() {
            Some(r) => {
                let pieces = r.push(chunk);
                self.pieces(pieces)
            }
            None => self.answer(chunk),
        }
    }

    /// Feeds one generated token's text (empty for a token that completes no character),
    /// counting it towards [`AnswerStream::reasoning_tokens`]; returns the events it decides.
    pub fn push_token(&mut self, text: &str) -> Vec<StreamEvent> {
        match self.reasoning.as_mut() {
            Some(r) => {
                let pieces = r.push_token(text);
                self.pieces(pieces)
            }
            None if text.is_empty() => Vec::new(),
            None => self.answer(text),
        }
    }

    /// Generated tokens of a thinking model's reasoning block, its markers included; `None`
    /// for a family without reasoning markers.
    pub fn reasoning_tokens(&self) -> Option<usize> {
        self.reasoning.as_ref().map(ReasoningSplitter::tokens)
    }

    /// Ends the output: decides everything still held back.
    pub fn finish(&mut self) -> Vec<StreamEvent> {
        self.end(false)
    }

    /// Ends an output the token limit cut: the reasoning as [`AnswerStream::finish`] does,
    /// the answer's undecided rest dropped ([`StreamParser::finish_cut`]).
    pub fn finish_cut(&mut self) -> Vec<StreamEvent> {
        self.end(true)
    }

    fn end(&mut self, cut: bool) -> Vec<StreamEvent> {
        let mut out = match self.reasoning.as_mut() {
            Some(r) => {
                let pieces = r.finish();
                self.pieces(pieces)
            }
            None => Vec::new(),
        };
        if let Some(p) = self.parser.as_mut() {
            out.extend(if cut { p.finish_cut() } else { p.finish() });
        }
        out
    }

    fn pieces(&mut self, pieces: Vec<Piece>) -> Vec<StreamEvent> {
        let mut out = Vec::new();
        for p in pieces {
            match p {
                Piece::Reasoning(t) => out.push(StreamEvent::Reasoning(t)),
                Piece::Answer(t) => out.extend(self.answer(&t)),
            }
        }
        out
    }

    fn answer(&mut self, text: &str) -> Vec<StreamEvent> {
        match self.parser.as_mut() {
            Some(p) => p.push(text),
            None if text.is_empty() => Vec::new(),
            None => vec![StreamEvent::Content(text.to_string())],
        }
    }
}
