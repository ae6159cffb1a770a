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
        let dims = layout.shape().dims();
        let Some((&k, lead)) = dims.split_last() else {
            candle_core::bail!("packed linear: scalar input");
        };
        if k != w.k {
            candle_core::bail!("packed linear: input has {k} columns, weights {}", w.k);
        }
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!("packed linear: expected f32 input");
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("packed linear: input is not contiguous");
        };
        let x = &data[start..end];
        let m = x.len() / k;
        let mut out = vec![0f32; m * w.n];
        if m > 0 && !matmul_with(crate::isa(), w, x, m, &mut out) {
            candle_core::bail!("packed linear: size mismatch ({m}x{k} by {}x{})", w.n, w.k);
        }
        let mut shape = lead.to_vec();
        shape.push(w.n);
        Ok((CpuStorage::F32(out), Shape::from(shape)))
    }
}
