//! The kernels against independent references: the scalar definitions of ggml's formats
//! ([`crate::blocks`], [`crate::kblocks`]) and candle's own dequantization and quantized matmul.

use rand::Rng;

use crate::blocks::BlockKind;

mod blocks;
mod concat;
mod invariance;
mod iq;
mod kquants;

/// Random blocks of `kind`: random integers with a random finite scale (and minimum).
pub(crate) fn random_blocks(kind: BlockKind, nblocks: usize, rng: &mut impl Rng) -> Vec<u8> {
    let mut v = vec![0u8; nblocks * kind.block_bytes()];
    for blk in v.chunks_mut(kind.block_bytes()) {
        rng.fill(blk);
        // Q2_K, Q3_K and Q6_K keep their f16 scales after the integers.
        let tail = match kind {
            BlockKind::Q2K => Some(80),
            BlockKind::Q3K => Some(108),
            BlockKind::Q6K => Some(208),
            _ => None,
        };
        if let Some(at) = tail {
            let d = half::f16::from_f32(rng.random_range(-0.01f32..0.01)).to_bits();
            blk[at..at + 2].copy_from_slice(&d.to_le_bytes());
            if kind.has_min() {
                let m = half::f16::from_f32(rng.random_range(-0.01f32..0.01)).to_bits();
                blk[at + 2..at + 4].copy_from_slice(&m.to_le_bytes());
            }
            continue;
        }
        let d = half::f16::from_f32(rng.random_range(-0.05f32..0.05)).to_bits();
        blk[..2].copy_from_slice(&d.to_le_bytes());
        if kind.has_min() {
            let range = if kind.is_k() { 0.01 } else { 0.5 };
            let m = half::f16::from_f32(rng.random_range(-range..range)).to_bits();
            blk[2..4].copy_from_slice(&m.to_le_bytes());
        }
    }
    v
}

/// `len` random floats in [-2, 2).
pub(crate) fn random_f32(len: usize, rng: &mut impl Rng) -> Vec<f32> {
    (0..len).map(|_| rng.random_range(-2.0f32..2.0)).collect()
}
