//! [`SafetensorsSource`]: dense weights from safetensors files (memory-mapped) or PyTorch
//! `.bin` checkpoints, behind [`WeightSource`].

use std::cell::Cell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use super::weights::{dense_linear, Embedding, Linear, LoadProgress, Naming, WeightSource};
use super::ModelError;

/// Dense weights from one or more `.safetensors` files (memory-mapped) or PyTorch `.bin`
/// checkpoints.
pub struct SafetensorsSource {
    vb: candle_nn::VarBuilder<'static>,
    files: String,
    shapes: HashMap<String, Vec<usize>>,
    /// Each tensor's bytes in the files (for the progress reports).
    sizes: HashMap<String, u64>,
    progress: Option<LoadProgress>,
    /// Bytes of tensors loaded so far (tensors are loaded through `&self`), and in all.
    read: Cell<u64>,
    total: u64,
}

impl SafetensorsSource {
    /// Memory-maps the files; tensors are converted to `dtype` on `device` as they load.
    pub fn open(files: &[PathBuf], dtype: DType, device: &Device) -> Result<Self, ModelError> {
        let (mut shapes, mut sizes) = (HashMap::new(), HashMap::new());
        for f in files {
            let header = check_safetensors_header(f)?;
            shapes.extend(header.shapes);
            sizes.extend(header.sizes);
        }
        // SAFETY: the files are treated as immutable for the lifetime of the mapping; callm never
        // writes to them, and the headers were validated above.
        let vb = unsafe { candle_nn::VarBuilder::from_mmaped_safetensors(files, dtype, device) }
            .map_err(|e| ModelError::Weights {
                file: join_paths(files),
                msg: e.to_string(),
            })?;
        Ok(SafetensorsSource {
            vb,
            files: join_paths(files),
            shapes,
            sizes,
            progress: None,
            read: Cell::new(0),
            total: 0,
        })
    }

    /// Reads PyTorch `pytorch_model*.bin` checkpoints (the zip format `torch.save` writes since
    /// torch 1.6) into memory; tensors are converted to `dtype` on `device` as they load.
    pub fn open_pth(files: &[PathBuf], dtype: DType, device: &Device) -> Result<Self, ModelError> {
        let mut tensors = HashMap::new();
        for f in files {
            let err = |e: candle_core::Error| ModelError::Weights {
                file: f.display().to_string(),
                msg: format!(
                    "cannot read this PyTorch checkpoint ({e}); convert it to safetensors \
                     (e.g. with transformers: model.save_pretrained(dir, safe_serialization=True))"
                ),
            };
            let pth = candle_core::pickle::PthTensors::new(f, None).map_err(err)?;
            let mut names: Vec<String> = pth.tensor_infos().keys().cloned().collect();
            names.sort();
            for name in names {
                if let Some(t) = pth.get(&name).map_err(err)? {
                    tensors.insert(name, t);
                }
            }
        }
        let shapes = tensors
            .iter()
            .map(|(k, t): (&String, &Tensor)| (k.clone(), t.dims().to_vec()))
            .collect();
        let sizes = tensors
            .iter()
            .map(|(k, t)| {
                (
                    k.clone(),
                    (t.elem_count() * t.dtype().size_in_bytes()) as u64,
                )
            })
            .collect();
        Ok(SafetensorsSource {
            vb: candle_nn::VarBuilder::from_tensors(tensors, dtype, device),
            files: join_paths(files),
            shapes,
            sizes,
            progress: None,
            read: Cell::new(0),
            total: 0,
        })
    }

    /// Reports the bytes of tensors loaded to `progress` as they load (converted to the
    /// model's type on its device: for a large model on the CPU, most of the load).
    pub fn with_progress(mut self, progress: Option<LoadProgress>) -> Self {
        self.total = self.sizes.values().sum();
        self.progress = progress;
        self
    }

    fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor, ModelError> {
        let t = self.vb.get(shape, name).map_err(|e| ModelError::Weights {
            file: self.files.clone(),
            msg: format!("tensor \"{name}\" (expected shape {shape:?}): {e}"),
        })?;
        if let Some(p) = &self.progress {
            // A tensor loaded twice (tied embeddings) counts once toward the total.
            let size = self.sizes.get(name).copied().unwrap_or(0);
            let read = (self.read.get() + size).min(self.total);
            self.read.set(read);
            (p.0)(read, self.total);
        }
        Ok(t)
    }
}

fn join_paths(files: &[PathBuf]) -> String {
    files
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a safetensors header lists: each tensor's shape and bytes.
struct Header {
    shapes: HashMap<String, Vec<usize>>,
    sizes: HashMap<String, u64>,
}

/// Checks that a safetensors file is at least as long as its header says, so a truncated
/// download gives a clear error instead of a fault when the mapping is read; returns the
/// shapes and sizes the header lists.
fn check_safetensors_header(path: &Path) -> Result<Header, ModelError> {
    use std::io::Read;
    let err = |msg: String| ModelError::Weights {
        file: path.display().to_string(),
        msg,
    };
    let mut f = std::fs::File::open(path).map_err(|e| err(format!("cannot open: {e}")))?;
    let len = f.metadata().map_err(|e| err(e.to_string()))?.len();
    let mut n = [0u8; 8];
    f.read_exact(&mut n)
        .map_err(|_| err("too short to be a safetensors file (no header)".into()))?;
    let header_len = u64::from_le_bytes(n);
    if header_len > len.saturating_sub(8) || header_len > 100_000_000 {
        return Err(err(format!(
            "corrupt safetensors header (header length {header_len}, file length {len})"
        )));
    }
    let mut header = vec![0u8; header_len as usize];
    f.read_exact(&mut header).map_err(|e| err(e.to_string()))?;
    let v: serde_json::Value = serde_json::from_slice(&header)
        .map_err(|e| err(format!("safetensors header is not JSON: {e}")))?;
    let mut end = 0u64;
    let (mut shapes, mut sizes) = (HashMap::new(), HashMap::new());
    if let Some(obj) = v.as_object() {
        for (k, t) in obj {
            if k == "__metadata__" {
                continue;
            }
            if let Some(dims) = t.get("shape").and_then(|s| s.as_array()) {
                let dims = dims.iter().filter_map(|d| d.as_u64().map(|d| d as usize));
                shapes.insert(k.clone(), dims.collect());
            }
            let offset = |i: usize| {
                t.get("data_offsets")
                    .and_then(|o| o.get(i))
                    .and_then(|x| x.as_u64())
            };
            if let Some(e) = offset(1) {
                end = end.max(e);
                sizes.insert(k.clone(), e.saturating_sub(offset(0).unwrap_or(e)));
            }
        }
    }
    let need = 8 + header_len + end;
    if len < need {
        return Err(err(format!(
            "file is truncated: {len} bytes, header describes {need} bytes"
        )));
    }
    Ok(Header { shapes, sizes })
}

impl WeightSource for SafetensorsSource {
    fn naming(&self) -> Naming {
        Naming::HuggingFace
    }

    fn contains(&self, name: &str) -> bool {
        self.vb.contains_tensor(name)
    }

    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.shapes.get(name).cloned()
    }

    fn origin(&self) -> String {
        self.files.clone()
    }

    fn linear(
        &mut self,
        name: &str,
        out: usize,
        inp: usize,
        bias: bool,
    ) -> Result<Linear, ModelError> {
        let weight = self.get(name, &[out, inp])?;
        let b = if bias {
            let bname = name.replace(".weight", ".bias");
            Some(self.get(&bname, &[out])?)
        } else {
            None
        };
        Ok(dense_linear(weight, b))
    }

    fn vector(&mut self, name: &str, len: usize) -> Result<Tensor, ModelError> {
        self.get(name, &[len])
    }

    fn embedding(
        &mut self,
        name: &str,
        vocab: usize,
        hidden: usize,
    ) -> Result<Embedding, ModelError> {
        Ok(Embedding::Dense(self.get(name, &[vocab, hidden])?))
    }

    fn stacked_linears(
        &mut self,
        name: &str,
        experts: usize,
        out: usize,
        inp: usize,
    ) -> Result<Vec<Linear>, ModelError> {
        let all = self.get(name, &[experts, out, inp])?;
        (0..experts)
            .map(|e| {
                let w = all.get(e).map_err(ModelError::Candle)?;
                Ok(dense_linear(w, None))
            })
            .collect()
    }
}
