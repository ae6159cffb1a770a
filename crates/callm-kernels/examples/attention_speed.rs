//! Times decode attention on SmolLM2's shape (9 query heads, 3 kv heads, 64 values a head, an
//! f16 cache): 1, 4 and 8 sequences of one new row each, at a few cache lengths, cycling over
//! 30 layers' caches so that the caches stream from memory as in a model's step. Prints
//! microseconds per layer call and per row, the best of 5 runs. An A/B tool for kernel changes
//! (build it at both commits and run the two binaries alternately); speed is never asserted.
//!
//! `RAYON_NUM_THREADS=1 cargo run --release -p callm-kernels --example attention_speed [avx2]`
//! times one core; `avx2` selects the AVX2 kernels on an AVX-512 machine (AVX-VNNI machines run
//! the same attention kernels as AVX2 ones).

use std::time::Instant;

use callm_kernels::attention::{attend, key_block_floats, AttnParams, SeqKv, KEY_BLOCK};
use callm_kernels::{select_isa, Isa};
use half::f16;
use rand::{Rng, SeedableRng};

const HEADS: usize = 9;
const KV_HEADS: usize = 3;
const HEAD_DIM: usize = 64;
const LAYERS: usize = 30;

fn main() -> candle_core::Result<()> {
    match std::env::args().nth(1).as_deref() {
        Some("avx2") => select_isa(Some(Isa::Avx2)),
        Some("avxvnni") => select_isa(Some(Isa::AvxVnni)),
        _ => select_isa(None),
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let p = AttnParams {
        heads: HEADS,
        kv_heads: KV_HEADS,
        head_dim: HEAD_DIM,
        scale: 1.0 / (HEAD_DIM as f32).sqrt(),
        window: usize::MAX,
        softcap: None,
        alibi: None,
    };
    for pos in [160usize, 1000] {
        let blocks = (pos + 1).div_ceil(KEY_BLOCK);
        let len = blocks * key_block_floats(KV_HEADS, HEAD_DIM);
        for seqs in [1usize, 4, 8] {
            // One key and one value cache per sequence and layer.
            let caches: Vec<Vec<f16>> = (0..2 * seqs * LAYERS)
                .map(|_| {
                    (0..len)
                        .map(|_| f16::from_f32(rng.random_range(-1.0f32..1.0)))
                        .collect()
                })
                .collect();
            let q: Vec<f32> = (0..seqs * HEADS * HEAD_DIM)
                .map(|_| rng.random_range(-1.0f32..1.0))
                .collect();
            let mut out = vec![0f32; q.len()];
            let call = |layer: usize, out: &mut [f32]| {
                let kv: Vec<SeqKv<'_, f16>> = (0..seqs)
                    .map(|s| {
                        let at = 2 * (layer * seqs + s);
                        SeqKv {
                            row0: s,
                            n: 1,
                            pos,
                            k: &caches[at],
                            v: &caches[at + 1],
                        }
                    })
                    .collect();
                attend(&p, &q, &kv, out)
            };
            for layer in 0..LAYERS {
                call(layer, &mut out)?;
            }
            let rounds = 20;
            let mut best = f64::MAX;
            for _ in 0..5 {
                let t = Instant::now();
                for _ in 0..rounds {
                    for layer in 0..LAYERS {
                        call(layer, &mut out)?;
                    }
                }
                best = best.min(t.elapsed().as_secs_f64() / (rounds * LAYERS) as f64);
            }
            let us = best * 1e6;
            println!(
                "position {pos} sequences={seqs}: {us:.1} us a layer ({:.1} us a row)",
                us / seqs as f64
            );
        }
    }
    Ok(())
}
