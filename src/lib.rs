//! callm: a local inference engine for open function-calling language models.
//!
//! See `ARCHITECTURE.md` for the codemap and how a request flows through the crate.

pub mod openai;
pub mod registry;
