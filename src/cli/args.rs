//! Command-line arguments shared by the commands that load a model.

use std::path::PathBuf;
use std::time::Duration;

use crate::engine::SamplingParams;
use crate::model::KvType;
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
    /// Type of the KV cache on the CPU (default: f16 for quantized weights, f32 for float
    /// weights). f16 holds twice the positions in `--kv-cache-mb` and reads half the bytes
    /// per step; f32 is exact.
    #[arg(long, value_enum, env = "CALLM_KV_CACHE")]
    pub kv_cache_type: Option<KvCacheType>,
    #[command(flatten)]
    pub template_limits: TemplateLimitArgs,
}

/// The limits of the worker process that renders chat templates (SECURITY.md): every
/// command that renders one (`serve`, `chat`, `generate`, `bench`, `render`).
#[derive(clap::Args, Debug, Clone, Default, PartialEq)]
pub struct TemplateLimitArgs {
    /// Longest a chat template may take to render, in seconds (default 10): a render past it
    /// is stopped and its request gets a 400.
    #[arg(
        long,
        value_name = "SECS",
        env = "CALLM_TEMPLATE_TIME_LIMIT",
        value_parser = parse_time_limit
    )]
    pub template_time_limit: Option<Duration>,
    /// Memory a chat template's render may take, in MiB (default 1024; enforced on Linux): a
    /// render past it is stopped and its request gets a 400.
    #[arg(
        long,
        value_name = "MIB",
        env = "CALLM_TEMPLATE_MEMORY_MB",
        value_parser = clap::value_parser!(u64).range(MIN_TEMPLATE_MEMORY_MB..=MAX_TEMPLATE_MEMORY_MB)
    )]
    pub template_memory_mb: Option<u64>,
}

/// Bounds of `--template-memory-mb`: below 32 MiB a real template's prompt may not fit; 1 TiB
/// is past any machine's memory.
const MIN_TEMPLATE_MEMORY_MB: u64 = 32;
const MAX_TEMPLATE_MEMORY_MB: u64 = 1 << 20;

/// Longest `--template-time-limit`: an hour.
const MAX_TEMPLATE_SECS: f64 = 3600.0;

/// `--template-time-limit`: seconds, fractions allowed, above 0 and at most an hour.
fn parse_time_limit(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if !(secs > 0.0 && secs <= MAX_TEMPLATE_SECS) {
        return Err(format!(
            "{text} s: the time limit must be above 0 and at most {MAX_TEMPLATE_SECS} s"
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// `--kv-cache-type` values.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvCacheType {
    /// Half precision: half the memory and bytes read.
    F16,
    /// Single precision: exact.
    F32,
}

impl From<KvCacheType> for KvType {
    fn from(t: KvCacheType) -> KvType {
        match t {
            KvCacheType::F16 => KvType::F16,
            KvCacheType::F32 => KvType::F32,
        }
    }
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
            kv_cache: self.kv_cache_type.map(KvType::from),
            batch: Default::default(),
            progress: super::progress::load_bar(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrap {
        #[command(flatten)]
        model: ModelArgs,
    }

    #[test]
    fn the_kv_cache_type_reaches_the_load_options() {
        let load = |args: &[&str]| {
            Wrap::try_parse_from(["callm", "-m", "x"].iter().chain(args))
                .map(|w| w.model.load_options().kv_cache)
        };
        // (The test harness may run with CALLM_KV_CACHE unset only: nothing here sets it.)
        if std::env::var_os("CALLM_KV_CACHE").is_none() {
            assert_eq!(load(&[]).unwrap(), None);
        }
        assert_eq!(
            load(&["--kv-cache-type", "f32"]).unwrap(),
            Some(KvType::F32)
        );
        assert_eq!(
            load(&["--kv-cache-type", "f16"]).unwrap(),
            Some(KvType::F16)
        );
        // Anything else is a clear error naming the choices.
        let err = load(&["--kv-cache-type", "q8"]).unwrap_err().to_string();
        assert!(err.contains("f16") && err.contains("f32"), "{err}");
    }
}
