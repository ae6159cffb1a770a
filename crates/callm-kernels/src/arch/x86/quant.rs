//! Activation quantization (ggml's Q8_0/Q8_1 numbers, [`crate::act`]) on AVX2 and AVX-512, 32
//! values per step. Both do, per value, the scalar definition's operations (the same products,
//! the same truncation and tie test), so every instruction set gives the same bytes.

use core::arch::x86_64::*;

use crate::blocks::QK;

/// The same numbers as `act::quantize_blocks_generic` (round half away from zero included):
/// quantizes the whole blocks of 32 values that `x`, `q`, `d`, `isum` and `s` all hold.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn quantize_blocks_avx2(
    x: &[f32],
    q: &mut [i8],
    d: &mut [f32],
    isum: &mut [i32],
    s: &mut [f32],
) {
    let sign = _mm256_set1_ps(-0.0);
    let half = _mm256_set1_ps(0.5);
    let one = _mm256_set1_ps(1.0);
    let (xs, qs) = (x.chunks_exact(QK), q.chunks_exact_mut(QK));
    for ((((xb, qb), db), ib), sb) in xs.zip(qs).zip(d).zip(isum).zip(s) {
        // SAFETY: `xb` holds 32 floats: four loads of 8.
        let v = unsafe {
            let xp = xb.as_ptr();
            [
                _mm256_loadu_ps(xp),
                _mm256_loadu_ps(xp.add(8)),
                _mm256_loadu_ps(xp.add(16)),
                _mm256_loadu_ps(xp.add(24)),
            ]
        };
        let abs = |v: __m256| _mm256_andnot_ps(sign, v);
        let a = _mm256_max_ps(
            _mm256_max_ps(abs(v[0]), abs(v[1])),
            _mm256_max_ps(abs(v[2]), abs(v[3])),
        );
        let m = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
        let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        let amax = _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
        let scale = amax / 127.0;
        let inv = _mm256_set1_ps(if scale != 0.0 { 1.0 / scale } else { 0.0 });
        let mut ints = [_mm256_setzero_si256(); 4];
        for (i, vi) in v.iter().enumerate() {
            let y = _mm256_mul_ps(*vi, inv);
            let t = _mm256_round_ps(y, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
            let away = _mm256_cmp_ps(abs(_mm256_sub_ps(y, t)), half, _CMP_GE_OQ);
            let step = _mm256_or_ps(_mm256_and_ps(y, sign), one);
            let r = _mm256_add_ps(t, _mm256_and_ps(away, step));
            let r = _mm256_min_ps(
                _mm256_max_ps(r, _mm256_set1_ps(-127.0)),
                _mm256_set1_ps(127.0),
            );
            ints[i] = _mm256_cvttps_epi32(r);
        }
        let total = _mm256_add_epi32(
            _mm256_add_epi32(ints[0], ints[1]),
            _mm256_add_epi32(ints[2], ints[3]),
        );
        let t = _mm_add_epi32(
            _mm256_castsi256_si128(total),
            _mm256_extracti128_si256(total, 1),
        );
        let t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0b01_00_11_10));
        let t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0b10_11_00_01));
        let sum = _mm_cvtsi128_si32(t);
        let w01 = _mm256_packs_epi32(ints[0], ints[1]);
        let w23 = _mm256_packs_epi32(ints[2], ints[3]);
        let bytes = _mm256_packs_epi16(w01, w23);
        let bytes = _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        // SAFETY: `qb` holds 32 bytes.
        unsafe { _mm256_storeu_si256(qb.as_mut_ptr() as *mut __m256i, bytes) };
        let dh = round_f16(scale);
        *db = dh;
        *ib = sum;
        *sb = round_f16(round_f16(sum as f32) * dh);
    }
}

/// [`quantize_blocks_avx2`] with a block in two 16-float registers: fewer instructions per
/// block (one register pair instead of four, the byte narrowing in one instruction per half).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,f16c")]
pub(crate) fn quantize_blocks_avx512(
    x: &[f32],
    q: &mut [i8],
    d: &mut [f32],
    isum: &mut [i32],
    s: &mut [f32],
) {
    // AVX-512 F has no float bitwise operations (those are DQ): sign work on the integer view.
    let sign = _mm512_set1_epi32(i32::MIN);
    let half = _mm512_set1_ps(0.5);
    let one = _mm512_castps_si512(_mm512_set1_ps(1.0));
    let (lo, hi) = (_mm512_set1_ps(-127.0), _mm512_set1_ps(127.0));
    let abs = |v: __m512| _mm512_castsi512_ps(_mm512_andnot_si512(sign, _mm512_castps_si512(v)));
    let (xs, qs) = (x.chunks_exact(QK), q.chunks_exact_mut(QK));
    for ((((xb, qb), db), ib), sb) in xs.zip(qs).zip(d).zip(isum).zip(s) {
        // SAFETY: `xb` holds 32 floats: two loads of 16.
        let v = unsafe {
            [
                _mm512_loadu_ps(xb.as_ptr()),
                _mm512_loadu_ps(xb.as_ptr().add(16)),
            ]
        };
        let amax = _mm512_reduce_max_ps(_mm512_max_ps(abs(v[0]), abs(v[1])));
        let scale = amax / 127.0;
        let inv = _mm512_set1_ps(if scale != 0.0 { 1.0 / scale } else { 0.0 });
        let mut ints = [_mm512_setzero_si512(); 2];
        for (i, vi) in v.iter().enumerate() {
            let y = _mm512_mul_ps(*vi, inv);
            let t = _mm512_roundscale_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(y);
            let away = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(abs(_mm512_sub_ps(y, t)), half);
            let step = _mm512_castsi512_ps(_mm512_or_si512(
                _mm512_and_si512(_mm512_castps_si512(y), sign),
                one,
            ));
            let r = _mm512_mask_add_ps(t, away, t, step);
            ints[i] = _mm512_cvttps_epi32(_mm512_min_ps(_mm512_max_ps(r, lo), hi));
        }
        let sum = _mm512_reduce_add_epi32(_mm512_add_epi32(ints[0], ints[1]));
        // SAFETY: `qb` holds 32 bytes: two stores of 16. The integers lie in -127..=127, so the
        // truncating narrowing keeps them.
        unsafe {
            let qp = qb.as_mut_ptr() as *mut __m128i;
            _mm_storeu_si128(qp, _mm512_cvtepi32_epi8(ints[0]));
            _mm_storeu_si128(qp.add(1), _mm512_cvtepi32_epi8(ints[1]));
        }
        let dh = round_f16(scale);
        *db = dh;
        *ib = sum;
        *sb = round_f16(round_f16(sum as f32) * dh);
    }
}

/// `x` rounded to the nearest f16 (ties to even) and back: `half`'s `f16::from_f32(x).to_f32()`
/// in two instructions (that crate checks for F16C at every call, which cost as much as the
/// rest of the quantization).
#[inline]
#[target_feature(enable = "f16c")]
fn round_f16(x: f32) -> f32 {
    let h = _mm_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm_set_ss(x));
    _mm_cvtss_f32(_mm_cvtph_ps(h))
}
