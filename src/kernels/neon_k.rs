//! aarch64 NEON tile kernels for the K-quants (Q4_K, Q5_K, Q6_K) against Q8_K activations, on
//! the layout of [`super::pack`] and with the integer sums of [`super::x86_k`]: per 32-value
//! block, each row's integer dot times its integer scale, summed over the superblock; the
//! float scales apply once per superblock. Four rows (a line quarter) at a time, as in
//! [`super::neon`].

use core::arch::aarch64::*;

use super::act::QuantActs;
use super::codes::{K_Q4K, K_Q6K};
use super::kblocks::QK_K;
use super::neon::{block_dots, f16x4, or_plane, store_quarter, unpack_nibbles};
use super::pack::{PackedMatrix, TILE};

/// Blocks of 32 per superblock.
const BPS: usize = QK_K / 32;

/// NEON with the dot-product extension: rows `t0..t0+MT` of `a` (quantized as Q8_K) against
/// tile `tile`; writes `cols` (≤ 16) outputs of each row at `out + row * ldo`.
///
/// # Safety
/// The CPU must support the dot-product extension; `p` must hold a K-quant matching `K`,
/// `tile < p.tiles`, `t0 + MT <= a.m`, `a.k == p.k`, `a` quantized by
/// [`QuantActs::quantize_k_into`], and `out + row * ldo .. + cols` writable for every row.
#[target_feature(enable = "neon,dotprod")]
pub(crate) unsafe fn tile_neon_dot_k<const MT: usize, const K: u8>(
    p: &PackedMatrix,
    tile: usize,
    a: &QuantActs,
    t0: usize,
    out: *mut f32,
    ldo: usize,
    cols: usize,
) {
    tile_body_k::<MT, K, true>(p, tile, a, t0, out, ldo, cols)
}

/// Armv8.0 NEON: same contract as [`tile_neon_dot_k`], without the dot-product extension.
///
/// # Safety
/// As [`tile_neon_dot_k`], on any aarch64 CPU.
#[target_feature(enable = "neon")]
pub(crate) unsafe fn tile_neon_k<const MT: usize, const K: u8>(
    p: &PackedMatrix,
    tile: usize,
    a: &QuantActs,
    t0: usize,
    out: *mut f32,
    ldo: usize,
    cols: usize,
) {
    tile_body_k::<MT, K, false>(p, tile, a, t0, out, ldo, cols)
}

/// Four `i8` at `p`, widened to `i32`.
#[inline(always)]
unsafe fn i8x4(p: *const i8) -> int32x4_t {
    let v = vreinterpret_s8_s32(vdup_n_s32((p as *const i32).read_unaligned()));
    vmovl_s16(vget_low_s16(vmovl_s8(v)))
}

#[inline(always)]
unsafe fn tile_body_k<const MT: usize, const K: u8, const DOT: bool>(
    p: &PackedMatrix,
    tile: usize,
    a: &QuantActs,
    t0: usize,
    out: *mut f32,
    ldo: usize,
    cols: usize,
) {
    let nb = p.nb;
    let nsb = nb / BPS;
    let tb0 = tile * nb;
    // SAFETY (all pointer arithmetic below): tile block and superblock indices stay below what
    // `PackedMatrix::pack` allocated for `p.tiles` tiles; activation indices below `a.m * a.k`
    // (and its per-16 and per-256 arrays) by the caller's contract.
    let qs = p.qs.as_ptr().add(tb0 * 4) as *const u8;
    let aq = a.q.as_ptr();
    let bs16 = a.bs16.as_ptr();
    let spr = if K == K_Q6K { 2 } else { 1 };
    for q in 0..4 {
        let mut acc = [vdupq_n_f32(0.0); MT];
        for sb in 0..nsb {
            let mut isum = [vdupq_n_s32(0); MT];
            for j in 0..BPS {
                let b = sb * BPS + j;
                let mut w = unpack_nibbles(qs.add(b * 4 * 64), q);
                if K != K_Q4K {
                    or_plane(&mut w, p.qh.as_ptr().add((tb0 + b) * 8), q, 0x10);
                }
                if K == K_Q6K {
                    or_plane(&mut w, p.qh2.as_ptr().add((tb0 + b) * 8), q, 0x20);
                }
                let ks = p.ks.as_ptr().add((tb0 + b) * spr * TILE + 4 * q);
                let s0 = i8x4(ks);
                let s1 = if K == K_Q6K {
                    i8x4(ks.add(TILE))
                } else {
                    vdupq_n_s32(0)
                };
                for (t, isum_t) in isum.iter_mut().enumerate() {
                    let ab = (t0 + t) * nb + b;
                    let ap = aq.add(ab * 32);
                    let (mut lo, mut hi) =
                        block_dots::<DOT>(&w, vld1q_s8(ap), vld1q_s8(ap.add(16)));
                    if K == K_Q6K {
                        // Offset 32 per 16-value group, each group with its own scale.
                        lo = vsubq_s32(lo, vdupq_n_s32(32 * *bs16.add(2 * ab)));
                        hi = vsubq_s32(hi, vdupq_n_s32(32 * *bs16.add(2 * ab + 1)));
                        *isum_t = vmlaq_s32(vmlaq_s32(*isum_t, lo, s0), hi, s1);
                    } else {
                        *isum_t = vmlaq_s32(*isum_t, vaddq_s32(lo, hi), s0);
                    }
                }
            }
            let at = (tile * nsb + sb) * TILE + 4 * q;
            let dw = f16x4(p.d.as_ptr().add(at));
            // Q4_K/Q5_K's minimum term, Σ_j mn_j · bsum32_j: the rows' (block 2jp, 2jp+1)
            // minimum pairs against the activation's pair of block sums.
            let (mut mins, mut mw) = ([vdupq_n_s16(0); 4], vdupq_n_f32(0.0));
            if K != K_Q6K {
                let km = p.kmin.as_ptr().add((tile * nsb + sb) * 128 + 8 * q);
                for (jp, v) in mins.iter_mut().enumerate() {
                    *v = vld1q_s16(km.add(32 * jp));
                }
                mw = f16x4(p.m.as_ptr().add(at));
            }
            for (t, acc_t) in acc.iter_mut().enumerate() {
                let ad = vdupq_n_f32(*a.dk.get_unchecked((t0 + t) * nsb + sb));
                *acc_t = vfmaq_f32(*acc_t, vcvtq_f32_s32(isum[t]), vmulq_f32(dw, ad));
                if K != K_Q6K {
                    let bp = a.bsp.as_ptr().add(((t0 + t) * nsb + sb) * 4);
                    let mut msum = vdupq_n_s32(0);
                    for (jp, v) in mins.iter().enumerate() {
                        let pair = vreinterpretq_s16_s32(vdupq_n_s32(*bp.add(jp)));
                        let lo = vmull_s16(vget_low_s16(*v), vget_low_s16(pair));
                        let hi = vmull_high_s16(*v, pair);
                        msum = vaddq_s32(msum, vpaddq_s32(lo, hi));
                    }
                    *acc_t = vfmsq_f32(*acc_t, vcvtq_f32_s32(msum), vmulq_f32(mw, ad));
                }
            }
        }
        store_quarter(&acc, out, t0, ldo, cols, q);
    }
}
