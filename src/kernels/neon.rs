//! aarch64 NEON tile kernels on the packed layout of [`super::pack`]. A 64-byte line holds four
//! values of each of 16 rows; its four 16-byte quarters are rows `4q..4q+4`, one NEON register.
//! Each kernel computes `MT` activation rows against one tile, a quarter at a time, so the
//! quarter's eight weight registers and the `MT` float accumulators stay in the 32 registers.
//!
//! The four-value dots are `sdot` by element (Armv8.2 dot product, detected at run time) or,
//! on Armv8.0, widening multiplies and pairwise adds with the same results. The `sdot` and the
//! f16 conversion are written as inline assembly: their intrinsics need a newer Rust than the
//! crate's minimum.

use core::arch::aarch64::*;
use core::arch::asm;

use super::act::QuantActs;
use super::codes::{has_high_bit, has_min, offset_of, K_Q8_0};
use super::pack::{PackedMatrix, TILE};

/// `acc[r] += Σ_j w[4r + j] · x[4L + j]` for the four rows `r` of `w` (signed bytes).
///
/// # Safety
/// NEON, and the dot-product extension when `DOT`.
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
                asm!(
                    concat!("sdot {a:v}.4s, {w:v}.16b, {x:v}.4b[", $lane, "]"),
                    a = inout(vreg) a,
                    w = in(vreg) w,
                    x = in(vreg) x,
                    options(pure, nomem, nostack, preserves_flags)
                )
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
        // Products fit an i16 and so do pairs of them: |w| ≤ 128 and |x| ≤ 127.
        let xg = vreinterpretq_s8_s32(vdupq_laneq_s32::<L>(vreinterpretq_s32_s8(x)));
        let lo = vmull_s8(vget_low_s8(w), vget_low_s8(xg));
        let hi = vmull_high_s8(w, xg);
        vpadalq_s16(acc, vpaddq_s16(lo, hi))
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

/// Four f16 (as bits) at `p`, widened to f32.
///
/// # Safety
/// Four `u16` at `p` must be readable.
#[inline(always)]
pub(crate) unsafe fn f16x4(p: *const u16) -> float32x4_t {
    let h = vld1_u16(p);
    let out: float32x4_t;
    asm!(
        "fcvtl {o:v}.4s, {h:v}.4h",
        o = lateout(vreg) out,
        h = in(vreg) h,
        options(pure, nomem, nostack, preserves_flags)
    );
    out
}

/// Spreads 16 mask bits over 16 bytes: byte `i` is `val` when bit `i` is set, else 0.
#[inline(always)]
pub(crate) unsafe fn spread16(bits: u16, val: u8) -> int8x16_t {
    const SEL: [u8; 16] = [1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128];
    let v = vcombine_u8(vdup_n_u8(bits as u8), vdup_n_u8((bits >> 8) as u8));
    let set = vtstq_u8(v, vld1q_u8(SEL.as_ptr()));
    vreinterpretq_s8_u8(vandq_u8(set, vdupq_n_u8(val)))
}

/// Unpacks quarter `q` of the four nibble lines at `lines` (64 bytes apart) into eight
/// registers, `w[h]` holding values `4h..4h+4` of the quarter's four rows.
///
/// # Safety
/// Four 64-byte lines must be readable at `lines`.
#[inline(always)]
pub(crate) unsafe fn unpack_nibbles(lines: *const u8, q: usize) -> [int8x16_t; 8] {
    let nib = vdupq_n_u8(0x0F);
    let mut w = [vdupq_n_s8(0); 8];
    for g in 0..4 {
        let v = vld1q_u8(lines.add(g * 64 + 16 * q));
        w[2 * g] = vreinterpretq_s8_u8(vandq_u8(v, nib));
        w[2 * g + 1] = vreinterpretq_s8_u8(vshrq_n_u8::<4>(v));
    }
    w
}

/// Sets bit `val` in the bytes of `w` whose bit is set in quarter `q` of the eight masks at
/// `masks`.
///
/// # Safety
/// Eight `u64` must be readable at `masks`.
#[inline(always)]
pub(crate) unsafe fn or_plane(w: &mut [int8x16_t; 8], masks: *const u64, q: usize, val: u8) {
    for (h, wh) in w.iter_mut().enumerate() {
        let bits = (*masks.add(h) >> (16 * q)) as u16;
        *wh = vorrq_s8(*wh, spread16(bits, val));
    }
}

/// Stores columns `4q..` (of the first `cols`) of each row's accumulator at
/// `out + (t0 + t) * ldo`.
///
/// # Safety
/// Those floats of every row must be writable.
#[inline(always)]
pub(crate) unsafe fn store_quarter(
    acc: &[float32x4_t],
    out: *mut f32,
    t0: usize,
    ldo: usize,
    cols: usize,
    q: usize,
) {
    let c0 = 4 * q;
    for (t, acc_t) in acc.iter().enumerate() {
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

/// NEON with the dot-product extension: rows `t0..t0+MT` of `a` against tile `tile`; writes
/// `cols` (≤ 16) outputs of each row at `out + row * ldo`.
///
/// # Safety
/// The CPU must support the dot-product extension; `tile < p.tiles`, `t0 + MT <= a.m`,
/// `a.k == p.k`, and `out + row * ldo .. + cols` must be writable for every row.
#[target_feature(enable = "neon,dotprod")]
pub(crate) unsafe fn tile_neon_dot<const MT: usize, const K: u8>(
    p: &PackedMatrix,
    tile: usize,
    a: &QuantActs,
    t0: usize,
    out: *mut f32,
    ldo: usize,
    cols: usize,
) {
    tile_body::<MT, K, true>(p, tile, a, t0, out, ldo, cols)
}

/// Armv8.0 NEON: same contract as [`tile_neon_dot`], without the dot-product extension.
///
/// # Safety
/// As [`tile_neon_dot`], on any aarch64 CPU.
#[target_feature(enable = "neon")]
pub(crate) unsafe fn tile_neon<const MT: usize, const K: u8>(
    p: &PackedMatrix,
    tile: usize,
    a: &QuantActs,
    t0: usize,
    out: *mut f32,
    ldo: usize,
    cols: usize,
) {
    tile_body::<MT, K, false>(p, tile, a, t0, out, ldo, cols)
}

#[inline(always)]
unsafe fn tile_body<const MT: usize, const K: u8, const DOT: bool>(
    p: &PackedMatrix,
    tile: usize,
    a: &QuantActs,
    t0: usize,
    out: *mut f32,
    ldo: usize,
    cols: usize,
) {
    let nb = p.nb;
    let lpb = if K == K_Q8_0 { 8 } else { 4 };
    // Q8_0 runs on its signed integers (the offset flipped back), so no correction for it.
    let off = if K == K_Q8_0 { 0 } else { offset_of(K) };
    let tb0 = tile * nb;
    // SAFETY (all pointer arithmetic below): tile block indices stay below `p.tiles * nb`, whose
    // lines, masks and scales `PackedMatrix::pack` allocated; activation indices stay below
    // `a.m * a.k` by the caller's contract.
    let qs = p.qs.as_ptr().add(tb0 * lpb) as *const u8;
    let aq = a.q.as_ptr();
    for q in 0..4 {
        let mut acc = [vdupq_n_f32(0.0); MT];
        for b in 0..nb {
            let lines = qs.add(b * lpb * 64);
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
                    or_plane(&mut w, p.qh.as_ptr().add((tb0 + b) * 8), q, 0x10);
                }
                w
            };
            let dw = f16x4(p.d.as_ptr().add((tb0 + b) * TILE + 4 * q));
            let mw = if has_min(K) {
                f16x4(p.m.as_ptr().add((tb0 + b) * TILE + 4 * q))
            } else {
                vdupq_n_f32(0.0)
            };
            for (t, acc_t) in acc.iter_mut().enumerate() {
                let ab = (t0 + t) * nb + b;
                let ap = aq.add(ab * 32);
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
        store_quarter(&acc, out, t0, ldo, cols, q);
    }
}
