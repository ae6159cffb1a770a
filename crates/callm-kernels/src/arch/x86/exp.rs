//! The vector `exp` on AVX2 + FMA, for the attention's softmax ([`crate::attention`]).

use core::arch::x86_64::*;

use crate::arch::exp_c;

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
