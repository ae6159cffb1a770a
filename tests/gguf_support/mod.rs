//! A GGUF writer for tests: metadata and tensor tables laid out byte by byte from lists a test
//! can edit (any type id, offset or shape, valid or not), and the byte-level vocabulary and
//! ChatML template the tiny test models use. Shared by `model_hostile.rs` (mutated files) and
//! `gguf_iq.rs` (block types candle's writer cannot write).

#![allow(dead_code)] // each test binary uses part of it

use std::path::Path;

/// GGUF value type ids.
pub const U32: u32 = 4;
pub const I32: u32 = 5;
pub const F32: u32 = 6;
pub const BOOL: u32 = 7;
pub const STR: u32 = 8;
pub const ARR: u32 = 9;
pub const U64: u32 = 10;

/// A metadata value as its type id and encoded bytes (so a mutation can write anything).
#[derive(Clone)]
pub struct Val(pub u32, pub Vec<u8>);

pub fn u32v(x: u32) -> Val {
    Val(U32, x.to_le_bytes().to_vec())
}
pub fn f32v(x: f32) -> Val {
    Val(F32, x.to_le_bytes().to_vec())
}
pub fn str_bytes(s: &str) -> Vec<u8> {
    let mut b = (s.len() as u64).to_le_bytes().to_vec();
    b.extend_from_slice(s.as_bytes());
    b
}
pub fn strv(s: &str) -> Val {
    Val(STR, str_bytes(s))
}
pub fn arr(elem: u32, items: &[Vec<u8>]) -> Val {
    let mut b = elem.to_le_bytes().to_vec();
    b.extend_from_slice(&(items.len() as u64).to_le_bytes());
    for i in items {
        b.extend_from_slice(i);
    }
    Val(ARR, b)
}

pub struct TensorEntry {
    pub name: String,
    /// ggml order: innermost first.
    pub dims: Vec<u64>,
    pub dtype: u32,
    pub offset: u64,
    pub data: Vec<u8>,
    /// Where the data is written (the offset as laid out, before any mutation).
    pub data_at: u64,
}

/// A GGUF file as lists a mutation can edit.
pub struct Gguf {
    pub meta: Vec<(String, Val)>,
    pub tensors: Vec<TensorEntry>,
    /// Bytes cut from the end.
    pub truncate: usize,
}

impl Gguf {
    pub fn set(&mut self, key: &str, v: Val) {
        match self.meta.iter_mut().find(|(k, _)| k == key) {
            Some(e) => e.1 = v,
            None => self.meta.push((key.to_string(), v)),
        }
    }

    pub fn tensor(&mut self, name: &str) -> &mut TensorEntry {
        self.tensors.iter_mut().find(|t| t.name == name).unwrap()
    }

    pub fn bytes(&self) -> Vec<u8> {
        let mut b = b"GGUF".to_vec();
        b.extend_from_slice(&3u32.to_le_bytes());
        b.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        b.extend_from_slice(&(self.meta.len() as u64).to_le_bytes());
        for (k, Val(t, v)) in &self.meta {
            b.extend_from_slice(&str_bytes(k));
            b.extend_from_slice(&t.to_le_bytes());
            b.extend_from_slice(v);
        }
        for t in &self.tensors {
            b.extend_from_slice(&str_bytes(&t.name));
            b.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                b.extend_from_slice(&d.to_le_bytes());
            }
            b.extend_from_slice(&t.dtype.to_le_bytes());
            b.extend_from_slice(&t.offset.to_le_bytes());
        }
        b.resize(b.len().next_multiple_of(32), 0);
        let start = b.len();
        for t in &self.tensors {
            b.resize(start + t.data_at as usize, 0);
            b.extend_from_slice(&t.data);
        }
        b.truncate(b.len().saturating_sub(self.truncate));
        b
    }

    pub fn write(&self, path: &Path) {
        std::fs::write(path, self.bytes()).unwrap();
    }
}

/// GPT-2's byte-to-character map (printable bytes stand for themselves).
pub fn byte_char(b: u8) -> char {
    let printable = |b: u8| (33..=126).contains(&b) || (161..=172).contains(&b) || b >= 174;
    if printable(b) {
        return b as char;
    }
    let n = (0..b).filter(|&x| !printable(x)).count() as u32;
    char::from_u32(256 + n).unwrap()
}

pub const TEMPLATE: &str = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

/// The tokenizer of the tiny test models: a byte-level vocabulary of exactly 512 tokens (the
/// 256 bytes, `<|im_start|>` 256, `<|im_end|>` 257 the end of a turn, padding), no merges, and
/// the ChatML [`TEMPLATE`].
pub fn tokenizer_meta() -> Vec<(String, Val)> {
    let mut tokens: Vec<String> = (0..=255u8).map(|b| byte_char(b).to_string()).collect();
    tokens.push("<|im_start|>".into());
    tokens.push("<|im_end|>".into());
    while tokens.len() < 512 {
        tokens.push(format!("<pad{}>", tokens.len()));
    }
    let types: Vec<Vec<u8>> = (0..512)
        .map(|i: i32| (if i < 256 { 1i32 } else { 3 }).to_le_bytes().to_vec())
        .collect();
    vec![
        ("tokenizer.ggml.model".into(), strv("gpt2")),
        ("tokenizer.ggml.pre".into(), strv("qwen2")),
        (
            "tokenizer.ggml.tokens".into(),
            arr(
                STR,
                &tokens.iter().map(|t| str_bytes(t)).collect::<Vec<_>>(),
            ),
        ),
        ("tokenizer.ggml.token_type".into(), arr(I32, &types)),
        ("tokenizer.ggml.merges".into(), arr(STR, &[])),
        ("tokenizer.ggml.eos_token_id".into(), u32v(257)),
        ("tokenizer.chat_template".into(), strv(TEMPLATE)),
    ]
}
