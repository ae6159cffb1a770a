//! The 32-value kernels against the scalar reference, and the reference against candle's own
//! dequantization.

use candle_core::quantized::{QStorage, QTensor};
use candle_core::{Device, Tensor};
use rand::SeedableRng;

use super::{random_blocks, random_f32};
use crate::act::QuantActs;
use crate::blocks::{dequantize_row, unpack, vec_dot_ref, BlockKind, QK};
use crate::matmul::matmul_with;
use crate::pack::PackedMatrix;
use crate::Isa;

const KINDS: [BlockKind; 5] = [
    BlockKind::Q4_0,
    BlockKind::Q4_1,
    BlockKind::Q5_0,
    BlockKind::Q5_1,
    BlockKind::Q8_0,
];

#[test]
fn unpack_matches_candle_dequantize() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    for kind in KINDS {
        // Blocks made by candle's quantizer, and arbitrary blocks read back through candle.
        let x = Tensor::new(random_f32(8 * 64, &mut rng), &Device::Cpu)
            .unwrap()
            .reshape((8, 64))
            .unwrap();
        let q = QTensor::quantize(&x, kind.ggml()).unwrap();
        let bytes = q.data().unwrap().into_owned();
        let theirs: Vec<f32> = q
            .dequantize(&Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let mut ours = vec![0f32; 8 * 64];
        dequantize_row(kind, &bytes, &mut ours);
        assert_eq!(ours, theirs, "{kind:?}");

        let raw = random_blocks(kind, 16, &mut rng);
        let storage =
            QStorage::from_data(std::borrow::Cow::Borrowed(&raw), &Device::Cpu, kind.ggml())
                .unwrap();
        let q = QTensor::new(storage, (16 * QK,)).unwrap();
        let theirs: Vec<f32> = q.dequantize(&Device::Cpu).unwrap().to_vec1().unwrap();
        let mut ours = vec![0f32; 16 * QK];
        dequantize_row(kind, &raw, &mut ours);
        assert_eq!(ours, theirs, "{kind:?} raw");
    }
}

#[test]
fn reference_dot_matches_f32_dot() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(2);
    for kind in KINDS {
        for nb in [1, 3, 28] {
            let k = nb * QK;
            let w = random_blocks(kind, nb, &mut rng);
            let x = random_f32(k, &mut rng);
            let a = QuantActs::quantize(&x, 1, k);
            let mut wf = vec![0f32; k];
            dequantize_row(kind, &w, &mut wf);
            // The f32 dot of the dequantized rows; a block minimum `m` multiplies the activation
            // block's sum, which ggml's Q8_1 (and so the reference) rounds to f16 as `s`.
            let mins: Vec<f32> = w
                .chunks(kind.block_bytes())
                .map(|b| unpack(kind, b).m)
                .collect();
            let exact: f64 = wf
                .iter()
                .zip(&a.q)
                .enumerate()
                .map(|(i, (&w, &q))| (w - mins[i / QK]) as f64 * (a.d[i / QK] * q as f32) as f64)
                .sum::<f64>()
                + mins
                    .iter()
                    .zip(&a.s)
                    .map(|(&m, &s)| (m * s) as f64)
                    .sum::<f64>();
            let got = vec_dot_ref(kind, &w, &a.q, &a.d, &a.s) as f64;
            let scale: f64 = wf.iter().map(|v| v.abs() as f64).sum::<f64>() * 2.0 + 1e-3;
            assert!(
                (got - exact).abs() <= 1e-5 * scale,
                "{kind:?} nb={nb}: {got} vs {exact}"
            );
        }
        // Short input decodes as zeros instead of panicking.
        assert!(unpack(kind, &[1, 2]).q.iter().all(|&q| q == 0));
    }
}

#[test]
fn packed_kernels_match_reference() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    for kind in KINDS {
        for &(n, nb, m) in &[
            (16, 1, 1),
            (37, 3, 5),
            (64, 9, 17),
            (5, 2, 8),
            (48, 4, 70),
            (160, 8, 70),
        ] {
            let k = nb * QK;
            let w = random_blocks(kind, n * nb, &mut rng);
            let x = random_f32(m * k, &mut rng);
            let p = PackedMatrix::pack(kind, &w, n, k).unwrap();
            let a = QuantActs::quantize(&x, m, k);
            let row_bytes = nb * kind.block_bytes();
            let mut want = vec![0f32; m * n];
            for t in 0..m {
                let (aq, ad, asum) = (
                    a.row(t),
                    &a.d[t * nb..(t + 1) * nb],
                    &a.s[t * nb..(t + 1) * nb],
                );
                for r in 0..n {
                    want[t * n + r] =
                        vec_dot_ref(kind, &w[r * row_bytes..(r + 1) * row_bytes], aq, ad, asum);
                }
            }
            for &isa in Isa::available() {
                let mut got = vec![f32::NAN; m * n];
                assert!(matmul_with(isa, &p, &x, m, &mut got));
                for (i, (&g, &e)) in got.iter().zip(&want).enumerate() {
                    let tol = 1e-4 * (1.0 + e.abs());
                    assert!(
                        (g - e).abs() <= tol,
                        "{kind:?} {isa:?} n={n} k={k} m={m} at {i}: {g} vs {e}"
                    );
                }
            }
        }
    }
}

#[test]
fn largest_integer_sums_do_not_overflow() {
    // Every weight at its largest integer (all bits set) against activations all at +-127: the
    // sums the SIMD kernels keep in 16-bit lanes before widening reach their largest, and must
    // still equal the reference's 32-bit sums.
    let mut rng = rand::rngs::StdRng::seed_from_u64(4);
    for kind in KINDS {
        let (n, nb, m) = (16, 4, 3);
        let k = nb * QK;
        let mut w = random_blocks(kind, n * nb, &mut rng);
        let scalars = if kind.has_min() { 4 } else { 2 };
        for blk in w.chunks_mut(kind.block_bytes()) {
            // Q8_0's extreme is -128; the others' is every bit set.
            blk[scalars..].fill(if kind == BlockKind::Q8_0 { 0x80 } else { 0xFF });
        }
        // Row 0 all +1, row 1 all -1, row 2 alternating blocks.
        let x: Vec<f32> = (0..m * k)
            .map(|i| match i / k {
                0 => 1.0,
                1 => -1.0,
                _ if (i / QK).is_multiple_of(2) => 1.0,
                _ => -1.0,
            })
            .collect();
        let p = PackedMatrix::pack(kind, &w, n, k).unwrap();
        let a = QuantActs::quantize(&x, m, k);
        let row_bytes = nb * kind.block_bytes();
        for &isa in Isa::available() {
            let mut got = vec![f32::NAN; m * n];
            assert!(matmul_with(isa, &p, &x, m, &mut got));
            for t in 0..m {
                let (aq, ad, asum) = (
                    a.row(t),
                    &a.d[t * nb..(t + 1) * nb],
                    &a.s[t * nb..(t + 1) * nb],
                );
                for r in 0..n {
                    let e = vec_dot_ref(kind, &w[r * row_bytes..(r + 1) * row_bytes], aq, ad, asum);
                    let g = got[t * n + r];
                    assert!(
                        (g - e).abs() <= 1e-4 * (1.0 + e.abs()),
                        "{kind:?} {isa:?} ({t},{r}): {g} vs {e}"
                    );
                }
            }
        }
    }
}

#[test]
fn rejects_bad_shapes() {
    assert!(PackedMatrix::pack(BlockKind::Q8_0, &[0; 34], 1, 33).is_none());
    assert!(PackedMatrix::pack(BlockKind::Q8_0, &[0; 33], 1, 32).is_none());
    let p = PackedMatrix::pack(BlockKind::Q8_0, &[0; 34], 1, 32).unwrap();
    let mut out = vec![0f32; 1];
    assert!(!matmul_with(Isa::Scalar, &p, &[0.0; 31], 1, &mut out));
}

#[test]
fn concurrent_forward_passes_share_the_pool() {
    // Several threads each run matmuls on a worker of rayon's pool (as callm runs each forward
    // pass inside `rayon::scope`): a worker waiting for its own items may run another caller's
    // matmul meanwhile, and every result must still be what the same matmul gives alone.
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let (n, k, m) = (256, 512, 4);
    let kinds = [BlockKind::Q4_0, BlockKind::Q4K];
    let cases: Vec<(PackedMatrix, Vec<f32>, Vec<f32>)> = kinds
        .iter()
        .map(|&kind| {
            let w = random_blocks(kind, n * k / kind.block_values(), &mut rng);
            let p = PackedMatrix::pack(kind, &w, n, k).unwrap();
            let x = random_f32(m * k, &mut rng);
            let mut want = vec![0f32; m * n];
            assert!(matmul_with(crate::isa(), &p, &x, m, &mut want));
            (p, x, want)
        })
        .collect();
    std::thread::scope(|s| {
        for t in 0..6 {
            let cases = &cases;
            s.spawn(move || {
                // From outside the pool, `rayon::scope` runs its closure on a worker.
                rayon::scope(|_| {
                    for i in 0..300 {
                        let (p, x, want) = &cases[(t + i) % cases.len()];
                        let mut got = vec![0f32; m * n];
                        assert!(matmul_with(crate::isa(), p, x, m, &mut got));
                        assert_eq!(&got, want);
                    }
                })
            });
        }
    });
}

/// On aarch64 the NEON kernels are chosen, with `sdot` exactly where the CPU has it (a kernel
/// using it on a CPU without it dies of an illegal instruction).
#[cfg(target_arch = "aarch64")]
#[test]
fn neon_kernels_follow_the_cpu() {
    let available = Isa::available();
    assert!(available.contains(&Isa::Neon));
    assert_eq!(
        available.contains(&Isa::NeonDot),
        std::arch::is_aarch64_feature_detected!("dotprod")
    );
    assert!(crate::isa() >= Isa::Neon);
}
