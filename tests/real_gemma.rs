//! The real gemma-3-270m (base) Q4_K_M GGUF (`scripts/fetch-models.sh gemma`, see
//! ../shared/ASSETS.md) against llama.cpp: `../shared/fixtures/reference-outputs/
//! gemma-3-270m-q4_k_m.llamacpp.json` holds llama.cpp's tokenization of six prompts, its
//! 24-token greedy continuations and its top-5 log-probabilities at every step (llama.cpp
//! from the llama-cpp-python 0.3.36 sdist, CPU, 1 thread; see that folder's README).
//!
//! Both engines quantize activations to 8 bits before each quantized matmul, and on this model
//! that rounding is chaotic: callm's own decode and prefill of the same tokens (same weights,
//! same quantization, attention summed in a different order) differ by up to 0.29 in the
//! log-probabilities of the top 5 tokens, while with the weights dequantized to f32 they agree
//! to 3e-5. So two engines agree to a few tenths, not bit for bit, and a greedy choice may flip
//! where llama.cpp's top two log-probabilities are within that noise. The test therefore checks:
//! - greedy generation gives llama.cpp's tokens up to any divergence, and a divergence only at a
//!   step where callm picked one of llama.cpp's top 5 whose log-probability is within [`NOISE`]
//!   of llama.cpp's first (a near-tie of two or more; it says where that happened),
//!   with at least 8 tokens agreeing before a divergence that is not at such a tie of the first
//!   two (callm's batch-invariant attention, issue 16, sums in another order than before and
//!   moved two prompts' near-ties: at steps 5 and 7, gaps 0.26 and a three-way 0.075);
//! - fed llama.cpp's own tokens, at every step of every prompt, the probabilities callm gives
//!   llama.cpp's top 5 are within [`MAX_PROB_DIFF`] of llama.cpp's, and callm's top token is
//!   llama.cpp's wherever llama.cpp's top-2 gap is at least [`NEAR_TIE`].
//!
//! A missing model fails the test with a message saying how to fetch it; set
//! `CALLM_SKIP_REAL_MODELS=1` to skip it explicitly.

use std::path::PathBuf;

use callm::engine::{CancelToken, SamplingParams};
use callm::registry::Registry;
use callm::runtime::{LoadOptions, LoadedModel};
use serde_json::Value;

const GEMMA: &str = "gemma-3-270m-q4_k_m.gguf";

/// A top-2 log-probability gap (nats) below which the two engines may pick differently: the
/// activation-rounding noise measured above (0.29).
const NEAR_TIE: f64 = 0.3;

/// How far below llama.cpp's first token (log-probability, nats) the token callm picks where
/// the two diverge may lie: what two valid computations of this model differ by. Measured,
/// fed llama.cpp's tokens over the six prompts: callm with an f32 and with an f16 KV cache (the
/// default for quantized weights, and llama.cpp's) differ by up to 0.62 in the
/// log-probabilities of llama.cpp's top 5, and callm (f32 cache) and llama.cpp by up to 0.63.
/// (With the f16 cache, "12 times 7" diverges at a three-way tie of digits, 0.14 and 0.43
/// below the first, where callm picks the third.)
const NOISE: f64 = 0.65;

/// Largest difference allowed between callm's and llama.cpp's probability of each of
/// llama.cpp's top-5 tokens (measured: at most 0.095 over the six prompts).
const MAX_PROB_DIFF: f64 = 0.15;

fn model_path() -> Option<PathBuf> {
    if std::env::var_os("CALLM_SKIP_REAL_MODELS").is_some() {
        eprintln!("CALLM_SKIP_REAL_MODELS is set: skipping the test that needs {GEMMA}");
        return None;
    }
    let p = callm::paths::models_dir().join(GEMMA);
    assert!(
        p.is_file(),
        "{} is missing: run scripts/fetch-models.sh gemma (or set CALLM_SKIP_REAL_MODELS=1)",
        p.display()
    );
    Some(p)
}

fn reference() -> Vec<Value> {
    let p =
        callm::paths::fixtures_dir().join("reference-outputs/gemma-3-270m-q4_k_m.llamacpp.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// llama.cpp's top-5 `(id, log-probability)` at one step.
fn top5(step: &Value) -> Vec<(u32, f64)> {
    step.as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_u64().unwrap() as u32, p[1].as_f64().unwrap()))
        .collect()
}

#[test]
fn gemma3_270m_matches_llama_cpp_greedy() {
    let Some(path) = model_path() else { return };
    let opts = LoadOptions {
        model: path.display().to_string(),
        context: Some(1024),
        ..Default::default()
    };
    let lm = LoadedModel::load(&opts, &Registry::builtin()).unwrap();
    // The shape gemma-3-270m's GGUF metadata declares (ASSETS.md: arch gemma3).
    let c = lm.model.config();
    assert_eq!(
        (
            c.num_layers,
            c.hidden_size,
            c.num_heads,
            c.num_kv_heads,
            c.head_dim
        ),
        (18, 640, 4, 1, 256)
    );
    assert_eq!(c.sliding_window, Some(512));
    let global: Vec<usize> = (0..18).filter(|&i| !c.opts.is_sliding(i)).collect();
    assert_eq!(global, vec![5, 11, 17], "every 6th layer is global");
    assert!(c.tie_word_embeddings);

    let mut diverged = vec![];
    for case in reference() {
        let prompt = case["prompt"].as_str().unwrap();
        let want_prompt = ids(&case["prompt_token_ids"]);
        let got_prompt = lm.tokenizer.encode(prompt, true).unwrap();
        assert_eq!(got_prompt, want_prompt, "tokenization of {prompt:?}");

        let want = ids(&case["greedy_token_ids"]);
        let steps = case["top5_logprobs_per_step"].as_array().unwrap();
        let mut params = lm.default_params();
        params.sampling = SamplingParams::greedy();
        params.max_tokens = Some(want.len());
        params.stop_token_ids.clear();
        let got = lm
            .generate(&want_prompt, &params, &CancelToken::new(), &mut |_| true)
            .unwrap()
            .output_ids;
        let same = got.iter().zip(&want).take_while(|(a, b)| a == b).count();
        let mut at_tie = false;
        if same < want.len() {
            let t = top5(&steps[same]);
            let gap = t[0].1 - t[1].1;
            let picked = t.iter().find(|(id, _)| got.get(same) == Some(id));
            assert!(
                picked.is_some_and(|p| t[0].1 - p.1 < NOISE),
                "{prompt:?}: callm {got:?} vs llama.cpp {want:?} differ at step {same}, where \
                 llama.cpp's top five are {t:?}: callm's token is not within {NOISE} of the top"
            );
            at_tie = gap < NEAR_TIE;
            diverged.push(format!(
                "{prompt:?} at step {same} (llama.cpp top-2 gap {gap:.4})"
            ));
        }
        // The text up to any divergence is llama.cpp's, so coherent English/code.
        let text = lm.tokenizer.decode(&got[..same], false).unwrap();
        let want_text = case["greedy_text"].as_str().unwrap();
        assert!(want_text.starts_with(&text), "{text:?} vs {want_text:?}");
        assert!(same >= 8 || at_tie, "{prompt:?}: only {same} tokens agree");
    }
    if !diverged.is_empty() {
        eprintln!("diverged at near-ties only: {}", diverged.join("; "));
    }
    teacher_forced_steps_match(&lm);
}

/// Every step fed llama.cpp's tokens: probabilities of its top 5 close to its own, and the
/// same top token wherever its top two are not nearly tied.
fn teacher_forced_steps_match(lm: &LoadedModel) {
    for case in reference() {
        let prompt = ids(&case["prompt_token_ids"]);
        let want = ids(&case["greedy_token_ids"]);
        let steps = case["top5_logprobs_per_step"].as_array().unwrap();
        let mut cache = lm.model.new_cache(256).unwrap();
        let mut logits = lm.model.forward(&prompt, &mut cache, false).unwrap();
        for (step, top) in steps.iter().enumerate() {
            let lp = candle_nn::ops::log_softmax(&logits.squeeze(0).unwrap(), 0)
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            let t = top5(top);
            for &(id, want_lp) in &t {
                let d = ((lp[id as usize] as f64).exp() - want_lp.exp()).abs();
                assert!(
                    d <= MAX_PROB_DIFF,
                    "{:?} step {step} token {id}: probability differs by {d:.3}",
                    case["prompt"]
                );
            }
            let ours = (0..lp.len())
                .max_by(|&a, &b| lp[a].total_cmp(&lp[b]))
                .unwrap() as u32;
            assert!(
                ours == t[0].0 || t[0].1 - t[1].1 < NEAR_TIE,
                "{:?} step {step}: callm's top token {ours}, llama.cpp's {:?}",
                case["prompt"],
                &t[..2]
            );
            logits = lm.model.forward(&[want[step]], &mut cache, false).unwrap();
        }
    }
}
