//! Applying a token mask (llguidance's bitset, 32 tokens per word) to a row of logits.

/// Sets the logits of tokens not allowed by `words` (bit `i % 32` of word `i / 32`) to
/// negative infinity; logits past the mask are disallowed too. Returns how many tokens
/// remain allowed.
pub fn apply(words: &[u32], logits: &mut [f32]) -> usize {
    let mut allowed = 0usize;
    for (w, chunk) in logits.chunks_mut(32).enumerate() {
        let word = words.get(w).copied().unwrap_or(0);
        match word {
            u32::MAX if chunk.len() == 32 => allowed += 32,
            0 => chunk.fill(f32::NEG_INFINITY),
            _ => {
                for (b, l) in chunk.iter_mut().enumerate() {
                    if word & (1 << b) == 0 {
                        *l = f32::NEG_INFINITY;
                    } else {
                        allowed += 1;
                    }
                }
            }
        }
    }
    allowed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_by_bit_and_beyond_the_mask() {
        let mut logits = vec![1.0f32; 70];
        // allow tokens 0, 33 and 34; word 2 (64..96) missing → all disallowed.
        let words = [0b1u32, 0b110];
        assert_eq!(apply(&words, &mut logits), 3);
        for (i, l) in logits.iter().enumerate() {
            assert_eq!(l.is_finite(), [0, 33, 34].contains(&i), "{i}");
        }
        let mut logits = vec![0.5f32; 40];
        assert_eq!(apply(&[u32::MAX, u32::MAX], &mut logits), 40);
        assert!(logits.iter().all(|l| l.is_finite()));
    }
}
