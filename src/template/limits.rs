//! What one render of a chat template may cost. Templates come from model files (GGUF metadata,
//! tokenizer_config.json), so they are untrusted input: a hostile one must end with a clear
//! [`super::TemplateError::Limit`], within bounded time and memory, never hang or abort.
//!
//! The budget is minijinja's fuel (its `fuel` feature): every instruction costs one fuel, and
//! the data a template creates or processes costs about one fuel per 64 bytes (output, strings
//! built by `~`, `+`, `*`, filter inputs and results; serializing costs one fuel per 4 bytes).
//! Fuel only goes down, so it bounds the time of a render (loops, recursion) and the memory the
//! template can allocate (about `RENDER_FUEL * 64` bytes). callm's own filters (`tojson`,
//! `py_repr`, `py_call`, `py_stub`, `indent`, the formatter, `str.format`, `strftime_now`)
//! check the remaining fuel before they build a string, so a single call cannot allocate past
//! it. What the fuel does not cover in minijinja 3.1 (comparing or hashing long strings, lazily
//! repeated lists turned into text) is bounded by rendering in a worker process under a memory
//! and a time limit ([`super::sandbox`]), as the `callm` binary does.

use minijinja::{Error, ErrorKind, State};

/// Fuel of one render.
///
/// Rationale: legitimate prompts use a fraction of it. A 0.8 MB prompt (100 tools with long
/// schemas and 200 long messages, about 200,000 tokens: more than any context callm serves)
/// takes 140,000 to 240,000 fuel with the fixture templates of Llama 3.1, Qwen, Mistral,
/// Hermes and gpt-oss, 430,000 with Functionary v3.2 and 900,000 with Granite 4.0.
/// Hostile templates stop within about a second of CPU at this budget (the measured worst
/// cases are in README, "Chat templates are untrusted input") and can allocate about
/// `RENDER_FUEL * 64` bytes (128 MB).
pub const RENDER_FUEL: u64 = 2_000_000;

/// Bytes one fuel pays for (minijinja's accounting unit).
pub const BYTES_PER_FUEL: u64 = 64;

/// Bytes of serialized output one fuel pays for (minijinja charges serializing 16 times
/// more than copying; callm's serializers charge the same).
pub const SERIALIZED_BYTES_PER_FUEL: u64 = 4;

/// Largest rendered prompt, in bytes. The server refuses request bodies over 16 MiB; a
/// template may repeat some of the request (tools in a system prompt and again in a user
/// message) or escape it. Any prompt this large is far past every model's context anyway.
pub const MAX_PROMPT_BYTES: usize = 64 << 20;

/// Largest chat template source, in bytes (the largest known templates are under 20 KB).
pub const MAX_TEMPLATE_BYTES: usize = 1 << 20;

/// Largest `indent` width and `tojson(indent=...)` (spaces, or characters of an indent
/// string). Templates use 2 or 4.
pub const MAX_INDENT: usize = 32;

/// Deepest nesting of macro calls, `include`s and recursive loops. Real templates recurse
/// only along a JSON schema (a few levels); this keeps the native stack of a 2 MiB thread
/// (tokio's worker and blocking threads) far from overflowing.
pub const MAX_RECURSION: usize = 500;

/// An "out of fuel" error with an explanation; the render ends with [`super::TemplateError::Limit`].
pub fn over_budget(what: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::OutOfFuel, what.to_string())
}

/// Bytes callm's serializers may still write: what the remaining fuel pays for, and never
/// more than [`MAX_PROMPT_BYTES`].
pub fn serialized_budget(state: &State) -> usize {
    budget(state, SERIALIZED_BYTES_PER_FUEL)
}

/// Bytes a string that is about to be built may have: what the remaining fuel pays for, and
/// never more than [`MAX_PROMPT_BYTES`].
pub fn byte_budget(state: &State) -> usize {
    budget(state, BYTES_PER_FUEL)
}

fn budget(state: &State, bytes_per_fuel: u64) -> usize {
    let by_fuel = match state.fuel_levels() {
        Some((_, remaining)) => remaining.saturating_mul(bytes_per_fuel),
        None => u64::MAX,
    };
    usize::try_from(by_fuel)
        .unwrap_or(usize::MAX)
        .min(MAX_PROMPT_BYTES)
}

/// Fails unless a string of `bytes` fits [`byte_budget`].
pub fn ensure_bytes(state: &State, bytes: usize, what: &str) -> Result<(), Error> {
    let budget = byte_budget(state);
    if bytes > budget {
        return Err(over_budget(format!(
            "{what} would build {bytes} bytes, over the {budget} bytes left to this render"
        )));
    }
    Ok(())
}

/// Charges the fuel of `bytes` of serialized output.
pub fn charge_serialized(state: &State, bytes: usize) -> Result<(), Error> {
    state.consume_fuel(bytes as u64 / SERIALIZED_BYTES_PER_FUEL)
}
