//! callm's packed CPU kernels (`callm::kernels`) against candle's own quantized matmul (the
//! previous implementation, on the file's block types) and the exact model (weights
//! dequantized to f32, f32 activations), on the real GGUFs.
//!
//! Both quantized paths quantize activations to 8 bits exactly alike (ggml's Q8_0/Q8_1, Q8_K for
//! K-quants) with the same integer dot products, and a
//! single matmul agrees to ~1e-7 (`kernels::tests`). Through 30 layers, though, a last-bit
//! difference in summation order flips the rounding of some quantized activation, and the two
//! paths drift apart by the size of that rounding noise (measured: 0.05-0.3 logits RMS, up to
//! ~1.2 at worst), and near-ties in the top 5 may swap. candle does the same against itself:
//! measured on the Qwen GGUF, its K-quant path on x86-64 (AVX2) and on aarch64 (NEON, under
//! qemu) gives different top-5 sets at 6 of the 45 positions, where callm's kernels differ from
//! candle on x86-64 at 3. Every swap seen, between any two of these paths, was at a 5th-6th gap
//! under 0.3 logits. So what is asserted is:
//! - against candle: the top-5 sets are equal at every position where candle's 5th and 6th
//!   logits are at least [`NEAR_TIE`] apart, and the two paths differ by no more (RMS) than
//!   either differs from the exact model;
//! - against the exact model: the packed kernels are as faithful as candle, with the same logit
//!   error (RMS) and at least 95% as many top-5 tokens in common with the exact top 5.
//!
//! (Own test binary: it toggles `CALLM_KERNELS`, `CALLM_KEEP_QUANT` and `CANDLE_DEQUANTIZE_ALL`.)

use callm::registry::Registry;
use callm::runtime::LoadOptions;
use callm::runtime::LoadedModel;
use candle_core::Tensor;

fn top5_set(row: &[f32]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..row.len()).collect();
    idx.sort_by(|a, b| row[*b].total_cmp(&row[*a]));
    idx.truncate(5);
    idx.sort_unstable();
    idx
}

const PROMPTS: [&str; 2] = [
    "<|im_start|>user\nWrite a Python function that adds two numbers.<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>system\nYou can call get_weather(city).<|im_end|>\n<|im_start|>user\nWhat is the weather in Paris today?<|im_end|>\n<|im_start|>assistant\n",
];

/// Logits `[positions][vocab]` of every prompt, from a model loaded with `env` set.
fn logits(opts: &LoadOptions, env: &'static [(&'static str, &'static str)]) -> Vec<Vec<Vec<f32>>> {
    for var in ["CALLM_KERNELS", "CALLM_KEEP_QUANT", "CANDLE_DEQUANTIZE_ALL"] {
        std::env::remove_var(var);
    }
    for (k, v) in env {
        std::env::set_var(k, v);
    }
    let opts = opts.clone();
    // A fresh thread: candle reads CANDLE_DEQUANTIZE_ALL once per thread.
    let out = std::thread::spawn(move || {
        let lm = LoadedModel::load(&opts, &Registry::builtin()).unwrap();
        PROMPTS
            .iter()
            .map(|p| {
                let ids = lm.tokenizer.encode(p, false).unwrap();
                let mut cache = lm.model.new_cache(512).unwrap();
                let t: Tensor = lm.model.forward(&ids, &mut cache, true).unwrap();
                t.to_vec2::<f32>().unwrap()
            })
            .collect()
    })
    .join()
    .unwrap();
    for (k, _) in env {
        std::env::remove_var(k);
    }
    out
}

/// Logit gap between candle's 5th and 6th token below which top-5 membership is a near-tie.
const NEAR_TIE: f32 = 0.5;

/// The gap between the 5th and 6th largest logits of a row.
fn top5_gap(row: &[f32]) -> f32 {
    let mut v = row.to_vec();
    v.sort_by(|a, b| b.total_cmp(a));
    v[4] - v[5]
}

fn rms(a: &[Vec<f32>], b: &[Vec<f32>]) -> f64 {
    let (mut s, mut n) = (0f64, 0usize);
    for (x, y) in a.iter().zip(b) {
        for (p, q) in x.iter().zip(y) {
            s += ((p - q) as f64).powi(2);
            n += 1;
        }
    }
    (s / n as f64).sqrt()
}

fn shared_top5(a: &[Vec<f32>], b: &[Vec<f32>]) -> usize {
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            let (sx, sy) = (top5_set(x), top5_set(y));
            sx.iter().filter(|t| sy.contains(t)).count()
        })
        .sum()
}

#[test]
fn packed_kernels_are_as_faithful_as_candle() {
    if std::env::var_os("CALLM_SKIP_REAL_MODELS").is_some() {
        eprintln!("CALLM_SKIP_REAL_MODELS is set: skipping");
        return;
    }
    if !callm::kernels::enabled() {
        eprintln!("packed kernels do not run on this CPU: nothing to compare");
        return;
    }
    // `CALLM_NUMERICS_MODELS` (comma-separated file names) restricts the run, e.g. under an
    // emulator (scripts/test-aarch64.sh).
    let only = std::env::var("CALLM_NUMERICS_MODELS").ok();
    for file in [
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    ] {
        if only
            .as_deref()
            .is_some_and(|o| !o.split(',').any(|f| f.trim() == file))
        {
            continue;
        }
        let path = callm::paths::models_dir().join(file);
        assert!(
            path.is_file(),
            "{} is missing: run scripts/fetch-models.sh",
            path.display()
        );
        let opts = LoadOptions {
            model: path.display().to_string(),
            context: Some(512),
            ..Default::default()
        };
        let exact = logits(
            &opts,
            &[("CALLM_KERNELS", "off"), ("CANDLE_DEQUANTIZE_ALL", "1")],
        );
        let candle = logits(
            &opts,
            &[("CALLM_KERNELS", "off"), ("CALLM_KEEP_QUANT", "1")],
        );
        let packed = logits(&opts, &[]);
        let mut shared = (0, 0);
        for (i, ((e, c), p)) in exact.iter().zip(&candle).zip(&packed).enumerate() {
            let (rc, rp) = (rms(c, e), rms(p, e));
            let (tc, tp) = (shared_top5(c, e), shared_top5(p, e));
            let same_as_candle = c
                .iter()
                .zip(p)
                .filter(|(x, y)| top5_set(x) == top5_set(y))
                .count();
            // Top-5 sets equal to candle's wherever candle's 5th and 6th logits are not a
            // near-tie (the two paths drift by up to ~0.5 logits, see the module docs).
            let separated: Vec<usize> = (0..c.len())
                .filter(|&pos| top5_gap(&c[pos]) >= NEAR_TIE)
                .collect();
            let differ: Vec<usize> = separated
                .iter()
                .copied()
                .filter(|&pos| top5_set(&c[pos]) != top5_set(&p[pos]))
                .collect();
            let rpc = rms(p, c);
            eprintln!(
                "{file} prompt {i} ({} positions): logit RMS error vs exact: candle {rc:.3}, packed {rp:.3}; \
                 top-5 tokens shared with exact: candle {tc}, packed {tp} of {}; top-5 sets equal to candle's at {same_as_candle} positions \
                 ({} of {} where candle has no near-tie); logit RMS packed vs candle {rpc:.3}",
                e.len(),
                5 * e.len(),
                separated.len() - differ.len(),
                separated.len(),
            );
            assert!(
                differ.is_empty(),
                "{file} prompt {i}: top-5 sets differ from candle's at positions {differ:?}"
            );
            assert!(
                rpc <= rc.max(rp),
                "{file} prompt {i}: packed and candle differ by {rpc} RMS, more than either's \
                 error vs the exact model ({rc}, {rp})"
            );
            assert!(
                rp <= rc * 1.25 + 0.02,
                "{file} prompt {i}: packed RMS error {rp} vs candle {rc}"
            );
            shared.0 += tc;
            shared.1 += tp;
        }
        // Top-5 near-ties swap either way between the two quantized paths: over all positions,
        // the packed kernels keep at least 95% of what candle keeps of the exact top 5.
        assert!(
            shared.1 * 100 >= shared.0 * 95,
            "{file}: packed shares {} top-5 tokens with the exact model, candle {}",
            shared.1,
            shared.0
        );
    }
}
