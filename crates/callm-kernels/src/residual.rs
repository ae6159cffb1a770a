//! [`ResidualAdd`]: a decoder layer's residual update `x + scale * branch` as a candle custom
//! op, with its rows on rayon's pool.
//!
//! candle's own elementwise ops hand anything from 64K values on to candle's separate thread
//! pool, whose workers spin while they wait. A forward pass runs on rayon's pool, whose other
//! workers are kept polling for the pass's parallel kernels (callm's `device::with_team`), so
//! from that size on (a prefill chunk of 74 tokens with a 896-wide model, 16 tokens at 4096)
//! each residual add had two pools' threads spinning on the same cores: measured on 2 cores,
//! 30% of a 96-token prefill went to that. This op does the same arithmetic on rayon's pool.
//!
//! Each value is `x + b` (or `x + b * scale`, the product rounded first, as candle's `affine`
//! then `add` round), whatever the row or the number of rows: the results are candle's, bit
//! for bit, and do not depend on the batch.

use std::mem::MaybeUninit;

use candle_core::{CpuStorage, CustomOp2, Layout, Shape};
use rayon::prelude::*;

/// `x + branch` (or `x + branch * scale`) for contiguous f32 CPU tensors of one shape; the
/// first operand is `x`.
#[derive(Debug, Clone, Copy)]
pub struct ResidualAdd {
    /// The branch's multiplier (Granite's `residual_multiplier`), if any.
    pub scale: Option<f32>,
}

impl CustomOp2 for ResidualAdd {
    fn name(&self) -> &'static str {
        "callm-residual-add"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (CpuStorage::F32(x), CpuStorage::F32(b)) = (s1, s2) else {
            candle_core::bail!("residual-add: expected f32 inputs");
        };
        if l1.shape() != l2.shape() {
            candle_core::bail!("residual-add: shapes {:?} and {:?}", l1.shape(), l2.shape());
        }
        let (Some((x0, x1)), Some((b0, b1))) = (l1.contiguous_offsets(), l2.contiguous_offsets())
        else {
            candle_core::bail!("residual-add: inputs must be contiguous");
        };
        let (Some(x), Some(b)) = (x.get(x0..x1), b.get(b0..b1)) else {
            candle_core::bail!("residual-add: input out of bounds");
        };
        let len = x.len();
        let width = l1.shape().dims().last().copied().unwrap_or(1).max(1);
        let rows = len / width;
        let mut out: Vec<f32> = Vec::with_capacity(len);
        let spare = &mut out.spare_capacity_mut()[..len];
        let scale = self.scale;
        let add = |at: usize, o: &mut [MaybeUninit<f32>]| {
            add_into(&x[at..at + o.len()], &b[at..at + o.len()], scale, o)
        };
        match crate::par::rows_per_task(rows, width) {
            Some(per_task) => spare
                .par_chunks_mut(per_task * width)
                .enumerate()
                .for_each(|(t, chunk)| add(t * per_task * width, chunk)),
            None => add(0, spare),
        }
        // SAFETY: `len` floats are allocated, and the chunks above, which cover all of them,
        // wrote every one.
        unsafe { out.set_len(len) };
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// `out[i] = x[i] + b[i] * scale` (the slices are equally long).
fn add_into(x: &[f32], b: &[f32], scale: Option<f32>, out: &mut [MaybeUninit<f32>]) {
    let vals = out.iter_mut().zip(x.iter().zip(b));
    match scale {
        None => vals.for_each(|(o, (&x, &b))| {
            o.write(x + b);
        }),
        Some(s) => vals.for_each(|(o, (&x, &b))| {
            o.write(x + b * s);
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    /// candle's `x + b` and `x + b * s` are the reference, bit for bit, from one row to rows
    /// that go to the pool, with a scale and without.
    #[test]
    fn adds_as_candle_does() {
        let dev = Device::Cpu;
        for (rows, width) in [(1, 7), (3, 64), (96, 896), (17, 4096)] {
            let x = Tensor::randn(0f32, 1.0, (rows, width), &dev).expect("x");
            let b = Tensor::randn(0f32, 3.0, (rows, width), &dev).expect("b");
            for scale in [None, Some(0.22f32)] {
                let want = match scale {
                    None => (&x + &b).expect("add"),
                    Some(s) => (&x + (&b * s as f64).expect("mul")).expect("add"),
                };
                let got = x
                    .apply_op2_no_bwd(&b, &ResidualAdd { scale })
                    .expect("residual add");
                assert_eq!(got.dims(), want.dims());
                let (got, want) = (
                    got.flatten_all().and_then(|t| t.to_vec1::<f32>()),
                    want.flatten_all().and_then(|t| t.to_vec1::<f32>()),
                );
                let (got, want) = (got.expect("got"), want.expect("want"));
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert_eq!(g.to_bits(), w.to_bits(), "{rows}x{width} {scale:?} at {i}");
                }
            }
        }
    }

    #[test]
    fn mismatched_or_strided_inputs_are_errors() {
        let dev = Device::Cpu;
        let x = Tensor::zeros((4, 8), candle_core::DType::F32, &dev).expect("x");
        let b = Tensor::zeros((4, 6), candle_core::DType::F32, &dev).expect("b");
        assert!(x
            .apply_op2_no_bwd(&b, &ResidualAdd { scale: None })
            .is_err());
        let t = Tensor::zeros((8, 4), candle_core::DType::F32, &dev)
            .and_then(|t| t.t())
            .expect("transposed");
        assert!(x
            .apply_op2_no_bwd(&t, &ResidualAdd { scale: None })
            .is_err());
    }
}
