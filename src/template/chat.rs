//! A compiled chat template, cached process-wide by its text.

use minijinja::{Environment, ErrorKind, Value};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};

use super::env::{build_environment, raised_message, Clock, TEMPLATE_NAME};
use super::error::TemplateError;
use super::limits::{MAX_PROMPT_BYTES, MAX_TEMPLATE_BYTES, RENDER_FUEL};

/// A chat template compiled once into its own minijinja environment.
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
    clock: Clock,
    /// The variables the template looks up without setting them (minijinja's static
    /// analysis): the context it reads.
    reads: HashSet<String>,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("len", &self.source.len())
            .finish()
    }
}

type Cache = Mutex<HashMap<(Clock, String), Arc<ChatTemplate>>>;

fn cache() -> &'static Cache {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

impl ChatTemplate {
    /// Compiles `source`, or returns the copy compiled earlier for the same text.
    pub fn compile(source: &str) -> Result<Arc<ChatTemplate>, TemplateError> {
        Self::compile_with(source, Clock::Local)
    }

    /// [`Self::compile`] with `strftime_now` reading `clock`.
    pub fn compile_with(source: &str, clock: Clock) -> Result<Arc<ChatTemplate>, TemplateError> {
        if source.len() > MAX_TEMPLATE_BYTES {
            return Err(TemplateError::Syntax(format!(
                "the template has {} bytes, over the limit of {MAX_TEMPLATE_BYTES}",
                source.len()
            )));
        }
        if let Some(t) = cache()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(clock, source.to_string()))
        {
            return Ok(t.clone());
        }
        let env = build_environment(source.to_string(), clock)
            .map_err(|e| TemplateError::Syntax(format!("{e:#}")))?;
        let reads = env
            .get_template(TEMPLATE_NAME)
            .map(|t| t.undeclared_variables(false))
            .unwrap_or_default();
        let t = Arc::new(ChatTemplate {
            env,
            source: source.to_string(),
            clock,
            reads,
        });
        cache()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((clock, source.to_string()), t.clone());
        Ok(t)
    }

    /// The template text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the template reads the context variable `name` (one it does not set itself).
    pub fn reads(&self, name: &str) -> bool {
        self.reads.contains(name)
    }

    /// Renders with the JSON context `ctx`: in a worker process of the installed
    /// [`super::sandbox`] when there is one, else in this process. The two give the same text.
    pub fn render_json(
        &self,
        ctx: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<String, TemplateError> {
        if let Some(sandbox) = super::sandbox::installed() {
            if let Some(done) = sandbox.render(&self.source, self.clock, ctx) {
                return done.map(|(text, _)| text);
            }
        }
        self.render(&super::env::to_value(ctx))
    }

    /// Renders with `ctx` (messages, tools, add_generation_prompt, bos_token, ...) in this
    /// process.
    ///
    /// A `raise_exception` call gives [`TemplateError::Raised`] with the template's message;
    /// a render past a limit of [`super::limits`] gives [`TemplateError::Limit`].
    pub fn render(&self, ctx: &Value) -> Result<String, TemplateError> {
        self.render_counted(ctx).map(|(text, _)| text)
    }

    /// [`Self::render`] that also returns the fuel the render used (of
    /// [`super::limits::RENDER_FUEL`]).
    pub fn render_counted(&self, ctx: &Value) -> Result<(String, u64), TemplateError> {
        let tpl = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(|e| TemplateError::Syntax(e.to_string()))?;
        let mut out = CappedWriter::default();
        let captured = tpl
            .render_captured_to(ctx, &mut out)
            .map_err(|e| render_error(&e, out.overflowed))?;
        let fuel = captured.state().fuel_levels().map_or(0, |(used, _)| used);
        drop(captured);
        let text = String::from_utf8(out.bytes)
            .map_err(|e| TemplateError::Render(format!("output is not UTF-8: {e}")))?;
        Ok((text, fuel))
    }
}

/// Collects the output, refusing to grow past [`MAX_PROMPT_BYTES`].
#[derive(Default)]
struct CappedWriter {
    bytes: Vec<u8>,
    overflowed: bool,
}

impl std::io::Write for CappedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len().saturating_add(buf.len()) > MAX_PROMPT_BYTES {
            self.overflowed = true;
            return Err(std::io::Error::other("prompt too large"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn render_error(e: &minijinja::Error, overflowed: bool) -> TemplateError {
    if let Some(m) = raised_message(e) {
        return TemplateError::Raised(m);
    }
    if overflowed {
        return TemplateError::Limit(format!("the prompt passed {MAX_PROMPT_BYTES} bytes"));
    }
    if e.kind() == ErrorKind::OutOfFuel {
        return TemplateError::Limit(format!(
            "the render used up its budget of {RENDER_FUEL} fuel (a template that loops or \
             builds huge values, or a conversation far larger than any context): {}",
            render_error_text(e)
        ));
    }
    TemplateError::Render(render_error_text(e))
}

fn render_error_text(e: &minijinja::Error) -> String {
    let mut s = e.to_string();
    let mut cur = std::error::Error::source(e);
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}
