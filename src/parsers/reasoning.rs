//! Reasoning kept apart: a thinking model's `<think>...</think>` block (the family's markers,
//! `models.toml` `reasoning`) is split off the answer before any tool-call format sees it.
//!
//! The block counts only at the start of the answer (after whitespace), or from the first
//! byte when the prompt already opened it. Its text becomes the answer's reasoning: never
//! content, never read for calls. What follows the close marker is the answer, given to the
//! family's parser chain as usual; a call after the thinking is a call. A block never closed
//! is reasoning to the end.
//!
//! Whitespace at both ends of the reasoning, and between the close marker and the answer, is
//! dropped (the templates write `<think>\n...\n</think>\n\n`). The splitter decides only what
//! later text cannot change, so any chunking of an output gives the same pieces, concatenated
//! by kind.

use serde::Deserialize;

/// A family's reasoning markers (`reasoning = { open = "<think>", close = "</think>" }`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reasoning {
    /// Opens the block.
    pub open: String,
    /// Closes it.
    pub close: String,
}

impl Reasoning {
    /// Whether `prompt` leaves the answer inside an open block (the template wrote the open
    /// marker as the last thing of the generation prompt).
    pub fn opened_by(&self, prompt: &str) -> bool {
        let tail = prompt.trim_end();
        tail.ends_with(&self.open)
    }

    /// Whether the prompt already holds a closed block at its end (thinking switched off by
    /// the template: `<think>\n\n</think>\n\n`), so the answer has none.
    pub fn closed_by(&self, prompt: &str) -> bool {
        prompt.trim_end().ends_with(&self.close)
    }
}

/// A piece of output, by kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Reasoning text.
    Reasoning(String),
    /// Answer text (content and calls, for the parser chain).
    Answer(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing decided yet: leading whitespace held, an open marker may come.
    Start,
    /// Inside the block.
    Inside,
    /// After the close marker: whitespace dropped until the answer starts.
    After,
    /// The answer.
    Answer,
}

/// Splits one output into reasoning and answer (see the module doc).
#[derive(Debug, Clone)]
pub struct ReasoningSplitter {
    markers: Reasoning,
    state: State,
    /// Text received but not decided yet.
    held: String,
    /// Reasoning whitespace waiting for non-whitespace reasoning to follow.
    pending_ws: String,
    /// Some reasoning was given out (leading whitespace is dropped before it).
    reasoned: bool,
    /// The block was opened (by the output, or by the prompt).
    opened: bool,
    /// Generated tokens of the block, its markers included ([`ReasoningSplitter::push_token`]).
    tokens: usize,
    /// Tokens pushed while nothing was decided (whitespace, part of an open marker): the
    /// block's if it opens.
    undecided: usize,
}

impl ReasoningSplitter {
    /// A splitter for `markers`; `inside` when the prompt already opened the block.
    pub fn new(markers: Reasoning, inside: bool) -> Self {
        ReasoningSplitter {
            markers,
            state: if inside { State::Inside } else { State::Start },
            held: String::new(),
            pending_ws: String::new(),
            reasoned: false,
            opened: inside,
            tokens: 0,
            undecided: 0,
        }
    }

    /// [`ReasoningSplitter::push`] of one generated token's text (empty for a token that
    /// completes no character), counting the token as the block's when it opens, continues
    /// or closes it: OpenAI's `reasoning_tokens`.
    pub fn push_token(&mut self, text: &str) -> Vec<Piece> {
        let before = self.state;
        let out = if text.is_empty() {
            Vec::new()
        } else {
            self.push(text)
        };
        match before {
            State::Inside => self.tokens += 1,
            State::Start if self.state == State::Start => self.undecided += 1,
            State::Start if self.opened => {
                self.tokens += std::mem::take(&mut self.undecided) + 1;
            }
            State::Start => self.undecided = 0,
            State::After | State::Answer => {}
        }
        out
    }

    /// Generated tokens of the reasoning block so far (see [`ReasoningSplitter::push_token`]).
    pub fn tokens(&self) -> usize {
        self.tokens
    }

    /// Whether the output is inside an open block (opened, not closed yet).
    pub fn is_inside(&self) -> bool {
        self.state == State::Inside
    }

    /// Splits the next chunk; returns the pieces it decides.
    pub fn push(&mut self, chunk: &str) -> Vec<Piece> {
        self.held.push_str(chunk);
        let mut out = Vec::new();
        self.run(false, &mut out);
        out
    }

    /// Ends the output: decides everything still held.
    pub fn finish(&mut self) -> Vec<Piece> {
        let mut out = Vec::new();
        self.run(true, &mut out);
        self.pending_ws.clear();
        out
    }

    fn run(&mut self, eof: bool, out: &mut Vec<Piece>) {
        loop {
            let held = std::mem::take(&mut self.held);
            match self.state {
                State::Start => {
                    let rest = held.trim_start();
                    if let Some(after) = rest.strip_prefix(self.markers.open.as_str()) {
                        self.state = State::Inside;
                        self.opened = true;
                        self.held = after.to_string();
                    } else if !eof && self.markers.open.starts_with(rest) {
                        // Whitespace only, or the beginning of the open marker: wait.
                        self.held = held;
                        return;
                    } else {
                        self.state = State::Answer;
                        self.held = held;
                    }
                }
                State::Inside => match held.find(self.markers.close.as_str()) {
                    Some(i) => {
                        self.reasoning(&held[..i], out);
                        self.pending_ws.clear();
                        self.state = State::After;
                        self.held = held[i + self.markers.close.len()..].to_string();
                    }
                    None => {
                        let keep = if eof {
                            0
                        } else {
                            partial_suffix(&held, &self.markers.close)
                        };
                        let (text, rest) = held.split_at(held.len() - keep);
                        self.reasoning(text, out);
                        self.held = rest.to_string();
                        return;
                    }
                },
                State::After => {
                    let rest = held.trim_start();
                    if rest.is_empty() {
                        return;
                    }
                    self.state = State::Answer;
                    self.held = rest.to_string();
                }
                State::Answer => {
                    if !held.is_empty() {
                        push_piece(out, Piece::Answer(held));
                    }
                    return;
                }
            }
        }
    }

    /// Gives out reasoning text, dropping leading whitespace and holding trailing whitespace
    /// until more reasoning follows it.
    fn reasoning(&mut self, text: &str, out: &mut Vec<Piece>) {
        let text = if self.reasoned {
            text
        } else {
            text.trim_start()
        };
        if text.is_empty() {
            return;
        }
        let body = text.trim_end();
        if body.is_empty() {
            self.pending_ws.push_str(text);
            return;
        }
        let mut piece = std::mem::take(&mut self.pending_ws);
        piece.push_str(body);
        self.pending_ws.push_str(&text[body.len()..]);
        self.reasoned = true;
        push_piece(out, Piece::Reasoning(piece));
    }
}

/// Appends `p`, merged into the last piece when it is of the same kind.
fn push_piece(out: &mut Vec<Piece>, p: Piece) {
    match (out.last_mut(), p) {
        (Some(Piece::Reasoning(a)), Piece::Reasoning(b)) => a.push_str(&b),
        (Some(Piece::Answer(a)), Piece::Answer(b)) => a.push_str(&b),
        (_, p) => out.push(p),
    }
}

/// The length of the longest end of `text` that is a proper prefix of `marker` (a marker
/// that may still be completing), on a char boundary.
fn partial_suffix(text: &str, marker: &str) -> usize {
    let max = marker.len().saturating_sub(1).min(text.len());
    (1..=max)
        .rev()
        .find(|&n| {
            let start = text.len() - n;
            text.is_char_boundary(start) && marker.starts_with(&text[start..])
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn think() -> Reasoning {
        Reasoning {
            open: "<think>".into(),
            close: "</think>".into(),
        }
    }

    /// (reasoning, answer) of `text` cut at every `cuts` offset.
    fn split(text: &str, cuts: &[usize], inside: bool) -> (String, String) {
        let mut s = ReasoningSplitter::new(think(), inside);
        let mut pieces = Vec::new();
        let mut last = 0;
        for &c in cuts.iter().chain(std::iter::once(&text.len())) {
            if c < last || !text.is_char_boundary(c) {
                continue;
            }
            pieces.extend(s.push(&text[last..c]));
            last = c;
        }
        pieces.extend(s.finish());
        let mut r = String::new();
        let mut a = String::new();
        for p in pieces {
            match p {
                Piece::Reasoning(t) => r.push_str(&t),
                Piece::Answer(t) => a.push_str(&t),
            }
        }
        (r, a)
    }

    #[test]
    fn qwen3_output_splits_on_every_cut() {
        let text = "<think>\nThe user wants Lyon.\n\nCall get_weather.\n</think>\n\n<tool_call>\n{}\n</tool_call>";
        let want = (
            "The user wants Lyon.\n\nCall get_weather.".to_string(),
            "<tool_call>\n{}\n</tool_call>".to_string(),
        );
        for cut in 0..=text.len() {
            assert_eq!(split(text, &[cut], false), want, "cut {cut}");
        }
        let every: Vec<usize> = (0..text.len()).collect();
        assert_eq!(split(text, &every, false), want);
    }

    /// Reasoning tokens of `tokens` pushed one by one.
    fn count(tokens: &[&str], inside: bool) -> usize {
        let mut s = ReasoningSplitter::new(think(), inside);
        for t in tokens {
            s.push_token(t);
        }
        s.finish();
        s.tokens()
    }

    #[test]
    fn reasoning_tokens_are_the_blocks_markers_included() {
        // Qwen3's tokens: the markers are one token each.
        let qwen = [
            "<think>",
            "\n",
            "Lyon",
            ".",
            "\n",
            "</think>",
            "\n\n",
            "<tool_call>",
            "{}",
        ];
        assert_eq!(count(&qwen, false), 6);
        // Leading whitespace and a marker split over tokens count once the block opens; a
        // token that completes no character (empty text) inside it counts.
        let split = [" ", "\n", "<th", "ink>", "a", "", "b", "</", "think>", "Hi"];
        assert_eq!(count(&split, false), 9);
        // A token that closes the block and starts the answer is the block's.
        assert_eq!(count(&["<think>", "x", "</think>Hi", "!"], false), 3);
        // Opened by the prompt: from the first token.
        assert_eq!(count(&["x", "y", "</think>", "Hi"], true), 3);
        // Never closed: every token.
        assert_eq!(count(&["<think>", "x", "y"], false), 3);
        // No block: none, whitespace before the answer included.
        assert_eq!(count(&[" ", "Hello", " <think>", "x</think>"], false), 0);
        assert_eq!(count(&["<", "b>"], false), 0);
    }

    #[test]
    fn no_block_no_reasoning() {
        for text in [
            "Hello <think>not at the start</think>",
            "  <thin",
            "",
            "<",
            "plain",
        ] {
            let (r, a) = split(text, &[1, 3], false);
            assert_eq!(r, "", "{text:?}");
            assert_eq!(a, text, "{text:?}");
        }
    }

    #[test]
    fn unclosed_block_is_reasoning_and_a_prompt_opened_block_needs_no_open_marker() {
        assert_eq!(
            split("<think>still thinking </thi", &[9, 20], false),
            ("still thinking </thi".to_string(), String::new())
        );
        assert_eq!(
            split("\nplan</think>\n\nanswer", &[2, 7], true),
            ("plan".to_string(), "answer".to_string())
        );
        assert_eq!(
            split("<think>\n\n</think>\n\nHi", &[3], false),
            (String::new(), "Hi".to_string())
        );
    }

    #[test]
    fn prompts_tell_where_the_answer_starts() {
        let r = think();
        assert!(r.opened_by("<|im_start|>assistant\n<think>\n"));
        assert!(!r.opened_by("<|im_start|>assistant\n"));
        assert!(r.closed_by("<|im_start|>assistant\n<think>\n\n</think>\n\n"));
    }
}
