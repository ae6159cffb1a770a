//! The vector `exp` on NEON, for the softmax ([`crate::softmax`]): the method and constants of
//! x86's `exp8`, 4 values per step.

use core::arch::aarch64::*;

use crate::arch::exp_c;

/// `v ← exp(scale·v − max)` for every value, 4 values per step with [`exp4`]; returns their sum.
#[target_feature(enable = "neon")]
pub(crate) fn exp_shifted_neon(v: &mut [f32], scale: f32, max: f32) -> f32 {
    let (s, m) = (vdupq_n_f32(scale), vdupq_n_f32(max));
    let mut acc = vdupq_n_f32(0.0);
    let mut chunks = v.chunks_exact_mut(4);
    for c in &mut chunks {
        // SAFETY: `c` holds exactly 4 floats, read and then written.
        unsafe {
            let e = exp4(vsubq_f32(vmulq_f32(vld1q_f32(c.as_ptr()), s), m));
            vst1q_f32(c.as_mut_ptr(), e);
            acc = vaddq_f32(acc, e);
        }
    }
    let mut sum = vaddvq_f32(acc);
    let rest = chunks.into_remainder();
    if !rest.is_empty() {
        let mut buf = [0f32; 4];
        buf[..rest.len()].copy_from_slice(rest);
        // SAFETY: `buf` holds 4 floats, read and then written.
        unsafe {
            let e = exp4(vsubq_f32(vmulq_f32(vld1q_f32(buf.as_ptr()), s), m));
            vst1q_f32(buf.as_mut_ptr(), e);
        }
        rest.copy_from_slice(&buf[..rest.len()]);
        sum += buf[..rest.len()].iter().sum::<f32>();
    }
    sum
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
