//! IQ4_NL and IQ4_XS: every packed kernel against the scalar reference of their formats
//! ([`crate::blocks`], [`crate::kblocks`]; that decoding is checked against ggml's own Python
//! package in the main crate's `tests/quant_reference.rs`). IQ4_NL runs on Q8_0 activations,
//! IQ4_XS on Q8_K, as in ggml.

use rand::SeedableRng;

use super::{random_blocks, random_f32};
use crate::act::QuantActs;
use crate::blocks::{self, BlockKind, IQ4_TABLE, QK};
use crate::kblocks::{self, QK_K};
use crate::matmul::matmul_with;
use crate::pack::PackedMatrix;
use crate::Isa;

/// The reference outputs `[m, n]` of `n` rows of `kind` (`w`) against `x` (`[m, k]`).
fn reference(kind: BlockKind, w: &[u8], x: &[f32], n: usize, m: usize, k: usize) -> Vec<f32> {
    let row_bytes = k / kind.block_values() * kind.block_bytes();
    let row = |r: usize| &w[r * row_bytes..(r + 1) * row_bytes];
    let mut want = vec![0f32; m * n];
    if kind.is_k() {
        let mut a = QuantActs::default();
        a.quantize_k_into(x, m, k);
        let nsb = k / QK_K;
        for t in 0..m {
            for r in 0..n {
                want[t * n + r] = kblocks::vec_dot_ref(
                    kind,
                    row(r),
                    a.row(t),
                    &a.dk[t * nsb..(t + 1) * nsb],
                    &a.bs16[t * k / 16..(t + 1) * k / 16],
                );
            }
        }
    } else {
        let a = QuantActs::quantize(x, m, k);
        let nb = k / QK;
        for t in 0..m {
            let (ad, asum) = (&a.d[t * nb..(t + 1) * nb], &a.s[t * nb..(t + 1) * nb]);
            for r in 0..n {
                want[t * n + r] = blocks::vec_dot_ref(kind, row(r), a.row(t), ad, asum);
            }
        }
    }
    want
}

/// Every instruction set's kernels against [`reference`].
fn check(kind: BlockKind, w: &[u8], x: &[f32], n: usize, m: usize, k: usize) {
    let want = reference(kind, w, x, n, m, k);
    let p = PackedMatrix::pack(kind, w, n, k).unwrap();
    for &isa in Isa::available() {
        let mut got = vec![f32::NAN; m * n];
        assert!(matmul_with(isa, &p, x, m, &mut got));
        for (i, (&g, &e)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g - e).abs() <= 1e-4 * (1.0 + e.abs()),
                "{kind:?} {isa:?} n={n} k={k} m={m} at {i}: {g} vs {e}"
            );
        }
    }
}

#[test]
fn iq4_nl_kernels_match_the_reference() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(31);
    let kind = BlockKind::IQ4NL;
    for &(n, nb, m) in &[(16, 1, 1), (37, 3, 5), (64, 9, 17), (5, 2, 8), (48, 28, 70)] {
        let k = nb * QK;
        let w = random_blocks(kind, n * nb, &mut rng);
        check(kind, &w, &random_f32(m * k, &mut rng), n, m, k);
    }
}

#[test]
fn iq4_xs_kernels_match_the_reference() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(32);
    let kind = BlockKind::IQ4XS;
    // The last: a row as long as Qwen2.5-0.5B's ffn_down (4864 values).
    for &(n, nsb, m) in &[(16, 1, 1), (37, 2, 3), (5, 1, 9), (48, 3, 70), (20, 19, 2)] {
        let k = nsb * QK_K;
        let w = random_blocks(kind, n * nsb, &mut rng);
        check(kind, &w, &random_f32(m * k, &mut rng), n, m, k);
    }
}

#[test]
fn largest_integer_sums_do_not_overflow() {
    // Every nibble at the table's ends (-127, 113) and IQ4_XS's scales at theirs (-32, 31),
    // against activations that quantize to +-127 (Q8_0) and to -128 (Q8_K, whose quantizer
    // gives the largest magnitude -128): the sign tricks and the unsigned table's offset at
    // their limits.
    let mut rng = rand::rngs::StdRng::seed_from_u64(33);
    for kind in [BlockKind::IQ4NL, BlockKind::IQ4XS] {
        let (n, m) = (16, 3);
        let k = 2 * QK_K;
        for (nibbles, scales) in [(0x00u8, 0x00u8), (0xFF, 0xFF), (0x00, 0xFF), (0xFF, 0x00)] {
            let mut w = random_blocks(kind, n * k / kind.block_values(), &mut rng);
            for blk in w.chunks_mut(kind.block_bytes()) {
                if kind == BlockKind::IQ4XS {
                    blk[2..8].fill(scales);
                    blk[8..].fill(nibbles);
                } else {
                    blk[2..].fill(nibbles);
                }
            }
            // Row 0 all +1, row 1 all -1, row 2 alternating blocks of 16.
            let x: Vec<f32> = (0..m * k)
                .map(|i| match i / k {
                    0 => 1.0,
                    1 => -1.0,
                    _ if (i / 16).is_multiple_of(2) => 1.0,
                    _ => -1.0,
                })
                .collect();
            check(kind, &w, &x, n, m, k);
        }
    }
}

#[test]
fn table_indices_pack_and_unpack() {
    for kind in [BlockKind::IQ4NL, BlockKind::IQ4XS] {
        for u in 0..16 {
            let q = kind.int_of(u);
            assert_eq!(q, IQ4_TABLE[u as usize] as i32);
            assert_eq!(kind.packed_of(q) as i32, u, "{kind:?} {u}");
        }
    }
    // The table rises (packing searches it).
    assert!(IQ4_TABLE.windows(2).all(|p| p[0] < p[1]));
}
