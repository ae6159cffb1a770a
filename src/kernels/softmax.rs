//! Scale, causal mask and softmax of attention scores in one pass (prefill), in place, behind
//! candle's [`InplaceOp1`] interface, with a vectorized `exp` where AVX2 runs. The plain path builds a
//! mask tensor, multiplies, adds and normalizes in four passes over `[heads, n, L]` scores and
//! calls the C library's scalar `expf` for every score, masked ones included.

use candle_core::{CpuStorage, InplaceOp1, Layout};
use rayon::prelude::*;

/// Softmax over the last dimension of scores `[kv_heads, rep * n, L]` (the `rep` query heads of
/// each kv head, `n` positions each, the last `n` of `L`), after multiplying by `scale`;
/// keys after a row's own position, or `window` or more positions before it, get probability 0.
#[derive(Debug, Clone, Copy)]
pub struct CausalSoftmax {
    /// Query heads per kv head.
    pub rep: usize,
    /// Score scale.
    pub scale: f32,
    /// Keys a query sees at most, itself included (`usize::MAX`: no window).
    pub window: usize,
}

impl InplaceOp1 for CausalSoftmax {
    fn name(&self) -> &'static str {
        "callm-causal-softmax"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        let [_, rows, len]: [usize; 3] =
            layout.shape().dims().try_into().map_err(|_| {
                candle_core::Error::Msg("causal softmax: scores must be 3-d".into())
            })?;
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!("causal softmax: scores must be f32");
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("causal softmax: scores must be contiguous");
        };
        if self.rep == 0 || !rows.is_multiple_of(self.rep) || rows / self.rep > len {
            candle_core::bail!(
                "causal softmax: {rows} rows for {} heads and {len} keys",
                self.rep
            );
        }
        let (scores, n) = (&mut data[start..end], rows / self.rep);
        if scores.is_empty() {
            return Ok(());
        }
        scores.par_chunks_mut(len).enumerate().for_each(|(i, row)| {
            let qpos = len - n + (i % rows) % n;
            let lo = (qpos + 1).saturating_sub(self.window);
            softmax_row(row, lo, qpos + 1, self.scale);
        });
        Ok(())
    }
}

/// `row[lo..hi]` ← softmax(scale · row[lo..hi]); everything else ← 0.
pub fn softmax_row(row: &mut [f32], lo: usize, hi: usize, scale: f32) {
    let hi = hi.min(row.len());
    let lo = lo.min(hi);
    row[..lo].fill(0.0);
    row[hi..].fill(0.0);
    let vis = &mut row[lo..hi];
    if vis.is_empty() {
        return;
    }
    let max = vis.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v * scale));
    // Every score -inf (or NaN): nothing to weigh, as a masked row of the plain path would be.
    if !max.is_finite() {
        vis.fill(0.0);
        return;
    }
    let sum = exp_shifted(vis, scale, max);
    let inv = 1.0 / sum;
    for v in vis.iter_mut() {
        *v *= inv;
    }
}

/// `v ← exp(scale·v − max)` for every value; returns their sum.
fn exp_shifted(v: &mut [f32], scale: f32, max: f32) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if super::isa().has_avx2() {
            // SAFETY: AVX2 and FMA were detected at run time.
            return unsafe { exp_shifted_avx2(v, scale, max) };
        }
    }
    #[cfg(target_arch = "aarch64")]
    // SAFETY: NEON is part of every aarch64 target Rust builds for.
    return unsafe { exp_shifted_neon(v, scale, max) };
    #[cfg(not(target_arch = "aarch64"))]
    {
        let mut sum = 0f32;
        for x in v.iter_mut() {
            *x = (*x * scale - max).exp();
            sum += *x;
        }
        sum
    }
}

/// Constants of the vector `exp` ([`exp8`], [`exp4`]): Cephes' `expf`, `2^k · e^r` with
/// `|r| ≤ ln2/2`.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
mod exp_c {
    /// Inputs below this give 0 (`e^x` underflows f32).
    pub const LO: f32 = -87.336_55;
    /// Inputs are clamped here (softmax only passes values ≤ 0).
    pub const HI: f32 = 88.376_26;
    /// ln 2 in two parts, high and low, for an exact `r = x − k·ln 2`.
    pub const LN2_HI: f32 = 0.693_359_4;
    /// The low part of ln 2.
    pub const LN2_LO: f32 = -2.121_944_4e-4;
    /// `P(r)` for `e^r ≈ 1 + r + r²·P(r)`, highest degree first (Horner).
    pub const POLY: [f32; 6] = [
        1.987_569_1e-4,
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        1.666_666_5e-1,
        0.5,
    ];
}

/// AVX2 + FMA version of [`exp_shifted`], 8 values per step with [`exp8`].
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn exp_shifted_avx2(v: &mut [f32], scale: f32, max: f32) -> f32 {
    use core::arch::x86_64::*;
    let (s, m) = (_mm256_set1_ps(scale), _mm256_set1_ps(max));
    let mut acc = _mm256_setzero_ps();
    let mut chunks = v.chunks_exact_mut(8);
    for c in &mut chunks {
        // SAFETY: `c` holds exactly 8 floats.
        let x = _mm256_fmsub_ps(_mm256_loadu_ps(c.as_ptr()), s, m);
        let e = exp8(x);
        _mm256_storeu_ps(c.as_mut_ptr(), e);
        acc = _mm256_add_ps(acc, e);
    }
    let mut lanes = [0f32; 8];
    _mm256_storeu_ps(lanes.as_mut_ptr(), acc);
    let mut sum = lanes.iter().sum::<f32>();
    let rest = chunks.into_remainder();
    if !rest.is_empty() {
        // The last < 8 values in one padded step.
        let mut buf = [0f32; 8];
        buf[..rest.len()].copy_from_slice(rest);
        let e = exp8(_mm256_fmsub_ps(_mm256_loadu_ps(buf.as_ptr()), s, m));
        _mm256_storeu_ps(buf.as_mut_ptr(), e);
        rest.copy_from_slice(&buf[..rest.len()]);
        sum += buf[..rest.len()].iter().sum::<f32>();
    }
    sum
}

/// `exp` of 8 floats (Cephes' `expf` method: `2^k · e^r` with `|r| ≤ ln2/2` and a degree-7
/// polynomial; relative error ~1e-7). Inputs below −87.3 (and −∞) give 0; inputs are clamped at
/// 88.4 above (softmax only passes values ≤ 0).
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2,fma")]
pub unsafe fn exp8(x: core::arch::x86_64::__m256) -> core::arch::x86_64::__m256 {
    use core::arch::x86_64::*;
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

/// NEON version of [`exp_shifted`], 4 values per step with [`exp4`].
///
/// # Safety
/// NEON (every aarch64 target).
#[cfg(target_arch = "aarch64")]
#[target_feature(enable = "neon")]
unsafe fn exp_shifted_neon(v: &mut [f32], scale: f32, max: f32) -> f32 {
    use core::arch::aarch64::*;
    let (s, m) = (vdupq_n_f32(scale), vdupq_n_f32(max));
    let mut acc = vdupq_n_f32(0.0);
    let mut chunks = v.chunks_exact_mut(4);
    for c in &mut chunks {
        // SAFETY: `c` holds exactly 4 floats.
        let e = exp4(vsubq_f32(vmulq_f32(vld1q_f32(c.as_ptr()), s), m));
        vst1q_f32(c.as_mut_ptr(), e);
        acc = vaddq_f32(acc, e);
    }
    let mut sum = vaddvq_f32(acc);
    let rest = chunks.into_remainder();
    if !rest.is_empty() {
        let mut buf = [0f32; 4];
        buf[..rest.len()].copy_from_slice(rest);
        let e = exp4(vsubq_f32(vmulq_f32(vld1q_f32(buf.as_ptr()), s), m));
        vst1q_f32(buf.as_mut_ptr(), e);
        rest.copy_from_slice(&buf[..rest.len()]);
        sum += buf[..rest.len()].iter().sum::<f32>();
    }
    sum
}

/// `exp` of 4 floats, the method and constants of [`exp8`] on NEON.
///
/// # Safety
/// NEON (every aarch64 target).
#[cfg(target_arch = "aarch64")]
#[inline]
#[target_feature(enable = "neon")]
pub unsafe fn exp4(x: core::arch::aarch64::float32x4_t) -> core::arch::aarch64::float32x4_t {
    use core::arch::aarch64::*;
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

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};
    use rand::{Rng, SeedableRng};

    #[test]
    fn vector_exp_is_within_two_ulps_of_f64() {
        // Whichever `exp` runs here: AVX2's `exp8`, NEON's `exp4`, or the standard library's.
        let mut rng = rand::rngs::StdRng::seed_from_u64(31);
        let mut xs: Vec<f32> = (0..100_000)
            .map(|_| rng.random_range(-87.0f32..0.0))
            .collect();
        xs.extend([
            0.0,
            -0.0,
            -1e-30,
            -0.5,
            -std::f32::consts::LN_2,
            -87.3,
            -87.4,
            -100.0,
            f32::NEG_INFINITY,
        ]);
        let mut v = xs.clone();
        let sum = exp_shifted(&mut v, 1.0, 0.0);
        let mut want_sum = 0f64;
        for (x, got) in xs.iter().zip(&v) {
            let want = (*x as f64).exp();
            want_sum += want;
            // Below e^-87.3 (the smallest normal f32 region) the result is 0.
            let tol = (want * 2.5e-7).max(f32::MIN_POSITIVE as f64);
            assert!(
                ((*got as f64) - want).abs() <= tol,
                "exp({x}) = {got}, want {want}"
            );
        }
        assert!((sum as f64 - want_sum).abs() <= want_sum * 1e-5);
    }

    #[test]
    fn matches_masked_softmax() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(32);
        for &(heads, rep, n, len, window) in &[
            (2, 3, 5, 20, usize::MAX),
            (1, 1, 1, 1, usize::MAX),
            (2, 2, 64, 200, usize::MAX),
            (1, 4, 9, 40, 7),
        ] {
            let rows = rep * n;
            let x: Vec<f32> = (0..heads * rows * len)
                .map(|_| rng.random_range(-30.0f32..30.0))
                .collect();
            let scale = 0.125f32;
            let t = Tensor::from_vec(x.clone(), (heads, rows, len), &Device::Cpu).unwrap();
            let op = CausalSoftmax { rep, scale, window };
            t.inplace_op1(&op).unwrap();
            let got: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
            for (ri, row) in x.chunks(len).enumerate() {
                let qpos = len - n + (ri % rows) % n;
                let vis = |j: usize| j <= qpos && qpos - j < window;
                let m = (0..len)
                    .filter(|&j| vis(j))
                    .map(|j| (row[j] * scale) as f64)
                    .fold(f64::MIN, f64::max);
                let z: f64 = (0..len)
                    .filter(|&j| vis(j))
                    .map(|j| ((row[j] * scale) as f64 - m).exp())
                    .sum();
                for j in 0..len {
                    let want = if vis(j) {
                        ((row[j] * scale) as f64 - m).exp() / z
                    } else {
                        0.0
                    };
                    let g = got[ri * len + j] as f64;
                    assert!(
                        (g - want).abs() <= 1e-6 * (want + 1e-6),
                        "row {ri} key {j}: {g} vs {want}"
                    );
                }
            }
        }
        // Bad shapes are errors, not panics.
        let t = Tensor::zeros((1, 3, 2), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(t
            .inplace_op1(&CausalSoftmax {
                rep: 2,
                scale: 1.0,
                window: usize::MAX
            })
            .is_err());
        assert!(t
            .inplace_op1(&CausalSoftmax {
                rep: 1,
                scale: 1.0,
                window: usize::MAX
            })
            .is_err());
    }
}
