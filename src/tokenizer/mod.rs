//! Text <-> token ids: loading `tokenizer.json` files, GGUF vocabularies or sentencepiece
//! `tokenizer.model` files, with special-token facts.

pub mod gguf;
pub mod pre;
pub mod spm;
pub mod stream;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::Content;

pub use stream::DecodeStream;

/// File names a checkpoint ships its SentencePiece model under, in order of preference.
pub const SPM_FILES: [&str; 2] = ["tokenizer.model", "spiece.model"];

/// Errors raised while loading or running a tokenizer.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file that failed.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// A file was read but is not a valid Hugging Face `tokenizer.json`.
    #[error("{path} is not a valid Hugging Face tokenizer.json (expected the JSON object written by `tokenizers`, with \"model\", \"added_tokens\", ...): {message}")]
    InvalidTokenizerJson {
        /// The offending file.
        path: PathBuf,
        /// What the parser reported.
        message: String,
    },
    /// A GGUF file could not be parsed.
    #[error("{path} is not a readable GGUF file: {message}")]
    InvalidGguf {
        /// The offending file.
        path: PathBuf,
        /// What the reader reported.
        message: String,
    },
    /// A required `tokenizer.ggml.*` key is absent.
    #[error(
        "GGUF metadata has no `{key}` (expected {expected}); the file carries no usable tokenizer"
    )]
    MissingMetadata {
        /// The missing key.
        key: String,
        /// What the key should hold.
        expected: &'static str,
    },
    /// A `tokenizer.ggml.*` key holds a value of the wrong type or shape.
    #[error("GGUF metadata key `{key}` {message}")]
    InvalidMetadata {
        /// The offending key.
        key: String,
        /// What is wrong with it.
        message: String,
    },
    /// `tokenizer.ggml.model` names a vocabulary kind this crate cannot rebuild.
    #[error("unsupported GGUF tokenizer model `{0}` (supported: \"gpt2\", \"llama\")")]
    UnsupportedModel(String),
    /// A sentencepiece `tokenizer.model` could not be decoded or describes no usable tokenizer.
    #[error("{origin} is not a usable SentencePiece tokenizer.model: {message}")]
    InvalidSentencePiece {
        /// The offending file (or "the data" when read from memory).
        origin: String,
        /// What is wrong with it.
        message: String,
    },
    /// The tokenizer could not be assembled from otherwise valid parts.
    #[error("cannot build tokenizer: {0}")]
    Build(String),
    /// Encoding text failed.
    #[error("cannot encode text: {0}")]
    Encode(String),
    /// Decoding ids failed.
    #[error("cannot decode token ids: {0}")]
    Decode(String),
}

/// Result type of the tokenizer layer.
pub type Result<T> = std::result::Result<T, TokenizerError>;

/// A tokenizer with the special-token facts (BOS/EOS, control tokens) the model files declare.
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    vocab_size: usize,
    bos_token_id: Option<u32>,
    eos_token_ids: Vec<u32>,
    add_bos_token: bool,
    manual_bos: bool,
    manual_eos: bool,
    special_token_ids: Vec<u32>,
    added_token_ids: Vec<u32>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.vocab_size)
            .field("bos_token_id", &self.bos_token_id)
            .field("eos_token_ids", &self.eos_token_ids)
            .field("add_bos_token", &self.add_bos_token)
            .field("special_tokens", &self.special_token_ids.len())
            .finish()
    }
}

impl Tokenizer {
    /// Loads a Hugging Face `tokenizer.json`, plus BOS/EOS facts from sibling
    /// `tokenizer_config.json` / `generation_config.json` when they exist.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| TokenizerError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let invalid = |message: String| TokenizerError::InvalidTokenizerJson {
            path: path.to_path_buf(),
            message,
        };
        if bytes.iter().all(|b| b.is_ascii_whitespace()) {
            return Err(invalid("the file is empty".to_string()));
        }
        let inner = catch_unwind(AssertUnwindSafe(|| {
            tokenizers::Tokenizer::from_bytes(&bytes)
        }))
        .map_err(|_| invalid("the tokenizers library panicked while parsing it".to_string()))?
        .map_err(|e| invalid(e.to_string()))?;
        let mut tok = Self::from_inner(inner)?;
        if let Some(dir) = path.parent() {
            tok.apply_sibling_configs(dir);
        }
        Ok(tok)
    }

    /// Wraps an already built `tokenizers::Tokenizer`; BOS is inferred from its post-processor.
    pub fn from_inner(inner: tokenizers::Tokenizer) -> Result<Self> {
        let added = inner.get_added_tokens_decoder();
        let mut special_token_ids: Vec<u32> = added
            .iter()
            .filter(|(_, t)| t.special)
            .map(|(id, _)| *id)
            .collect();
        special_token_ids.sort_unstable();
        let mut added_token_ids: Vec<u32> = added.keys().copied().collect();
        added_token_ids.sort_unstable();
        let max_added = added_token_ids.last().map_or(0, |id| *id as usize + 1);
        let vocab_size = inner.get_vocab_size(false).max(max_added);

        // Whatever the post-processor puts around an empty text tells BOS/EOS.
        let with = inner
            .encode("", true)
            .map_err(|e| TokenizerError::Encode(e.to_string()))?;
        let bos_token_id = with.get_ids().first().copied();
        let eos_token_ids = match with.get_ids() {
            [_, .., last] => vec![*last],
            _ => Vec::new(),
        };
        Ok(Self {
            inner,
            vocab_size,
            add_bos_token: bos_token_id.is_some(),
            bos_token_id,
            eos_token_ids,
            manual_bos: false,
            manual_eos: false,
            special_token_ids,
            added_token_ids,
        })
    }

    /// Reads a GGUF file's header and builds its embedded tokenizer.
    pub fn from_gguf_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let mut file = std::fs::File::open(path).map_err(|source| TokenizerError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        // Checked first (candle trusts the header), and read with the tensors of kinds only
        // callm's kernels know (IQ4_NL, IQ4_XS) under a stand-in type.
        let invalid = |message: String| TokenizerError::InvalidGguf {
            path: path.to_path_buf(),
            message,
        };
        let facts = crate::gguf_header::check(&mut file).map_err(invalid)?;
        let content = crate::gguf_header::read_content(&mut file, &facts).map_err(invalid)?;
        Self::from_gguf(&content)
    }

    /// Builds the tokenizer embedded in parsed GGUF metadata (`tokenizer.ggml.*`).
    pub fn from_gguf(content: &Content) -> Result<Self> {
        let g = gguf::tokenizer_from_gguf(content)?;
        let mut eos_token_ids: Vec<u32> = g.eos_token_id.into_iter().collect();
        eos_token_ids.extend(g.extra_eos_token_ids.iter().copied());
        let manual_bos = g.add_bos_token && g.bos_token_id.is_some();
        Ok(Self {
            inner: g.tokenizer,
            vocab_size: g.n_tokens,
            bos_token_id: g.bos_token_id,
            manual_eos: g.add_eos_token && g.eos_token_id.is_some(),
            eos_token_ids,
            add_bos_token: manual_bos,
            manual_bos,
            special_token_ids: g.control_token_ids,
            added_token_ids: g.added_token_ids,
        })
    }

    /// Reads a sentencepiece `tokenizer.model` (no `tokenizer.json` needed), plus BOS/EOS facts
    /// from sibling `tokenizer_config.json` / `generation_config.json` when they exist.
    pub fn from_spm_file(path: impl AsRef<Path>) -> Result<Self> {
        Self::from_spm_file_with(path.as_ref(), &[])
    }

    /// [`Tokenizer::from_spm_file`] with `extra_special` appended, in order, after the
    /// vocabulary (as a family's reference tokenizer does).
    fn from_spm_file_with(path: &Path, extra_special: &[String]) -> Result<Self> {
        let mut s = spm::tokenizer_from_spm_file(path)?;
        if !extra_special.is_empty() {
            let names: Vec<&str> = extra_special.iter().map(String::as_str).collect();
            s.add_special_tokens(&spm::append_after_vocab(&names, s.n_pieces))?;
        }
        let mut tok = Self::from_spm(s);
        if let Some(dir) = path.parent() {
            tok.apply_sibling_configs(dir);
        }
        Ok(tok)
    }

    /// Whether `dir` holds a tokenizer [`Tokenizer::from_model_dir`] can read.
    pub fn dir_has_tokenizer(dir: &Path) -> bool {
        dir.join("tokenizer.json").is_file() || SPM_FILES.iter().any(|f| dir.join(f).is_file())
    }

    /// The tokenizer of a checkpoint directory: its `tokenizer.json`, or else its SentencePiece
    /// model (`tokenizer.model` or `spiece.model`) with `extra_special` appended, in order,
    /// after the vocabulary (a family's reference tokenizer may add tokens that way).
    pub fn from_model_dir(dir: &Path, extra_special: &[String]) -> Result<Self> {
        let json = dir.join("tokenizer.json");
        if json.is_file() {
            return Self::from_file(json);
        }
        let Some(model) = SPM_FILES.iter().map(|f| dir.join(f)).find(|p| p.is_file()) else {
            return Err(TokenizerError::Io {
                path: json,
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no tokenizer.json, tokenizer.model or spiece.model in the model directory",
                ),
            });
        };
        Self::from_spm_file_with(&model, extra_special)
    }

    /// Wraps a tokenizer rebuilt from a sentencepiece model (after any family special tokens
    /// were added with [`spm::SpmTokenizer::add_special_tokens`]).
    pub fn from_spm(s: spm::SpmTokenizer) -> Self {
        let vocab_size = s.vocab_size();
        let manual_bos = s.add_bos_token && s.bos_token_id.is_some();
        Self {
            inner: s.tokenizer,
            vocab_size,
            bos_token_id: s.bos_token_id,
            eos_token_ids: s.eos_token_id.into_iter().collect(),
            add_bos_token: manual_bos,
            manual_bos,
            manual_eos: false,
            special_token_ids: s.special_token_ids,
            added_token_ids: s.added_token_ids,
        }
    }

    /// Encodes text; special-token strings in it (e.g. `<|im_start|>`) always map to their ids,
    /// and `add_special` adds the BOS/EOS the model expects.
    pub fn encode(&self, text: &str, add_special: bool) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, add_special)
            .map_err(|e| TokenizerError::Encode(e.to_string()))?;
        let ids = enc.get_ids();
        let mut out = Vec::with_capacity(ids.len() + 2);
        if add_special && self.manual_bos {
            out.extend(self.bos_token_id);
        }
        out.extend_from_slice(ids);
        if add_special && self.manual_eos {
            out.extend(self.eos_token_ids.first().copied());
        }
        Ok(out)
    }

    /// Decodes ids to text; `skip_special` drops special tokens (keep them when parsing tool calls).
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        self.inner
            .decode(ids, skip_special)
            .map_err(|e| TokenizerError::Decode(e.to_string()))
    }

    /// Starts an incremental detokenizer over this tokenizer.
    pub fn decode_stream(&self, skip_special: bool) -> DecodeStream<'_> {
        DecodeStream::new(self, skip_special)
    }

    /// The id of a token string (vocabulary or added token), if any.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The token string of an id (in the vocabulary's own form, e.g. `Ġhello` or `▁hello`).
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Number of token ids (one past the largest id), including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// The beginning-of-sequence token, if known.
    pub fn bos_token_id(&self) -> Option<u32> {
        self.bos_token_id
    }

    /// The primary end-of-sequence token, if known.
    pub fn eos_token_id(&self) -> Option<u32> {
        self.eos_token_ids.first().copied()
    }

    /// All ids that end generation (EOS first, then end-of-turn / end-of-message ids).
    pub fn eos_token_ids(&self) -> &[u32] {
        &self.eos_token_ids
    }

    /// Replaces the end-of-generation ids (e.g. from a model's `generation_config.json`).
    pub fn set_eos_token_ids(&mut self, ids: Vec<u32>) {
        self.eos_token_ids = ids;
    }

    /// Whether `encode(text, true)` starts with the BOS token.
    pub fn add_bos_token(&self) -> bool {
        self.add_bos_token
    }

    /// Ids of special (control) tokens, sorted.
    pub fn special_token_ids(&self) -> &[u32] {
        &self.special_token_ids
    }

    /// Ids of all added tokens (special and user-defined, e.g. `<tool_call>`), sorted.
    pub fn added_token_ids(&self) -> &[u32] {
        &self.added_token_ids
    }

    /// Whether an id is a special (control) token.
    pub fn is_special(&self, id: u32) -> bool {
        self.special_token_ids.binary_search(&id).is_ok()
    }

    /// The wrapped `tokenizers::Tokenizer`.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// Reads BOS/EOS facts from `tokenizer_config.json` and `generation_config.json` in `dir`;
    /// these files are optional, so problems are logged and skipped.
    fn apply_sibling_configs(&mut self, dir: &Path) {
        if let Some(cfg) = read_json(&dir.join("tokenizer_config.json")) {
            let token_id = |key: &str| {
                let v = cfg.get(key)?;
                let s = v.as_str().or_else(|| v.get("content")?.as_str())?;
                self.inner.token_to_id(s)
            };
            if let Some(id) = token_id("eos_token") {
                self.eos_token_ids = vec![id];
            }
            if let Some(id) = token_id("bos_token") {
                self.bos_token_id = Some(id);
            }
        }
        if let Some(cfg) = read_json(&dir.join("generation_config.json")) {
            let ids = |key: &str| -> Vec<u32> {
                match cfg.get(key) {
                    Some(serde_json::Value::Array(a)) => a
                        .iter()
                        .filter_map(|v| v.as_u64().and_then(|n| u32::try_from(n).ok()))
                        .collect(),
                    Some(v) => v
                        .as_u64()
                        .and_then(|n| u32::try_from(n).ok())
                        .into_iter()
                        .collect(),
                    None => Vec::new(),
                }
            };
            let eos = ids("eos_token_id");
            if !eos.is_empty() {
                self.eos_token_ids = eos;
            }
            if let Some(bos) = ids("bos_token_id").first() {
                self.bos_token_id = Some(*bos);
            }
        }
    }
}

/// Reads an optional JSON file; absent files are silent, broken ones are logged.
fn read_json(path: &Path) -> Option<serde_json::Value> {
    let bytes = std::fs::read(path).ok()?;
    match serde_json::from_slice(&bytes) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "ignoring unreadable JSON file");
            None
        }
    }
}
