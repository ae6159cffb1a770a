//! Batch invariance of the packed matmul (issue 16): a token's outputs are the same bit for bit
//! alone, at any position in a batch of any size, for every block kind and instruction set.

use rand::SeedableRng;

use super::{random_blocks, random_f32};
use crate::blocks::BlockKind;
use crate::matmul::matmul_with;
use crate::pack::PackedMatrix;
use crate::Isa;

const ALL: [BlockKind; 12] = [
    BlockKind::Q4_0,
    BlockKind::Q4_1,
    BlockKind::Q5_0,
    BlockKind::Q5_1,
    BlockKind::Q8_0,
    BlockKind::Q2K,
    BlockKind::Q3K,
    BlockKind::Q4K,
    BlockKind::Q5K,
    BlockKind::Q6K,
    BlockKind::IQ4NL,
    BlockKind::IQ4XS,
];

#[test]
fn a_token_is_the_same_alone_or_anywhere_in_a_batch() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(21);
    let (n, k, m) = (40, 512, 13);
    for kind in ALL {
        let w = random_blocks(kind, n * k / kind.block_values(), &mut rng);
        let p = PackedMatrix::pack(kind, &w, n, k).unwrap();
        let x = random_f32(m * k, &mut rng);
        // The same tokens in reverse order: each lands at another position and in other
        // groups of the kernels' up-to-8-token calls.
        let rev: Vec<f32> = x.chunks(k).rev().flatten().copied().collect();
        for &isa in Isa::available() {
            let run = |x: &[f32], m: usize| {
                let mut out = vec![f32::NAN; m * n];
                assert!(matmul_with(isa, &p, x, m, &mut out));
                out
            };
            let batch = run(&x, m);
            let reversed = run(&rev, m);
            for t in 0..m {
                let alone = run(&x[t * k..(t + 1) * k], 1);
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                let r = m - 1 - t;
                assert_eq!(
                    bits(&alone),
                    bits(&batch[t * n..(t + 1) * n]),
                    "{kind:?} {isa:?} token {t}"
                );
                assert_eq!(
                    bits(&alone),
                    bits(&reversed[r * n..(r + 1) * n]),
                    "{kind:?} {isa:?} token {t} reversed"
                );
            }
        }
    }
}
