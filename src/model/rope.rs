//! Rotary position encoding: the scaling kinds (Llama 3.1, explicit per-frequency factors from
//! GGUF `rope_freqs`, linear, Phi-3's longrope), read from a `config.json`, and the inverse
//! frequencies and cos/sin multiplier a decoder's rope tables are built from.

use serde_json::Value;

use super::config::{get_f64, get_usize, ModelConfig};

/// Llama-3.1-style frequency-dependent rope scaling.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Llama3RopeScaling {
    /// Overall scale factor.
    pub factor: f64,
    /// Wavelengths longer than `orig / low_freq_factor` are divided by `factor`.
    pub low_freq_factor: f64,
    /// Wavelengths shorter than `orig / high_freq_factor` are kept.
    pub high_freq_factor: f64,
    /// The context length the base model was trained with.
    pub original_max_position_embeddings: f64,
}

/// How rotary frequencies are scaled.
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    /// No scaling.
    None,
    /// Llama 3.1 rule, computed from the config.
    Llama3(Llama3RopeScaling),
    /// Per-frequency divisors given explicitly (GGUF `rope_freqs.weight`).
    Factors(Vec<f32>),
    /// Linear position interpolation: positions divided by the factor.
    Linear(f64),
    /// Phi-3's "longrope": per-frequency divisors, short or long by the allocated context.
    LongRope(LongRopeScaling),
}

/// Phi-3's "longrope" scaling (Phi-3.5-mini, Phi-4-mini): each rotary frequency is divided by
/// a factor, from `short_factor` when the allocated context is at most
/// `original_max_position_embeddings` and from `long_factor` beyond it (llama.cpp's choice:
/// by the context, not per position as transformers does), and cos/sin are multiplied by
/// `attention_factor`.
#[derive(Debug, Clone, PartialEq)]
pub struct LongRopeScaling {
    /// Divisors for contexts up to the original length, one per rotary pair.
    pub short_factor: Vec<f32>,
    /// Divisors for longer contexts.
    pub long_factor: Vec<f32>,
    /// The context length the model was pretrained with.
    pub original_max_position_embeddings: usize,
    /// Multiplier on cos and sin.
    pub attention_factor: f64,
}

impl LongRopeScaling {
    /// The factors for an allocated context of `context` positions: the long ones beyond the
    /// original pretraining length, else the short ones.
    pub fn factors_for(&self, context: usize) -> &[f32] {
        if context > self.original_max_position_embeddings {
            &self.long_factor
        } else {
            &self.short_factor
        }
    }

    /// The attention factor transformers derives when the config gives none: 1 without
    /// extension, else `sqrt(1 + ln(factor) / ln(original))`, `factor` being the extension
    /// ratio (`max_position_embeddings / original`).
    pub fn default_attention_factor(factor: f64, original: usize) -> f64 {
        if factor <= 1.0 {
            1.0
        } else {
            (1.0 + factor.ln() / (original as f64).ln()).sqrt()
        }
    }
}

/// Unscaled rotary inverse frequencies `theta^(-2i/d)` for `d` rotary dimensions.
fn inv_freq(theta: f64, d: usize) -> Vec<f64> {
    (0..d / 2)
        .map(|i| 1.0 / theta.powf(2.0 * i as f64 / d as f64))
        .collect()
}

/// The rope scaling a `rope_parameters` / `rope_scaling` object `s` of config `v` describes.
pub(super) fn rope_scaling_of(
    v: &Value,
    s: &Value,
    max_positions: usize,
) -> Result<RopeScaling, String> {
    let kind = s
        .get("rope_type")
        .or_else(|| s.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("default");
    Ok(match kind {
        "default" => RopeScaling::None,
        "llama3" => RopeScaling::Llama3(Llama3RopeScaling {
            factor: get_f64(s, "factor").ok_or("llama3 rope scaling without \"factor\"")?,
            low_freq_factor: get_f64(s, "low_freq_factor").unwrap_or(1.0),
            high_freq_factor: get_f64(s, "high_freq_factor").unwrap_or(4.0),
            original_max_position_embeddings: get_f64(s, "original_max_position_embeddings")
                .unwrap_or(8192.0),
        }),
        "linear" => RopeScaling::Linear(get_f64(s, "factor").unwrap_or(1.0)),
        // "su" is the name Phi-3-mini-128k's first config used.
        "longrope" | "su" => {
            // transformers: the top-level key (Phi-3's) wins, then the one in the rope
            // parameters, then the declared context.
            let original = get_usize(v, "original_max_position_embeddings")
                .or_else(|| get_usize(s, "original_max_position_embeddings"))
                .unwrap_or(max_positions);
            if original == 0 {
                return Err("longrope original_max_position_embeddings is 0".into());
            }
            let factor = get_f64(s, "factor").unwrap_or(max_positions as f64 / original as f64);
            let list = |key: &str| -> Result<Vec<f32>, String> {
                s.get(key)
                    .and_then(Value::as_array)
                    .ok_or(format!("longrope rope scaling without a \"{key}\" list"))?
                    .iter()
                    .map(|x| {
                        x.as_f64()
                            .map(|f| f as f32)
                            .ok_or(format!("longrope \"{key}\" holds {x}, not a number"))
                    })
                    .collect()
            };
            RopeScaling::LongRope(LongRopeScaling {
                short_factor: list("short_factor")?,
                long_factor: list("long_factor")?,
                original_max_position_embeddings: original,
                attention_factor: get_f64(s, "attention_factor")
                    .unwrap_or_else(|| LongRopeScaling::default_attention_factor(factor, original)),
            })
        }
        other => return Err(format!("unsupported rope scaling type \"{other}\"")),
    })
}

/// Inverse frequencies divided by per-frequency factors (missing factors count as 1).
fn divided(base: &[f64], factors: &[f32]) -> Vec<f32> {
    base.iter()
        .enumerate()
        .map(|(i, &f)| (f / factors.get(i).copied().unwrap_or(1.0) as f64) as f32)
        .collect()
}

impl ModelConfig {
    /// Rotary inverse frequencies of the sliding-window layers when they have their own base
    /// (Gemma 3's local layers: that base, no scaling); `None` when every layer shares one.
    pub fn local_rope_inv_freq(&self) -> Option<Vec<f32>> {
        let theta = self.opts.local_rope_theta?;
        Some(
            inv_freq(theta, self.rotary_dim)
                .iter()
                .map(|&f| f as f32)
                .collect(),
        )
    }

    /// Rotary inverse frequencies, one per pair of head dimensions, with scaling applied.
    pub fn rope_inv_freq(&self) -> Vec<f32> {
        let base = inv_freq(self.rope_theta, self.rotary_dim);
        match &self.rope_scaling {
            RopeScaling::None | RopeScaling::Linear(_) => base.iter().map(|&f| f as f32).collect(),
            RopeScaling::Factors(fs) => divided(&base, fs),
            RopeScaling::LongRope(s) => divided(&base, s.factors_for(self.context)),
            RopeScaling::Llama3(s) => {
                let low_wavelen = s.original_max_position_embeddings / s.low_freq_factor;
                let high_wavelen = s.original_max_position_embeddings / s.high_freq_factor;
                base.iter()
                    .map(|&f| {
                        let wavelen = 2.0 * std::f64::consts::PI / f;
                        let out = if wavelen < high_wavelen {
                            f
                        } else if wavelen > low_wavelen {
                            f / s.factor
                        } else {
                            let smooth = (s.original_max_position_embeddings / wavelen
                                - s.low_freq_factor)
                                / (s.high_freq_factor - s.low_freq_factor);
                            (1.0 - smooth) * f / s.factor + smooth * f
                        };
                        out as f32
                    })
                    .collect()
            }
        }
    }

    /// The multiplier on rotary cos/sin (longrope's attention factor; 1 otherwise).
    pub fn rope_attention_factor(&self) -> f64 {
        match &self.rope_scaling {
            RopeScaling::LongRope(s) => s.attention_factor,
            _ => 1.0,
        }
    }

    /// Position divisor for linear rope scaling (1 otherwise).
    pub fn rope_position_scale(&self) -> f64 {
        match self.rope_scaling {
            RopeScaling::Linear(f) if f > 0.0 => f,
            _ => 1.0,
        }
    }
}
