//! [`SiluMul`]: the SwiGLU product `silu(gate) * up` of a gated MLP in one pass, as a candle
//! custom op: one output allocation and one read of each input, instead of candle's `silu`
//! (a scalar `expf` per value) followed by a separate multiply.
//!
//! Each value is `g / (1 + e^(-g))` rounded, then multiplied by `u`: transformers' `silu(g) * u`
//! in the same two roundings, with `e^x` from the vector `exp` (relative error ~1e-7) on x86-64
//! and the platform's `expf` elsewhere. Every value of a call goes through the same code (the
//! last partial vector is masked, not finished in scalar code), so a value's result depends on
//! nothing but its inputs: not on its row, nor on how many rows share the call.

use std::mem::MaybeUninit;

use candle_core::{CpuStorage, CustomOp2, Layout, Shape};
use rayon::prelude::*;

/// `silu(gate) * up` for f32 CPU tensors of one shape `[rows, width]` (each row contiguous;
/// the two may be narrowed halves of one fused `[gate; up]` projection).
#[derive(Debug, Clone, Copy)]
pub struct SiluMul;

impl CustomOp2 for SiluMul {
    fn name(&self) -> &'static str {
        "callm-silu-mul"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (CpuStorage::F32(g), CpuStorage::F32(u)) = (s1, s2) else {
            candle_core::bail!("silu-mul: expected f32 inputs");
        };
        if l1.shape() != l2.shape() {
            candle_core::bail!("silu-mul: shapes {:?} and {:?}", l1.shape(), l2.shape());
        }
        let (rows, width) = l1.shape().dims2()?;
        let (g, gs) = rows_of(g, l1, rows, width)?;
        let (u, us) = rows_of(u, l2, rows, width)?;
        let len = rows * width;
        let mut out: Vec<f32> = Vec::with_capacity(len);
        let row = |r: usize, o: &mut [MaybeUninit<f32>]| {
            silu_mul_uninit(&g[r * gs..r * gs + width], &u[r * us..r * us + width], o);
        };
        let spare = &mut out.spare_capacity_mut()[..len];
        if let Some(per_task) = crate::par::rows_per_task(rows, width) {
            spare
                .par_chunks_mut(per_task * width)
                .enumerate()
                .for_each(|(t, chunk)| {
                    for (i, o) in chunk.chunks_exact_mut(width).enumerate() {
                        row(t * per_task + i, o);
                    }
                });
        } else {
            for (r, o) in spare.chunks_exact_mut(width.max(1)).enumerate() {
                row(r, o);
            }
        }
        // SAFETY: `len` floats are allocated and the rows above (`rows` of `width`, each chunk a
        // whole number of rows) wrote every one of them.
        unsafe { out.set_len(len) };
        Ok((CpuStorage::F32(out), Shape::from((rows, width))))
    }
}

/// The storage from the layout's first value, and its row stride: rows of `width` contiguous
/// values, `rows` of them inside `data`.
fn rows_of<'a>(
    data: &'a [f32],
    l: &Layout,
    rows: usize,
    width: usize,
) -> candle_core::Result<(&'a [f32], usize)> {
    let (rs, cs) = match l.stride() {
        [rs, cs] => (*rs, *cs),
        _ => candle_core::bail!("silu-mul: expected a matrix"),
    };
    if width > 1 && cs != 1 {
        candle_core::bail!("silu-mul: rows must be contiguous");
    }
    let data = &data[l.start_offset().min(data.len())..];
    if rows > 0 && width > 0 && (rs < width || (rows - 1) * rs + width > data.len()) {
        candle_core::bail!("silu-mul: input out of bounds");
    }
    Ok((data, rs))
}

/// `out[i] = silu(g[i]) * u[i]` (the slices are equally long).
pub fn silu_mul(g: &[f32], u: &[f32], out: &mut [f32]) {
    silu_mul_uninit(g, u, crate::linear::as_uninit(out));
}

/// [`silu_mul`] into an output it only writes (every value of it).
fn silu_mul_uninit(g: &[f32], u: &[f32], out: &mut [MaybeUninit<f32>]) {
    assert!(
        g.len() == out.len() && u.len() == out.len(),
        "silu-mul: lengths"
    );
    #[cfg(target_arch = "x86_64")]
    {
        if crate::isa().has_avx2() {
            // SAFETY: the selected instruction set includes AVX2 and FMA (detected at run time);
            // the lengths are equal (checked above).
            unsafe { crate::arch::x86::exp::silu_mul_avx2(g, u, out) };
            return;
        }
    }
    for ((o, &g), &u) in out.iter_mut().zip(g).zip(u) {
        o.write(silu_scalar(g) * u);
    }
}

/// The definition: `g / (1 + e^(-g))`.
pub(crate) fn silu_scalar(g: f32) -> f32 {
    g / (1.0 + (-g).exp())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    #[test]
    fn matches_the_definition_within_float_rounding() {
        let n = 16 * 7 + 5;
        let g: Vec<f32> = (0..n).map(|i| (i as f32 - 60.0) * 0.37).collect();
        let u: Vec<f32> = (0..n).map(|i| ((i * 31 % 17) as f32 - 8.0) * 0.5).collect();
        let mut out = vec![0f32; n];
        silu_mul(&g, &u, &mut out);
        for i in 0..n {
            let want = (g[i] as f64 / (1.0 + (-g[i] as f64).exp())) * u[i] as f64;
            let tol = 1e-6 * want.abs() + 1e-30;
            assert!(
                (out[i] as f64 - want).abs() <= tol,
                "{i}: silu({}) * {} = {} want {want}",
                g[i],
                u[i],
                out[i]
            );
        }
        // Extremes: large negative gates give (nearly) 0, not NaN (the vector `exp` saturates
        // at e^88.4: below 1e-36 instead of -0); large positive ones give g * u.
        let g = [-200.0f32, -90.0, 90.0, 200.0, f32::NAN];
        let mut o = [0f32; 5];
        silu_mul(&g, &[1.0; 5], &mut o);
        assert!(o[..2].iter().all(|x| x.abs() < 1e-35), "{o:?}");
        assert_eq!(&o[2..4], &[90.0, 200.0]);
        assert!(o[4].is_nan());
    }

    #[test]
    fn a_value_does_not_depend_on_where_it_sits() {
        // The same gate and up values at every offset of a call give the same bits.
        let g: Vec<f32> = (0..40).map(|i| (i as f32 - 20.0) * 0.61).collect();
        let u: Vec<f32> = (0..40).map(|i| 1.0 + i as f32 * 0.01).collect();
        let mut whole = vec![0f32; 40];
        silu_mul(&g, &u, &mut whole);
        for start in 0..40 {
            let mut part = vec![0f32; 40 - start];
            silu_mul(&g[start..], &u[start..], &mut part);
            assert_eq!(part, whole[start..], "offset {start}");
        }
    }

    #[test]
    fn the_op_reads_narrowed_halves_and_matches_candle() -> candle_core::Result<()> {
        let dev = Device::Cpu;
        let (rows, w) = (40, 24);
        let v: Vec<f32> = (0..rows * 2 * w)
            .map(|i| ((i * 7919 % 1013) as f32 - 500.0) / 97.0)
            .collect();
        let gu = Tensor::from_vec(v, (rows, 2 * w), &dev)?;
        let (g, u) = (gu.narrow(1, 0, w)?, gu.narrow(1, w, w)?);
        let ours = g.apply_op2_no_bwd(&u, &SiluMul)?.to_vec2::<f32>()?;
        let theirs = (candle_silu(&g)? * &u)?.to_vec2::<f32>()?;
        for (a, b) in ours.iter().flatten().zip(theirs.iter().flatten()) {
            assert!((a - b).abs() <= 1e-6 * b.abs().max(1.0), "{a} vs {b}");
        }
        Ok(())
    }

    /// candle's own `silu` (`x / (1 + exp(-x))`), the op this one replaces.
    fn candle_silu(x: &Tensor) -> candle_core::Result<Tensor> {
        x.silu()
    }
}
