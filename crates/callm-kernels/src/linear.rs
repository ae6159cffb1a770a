//! [`PackedLinear`]: a quantized linear layer on packed weights, as a candle custom op.

use std::mem::MaybeUninit;
use std::sync::Arc;

use candle_core::quantized::QTensor;
use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};

use crate::blocks::BlockKind;
use crate::matmul::matmul_concat_uninit;
use crate::pack::PackedMatrix;

/// A quantized linear layer `y = x Wᵀ (+ b)` on packed weights, applied to a candle tensor as a
/// [`CustomOp1`]. `W` may be several matrices over the same input, stacked on the output
/// ([`PackedLinear::concat`]: a layer's q, k and v projections, or gate and up).
#[derive(Debug, Clone)]
pub struct PackedLinear {
    /// The stacked matrices (one for a plain layer), each with `k` inputs.
    parts: Arc<[Arc<PackedMatrix>]>,
    /// Inputs, and outputs of all parts together.
    k: usize,
    n: usize,
    /// The bias, `n` values added to each output row (`y + b`, one f32 addition per value, as
    /// candle's `broadcast_add` of the bias would make it).
    bias: Option<Arc<[f32]>>,
}

impl PackedLinear {
    /// Packs a CPU `QTensor` of shape `[n, k]` (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K to
    /// Q6_K); `None` when its block type is not handled here, `k` is not a multiple of the
    /// block size, or it does not live on the CPU.
    pub fn from_qtensor(q: &QTensor) -> Option<Self> {
        let (n, k) = q.shape().dims2().ok()?;
        if !q.device().is_cpu() {
            return None;
        }
        let w = PackedMatrix::pack(BlockKind::from_ggml(q.dtype())?, &q.data().ok()?, n, k)?;
        Some(PackedLinear {
            parts: Arc::new([Arc::new(w)]),
            k,
            n,
            bias: None,
        })
    }

    /// Packs `n` rows of `k` values stored as ggml blocks of `kind` (`data`: the tensor's bytes
    /// as in a GGUF file, row-major); `None` when `k` is not whole blocks or `data` is short.
    pub fn from_raw(kind: BlockKind, data: &[u8], n: usize, k: usize) -> Option<Self> {
        let w = PackedMatrix::pack(kind, data, n, k)?;
        Some(PackedLinear {
            parts: Arc::new([Arc::new(w)]),
            k,
            n,
            bias: None,
        })
    }

    /// The layer with a bias added to each output row; `None` unless `bias` holds one value
    /// per output.
    pub fn with_bias(self, bias: Vec<f32>) -> Option<Self> {
        (bias.len() == self.n).then(|| PackedLinear {
            bias: Some(bias.into()),
            ..self
        })
    }

    /// One layer whose output is the outputs of `layers` side by side (`[x W1ᵀ | x W2ᵀ | ...]`),
    /// each computed exactly as by its own layer, in one call: the input is quantized once and
    /// every part's tiles are split over the pool together. `None` when `layers` is empty or
    /// their input sizes differ, or some have a bias and others not.
    pub fn concat(layers: &[&PackedLinear]) -> Option<Self> {
        let first = layers.first()?;
        let k = first.k;
        if layers
            .iter()
            .any(|l| l.k != k || l.bias.is_some() != first.bias.is_some())
        {
            return None;
        }
        let bias = first.bias.is_some().then(|| {
            layers
                .iter()
                .flat_map(|l| l.bias.iter().flat_map(|b| b.iter().copied()))
                .collect()
        });
        let parts: Vec<Arc<PackedMatrix>> = layers
            .iter()
            .flat_map(|l| l.parts.iter().cloned())
            .collect();
        Some(PackedLinear {
            n: parts.iter().map(|p| p.n).sum(),
            parts: parts.into(),
            k,
            bias,
        })
    }

    /// Outputs per input row (all parts together).
    pub fn out_features(&self) -> usize {
        self.n
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
        let parts: Vec<&PackedMatrix> = self.parts.iter().map(|p| &**p).collect();
        let (mut y, shape) =
            linear_fwd("packed", (self.k, self.n), storage, layout, |x, m, out| {
                matmul_concat_uninit(crate::isa(), &parts, x, m, out)
            })?;
        if let (Some(b), CpuStorage::F32(v)) = (&self.bias, &mut y) {
            add_rows(v, b);
        }
        Ok((y, shape))
    }
}

/// The CPU forward pass of a linear layer with `k` inputs and `n` outputs, for any leading
/// shape: checks the input (`what` names the layer in errors), then `run(x, m, out)` computes
/// `out[m, n]` from `x[m, k]` and says whether the sizes matched.
///
/// `out` is handed to `run` uninitialized: returning `true`, `run` has written every one of its
/// `m * n` floats (the matmuls' contract: each output belongs to exactly one work item, which
/// writes it). Zeroing it first cost a serial `memset` of every output, and for large ones
/// fresh pages from the kernel, on every call (about 1.5% of the CPU time at 8 sequences a
/// step, all of it while the pool's other threads waited).
pub(crate) fn linear_fwd(
    what: &str,
    (k_w, n): (usize, usize),
    storage: &CpuStorage,
    layout: &Layout,
    run: impl FnOnce(&[f32], usize, &mut [MaybeUninit<f32>]) -> bool,
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
    let len = m * n;
    let mut out: Vec<f32> = Vec::with_capacity(len);
    if m > 0 && !run(x, m, &mut out.spare_capacity_mut()[..len]) {
        candle_core::bail!("{what} linear: size mismatch ({m}x{k} by {n}x{k_w})");
    }
    // SAFETY: `len` floats are allocated, and `run` returned `true`, so it wrote all of them
    // (or `len` is 0).
    unsafe { out.set_len(len) };
    let mut shape = lead.to_vec();
    shape.push(n);
    Ok((CpuStorage::F32(out), Shape::from(shape)))
}

/// Adds `b` to each row of `y` (rows of `b.len()` values), rows in parallel when there are
/// enough of them: a value's sum depends on nothing but its two terms.
pub(crate) fn add_rows(y: &mut [f32], b: &[f32]) {
    let width = b.len().max(1);
    let row = |r: &mut [f32]| r.iter_mut().zip(b).for_each(|(v, b)| *v += b);
    match crate::par::rows_per_task(y.len() / width, width) {
        Some(per_task) => {
            use rayon::prelude::*;
            y.par_chunks_mut(per_task * width)
                .for_each(|c| c.chunks_exact_mut(width).for_each(row));
        }
        None => y.chunks_exact_mut(width).for_each(row),
    }
}

/// Views initialized floats as an output the kernels only write: they store floats and never
/// read, so `out` stays initialized.
pub(crate) fn as_uninit(out: &mut [f32]) -> &mut [MaybeUninit<f32>] {
    // SAFETY: `MaybeUninit<f32>` has the layout of `f32`; the view only ever stores
    // initialized floats (the kernels write outputs, never uninitialized values), so `out` is
    // still initialized when the borrow ends.
    unsafe { &mut *(out as *mut [f32] as *mut [MaybeUninit<f32>]) }
}
