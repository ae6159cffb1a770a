//! The vector `exp` on AVX2 + FMA, for the attention's softmax ([`crate::attention`]) and the
//! SwiGLU product ([`crate::glu`]).

use core::arch::x86_64::*;
use core::mem::MaybeUninit;

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

/// `out[i] = silu(g[i]) * u[i]` ([`crate::glu`]): `g / (1 + e^(-g))` with [`exp8`], rounded,
/// then times `u`; 8 values per step, the last partial step masked (the same operations).
///
/// # Safety
/// The CPU must support AVX2 and FMA; `g`, `u` and `out` must be equally long.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn silu_mul_avx2(g: &[f32], u: &[f32], out: &mut [MaybeUninit<f32>]) {
    let n = out.len();
    debug_assert!(g.len() == n && u.len() == n);
    let one = _mm256_set1_ps(1.0);
    let neg = _mm256_set1_ps(-0.0);
    let step = |x: __m256, y: __m256| {
        let e = exp8(_mm256_xor_ps(x, neg));
        _mm256_mul_ps(_mm256_div_ps(x, _mm256_add_ps(one, e)), y)
    };
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: values `i..i + 8` lie in all three slices (equal lengths, the contract).
        unsafe {
            let y = step(
                _mm256_loadu_ps(g.as_ptr().add(i)),
                _mm256_loadu_ps(u.as_ptr().add(i)),
            );
            _mm256_storeu_ps(out.as_mut_ptr().add(i) as *mut f32, y);
        }
        i += 8;
    }
    if i < n {
        let left = (n - i) as i32;
        let mask = _mm256_cmpgt_epi32(
            _mm256_set1_epi32(left),
            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
        );
        // SAFETY: the mask covers values `i..n` only, inside all three slices.
        unsafe {
            let y = step(
                _mm256_maskload_ps(g.as_ptr().add(i), mask),
                _mm256_maskload_ps(u.as_ptr().add(i), mask),
            );
            _mm256_maskstore_ps(out.as_mut_ptr().add(i) as *mut f32, mask, y);
        }
    }
}
