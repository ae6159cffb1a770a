//! Continuous batching (issue 16) through the engine's scheduler, on every architecture of the
//! tiny fixture models: the same requests alone and in batches of 2, 3, 5 and 8 with staggered
//! arrivals, greedy and seeded, give exactly the same tokens; a prompt prefilled while others
//! decode changes nothing; a cancelled sequence leaves the batch at once and frees its memory;
//! a request that does not fit the KV budget waits for memory instead of failing.
//!
//! The reference is each request alone, with a scheduler that runs one sequence and feeds its
//! prompt one token per step: the slowest, unbatched way.

mod tiny_support;

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use callm::engine::generate::{generate, Detokenize};
use callm::engine::prefix_cache::PrefixCache;
use callm::engine::{
    CancelToken, FinishReason, GenerateParams, SamplingParams, Scheduler, SchedulerConfig,
};
use callm::metrics::Metrics;
use callm::model::weights::SafetensorsSource;
use callm::model::{LanguageModel, ModelConfig};
use candle_core::{DType, Device};
use serde_json::Value;

use tiny_support::ARCHS;

fn load(arch: &str) -> (Arc<dyn LanguageModel>, Vec<u32>) {
    let dir = callm::paths::fixtures_dir().join("tiny-models").join(arch);
    let text = std::fs::read_to_string(dir.join("config.json")).unwrap();
    let cfg = ModelConfig::from_hf_json(&text, "config.json").unwrap();
    let mut src =
        SafetensorsSource::open(&[dir.join("model.safetensors")], DType::F32, &Device::Cpu)
            .unwrap();
    let model = callm::model::load_model(cfg, &mut src, DType::F32, &Device::Cpu).unwrap();
    let g: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("golden.json")).unwrap()).unwrap();
    let ids = g["cases"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["input_ids"].as_array().unwrap().clone())
        .map(|x| x.as_u64().unwrap() as u32)
        .collect();
    (Arc::from(model), ids)
}

/// Detokenization is not under test here: every token is its own text.
struct Ids;

impl Detokenize for Ids {
    fn push(&mut self, id: u32) -> Result<String, String> {
        Ok(format!("<{id}>"))
    }
    fn finish(&mut self) -> Result<String, String> {
        Ok(String::new())
    }
}

fn scheduler(model: &Arc<dyn LanguageModel>, cfg: SchedulerConfig) -> Scheduler {
    Scheduler::start(
        model.clone(),
        Arc::new(PrefixCache::new(0)),
        Metrics::new(),
        256,
        cfg,
    )
    .unwrap()
}

/// One request: a prompt, its sampling, its length.
#[derive(Clone)]
struct Req {
    prompt: Vec<u32>,
    seed: Option<u64>,
    max_tokens: usize,
}

fn params(r: &Req) -> GenerateParams {
    GenerateParams {
        max_tokens: Some(r.max_tokens),
        sampling: match r.seed {
            None => SamplingParams::greedy(),
            Some(s) => SamplingParams {
                temperature: 0.9,
                top_p: 0.95,
                seed: Some(s),
                ..Default::default()
            },
        },
        ignore_eos: true,
        ..Default::default()
    }
}

fn run(s: &Scheduler, r: &Req, cancel: &CancelToken) -> (Vec<u32>, FinishReason) {
    run_with(s, r, cancel, &mut |_| {})
}

/// [`run`], calling `each` after every generated token.
fn run_with(
    s: &Scheduler,
    r: &Req,
    cancel: &CancelToken,
    each: &mut dyn FnMut(usize),
) -> (Vec<u32>, FinishReason) {
    let capacity = r.prompt.len() + r.max_tokens + 1;
    let mut seq = s
        .submit(r.prompt.clone(), capacity, cancel.clone())
        .unwrap();
    let mut n = 0;
    let stats = generate(
        &mut seq,
        &r.prompt,
        capacity,
        &params(r),
        &mut Ids,
        cancel,
        &mut |_| {
            n += 1;
            each(n);
            true
        },
    )
    .unwrap();
    (stats.output_ids, stats.finish)
}

/// The requests of an architecture: prompts of several lengths cut from its golden inputs,
/// greedy and seeded.
fn requests(ids: &[u32], n: usize) -> Vec<Req> {
    (0..n)
        .map(|i| {
            let len = 2 + (i * 7) % (ids.len() - 2).max(1);
            let start = i % 3;
            Req {
                prompt: ids[start..(start + len).min(ids.len())].to_vec(),
                seed: (i % 2 == 1).then_some(100 + i as u64),
                max_tokens: 6 + i % 5,
            }
        })
        .collect()
}

#[test]
fn batches_of_any_size_give_each_request_its_tokens_alone() {
    for arch in ARCHS {
        let (model, ids) = load(arch);
        let reqs = requests(&ids, 8);
        // Alone, one prompt token per step.
        let alone_cfg = SchedulerConfig {
            max_batch: 1,
            step_tokens: 1,
            prefill_chunk: 1,
            ..Default::default()
        };
        let s = scheduler(&model, alone_cfg);
        let want: Vec<Vec<u32>> = reqs
            .iter()
            .map(|r| run(&s, r, &CancelToken::new()).0)
            .collect();
        // Batched: small step budgets so prompts are chunked and mixed with decode steps.
        let s = Arc::new(scheduler(
            &model,
            SchedulerConfig {
                max_batch: 8,
                step_tokens: 6,
                prefill_chunk: 5,
                ..Default::default()
            },
        ));
        for size in [2usize, 3, 5, 8] {
            let handles: Vec<_> = (0..size)
                .map(|i| {
                    let (s, r) = (s.clone(), reqs[i].clone());
                    thread::spawn(move || {
                        // Staggered arrivals.
                        thread::sleep(Duration::from_millis(3 * i as u64));
                        run(&s, &r, &CancelToken::new()).0
                    })
                })
                .collect();
            for (i, h) in handles.into_iter().enumerate() {
                let got = h.join().unwrap();
                assert_eq!(got, want[i], "{arch}: request {i} in a batch of {size}");
            }
        }
    }
}

#[test]
fn cancelling_frees_the_sequence_and_leaves_the_others_unchanged() {
    let (model, ids) = load("qwen2");
    let reqs = requests(&ids, 3);
    let s = Arc::new(scheduler(&model, SchedulerConfig::default()));
    let want: Vec<Vec<u32>> = reqs
        .iter()
        .map(|r| run(&s, r, &CancelToken::new()).0)
        .collect();
    let long = Req {
        prompt: ids[..10].to_vec(),
        seed: None,
        max_tokens: 200,
    };
    // The victim cancels itself (as a client that goes away) after its fifth token, while the
    // others run beside it.
    let cancel = CancelToken::new();
    let victim = {
        let (s, c) = (s.clone(), cancel.clone());
        thread::spawn(move || {
            run_with(&s, &long, &c, &mut |n| {
                if n == 5 {
                    c.cancel();
                }
            })
        })
    };
    let others: Vec<_> = reqs
        .iter()
        .cloned()
        .map(|r| {
            let s = s.clone();
            thread::spawn(move || run(&s, &r, &CancelToken::new()).0)
        })
        .collect();
    let (out, finish) = victim.join().unwrap();
    assert_eq!(finish, FinishReason::Cancelled);
    assert!(out.len() < 200, "stopped early: {} tokens", out.len());
    for (i, h) in others.into_iter().enumerate() {
        assert_eq!(h.join().unwrap(), want[i], "request {i}");
    }
    // Every sequence has left: no memory reserved or allocated, nothing running (the gauges
    // are current once `sync` returns).
    s.sync();
    let m = s.metrics();
    assert_eq!(m.running.get(), 0);
    assert_eq!((m.kv_bytes.get(), m.kv_reserved_bytes.get()), (0, 0));
}

#[test]
fn a_request_that_does_not_fit_the_kv_budget_waits_for_memory() {
    let (model, ids) = load("llama3");
    let per_position = model.new_cache(1).unwrap().position_bytes();
    let req = Req {
        prompt: ids[..8].to_vec(),
        seed: Some(5),
        max_tokens: 20,
    };
    let capacity = req.prompt.len() + req.max_tokens + 1;
    // Room for two such sequences at once, eight of them submitted together.
    let s = Arc::new(scheduler(
        &model,
        SchedulerConfig {
            kv_budget_bytes: Some(2 * capacity * per_position + per_position),
            ..Default::default()
        },
    ));
    let want = run(&s, &req, &CancelToken::new()).0;
    let peak = Arc::new(std::sync::atomic::AtomicI64::new(0));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (s, peak, done) = (s.clone(), peak.clone(), done.clone());
        thread::spawn(move || {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let m = s.metrics();
                peak.fetch_max(m.running.get(), std::sync::atomic::Ordering::Relaxed);
                thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let (s, r) = (s.clone(), req.clone());
            thread::spawn(move || run(&s, &r, &CancelToken::new()).0)
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), want);
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    watcher.join().unwrap();
    let peak = peak.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        (1..=2).contains(&peak),
        "at most two sequences at once, saw {peak}"
    );
    // A request bigger than the whole budget is refused with a clear error, not queued forever.
    let huge = s.submit(ids[..8].to_vec(), 10_000, CancelToken::new());
    assert!(huge.is_err());
}
