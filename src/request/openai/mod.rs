//! The OpenAI front ends' edge: `POST /v1/chat/completions` and `/v1/completions` bodies
//! (the wire types of `crate::openai`) become domain requests here, and only here.
//!
//! The server, `callm chat`, `callm generate` and `callm render` all convert through these
//! `TryFrom`s, so a body is judged the same way wherever it comes from.

mod chat;
mod completions;
#[cfg(test)]
mod tests;

pub use chat::parse_arguments;
pub use completions::DEFAULT_MAX_TOKENS;

use serde_json::{Map, Value};

use super::{Limits, RequestError, Sampling};
use crate::openai::StopSpec;

/// Most stop sequences per request (OpenAI's limit).
pub const MAX_STOP: usize = 4;

/// The sampling-related fields both OpenAI bodies share, read from a body that has them
/// under their wire names.
macro_rules! sampling_fields {
    ($req:expr) => {
        SamplingFields {
            n: $req.n,
            temperature: $req.temperature,
            top_p: $req.top_p,
            presence_penalty: $req.presence_penalty,
            frequency_penalty: $req.frequency_penalty,
            logit_bias: $req.logit_bias.as_ref(),
            seed: $req.seed,
            stop: $req.stop.as_ref(),
        }
    };
}
use sampling_fields;

/// The sampling-related fields both OpenAI bodies share.
struct SamplingFields<'a> {
    n: Option<u32>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    presence_penalty: Option<f32>,
    frequency_penalty: Option<f32>,
    logit_bias: Option<&'a Map<String, Value>>,
    seed: Option<u64>,
    stop: Option<&'a StopSpec>,
}

/// What the shared fields decide: sampling, the stop strings and the number of choices.
struct Shared {
    sampling: Sampling,
    stop: Vec<String>,
    n: u32,
}

impl SamplingFields<'_> {
    /// Checks the fields (in the order clients see them reported) and converts them.
    fn convert(self) -> Result<Shared, RequestError> {
        let n = self.n.unwrap_or(1);
        if !(1..=Limits::MAX_N).contains(&n) {
            return Err(RequestError::new(
                "n",
                format!("`n` must be between 1 and {}.", Limits::MAX_N),
            ));
        }
        range("temperature", self.temperature, 0.0, 2.0)?;
        range("top_p", self.top_p, 0.0, 1.0)?;
        if self.top_p == Some(0.0) {
            return Err(RequestError::new(
                "top_p",
                "`top_p` must be greater than 0, got 0.",
            ));
        }
        range("presence_penalty", self.presence_penalty, -2.0, 2.0)?;
        range("frequency_penalty", self.frequency_penalty, -2.0, 2.0)?;
        let logit_bias = logit_bias(self.logit_bias)?;
        if let Some(StopSpec::Many(v)) = self.stop {
            if v.len() > MAX_STOP {
                return Err(RequestError::new(
                    "stop",
                    format!("`stop` accepts at most {MAX_STOP} sequences."),
                ));
            }
        }
        let stop = match self.stop {
            Some(StopSpec::One(s)) => vec![s.clone()],
            Some(StopSpec::Many(v)) => v.clone(),
            None => Vec::new(),
        };
        Ok(Shared {
            sampling: Sampling {
                temperature: self.temperature,
                top_p: self.top_p.unwrap_or(1.0),
                top_k: 0,
                presence_penalty: self.presence_penalty.unwrap_or(0.0),
                frequency_penalty: self.frequency_penalty.unwrap_or(0.0),
                logit_bias,
                seed: self.seed,
            },
            stop: stop.into_iter().filter(|s| !s.is_empty()).collect(),
            n,
        })
    }
}

/// `logit_bias`: token ids (as strings) to numbers in [-100, 100].
fn logit_bias(map: Option<&Map<String, Value>>) -> Result<Vec<(u32, f32)>, RequestError> {
    map.into_iter()
        .flatten()
        .map(|(k, v)| {
            let id = k.parse::<u32>().ok();
            let bias = v.as_f64().filter(|b| (-100.0..=100.0).contains(b));
            match (id, bias) {
                (Some(id), Some(b)) => Ok((id, b as f32)),
                _ => Err(RequestError::new(
                    "logit_bias",
                    "`logit_bias` maps token ids (as strings) to numbers between -100 and 100.",
                )),
            }
        })
        .collect()
}

fn range(name: &str, v: Option<f32>, lo: f32, hi: f32) -> Result<(), RequestError> {
    match v {
        Some(x) if !(lo..=hi).contains(&x) => Err(RequestError::new(
            name,
            format!("`{name}` must be between {lo} and {hi}, got {x}."),
        )),
        _ => Ok(()),
    }
}

/// A token limit the client gave: at least 1.
fn at_least_one(name: &str, v: Option<u32>) -> Result<(), RequestError> {
    if v == Some(0) {
        return Err(RequestError::new(
            name,
            format!("`{name}` must be at least 1."),
        ));
    }
    Ok(())
}
