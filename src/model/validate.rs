//! Model metadata is untrusted input: a `config.json` or GGUF header may declare a billion
//! layers, a NaN rope base or a head size its tensors do not have. Everything the decoder sizes
//! or computes from is checked here before anything is allocated from it: every number finite,
//! positive and within a generous limit, the counts consistent with each other and with the
//! tensors. Errors name the key as the file spells it (`num_hidden_layers`,
//! `llama.block_count`) and its value.

use super::config::{Arch, ModelConfig, RopeScaling};
use super::names::{LayerWeight as LW, Weight};
use super::weights::WeightSource;

/// Most decoder layers accepted (the largest open models have ~130).
pub const MAX_LAYERS: usize = 1024;
/// Widest hidden state accepted.
pub const MAX_HIDDEN: usize = 1 << 17;
/// Widest MLP accepted.
pub const MAX_INTERMEDIATE: usize = 1 << 20;
/// Most attention heads accepted.
pub const MAX_HEADS: usize = 1024;
/// Widest attention head accepted.
pub const MAX_HEAD_DIM: usize = 1024;
/// Largest vocabulary accepted.
pub const MAX_VOCAB: usize = 1 << 22;
/// Longest declared context accepted (the allocated one is `--ctx`, at most this).
pub const MAX_POSITIONS: usize = 1 << 28;
/// Most experts per layer accepted.
pub const MAX_EXPERTS: usize = 4096;

/// A configuration value, for naming it in errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// Decoder layers.
    Layers,
    /// Hidden size.
    Hidden,
    /// Query heads.
    Heads,
    /// Key/value heads.
    KvHeads,
    /// Head width.
    HeadDim,
    /// Vocabulary (embedding rows).
    Vocab,
    /// MLP width.
    Intermediate,
    /// Declared context.
    Context,
    /// Rotary base.
    RopeTheta,
    /// Norm epsilon.
    NormEps,
    /// Rotary dimensions per head.
    RotaryDim,
    /// Rotary scaling parameters.
    RopeScale,
    /// Experts per layer.
    Experts,
    /// Experts per token.
    ExpertsUsed,
    /// Width of one expert.
    ExpertWidth,
}

/// Whose key names a configuration came with.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum KeyStyle {
    /// A Hugging Face `config.json`.
    #[default]
    ConfigJson,
    /// GGUF metadata under this architecture prefix (`llama`, `qwen3moe`, ...).
    Gguf(String),
}

impl KeyStyle {
    /// The key that holds `f` for `arch` in this style.
    pub fn key(&self, arch: Arch, f: Field) -> String {
        use Field::*;
        let name = match (self, arch) {
            (KeyStyle::Gguf(p), _) => {
                let k = match f {
                    Layers => "block_count",
                    Hidden => "embedding_length",
                    Heads => "attention.head_count",
                    KvHeads => "attention.head_count_kv",
                    HeadDim => "attention.key_length",
                    Vocab => return "the rows of token_embd.weight".into(),
                    Intermediate => "feed_forward_length",
                    Context => "context_length",
                    RopeTheta => "rope.freq_base",
                    NormEps if arch == Arch::Mpt => "attention.layer_norm_epsilon",
                    NormEps => "attention.layer_norm_rms_epsilon",
                    RotaryDim => "rope.dimension_count",
                    RopeScale => "rope.scaling.*",
                    Experts => "expert_count",
                    ExpertsUsed => "expert_used_count",
                    ExpertWidth => "expert_feed_forward_length",
                };
                return format!("{p}.{k}");
            }
            (_, Arch::ChatGlm) => match f {
                Layers => "num_layers",
                KvHeads => "multi_query_group_num",
                HeadDim | RotaryDim => "kv_channels",
                Vocab => "padded_vocab_size",
                Intermediate => "ffn_hidden_size",
                Context => "seq_length",
                RopeTheta => "rope_ratio",
                NormEps => "layernorm_epsilon",
                _ => return KeyStyle::ConfigJson.key(Arch::Llama, f),
            },
            (_, Arch::Mpt) => match f {
                Layers => "n_layers",
                Hidden | HeadDim => "d_model",
                Heads => "n_heads",
                KvHeads => "attn_config.kv_n_heads",
                Intermediate => "expansion_ratio",
                Context => "max_seq_len",
                NormEps => "layer_norm_epsilon",
                _ => return KeyStyle::ConfigJson.key(Arch::Llama, f),
            },
            _ => match f {
                Layers => "num_hidden_layers",
                Hidden => "hidden_size",
                Heads => "num_attention_heads",
                KvHeads => "num_key_value_heads",
                HeadDim => "head_dim",
                Vocab => "vocab_size",
                Intermediate => "intermediate_size",
                Context => "max_position_embeddings",
                RopeTheta => "rope_theta",
                NormEps => "rms_norm_eps",
                RotaryDim => "partial_rotary_factor",
                RopeScale => "rope_scaling",
                Experts => "num_experts",
                ExpertsUsed => "num_experts_per_tok",
                ExpertWidth => "moe_intermediate_size",
            },
        };
        name.to_string()
    }
}

/// Checks a count read from `key`: at least `min`, at most `max`.
pub fn count(key: &str, value: usize, min: usize, max: usize) -> Result<usize, String> {
    if value < min || value > max {
        return Err(format!("{key} = {value}: must be between {min} and {max}"));
    }
    Ok(value)
}

fn positive(key: &str, what: &str, x: f64) -> Result<(), String> {
    if !x.is_finite() || x <= 0.0 {
        return Err(format!(
            "{key}: {what} = {x} must be a finite positive number"
        ));
    }
    Ok(())
}

/// Checks every value of `cfg`: counts in range and consistent, floats finite and positive.
pub fn config(cfg: &ModelConfig) -> Result<(), String> {
    use Field::*;
    let key = |f| cfg.keys.key(cfg.arch, f);
    count(&key(Layers), cfg.num_layers, 1, MAX_LAYERS)?;
    count(&key(Hidden), cfg.hidden_size, 1, MAX_HIDDEN)?;
    count(&key(Heads), cfg.num_heads, 1, MAX_HEADS)?;
    count(&key(KvHeads), cfg.num_kv_heads, 1, cfg.num_heads)?;
    if !cfg.num_heads.is_multiple_of(cfg.num_kv_heads) {
        return Err(format!(
            "{} = {} is not a multiple of {} = {}",
            key(Heads),
            cfg.num_heads,
            key(KvHeads),
            cfg.num_kv_heads
        ));
    }
    count(&key(HeadDim), cfg.head_dim, 1, MAX_HEAD_DIM)?;
    count(&key(Vocab), cfg.vocab_size, 1, MAX_VOCAB)?;
    let min_ff = usize::from(cfg.opts.moe.is_none());
    count(
        &key(Intermediate),
        cfg.intermediate_size,
        min_ff,
        MAX_INTERMEDIATE,
    )?;
    count(&key(Context), cfg.max_position_embeddings, 1, MAX_POSITIONS)?;
    let norm = key(NormEps);
    if !cfg.rms_norm_eps.is_finite() || !(0.0..=1.0).contains(&cfg.rms_norm_eps) {
        return Err(format!(
            "{norm} = {}: must be a finite number between 0 and 1",
            cfg.rms_norm_eps
        ));
    }
    if let Some(m) = &cfg.mpt {
        for (name, x) in [
            ("alibi_bias_max", m.alibi_bias_max),
            ("clip_qkv", m.clip_qkv),
            ("softmax_scale", m.softmax_scale),
            ("logit_scale", m.logit_scale),
        ] {
            if let Some(x) = x {
                positive(name, name, x)?;
            }
        }
    } else {
        rope(cfg)?;
    }
    for (name, x) in [
        ("embedding scale", cfg.opts.embedding_scale.map(f64::from)),
        ("residual scale", cfg.opts.residual_scale.map(f64::from)),
        ("attention scale", cfg.opts.attention_scale),
        ("logit divisor", cfg.opts.logits_divisor.map(f64::from)),
        (
            "final logit soft-cap",
            cfg.opts.final_logit_softcap.map(f64::from),
        ),
        (
            "attention soft-cap",
            cfg.opts.attn_logit_softcap.map(f64::from),
        ),
        ("local rope base", cfg.opts.local_rope_theta),
    ] {
        if let Some(x) = x {
            positive(cfg.arch.name(), name, x)?;
        }
    }
    for (name, flags) in [
        ("sliding layer flags", &cfg.opts.sliding_layers),
        ("rope layer flags", &cfg.opts.rope_layers),
    ] {
        if !flags.is_empty() && flags.len() != cfg.num_layers {
            return Err(format!(
                "{} {name} for {} = {}",
                flags.len(),
                key(Layers),
                cfg.num_layers
            ));
        }
    }
    if let Some(moe) = &cfg.opts.moe {
        count(&key(Experts), moe.num_experts, 1, MAX_EXPERTS)?;
        count(&key(ExpertsUsed), moe.top_k, 1, moe.num_experts)?;
        count(
            &key(ExpertWidth),
            moe.expert_intermediate_size,
            1,
            MAX_INTERMEDIATE,
        )?;
    }
    Ok(())
}

/// The rotary settings: an even number of rotary dimensions within the head, a finite
/// positive base, scaling parameters that give finite frequencies.
fn rope(cfg: &ModelConfig) -> Result<(), String> {
    use Field::*;
    let key = |f| cfg.keys.key(cfg.arch, f);
    let rot = cfg.rotary_dim;
    if rot < 2 || rot > cfg.head_dim || !rot.is_multiple_of(2) {
        return Err(format!(
            "{}: {rot} rotary dimensions in a head of {} (must be even, 2 to the head size)",
            key(RotaryDim),
            cfg.head_dim
        ));
    }
    positive(&key(RopeTheta), "rope base", cfg.rope_theta)?;
    let sk = key(RopeScale);
    let factors = |what: &str, fs: &[f32]| -> Result<(), String> {
        if fs.len() != rot / 2 {
            return Err(format!(
                "{sk}: {} {what} for {} rotary dimension pairs",
                fs.len(),
                rot / 2
            ));
        }
        fs.iter()
            .try_for_each(|&f| positive(&sk, what, f64::from(f)))
    };
    match &cfg.rope_scaling {
        RopeScaling::None => {}
        RopeScaling::Linear(f) => positive(&sk, "factor", *f)?,
        RopeScaling::Factors(fs) => factors("rope_freqs factors", fs)?,
        RopeScaling::Llama3(s) => {
            positive(&sk, "factor", s.factor)?;
            positive(&sk, "low_freq_factor", s.low_freq_factor)?;
            positive(&sk, "high_freq_factor", s.high_freq_factor)?;
            positive(
                &sk,
                "original_max_position_embeddings",
                s.original_max_position_embeddings,
            )?;
            if s.high_freq_factor <= s.low_freq_factor {
                return Err(format!(
                    "{sk}: high_freq_factor {} must be above low_freq_factor {}",
                    s.high_freq_factor, s.low_freq_factor
                ));
            }
        }
        RopeScaling::LongRope(s) => {
            factors("short_factor", &s.short_factor)?;
            factors("long_factor", &s.long_factor)?;
            count(
                &format!("{sk} original_max_position_embeddings"),
                s.original_max_position_embeddings,
                1,
                MAX_POSITIONS,
            )?;
            positive(&sk, "attention_factor", s.attention_factor)?;
        }
    }
    Ok(())
}

/// Checks the tensors `src` holds against `cfg` before they are loaded: the embedding is
/// `[vocab, hidden]`, the layer tensors run from 0 to exactly `num_layers - 1`, and the first
/// layer's projections have the rows the head counts and sizes say.
pub fn tensors(cfg: &ModelConfig, src: &dyn WeightSource) -> Result<(), String> {
    use Field::*;
    let key = |f| cfg.keys.key(cfg.arch, f);
    let naming = src.naming();
    let name = |w: Weight| w.name(cfg.arch, naming);
    let embed = name(Weight::Embed);
    let (h, v) = (cfg.hidden_size, cfg.vocab_size);
    match src.shape(&embed) {
        Some(s) if s == [v, h] => {}
        Some(s) => {
            return Err(format!(
                "{} = {v} and {} = {h}, but {embed} has shape {s:?}",
                key(Vocab),
                key(Hidden)
            ))
        }
        None => return Err(format!("missing tensor {embed}")),
    }
    let norm = |i: usize| name(Weight::Layer(i, LW::AttnNorm));
    let n = cfg.num_layers;
    if !src.contains(&norm(n - 1)) {
        return Err(format!(
            "{} = {n}, but there is no tensor {}",
            key(Layers),
            norm(n - 1)
        ));
    }
    if src.contains(&norm(n)) {
        return Err(format!(
            "{} = {n}, but the weights have more layers ({} exists)",
            key(Layers),
            norm(n)
        ));
    }
    let rows = |w: LW| {
        src.shape(&name(Weight::Layer(0, w)))
            .map(|s| (name(Weight::Layer(0, w)), s))
    };
    let hd = cfg.head_dim;
    let (q, kv) = (cfg.num_heads * hd, cfg.num_kv_heads * hd);
    // Fused q/k/v (ChatGLM, Phi-3) or separate projections.
    let expect: &[(LW, usize)] = if rows(LW::Qkv).is_some() {
        &[(LW::Qkv, q + 2 * kv)]
    } else {
        &[(LW::Q, q), (LW::K, kv)]
    };
    for &(w, want) in expect {
        if let Some((t, s)) = rows(w) {
            if s.first() != Some(&want) || s.get(1) != Some(&h) {
                return Err(format!(
                    "{} = {}, {} = {}, {} = {hd} and {} = {h} give [{want}, {h}], but {t} has shape {s:?}",
                    key(Heads),
                    cfg.num_heads,
                    key(KvHeads),
                    cfg.num_kv_heads,
                    key(HeadDim),
                    key(Hidden),
                ));
            }
        }
    }
    if let Some(moe) = &cfg.opts.moe {
        if let Some((t, s)) = rows(LW::ExpertsGate) {
            if s.first() != Some(&moe.num_experts) {
                return Err(format!(
                    "{} = {}, but {t} has shape {s:?}",
                    key(Experts),
                    moe.num_experts
                ));
            }
        }
    }
    Ok(())
}
