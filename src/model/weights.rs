//! Weight sources: safetensors checkpoints (dense) and GGUF files (quantized), behind one
//! interface so a single decoder implementation serves both.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use candle_core::quantized::ggml_file::qtensor_from_ggml;
use candle_core::quantized::{gguf_file, GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Module, Tensor};

pub use super::embedding::Embedding;
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

/// Quantized weights from a GGUF file.
pub struct GgufSource {
    content: gguf_file::Content,
    file: std::fs::File,
    path: String,
    device: Device,
    progress: Option<LoadProgress>,
    /// Bytes of tensor data read so far, and in all (counted when `progress` is set).
    read: u64,
    total: u64,
    /// The bytes of the last tensor packed straight from the file (reused: a tensor read into
    /// fresh memory, and copied again by candle, cost two rounds of page faults each).
    buf: Vec<u8>,
    /// The tensors in a block type candle does not know (IQ4_NL, IQ4_XS), which `content`
    /// lists under a stand-in type: read only through callm's kernels (packed, or dequantized).
    callm_only: HashMap<String, kernels::BlockKind>,
}

/// Bytes of a tensor's data in the file (`kind`: its true block type, for a callm-only one).
fn tensor_bytes(info: &gguf_file::TensorInfo, kind: Option<kernels::BlockKind>) -> u64 {
    let (per, bytes) = match kind {
        Some(k) => (k.block_values(), k.block_bytes()),
        None => (info.ggml_dtype.block_size(), info.ggml_dtype.type_size()),
    };
    (info.shape.elem_count() / per.max(1) * bytes) as u64
}

impl GgufSource {
    /// Wraps an opened GGUF file whose header has been read.
    pub fn new(
        content: gguf_file::Content,
        file: std::fs::File,
        path: &Path,
        device: &Device,
    ) -> Self {
        GgufSource {
            content,
            file,
            path: path.display().to_string(),
            device: device.clone(),
            progress: None,
            read: 0,
            total: 0,
            buf: Vec::new(),
            callm_only: HashMap::new(),
        }
    }

    /// Marks the tensors `content` lists under a stand-in type, with their true block type
    /// ([`crate::gguf_header::read_content`]).
    pub fn with_callm_only(mut self, tensors: HashMap<String, kernels::BlockKind>) -> Self {
        self.callm_only = tensors;
        self
    }

    /// The true block type of a callm-only tensor.
    pub(crate) fn callm_only_kind(&self, name: &str) -> Option<kernels::BlockKind> {
        self.callm_only.get(name).copied()
    }

    /// Bytes of tensor `name`'s data in the file.
    fn bytes_of(&self, name: &str, info: &gguf_file::TensorInfo) -> u64 {
        tensor_bytes(info, self.callm_only_kind(name))
    }

    /// A `[vocab, hidden]` embedding in a callm-only block type: the file's blocks, as they
    /// are (rows dequantized on lookup; a dequantized table would take 4 bytes a value).
    fn embedding_blocks(
        &mut self,
        name: &str,
        kind: kernels::BlockKind,
        vocab: usize,
        hidden: usize,
    ) -> Result<Embedding, ModelError> {
        use std::io::{Read, Seek, SeekFrom};
        let path = self.path.clone();
        let err = |msg: String| ModelError::Weights {
            file: path.clone(),
            msg,
        };
        let info = self.content.tensor_infos.get(name).ok_or_else(|| {
            err(format!(
                "missing tensor \"{name}\" (expected shape [{vocab}, {hidden}])"
            ))
        })?;
        if info.shape.dims() != [vocab, hidden] {
            return Err(err(format!(
                "tensor \"{name}\" has shape {:?}, expected [{vocab}, {hidden}]",
                info.shape.dims()
            )));
        }
        let bytes = self.bytes_of(name, info);
        let mut data = vec![0u8; bytes as usize];
        let at = self.content.tensor_data_offset + info.offset;
        self.file
            .seek(SeekFrom::Start(at))
            .and_then(|_| self.file.read_exact(&mut data))
            .map_err(|e| err(format!("cannot read tensor \"{name}\": {e}")))?;
        self.report(bytes);
        Embedding::blocks(kind, data, hidden, &self.device)
            .ok_or_else(|| err(format!("tensor \"{name}\": rows are not whole blocks")))
    }

    /// A callm-only tensor's values as f32 (`elems` of them), read and dequantized by callm's
    /// kernels crate: for what its packed kernels do not take (another device, the kernels
    /// off, a lookup table such as the token embedding, a vector).
    fn dequantized(
        &mut self,
        name: &str,
        kind: kernels::BlockKind,
        info_offset: u64,
        elems: usize,
    ) -> Result<Vec<f32>, ModelError> {
        use std::io::{Read, Seek, SeekFrom};
        let err = |msg: String| ModelError::Weights {
            file: self.path.clone(),
            msg: format!("cannot read tensor \"{name}\": {msg}"),
        };
        let bytes = elems / kind.block_values() * kind.block_bytes();
        let mut raw = vec![0u8; bytes];
        let at = self.content.tensor_data_offset + info_offset;
        self.file
            .seek(SeekFrom::Start(at))
            .and_then(|_| self.file.read_exact(&mut raw))
            .map_err(|e| err(e.to_string()))?;
        let mut values = vec![0f32; elems];
        if !kernels::dequantize(kind, &raw, &mut values) {
            return Err(err(format!(
                "{elems} values are not whole {} blocks",
                kind.name()
            )));
        }
        Ok(values)
    }

    /// Reports the bytes read to `progress` as the tensors load.
    pub fn set_progress(&mut self, progress: Option<LoadProgress>) {
        self.total = self
            .content
            .tensor_infos
            .iter()
            .map(|(name, info)| self.bytes_of(name, info))
            .sum();
        self.progress = progress;
    }

    /// The GGUF header (metadata and tensor infos).
    pub fn content(&self) -> &gguf_file::Content {
        &self.content
    }

    /// A small 1-D tensor of `len` values (rope factors) as f32, read without `&mut`.
    pub(crate) fn vector_f32(&self, name: &str, len: usize) -> Result<Vec<f32>, ModelError> {
        let err = |msg: String| ModelError::Weights {
            file: self.path.clone(),
            msg,
        };
        let info = self
            .content
            .tensor_infos
            .get(name)
            .ok_or_else(|| err(format!("missing tensor \"{name}\"")))?;
        if info.shape.dims() != [len] {
            return Err(err(format!(
                "tensor \"{name}\" has shape {:?}, expected [{len}]",
                info.shape.dims()
            )));
        }
        if self.callm_only.contains_key(name) {
            return Err(err(format!(
                "tensor \"{name}\" is quantized; callm reads it only as f32"
            )));
        }
        info.read(
            &mut &self.file,
            self.content.tensor_data_offset,
            &Device::Cpu,
        )
        .and_then(|q| q.dequantize(&Device::Cpu))
        .and_then(|t| t.to_vec1::<f32>())
        .map_err(|e| err(format!("cannot read tensor \"{name}\": {e}")))
    }

    /// Loads a tensor by its GGUF name, checking its shape (GGUF lists dims innermost first;
    /// candle reverses them, so `shape` is given in `[out, in]` order).
    pub fn qtensor(&mut self, name: &str, shape: &[usize]) -> Result<QTensor, ModelError> {
        let path = self.path.clone();
        let err = |msg: String| ModelError::Weights {
            file: path.clone(),
            msg,
        };
        let info = self.content.tensor_infos.get(name).ok_or_else(|| {
            err(format!(
                "missing tensor \"{name}\" (expected shape {shape:?})"
            ))
        })?;
        if info.shape.dims() != shape {
            return Err(err(format!(
                "tensor \"{name}\" has shape {:?}, expected {shape:?}",
                info.shape.dims()
            )));
        }
        let bytes = self.bytes_of(name, info);
        let q = if let Some(kind) = self.callm_only_kind(name) {
            // candle has no such type: its values as floats, which every device and op takes.
            // f32 on the CPU (the kernels off: exact); f16 on a GPU, where a dequantized model
            // would otherwise take 8 bytes per 4-bit weight (f16 rounds `d · table[q]` by at
            // most 2^-11 of it, far below the 4-bit grid's steps).
            let offset = info.offset;
            let values = self.dequantized(name, kind, offset, shape.iter().product())?;
            let dtype = if self.device.is_cpu() {
                GgmlDType::F32
            } else {
                GgmlDType::F16
            };
            Tensor::from_vec(values, shape, &self.device)
                .and_then(|t| QTensor::quantize(&t, dtype))
                .map_err(|e| err(format!("cannot read tensor \"{name}\": {e}")))?
        } else {
            self.content
                .tensor(&mut self.file, name, &self.device)
                .map_err(|e| err(format!("cannot read tensor \"{name}\": {e}")))?
        };
        self.report(bytes);
        Ok(q)
    }

    /// Counts `bytes` more read and tells the progress reporter.
    fn report(&mut self, bytes: u64) {
        if let Some(p) = &self.progress {
            // A tensor read twice (tied embeddings) counts once toward the total.
            self.read = (self.read + bytes).min(self.total);
            (p.0)(self.read, self.total);
        }
    }

    /// An `[out, inp]` projection packed for callm's CPU kernels straight from the file's
    /// bytes; `None` (nothing read) where those kernels do not take it: another device, the
    /// kernels off, a block type they lack, or a shape that is not `[out, inp]`.
    fn packed_from_file(
        &mut self,
        name: &str,
        out: usize,
        inp: usize,
    ) -> Result<Option<PackedLinear>, ModelError> {
        use std::io::{Read, Seek, SeekFrom};
        let Some(info) = self.content.tensor_infos.get(name) else {
            return Ok(None);
        };
        let kind = self
            .callm_only_kind(name)
            .or_else(|| kernels::BlockKind::from_ggml(info.ggml_dtype));
        let kind = match kind {
            Some(k) if self.device.is_cpu() && kernels::enabled() => k,
            _ => return Ok(None),
        };
        if info.shape.dims() != [out, inp] {
            return Ok(None);
        }
        let bytes = self.bytes_of(name, info);
        let at = self.content.tensor_data_offset + info.offset;
        let err = |e: std::io::Error| ModelError::Weights {
            file: self.path.clone(),
            msg: format!("cannot read tensor \"{name}\": {e}"),
        };
        self.buf.resize(bytes as usize, 0);
        self.file.seek(SeekFrom::Start(at)).map_err(err)?;
        self.file.read_exact(&mut self.buf).map_err(err)?;
        let packed = PackedLinear::from_raw(kind, &self.buf, out, inp);
        self.report(bytes);
        Ok(packed)
    }
}

impl WeightSource for GgufSource {
    fn naming(&self) -> Naming {
        Naming::Gguf
    }

    fn contains(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }

    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.content
            .tensor_infos
            .get(name)
            .map(|t| t.shape.dims().to_vec())
    }

    fn origin(&self) -> String {
        self.path.clone()
    }

    fn linear(
        &mut self,
        name: &str,
        out: usize,
        inp: usize,
        bias: bool,
    ) -> Result<Linear, ModelError> {
        let path = self.path.clone();
        let werr = |e: candle_core::Error| ModelError::Weights {
            file: path.clone(),
            msg: format!("tensor \"{name}\": {e}"),
        };
        // Packed straight from the file where callm's kernels take it, else through candle.
        let weights: Result<PackedLinear, QTensor> = match self.packed_from_file(name, out, inp)? {
            Some(p) => Ok(p),
            None => {
                let q = self.qtensor(name, &[out, inp])?;
                Err(requantize_for_cpu(q, &self.device).map_err(werr)?)
            }
        };
        let b = if bias {
            let bname = name.replace(".weight", ".bias");
            let t = self.qtensor(&bname, &[out])?;
            Some(t.dequantize(&self.device).map_err(werr)?)
        } else {
            None
        };
        match weights {
            Ok(p) => packed_with_bias(p, b),
            Err(q) => quant_linear(Arc::new(q), b),
        }
        .map_err(werr)
    }

    fn vector(&mut self, name: &str, len: usize) -> Result<Tensor, ModelError> {
        let q = self.qtensor(name, &[len])?;
        q.dequantize(&self.device).map_err(|e| ModelError::Weights {
            file: self.path.clone(),
            msg: e.to_string(),
        })
    }

    fn embedding(
        &mut self,
        name: &str,
        vocab: usize,
        hidden: usize,
    ) -> Result<Embedding, ModelError> {
        if let Some(kind) = self.callm_only_kind(name) {
            return self.embedding_blocks(name, kind, vocab, hidden);
        }
        let q = self.qtensor(name, &[vocab, hidden])?;
        Ok(match q.dtype() {
            GgmlDType::F32 | GgmlDType::F16 => Embedding::Dense(
                q.dequantize(&self.device)
                    .map_err(|e| ModelError::Weights {
                        file: self.path.clone(),
                        msg: e.to_string(),
                    })?,
            ),
            _ => Embedding::Quant(Arc::new(q)),
        })
    }

    fn stacked_linears(
        &mut self,
        name: &str,
        experts: usize,
        out: usize,
        inp: usize,
    ) -> Result<Vec<Linear>, ModelError> {
        let path = self.path.clone();
        let werr = |e: candle_core::Error| ModelError::Weights {
            file: path.clone(),
            msg: format!("tensor \"{name}\": {e}"),
        };
        let all = self.qtensor(name, &[experts, out, inp])?;
        let dtype = all.dtype();
        let data = all.data().map_err(werr)?;
        // Each expert's `[out, in]` slice is whole blocks (rows are block-aligned), stored one
        // expert after another.
        let per_expert = data.len() / experts.max(1);
        if per_expert * experts != data.len() {
            return Err(werr(candle_core::Error::Msg(format!(
                "{} bytes do not split into {experts} experts",
                data.len()
            ))));
        }
        data.chunks_exact(per_expert)
            .map(|bytes| {
                let q = qtensor_from_ggml(dtype, bytes, vec![out, inp], &self.device)
                    .and_then(|q| requantize_for_cpu(q, &self.device))
                    .map_err(werr)?;
                quant_linear(Arc::new(q), None).map_err(werr)
            })
            .collect()
    }
}

/// Block types whose CPU dot product candle 0.11 only has as a scalar loop.
const SCALAR_ONLY_ON_CPU: &[GgmlDType] = &[GgmlDType::Q4_1, GgmlDType::Q5_0, GgmlDType::Q5_1];

/// On CPU, converts weights whose block type neither callm's packed kernels
/// ([`crate::kernels`]) nor a SIMD path of candle handle (Q5_1 always; Q4_1 and Q5_0 where the
/// packed kernels do not run) to Q8_0, which has one: 4-5x faster matmuls for a rounding error
/// far below the 4/5-bit quantization error already present. Set `CALLM_KEEP_QUANT=1` to keep
/// the file's block types.
fn requantize_for_cpu(q: QTensor, device: &Device) -> candle_core::Result<QTensor> {
    let native = kernels::enabled() && kernels::BlockKind::from_ggml(q.dtype()).is_some();
    if !device.is_cpu()
        || native
        || !SCALAR_ONLY_ON_CPU.contains(&q.dtype())
        || std::env::var_os("CALLM_KEEP_QUANT").is_some()
    {
        return Ok(q);
    }
    let dense = q.dequantize(device)?;
    QTensor::quantize(&dense, GgmlDType::Q8_0)
}
