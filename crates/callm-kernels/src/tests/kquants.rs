//! The K-quant kernels against candle (the previous implementation, ggml's numbers): decoding,
//! Q8_K activations, the reference dot product and every packed kernel.

use candle_core::quantized::{GgmlDType, QMatMul, QStorage, QTensor};
use candle_core::{Device, Module, Tensor};
use rand::SeedableRng;

use super::{random_blocks, random_f32};
use crate::act::QuantActs;
use crate::blocks::{dequantize_row, BlockKind};
use crate::kblocks::{unpack, vec_dot_ref, QK_K};
use crate::matmul::matmul_with;
use crate::pack::PackedMatrix;
use crate::Isa;

const KINDS: [BlockKind; 5] = [
    BlockKind::Q2K,
    BlockKind::Q3K,
    BlockKind::Q4K,
    BlockKind::Q5K,
    BlockKind::Q6K,
];

fn tensor(v: Vec<f32>, rows: usize, cols: usize) -> Tensor {
    Tensor::new(v, &Device::Cpu)
        .unwrap()
        .reshape((rows, cols))
        .unwrap()
}

fn qtensor(raw: &[u8], kind: BlockKind, n: usize, k: usize) -> QTensor {
    let storage =
        QStorage::from_data(std::borrow::Cow::Borrowed(raw), &Device::Cpu, kind.ggml()).unwrap();
    QTensor::new(storage, (n, k)).unwrap()
}

fn flat(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

#[test]
fn k_decoding_matches_candle_dequantize() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    for kind in KINDS {
        // Superblocks made by candle's quantizer, and arbitrary ones.
        let q =
            QTensor::quantize(&tensor(random_f32(4 * 512, &mut rng), 4, 512), kind.ggml()).unwrap();
        let bytes = q.data().unwrap().into_owned();
        let mut ours = vec![0f32; 4 * 512];
        dequantize_row(kind, &bytes, &mut ours);
        assert_eq!(ours, flat(&q.dequantize(&Device::Cpu).unwrap()), "{kind:?}");

        let raw = random_blocks(kind, 6, &mut rng);
        let q = qtensor(&raw, kind, 2, 3 * QK_K);
        let mut ours = vec![0f32; 6 * QK_K];
        dequantize_row(kind, &raw, &mut ours);
        assert_eq!(
            ours,
            flat(&q.dequantize(&Device::Cpu).unwrap()),
            "{kind:?} raw"
        );
        // Short input decodes to nothing rather than panicking.
        assert!(unpack(kind, &raw[..10]).is_none());
    }
    assert!(unpack(BlockKind::Q8_0, &[0; 300]).is_none());
}

/// Candle's Q8_K bytes: `d: f32, qs: [i8; 256], bsums: [i16; 16]` per superblock.
fn candle_q8k(x: &[f32], m: usize, k: usize) -> (Vec<i8>, Vec<f32>, Vec<i32>) {
    let q = QTensor::quantize(&tensor(x.to_vec(), m, k), GgmlDType::Q8K).unwrap();
    let bytes = q.data().unwrap().into_owned();
    let (mut qs, mut d, mut bs) = (vec![], vec![], vec![]);
    for b in bytes.chunks_exact(4 + 256 + 32) {
        d.push(f32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        qs.extend(b[4..260].iter().map(|&v| v as i8));
        bs.extend(
            b[260..]
                .chunks_exact(2)
                .map(|s| i16::from_le_bytes([s[0], s[1]]) as i32),
        );
    }
    (qs, d, bs)
}

#[test]
fn q8k_activations_match_candle_bit_for_bit() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(12);
    for &(m, k) in &[(1, 256), (3, 768), (20, 512)] {
        let mut x = random_f32(m * k, &mut rng);
        // Exact ties (x.5 after scaling), a zero superblock, and a negative extreme.
        for (i, v) in x[..64].iter_mut().enumerate() {
            *v = if i == 0 { -127.0 } else { i as f32 - 31.5 };
        }
        if m * k >= 768 {
            x[256..512].fill(0.0);
        }
        let mut a = QuantActs::default();
        a.quantize_k_into(&x, m, k);
        let (q, d, bs) = candle_q8k(&x, m, k);
        assert_eq!(a.q, q, "m={m} k={k}");
        assert_eq!(a.dk, d);
        assert_eq!(a.bs16, bs);
    }
}

#[test]
fn k_kernels_match_candle_matmul() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(13);
    for kind in KINDS {
        // The last: a row as long as Qwen2.5-0.5B's ffn_down (4864 values).
        for &(n, nsb, m) in &[(16, 1, 1), (37, 2, 3), (5, 1, 9), (48, 3, 70), (20, 19, 2)] {
            let k = nsb * QK_K;
            let w = random_blocks(kind, n * nsb, &mut rng);
            let x = random_f32(m * k, &mut rng);
            // Candle's own quantized matmul (Q8_K activations, ggml's integer dot).
            let mm = QMatMul::from_qtensor(qtensor(&w, kind, n, k)).unwrap();
            let want = flat(&mm.forward(&tensor(x.clone(), m, k)).unwrap());
            // The reference, row by row.
            let a = {
                let mut a = QuantActs::default();
                a.quantize_k_into(&x, m, k);
                a
            };
            let row_bytes = nsb * kind.block_bytes();
            let close = |g: f32, e: f32| (g - e).abs() <= 1e-4 * (1.0 + e.abs());
            for t in 0..m {
                for r in 0..n {
                    let got = vec_dot_ref(
                        kind,
                        &w[r * row_bytes..(r + 1) * row_bytes],
                        a.row(t),
                        &a.dk[t * nsb..(t + 1) * nsb],
                        &a.bs16[t * k / 16..(t + 1) * k / 16],
                    );
                    let e = want[t * n + r];
                    assert!(close(got, e), "{kind:?} reference ({t},{r}): {got} vs {e}");
                }
            }
            let p = PackedMatrix::pack(kind, &w, n, k).unwrap();
            for &isa in Isa::available() {
                let mut got = vec![f32::NAN; m * n];
                assert!(matmul_with(isa, &p, &x, m, &mut got));
                for (i, (&g, &e)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        close(g, e),
                        "{kind:?} {isa:?} n={n} k={k} m={m} at {i}: {g} vs {e}"
                    );
                }
            }
        }
        // Rows whose length is not whole superblocks are refused.
        assert!(PackedMatrix::pack(kind, &[0; 4096], 1, 288).is_none());
    }
}

#[test]
fn largest_integer_sums_do_not_overflow() {
    // Every weight integer at its largest (all bits set) against activations all at +-127: the
    // sums the SIMD kernels keep in 16-bit lanes before widening reach their largest, and must
    // still give candle's numbers.
    let mut rng = rand::rngs::StdRng::seed_from_u64(14);
    for kind in KINDS {
        let (n, nsb, m) = (16, 2, 3);
        let k = nsb * QK_K;
        let mut w = random_blocks(kind, n * nsb, &mut rng);
        for blk in w.chunks_mut(kind.block_bytes()) {
            // Q2_K, Q3_K and Q6_K keep their f16 scales last; the others keep `d` and `dmin`
            // first.
            match kind {
                BlockKind::Q2K => blk[..80].fill(0xFF),
                BlockKind::Q3K => blk[..108].fill(0xFF),
                BlockKind::Q6K => blk[..208].fill(0xFF),
                _ => blk[4..].fill(0xFF),
            }
        }
        let x: Vec<f32> = (0..m * k)
            .map(|i| match i / k {
                0 => 1.0,
                1 => -1.0,
                _ if (i / 16).is_multiple_of(2) => 1.0,
                _ => -1.0,
            })
            .collect();
        let mm = QMatMul::from_qtensor(qtensor(&w, kind, n, k)).unwrap();
        let want = flat(&mm.forward(&tensor(x.clone(), m, k)).unwrap());
        let p = PackedMatrix::pack(kind, &w, n, k).unwrap();
        for &isa in Isa::available() {
            let mut got = vec![f32::NAN; m * n];
            assert!(matmul_with(isa, &p, &x, m, &mut got));
            for (i, (&g, &e)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g - e).abs() <= 1e-4 * (1.0 + e.abs()),
                    "{kind:?} {isa:?} at {i}: {g} vs {e}"
                );
            }
        }
    }
}

#[test]
fn packing_costs_little_memory_over_the_file() {
    // Q2_K and Q3_K pack their integers two bits to a line (Q3_K's third bit in a plane):
    // people pick these kinds to fit a model in memory, which 4-bit lines would undo (Q2_K
    // came to 2.1x its file so). Every kind stays within a quarter of its file size.
    let mut rng = rand::rngs::StdRng::seed_from_u64(15);
    let kinds = [
        BlockKind::Q4_0,
        BlockKind::Q4_1,
        BlockKind::Q5_0,
        BlockKind::Q5_1,
        BlockKind::Q8_0,
        BlockKind::IQ4NL,
        BlockKind::IQ4XS,
    ];
    for kind in KINDS.into_iter().chain(kinds) {
        let (n, k) = (64, 16 * QK_K);
        let w = random_blocks(kind, n * k / kind.block_values(), &mut rng);
        let p = PackedMatrix::pack(kind, &w, n, k).unwrap();
        let ratio = p.bytes() as f64 / w.len() as f64;
        assert!(
            ratio <= 1.25,
            "{kind:?}: packed {} bytes, file {} ({ratio:.2}x)",
            p.bytes(),
            w.len()
        );
    }
}
