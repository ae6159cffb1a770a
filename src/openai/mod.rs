//! OpenAI wire types: Chat Completions and Completions (`request`, `response`), the
//! Responses API (`responses`), and the llama.cpp/vLLM-style `/tokenize` bodies
//! (`tokenize`): what clients send and what callm answers.
//!
//! These types are the contract between the server, the template renderer and the
//! tool-call parsers. Unknown fields are ignored everywhere (clients echo SDK objects
//! back with extra null-valued keys).

pub mod request;
pub mod response;
pub mod responses;
pub mod tokenize;

pub use request::*;
pub use response::*;
