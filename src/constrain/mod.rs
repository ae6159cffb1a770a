//! Constrained decoding with llguidance: a token mask per step so that tool calls always
//! parse and match their tool's JSON Schema, and `response_format` JSON always validates.
//!
//! - [`ConstraintEngine`]: per loaded model (built once, lazily): the tokenizer's token
//!   bytes in llguidance's trie and a parser factory.
//! - [`GrammarSpec`] → [`Constraint`] ([`ConstraintEngine::compile`]): the request's grammar
//!   (see [`grammar`]), compiled, with the prompt's forced text already consumed.
//! - [`ConstraintState`]: one generation's matcher; [`ConstraintState::mask`] before each
//!   sampling step, [`ConstraintState::commit`] after.

pub mod grammar;
pub mod mask;
pub mod pycall;
pub mod schema;
pub mod testing;
pub mod tokenizer_env;
pub mod xmlcall;

#[cfg(test)]
mod tests;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, OnceLock};

use llguidance::api::TopLevelGrammar;
use llguidance::{Matcher, ParserFactory};
use toktrie::TokEnv;

pub use grammar::{GrammarSpec, Thinking, ToolMode};
use tokenizer_env::CallmTokEnv;

use crate::tokenizer::Tokenizer;

/// Errors of grammar building and constrained generation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConstrainError {
    /// A schema or tool in the request cannot be turned into a grammar (a client error).
    #[error("{param}: {message}")]
    BadRequest {
        /// The offending request field, e.g. `tools[0].function.parameters`.
        param: String,
        /// What is wrong with it.
        message: String,
    },
    /// The model's format has no grammar for this request (a client error).
    #[error("{0}")]
    Unsupported(String),
    /// The constraint failed while generating (a bug or an unusable tokenizer).
    #[error("constrained decoding failed: {0}")]
    Internal(String),
}

impl ConstrainError {
    /// A client error about `param`.
    pub fn bad(param: &str, message: impl Into<String>) -> Self {
        ConstrainError::BadRequest {
            param: param.to_string(),
            message: message.into(),
        }
    }

    /// The request field at fault, when there is one.
    pub fn param(&self) -> Option<&str> {
        match self {
            ConstrainError::BadRequest { param, .. } => Some(param),
            _ => None,
        }
    }
}

/// What llguidance needs of one model, built once: token bytes, trie and parser factory.
pub struct ConstraintEngine {
    env: Arc<CallmTokEnv>,
    factory: ParserFactory,
}

impl std::fmt::Debug for ConstraintEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConstraintEngine").finish_non_exhaustive()
    }
}

impl ConstraintEngine {
    /// Builds the engine for a tokenizer and a model emitting `vocab` logits; `stop_ids`
    /// are the tokens that may end a finished grammar.
    pub fn new(
        tokenizer: Arc<Tokenizer>,
        vocab: usize,
        stop_ids: &[u32],
    ) -> Result<Self, ConstrainError> {
        let t0 = std::time::Instant::now();
        let env = Arc::new(CallmTokEnv::new(tokenizer, vocab, stop_ids));
        let tok_env: TokEnv = env.clone();
        let mut factory = catch_unwind(AssertUnwindSafe(|| ParserFactory::new_simple(&tok_env)))
            .map_err(|_| ConstrainError::Internal("llguidance panicked on the vocabulary".into()))?
            .map_err(|e| ConstrainError::Internal(e.to_string()))?;
        factory.quiet();
        // Errors name the schema, never the parser's state or the whole grammar.
        factory.limits_mut().verbose_errors = false;
        tracing::debug!(
            seconds = t0.elapsed().as_secs_f64(),
            "constrained-decoding vocabulary ready"
        );
        Ok(ConstraintEngine { env, factory })
    }

    /// The lark element for a call marker: its special token when the tokenizer has one.
    fn marker(&self, text: &str) -> String {
        match self.env.special_id(text) {
            Some(id) => format!("<[{id}]>"),
            None => schema::lit(text),
        }
    }

    /// The lark grammar `spec` compiles to (for tests and debugging).
    pub fn lark(&self, spec: &GrammarSpec) -> Result<String, ConstrainError> {
        self.lark_with(spec, None)
    }

    /// The lark grammar of `spec` with a reasoning block allowed first.
    pub fn lark_with(
        &self,
        spec: &GrammarSpec,
        thinking: Option<&Thinking>,
    ) -> Result<String, ConstrainError> {
        grammar::lark_with(spec, thinking, &|m| self.marker(m))
    }

    /// Compiles `spec`; `forced` is text the prompt already holds as the start of the
    /// answer (it must fit the grammar).
    pub fn compile(&self, spec: &GrammarSpec, forced: &str) -> Result<Constraint, ConstrainError> {
        self.compile_with(spec, None, forced)
    }

    /// [`Self::compile`] with a reasoning block allowed before what `spec` requires (a
    /// thinking model's `<think>...</think>`, bounded by [`Thinking::max_chars`]).
    pub fn compile_with(
        &self,
        spec: &GrammarSpec,
        thinking: Option<&Thinking>,
        forced: &str,
    ) -> Result<Constraint, ConstrainError> {
        check_schemas(spec)?;
        let lark = self.lark_with(spec, thinking)?;
        if lark.len() > MAX_GRAMMAR_BYTES {
            return Err(ConstrainError::bad(
                spec_param(spec),
                format!(
                    "the schemas make a grammar of {} bytes, more than the {MAX_GRAMMAR_BYTES} \
                     callm compiles",
                    lark.len()
                ),
            ));
        }
        let matcher = self.ready(&lark, forced).map_err(|e| self.blame(spec, e))?;
        Ok(Constraint {
            matcher,
            param: spec_param(spec),
        })
    }

    /// A matcher for a lark grammar with `forced` consumed and its next mask computed, or
    /// llguidance's error. The forced start fits every grammar (the openings are derived
    /// from it: tested per format), so failing here means the request's schema reached a
    /// limit (an endless required `$ref`, a huge regex), found before generating.
    fn ready(&self, lark: &str, forced: &str) -> Result<Matcher, String> {
        let grammar = TopLevelGrammar::from_lark(lark.to_string());
        let parser = catch_unwind(AssertUnwindSafe(|| self.factory.create_parser(grammar)))
            .map_err(|_| "llguidance panicked while compiling the grammar".to_string())?;
        let mut m = Matcher::new(parser);
        if let Some(e) = m.get_error() {
            return Err(e);
        }
        m.consume_tokens(&self.env.tokens_for(forced))
            .map_err(|e| e.to_string())?;
        if !m.is_stopped() {
            catch_unwind(AssertUnwindSafe(|| m.compute_mask()))
                .map_err(|_| "llguidance panicked while computing a mask".to_string())?
                .map_err(|e| e.to_string())?;
            // Text the grammar forces from here on (a required chain of properties) is
            // computed at the first sampled token: try it now, on a copy.
            let mut probe = m.deep_clone();
            catch_unwind(AssertUnwindSafe(|| probe.consume_ff_tokens()))
                .map_err(|_| "llguidance panicked while forcing text".to_string())?;
            if let Some(e) = probe.get_error() {
                return Err(e);
            }
        }
        Ok(m)
    }

    /// Turns a grammar error (at compile time, or a limit reached while generating) into a
    /// client error naming the schema at fault: for tools, the first whose call, opened up
    /// to its arguments, fails alone.
    pub fn blame(&self, spec: &GrammarSpec, err: String) -> ConstrainError {
        let message = short(&err);
        match spec {
            GrammarSpec::JsonSchema { .. } => {
                ConstrainError::bad("response_format.json_schema.schema", message)
            }
            GrammarSpec::JsonObject => ConstrainError::Internal(message),
            GrammarSpec::Tools {
                format,
                tools,
                mode,
                ..
            } => {
                // Compile tool by tool to find the one whose schema fails.
                for (i, t) in tools.iter().enumerate() {
                    if let ToolMode::Named(n) = mode {
                        if &t.function.name != n {
                            continue;
                        }
                    }
                    // The tool alone, its call opened up to the arguments (as a named
                    // choice forces it), so its schema is where the grammar starts.
                    let name = &t.function.name;
                    let one = GrammarSpec::Tools {
                        format: *format,
                        tools: vec![t.clone()],
                        mode: ToolMode::Named(name.clone()),
                        parallel: false,
                    };
                    let opening = format.def().named_opening(name);
                    let failed = match self.lark(&one) {
                        Err(e) => return e,
                        Ok(l) => self.ready(&l, &opening).err(),
                    };
                    if let Some(e) = failed {
                        return ConstrainError::bad(
                            &format!("tools[{i}].function.parameters"),
                            short(&e),
                        );
                    }
                }
                ConstrainError::bad("tools", message)
            }
        }
    }
}

/// The largest grammar (lark text with its embedded JSON Schemas) compiled for a request:
/// far above any real tool list (128 tools with 4 KB schemas make about 0.6 MB), and small
/// enough that llguidance's own limits (`ParserLimits`: grammar size, lexer fuel, Earley
/// items per step) are what bound compile time, not the parsing of the text.
pub const MAX_GRAMMAR_BYTES: usize = 2 << 20;

/// What llguidance cannot be trusted with, refused before compiling (see
/// [`schema::check_numbers`]).
fn check_schemas(spec: &GrammarSpec) -> Result<(), ConstrainError> {
    match spec {
        GrammarSpec::JsonObject => Ok(()),
        GrammarSpec::JsonSchema { schema, .. } => {
            schema::check_numbers(schema, "response_format.json_schema.schema")
        }
        GrammarSpec::Tools { tools, .. } => tools.iter().enumerate().try_for_each(|(i, t)| {
            let param = format!("tools[{i}].function.parameters");
            t.function
                .parameters
                .as_ref()
                .map_or(Ok(()), |p| schema::check_numbers(p, &param))
        }),
    }
}

/// The request field a whole grammar comes from.
fn spec_param(spec: &GrammarSpec) -> &'static str {
    match spec {
        GrammarSpec::Tools { .. } => "tools",
        GrammarSpec::JsonObject | GrammarSpec::JsonSchema { .. } => {
            "response_format.json_schema.schema"
        }
    }
}

/// The first line of an llguidance error, capped in length.
fn short(err: &str) -> String {
    const LEAD: &str = "the schema cannot be enforced: ";
    let line = err.lines().next().unwrap_or(err);
    let line = line.strip_prefix(LEAD).unwrap_or(line);
    let mut s: String = line.chars().take(400).collect();
    if s.len() < line.len() {
        s.push('…');
    }
    format!("{LEAD}{s}")
}

/// A compiled grammar, ready to start generations (cheap to clone).
#[derive(Clone)]
pub struct Constraint {
    matcher: Matcher,
    /// The request field the grammar comes from (named when a limit is reached later).
    param: &'static str,
}

impl std::fmt::Debug for Constraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Constraint").finish_non_exhaustive()
    }
}

impl Constraint {
    /// The state of one generation under this grammar.
    pub fn start(&self) -> ConstraintState {
        ConstraintState {
            matcher: self.matcher.deep_clone(),
            param: self.param,
        }
    }
}

/// One generation's matcher.
pub struct ConstraintState {
    matcher: Matcher,
    param: &'static str,
}

impl ConstraintState {
    /// Disallows (−∞) every logit the grammar forbids next; `Ok(false)` when the grammar is
    /// complete and nothing may follow.
    pub fn mask(&mut self, logits: &mut [f32]) -> Result<bool, ConstrainError> {
        if self.matcher.is_stopped() {
            return Ok(false);
        }
        // Failures here are the request's grammar reaching a limit (Earley items, lexer
        // fuel) or asking for text this model's tokens cannot spell: client errors.
        match self.matcher.compute_mask() {
            Ok(m) => {
                if mask::apply(m.as_slice(), logits) == 0 {
                    return Err(ConstrainError::bad(
                        self.param,
                        "the schema cannot be enforced: it allows no token of this model",
                    ));
                }
                Ok(true)
            }
            Err(_) if self.matcher.is_stopped() => Ok(false),
            Err(e) => Err(ConstrainError::bad(self.param, short(&e.to_string()))),
        }
    }

    /// Advances the grammar over the sampled token (which the mask allowed: failing to
    /// advance is the grammar reaching a limit, a client error like the mask's).
    pub fn commit(&mut self, token: u32) -> Result<(), ConstrainError> {
        self.matcher
            .consume_token(token)
            .map_err(|e| ConstrainError::bad(self.param, short(&e.to_string())))
    }

    /// Whether the grammar is complete (only the end of generation may follow).
    pub fn is_finished(&self) -> bool {
        self.matcher.is_stopped()
    }

    /// Whether the text so far is a complete match of the grammar.
    pub fn is_accepting(&mut self) -> bool {
        self.matcher.is_accepting().unwrap_or(false)
    }
}

/// A lazily built [`ConstraintEngine`], one per loaded model.
#[derive(Default)]
pub struct EngineCache(OnceLock<Result<Arc<ConstraintEngine>, ConstrainError>>);

impl std::fmt::Debug for EngineCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EngineCache")
    }
}

impl EngineCache {
    /// The engine, built by `build` on first use.
    pub fn get(
        &self,
        build: impl FnOnce() -> Result<ConstraintEngine, ConstrainError>,
    ) -> Result<Arc<ConstraintEngine>, ConstrainError> {
        self.0.get_or_init(|| build().map(Arc::new)).clone()
    }
}
