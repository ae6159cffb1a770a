//! x86-64 pieces of [`crate::attention`]: the 32 scores of 1 to 4 query rows against a
//! transposed key block (the rows share each key load), the block's exponentials, and the
//! weighted sum of values of 1 to 4 rows (sharing each value load), on AVX-512 and AVX2.
//! Each follows the portable definitions (`scores_portable`, `pv_portable`) lane by lane, the
//! same fused multiply-adds in the same order, so a row's numbers never depend on the rows it
//! was grouped with. Cached keys and values are f32 or f16 ([`CacheElem`]); f16 ones are
//! converted to f32 exactly as they are loaded, so both follow the same definitions.
//!
//! Bounds, for every unsafe access below: the callers' contracts (query rows of `hd` values,
//! key blocks of `hd` rows of 32, outputs of 32 scores or `hd` values, value rows `a..e`).

use core::arch::x86_64::*;

use super::exp::exp8;
use crate::arch::exp_c;
use crate::attention::{CacheElem, KEY_BLOCK};

/// 16 cached values from `p` as floats (f16 ones converted exactly).
///
/// # Safety
/// The CPU must support AVX-512 F; `p` points to 16 readable values.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn load16<E: CacheElem>(p: *const E) -> __m512 {
    // SAFETY: 16 values at `p` (the contract): 64 bytes of f32 or 32 of f16.
    unsafe {
        if E::HALF {
            _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i))
        } else {
            _mm512_loadu_ps(p as *const f32)
        }
    }
}

/// The values of `p` under `mask` (of 16) as floats, 0 elsewhere; reads only those.
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL; the values under `mask` are readable.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn load16_masked<E: CacheElem>(mask: __mmask16, p: *const E) -> __m512 {
    // SAFETY: masked loads read only the lanes under `mask` (the contract).
    unsafe {
        if E::HALF {
            _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask, p as *const i16))
        } else {
            _mm512_maskz_loadu_ps(mask, p as *const f32)
        }
    }
}

/// Asks the cache for the 32 cached values at `p` (one key row of a block): a hint that reads
/// nothing architecturally and never faults, so `p` may lie past the cache (formed with
/// wrapping arithmetic, never dereferenced).
#[inline(always)]
fn prefetch_row<E: CacheElem>(p: *const E) {
    let p = p as *const i8;
    // SAFETY: a prefetch does not access memory.
    unsafe { _mm_prefetch::<_MM_HINT_T0>(p) };
    if !E::HALF {
        // SAFETY: as above.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(64)) };
    }
}

/// Asks the cache for the `n` cached values at `p` (as [`prefetch_row`]).
#[inline(always)]
fn prefetch_values<E: CacheElem>(p: *const E, n: usize) {
    let bytes = n * std::mem::size_of::<E>();
    for off in (0..bytes).step_by(64) {
        // SAFETY: a prefetch does not access memory.
        unsafe { _mm_prefetch::<_MM_HINT_T0>((p as *const i8).wrapping_add(off)) };
    }
}

/// 8 cached values from `p` as floats.
///
/// # Safety
/// The CPU must support AVX and F16C; `p` points to 8 readable values.
#[inline]
#[target_feature(enable = "avx,f16c")]
unsafe fn load8<E: CacheElem>(p: *const E) -> __m256 {
    // SAFETY: 8 values at `p` (the contract): 32 bytes of f32 or 16 of f16.
    unsafe {
        if E::HALF {
            _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i))
        } else {
            _mm256_loadu_ps(p as *const f32)
        }
    }
}

/// AVX-512: `s_r[l] = Σ_d q_r[d] · kb[d][l]` for `R` rows, as the sum of two partial sums (even
/// and odd `d`). With `ahead` set, each key row asks the cache for the row `ahead` values on
/// (the next block of the same kv head): the hardware prefetcher alone leaves the kernel
/// waiting on the cache's lines.
///
/// # Safety
/// The CPU must support AVX-512 F and FMA; each `q[r]` points to `hd` floats, `kb` to `hd`
/// rows of 32 values, each `s[r]` to 32 writable floats.
#[target_feature(enable = "avx512f,fma")]
pub(crate) unsafe fn scores_avx512<const R: usize, E: CacheElem>(
    q: [*const f32; R],
    hd: usize,
    kb: *const E,
    s: [*mut f32; R],
    ahead: usize,
) {
    let z = _mm512_setzero_ps();
    let mut acc = [[[z; 2]; 2]; R];
    // One even and one odd dimension per step: `u` is then a constant and the accumulators
    // stay in registers (indexed by `d % 2`, they were kept on the stack).
    let step = |acc: &mut [[[__m512; 2]; 2]; R], d: usize, u: usize| {
        // SAFETY: `d < hd`: key row `d` and each query's value `d` exist (the contract).
        unsafe {
            let k = kb.add(d * KEY_BLOCK);
            if ahead != 0 {
                prefetch_row::<E>(k.wrapping_add(ahead));
            }
            let (k0, k1) = (load16(k), load16(k.add(16)));
            for (qr, a) in q.iter().zip(acc.iter_mut()) {
                let x = _mm512_set1_ps(*qr.add(d));
                a[u][0] = _mm512_fmadd_ps(x, k0, a[u][0]);
                a[u][1] = _mm512_fmadd_ps(x, k1, a[u][1]);
            }
        }
    };
    let mut d = 0;
    while d + 2 <= hd {
        step(&mut acc, d, 0);
        step(&mut acc, d + 1, 1);
        d += 2;
    }
    if d < hd {
        step(&mut acc, d, 0);
    }
    for (a, sr) in acc.iter().zip(s) {
        for (h, (x, y)) in a[0].iter().zip(&a[1]).enumerate() {
            // SAFETY: `sr` points to 32 writable floats (the contract).
            unsafe { _mm512_storeu_ps(sr.add(16 * h), _mm512_add_ps(*x, *y)) };
        }
    }
}

/// AVX2: [`scores_avx512`] in 8-lane registers. Sixteen registers hold the accumulators of
/// `R` rows × 2 partial sums for only so many keys, so the block's 32 keys are done in passes
/// of 32 (one row), 16 (two rows) or 8 keys (three or four: with 16 keys, three rows' twelve
/// sums, the key vectors and the broadcast query value left the compiler one register short,
/// and it kept a sum in memory); each lane's sums are the same operations in the same order
/// whatever the pass, so a row's numbers do not depend on `R`.
///
/// # Safety
/// The CPU must support AVX2 and FMA; otherwise as [`scores_avx512`].
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn scores_avx2<const R: usize, E: CacheElem>(
    q: [*const f32; R],
    hd: usize,
    kb: *const E,
    s: [*mut f32; R],
    ahead: usize,
) {
    // 8-key chunks per pass.
    let chunks = match R {
        1 => 4,
        2 => 2,
        _ => 1,
    };
    let z = _mm256_setzero_ps();
    for c0 in (0..4).step_by(chunks) {
        let mut acc = [[[z; 4]; 2]; R];
        // Even and odd dimensions in turn, as in `scores_avx512`.
        let step = |acc: &mut [[[__m256; 4]; 2]; R], d: usize, u: usize| {
            // SAFETY: as in `scores_avx512`; chunks `c0 .. c0 + chunks` lie in the 32 keys.
            unsafe {
                let k = kb.add(d * KEY_BLOCK);
                if ahead != 0 && c0 == 0 {
                    prefetch_row::<E>(k.wrapping_add(ahead));
                }
                let mut kv = [z; 4];
                for (c, kc) in kv.iter_mut().enumerate().take(chunks) {
                    *kc = load8(k.add(8 * (c0 + c)));
                }
                for (qr, a) in q.iter().zip(acc.iter_mut()) {
                    let x = _mm256_set1_ps(*qr.add(d));
                    for (ac, kc) in a[u].iter_mut().zip(kv).take(chunks) {
                        *ac = _mm256_fmadd_ps(x, kc, *ac);
                    }
                }
            }
        };
        let mut d = 0;
        while d + 2 <= hd {
            step(&mut acc, d, 0);
            step(&mut acc, d + 1, 1);
            d += 2;
        }
        if d < hd {
            step(&mut acc, d, 0);
        }
        for (a, sr) in acc.iter().zip(s) {
            for (h, (x, y)) in a[0].iter().zip(&a[1]).enumerate().take(chunks) {
                // SAFETY: `sr` points to 32 writable floats (the contract).
                unsafe { _mm256_storeu_ps(sr.add(8 * (c0 + h)), _mm256_add_ps(*x, *y)) };
            }
        }
    }
}

/// AVX-512: `s[l] ← s[l] · scale` for lanes `a..e`, −∞ elsewhere; returns their maximum.
///
/// # Safety
/// The CPU must support AVX-512 F.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn scale_mask_max_avx512(
    s: &mut [f32; KEY_BLOCK],
    a: usize,
    e: usize,
    scale: f32,
) -> f32 {
    let bits = |n: usize| -> u32 {
        if n >= 32 {
            u32::MAX
        } else {
            (1u32 << n) - 1
        }
    };
    // Lanes `a..e` of the 32.
    let vis = bits(e) & !bits(a);
    let (sc, ninf) = (_mm512_set1_ps(scale), _mm512_set1_ps(f32::NEG_INFINITY));
    let mut m = ninf;
    for h in 0..2 {
        let mask = (vis >> (16 * h)) as u16;
        // SAFETY: `s` holds 32 floats.
        unsafe {
            let p = s.as_mut_ptr().add(16 * h);
            let v = _mm512_mask_blend_ps(mask, ninf, _mm512_mul_ps(_mm512_loadu_ps(p), sc));
            _mm512_storeu_ps(p, v);
            m = _mm512_max_ps(m, v);
        }
    }
    _mm512_reduce_max_ps(m)
}

/// AVX2: [`scale_mask_max_avx512`] in four 8-lane parts, the visible lanes chosen by
/// comparing each lane's index with `a` and `e`.
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn scale_mask_max_avx2(
    s: &mut [f32; KEY_BLOCK],
    a: usize,
    e: usize,
    scale: f32,
) -> f32 {
    // Lane indices and bounds fit an `i32`: all are at most 32.
    let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    let (lo, hi) = (_mm256_set1_epi32(a as i32 - 1), _mm256_set1_epi32(e as i32));
    let (sc, ninf) = (_mm256_set1_ps(scale), _mm256_set1_ps(f32::NEG_INFINITY));
    let mut m = ninf;
    for c in 0..4 {
        let idx = _mm256_add_epi32(lane, _mm256_set1_epi32(8 * c as i32));
        let vis = _mm256_and_si256(_mm256_cmpgt_epi32(idx, lo), _mm256_cmpgt_epi32(hi, idx));
        // SAFETY: `s` holds 32 floats: part `c` is 8 of them.
        unsafe {
            let p = s.as_mut_ptr().add(8 * c);
            let x = _mm256_mul_ps(_mm256_loadu_ps(p), sc);
            let v = _mm256_blendv_ps(ninf, x, _mm256_castsi256_ps(vis));
            _mm256_storeu_ps(p, v);
            m = _mm256_max_ps(m, v);
        }
    }
    let q = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    let q = _mm_max_ps(q, _mm_movehl_ps(q, q));
    let q = _mm_max_ss(q, _mm_shuffle_ps(q, q, 1));
    _mm_cvtss_f32(q)
}

/// `exp` of 16 floats: [`exp8`]'s operations on 16 lanes (each lane's result is exactly
/// `exp8`'s).
#[inline]
#[target_feature(enable = "avx512f,fma")]
fn exp16(x: __m512) -> __m512 {
    let lo = _mm512_set1_ps(exp_c::LO);
    let underflow = _mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ);
    let x = _mm512_min_ps(_mm512_max_ps(x, lo), _mm512_set1_ps(exp_c::HI));
    let k = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
        _mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::LOG2_E)),
    );
    let r = _mm512_fnmadd_ps(k, _mm512_set1_ps(exp_c::LN2_HI), x);
    let r = _mm512_fnmadd_ps(k, _mm512_set1_ps(exp_c::LN2_LO), r);
    let mut p = _mm512_set1_ps(exp_c::POLY[0]);
    for c in &exp_c::POLY[1..] {
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(*c));
    }
    let r2 = _mm512_mul_ps(r, r);
    let er = _mm512_add_ps(_mm512_fmadd_ps(p, r2, r), _mm512_set1_ps(1.0));
    let pow2 = _mm512_castsi512_ps(_mm512_slli_epi32::<23>(_mm512_add_epi32(
        _mm512_cvtps_epi32(k),
        _mm512_set1_epi32(127),
    )));
    _mm512_maskz_mov_ps(!underflow, _mm512_mul_ps(er, pow2))
}

/// AVX-512: `s ← exp(s − m)` with [`exp16`] (−∞ gives 0); returns their sum in the order
/// [`crate::attention::block_sum`] defines (that of [`exp_block_avx2`]'s 8-lane parts), so
/// that every instruction set normalizes a row alike.
///
/// # Safety
/// The CPU must support AVX-512 F and FMA.
#[target_feature(enable = "avx512f,fma")]
pub(crate) unsafe fn exp_block_avx512(s: &mut [f32; KEY_BLOCK], m: f32) -> f32 {
    let mv = _mm512_set1_ps(m);
    // SAFETY: `s` holds 32 floats: two halves of 16.
    let (e0, e1) = unsafe {
        let p = s.as_mut_ptr();
        let e0 = exp16(_mm512_sub_ps(_mm512_loadu_ps(p), mv));
        let e1 = exp16(_mm512_sub_ps(_mm512_loadu_ps(p.add(16)), mv));
        _mm512_storeu_ps(p, e0);
        _mm512_storeu_ps(p.add(16), e1);
        (e0, e1)
    };
    // The four 8-value parts as AVX2 holds them: ((x0..8 + x8..16) + (x16..24 + x24..32)).
    let half = |v: __m512| {
        _mm256_add_ps(
            _mm512_castps512_ps256(v),
            _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v))),
        )
    };
    let t = _mm256_add_ps(half(e0), half(e1));
    let q = _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));
    let q = _mm_add_ps(q, _mm_movehl_ps(q, q));
    let q = _mm_add_ss(q, _mm_shuffle_ps(q, q, 1));
    _mm_cvtss_f32(q)
}

/// `s ← exp(s − m)` with [`exp8`] (−∞ gives 0); returns the sum as
/// `((e0 + e1) + (e2 + e3))` of the four 8-lane parts, then its lanes in a fixed tree.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn exp_block_avx2(s: &mut [f32; KEY_BLOCK], m: f32) -> f32 {
    let mv = _mm256_set1_ps(m);
    let mut e = [_mm256_setzero_ps(); 4];
    for (c, ec) in e.iter_mut().enumerate() {
        // SAFETY: `s` holds 32 floats: part `c` is 8 of them.
        unsafe {
            let p = s.as_mut_ptr().add(8 * c);
            *ec = exp8(_mm256_sub_ps(_mm256_loadu_ps(p), mv));
            _mm256_storeu_ps(p, *ec);
        }
    }
    let t = _mm256_add_ps(_mm256_add_ps(e[0], e[1]), _mm256_add_ps(e[2], e[3]));
    let q = _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));
    let q = _mm_add_ps(q, _mm_movehl_ps(q, q));
    let q = _mm_add_ss(q, _mm_shuffle_ps(q, q, 1));
    _mm_cvtss_f32(q)
}

/// AVX-512: for `R` rows, `o_r ← o_r · corr_r + Σ_{l ∈ a..e} p_r[l] · v[l·hd ..]`, one running
/// sum per value, 64 values per pass, then 16, then a masked tail; row `l` of the block
/// `ahead` values further is prefetched as row `l` is read.
///
/// # Safety
/// The CPU must support AVX-512 F and FMA; each `o[r]` points to `hd` writable floats no
/// other thread touches; `v` holds rows `a..e` (`e * hd` values).
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma")]
pub(crate) unsafe fn pv_avx512<const R: usize, E: CacheElem>(
    o: [*mut f32; R],
    corr: [f32; R],
    p: [&[f32; KEY_BLOCK]; R],
    a: usize,
    e: usize,
    v: *const E,
    hd: usize,
    ahead: usize,
) {
    let vs = hd;
    let c: [__m512; R] = std::array::from_fn(|r| _mm512_set1_ps(corr[r]));
    let mut d = 0;
    macro_rules! pass {
        ($w:literal, $mask:expr) => {{
            let mask: __mmask16 = $mask;
            let mut acc = [[_mm512_setzero_ps(); $w]; R];
            for r in 0..R {
                for u in 0..$w {
                    // SAFETY: values `d + 16u ..` under `mask` lie in row `r`'s `hd` floats.
                    let x = unsafe { _mm512_maskz_loadu_ps(mask, o[r].add(d + 16 * u)) };
                    acc[r][u] = _mm512_mul_ps(x, c[r]);
                }
            }
            for l in a..e {
                let mut x = [_mm512_setzero_ps(); $w];
                prefetch_values::<E>(v.wrapping_add(ahead + l * vs + d), 16 * $w);
                for (u, xu) in x.iter_mut().enumerate() {
                    // SAFETY: row `l < e` of `v`, values under `mask` (the contract).
                    *xu = unsafe { load16_masked(mask, v.add(l * vs + d + 16 * u)) };
                }
                for r in 0..R {
                    let pl = _mm512_set1_ps(p[r][l]);
                    for u in 0..$w {
                        acc[r][u] = _mm512_fmadd_ps(pl, x[u], acc[r][u]);
                    }
                }
            }
            for r in 0..R {
                for u in 0..$w {
                    // SAFETY: as for the loads of `o`.
                    unsafe { _mm512_mask_storeu_ps(o[r].add(d + 16 * u), mask, acc[r][u]) };
                }
            }
            d += 16 * $w;
        }};
    }
    while d + 64 <= hd {
        pass!(4, 0xFFFF);
    }
    while d + 16 <= hd {
        pass!(1, 0xFFFF);
    }
    if d < hd {
        pass!(1, ((1u32 << (hd - d)) - 1) as u16);
    }
    debug_assert!(d >= hd);
}

/// AVX2: [`pv_avx512`] in 8-lane registers (32 values per pass for one or two rows, 24 for
/// three, 16 for four, then 8), the last `hd mod 8` values with scalar fused multiply-adds
/// (the same operations per value, whatever the pass). The first pass over a block asks the cache for the block `ahead`
/// values on, row by row (without it the kernel waited on its value loads: over half its
/// samples at 8 SmolLM2 sequences).
///
/// # Safety
/// The CPU must support AVX2 and FMA; otherwise as [`pv_avx512`].
#[allow(clippy::too_many_arguments)]
// `l` indexes both the probabilities and the rows of `v`.
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn pv_avx2<const R: usize, E: CacheElem>(
    o: [*mut f32; R],
    corr: [f32; R],
    p: [&[f32; KEY_BLOCK]; R],
    a: usize,
    e: usize,
    v: *const E,
    hd: usize,
    ahead: usize,
) {
    let vs = hd;
    let c: [__m256; R] = std::array::from_fn(|r| _mm256_set1_ps(corr[r]));
    let mut d = 0;
    macro_rules! pass {
        ($w:literal) => {{
            let mut acc = [[_mm256_setzero_ps(); $w]; R];
            for r in 0..R {
                for u in 0..$w {
                    // SAFETY: values `d + 8u .. + 8` lie in row `r`'s `hd` floats.
                    let x = unsafe { _mm256_loadu_ps(o[r].add(d + 8 * u)) };
                    acc[r][u] = _mm256_mul_ps(x, c[r]);
                }
            }
            let first = d == 0 && ahead != 0;
            for l in a..e {
                if first {
                    prefetch_values::<E>(v.wrapping_add(ahead + l * vs), hd);
                }
                let pl: [__m256; R] = std::array::from_fn(|r| _mm256_set1_ps(p[r][l]));
                for u in 0..$w {
                    // SAFETY: row `l < e` of `v` (the contract).
                    let x = unsafe { load8(v.add(l * vs + d + 8 * u)) };
                    for r in 0..R {
                        acc[r][u] = _mm256_fmadd_ps(pl[r], x, acc[r][u]);
                    }
                }
            }
            for r in 0..R {
                for u in 0..$w {
                    // SAFETY: as for the loads of `o`.
                    unsafe { _mm256_storeu_ps(o[r].add(d + 8 * u), acc[r][u]) };
                }
            }
            d += 8 * $w;
        }};
    }
    // Registers: `R` broadcast probabilities, `R × w` sums and one value vector (one value
    // vector at a time, against every row, keeps the sums in registers; loading all `w`
    // vectors first spilled two sums per key). Three rows of 32 values would need all sixteen,
    // and the compiler then spilled two sums: they go 24 values a pass.
    match R {
        1 | 2 => {
            while d + 32 <= hd {
                pass!(4);
            }
        }
        3 => {
            while d + 24 <= hd {
                pass!(3);
            }
        }
        _ => {}
    }
    while d + 16 <= hd {
        pass!(2);
    }
    while d + 8 <= hd {
        pass!(1);
    }
    while d < hd {
        for r in 0..R {
            // SAFETY: value `d < hd` of row `r` and of rows `a..e` of `v`.
            unsafe {
                let mut acc = *o[r].add(d) * corr[r];
                for l in a..e {
                    acc = p[r][l].mul_add((*v.add(l * vs + d)).to_f32(), acc);
                }
                *o[r].add(d) = acc;
            }
        }
        d += 1;
    }
}

/// `dst[i] = f16(src[i])`, rounded to nearest even: 8 values per instruction, the last few
/// with `half`'s scalar conversion, which rounds the same way.
///
/// # Safety
/// The CPU must support AVX and F16C.
#[target_feature(enable = "avx,f16c")]
pub(crate) unsafe fn to_f16_slice(src: &[f32], dst: &mut [half::f16]) {
    let n = src.len().min(dst.len());
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: values `i..i + 8` lie in both slices (f16: two bytes each).
        unsafe {
            let h =
                _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm256_loadu_ps(src.as_ptr().add(i)));
            _mm_storeu_si128(dst.as_mut_ptr().add(i) as *mut __m128i, h);
        }
        i += 8;
    }
    for j in i..n {
        dst[j] = half::f16::from_f32(src[j]);
    }
}
