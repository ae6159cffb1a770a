//! Sampling settings shared by chat and raw-text requests.

/// How to pick tokens, as the client asked (ranges checked at the edge).
#[derive(Debug, Clone, PartialEq)]
pub struct Sampling {
    /// Softmax temperature in [0, 2]; `None`: the default of 1.
    pub temperature: Option<f32>,
    /// Nucleus sampling mass in (0, 1].
    pub top_p: f32,
    /// Keep only the `top_k` most likely tokens (0 = off; not an OpenAI field).
    pub top_k: u32,
    /// Presence penalty in [-2, 2].
    pub presence_penalty: f32,
    /// Frequency penalty in [-2, 2].
    pub frequency_penalty: f32,
    /// Biases in [-100, 100] added to these token ids' logits.
    pub logit_bias: Vec<(u32, f32)>,
    /// Seed for reproducible sampling (offset by the choice index, see [`Sampling::seed_for`]).
    pub seed: Option<u64>,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling {
            temperature: None,
            top_p: 1.0,
            top_k: 0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            logit_bias: Vec::new(),
            seed: None,
        }
    }
}

impl Sampling {
    /// The temperature when the client gave none.
    pub const DEFAULT_TEMPERATURE: f32 = 1.0;

    /// The seed of choice number `choice` (each of `n` choices samples differently).
    pub fn seed_for(&self, choice: u32) -> Option<u64> {
        self.seed.map(|s| s.wrapping_add(u64::from(choice)))
    }
}
