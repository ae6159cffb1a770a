//! Anthropic Messages API wire types: what clients send to `POST /v1/messages` and
//! `/v1/messages/count_tokens`. Unknown fields are ignored everywhere (clients send fields
//! callm has no use for, such as `cache_control` or `anthropic-beta` features).
//!
//! Read only by the edge (`crate::request::anthropic`), the server and the CLI; the answers'
//! shapes are written by `crate::server::anthropic`.

pub mod request;

pub use request::*;
