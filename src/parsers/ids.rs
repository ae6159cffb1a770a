//! Tool-call id generation: OpenAI-style `call_` + 24 alphanumerics, or Mistral's 9 alphanumerics.

const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// The shape of generated call ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IdStyle {
    /// `call_` followed by 24 ASCII alphanumerics.
    #[default]
    OpenAi,
    /// Exactly 9 ASCII alphanumerics (required by Mistral's chat template).
    Mistral9,
}

/// A source of call ids; deterministic when built from a seed.
#[derive(Debug, Clone)]
pub struct IdGen {
    style: IdStyle,
    state: u64,
}

impl IdGen {
    /// An id source of the given style, seeded with `seed` or randomly when `None`.
    pub fn new(style: IdStyle, seed: Option<u64>) -> Self {
        IdGen {
            style,
            state: seed.unwrap_or_else(rand::random),
        }
    }

    fn next_u64(&mut self) -> u64 {
        // splitmix64: a tiny, stable generator (ids only need to be unique and well spread).
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn alnum(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from(ALPHABET[(self.next_u64() % ALPHABET.len() as u64) as usize]))
            .collect()
    }

    /// The next id.
    pub fn next_id(&mut self) -> String {
        match self.style {
            IdStyle::OpenAi => format!("call_{}", self.alnum(24)),
            IdStyle::Mistral9 => self.alnum(9),
        }
    }
}
