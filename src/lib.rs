//! callm: a local inference engine for open function-calling language models.
//!
//! See `ARCHITECTURE.md` for the codemap and how a request flows through the crate.

pub mod anthropic;
pub mod chat;
pub mod cli;
pub mod constrain;
pub mod device;
pub mod engine;
pub mod gguf_header;
pub mod kernels;
pub mod loader;
pub mod metrics;
pub mod model;
pub mod openai;
pub mod parsers;
pub mod paths;
pub mod registry;
pub mod request;
pub mod runtime;
pub mod server;
pub mod template;
pub mod tokenizer;
