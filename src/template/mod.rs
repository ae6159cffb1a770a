//! Chat templates: chat requests (`crate::request`) rendered into model prompts exactly as
//! transformers' `apply_chat_template` would, and prompts encoded so that only template
//! markup yields control tokens.
//!
//! Typical use (server or CLI):
//! ```ignore
//! let info = ModelTemplateInfo::from_model_dir(dir)?;          // or from_gguf_metadata / bundled
//! let renderer = PromptRenderer::new(info, Some(family))?.with_tokenizer(&tokenizer);
//! let prompt = renderer.render(&request)?;                      // RenderedPrompt
//! let ids = encode_prompt(&tokenizer, &prompt)?;
//! ```

pub mod bounded;
pub mod chat;
pub mod encode;
pub mod env;
pub mod error;
pub mod limits;
pub mod normalize;
pub mod protect;
pub mod pyjson;
pub mod pystub;
pub mod render;
pub mod sandbox;
pub mod source;
pub mod thinking;

pub use chat::ChatTemplate;
pub use encode::encode_prompt;
pub use env::Clock;
pub use error::TemplateError;
pub use normalize::{normalize_request, CallIdStyle, NormalizeOptions, TemplateInput};
pub use protect::RenderedPrompt;
pub use render::PromptRenderer;
pub use source::{bundled_template, ModelTemplateInfo};

/// Renders a request for a family with the given template info (a one-shot convenience;
/// servers keep a [`PromptRenderer`]).
pub fn render_request(
    req: &crate::request::ChatRequest,
    family: Option<&crate::registry::Family>,
    info: ModelTemplateInfo,
) -> Result<RenderedPrompt, TemplateError> {
    PromptRenderer::new(info, family)?.render(req)
}
