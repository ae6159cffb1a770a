//! The chat pipeline shared by `callm generate`, `callm chat` and the server:
//! domain request → prompt ids → generation → streamed events and parsed tool calls.
//!
//! Front ends reach it through the [`ChatBackend`] trait ([`backend`]) with a
//! [`crate::request::ChatRequest`] they built at their edge, and get [`ChatEvent`]s and a
//! [`ChatOutcome`] back; how those are written out (OpenAI chunks, legacy `function_call`,
//! HTTP statuses) is the front end's business.

pub mod backend;
pub mod budget;
pub mod limits;
pub mod prepare;
pub mod types;

use crate::constrain::ConstrainError;
use crate::engine::{CancelToken, EngineError, FinishReason};
use crate::openai::ParsedOutput;
use crate::parsers::{
    collect_events, collect_reasoning, AnswerStream, ReasoningSplitter, StreamEvent,
};
use crate::request::ChatRequest;
use crate::runtime::LoadedModel;

pub use backend::{ChatBackend, CompletionOutcome, EngineBackend, RenamedBackend};
pub use prepare::{prepare, Prepared};
pub use types::*;

/// Renders and encodes the prompt of `req` for `lm` (tool-choice forcing included).
pub fn prompt_ids(lm: &LoadedModel, req: &ChatRequest) -> Result<Vec<u32>, ChatError> {
    Ok(prepare(lm, req, 0)?.prompt_ids)
}

/// Parses finished model output of a request with the family's parser chain (a thinking
/// model's reasoning block left out).
pub fn parse_output(lm: &LoadedModel, req: &ChatRequest, text: &str) -> ParsedOutput {
    let reasoning = lm
        .family
        .reasoning
        .clone()
        .map(|r| ReasoningSplitter::new(r, false));
    let parser = prepare::parse_plan(lm, req).map(|opts| lm.parsers.stream(opts));
    let mut stream = AnswerStream::new(reasoning, parser);
    let mut events = stream.push(text);
    events.extend(stream.finish());
    collect_events(&events)
}

/// Runs one choice of a chat request to the end, streaming events to `on_event`
/// (which returns `false` when the client is gone).
pub fn run(
    lm: &LoadedModel,
    req: &ChatRequest,
    choice: u32,
    cancel: &CancelToken,
    on_event: &mut dyn FnMut(ChatEvent) -> bool,
) -> Result<ChatOutcome, ChatError> {
    let prep = prepare(lm, req, choice)?;
    let mut answer = prep.answer_stream(lm);
    let mut sink = EventSink {
        events: Vec::new(),
        calls_done: 0,
        max_calls: prep.max_calls,
    };
    let mut client_gone = !sink.forward(answer.push(&prep.forced), on_event);
    let mut stop_early = false;
    let mut logprobs = prep.top_logprobs.map(|_| Vec::new());
    let stats = if client_gone {
        None
    } else {
        let tokenizer = lm.tokenizer.clone();
        let result = lm.generate(&prep.prompt_ids, &prep.params, cancel, &mut |tok| {
            if let (Some(list), Some(lp)) = (logprobs.as_mut(), tok.logprob.as_ref()) {
                let entry = types::token_logprobs(&tokenizer, lp);
                list.push(entry.clone());
                if !on_event(ChatEvent::Logprob(entry)) {
                    client_gone = true;
                    return false;
                }
            }
            if tok.text.is_empty() {
                // Counted (a reasoning token or not), nothing to decide.
                answer.push_token("");
                return true;
            }
            if !sink.forward(answer.push_token(&tok.text), on_event) {
                client_gone = true;
                return false;
            }
            if sink.max_calls.is_some_and(|m| sink.calls_done >= m) {
                stop_early = true;
                return false;
            }
            true
        });
        match result {
            // The answer's grammar reached a limit: name the schema at fault.
            Err(EngineError::Constraint(ConstrainError::BadRequest { message, .. })) => {
                let located = match (&prep.grammar, lm.constraint_engine()) {
                    (Some(spec), Ok(engine)) => engine.blame(spec, message),
                    _ => ConstrainError::Internal(message),
                };
                return Err(prepare::constrain_error(located));
            }
            other => Some(other?),
        }
    };
    let cached_tokens = stats.as_ref().map_or(0, |s| s.cached_tokens);
    let (prompt_tokens, completion_tokens, engine_finish) = match &stats {
        Some(s) => (s.prompt_tokens, s.completion_tokens, s.finish),
        None => (prep.prompt_ids.len(), 0, FinishReason::Cancelled),
    };
    // The token limit (or the context) cut the answer: whatever is still undecided is a
    // call it interrupted, never content; the answer finishes with `length`.
    let cut = engine_finish == FinishReason::Length && !stop_early;
    let tail = if cut {
        answer.finish_cut()
    } else {
        answer.finish()
    };
    client_gone |= !sink.forward(tail, on_event);
    let events = sink.events;
    let parsed = collect_events(&events);
    let reasoning_content = collect_reasoning(&events);
    // Only the request's own stop strings are reported (the family's end markers are not).
    let stop_sequence = stats
        .as_ref()
        .and_then(|s| s.stop_string.clone())
        .filter(|s| req.stop.contains(s));
    let finish = if cut {
        ChatFinish::Length
    } else if !parsed.tool_calls.is_empty() {
        ChatFinish::ToolCalls
    } else {
        ChatFinish::Stop
    };
    let message = Answer {
        content: parsed.content,
        reasoning_content,
        tool_calls: parsed
            .tool_calls
            .into_iter()
            .map(|c| Call {
                id: c.id,
                name: c.function.name,
                arguments: c.function.arguments,
            })
            .collect(),
    };
    Ok(ChatOutcome {
        message,
        finish,
        stop_sequence: stop_sequence.filter(|_| finish == ChatFinish::Stop),
        usage: TokenUsage {
            prompt_tokens: prompt_tokens as u32,
            completion_tokens: completion_tokens as u32,
            cached_tokens: Some(cached_tokens as u32),
            reasoning_tokens: answer.reasoning_tokens().map(|n| n as u32),
        },
        logprobs,
        cancelled: client_gone || (engine_finish == FinishReason::Cancelled && !stop_early),
    })
}

/// Collects parser events, forwards them to the front end as [`ChatEvent`]s, and drops
/// calls beyond `max_calls` (`parallel_tool_calls: false`, named tool choice).
struct EventSink {
    events: Vec<StreamEvent>,
    calls_done: usize,
    max_calls: Option<usize>,
}

impl EventSink {
    /// Forwards `evs`; returns `false` when the front end is gone.
    fn forward(
        &mut self,
        evs: Vec<StreamEvent>,
        on_event: &mut dyn FnMut(ChatEvent) -> bool,
    ) -> bool {
        let mut ok = true;
        for ev in evs {
            if let Some(max) = self.max_calls {
                let index = match &ev {
                    StreamEvent::ToolCallStart { index, .. }
                    | StreamEvent::ArgumentsDelta { index, .. }
                    | StreamEvent::ToolCallEnd { index } => Some(*index),
                    StreamEvent::Content(_) | StreamEvent::Reasoning(_) => None,
                };
                if index.is_some_and(|i| i >= max) || (self.calls_done >= max && index.is_none()) {
                    continue;
                }
            }
            let mapped = match &ev {
                StreamEvent::Content(t) => Some(ChatEvent::Content(t.clone())),
                StreamEvent::Reasoning(t) => Some(ChatEvent::Reasoning(t.clone())),
                StreamEvent::ToolCallStart { index, id, name } => Some(ChatEvent::ToolCallStart {
                    index: *index,
                    id: id.clone(),
                    name: name.clone(),
                }),
                StreamEvent::ArgumentsDelta { index, delta } => {
                    Some(ChatEvent::ToolCallArguments {
                        index: *index,
                        delta: delta.clone(),
                    })
                }
                StreamEvent::ToolCallEnd { .. } => {
                    self.calls_done += 1;
                    None
                }
            };
            self.events.push(ev);
            if let Some(m) = mapped {
                ok &= on_event(m);
            }
        }
        ok
    }
}
