//! Scale, causal mask and softmax of attention scores in one pass (prefill), in place, behind
//! candle's [`InplaceOp1`] interface, with a vectorized `exp` where AVX2 or NEON runs
//! (`arch::x86::exp`, `arch::arm::exp`). The plain path builds a
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
pub(crate) fn softmax_row(row: &mut [f32], lo: usize, hi: usize, scale: f32) {
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
        if crate::isa().has_avx2() {
            // SAFETY: the selected instruction set includes AVX2 and FMA (detected at run time).
            return unsafe { crate::arch::x86::exp::exp_shifted_avx2(v, scale, max) };
        }
    }
    #[cfg(target_arch = "aarch64")]
    // SAFETY: NEON is part of every aarch64 target Rust builds for.
    return unsafe { crate::arch::arm::exp::exp_shifted_neon(v, scale, max) };
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
