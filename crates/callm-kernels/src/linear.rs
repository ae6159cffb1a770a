//! [`PackedLinear`]: a quantized linear layer on packed weights, as a candle custom op.

use std::sync::Arc;

use candle_core::quantized::QTensor;
use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};

use crate::blocks::BlockKind;
use crate::matmul::matmul_with;
use crate::pack::PackedMatrix;

/// A quantized linear layer `y = x Wᵀ` on packed weights, applied to a candle tensor as a
/// [`CustomOp1`].
#[derive(Debug, Clone)]
pub struct PackedLinear {
    w: Arc<PackedMatrix>,
}

impl PackedLinear {
    /// Packs a CPU `QTensor` of shape `[n, k]` (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K,
    /// Q6_K); `None` when its block type is not handled here, `k` is not a multiple of the
    /// block size, or it does not live on the CPU.
    pub fn from_qtensor(q: &QTensor) -> Option<Self> {
        let (n, k) = q.shape().dims2().ok()?;
        if !q.device().is_cpu() {
            return None;
        }
        let w = PackedMatrix::pack(BlockKind::from_ggml(q.dtype())?, &q.data().ok()?, n, k)?;
        Some(PackedLinear { w: Arc::new(w) })
    }

    /// Applies the layer to `x` of shape `[..., k]` (f32 on the CPU; other float types are
    /// converted and the result converted back).
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let dtype = x.dtype();
        if dtype == candle_core::DType::F32 {
            x.contiguous()?.apply_op1_no_bwd(self)
        } else {
            x.to_dtype(candle_core::DType::F32)?
                .contiguous()?
                .apply_op1_no_bwd(self)?
                .to_dtype(dtype)
        }
    }
}

impl CustomOp1 for PackedLinear {
    fn name(&self) -> &'static str {
        "callm-packed-linear"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let w = &self.w;
        linear_fwd("packed", (w.k, w.n), storage, layout, |x, m, out| {
            matmul_with(crate::isa(), w, x, m, out)
        })
    }
}

/// The CPU forward pass of a linear layer with `k` inputs and `n` outputs, for any leading
/// shape: checks the input (`what` names the layer in errors), then `run(x, m, out)` computes
/// `out[m, n]` from `x[m, k]` and says whether the sizes matched.
pub(crate) fn linear_fwd(
    what: &str,
    (k_w, n): (usize, usize),
    storage: &CpuStorage,
    layout: &Layout,
    run: impl FnOnce(&[f32], usize, &mut [f32]) -> bool,
) -> candle_core::Result<(CpuStorage, Shape)> {
    let dims = layout.shape().dims();
    let Some((&k, lead)) = dims.split_last() else {
        candle_core::bail!("{what} linear: scalar input");
    };
    if k != k_w {
        candle_core::bail!("{what} linear: input has {k} columns, weights {k_w}");
    }
    let CpuStorage::F32(data) = storage else {
        candle_core::bail!("{what} linear: expected f32 input");
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("{what} linear: input is not contiguous");
    };
    let x = &data[start..end];
    let m = x.len() / k;
    let mut out = vec![0f32; m * n];
    if m > 0 && !run(x, m, &mut out) {
        candle_core::bail!("{what} linear: size mismatch ({m}x{k} by {n}x{k_w})");
    }
    let mut shape = lead.to_vec();
    shape.push(n);
    Ok((CpuStorage::F32(out), Shape::from(shape)))
}
