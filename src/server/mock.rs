//! A deterministic test double of the engine (used by the tests, `mock_server` and
//! `callm chat` tests); not for production use.
//!
//! Built only with the `mock` cargo feature (off by default): installs never contain it.
//!
//! Behaviour, driven by the (domain) request:
//! - Without tools (or with `tool_choice: "none"`), it answers `Hello! You said: <last user
//!   text>` one word per token. With `temperature > 0` it answers random words instead,
//!   reproducible when `seed` is set (the seed is mixed with the choice index).
//! - With tools, after a user message it calls every tool whose name has a word (longer than 3
//!   letters, not `get`) found in the user's text (`auto`); `required` falls back to the first
//!   tool, a named choice calls that tool. Arguments are built from the JSON schema.
//!   After `tool`/`function` results it answers `Based on the tool results: ...`.
//! - Markers in the last user text: `[[internal]]` (with a backtrace in its detail, as an
//!   engine error can have), `[[context]]`, `[[template]]` fail at once, `[[panic]]` panics,
//!   `[[fail-midway]]` fails after three tokens, `[[tokens=N]]` answers N words, `[[think]]`
//!   reasons first (`Let me think about it.`, one word per token, the answer's reasoning).
//! - The request's `stop` strings cut the planned text at the first one (reported as the
//!   outcome's `stop_sequence`).
//! - Prompt ids are `0..N` for its word-count estimate N of the prompt; `tokenize` gives a
//!   text's UTF-8 bytes as ids (BOS 256 first with `add_special`), `detokenize` the reverse.
//! - It sleeps `token_delay` per token and stops at once when cancelled.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value};

use crate::chat::{
    Answer, Call, ChatBackend, ChatError, ChatEvent, ChatFinish, ChatOutcome, CompletionOutcome,
    TokenLogprobs, TokenUsage, TopLogprob,
};
use crate::engine::CancelToken;
use crate::request::{ChatRequest, Role, TextRequest, Tool, ToolChoice};

const WORDS: [&str; 16] = [
    "sun", "rain", "cloud", "wind", "river", "stone", "light", "tree", "bird", "sea", "snow",
    "leaf", "moon", "fire", "sand", "star",
];

/// The mock engine; counters let tests observe concurrency and cancellation.
#[derive(Debug)]
pub struct MockBackend {
    model: String,
    token_delay: Duration,
    active: AtomicUsize,
    max_active: AtomicUsize,
    calls: AtomicUsize,
    cancelled: AtomicUsize,
}

struct Active<'a>(&'a MockBackend);

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What one mock turn produces before streaming.
struct Plan {
    /// Reasoning tokens, before the text.
    reasoning: Vec<String>,
    text: Vec<String>,
    /// The stop string the text was cut at.
    stop: Option<String>,
    /// Function names and their arguments as JSON text.
    calls: Vec<(String, String)>,
    fail_after: Option<usize>,
}

impl MockBackend {
    /// A mock serving `model`, sleeping `token_delay` per token.
    pub fn new(model: impl Into<String>, token_delay: Duration) -> Self {
        MockBackend {
            model: model.into(),
            token_delay,
            active: AtomicUsize::new(0),
            max_active: AtomicUsize::new(0),
            calls: AtomicUsize::new(0),
            cancelled: AtomicUsize::new(0),
        }
    }

    /// Generations running now.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::SeqCst)
    }

    /// The most generations that ever ran at once.
    pub fn max_active(&self) -> usize {
        self.max_active.load(Ordering::SeqCst)
    }

    /// Generations started so far.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// Generations that stopped because of cancellation.
    pub fn cancelled(&self) -> usize {
        self.cancelled.load(Ordering::SeqCst)
    }

    fn enter(&self) -> Active<'_> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let now = self.active.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_active.fetch_max(now, Ordering::SeqCst);
        Active(self)
    }

    /// Sleeps one token's time; false when cancelled.
    fn tick(&self, cancel: &CancelToken) -> bool {
        if !self.token_delay.is_zero() {
            std::thread::sleep(self.token_delay);
        }
        !cancel.is_cancelled()
    }
}

fn markers(text: &str) -> Result<(Option<usize>, Option<usize>), ChatError> {
    if text.contains("[[internal]]") {
        let trace = std::backtrace::Backtrace::force_capture();
        return Err(ChatError::Internal(format!(
            "mock engine failure\nstack backtrace:\n{trace}"
        )));
    }
    if text.contains("[[panic]]") {
        panic!("mock engine panicked while holding internal state");
    }
    if text.contains("[[context]]") {
        return Err(ChatError::ContextLength {
            prompt: 5000,
            context: 4096,
        });
    }
    if text.contains("[[template]]") {
        return Err(ChatError::Template(
            "mock template raised: conversation roles must alternate".into(),
        ));
    }
    let words = text
        .split("[[tokens=")
        .nth(1)
        .and_then(|rest| rest.split("]]").next())
        .and_then(|n| n.parse::<usize>().ok());
    let fail = text.contains("[[fail-midway]]").then_some(3);
    Ok((words, fail))
}

fn random_words(seed: Option<u64>, choice: u32, count: usize) -> Vec<String> {
    let mut rng = match seed {
        Some(s) => StdRng::seed_from_u64(s ^ (u64::from(choice) << 32)),
        None => StdRng::from_os_rng(),
    };
    (0..count)
        .map(|_| WORDS[rng.random_range(0..WORDS.len())].to_string())
        .collect()
}

fn words_of(text: &str) -> Vec<String> {
    text.split_inclusive(' ').map(str::to_string).collect()
}

fn example_value(name: &str, schema: &Value) -> Value {
    if let Some(first) = schema
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|e| e.first())
    {
        return first.clone();
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("integer") => Value::from(1),
        Some("number") => Value::from(1.5),
        Some("boolean") => Value::Bool(true),
        Some("array") => Value::Array(Vec::new()),
        Some("object") => Value::Object(Map::new()),
        _ if name.contains("city") || name.contains("location") => Value::from("Paris"),
        _ => Value::from("x"),
    }
}

fn arguments_for(f: &Tool) -> String {
    let mut args = Map::new();
    if let Some(props) = f
        .parameters
        .as_ref()
        .and_then(|p| p.get("properties"))
        .and_then(Value::as_object)
    {
        for (name, schema) in props {
            args.insert(name.clone(), example_value(name, schema));
        }
    }
    Value::Object(args).to_string()
}

fn plan_chat(req: &ChatRequest, choice: u32) -> Result<Plan, ChatError> {
    let last = req.messages.last();
    let user_text = req
        .messages
        .iter()
        .rev()
        .find(|m| m.role == Role::User)
        .and_then(|m| m.content.clone())
        .unwrap_or_default();
    let (words, fail_after) = markers(&user_text)?;
    let defs = &req.tools;
    let after_results = last.is_some_and(|m| m.role == Role::Tool);
    let mut calls = Vec::new();
    if !defs.is_empty() && req.tool_choice != ToolChoice::None && !after_results {
        let lower = user_text.to_lowercase();
        let picked: Vec<&Tool> = if let ToolChoice::Named(name) = &req.tool_choice {
            defs.iter().filter(|f| &f.name == name).collect()
        } else {
            let matching: Vec<_> = defs
                .iter()
                .filter(|f| {
                    f.name
                        .split(['_', '-', '.'])
                        .any(|w| w.len() > 3 && w != "get" && lower.contains(&w.to_lowercase()))
                })
                .collect();
            if matching.is_empty() && req.tool_choice == ToolChoice::Required {
                defs.iter().take(1).collect()
            } else {
                matching
            }
        };
        let single = req.single_call();
        for f in picked.into_iter().take(if single { 1 } else { usize::MAX }) {
            calls.push((f.name.clone(), arguments_for(f)));
        }
    }
    let text = if !calls.is_empty() {
        Vec::new()
    } else if after_results {
        let results: Vec<String> = req
            .messages
            .iter()
            .rev()
            .take_while(|m| m.role == Role::Tool)
            .filter_map(|m| m.content.clone())
            .collect();
        words_of(&format!(
            "Based on the tool results: {}",
            results.join("; ")
        ))
    } else if req.sampling.temperature.is_some_and(|t| t > 0.0) {
        let mut w = random_words(req.sampling.seed, choice, words.unwrap_or(12));
        for (i, word) in w.iter_mut().enumerate() {
            if i > 0 {
                word.insert(0, ' ');
            }
        }
        w
    } else if let Some(n) = words {
        (0..n).map(|i| format!("w{i} ")).collect()
    } else {
        words_of(&format!("Hello! You said: {user_text}"))
    };
    let (text, stop) = cut_at_stop(text, &req.stop);
    let reasoning = if user_text.contains("[[think]]") {
        words_of("Let me think about it.")
    } else {
        Vec::new()
    };
    Ok(Plan {
        reasoning,
        text,
        stop,
        calls,
        fail_after,
    })
}

/// The planned tokens up to the earliest stop string, and that stop string.
fn cut_at_stop(tokens: Vec<String>, stops: &[String]) -> (Vec<String>, Option<String>) {
    let text = tokens.concat();
    let first = stops
        .iter()
        .filter_map(|s| text.find(s.as_str()).map(|at| (at, s)))
        .min_by_key(|&(at, _)| at);
    match first {
        Some((at, stop)) => (words_of(&text[..at]), Some(stop.clone())),
        None => (tokens, None),
    }
}

fn fail_check(fail_after: Option<usize>, emitted: usize) -> Result<(), ChatError> {
    if fail_after.is_some_and(|f| emitted >= f) {
        return Err(ChatError::Internal("mock engine failed mid-stream".into()));
    }
    Ok(())
}

fn logprob(token: &str, k: u32) -> TokenLogprobs {
    TokenLogprobs {
        token: token.to_string(),
        logprob: -0.25,
        bytes: token.as_bytes().to_vec(),
        top_logprobs: (0..k)
            .map(|i| {
                let t = if i == 0 {
                    token.to_string()
                } else {
                    format!("alt{i}")
                };
                TopLogprob {
                    bytes: t.as_bytes().to_vec(),
                    token: t,
                    logprob: -0.25 - i as f32,
                }
            })
            .collect(),
    }
}

fn prompt_tokens(req: &ChatRequest) -> u32 {
    let words: usize = req
        .messages
        .iter()
        .filter_map(|m| m.content.as_ref())
        .map(|c| c.split_whitespace().count())
        .sum();
    words as u32 + 3 * req.messages.len() as u32
}

impl ChatBackend for MockBackend {
    fn model_id(&self) -> &str {
        &self.model
    }

    fn chat(
        &self,
        req: &ChatRequest,
        choice: u32,
        cancel: &CancelToken,
        on_event: &mut dyn FnMut(ChatEvent) -> bool,
    ) -> Result<ChatOutcome, ChatError> {
        let _active = self.enter();
        let plan = plan_chat(req, choice)?;
        let limit = req.limits.max_tokens.map(|m| m as usize);
        let k = u32::from(req.limits.logprobs.unwrap_or(0));
        let mut out = ChatOutcome {
            message: Answer::default(),
            finish: ChatFinish::Stop,
            stop_sequence: plan.stop.clone(),
            usage: TokenUsage {
                prompt_tokens: prompt_tokens(req),
                ..Default::default()
            },
            logprobs: req.limits.logprobs.map(|_| Vec::new()),
            cancelled: false,
        };
        let mut emitted = 0usize;
        let mut reasoning = String::new();
        for token in &plan.reasoning {
            if limit.is_some_and(|l| emitted >= l) {
                out.finish = ChatFinish::Length;
                break;
            }
            if !self.tick(cancel) || !on_event(ChatEvent::Reasoning(token.clone())) {
                out.cancelled = true;
                break;
            }
            emitted += 1;
            reasoning.push_str(token);
        }
        out.message.reasoning_content = (!reasoning.is_empty()).then_some(reasoning);
        // A plan with reasoning is a thinking model's: its block's tokens are counted.
        out.usage.reasoning_tokens = (!plan.reasoning.is_empty()).then_some(emitted as u32);
        let mut text = String::new();
        for token in plan
            .text
            .iter()
            .take_while(|_| out.finish != ChatFinish::Length)
        {
            if limit.is_some_and(|l| emitted >= l) {
                out.finish = ChatFinish::Length;
                out.stop_sequence = None;
                break;
            }
            fail_check(plan.fail_after, emitted)?;
            if !self.tick(cancel) || !on_event(ChatEvent::Content(token.clone())) {
                out.cancelled = true;
                break;
            }
            emitted += 1;
            text.push_str(token);
            if let Some(lps) = out.logprobs.as_mut() {
                let lp = logprob(token, k);
                lps.push(lp.clone());
                if !on_event(ChatEvent::Logprob(lp)) {
                    out.cancelled = true;
                    break;
                }
            }
        }
        let mut calls = Vec::new();
        'calls: for (index, (name, arguments)) in plan.calls.iter().enumerate() {
            if out.cancelled || out.finish == ChatFinish::Length {
                break;
            }
            let hex: String = uuid::Uuid::new_v4()
                .simple()
                .to_string()
                .chars()
                .take(24)
                .collect();
            let id = format!("call_{hex}");
            fail_check(plan.fail_after, emitted)?;
            let start = ChatEvent::ToolCallStart {
                index,
                id: id.clone(),
                name: name.clone(),
            };
            if !self.tick(cancel) || !on_event(start) {
                out.cancelled = true;
                break;
            }
            emitted += 1;
            let chars: Vec<char> = arguments.chars().collect();
            for piece in chars.chunks(6) {
                let delta: String = piece.iter().collect();
                fail_check(plan.fail_after, emitted)?;
                if !self.tick(cancel) || !on_event(ChatEvent::ToolCallArguments { index, delta }) {
                    out.cancelled = true;
                    break 'calls;
                }
                emitted += 1;
            }
            calls.push(Call {
                id,
                name: name.clone(),
                arguments: arguments.clone(),
            });
        }
        if out.cancelled {
            self.cancelled.fetch_add(1, Ordering::SeqCst);
        }
        if !calls.is_empty() && !out.cancelled {
            out.finish = ChatFinish::ToolCalls;
        }
        out.message.tool_calls = calls;
        out.message.content = (!text.is_empty()).then_some(text);
        out.usage.completion_tokens = emitted as u32;
        Ok(out)
    }

    fn complete(
        &self,
        req: &TextRequest,
        prompt: &str,
        choice: u32,
        cancel: &CancelToken,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<CompletionOutcome, ChatError> {
        let _active = self.enter();
        let (words, fail_after) = markers(prompt)?;
        let tokens = if req.sampling.temperature.is_some_and(|t| t > 0.0) {
            random_words(req.sampling.seed, choice, words.unwrap_or(8))
                .into_iter()
                .map(|w| format!(" {w}"))
                .collect()
        } else {
            words_of(&format!(" and then {} words", words.unwrap_or(3)))
        };
        let limit = req.max_tokens as usize;
        let mut out = CompletionOutcome {
            text: String::new(),
            finish: ChatFinish::Stop,
            usage: TokenUsage {
                prompt_tokens: prompt.split_whitespace().count() as u32,
                ..Default::default()
            },
        };
        for (i, t) in tokens.iter().enumerate() {
            if fail_after.is_some_and(|f| i >= f) {
                return Err(ChatError::Internal("mock engine failed mid-stream".into()));
            }
            if i >= limit {
                out.finish = ChatFinish::Length;
                break;
            }
            if !self.tick(cancel) || !on_text(t) {
                self.cancelled.fetch_add(1, Ordering::SeqCst);
                break;
            }
            out.text.push_str(t);
            out.usage.completion_tokens += 1;
        }
        Ok(out)
    }

    fn prompt_tokens(&self, req: &ChatRequest) -> Result<Vec<u32>, ChatError> {
        Ok((0..prompt_tokens(req)).collect())
    }

    fn tokenize(&self, text: &str, add_special: bool) -> Result<Vec<u32>, ChatError> {
        let bos = add_special.then_some(256);
        Ok(bos.into_iter().chain(text.bytes().map(u32::from)).collect())
    }

    fn detokenize(&self, ids: &[u32]) -> Result<String, ChatError> {
        let bytes = ids
            .iter()
            .map(|&id| u8::try_from(id))
            .collect::<Result<Vec<u8>, _>>()
            .map_err(|_| {
                ChatError::invalid("tokens", "The mock's token ids are bytes (0 to 255).")
            })?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}
