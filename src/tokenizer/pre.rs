//! Pre-tokenizer split rules for byte-level BPE vocabularies, chosen by GGUF `tokenizer.ggml.pre`.
//!
//! The rules are the ones the upstream Hugging Face `tokenizer.json` files of each family carry
//! (and that llama.cpp applies for the same `tokenizer.ggml.pre` names): a list of regexes, each
//! applied in turn as an "isolated" split, followed by the byte-level mapping.

use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::SplitDelimiterBehavior;

use super::{Result, TokenizerError};

/// GPT-2 style split (also the tail of the StarCoder/SmolLM rules).
const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

/// Llama 3 split: case-insensitive contractions, digits in groups of up to three.
const LLAMA3: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Qwen2 split: like Llama 3 but every digit is its own piece.
const QWEN2: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Line breaks are isolated first by the DeepSeek rules.
const DEEPSEEK_NEWLINE: &str = "[\r\n]";

/// DeepSeek LLM letter runs (an explicit list of cased-letter ranges).
const DEEPSEEK_LLM_LETTERS: &str = "\\s?[A-Za-z\u{b5}\u{c0}-\u{d6}\u{d8}-\u{f6}\u{f8}-\u{1ba}\u{1bc}-\u{1bf}\u{1c4}-\u{293}\u{295}-\u{2af}\u{370}-\u{373}\u{376}\u{377}\u{37b}-\u{37d}\u{37f}\u{386}\u{388}-\u{38a}\u{38c}\u{38e}-\u{3a1}\u{3a3}-\u{3f5}\u{3f7}-\u{481}\u{48a}-\u{52f}\u{531}-\u{556}\u{10a0}-\u{10c5}\u{13a0}-\u{13f5}\u{13f8}-\u{13fd}\u{1c90}-\u{1cba}\u{1cbd}-\u{1cbf}\u{1d00}-\u{1d2b}\u{1d6b}-\u{1d77}\u{1d79}-\u{1d9a}\u{1e00}-\u{1f15}\u{1f18}-\u{1f1d}\u{1f20}-\u{1f45}\u{1f48}-\u{1f4d}\u{1f50}-\u{1f57}\u{1f59}\u{1f5b}\u{1f5d}\u{1f5f}-\u{1f7d}\u{1f80}-\u{1fb4}\u{1fb6}-\u{1fbc}\u{1fbe}\u{1fc2}-\u{1fc4}\u{1fc6}-\u{1fcc}\u{1fd0}-\u{1fd3}\u{1fd6}-\u{1fdb}\u{1fe0}-\u{1fec}\u{1ff2}-\u{1ff4}\u{1ff6}-\u{1ffc}\u{2102}\u{2107}\u{210a}-\u{2113}\u{2115}\u{2119}-\u{211d}\u{2124}\u{2126}\u{2128}\u{212a}-\u{212d}\u{212f}-\u{2134}\u{2139}\u{213c}-\u{213f}\u{2145}-\u{2149}\u{214e}\u{2183}\u{2184}\u{2c00}-\u{2c7b}\u{2c7e}-\u{2ce4}\u{2ceb}-\u{2cee}\u{2cf2}\u{2cf3}\u{a640}-\u{a66d}\u{a680}-\u{a69b}\u{a722}-\u{a76f}\u{a771}-\u{a787}\u{a78b}-\u{a78e}\u{ab70}-\u{abbf}\u{fb00}-\u{fb06}\u{fb13}-\u{fb17}\u{ff21}-\u{ff3a}\u{ff41}-\u{ff5a}\u{10400}-\u{1044f}\u{104b0}-\u{104d3}\u{104d8}-\u{104fb}\u{10c80}-\u{10cb2}\u{10cc0}-\u{10cf2}\u{118a0}-\u{118df}\u{1e900}-\u{1e943}]+";

/// DeepSeek LLM punctuation runs (ASCII, full-width and quotation marks).
const DEEPSEEK_LLM_PUNCT: &str =
    "\\s?[!-/:-~\u{ff01}-\u{ff0f}\u{ff1a}-\u{ff5e}\u{2018}-\u{201f}\u{3000}-\u{3002}]+";

/// CJK / Hangul runs shared by both DeepSeek rules.
const DEEPSEEK_CJK: &str = "[\u{4e00}-\u{9fa5}\u{800}-\u{4e00}\u{ac00}-\u{d7ff}]+";

/// Which family of split rules a byte-level BPE vocabulary uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreTokenizerKind {
    /// GPT-2 rules (`gpt2`, `gpt-2`, `mpt`, `olmo`, `default` and unknown names).
    Gpt2,
    /// StarCoder-style rules: single digits, then GPT-2 (`smollm`, `starcoder`, `refact`...).
    Smollm,
    /// Llama 3 rules (`llama-bpe`, `llama3`, `llama-v3`, `smaug-bpe`...).
    Llama3,
    /// Qwen2 rules (`qwen2`, `stablelm2`).
    Qwen2,
    /// DeepSeek LLM rules (`deepseek-llm`).
    DeepseekLlm,
    /// DeepSeek Coder rules (`deepseek-coder`).
    DeepseekCoder,
}

impl PreTokenizerKind {
    /// Picks the rules for a `tokenizer.ggml.pre` value (`None` or unknown names fall back to GPT-2).
    pub fn from_gguf_pre(pre: Option<&str>) -> Self {
        match pre.unwrap_or("default") {
            "llama-bpe" | "llama3" | "llama-v3" | "smaug-bpe" | "dbrx" => Self::Llama3,
            "qwen2" | "stablelm2" => Self::Qwen2,
            "deepseek-llm" => Self::DeepseekLlm,
            "deepseek-coder" => Self::DeepseekCoder,
            "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone"
            | "minerva-7b" => Self::Smollm,
            other => {
                if !matches!(
                    other,
                    "gpt2" | "gpt-2" | "default" | "mpt" | "olmo" | "jais"
                ) {
                    tracing::warn!(
                        pre = other,
                        "unknown tokenizer.ggml.pre, using the GPT-2 split rules"
                    );
                }
                Self::Gpt2
            }
        }
    }

    /// Whether whole words found in the vocabulary skip BPE merges (true for Llama 3).
    pub fn ignore_merges(self) -> bool {
        matches!(self, Self::Llama3)
    }

    /// The split regexes, applied in order.
    pub fn regexes(self) -> Vec<&'static str> {
        match self {
            Self::Gpt2 => vec![GPT2],
            Self::Smollm => vec![r"\p{N}", GPT2],
            Self::Llama3 => vec![LLAMA3],
            Self::Qwen2 => vec![QWEN2],
            Self::DeepseekLlm => vec![
                DEEPSEEK_NEWLINE,
                DEEPSEEK_LLM_LETTERS,
                DEEPSEEK_LLM_PUNCT,
                r"\s+$",
                DEEPSEEK_CJK,
                r"\p{N}+",
            ],
            Self::DeepseekCoder => vec![
                DEEPSEEK_NEWLINE,
                r"\s?\p{L}+",
                r"\s?\p{P}+",
                DEEPSEEK_CJK,
                r"\p{N}",
            ],
        }
    }

    /// Builds the pre-tokenizer: the regex splits followed by the byte-level mapping.
    pub fn build(self) -> Result<PreTokenizerWrapper> {
        let mut steps = Vec::new();
        for re in self.regexes() {
            let split = Split::new(
                SplitPattern::Regex(re.to_string()),
                SplitDelimiterBehavior::Isolated,
                false,
            )
            .map_err(|e| TokenizerError::Build(format!("pre-tokenizer regex {re:?}: {e}")))?;
            steps.push(PreTokenizerWrapper::Split(split));
        }
        steps.push(PreTokenizerWrapper::ByteLevel(ByteLevel::new(
            false, true, false,
        )));
        Ok(PreTokenizerWrapper::Sequence(Sequence::new(steps)))
    }
}
