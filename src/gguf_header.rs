//! A first, allocation-free pass over a GGUF file's header, before candle reads it.
//!
//! candle's `gguf_file::Content::read` trusts some values it reads: `general.alignment = 0`
//! divides by zero, a tensor whose dimensions multiply past `usize` wraps, offsets may point
//! outside the file or into another tensor, and a key or tensor name may repeat (the last one
//! silently wins). This pass walks the same bytes without keeping them and refuses such a file
//! with an error that names the key or tensor and its value; only then does candle read it.
//!
//! The pass also notes the tensors stored in a block type callm's kernels read but candle does
//! not know (IQ4_NL, IQ4_XS: [`HeaderFacts::callm_only`]), whose type id would make candle refuse
//! the whole file; [`read_content`] then hands candle the header with a stand-in id in their place.

use std::collections::HashSet;
use std::io::{BufReader, Cursor, Read, Seek};

use callm_kernels::BlockKind;
use candle_core::quantized::{gguf_file, GgmlDType};

/// Longest metadata key accepted (llama.cpp's keys are a few dozen bytes).
const MAX_KEY_BYTES: u64 = 1 << 16;
/// Longest tensor name accepted (llama.cpp's limit is 64 bytes).
const MAX_TENSOR_NAME_BYTES: u64 = 1 << 10;
/// Deepest nesting of arrays inside arrays.
const MAX_ARRAY_DEPTH: usize = 8;
/// Most dimensions of a tensor (ggml's `GGML_MAX_DIMS`).
const MAX_DIMS: u32 = 4;
/// The alignment of the tensor data when the file does not set `general.alignment`.
const DEFAULT_ALIGNMENT: u64 = 32;

/// What the scan learned about a well-formed header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderFacts {
    /// The file's length in bytes.
    pub file_len: u64,
    /// The alignment of the tensor data.
    pub alignment: u64,
    /// Where the tensor data starts.
    pub data_offset: u64,
    /// Number of tensors.
    pub tensors: u64,
    /// The first tensor stored in a block type neither candle nor callm's kernels read (its
    /// name and GGUF type id); its bytes are not checked, the file cannot be loaded.
    pub unsupported: Option<(String, u32)>,
    /// The tensors in a block type only callm's kernels read, checked like the others.
    pub callm_only: Vec<CallmOnly>,
}

/// A tensor stored in a block type candle does not know but callm's kernels read (IQ4_NL,
/// IQ4_XS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallmOnly {
    /// The tensor's name.
    pub name: String,
    /// Its block type.
    pub kind: BlockKind,
    /// Where its type id sits in the file.
    type_at: u64,
}

/// The candle type [`read_content`] lists a callm-only tensor under: one of the same block
/// geometry where candle has one (IQ4_NL: Q4_0's 18 bytes per 32 values), else one of the same
/// block length. Only its name and shape are read through it.
fn stand_in(kind: BlockKind) -> u32 {
    match kind {
        BlockKind::IQ4XS => 12,
        _ => 2,
    }
}

/// The ggml name of GGUF tensor type `id`, for the block types callm cannot load (`None` for
/// an id ggml never used).
pub fn unsupported_type_name(id: u32) -> Option<&'static str> {
    Some(match id {
        16 => "IQ2_XXS",
        17 => "IQ2_XS",
        18 => "IQ3_XXS",
        19 => "IQ1_S",
        20 => "IQ4_NL",
        21 => "IQ3_S",
        22 => "IQ2_S",
        23 => "IQ4_XS",
        24 => "I8",
        25 => "I16",
        26 => "I32",
        27 => "I64",
        28 => "F64",
        29 => "IQ1_M",
        31 => "Q4_0_4_4",
        32 => "Q4_0_4_8",
        33 => "Q4_0_8_8",
        34 => "TQ1_0",
        35 => "TQ2_0",
        39 => "MXFP4",
        _ => return None,
    })
}

/// A reader that knows its position and how much of the file is left.
struct Scan<R> {
    r: BufReader<R>,
    pos: u64,
    len: u64,
    /// Width of a length prefix: 4 bytes in GGUF v1, 8 after.
    wide: bool,
}

/// GGUF value types, as numbered by the format.
const T_STRING: u32 = 8;
const T_ARRAY: u32 = 9;

fn fixed_size(t: u32) -> Option<u64> {
    match t {
        0 | 1 | 7 => Some(1),
        2 | 3 => Some(2),
        4..=6 => Some(4),
        10..=12 => Some(8),
        _ => None,
    }
}

impl<R: Read + Seek> Scan<R> {
    fn left(&self) -> u64 {
        self.len.saturating_sub(self.pos)
    }

    fn bytes<const N: usize>(&mut self, what: &str) -> Result<[u8; N], String> {
        let mut b = [0u8; N];
        self.r
            .read_exact(&mut b)
            .map_err(|_| format!("the file ends inside {what} (at byte {})", self.pos))?;
        self.pos += N as u64;
        Ok(b)
    }

    fn u32(&mut self, what: &str) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.bytes::<4>(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.bytes::<8>(what)?))
    }

    fn len_prefix(&mut self, what: &str) -> Result<u64, String> {
        if self.wide {
            self.u64(what)
        } else {
            self.u32(what).map(u64::from)
        }
    }

    fn skip(&mut self, n: u64, what: &str) -> Result<(), String> {
        if n > self.left() {
            return Err(format!(
                "{what} needs {n} bytes at byte {}, but the file has {} left",
                self.pos,
                self.left()
            ));
        }
        let n_i64 = i64::try_from(n).map_err(|_| format!("{what}: {n} bytes"))?;
        self.r
            .seek_relative(n_i64)
            .map_err(|e| format!("{what}: {e}"))?;
        self.pos += n;
        Ok(())
    }

    /// A string of at most `max` bytes, read into memory.
    fn string(&mut self, max: u64, what: &str) -> Result<String, String> {
        let n = self.len_prefix(what)?;
        if n > max || n > self.left() {
            return Err(format!(
                "{what} is declared {n} bytes long (limit {max}, {} bytes left in the file)",
                self.left()
            ));
        }
        let mut v = vec![0u8; n as usize];
        self.r
            .read_exact(&mut v)
            .map_err(|_| format!("the file ends inside {what}"))?;
        self.pos += n;
        Ok(String::from_utf8_lossy(&v).into_owned())
    }

    /// Skips a value of type `t`; returns it when it is an integer (for `general.alignment`).
    fn value(&mut self, t: u32, key: &str, depth: usize) -> Result<Option<i128>, String> {
        let what = || format!("the value of {key}");
        if let Some(n) = fixed_size(t) {
            let v: i128 = match t {
                0 => i128::from(self.bytes::<1>(&what())?[0]),
                1 => i128::from(i8::from_le_bytes(self.bytes::<1>(&what())?)),
                2 => i128::from(u16::from_le_bytes(self.bytes::<2>(&what())?)),
                3 => i128::from(i16::from_le_bytes(self.bytes::<2>(&what())?)),
                4 => i128::from(self.u32(&what())?),
                5 => i128::from(i32::from_le_bytes(self.bytes::<4>(&what())?)),
                10 => i128::from(self.u64(&what())?),
                11 => i128::from(i64::from_le_bytes(self.bytes::<8>(&what())?)),
                7 => {
                    let b = self.bytes::<1>(&what())?[0];
                    if b > 1 {
                        return Err(format!("{key}: a bool stored as {b}"));
                    }
                    return Ok(None);
                }
                _ => {
                    self.skip(n, &what())?;
                    return Ok(None);
                }
            };
            return Ok(Some(v));
        }
        match t {
            T_STRING => {
                let n = self.len_prefix(&what())?;
                self.skip(n, &format!("the string value of {key}"))?;
            }
            T_ARRAY => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(format!(
                        "{key}: arrays nested more than {MAX_ARRAY_DEPTH} deep"
                    ));
                }
                let et = self.u32(&what())?;
                let count = self.len_prefix(&what())?;
                let min = match et {
                    T_STRING => {
                        if self.wide {
                            8
                        } else {
                            4
                        }
                    }
                    T_ARRAY => 12,
                    other => fixed_size(other)
                        .ok_or_else(|| format!("{key}: an array of unknown value type {other}"))?,
                };
                if count.saturating_mul(min) > self.left() {
                    return Err(format!(
                        "{key}: an array of {count} elements does not fit in the {} bytes left in the file",
                        self.left()
                    ));
                }
                match fixed_size(et) {
                    Some(size) => self.skip(count * size, &what())?,
                    None => {
                        for _ in 0..count {
                            self.value(et, key, depth + 1)?;
                        }
                    }
                }
            }
            other => return Err(format!("{key}: unknown value type {other}")),
        }
        Ok(None)
    }
}

/// The block type numbered `id` in a GGUF tensor info (candle's supported set).
fn dtype_of(id: u32) -> Option<GgmlDType> {
    Some(match id {
        0 => GgmlDType::F32,
        1 => GgmlDType::F16,
        2 => GgmlDType::Q4_0,
        3 => GgmlDType::Q4_1,
        6 => GgmlDType::Q5_0,
        7 => GgmlDType::Q5_1,
        8 => GgmlDType::Q8_0,
        9 => GgmlDType::Q8_1,
        10 => GgmlDType::Q2K,
        11 => GgmlDType::Q3K,
        12 => GgmlDType::Q4K,
        13 => GgmlDType::Q5K,
        14 => GgmlDType::Q6K,
        15 => GgmlDType::Q8K,
        30 => GgmlDType::BF16,
        _ => return None,
    })
}

/// One tensor's extent in the data section.
struct Extent {
    name: String,
    offset: u64,
    bytes: u64,
}

/// Checks the header of the GGUF file `r` (read from its start): magic and version, counts
/// that fit in the file, every key once with a known value type and a length inside the file,
/// `general.alignment` a power of two, tensor names unique, dimensions that multiply without
/// overflow into whole blocks per row, and every tensor's data aligned, inside the file and
/// apart from the others. Errors name the key or tensor and the value.
pub fn check<R: Read + Seek>(mut r: R) -> Result<HeaderFacts, String> {
    let len = r
        .seek(std::io::SeekFrom::End(0))
        .and_then(|_| r.stream_position())
        .map_err(|e| e.to_string())?;
    r.rewind().map_err(|e| e.to_string())?;
    let mut s = Scan {
        r: BufReader::new(r),
        pos: 0,
        len,
        wide: true,
    };
    let magic = s.bytes::<4>("the magic number")?;
    if &magic != b"GGUF" {
        return Err(format!("not a GGUF file (magic {magic:02x?})"));
    }
    let version = s.u32("the version")?;
    s.wide = match version {
        1 => false,
        2 | 3 => true,
        v => return Err(format!("unsupported GGUF version {v}")),
    };
    let n_tensors = s.len_prefix("the tensor count")?;
    let n_kv = s.len_prefix("the metadata count")?;
    // A key-value pair takes at least 13 bytes, a tensor info at least 24.
    if n_kv
        .saturating_mul(13)
        .saturating_add(n_tensors.saturating_mul(24))
        > s.left()
    {
        return Err(format!(
            "the header declares {n_tensors} tensors and {n_kv} metadata entries, more than the {len}-byte file holds"
        ));
    }
    let mut keys = HashSet::new();
    let mut alignment = DEFAULT_ALIGNMENT;
    for i in 0..n_kv {
        let key = s.string(MAX_KEY_BYTES, &format!("metadata key #{i}"))?;
        if !keys.insert(key.clone()) {
            return Err(format!("metadata key {key} appears twice"));
        }
        let t = s.u32(&format!("the type of {key}"))?;
        let v = s.value(t, &key, 0)?;
        if key == "general.alignment" {
            // candle reads 8-, 16- and 32-bit integers here (llama.cpp: u32 only).
            let int_type = matches!(t, 0..=5);
            alignment = match v {
                Some(a) if int_type && a > 0 && (a as u64).is_power_of_two() => a as u64,
                Some(a) if int_type => {
                    return Err(format!(
                        "general.alignment = {a}: must be a positive power of two"
                    ))
                }
                _ => return Err(format!("general.alignment has value type {t}, not a u32")),
            };
        }
    }
    let mut names = HashSet::new();
    let mut extents = Vec::new();
    let mut unsupported = None;
    let mut callm_only = Vec::new();
    for i in 0..n_tensors {
        let name = s.string(MAX_TENSOR_NAME_BYTES, &format!("the name of tensor #{i}"))?;
        if !names.insert(name.clone()) {
            return Err(format!("tensor {name} appears twice"));
        }
        let n_dims = s.u32(&format!("the rank of tensor {name}"))?;
        if n_dims == 0 || n_dims > MAX_DIMS {
            return Err(format!(
                "tensor {name} has {n_dims} dimensions (1 to {MAX_DIMS})"
            ));
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            dims.push(s.len_prefix(&format!("the shape of tensor {name}"))?);
        }
        let type_at = s.pos;
        let id = s.u32(&format!("the type of tensor {name}"))?;
        let offset = s.u64(&format!("the offset of tensor {name}"))?;
        let geometry = match (dtype_of(id), BlockKind::from_gguf_type(id)) {
            (Some(dtype), _) => Some((
                format!("{dtype:?}"),
                dtype.block_size() as u64,
                dtype.type_size() as u64,
            )),
            (None, Some(kind)) => {
                callm_only.push(CallmOnly {
                    name: name.clone(),
                    kind,
                    type_at,
                });
                Some((
                    kind.name().to_string(),
                    kind.block_values() as u64,
                    kind.block_bytes() as u64,
                ))
            }
            (None, None) => None,
        };
        let Some((type_name, block, block_bytes)) = geometry else {
            // Its size is unknown here: the rest of the header is still checked, so that a
            // corrupt file says so rather than naming a type.
            unsupported.get_or_insert((name, id));
            continue;
        };
        let elems = dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .filter(|&n| n > 0 && n <= i64::MAX as u64)
            .ok_or_else(|| format!("tensor {name} has shape {dims:?}: empty or too large"))?;
        if dims[0] % block != 0 {
            return Err(format!(
                "tensor {name} has rows of {} values, not whole {type_name} blocks of {block}",
                dims[0]
            ));
        }
        let bytes = (elems / block)
            .checked_mul(block_bytes)
            .ok_or_else(|| format!("tensor {name} has shape {dims:?}: too large"))?;
        if offset % alignment != 0 {
            return Err(format!(
                "tensor {name} starts at offset {offset}, not a multiple of the alignment {alignment}"
            ));
        }
        extents.push(Extent {
            name,
            offset,
            bytes,
        });
    }
    let data_offset = s
        .pos
        .checked_next_multiple_of(alignment)
        .ok_or("the tensor data offset overflows")?;
    let data_len = len.saturating_sub(data_offset);
    extents.sort_by_key(|e| e.offset);
    let mut prev: Option<&Extent> = None;
    for e in &extents {
        let end = e.offset.checked_add(e.bytes).filter(|&end| end <= data_len);
        if end.is_none() {
            return Err(format!(
                "file is truncated or corrupt: tensor {} needs {} bytes at offset {} of a {data_len}-byte data section",
                e.name, e.bytes, e.offset
            ));
        }
        if let Some(p) = prev {
            if p.offset + p.bytes > e.offset {
                return Err(format!(
                    "tensors {} and {} overlap (offsets {} and {})",
                    p.name, e.name, p.offset, e.offset
                ));
            }
        }
        prev = Some(e);
    }
    Ok(HeaderFacts {
        file_len: len,
        alignment,
        data_offset,
        tensors: n_tensors,
        unsupported,
        callm_only,
    })
}

/// Reads the header of `r`, checked by [`check`] into `facts`, with candle: its metadata and
/// tensor infos, each tensor of [`HeaderFacts::callm_only`] listed under a stand-in candle type
/// (its true kind is the one in `facts`; never read its data through candle).
pub fn read_content<R: Read + Seek>(
    r: &mut R,
    facts: &HeaderFacts,
) -> Result<gguf_file::Content, String> {
    r.rewind().map_err(|e| e.to_string())?;
    if facts.callm_only.is_empty() {
        // Buffered: candle reads the header a few bytes at a time (a length, then a string,
        // for each of a vocabulary's 150,000 tokens and merges), a system call each unbuffered.
        return gguf_file::Content::read(&mut BufReader::new(r)).map_err(|e| e.to_string());
    }
    // The header (everything before the tensor data) in memory, with the stand-in ids.
    let len = facts.data_offset.min(facts.file_len);
    let mut head = Vec::new();
    r.take(len)
        .read_to_end(&mut head)
        .map_err(|e| e.to_string())?;
    for t in &facts.callm_only {
        let at = t.type_at as usize;
        let field = head
            .get_mut(at..at + 4)
            .ok_or_else(|| format!("the type of tensor {} lies outside the header", t.name))?;
        field.copy_from_slice(&stand_in(t.kind).to_le_bytes());
    }
    gguf_file::Content::read(&mut Cursor::new(head)).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::gguf_file::{self, Value};
    use candle_core::quantized::QTensor;
    use candle_core::{Device, Tensor};
    use std::io::Cursor;

    fn file(meta: &[(&str, Value)], tensors: &[(&str, usize)]) -> Vec<u8> {
        let qs: Vec<(&str, QTensor)> = tensors
            .iter()
            .map(|&(n, len)| {
                let t = Tensor::zeros(len, candle_core::DType::F32, &Device::Cpu).unwrap();
                (n, QTensor::quantize(&t, GgmlDType::F32).unwrap())
            })
            .collect();
        let md: Vec<(&str, &Value)> = meta.iter().map(|(k, v)| (*k, v)).collect();
        let ts: Vec<(&str, &QTensor)> = qs.iter().map(|(k, v)| (*k, v)).collect();
        let mut out = Cursor::new(Vec::new());
        gguf_file::write(&mut out, &md, &ts).unwrap();
        out.into_inner()
    }

    #[test]
    fn a_valid_file_passes_and_candle_agrees_on_the_data_offset() {
        let bytes = file(
            &[("general.architecture", Value::String("llama".into()))],
            &[("a", 8), ("b", 16)],
        );
        let facts = check(Cursor::new(&bytes)).unwrap();
        let content = gguf_file::Content::read(&mut Cursor::new(&bytes)).unwrap();
        assert_eq!(facts.data_offset, content.tensor_data_offset);
        assert_eq!((facts.tensors, facts.alignment), (2, 32));
    }

    #[test]
    fn zero_alignment_truncation_and_overlaps_are_refused() {
        let zero = file(&[("general.alignment", Value::U32(0))], &[("a", 8)]);
        let e = check(Cursor::new(&zero)).unwrap_err();
        assert!(e.contains("general.alignment = 0"), "{e}");
        let odd = file(&[("general.alignment", Value::U32(24))], &[("a", 8)]);
        assert!(check(Cursor::new(&odd))
            .unwrap_err()
            .contains("power of two"));
        let ok = file(&[], &[("a", 8)]);
        let e = check(Cursor::new(&ok[..ok.len() - 4])).unwrap_err();
        assert!(e.contains("tensor a") && e.contains("truncated"), "{e}");
        let dup = file(&[("k", Value::U32(1)), ("k", Value::U32(2))], &[("a", 8)]);
        assert!(check(Cursor::new(&dup))
            .unwrap_err()
            .contains("k appears twice"));
    }
}
