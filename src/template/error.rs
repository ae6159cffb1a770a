//! Errors of loading, rendering and encoding chat templates.

/// Everything that can go wrong between a request and its prompt ids.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The template itself called `raise_exception(message)`: the request does not fit the model.
    #[error("chat template rejected the conversation: {0}")]
    Raised(String),
    /// Rendering failed for another reason (a value the template cannot handle).
    #[error("chat template failed to render: {0}")]
    Render(String),
    /// Rendering passed a limit of [`super::limits`] (fuel, prompt size, an argument's size):
    /// a hostile template, or a conversation too large for any context.
    #[error("chat template stopped at a render limit: {0}")]
    Limit(String),
    /// The request cannot be turned into template input.
    #[error("invalid chat request: {0}")]
    Request(String),
    /// The template text does not compile.
    #[error("chat template does not compile: {0}")]
    Syntax(String),
    /// The model has no usable chat template.
    #[error("no chat template: {0}")]
    Missing(String),
    /// A model file is malformed.
    #[error("invalid {what}: {message}")]
    Config {
        /// Which file or field.
        what: String,
        /// What is wrong with it.
        message: String,
    },
    /// A model file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The tokenizer failed on the rendered prompt.
    #[error("cannot tokenize the prompt: {0}")]
    Tokenize(String),
}

impl TemplateError {
    /// Whether the client's request caused the error (the server answers HTTP 400).
    pub fn is_client_error(&self) -> bool {
        matches!(
            self,
            TemplateError::Raised(_)
                | TemplateError::Render(_)
                | TemplateError::Limit(_)
                | TemplateError::Request(_)
        )
    }

    /// The template's own message when it raised, else `None`.
    pub fn raised_message(&self) -> Option<&str> {
        match self {
            TemplateError::Raised(m) => Some(m),
            _ => None,
        }
    }
}
