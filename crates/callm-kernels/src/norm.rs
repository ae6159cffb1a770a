//! RMS normalisation of f32 rows, `x / sqrt(mean(x²) + eps) * w`, as transformers' Llama-style
//! norms compute it (`x * rsqrt(variance + eps)`, then the weight).
//!
//! candle's own op sums each row's squares one value after another (a chain of dependent adds
//! the compiler may not reorder) and divides every value, on the calling thread for up to 32
//! rows. Here the sum runs in 16 independent lanes, folded in a fixed order, so it vectorizes
//! without `-ffast-math`-style reassociation, and rows go to rayon's pool once there are enough
//! of them (`par`). Every row takes the same path whatever the batch, so a row's result never
//! depends on the other rows.

use std::mem::MaybeUninit;

use candle_core::{CpuStorage, CustomOp2, Layout, Shape};

/// Lanes of the sum of squares.
const LANES: usize = 16;

/// `x * rsqrt(mean(x²) + eps) * w` over the last dimension of an f32 tensor, `w` its length.
#[derive(Debug, Clone, Copy)]
pub struct RmsNorm {
    /// Added to the mean square before the root.
    pub eps: f32,
}

impl CustomOp2 for RmsNorm {
    fn name(&self) -> &'static str {
        "callm-rms-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (CpuStorage::F32(x), CpuStorage::F32(w)) = (s1, s2) else {
            candle_core::bail!("rms-norm: expected f32 inputs");
        };
        let (Some((x0, x1)), Some((w0, w1))) = (l1.contiguous_offsets(), l2.contiguous_offsets())
        else {
            candle_core::bail!("rms-norm: inputs must be contiguous");
        };
        let dims = l1.shape().dims();
        let width = dims.last().copied().unwrap_or(0);
        let (x, w) = (&x[x0..x1], &w[w0..w1]);
        if width == 0 || w.len() != width || !x.len().is_multiple_of(width) {
            candle_core::bail!("rms-norm: {} weights for rows of {width}", w.len());
        }
        let rows = x.len() / width;
        let len = x.len();
        let mut out: Vec<f32> = Vec::with_capacity(len);
        let spare = &mut out.spare_capacity_mut()[..len];
        match crate::par::rows_per_task(rows, width) {
            Some(r) => {
                use rayon::prelude::*;
                spare
                    .par_chunks_mut(r * width)
                    .zip(x.par_chunks(r * width))
                    .for_each(|(o, x)| {
                        for (o, x) in o.chunks_exact_mut(width).zip(x.chunks_exact(width)) {
                            rms_row(x, w, self.eps, o);
                        }
                    });
            }
            None => {
                for (o, x) in spare.chunks_exact_mut(width).zip(x.chunks_exact(width)) {
                    rms_row(x, w, self.eps, o);
                }
            }
        }
        // SAFETY: `len` floats are allocated, and every row of `width` (`len` is a multiple of
        // it) was written by `rms_row`, which writes each value of its output.
        unsafe { out.set_len(len) };
        Ok((CpuStorage::F32(out), Shape::from_dims(dims)))
    }
}

/// One row: `out = x * rsqrt(mean(x²) + eps) * w` (equal lengths).
pub(crate) fn rms_row(x: &[f32], w: &[f32], eps: f32, out: &mut [MaybeUninit<f32>]) {
    let inv = 1.0 / (sum_squares(x) / x.len() as f32 + eps).sqrt();
    for ((o, &x), &w) in out.iter_mut().zip(x).zip(w) {
        o.write(x * inv * w);
    }
}

/// The sum of squares in [`LANES`] lanes (value `i` in lane `i % LANES`), the lanes folded
/// pairwise in a fixed order.
fn sum_squares(x: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += v * v;
        }
    }
    for (a, &v) in acc.iter_mut().zip(tail) {
        *a += v * v;
    }
    let mut n = LANES;
    while n > 1 {
        n /= 2;
        for i in 0..n {
            acc[i] += acc[i + n];
        }
    }
    acc[0]
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    /// The definition in f64.
    fn reference(x: &[f32], w: &[f32], eps: f32) -> Vec<f64> {
        let ms = x.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / x.len() as f64;
        let inv = 1.0 / (ms + eps as f64).sqrt();
        x.iter()
            .zip(w)
            .map(|(&v, &w)| v as f64 * inv * w as f64)
            .collect()
    }

    #[test]
    fn rows_match_the_definition_and_candles_op() {
        let dev = Device::Cpu;
        for (rows, width) in [(1, 5), (3, 64), (8, 576), (40, 100)] {
            let x: Vec<f32> = (0..rows * width)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.013)
                .collect();
            let w: Vec<f32> = (0..width).map(|i| 0.5 + (i % 7) as f32 * 0.1).collect();
            let xt = Tensor::from_slice(&x, (rows, width), &dev).unwrap();
            let wt = Tensor::from_slice(&w, width, &dev).unwrap();
            let got = xt
                .apply_op2_no_bwd(&wt, &RmsNorm { eps: 1e-5 })
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            let candle = candle_nn::ops::rms_norm(&xt, &wt, 1e-5)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            for r in 0..rows {
                let row = r * width..(r + 1) * width;
                let want = reference(&x[row.clone()], &w, 1e-5);
                for (i, &want) in want.iter().enumerate() {
                    let (g, c) = (got[r * width + i] as f64, candle[r * width + i] as f64);
                    let tol = 1e-6 * want.abs().max(1e-3);
                    assert!(
                        (g - want).abs() <= tol,
                        "{rows}x{width} [{r},{i}]: {g} want {want}"
                    );
                    assert!((g - c).abs() <= 2.0 * tol, "[{r},{i}]: {g}, candle {c}");
                }
            }
        }
    }

    #[test]
    fn a_row_does_not_depend_on_the_batch() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .expect("pool");
        let width = 576;
        let x: Vec<f32> = (0..9 * width).map(|i| (i as f32 * 0.37).sin()).collect();
        let w = vec![1.25f32; width];
        let run = |rows: usize| {
            let xt = Tensor::from_slice(&x[..rows * width], (rows, width), &Device::Cpu).unwrap();
            let wt = Tensor::from_slice(&w, width, &Device::Cpu).unwrap();
            pool.install(|| xt.apply_op2_no_bwd(&wt, &RmsNorm { eps: 1e-6 }))
                .unwrap()
                .to_vec2::<f32>()
                .unwrap()
        };
        let alone = run(1);
        for rows in [2, 5, 9] {
            assert_eq!(run(rows)[0], alone[0], "{rows} rows");
        }
    }

    #[test]
    fn bad_shapes_are_errors() {
        let dev = Device::Cpu;
        let x = Tensor::zeros((2, 8), candle_core::DType::F32, &dev).unwrap();
        let w = Tensor::zeros(7, candle_core::DType::F32, &dev).unwrap();
        assert!(x.apply_op2_no_bwd(&w, &RmsNorm { eps: 1e-6 }).is_err());
        let x16 = x.to_dtype(candle_core::DType::F16).unwrap();
        let w8 = Tensor::zeros(8, candle_core::DType::F16, &dev).unwrap();
        assert!(x16.apply_op2_no_bwd(&w8, &RmsNorm { eps: 1e-6 }).is_err());
    }
}
