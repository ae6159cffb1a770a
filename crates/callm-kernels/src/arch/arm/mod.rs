//! aarch64: the NEON tile kernels (`sdot` by element where the CPU has the dot-product
//! extension, widening multiplies and pairwise adds on Armv8.0), the vector `exp`, and the
//! helpers they share. NEON is part of every aarch64 target Rust builds for; the dot-product
//! extension is checked at run time through [`crate::Isa`].
//!
//! Rust still counts a NEON intrinsic called outside a `#[target_feature(enable = "neon")]`
//! function as an unsafe operation. The helpers here are `#[inline(always)]` (so that `sdot`
//! is assembled inside the kernel that has the dot-product extension), which excludes that
//! attribute: their intrinsic calls sit in `unsafe` blocks whose soundness is NEON's presence.
//!
//! The `sdot` and the f16 conversion are written as inline assembly: their intrinsics need a
//! newer Rust than the crate's minimum.

use core::arch::aarch64::*;
use core::arch::asm;

use crate::matmul::TileCall;

pub(crate) mod exp;
pub(crate) mod tiles;
pub(crate) mod tiles_k;

/// `acc[r] += Σ_j w[4r + j] · x[4L + j]` for the four rows `r` of `w` (signed bytes).
///
/// # Safety
/// The CPU must support the dot-product extension when `DOT`.
#[inline(always)]
pub(crate) unsafe fn dot4<const DOT: bool, const L: i32>(
    acc: int32x4_t,
    w: int8x16_t,
    x: int8x16_t,
) -> int32x4_t {
    if DOT {
        let mut a = acc;
        macro_rules! sdot {
            ($lane:literal) => {
                // SAFETY: `sdot` reads and writes only these registers; the CPU has the
                // dot-product extension (the caller's contract).
                unsafe {
                    asm!(
                        concat!("sdot {a:v}.4s, {w:v}.16b, {x:v}.4b[", $lane, "]"),
                        a = inout(vreg) a,
                        w = in(vreg) w,
                        x = in(vreg) x,
                        options(pure, nomem, nostack, preserves_flags)
                    )
                }
            };
        }
        match L {
            0 => sdot!("0"),
            1 => sdot!("1"),
            2 => sdot!("2"),
            _ => sdot!("3"),
        }
        a
    } else {
        // Products fit an i16 and so do pairs of them: |w| · |x| ≤ 128 · 127 (IQ4_XS: |w| ≤ 127
        // against Q8_K's |x| ≤ 128).
        // SAFETY: NEON is part of every aarch64 target.
        unsafe {
            let xg = vreinterpretq_s8_s32(vdupq_laneq_s32::<L>(vreinterpretq_s32_s8(x)));
            let lo = vmull_s8(vget_low_s8(w), vget_low_s8(xg));
            let hi = vmull_high_s8(w, xg);
            vpadalq_s16(acc, vpaddq_s16(lo, hi))
        }
    }
}

/// The eight dots of one 32-value block for four rows: `w[h]` holds values `4h..4h+4`, and
/// `x0`/`x1` the activation's values 0..16 and 16..32. Returns the sums of values 0..16 and
/// 16..32 separately (Q6_K scales them apart).
///
/// # Safety
/// As [`dot4`].
#[inline(always)]
pub(crate) unsafe fn block_dots<const DOT: bool>(
    w: &[int8x16_t; 8],
    x0: int8x16_t,
    x1: int8x16_t,
) -> (int32x4_t, int32x4_t) {
    // SAFETY: NEON is part of every aarch64 target, and the dot-product extension is there when
    // `DOT` (the caller's contract).
    unsafe {
        let zero = vdupq_n_s32(0);
        let mut lo = dot4::<DOT, 0>(zero, w[0], x0);
        let mut hi = dot4::<DOT, 0>(zero, w[4], x1);
        lo = dot4::<DOT, 1>(lo, w[1], x0);
        hi = dot4::<DOT, 1>(hi, w[5], x1);
        lo = dot4::<DOT, 2>(lo, w[2], x0);
        hi = dot4::<DOT, 2>(hi, w[6], x1);
        lo = dot4::<DOT, 3>(lo, w[3], x0);
        hi = dot4::<DOT, 3>(hi, w[7], x1);
        (lo, hi)
    }
}

/// Four f16 (as bits) at `p`, widened to f32.
///
/// # Safety
/// Four `u16` at `p` must be readable.
#[inline(always)]
pub(crate) unsafe fn f16x4(p: *const u16) -> float32x4_t {
    // SAFETY: four `u16` are readable at `p` (the caller's contract).
    let h = unsafe { vld1_u16(p) };
    let out: float32x4_t;
    // SAFETY: `fcvtl` reads and writes only these registers (NEON, part of every aarch64
    // target).
    unsafe {
        asm!(
            "fcvtl {o:v}.4s, {h:v}.4h",
            o = lateout(vreg) out,
            h = in(vreg) h,
            options(pure, nomem, nostack, preserves_flags)
        )
    };
    out
}

/// Spreads 16 mask bits over 16 bytes: byte `i` is `val` when bit `i` is set, else 0.
#[inline(always)]
pub(crate) fn spread16(bits: u16, val: u8) -> int8x16_t {
    const SEL: [u8; 16] = [1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128];
    // SAFETY: NEON is part of every aarch64 target; `SEL` holds the 16 bytes loaded.
    unsafe {
        let v = vcombine_u8(vdup_n_u8(bits as u8), vdup_n_u8((bits >> 8) as u8));
        let set = vtstq_u8(v, vld1q_u8(SEL.as_ptr()));
        vreinterpretq_s8_u8(vandq_u8(set, vdupq_n_u8(val)))
    }
}

/// Unpacks quarter `q` of the four nibble lines at `lines` (64 bytes apart) into eight
/// registers, `w[h]` holding values `4h..4h+4` of the quarter's four rows.
///
/// # Safety
/// Four 64-byte lines must be readable at `lines`, and `q < 4`.
#[inline(always)]
pub(crate) unsafe fn unpack_nibbles(lines: *const u8, q: usize) -> [int8x16_t; 8] {
    // SAFETY: NEON is part of every aarch64 target; quarter `q` of line `g` is 16 of the bytes
    // the caller's contract makes readable.
    unsafe {
        let nib = vdupq_n_u8(0x0F);
        let mut w = [vdupq_n_s8(0); 8];
        for g in 0..4 {
            let v = vld1q_u8(lines.add(g * 64 + 16 * q));
            w[2 * g] = vreinterpretq_s8_u8(vandq_u8(v, nib));
            w[2 * g + 1] = vreinterpretq_s8_u8(vshrq_n_u8::<4>(v));
        }
        w
    }
}

/// Replaces each nibble in `w` by its signed integer in [`crate::blocks::IQ4_TABLE`] (IQ4_NL,
/// IQ4_XS).
#[inline(always)]
pub(crate) fn look_up(w: &mut [int8x16_t; 8]) {
    // SAFETY: NEON is part of every aarch64 target; the table is 16 bytes; every index is a
    // nibble, inside it.
    unsafe {
        let table = vld1q_s8(crate::blocks::IQ4_TABLE.as_ptr());
        for wh in w.iter_mut() {
            *wh = vqtbl1q_s8(table, vreinterpretq_u8_s8(*wh));
        }
    }
}

/// Unpacks quarter `q` of the two 2-bit lines at `lines` (64 bytes apart; Q2_K, Q3_K) into
/// eight registers, `w[h]` holding values `4h..4h+4` of the quarter's four rows.
///
/// # Safety
/// Two 64-byte lines must be readable at `lines`, and `q < 4`.
#[inline(always)]
pub(crate) unsafe fn unpack_crumbs(lines: *const u8, q: usize) -> [int8x16_t; 8] {
    // SAFETY: NEON is part of every aarch64 target; quarter `q` of line `g` is 16 of the bytes
    // the caller's contract makes readable.
    unsafe {
        let m = vdupq_n_u8(0x03);
        let mut w = [vdupq_n_s8(0); 8];
        for g in 0..2 {
            let v = vld1q_u8(lines.add(g * 64 + 16 * q));
            w[4 * g] = vreinterpretq_s8_u8(vandq_u8(v, m));
            w[4 * g + 1] = vreinterpretq_s8_u8(vandq_u8(vshrq_n_u8::<2>(v), m));
            w[4 * g + 2] = vreinterpretq_s8_u8(vandq_u8(vshrq_n_u8::<4>(v), m));
            w[4 * g + 3] = vreinterpretq_s8_u8(vshrq_n_u8::<6>(v));
        }
        w
    }
}

/// Sets bit `val` in the bytes of `w` whose bit is set in quarter `q` of the eight masks at
/// `masks`.
///
/// # Safety
/// Eight `u64` must be readable at `masks`.
#[inline(always)]
pub(crate) unsafe fn or_plane(w: &mut [int8x16_t; 8], masks: *const u64, q: usize, val: u8) {
    for (h, wh) in w.iter_mut().enumerate() {
        // SAFETY: `h < 8`: one of the masks the caller's contract makes readable; NEON is part
        // of every aarch64 target.
        unsafe {
            let bits = (*masks.add(h) >> (16 * q)) as u16;
            *wh = vorrq_s8(*wh, spread16(bits, val));
        }
    }
}

/// Stores columns `4q..` (of the first `c.cols`) of each row's accumulator: row `t` of the
/// call at `c.out + (c.t0 + t) * c.ldo`.
///
/// # Safety
/// `acc` has at most the call's `MT` rows, whose outputs the [`TileCall`] contract makes
/// writable.
#[inline(always)]
pub(crate) unsafe fn store_quarter(acc: &[float32x4_t], c: TileCall<'_>, q: usize) {
    let (out, t0, ldo, cols) = (c.out, c.t0, c.ldo, c.cols);
    let c0 = 4 * q;
    for (t, acc_t) in acc.iter().enumerate() {
        // SAFETY: columns `c0..min(c0 + 4, cols)` of the row are written, the floats the
        // caller's contract makes writable; NEON is part of every aarch64 target.
        unsafe {
            let dst = out.add((t0 + t) * ldo + c0);
            if cols >= c0 + 4 {
                vst1q_f32(dst, *acc_t);
            } else if cols > c0 {
                let mut tmp = [0f32; 4];
                vst1q_f32(tmp.as_mut_ptr(), *acc_t);
                std::ptr::copy_nonoverlapping(tmp.as_ptr(), dst, cols - c0);
            }
        }
    }
}
