//! A compiled chat template, cached process-wide by its text.

use minijinja::{Environment, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use super::env::{build_environment, raised_message, TEMPLATE_NAME};
use super::error::TemplateError;

/// A chat template compiled once into its own minijinja environment.
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("len", &self.source.len())
            .finish()
    }
}

type Cache = Mutex<HashMap<String, Arc<ChatTemplate>>>;

fn cache() -> &'static Cache {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

impl ChatTemplate {
    /// Compiles `source`, or returns the copy compiled earlier for the same text.
    pub fn compile(source: &str) -> Result<Arc<ChatTemplate>, TemplateError> {
        if let Some(t) = cache()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(source)
        {
            return Ok(t.clone());
        }
        let env = build_environment(source.to_string())
            .map_err(|e| TemplateError::Syntax(format!("{e:#}")))?;
        let t = Arc::new(ChatTemplate {
            env,
            source: source.to_string(),
        });
        cache()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(source.to_string(), t.clone());
        Ok(t)
    }

    /// The template text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders with `ctx` (messages, tools, add_generation_prompt, bos_token, ...).
    ///
    /// A `raise_exception` call gives [`TemplateError::Raised`] with the template's message.
    pub fn render(&self, ctx: &Value) -> Result<String, TemplateError> {
        let tpl = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(|e| TemplateError::Syntax(e.to_string()))?;
        tpl.render(ctx).map_err(|e| match raised_message(&e) {
            Some(m) => TemplateError::Raised(m),
            None => TemplateError::Render(render_error_text(&e)),
        })
    }
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
