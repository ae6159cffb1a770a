//! Portable tile kernels on the packed layout: the fallback where no SIMD kernel runs, and a
//! check of the layout itself (the tests run them against the scalar references of
//! [`crate::blocks`] and [`crate::kblocks`]). Same calls as the SIMD kernels ([`TileCall`]),
//! with the token count at run time.

use crate::blocks::BlockKind;
use crate::kblocks::QK_K;
use crate::matmul::TileCall;
use crate::pack::{PackedMatrix, TILE};

/// The 32-value kinds.
///
/// # Safety
/// `c` must meet the [`TileCall`] contract for `MT = mt` (only its outputs matter: the reads
/// are bounds-checked).
pub(crate) unsafe fn tile_scalar(c: TileCall<'_>, mt: usize) {
    let (p, a, tile, t0) = (c.p, c.a, c.tile, c.t0);
    let (out, ldo, cols) = (c.out, c.ldo, c.cols);
    for t in 0..mt {
        let row = t0 + t;
        for r in 0..cols {
            let mut acc = 0f32;
            for b in 0..p.nb {
                let tb = tile * p.nb + b;
                let ab = row * p.nb + b;
                let xs = &a.q[ab * 32..(ab + 1) * 32];
                let mut isum = 0i32;
                for (i, &x) in xs.iter().enumerate() {
                    isum += p.kind.int_of(p.packed_u(tb, r, i)) * x as i32;
                }
                let d = half::f16::from_bits(p.d[tb * TILE + r]).to_f32();
                acc += d * a.d[ab] * isum as f32;
                if !p.m.is_empty() {
                    acc += half::f16::from_bits(p.m[tb * TILE + r]).to_f32() * a.s[ab];
                }
            }
            // SAFETY: output `r < cols` of row `row`, writable by the caller's contract.
            unsafe { *out.add(row * ldo + r) = acc };
        }
    }
}

/// The K-quants (integers as in [`crate::kblocks`]).
///
/// # Safety
/// As [`tile_scalar`].
pub(crate) unsafe fn tile_scalar_k(c: TileCall<'_>, mt: usize) {
    let (p, a, tile, t0) = (c.p, c.a, c.tile, c.t0);
    let (out, ldo, cols) = (c.out, c.ldo, c.cols);
    let per16 = p.kind.scale_per_16();
    let (nb, nsb) = (p.nb, p.k / QK_K);
    let spr = PackedMatrix::scales_per_row(p.kind);
    let mps = PackedMatrix::kmin_per_superblock(p.kind);
    for t in 0..mt {
        let row = t0 + t;
        for r in 0..cols {
            let mut acc = 0f32;
            for sb in 0..nsb {
                let (mut isum, mut msum) = (0i32, 0i32);
                let mins = (tile * nsb + sb) * mps;
                for j in 0..QK_K / 32 {
                    let (tb, ab) = (tile * nb + sb * 8 + j, row * nb + sb * 8 + j);
                    let xs = &a.q[ab * 32..(ab + 1) * 32];
                    let s0 = p.ks[tb * spr * TILE + r] as i32;
                    let (b0, b1) = (a.bs16[2 * ab], a.bs16[2 * ab + 1]);
                    let dot = |range: std::ops::Range<usize>| -> i32 {
                        range
                            .map(|i| p.kind.int_of(p.packed_u(tb, r, i)) * xs[i] as i32)
                            .sum()
                    };
                    if per16 {
                        let s1 = p.ks[tb * spr * TILE + TILE + r] as i32;
                        isum += s0 * dot(0..16) + s1 * dot(16..32);
                    } else {
                        isum += s0 * dot(0..32);
                    }
                    if p.kind == BlockKind::Q2K {
                        let m = |i: usize| p.kmin[mins + 32 * j + 2 * r + i] as i32;
                        msum += m(0) * b0 + m(1) * b1;
                    } else if mps > 0 {
                        msum += p.kmin[mins + 32 * (j / 2) + 2 * r + j % 2] as i32 * (b0 + b1);
                    }
                }
                let at = (tile * nsb + sb) * TILE + r;
                let ad = a.dk[row * nsb + sb];
                let d = half::f16::from_bits(p.d[at]).to_f32();
                acc += d * ad * isum as f32;
                if mps > 0 {
                    acc -= half::f16::from_bits(p.m[at]).to_f32() * ad * msum as f32;
                }
            }
            // SAFETY: output `r < cols` of row `row`, writable by the caller's contract.
            unsafe { *out.add(row * ldo + r) = acc };
        }
    }
}
