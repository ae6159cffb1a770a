//! Continuous batching on the real GGUFs (issue 16): SmolLM2-135M Q4_1 and
//! Qwen2.5-Coder-0.5B Q4_K_M, whose 8-bit activation quantization turns any last-bit
//! difference of another batching into visibly different text. Eight requests, greedy and
//! seeded, arrive staggered while a long prompt is prefilled among them; each one's tokens must
//! equal those it gets alone (each reference run from an empty prefix cache).
//!
//! A missing model fails the test with a message saying how to fetch it; set
//! `CALLM_SKIP_REAL_MODELS=1` to skip these tests explicitly.

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use callm::engine::{CancelToken, GenerateParams, SamplingParams};
use callm::registry::Registry;
use callm::runtime::{LoadOptions, LoadedModel};

fn load(file: &str) -> Option<Arc<LoadedModel>> {
    if std::env::var_os("CALLM_SKIP_REAL_MODELS").is_some() {
        eprintln!("CALLM_SKIP_REAL_MODELS is set: skipping the test that needs {file}");
        return None;
    }
    let p = callm::paths::models_dir().join(file);
    assert!(
        p.is_file(),
        "{} is missing: run scripts/fetch-models.sh (or set CALLM_SKIP_REAL_MODELS=1)",
        p.display()
    );
    let opts = LoadOptions {
        model: p.display().to_string(),
        context: Some(2048),
        ..Default::default()
    };
    Some(Arc::new(
        LoadedModel::load(&opts, &Registry::builtin()).unwrap(),
    ))
}

const QUESTIONS: &[&str] = &[
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "Explain recursion in one sentence.",
    "List three prime numbers.",
    "What does HTTP stand for?",
    "Give me a name for a cat.",
    "How many legs does a spider have?",
    "Translate 'good morning' into Spanish.",
];

fn chat_prompt(lm: &LoadedModel, q: &str) -> Vec<u32> {
    let text = format!("<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n");
    lm.tokenizer.encode(&text, false).unwrap()
}

fn params(lm: &LoadedModel, i: usize, n: usize) -> GenerateParams {
    let mut p = lm.default_params();
    p.max_tokens = Some(n);
    p.sampling = if i.is_multiple_of(2) {
        SamplingParams::greedy()
    } else {
        SamplingParams {
            temperature: 0.8,
            top_p: 0.95,
            seed: Some(7 + i as u64),
            ..Default::default()
        }
    };
    p
}

fn ids(lm: &LoadedModel, prompt: &[u32], p: &GenerateParams) -> Vec<u32> {
    lm.generate(prompt, p, &CancelToken::new(), &mut |_| true)
        .unwrap()
        .output_ids
}

fn same_alone_and_batched(file: &str) {
    let Some(lm) = load(file) else { return };
    let prompts: Vec<Vec<u32>> = QUESTIONS.iter().map(|q| chat_prompt(&lm, q)).collect();
    let want: Vec<Vec<u32>> = prompts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            lm.clear_prefix_cache();
            ids(&lm, p, &params(&lm, i, 16))
        })
        .collect();
    // A long prompt (about 600 tokens) whose prefill runs among the others' decode steps.
    let long_q = QUESTIONS.join(" ").repeat(8);
    let long = chat_prompt(&lm, &long_q);
    lm.clear_prefix_cache();
    let want_long = ids(&lm, &long, &params(&lm, 0, 4));
    lm.clear_prefix_cache();
    let handles: Vec<_> = (0..prompts.len())
        .map(|i| {
            let (lm, p) = (lm.clone(), prompts[i].clone());
            thread::spawn(move || {
                thread::sleep(Duration::from_millis(60 * i as u64));
                ids(&lm, &p, &params(&lm, i, 16))
            })
        })
        .collect();
    let late = {
        let (lm, p) = (lm.clone(), long.clone());
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(150));
            ids(&lm, &p, &params(&lm, 0, 4))
        })
    };
    for (i, h) in handles.into_iter().enumerate() {
        assert_eq!(h.join().unwrap(), want[i], "{file}: request {i} batched");
    }
    assert_eq!(late.join().unwrap(), want_long, "{file}: the long prompt");
}

#[test]
fn smollm2_requests_get_their_tokens_alone_in_a_batch() {
    same_alone_and_batched("SmolLM2-135M-Instruct.Q4_1.gguf");
}

#[test]
fn qwen_requests_get_their_tokens_alone_in_a_batch() {
    same_alone_and_batched("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf");
}
