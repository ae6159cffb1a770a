//! Weight sources: safetensors checkpoints (dense) and GGUF files (quantized), behind one
//! interface so a single decoder implementation serves both.

use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Module, Tensor};

pub use super::embedding::Embedding;
pub use super::gguf_source::GgufSource;
pub use super::names::{LayerWeight, Naming, Weight};
pub use super::safetensors::SafetensorsSource;
use super::ModelError;
use crate::kernels::{self, DenseLinear, PackedLinear};

/// A linear projection `y = x W^T (+ b)`, dense or quantized.
#[derive(Debug, Clone)]
pub enum Linear {
    /// Dense weights `[out, in]` (candle's matmul: GPUs, other dtypes, `CALLM_KERNELS=off`).
    Dense(candle_nn::Linear),
    /// Dense f32 weights repacked for callm's row-invariant CPU kernel (which adds an f32 bias
    /// itself), with an optional dense bias of another type.
    DenseCpu(DenseLinear, Option<Tensor>),
    /// Quantized weights with an optional dense bias (candle's kernels).
    Quant(QMatMul, Option<Tensor>),
    /// Quantized weights repacked for callm's CPU kernels (which add an f32 bias themselves),
    /// with an optional dense bias of another type.
    Packed(PackedLinear, Option<Tensor>),
}

impl Linear {
    /// Whether the weights are quantized (ggml blocks), not floats.
    pub fn is_quantized(&self) -> bool {
        matches!(self, Linear::Quant(..) | Linear::Packed(..))
    }

    /// One projection whose output is `parts`' outputs side by side, when callm's packed CPU
    /// kernels hold them all (biases, in the kernels, on all or none): the input is then
    /// quantized once and the pool forks once for all of them (a layer's q, k and v, or gate
    /// and up), and each output is what its own projection computes, bit for bit. `None`
    /// otherwise (the parts stay separate).
    pub fn stack(parts: &[&Linear]) -> Option<Linear> {
        let packed = parts
            .iter()
            .map(|p| match p {
                Linear::Packed(w, None) => Some(w),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Linear::Packed(PackedLinear::concat(&packed)?, None))
    }

    /// Applies the projection to `x` of shape `[..., in]`.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Linear::Dense(l) => l.forward(x),
            Linear::DenseCpu(w, b) => add_bias(w.forward(x)?, b.as_ref()),
            Linear::Quant(w, b) => add_bias(w.forward(x)?, b.as_ref()),
            Linear::Packed(w, b) => add_bias(w.forward(x)?, b.as_ref()),
        }
    }
}

fn add_bias(y: Tensor, b: Option<&Tensor>) -> candle_core::Result<Tensor> {
    match b {
        Some(b) => y.broadcast_add(b),
        None => Ok(y),
    }
}

/// A quantized projection on `device`: callm's packed CPU kernels when they handle the block
/// type here, callm's dense kernel for f32/f16/bf16 tensors on the CPU (candle would
/// dequantize them for its own dense matmul), else candle's `QMatMul`.
pub(super) fn quant_linear(q: Arc<QTensor>, bias: Option<Tensor>) -> candle_core::Result<Linear> {
    if q.device().is_cpu() && kernels::enabled() {
        if let Some(p) = PackedLinear::from_qtensor(&q) {
            return packed_with_bias(p, bias);
        }
    }
    if q.device().is_cpu()
        && kernels::fused_attention()
        && matches!(q.dtype(), GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16)
    {
        if let Some(d) = DenseLinear::from_tensor(&q.dequantize(&Device::Cpu)?) {
            return Ok(dense_cpu(d, bias));
        }
    }
    Ok(Linear::Quant(QMatMul::from_arc(q)?, bias))
}

/// A packed layer with its bias: an f32 bias goes into the kernels' op, added to the rows it
/// writes, instead of candle's `broadcast_add` over a new tensor (on candle's own thread pool,
/// which spins against rayon's, once the output is large).
pub(super) fn packed_with_bias(
    p: PackedLinear,
    bias: Option<Tensor>,
) -> candle_core::Result<Linear> {
    Ok(match bias {
        Some(b) if b.dtype() == DType::F32 => match p.clone().with_bias(b.to_vec1()?) {
            Some(p) => Linear::Packed(p, None),
            None => Linear::Packed(p, Some(b)),
        },
        b => Linear::Packed(p, b),
    })
}

/// callm's dense CPU layer, an f32 bias inside it (as for the packed layers in
/// [`quant_linear`]).
/// A bias that is not one f32 per output stays a tensor (candle's add reports the mismatch).
fn dense_cpu(d: DenseLinear, bias: Option<Tensor>) -> Linear {
    match bias {
        Some(b) if b.dtype() == DType::F32 => {
            match b.to_vec1().ok().and_then(|v| d.clone().with_bias(v)) {
                Some(d) => Linear::DenseCpu(d, None),
                None => Linear::DenseCpu(d, Some(b)),
            }
        }
        b => Linear::DenseCpu(d, b),
    }
}

/// A dense projection: callm's row-invariant kernel for f32 weights on the CPU (unless
/// `CALLM_KERNELS=off`), else candle's `Linear`.
pub fn dense_linear(w: Tensor, b: Option<Tensor>) -> Linear {
    if w.device().is_cpu() && w.dtype() == DType::F32 && kernels::fused_attention() {
        if let Some(d) = DenseLinear::from_tensor(&w) {
            return dense_cpu(d, b);
        }
    }
    Linear::Dense(candle_nn::Linear::new(w, b))
}

/// Where a decoder's tensors come from; tensors are asked for by name, in the convention
/// [`WeightSource::naming`] says.
pub trait WeightSource {
    /// The naming convention of this source's tensors.
    fn naming(&self) -> Naming;
    /// Whether the tensor exists.
    fn contains(&self, name: &str) -> bool;
    /// The tensor's shape (`[out, in]` order), without loading it; `None` if it is absent.
    fn shape(&self, name: &str) -> Option<Vec<usize>>;
    /// The file(s) the tensors come from, for errors.
    fn origin(&self) -> String;
    /// A projection of shape `[out, in]`, with its bias (the same name with `.bias`) when
    /// `bias` is set.
    fn linear(
        &mut self,
        name: &str,
        out: usize,
        inp: usize,
        bias: bool,
    ) -> Result<Linear, ModelError>;
    /// A 1-D tensor (norm weights, biases), as f32.
    fn vector(&mut self, name: &str, len: usize) -> Result<Tensor, ModelError>;
    /// The embedding table.
    fn embedding(
        &mut self,
        name: &str,
        vocab: usize,
        hidden: usize,
    ) -> Result<Embedding, ModelError>;
    /// `experts` projections of shape `[out, in]` stored as one tensor `[experts, out, in]`
    /// (llama.cpp's `ffn_*_exps`), one [`Linear`] per expert so that a token reads only the
    /// weights of the experts it is routed to.
    fn stacked_linears(
        &mut self,
        name: &str,
        experts: usize,
        out: usize,
        inp: usize,
    ) -> Result<Vec<Linear>, ModelError>;
}

/// Reports a load's progress: bytes of weights read so far, and in all. Called from the
/// loading thread after each tensor; the last call has both equal.
#[derive(Clone)]
pub struct LoadProgress(pub Arc<dyn Fn(u64, u64) + Send + Sync>);

impl std::fmt::Debug for LoadProgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LoadProgress")
    }
}
