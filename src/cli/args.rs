//! Command-line arguments shared by the commands that load a model.

use std::path::PathBuf;

use crate::engine::SamplingParams;
use crate::runtime::LoadOptions;

/// Which model to load and where to run it.
#[derive(clap::Args, Debug, Clone)]
pub struct ModelArgs {
    /// Model: a checkpoint directory, a .gguf file, a Hugging Face repo id (org/name or
    /// org/name:file.gguf), or a registry family name (see `callm models`).
    #[arg(short, long, env = "CALLM_MODEL")]
    pub model: String,
    /// Model family from models.toml (default: detected from the model).
    #[arg(long)]
    pub family: Option<String>,
    /// Device: cpu, cuda, cuda:N, metal (default: the best one compiled in).
    #[arg(long)]
    pub device: Option<String>,
    /// Context window to allocate, in tokens (default: the model's, at most 8192).
    #[arg(long)]
    pub ctx: Option<usize>,
    /// Tokenizer (directory or tokenizer.json) overriding the model's own.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// CPU threads for all compute pools (default: physical cores; env CALLM_THREADS).
    #[arg(short = 't', long)]
    pub threads: Option<usize>,
}

impl ModelArgs {
    /// The load options these arguments describe.
    pub fn load_options(&self) -> LoadOptions {
        LoadOptions {
            model: self.model.clone(),
            family: self.family.clone(),
            device: self.device.clone(),
            context: self.ctx,
            tokenizer: self.tokenizer.clone(),
            batch: Default::default(),
        }
    }
}

/// Sampling flags.
#[derive(clap::Args, Debug, Clone)]
pub struct SamplingArgs {
    /// Temperature; 0 = greedy.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    /// Nucleus sampling mass (1 = off).
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    /// Keep only the k most likely tokens (0 = off).
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    /// Drop tokens below min_p times the top probability (0 = off).
    #[arg(long, default_value_t = 0.0)]
    pub min_p: f32,
    /// Repetition penalty (1 = off).
    #[arg(long, default_value_t = 1.0)]
    pub repeat_penalty: f32,
    /// Presence penalty in [-2, 2].
    #[arg(long, default_value_t = 0.0)]
    pub presence_penalty: f32,
    /// Frequency penalty in [-2, 2].
    #[arg(long, default_value_t = 0.0)]
    pub frequency_penalty: f32,
    /// Logit bias as TOKEN_ID=BIAS (repeatable).
    #[arg(long = "logit-bias", value_parser = parse_bias)]
    pub logit_bias: Vec<(u32, f32)>,
    /// RNG seed (same seed, same output).
    #[arg(long)]
    pub seed: Option<u64>,
}

/// `--logit-bias TOKEN_ID=BIAS`, the bias in [-100, 100] (as in the API).
fn parse_bias(s: &str) -> Result<(u32, f32), String> {
    let (a, b) = s
        .split_once('=')
        .ok_or_else(|| format!("expected TOKEN_ID=BIAS, got '{s}'"))?;
    let bias: f32 = b.trim().parse().map_err(|e| format!("bias: {e}"))?;
    if !(-100.0..=100.0).contains(&bias) {
        return Err(format!("bias must be between -100 and 100, got {bias}"));
    }
    Ok((
        a.trim().parse().map_err(|e| format!("token id: {e}"))?,
        bias,
    ))
}

impl SamplingArgs {
    /// The sampling parameters these flags describe.
    pub fn params(&self) -> SamplingParams {
        SamplingParams {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repetition_penalty: self.repeat_penalty,
            presence_penalty: self.presence_penalty,
            frequency_penalty: self.frequency_penalty,
            logit_bias: self.logit_bias.clone(),
            seed: self.seed,
        }
    }
}
