//! Batch invariance of the forward pass (issue 16): a sequence's logits are the same bit for
//! bit whether it runs alone or in a batched pass with other sequences, whatever their number,
//! order and kind of work (prefill chunks, decode steps), however its prompt is chunked, and
//! when it resumes from a copy of a cache at any position. On every architecture of the tiny
//! fixture models (dense f32 weights: callm's dense kernel); the quantized kernels on the
//! real GGUFs in `real_models.rs`.
//!
//! The reference is each sequence alone, computed position by position: decoding one token at
//! a time, which is what the issue asks batched and chunked runs to reproduce exactly.

mod tiny_support;

use std::path::Path;

use callm::model::weights::SafetensorsSource;
use callm::model::{BatchItem, KvCache, LanguageModel, Logits, ModelConfig};
use candle_core::{DType, Device};
use serde_json::Value;

use tiny_support::ARCHS;

fn load(dir: &Path) -> Box<dyn LanguageModel> {
    let text = std::fs::read_to_string(dir.join("config.json")).unwrap();
    let cfg = ModelConfig::from_hf_json(&text, "config.json").unwrap();
    let mut src =
        SafetensorsSource::open(&[dir.join("model.safetensors")], DType::F32, &Device::Cpu)
            .unwrap();
    callm::model::load_model(cfg, &mut src, DType::F32, &Device::Cpu).unwrap()
}

/// Prompts for a fixture: its golden cases' inputs and variations of them (different
/// lengths, a shared prefix, a token changed).
fn prompts(dir: &Path) -> Vec<Vec<u32>> {
    let g: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("golden.json")).unwrap()).unwrap();
    let cases: Vec<Vec<u32>> = g["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            c["input_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as u32)
                .collect()
        })
        .collect();
    let long = cases.iter().max_by_key(|c| c.len()).unwrap().clone();
    let mut changed = long.clone();
    let mid = changed.len() / 2;
    changed[mid] = changed[0];
    let mut doubled = long.clone();
    doubled.extend_from_slice(&long);
    vec![
        long.clone(),
        cases[0].clone(),
        long[..3.min(long.len())].to_vec(),
        changed,
        doubled,
    ]
}

fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best as u32
}

/// Logits of every prompt position and of `gen` greedy steps after it, computed one token
/// at a time with the sequence alone; and the tokens it fed.
fn alone(model: &dyn LanguageModel, prompt: &[u32], gen: usize) -> (Vec<Vec<f32>>, Vec<u32>) {
    let mut cache = model.new_cache(256).unwrap();
    let mut fed = prompt.to_vec();
    let mut out = Vec::new();
    let mut i = 0;
    while i < fed.len() {
        let l = model.forward(&fed[i..i + 1], &mut cache, false).unwrap();
        let row: Vec<f32> = l.squeeze(0).unwrap().to_vec1().unwrap();
        if i + 1 == fed.len() && out.len() < prompt.len() + gen - 1 {
            fed.push(argmax(&row));
        }
        out.push(row);
        i += 1;
    }
    (out, fed)
}

/// One sequence in the batched run: what it feeds (its prompt, then its greedy tokens) and
/// how many tokens it takes per pass while in its prompt.
struct Seq {
    fed: Vec<u32>,
    prompt: usize,
    chunk: usize,
    done: usize,
    cache: KvCache,
    logits: Vec<Vec<f32>>,
}

/// Runs all sequences together, one pass per step, each taking its next prompt chunk or its
/// next token; sequence `s` joins at step `starts[s]`, and the order in the pass rotates.
fn batched(model: &dyn LanguageModel, seqs: &mut [Seq], starts: &[usize]) {
    let mut step = 0;
    while seqs.iter().any(|s| s.done < s.fed.len()) {
        let mut active: Vec<&mut Seq> = seqs
            .iter_mut()
            .enumerate()
            .filter(|(i, s)| starts[*i] <= step && s.done < s.fed.len())
            .map(|(_, s)| s)
            .collect();
        step += 1;
        if active.is_empty() {
            continue;
        }
        let k = step % active.len();
        active.rotate_left(k);
        let mut items = Vec::new();
        let mut counts = Vec::new();
        for seq in active.iter_mut() {
            let n = if seq.done < seq.prompt {
                seq.chunk.min(seq.prompt - seq.done)
            } else {
                1
            };
            counts.push(n);
            let Seq {
                fed, cache, done, ..
            } = &mut **seq;
            items.push(BatchItem {
                tokens: &fed[*done..*done + n],
                cache,
                logits: Logits::All,
            });
        }
        let logits = model.forward_batch(&mut items).unwrap();
        drop(items);
        let rows: Vec<Vec<f32>> = logits.to_vec2().unwrap();
        let mut r = 0;
        for (seq, n) in active.iter_mut().zip(counts) {
            seq.logits.extend(rows[r..r + n].iter().cloned());
            r += n;
            seq.done += n;
        }
    }
}

#[test]
fn a_sequence_is_the_same_alone_batched_chunked_or_resumed() {
    for arch in ARCHS {
        let dir = callm::paths::fixtures_dir().join("tiny-models").join(arch);
        let model = load(&dir);
        let model = model.as_ref();
        let gen = 6;
        let ps = prompts(&dir);
        let refs: Vec<(Vec<Vec<f32>>, Vec<u32>)> =
            ps.iter().map(|p| alone(model, p, gen)).collect();
        // Batches of 2, 3 and 5 sequences, staggered, each prompt chunked its own way.
        for (size, chunks, starts) in [
            (2usize, vec![64usize, 1], vec![0usize, 1]),
            (3, vec![5, 2, 64], vec![0, 0, 2]),
            (5, vec![3, 7, 1, 4, 64], vec![0, 3, 1, 0, 6]),
        ] {
            let mut seqs: Vec<Seq> = (0..size)
                .map(|i| Seq {
                    fed: refs[i].1.clone(),
                    prompt: ps[i].len(),
                    chunk: chunks[i],
                    done: 0,
                    cache: model.new_cache(256).unwrap(),
                    logits: vec![],
                })
                .collect();
            batched(model, &mut seqs, &starts);
            for (i, s) in seqs.iter().enumerate() {
                assert_eq!(s.logits.len(), refs[i].0.len(), "{arch}");
                for (pos, (got, want)) in s.logits.iter().zip(&refs[i].0).enumerate() {
                    assert!(
                        got == want,
                        "{arch}: sequence {i} in a batch of {size}, position {pos} differs"
                    );
                }
            }
        }
        // Resuming from a copy of a cache at any position (prefix reuse at any token).
        let (want, fed) = &refs[4];
        let mut full = model.new_cache(256).unwrap();
        model
            .forward(&fed[..fed.len() - 1], &mut full, true)
            .unwrap();
        for cut in [1, 2, 7, fed.len() / 2, fed.len() - 2] {
            let mut c = full.copy_prefix(cut, 256).unwrap();
            let got = model.forward(&fed[cut..], &mut c, true).unwrap();
            let got: Vec<Vec<f32>> = got.to_vec2().unwrap();
            for (k, row) in got.iter().enumerate() {
                assert!(
                    row == &want[cut + k],
                    "{arch}: resumed at {cut}, position {}",
                    cut + k
                );
            }
        }
    }
}
