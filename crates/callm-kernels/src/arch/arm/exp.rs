//! The vector `exp` on NEON, for the attention's softmax ([`crate::attention`]): the method and constants of
//! x86's `exp8`, 4 values per step.

use core::arch::aarch64::*;

use crate::arch::exp_c;

/// `s ← exp(s − m)` for a block of 32 scores with [`exp4`] (−∞ gives 0); returns their sum in
/// the order `attention::block_sum` defines for every instruction set.
#[target_feature(enable = "neon")]
pub(crate) fn exp_block_neon(s: &mut [f32; crate::attention::KEY_BLOCK], m: f32) -> f32 {
    let mv = vdupq_n_f32(m);
    let mut e = [vdupq_n_f32(0.0); 8];
    for (c, ec) in e.iter_mut().enumerate() {
        // SAFETY: `s` holds 32 floats: part `c` is 4 of them.
        unsafe {
            let p = s.as_mut_ptr().add(4 * c);
            *ec = exp4(vsubq_f32(vld1q_f32(p), mv));
            vst1q_f32(p, *ec);
        }
    }
    // The order of `attention::block_sum`: `t` (8 lanes) in two halves of 4, then `q`, then
    // `(q0 + q2) + (q1 + q3)`.
    let t_lo = vaddq_f32(vaddq_f32(e[0], e[2]), vaddq_f32(e[4], e[6]));
    let t_hi = vaddq_f32(vaddq_f32(e[1], e[3]), vaddq_f32(e[5], e[7]));
    let q = vaddq_f32(t_lo, t_hi);
    let r = vadd_f32(vget_low_f32(q), vget_high_f32(q));
    vget_lane_f32::<0>(r) + vget_lane_f32::<1>(r)
}

/// `exp` of 4 floats, the method and constants of x86's `exp8`: `2^k · e^r` with
/// `|r| ≤ ln2/2`; inputs below −87.3 (and −∞) give 0.
#[inline]
#[target_feature(enable = "neon")]
pub(crate) fn exp4(x: float32x4_t) -> float32x4_t {
    let lo = vdupq_n_f32(exp_c::LO);
    let underflow = vcltq_f32(x, lo);
    let x = vminq_f32(vmaxq_f32(x, lo), vdupq_n_f32(exp_c::HI));
    // k = round(x / ln 2); r = x − k·ln 2 in two parts.
    let k = vrndnq_f32(vmulq_f32(x, vdupq_n_f32(std::f32::consts::LOG2_E)));
    let r = vfmsq_f32(x, k, vdupq_n_f32(exp_c::LN2_HI));
    let r = vfmsq_f32(r, k, vdupq_n_f32(exp_c::LN2_LO));
    // e^r ≈ 1 + r + r²·P(r).
    let mut p = vdupq_n_f32(exp_c::POLY[0]);
    for c in &exp_c::POLY[1..] {
        p = vfmaq_f32(vdupq_n_f32(*c), p, r);
    }
    let er = vaddq_f32(vfmaq_f32(r, p, vmulq_f32(r, r)), vdupq_n_f32(1.0));
    // 2^k through the exponent bits.
    let pow2 = vreinterpretq_f32_s32(vshlq_n_s32::<23>(vaddq_s32(
        vcvtnq_s32_f32(k),
        vdupq_n_s32(127),
    )));
    let e = vreinterpretq_u32_f32(vmulq_f32(er, pow2));
    vreinterpretq_f32_u32(vbicq_u32(e, underflow))
}
