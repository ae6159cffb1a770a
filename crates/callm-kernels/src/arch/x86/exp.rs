//! The vector `exp` on AVX2 + FMA, for the softmax ([`crate::softmax`]).

use core::arch::x86_64::*;

use crate::arch::exp_c;

/// `v ← exp(scale·v − max)` for every value, 8 values per step with [`exp8`]; returns their sum.
#[target_feature(enable = "avx2,fma")]
pub(crate) fn exp_shifted_avx2(v: &mut [f32], scale: f32, max: f32) -> f32 {
    let (s, m) = (_mm256_set1_ps(scale), _mm256_set1_ps(max));
    let mut acc = _mm256_setzero_ps();
    let mut chunks = v.chunks_exact_mut(8);
    for c in &mut chunks {
        // SAFETY: `c` holds exactly 8 floats, read and then written.
        unsafe {
            let e = exp8(_mm256_fmsub_ps(_mm256_loadu_ps(c.as_ptr()), s, m));
            _mm256_storeu_ps(c.as_mut_ptr(), e);
            acc = _mm256_add_ps(acc, e);
        }
    }
    let mut lanes = [0f32; 8];
    // SAFETY: `lanes` holds 8 floats.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), acc) };
    let mut sum = lanes.iter().sum::<f32>();
    let rest = chunks.into_remainder();
    if !rest.is_empty() {
        // The last < 8 values in one padded step.
        let mut buf = [0f32; 8];
        buf[..rest.len()].copy_from_slice(rest);
        // SAFETY: `buf` holds 8 floats, read and then written.
        unsafe {
            let e = exp8(_mm256_fmsub_ps(_mm256_loadu_ps(buf.as_ptr()), s, m));
            _mm256_storeu_ps(buf.as_mut_ptr(), e);
        }
        rest.copy_from_slice(&buf[..rest.len()]);
        sum += buf[..rest.len()].iter().sum::<f32>();
    }
    sum
}

/// `exp` of 8 floats (Cephes' `expf` method: `2^k · e^r` with `|r| ≤ ln2/2` and a degree-7
/// polynomial; relative error ~1e-7). Inputs below −87.3 (and −∞) give 0; inputs are clamped at
/// 88.4 above (softmax only passes values ≤ 0).
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(crate) fn exp8(x: __m256) -> __m256 {
    let lo = _mm256_set1_ps(exp_c::LO);
    let underflow = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    let x = _mm256_min_ps(_mm256_max_ps(x, lo), _mm256_set1_ps(exp_c::HI));
    // k = round(x / ln 2); r = x − k·ln 2 in two parts.
    let k = _mm256_round_ps(
        _mm256_mul_ps(x, _mm256_set1_ps(std::f32::consts::LOG2_E)),
        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC,
    );
    let r = _mm256_fnmadd_ps(k, _mm256_set1_ps(exp_c::LN2_HI), x);
    let r = _mm256_fnmadd_ps(k, _mm256_set1_ps(exp_c::LN2_LO), r);
    // e^r ≈ 1 + r + r²·P(r).
    let mut p = _mm256_set1_ps(exp_c::POLY[0]);
    for c in &exp_c::POLY[1..] {
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(*c));
    }
    let r2 = _mm256_mul_ps(r, r);
    let er = _mm256_add_ps(_mm256_fmadd_ps(p, r2, r), _mm256_set1_ps(1.0));
    // 2^k through the exponent bits.
    let pow2 = _mm256_castsi256_ps(_mm256_slli_epi32(
        _mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127)),
        23,
    ));
    _mm256_andnot_ps(underflow, _mm256_mul_ps(er, pow2))
}
