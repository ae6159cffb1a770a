//! Stacked matrices (`PackedLinear::concat`: q/k/v, gate/up) against each matrix alone.

use candle_core::quantized::{QStorage, QTensor};
use candle_core::{Device, Tensor};
use rand::SeedableRng;

use super::{random_blocks, random_f32};
use crate::blocks::BlockKind;
use crate::linear::PackedLinear;
use crate::matmul::{matmul_concat_uninit, matmul_with};
use crate::pack::PackedMatrix;
use crate::Isa;

/// Parts of a stacked layer: kinds and output sizes as in real checkpoints (a Q4_K_M layer's
/// v in Q6_K beside q and k in Q4_K; sizes that end in a partial tile; both activation
/// formats in one call).
const CASES: &[&[(BlockKind, usize)]] = &[
    &[
        (BlockKind::Q4_1, 64),
        (BlockKind::Q4_1, 32),
        (BlockKind::Q4_1, 32),
    ],
    &[
        (BlockKind::Q4K, 48),
        (BlockKind::Q4K, 16),
        (BlockKind::Q6K, 16),
    ],
    &[
        (BlockKind::Q8_0, 40),
        (BlockKind::Q5_0, 24),
        (BlockKind::Q5K, 72),
    ],
    &[(BlockKind::Q4_0, 1000), (BlockKind::Q4_0, 1000)],
    // A Q3_K_M / Q2_K file's layer: q and k in Q3_K or Q2_K, v in Q4_K.
    &[
        (BlockKind::Q3K, 48),
        (BlockKind::Q2K, 24),
        (BlockKind::Q4K, 40),
    ],
];

#[test]
fn stacked_parts_equal_each_part_alone_bit_for_bit() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let k = 512;
    for &isa in Isa::available() {
        for parts in CASES {
            let packed: Vec<PackedMatrix> = parts
                .iter()
                .map(|&(kind, n)| {
                    let w = random_blocks(kind, n * k / kind.block_values(), &mut rng);
                    PackedMatrix::pack(kind, &w, n, k).expect("pack")
                })
                .collect();
            let refs: Vec<&PackedMatrix> = packed.iter().collect();
            let n: usize = parts.iter().map(|p| p.1).sum();
            // Decode rows, a full tile kernel and one more, and a prefill chunk.
            for m in [1, 2, 3, 7, 8, 9, 70] {
                let x = random_f32(m * k, &mut rng);
                let mut want = vec![0f32; m * n];
                let mut col = 0;
                for p in &packed {
                    let mut alone = vec![0f32; m * p.n];
                    assert!(matmul_with(isa, p, &x, m, &mut alone));
                    for r in 0..m {
                        want[r * n + col..][..p.n].copy_from_slice(&alone[r * p.n..][..p.n]);
                    }
                    col += p.n;
                }
                let mut got = vec![f32::NAN; m * n];
                let out = crate::linear::as_uninit(&mut got);
                assert!(matmul_concat_uninit(isa, &refs, &x, m, out));
                assert!(
                    got.iter()
                        .zip(&want)
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{isa:?} {parts:?} m={m}"
                );
            }
        }
    }
}

#[test]
fn stacking_refuses_mismatched_inputs() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(12);
    let kind = BlockKind::Q8_0;
    let a = PackedMatrix::pack(kind, &random_blocks(kind, 16 * 8, &mut rng), 16, 256).unwrap();
    let b = PackedMatrix::pack(kind, &random_blocks(kind, 16 * 16, &mut rng), 16, 512).unwrap();
    let x = random_f32(256, &mut rng);
    let mut out = vec![0f32; 32];
    let isa = crate::isa();
    assert!(!matmul_concat_uninit(
        isa,
        &[],
        &x,
        1,
        crate::linear::as_uninit(&mut out[..0])
    ));
    assert!(!matmul_concat_uninit(
        isa,
        &[&a, &b],
        &x,
        1,
        crate::linear::as_uninit(&mut out)
    ));
    // Right parts, wrong output size.
    assert!(!matmul_concat_uninit(
        isa,
        &[&a, &a],
        &x,
        1,
        crate::linear::as_uninit(&mut out[..31])
    ));
}

/// The public layer: `concat` of candle `QTensor`s applied to a tensor gives each layer's own
/// output side by side, biases added as candle's `broadcast_add` adds them (and refuses layers
/// with different inputs, or with a bias on some only).
#[test]
fn concat_layer_matches_its_layers() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(13);
    let k = 256;
    let layer = |kind: BlockKind, n: usize, k: usize, rng: &mut rand::rngs::StdRng| {
        let w = random_blocks(kind, n * k / kind.block_values(), rng);
        let storage = QStorage::from_data(std::borrow::Cow::Owned(w), &Device::Cpu, kind.ggml())
            .expect("storage");
        let q = QTensor::new(storage, (n, k)).expect("qtensor");
        PackedLinear::from_qtensor(&q).expect("packed")
    };
    let (q, kk, v) = (
        layer(BlockKind::Q4K, 64, k, &mut rng),
        layer(BlockKind::Q4K, 32, k, &mut rng),
        layer(BlockKind::Q6K, 32, k, &mut rng),
    );
    let qkv = PackedLinear::concat(&[&q, &kk, &v]).expect("same inputs");
    assert_eq!(qkv.out_features(), 128);
    // Decode rows, and enough rows for the bias to be added in parallel.
    for m in [1, 5, 40] {
        let x = Tensor::from_vec(random_f32(m * k, &mut rng), (m, k), &Device::Cpu).unwrap();
        let alone = [&q, &kk, &v].map(|l| l.forward(&x).unwrap());
        let want = Tensor::cat(&alone, 1).unwrap();
        let got = qkv.forward(&x).unwrap();
        assert_eq!(
            got.to_vec2::<f32>().unwrap(),
            want.to_vec2::<f32>().unwrap()
        );
        // With biases: candle's broadcast_add of each part's bias to its own output.
        let biases = [64, 32, 32].map(|n| random_f32(n, &mut rng));
        let with = [&q, &kk, &v]
            .iter()
            .zip(&biases)
            .map(|(l, b)| (*l).clone().with_bias(b.clone()).expect("one per output"))
            .collect::<Vec<_>>();
        let want = Tensor::cat(
            &alone
                .iter()
                .zip(&biases)
                .map(|(y, b)| {
                    let b = Tensor::from_vec(b.clone(), b.len(), &Device::Cpu).unwrap();
                    y.broadcast_add(&b).unwrap()
                })
                .collect::<Vec<_>>(),
            1,
        )
        .unwrap();
        let stacked = PackedLinear::concat(&with.iter().collect::<Vec<_>>()).expect("all biased");
        let got = stacked.forward(&x).unwrap();
        assert_eq!(
            got.to_vec2::<f32>().unwrap(),
            want.to_vec2::<f32>().unwrap()
        );
        assert!(PackedLinear::concat(&[&with[0], &kk]).is_none());
    }
    assert!(q.clone().with_bias(vec![0.0; 63]).is_none());
    let other = layer(BlockKind::Q4K, 16, 512, &mut rng);
    assert!(PackedLinear::concat(&[&q, &other]).is_none());
    assert!(PackedLinear::concat(&[]).is_none());
}
