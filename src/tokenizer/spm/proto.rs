//! The parts of sentencepiece's `ModelProto` (a `tokenizer.model` file) that the reader needs.
//!
//! Declared by hand for `prost`: only the field numbers and types come from sentencepiece's
//! `sentencepiece_model.proto` (proto2). Every field is optional on the wire; the proto2 defaults
//! are applied by the accessors below. Fields not declared here are skipped when decoding.

/// A whole `tokenizer.model`: the vocabulary and the trainer and normaliser settings.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ModelProto {
    /// The vocabulary, in id order.
    #[prost(message, repeated, tag = "1")]
    pub pieces: Vec<Piece>,
    /// How the model was trained (model type, special ids, byte fallback).
    #[prost(message, optional, tag = "2")]
    pub trainer_spec: Option<TrainerSpec>,
    /// How text is normalised before it is split into pieces.
    #[prost(message, optional, tag = "3")]
    pub normalizer_spec: Option<NormalizerSpec>,
}

/// One vocabulary entry (`ModelProto.SentencePiece`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Piece {
    /// The piece text, with `▁` for spaces.
    #[prost(string, optional, tag = "1")]
    pub piece: Option<String>,
    /// Log probability (unigram) or merge priority (BPE).
    #[prost(float, optional, tag = "2")]
    pub score: Option<f32>,
    /// The piece type (NORMAL = 1 when absent).
    #[prost(int32, optional, tag = "3")]
    pub kind: Option<i32>,
}

/// The trainer settings that matter when encoding.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TrainerSpec {
    /// UNIGRAM = 1 (default), BPE = 2, WORD = 3, CHAR = 4.
    #[prost(int32, optional, tag = "3")]
    pub model_type: Option<i32>,
    /// Whether unknown characters are spelled as `<0xNN>` byte pieces.
    #[prost(bool, optional, tag = "35")]
    pub byte_fallback: Option<bool>,
    /// Id of the unknown piece (default 0).
    #[prost(int32, optional, tag = "40")]
    pub unk_id: Option<i32>,
    /// Id of the beginning-of-sentence piece (default 1, -1 for none).
    #[prost(int32, optional, tag = "41")]
    pub bos_id: Option<i32>,
    /// Id of the end-of-sentence piece (default 2, -1 for none).
    #[prost(int32, optional, tag = "42")]
    pub eos_id: Option<i32>,
    /// Id of the padding piece (default -1: none).
    #[prost(int32, optional, tag = "43")]
    pub pad_id: Option<i32>,
    /// Whether the word-boundary marker ends words instead of starting them.
    #[prost(bool, optional, tag = "24")]
    pub treat_whitespace_as_suffix: Option<bool>,
}

/// The normaliser settings.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NormalizerSpec {
    /// Rule name, e.g. `nmt_nfkc` or `identity` (informational).
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    /// Compiled character map (a double-array trie plus replacement strings); empty for identity.
    #[prost(bytes = "vec", optional, tag = "2")]
    pub precompiled_charsmap: Option<Vec<u8>>,
    /// Whether a space is put before the text (default true).
    #[prost(bool, optional, tag = "3")]
    pub add_dummy_prefix: Option<bool>,
    /// Whether leading, trailing and repeated spaces are removed (default true).
    #[prost(bool, optional, tag = "4")]
    pub remove_extra_whitespaces: Option<bool>,
    /// Whether spaces are written as `▁` (default true).
    #[prost(bool, optional, tag = "5")]
    pub escape_whitespaces: Option<bool>,
}
