//! [`GgufSource`]: quantized weights from a GGUF file, behind [`WeightSource`]: projections
//! packed for callm's kernels straight from the file's bytes, candle's `QTensor` otherwise, and
//! the block types only callm's kernels read (IQ4_NL, IQ4_XS).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use candle_core::quantized::ggml_file::qtensor_from_ggml;
use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{Device, Tensor};

use super::weights::{
    packed_with_bias, quant_linear, Embedding, Linear, LoadProgress, Naming, WeightSource,
};
use super::ModelError;
use crate::kernels::{self, PackedLinear};

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

    /// `experts` projections `[out, inp]` stacked in a callm-only block type: each expert's
    /// slice of the file's blocks packed for callm's kernels, or dequantized where they do not
    /// run (never the whole stack dequantized at once).
    fn stacked_callm_only(
        &mut self,
        name: &str,
        kind: kernels::BlockKind,
        [experts, out, inp]: [usize; 3],
    ) -> Result<Vec<Linear>, ModelError> {
        let path = self.path.clone();
        let err = |msg: String| ModelError::Weights {
            file: path.clone(),
            msg: format!("tensor \"{name}\": {msg}"),
        };
        let (offset, bytes) = self.located(name, &[experts, out, inp])?;
        let raw = self.read_raw(name, offset, bytes)?;
        self.report(bytes);
        // Rows are whole blocks (checked with the header), so each expert is a whole slice.
        let per_expert = raw.len() / experts.max(1);
        let packed = self.device.is_cpu() && kernels::enabled();
        raw.chunks_exact(per_expert.max(1))
            .map(|blocks| {
                if packed {
                    if let Some(p) = PackedLinear::from_raw(kind, blocks, out, inp) {
                        return packed_with_bias(p, None).map_err(|e| err(e.to_string()));
                    }
                }
                let q = self.callm_only_qtensor(name, kind, blocks, &[out, inp])?;
                quant_linear(Arc::new(q), None).map_err(|e| err(e.to_string()))
            })
            .collect()
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
        let (offset, bytes) = self.located(name, &[vocab, hidden])?;
        let data = self.read_raw(name, offset, bytes)?;
        self.report(bytes);
        Embedding::blocks(kind, data, hidden, &self.device).ok_or_else(|| ModelError::Weights {
            file: self.path.clone(),
            msg: format!("tensor \"{name}\": rows are not whole blocks"),
        })
    }

    /// Tensor `name`'s offset in the data section and its bytes, once its shape is checked to
    /// be `shape` (`[out, in]` order).
    fn located(&self, name: &str, shape: &[usize]) -> Result<(u64, u64), ModelError> {
        let err = |msg: String| ModelError::Weights {
            file: self.path.clone(),
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
        Ok((info.offset, self.bytes_of(name, info)))
    }

    /// `bytes` of a tensor's data, at `offset` in the data section.
    fn read_raw(&mut self, name: &str, offset: u64, bytes: u64) -> Result<Vec<u8>, ModelError> {
        use std::io::{Read, Seek, SeekFrom};
        let mut raw = vec![0u8; bytes as usize];
        let at = self.content.tensor_data_offset + offset;
        self.file
            .seek(SeekFrom::Start(at))
            .and_then(|_| self.file.read_exact(&mut raw))
            .map_err(|e| ModelError::Weights {
                file: self.path.clone(),
                msg: format!("cannot read tensor \"{name}\": {e}"),
            })?;
        Ok(raw)
    }

    /// A callm-only tensor's blocks (`raw`, of `shape`) dequantized by callm's kernels crate,
    /// as a candle tensor of floats, which every device and op takes: for what the packed
    /// kernels do not take (another device, the kernels off, a vector). f32 on the CPU (the
    /// kernels off: exact); f16 on a GPU, where a dequantized model would otherwise take 8
    /// bytes per 4-bit weight (f16 rounds `d · table[q]` by at most 2^-11 of it, far below
    /// the 4-bit grid's steps).
    fn callm_only_qtensor(
        &self,
        name: &str,
        kind: kernels::BlockKind,
        raw: &[u8],
        shape: &[usize],
    ) -> Result<QTensor, ModelError> {
        let err = |msg: String| ModelError::Weights {
            file: self.path.clone(),
            msg: format!("cannot read tensor \"{name}\": {msg}"),
        };
        let mut values = vec![0f32; shape.iter().product()];
        if !kernels::dequantize(kind, raw, &mut values) {
            return Err(err(format!(
                "{shape:?} is not whole {} blocks",
                kind.name()
            )));
        }
        let dtype = if self.device.is_cpu() {
            GgmlDType::F32
        } else {
            GgmlDType::F16
        };
        Tensor::from_vec(values, shape, &self.device)
            .and_then(|t| QTensor::quantize(&t, dtype))
            .map_err(|e| err(e.to_string()))
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
        let (offset, bytes) = self.located(name, shape)?;
        let q = if let Some(kind) = self.callm_only_kind(name) {
            let raw = self.read_raw(name, offset, bytes)?;
            self.callm_only_qtensor(name, kind, &raw, shape)?
        } else {
            self.content
                .tensor(&mut self.file, name, &self.device)
                .map_err(|e| ModelError::Weights {
                    file: self.path.clone(),
                    msg: format!("cannot read tensor \"{name}\": {e}"),
                })?
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
        if let Some(kind) = self.callm_only_kind(name) {
            return self.stacked_callm_only(name, kind, [experts, out, inp]);
        }
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
