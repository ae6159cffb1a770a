//! aarch64 NEON tile kernels for the 32-value kinds, on the packed layout of `crate::pack`. A
//! 64-byte line holds four values of each of 16 rows; its four 16-byte quarters are rows
//! `4q..4q+4`, one NEON register. Each kernel computes `MT` activation rows against one tile, a
//! quarter at a time, so the quarter's eight weight registers and the `MT` float accumulators
//! stay in the 32 registers.
//!
//! Bounds, for every unsafe read below: the [`TileCall`] contract (`tile < p.tiles`,
//! `t0 + MT <= a.m`, `a.k == p.k`) keeps tile block indices below `p.tiles * p.nb`, for which
//! `PackedMatrix::pack` allocated the lines, masks and scales, and activation block indices
//! below `a.m * a.k / 32`, for which `QuantActs` holds values, scales and sums.

use core::arch::aarch64::*;

use super::{block_dots, f16x4, look_up, or_plane, store_quarter, unpack_nibbles};
use crate::codes::{has_high_bit, has_min, lookup, offset_of, K_Q8_0};
use crate::matmul::TileCall;
use crate::pack::TILE;

/// NEON with the dot-product extension: one [`TileCall`] of `MT` tokens.
///
/// # Safety
/// The CPU must support the dot-product extension, and `c` must meet the [`TileCall`] contract.
#[target_feature(enable = "neon,dotprod")]
pub(crate) unsafe fn tile_neon_dot<const MT: usize, const K: u8>(c: TileCall<'_>) {
    // SAFETY: the CPU has the dot-product extension, and the rest holds (the caller's contract).
    unsafe { tile_body::<MT, K, true>(c) }
}

/// Armv8.0 NEON: same contract as [`tile_neon_dot`], without the dot-product extension.
///
/// # Safety
/// As [`tile_neon_dot`], on any aarch64 CPU.
#[target_feature(enable = "neon")]
pub(crate) unsafe fn tile_neon<const MT: usize, const K: u8>(c: TileCall<'_>) {
    // SAFETY: the plain kernel needs no extension; the rest holds (the caller's contract).
    unsafe { tile_body::<MT, K, false>(c) }
}

/// The kernel of [`tile_neon_dot`] (`DOT`) and [`tile_neon`].
///
/// # Safety
/// As [`tile_neon_dot`]; the dot-product extension only when `DOT`.
#[inline(always)]
unsafe fn tile_body<const MT: usize, const K: u8, const DOT: bool>(c: TileCall<'_>) {
    let (p, a, tile, t0) = (c.p, c.a, c.tile, c.t0);
    // SAFETY: every intrinsic below is NEON, part of every aarch64 target; `sdot` (in
    // `block_dots`) runs only when `DOT`, where the CPU has the dot-product extension (the
    // contract); each pointer read is in bounds (module docs) as its `In bounds` note says;
    // `store_quarter` writes the call's outputs, which the contract makes writable.
    unsafe {
        let nb = p.nb;
        let lpb = if K == K_Q8_0 { 8 } else { 4 };
        // Q8_0 runs on its signed integers (the offset flipped back), and IQ4_NL on the signed
        // table, so no correction for them.
        let off = if K == K_Q8_0 || lookup(K) {
            0
        } else {
            offset_of(K)
        };
        let tb0 = tile * nb;
        for q in 0..4 {
            let mut acc = [vdupq_n_f32(0.0); MT];
            for b in 0..nb {
                let tb = tb0 + b;
                // In bounds: tile block `tb`'s `lpb` lines, 8 masks (kinds with a fifth bit),
                // 16 scales and 16 minimums (kinds with one); `q < 4`.
                let lines = p.qs.as_ptr().add(tb * lpb) as *const u8;
                let w = if K == K_Q8_0 {
                    let mut w = [vdupq_n_s8(0); 8];
                    for (h, wh) in w.iter_mut().enumerate() {
                        let u = vld1q_u8(lines.add(h * 64 + 16 * q));
                        *wh = vreinterpretq_s8_u8(veorq_u8(u, vdupq_n_u8(0x80)));
                    }
                    w
                } else {
                    let mut w = unpack_nibbles(lines, q);
                    if has_high_bit(K) {
                        or_plane(&mut w, p.qh.as_ptr().add(tb * 8), q, 0x10);
                    }
                    if lookup(K) {
                        look_up(&mut w);
                    }
                    w
                };
                let dw = f16x4(p.d.as_ptr().add(tb * TILE + 4 * q));
                let mw = if has_min(K) {
                    f16x4(p.m.as_ptr().add(tb * TILE + 4 * q))
                } else {
                    vdupq_n_f32(0.0)
                };
                for (t, acc_t) in acc.iter_mut().enumerate() {
                    // In bounds: activation block `ab`'s 32 values, scale and sums.
                    let ab = (t0 + t) * nb + b;
                    let ap = a.q.as_ptr().add(ab * 32);
                    let (lo, hi) = block_dots::<DOT>(&w, vld1q_s8(ap), vld1q_s8(ap.add(16)));
                    let mut isum = vaddq_s32(lo, hi);
                    if off != 0 {
                        isum = vsubq_s32(isum, vdupq_n_s32(off * *a.isum.get_unchecked(ab)));
                    }
                    let scale = vmulq_f32(dw, vdupq_n_f32(*a.d.get_unchecked(ab)));
                    *acc_t = vfmaq_f32(*acc_t, vcvtq_f32_s32(isum), scale);
                    if has_min(K) {
                        *acc_t = vfmaq_f32(*acc_t, mw, vdupq_n_f32(*a.s.get_unchecked(ab)));
                    }
                }
            }
            store_quarter(&acc, c, q);
        }
    }
}
