//! aarch64 NEON tile kernels for the K-quants (Q2_K to Q6_K) against Q8_K activations, on
//! the layout of `crate::pack` and with the integer sums of x86's `tiles_k`: per 32-value
//! block, each row's integer dot times its integer scale, summed over the superblock; the
//! float scales apply once per superblock. Four rows (a line quarter) at a time, as in
//! [`super::tiles`].
//!
//! Bounds, for every unsafe read below: the [`TileCall`] contract (`p` a K-quant matching `K`,
//! `tile < p.tiles`, `t0 + MT <= a.m`, `a.k == p.k`, `a` quantized as Q8_K) keeps tile block
//! and superblock indices below what `PackedMatrix::pack` allocated for `p.tiles` tiles (lines,
//! bit planes, integer scales and minimums, superblock scales), and activation indices below
//! what `QuantActs::quantize_k_into` filled for `a.m` rows (values, per-16 sums, pairs of
//! per-32 sums, superblock scales).

use core::arch::aarch64::*;

use super::{block_dots, f16x4, look_up, or_plane, store_quarter, unpack_crumbs, unpack_nibbles};
use crate::codes::{
    k_has_min, k_lines, k_lookup, k_min_pairs, k_offset, k_scale_per_16, k_two_bit, K_Q2K, K_Q3K,
    K_Q5K, K_Q6K,
};
use crate::kblocks::QK_K;
use crate::matmul::TileCall;
use crate::pack::TILE;

/// Blocks of 32 per superblock.
const BPS: usize = QK_K / 32;

/// NEON with the dot-product extension: one [`TileCall`] of `MT` tokens on a K-quant (`K`).
///
/// # Safety
/// The CPU must support the dot-product extension, `c` must meet the [`TileCall`] contract, and
/// its weights must be of kind `K`.
#[target_feature(enable = "neon,dotprod")]
pub(crate) unsafe fn tile_neon_dot_k<const MT: usize, const K: u8>(c: TileCall<'_>) {
    // SAFETY: the CPU has the dot-product extension, and the rest holds (the caller's contract).
    unsafe { tile_body_k::<MT, K, true>(c) }
}

/// Armv8.0 NEON: same contract as [`tile_neon_dot_k`], without the dot-product extension.
///
/// # Safety
/// As [`tile_neon_dot_k`], on any aarch64 CPU.
#[target_feature(enable = "neon")]
pub(crate) unsafe fn tile_neon_k<const MT: usize, const K: u8>(c: TileCall<'_>) {
    // SAFETY: the plain kernel needs no extension; the rest holds (the caller's contract).
    unsafe { tile_body_k::<MT, K, false>(c) }
}

/// Four `i8` at `p`, widened to `i32`.
///
/// # Safety
/// Four `i8` at `p` must be readable.
#[inline(always)]
unsafe fn i8x4(p: *const i8) -> int32x4_t {
    // SAFETY: four bytes are readable at `p` (the caller's contract); NEON is part of every
    // aarch64 target.
    unsafe {
        let v = vreinterpret_s8_s32(vdup_n_s32((p as *const i32).read_unaligned()));
        vmovl_s16(vget_low_s16(vmovl_s8(v)))
    }
}

/// The kernel of [`tile_neon_dot_k`] (`DOT`) and [`tile_neon_k`].
///
/// # Safety
/// As [`tile_neon_dot_k`]; the dot-product extension only when `DOT`.
#[inline(always)]
unsafe fn tile_body_k<const MT: usize, const K: u8, const DOT: bool>(c: TileCall<'_>) {
    let (p, a, tile, t0) = (c.p, c.a, c.tile, c.t0);
    // SAFETY: every intrinsic below is NEON, part of every aarch64 target; `sdot` (in
    // `block_dots`) runs only when `DOT`, where the CPU has the dot-product extension (the
    // contract); each pointer read is in bounds (module docs) as its `In bounds` note says;
    // `store_quarter` writes the call's outputs, which the contract makes writable.
    unsafe {
        let nb = p.nb;
        let nsb = nb / BPS;
        let tb0 = tile * nb;
        let per16 = k_scale_per_16(K);
        let spr = if per16 { 2 } else { 1 };
        let off = if k_lookup(K) { 0 } else { k_offset(K) };
        let pairs = k_min_pairs(K);
        let lpb = k_lines(K);
        for q in 0..4 {
            let mut acc = [vdupq_n_f32(0.0); MT];
            for sb in 0..nsb {
                let mut isum = [vdupq_n_s32(0); MT];
                for j in 0..BPS {
                    let tb = tb0 + sb * BPS + j;
                    // In bounds: tile block `tb`'s `lpb` lines, 8 masks per bit plane the kind
                    // has, and `spr * 16` integer scales; `q < 4`.
                    let lines = p.qs.as_ptr().add(tb * lpb) as *const u8;
                    let mut w = if k_two_bit(K) {
                        unpack_crumbs(lines, q)
                    } else {
                        unpack_nibbles(lines, q)
                    };
                    if K == K_Q3K {
                        or_plane(&mut w, p.qh.as_ptr().add(tb * 8), q, 0x04);
                    }
                    if K == K_Q5K || K == K_Q6K {
                        or_plane(&mut w, p.qh.as_ptr().add(tb * 8), q, 0x10);
                    }
                    if K == K_Q6K {
                        or_plane(&mut w, p.qh2.as_ptr().add(tb * 8), q, 0x20);
                    }
                    if k_lookup(K) {
                        // Signed integers: no offset to take out (`k_offset` is the unsigned
                        // kernels').
                        look_up(&mut w);
                    }
                    let ks = p.ks.as_ptr().add(tb * spr * TILE + 4 * q);
                    let s0 = i8x4(ks);
                    let s1 = if per16 {
                        i8x4(ks.add(TILE))
                    } else {
                        vdupq_n_s32(0)
                    };
                    for (t, isum_t) in isum.iter_mut().enumerate() {
                        // In bounds: activation block `ab`'s 32 values and two sums of 16.
                        let ab = (t0 + t) * nb + sb * BPS + j;
                        let ap = a.q.as_ptr().add(ab * 32);
                        let (mut lo, mut hi) =
                            block_dots::<DOT>(&w, vld1q_s8(ap), vld1q_s8(ap.add(16)));
                        if per16 {
                            // The offset per 16-value group, each group with its own scale.
                            if off != 0 {
                                let bs = |i: usize| vdupq_n_s32(off * *a.bs16.get_unchecked(i));
                                lo = vsubq_s32(lo, bs(2 * ab));
                                hi = vsubq_s32(hi, bs(2 * ab + 1));
                            }
                            *isum_t = vmlaq_s32(vmlaq_s32(*isum_t, lo, s0), hi, s1);
                        } else {
                            *isum_t = vmlaq_s32(*isum_t, vaddq_s32(lo, hi), s0);
                        }
                    }
                }
                // In bounds: tile superblock `tsb`'s 16 scales, and for the kinds with minimums
                // its 16 minimum scales and `32 * pairs` integer minimums; `q < 4`.
                let tsb = tile * nsb + sb;
                let at = tsb * TILE + 4 * q;
                let dw = f16x4(p.d.as_ptr().add(at));
                // The minimum term: the rows' minimum pairs (Q4_K/Q5_K: blocks 2jp and 2jp+1;
                // Q2_K: the two groups of block jp) against the activation's pair of sums.
                let (mut mins, mut mw) = ([vdupq_n_s16(0); 8], vdupq_n_f32(0.0));
                if k_has_min(K) {
                    let km = p.kmin.as_ptr().add(tsb * 32 * pairs + 8 * q);
                    for (jp, v) in mins[..pairs].iter_mut().enumerate() {
                        *v = vmovl_s8(vld1_s8(km.add(32 * jp)));
                    }
                    mw = f16x4(p.m.as_ptr().add(at));
                }
                for (t, acc_t) in acc.iter_mut().enumerate() {
                    // In bounds: activation superblock `asb`'s scale and 4 pairs of sums.
                    let asb = (t0 + t) * nsb + sb;
                    let ad = vdupq_n_f32(*a.dk.get_unchecked(asb));
                    *acc_t = vfmaq_f32(*acc_t, vcvtq_f32_s32(isum[t]), vmulq_f32(dw, ad));
                    if k_has_min(K) {
                        let mut msum = vdupq_n_s32(0);
                        for (jp, v) in mins[..pairs].iter().enumerate() {
                            let pair = if K == K_Q2K {
                                let ab = asb * BPS + jp;
                                let lo = *a.bs16.get_unchecked(2 * ab) as u16 as u32;
                                let hi = *a.bs16.get_unchecked(2 * ab + 1) as u16 as u32;
                                (lo | (hi << 16)) as i32
                            } else {
                                *a.bsp.get_unchecked(asb * 4 + jp)
                            };
                            let pair = vreinterpretq_s16_s32(vdupq_n_s32(pair));
                            let lo = vmull_s16(vget_low_s16(*v), vget_low_s16(pair));
                            let hi = vmull_high_s16(*v, pair);
                            msum = vaddq_s32(msum, vpaddq_s32(lo, hi));
                        }
                        *acc_t = vfmsq_f32(*acc_t, vcvtq_f32_s32(msum), vmulq_f32(mw, ad));
                    }
                }
            }
            store_quarter(&acc, c, q);
        }
    }
}
