//! Hostile and broken GGUF files: a test-side writer lays out a valid tiny model (the llama3
//! fixture's weights, a 512-token byte-level vocabulary, a chat template) byte by byte, then
//! mutates its metadata values and counts (huge, zero, negative, NaN/inf, wrong types, huge
//! string and array lengths), its tensor table (shapes, types, offsets out of the file,
//! overlapping, misaligned) and its length (truncation). Every file is loaded through the full
//! `LoadedModel` path; the outcome must be a clear error or a model that generates, never a
//! panic or an abort, within bounded time and memory: the loads run in a child process under
//! an address-space and a CPU-time limit (`template_support::bounded`). Named cases check that
//! the error names the key (or tensor) and its value, and that `callm serve` exits at start.

use std::path::{Path, PathBuf};

use callm::engine::{CancelToken, SamplingParams};
use callm::registry::Registry;
use callm::runtime::{LoadOptions, LoadedModel};
use candle_core::{Device, Tensor};

#[path = "template_support/mod.rs"]
mod template_support;
use template_support::bounded;

#[path = "gguf_support/mod.rs"]
mod gguf_support;
use gguf_support::*;

/// The valid tiny model: the llama3 fixture's f32 weights under llama.cpp's names, a
/// byte-level vocabulary of exactly 512 tokens, a ChatML template.
fn valid() -> Gguf {
    let fx = callm::paths::fixtures_dir().join("tiny-models/llama3");
    let ts = candle_core::safetensors::load(fx.join("model.safetensors"), &Device::Cpu).unwrap();
    let mut names: Vec<&String> = ts.keys().collect();
    names.sort();
    let mut tensors = vec![];
    let mut at = 0u64;
    for name in names {
        let t: &Tensor = &ts[name];
        let mut n = name.replace("model.layers.", "blk.");
        for (from, to) in [
            ("model.embed_tokens", "token_embd"),
            ("model.norm", "output_norm"),
            ("lm_head", "output"),
            ("input_layernorm", "attn_norm"),
            ("post_attention_layernorm", "ffn_norm"),
            ("self_attn.q_proj", "attn_q"),
            ("self_attn.k_proj", "attn_k"),
            ("self_attn.v_proj", "attn_v"),
            ("self_attn.o_proj", "attn_output"),
            ("mlp.gate_proj", "ffn_gate"),
            ("mlp.up_proj", "ffn_up"),
            ("mlp.down_proj", "ffn_down"),
        ] {
            n = n.replace(from, to);
        }
        let data: Vec<u8> = t
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let len = data.len() as u64;
        tensors.push(TensorEntry {
            name: n,
            dims: t.dims().iter().rev().map(|&d| d as u64).collect(),
            dtype: 0,
            offset: at,
            data,
            data_at: at,
        });
        at = (at + len).next_multiple_of(32);
    }
    let mut meta = vec![
        ("general.architecture".to_string(), strv("llama")),
        ("general.name".into(), strv("hostile-test")),
        ("llama.context_length".into(), u32v(256)),
        ("llama.embedding_length".into(), u32v(64)),
        ("llama.block_count".into(), u32v(2)),
        ("llama.feed_forward_length".into(), u32v(128)),
        ("llama.attention.head_count".into(), u32v(4)),
        ("llama.attention.head_count_kv".into(), u32v(2)),
        ("llama.attention.layer_norm_rms_epsilon".into(), f32v(1e-5)),
        ("llama.rope.freq_base".into(), f32v(5e5)),
        ("llama.rope.dimension_count".into(), u32v(16)),
    ];
    meta.extend(tokenizer_meta());
    Gguf {
        meta,
        tensors,
        truncate: 0,
    }
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("callm-hostile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("{name}.gguf"))
}

/// Loads `path` (default context unless `ctx`); when it loads, generates a few tokens. Returns
/// the load or generation error (a declared context of one position loads, but no prompt fits).
fn load_and_run(path: &Path, ctx: Option<usize>) -> Result<(), String> {
    let opts = LoadOptions {
        model: path.display().to_string(),
        device: Some("cpu".into()),
        context: ctx,
        ..Default::default()
    };
    let lm = LoadedModel::load(&opts, &Registry::builtin()).map_err(|e| format!("{e:#}"))?;
    let mut params = lm.default_params();
    params.sampling = SamplingParams::greedy();
    params.max_tokens = Some(4);
    params.ignore_eos = true;
    let prompt = lm.tokenizer.encode("hello", false).unwrap();
    let stats = lm
        .generate(&prompt, &params, &CancelToken::new(), &mut |_| true)
        .map_err(|e| format!("{}: generate: {e}", path.display()))?;
    assert_eq!(stats.output_ids.len(), 4);
    Ok(())
}

/// glibc reserves 64 MiB of address space per malloc arena (up to 8 per core); the limit is
/// about what callm allocates, so the child keeps two.
fn few_arenas() {
    // SAFETY: mallopt only sets an allocator tunable.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 2) };
}

/// `mutate` applied to the valid file: the load fails with an error containing every needle.
fn refused(name: &str, mutate: impl Fn(&mut Gguf), needles: &[&str]) {
    let mut g = valid();
    mutate(&mut g);
    let path = tmp(name);
    g.write(&path);
    match load_and_run(&path, None) {
        Ok(()) => panic!("{name}: loaded"),
        Err(e) => {
            for n in needles {
                assert!(e.contains(n), "{name}: {e:?} lacks {n:?}");
            }
            assert!(
                e.contains(&path.display().to_string()),
                "{name}: {e} names no file"
            );
        }
    }
    std::fs::remove_file(&path).ok();
}

#[test]
fn the_valid_file_loads_and_generates_under_the_limit() {
    bounded("the_valid_file_loads_and_generates_under_the_limit", || {
        few_arenas();
        let path = tmp("valid");
        valid().write(&path);
        load_and_run(&path, None).unwrap();
        // The engine under the same limit: a longer greedy run over the whole context.
        let lm = LoadedModel::load(
            &LoadOptions {
                model: path.display().to_string(),
                ..Default::default()
            },
            &Registry::builtin(),
        )
        .unwrap();
        let mut params = lm.default_params();
        params.max_tokens = Some(200);
        params.ignore_eos = true;
        let stats = lm
            .generate(&[256, 104, 105], &params, &CancelToken::new(), &mut |_| {
                true
            })
            .unwrap();
        assert_eq!(stats.output_ids.len(), 200);
    });
}

#[test]
fn named_hostile_values_are_refused_with_the_key_and_value() {
    bounded(
        "named_hostile_values_are_refused_with_the_key_and_value",
        || {
            few_arenas();
            refused(
                "layers",
                |g| g.set("llama.block_count", u32v(u32::MAX)),
                &["llama.block_count = 4294967295"],
            );
            refused(
                "extra-layers",
                |g| g.set("llama.block_count", u32v(1)),
                &["llama.block_count = 1", "more layers"],
            );
            refused(
                "rope-dims",
                |g| g.set("llama.rope.dimension_count", u32v(u32::MAX)),
                &["llama.rope.dimension_count", "4294967295 rotary dimensions"],
            );
            refused(
                "odd-rope",
                |g| g.set("llama.rope.dimension_count", u32v(15)),
                &["llama.rope.dimension_count", "15 rotary"],
            );
            refused(
                "alignment",
                |g| g.set("general.alignment", u32v(0)),
                &["general.alignment = 0"],
            );
            refused(
                "nan-base",
                |g| g.set("llama.rope.freq_base", f32v(f32::NAN)),
                &["llama.rope.freq_base = NaN"],
            );
            refused(
                "nan-eps",
                |g| g.set("llama.attention.layer_norm_rms_epsilon", f32v(f32::NAN)),
                &["llama.attention.layer_norm_rms_epsilon = NaN"],
            );
            refused(
                "inf-eps",
                |g| {
                    g.set(
                        "llama.attention.layer_norm_rms_epsilon",
                        f32v(f32::INFINITY),
                    )
                },
                &["layer_norm_rms_epsilon = inf"],
            );
            refused(
                "negative",
                |g| {
                    g.set(
                        "llama.attention.head_count_kv",
                        Val(I32, (-1i32).to_le_bytes().to_vec()),
                    )
                },
                &["llama.attention.head_count_kv = -1"],
            );
            refused(
                "string-count",
                |g| g.set("llama.block_count", strv("2")),
                &["llama.block_count", "not an integer"],
            );
            refused(
                "zero-embedding",
                |g| g.set("llama.embedding_length", u32v(0)),
                &["llama.embedding_length = 0"],
            );
            refused(
                "hidden-mismatch",
                |g| {
                    g.set("llama.embedding_length", u32v(32));
                    g.set("llama.attention.key_length", u32v(16));
                },
                &["llama.embedding_length = 32", "token_embd.weight"],
            );
            refused(
                "heads-mismatch",
                |g| g.set("llama.attention.head_count_kv", u32v(1)),
                &["llama.attention.head_count_kv = 1", "blk.0.attn_k.weight"],
            );
            refused(
                "big-tokenizer",
                |g| {
                    let tokens: Vec<Vec<u8>> =
                        (0..600).map(|i| str_bytes(&format!("t{i}"))).collect();
                    g.set("tokenizer.ggml.tokens", arr(STR, &tokens));
                    g.set(
                        "tokenizer.ggml.token_type",
                        arr(I32, &vec![1i32.to_le_bytes().to_vec(); 600]),
                    );
                },
                &["600 tokens", "512 rows"],
            );
            refused(
                "nan-weights",
                |g| {
                    let t = g.tensor("output_norm.weight");
                    t.data[..4].copy_from_slice(&f32::NAN.to_le_bytes());
                },
                &["non-finite logit"],
            );
            refused(
                "overlap",
                |g| {
                    let off = g.tensor("blk.0.attn_k.weight").offset;
                    g.tensor("blk.0.attn_q.weight").offset = off;
                },
                &["overlap"],
            );
            refused(
                "outside",
                |g| g.tensor("token_embd.weight").offset = 1 << 40,
                &["token_embd.weight", "truncated or corrupt"],
            );
            // A well-formed file in a block type callm cannot read (IQ3_S, of llama.cpp's
            // IQ3_M and IQ3_S files): the error names the tensor and the type, and says what
            // to use instead.
            refused(
                "iq3-s",
                |g| g.tensor("blk.0.attn_k.weight").dtype = 21,
                &[
                    "blk.0.attn_k.weight",
                    "IQ3_S (GGUF type 21)",
                    "cannot load",
                    "Q4_K_M",
                ],
            );
            // IQ4_XS loads, but only in rows of whole 256-value superblocks (these are 64 wide).
            refused(
                "iq4-xs-rows",
                |g| g.tensor("blk.0.attn_k.weight").dtype = 23,
                &["blk.0.attn_k.weight", "not whole IQ4_XS blocks of 256"],
            );
            refused(
                "unknown-type",
                |g| g.tensor("blk.0.attn_k.weight").dtype = 99,
                &["blk.0.attn_k.weight", "GGUF type 99, unknown to ggml"],
            );
            // An unsupported type does not hide corruption elsewhere.
            refused(
                "iq3-s-and-outside",
                |g| {
                    g.tensor("blk.0.attn_k.weight").dtype = 21;
                    g.tensor("token_embd.weight").offset = 1 << 40;
                },
                &["token_embd.weight", "truncated or corrupt"],
            );
            refused(
                "huge-dims",
                |g| g.tensor("output_norm.weight").dims = vec![u64::MAX, u64::MAX],
                &["output_norm.weight", "too large"],
            );
            refused(
                "huge-array",
                |g| {
                    let mut b = STR.to_le_bytes().to_vec();
                    b.extend_from_slice(&(1u64 << 40).to_le_bytes());
                    g.set("tokenizer.ggml.tokens", Val(ARR, b));
                },
                &["tokenizer.ggml.tokens", "1099511627776 elements"],
            );
        },
    );
}

#[test]
fn rope_tables_follow_the_allocated_context_not_the_declared_one() {
    bounded(
        "rope_tables_follow_the_allocated_context_not_the_declared_one",
        || {
            few_arenas();
            // 2^27 declared positions: tables of that many rows would need gigabytes.
            let mut g = valid();
            g.set("llama.context_length", u32v(1 << 27));
            let path = tmp("long-context");
            g.write(&path);
            load_and_run(&path, None).unwrap();
            load_and_run(&path, Some(512)).unwrap();
            let e = load_and_run(&path, Some((1 << 27) + 1)).unwrap_err();
            assert!(e.contains("--ctx 134217729 is out of range"), "{e}");
            std::fs::remove_file(&path).ok();
        },
    );
}

/// A small deterministic generator for the fuzz mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<T: Clone>(&mut self, xs: &[T]) -> T {
        xs[(self.next() % xs.len() as u64) as usize].clone()
    }
}

/// Values a mutation writes in place of a metadata value.
fn hostile_values() -> Vec<Val> {
    vec![
        u32v(0),
        u32v(1),
        u32v(3),
        u32v(u32::MAX),
        Val(U64, u64::MAX.to_le_bytes().to_vec()),
        Val(I32, (-1i32).to_le_bytes().to_vec()),
        f32v(f32::NAN),
        f32v(f32::INFINITY),
        f32v(-1.0),
        f32v(0.0),
        f32v(1e30),
        strv("x"),
        Val(BOOL, vec![1]),
        Val(BOOL, vec![7]),
        Val(99, vec![]),
        // A string or array declaring far more bytes than the file has.
        Val(STR, (1u64 << 40).to_le_bytes().to_vec()),
        Val(ARR, {
            let mut b = U32.to_le_bytes().to_vec();
            b.extend_from_slice(&(1u64 << 62).to_le_bytes());
            b
        }),
        arr(F32, &[f32::NAN.to_le_bytes().to_vec()]),
    ]
}

#[test]
fn mutated_files_fail_cleanly_or_run() {
    bounded("mutated_files_fail_cleanly_or_run", || {
        few_arenas();
        let keys: Vec<String> = valid().meta.iter().map(|(k, _)| k.clone()).collect();
        let path = tmp("fuzz");
        let (mut loaded, mut refused) = (0, 0);
        let mut run = |g: &Gguf, what: &str| {
            g.write(&path);
            match std::panic::catch_unwind(|| load_and_run(&path, None)) {
                Ok(Ok(())) => loaded += 1,
                Ok(Err(e)) => {
                    assert!(!e.is_empty(), "{what}: empty error");
                    refused += 1
                }
                Err(_) => panic!("{what}: panicked"),
            }
        };
        // Every metadata value replaced by every hostile value.
        for key in &keys {
            for v in hostile_values() {
                let mut g = valid();
                g.set(key, v.clone());
                run(
                    &g,
                    &format!("{key} = type {} {:?}", v.0, &v.1[..v.1.len().min(12)]),
                );
            }
        }
        // Extra keys the loader reads when present.
        for key in [
            "general.alignment",
            "llama.attention.key_length",
            "llama.rope.scaling.type",
            "llama.rope.scaling.factor",
            "tokenizer.ggml.bos_token_id",
            "tokenizer.ggml.add_bos_token",
        ] {
            for v in hostile_values() {
                let mut g = valid();
                g.set(key, v);
                run(&g, key);
            }
        }
        // The tensor table and the file length, at random.
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for i in 0..150 {
            let mut g = valid();
            let n = g.tensors.len();
            let t = &mut g.tensors[(rng.next() % n as u64) as usize];
            match i % 6 {
                0 => t.offset = rng.pick(&[1, 31, 1 << 20, u64::MAX - 7, t.offset + 32]),
                1 => {
                    let d = (rng.next() % t.dims.len() as u64) as usize;
                    t.dims[d] = rng.pick(&[0, 1, 2, 33, 1 << 31, u64::MAX]);
                }
                2 => t.dtype = rng.pick(&[1, 2, 8, 12, 14, 20, 21, 23, 30, 99]),
                3 => t.dims = rng.pick(&[vec![], vec![1; 5], vec![64], vec![64, 64, 2]]),
                4 => g.truncate = (rng.next() % 200_000) as usize,
                _ => t.name = rng.pick(&["blk.9.attn_q.weight".into(), "token_embd.weight".into()]),
            }
            run(&g, &format!("tensor mutation {i}"));
        }
        eprintln!("mutated files: {loaded} loaded and ran, {refused} refused");
        assert!(refused > 0 && loaded > 0);
        std::fs::remove_file(&path).ok();
    });
}

#[test]
fn serve_refuses_a_broken_model_at_start() {
    let mut g = valid();
    g.set("llama.rope.freq_base", f32v(f32::NAN));
    let path = tmp("serve");
    g.write(&path);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_callm"))
        .args(["serve", "--model"])
        .arg(&path)
        .args(["--port", "0"])
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "serve started: {err}");
    assert!(err.contains("llama.rope.freq_base = NaN"), "{err}");
    std::fs::remove_file(&path).ok();
}

#[test]
fn a_load_reports_its_progress_up_to_every_tensor_byte() {
    // The CLI's progress bar is told the bytes read after each tensor: they only grow, and end
    // at the size of all the tensors' data the writer laid out.
    let g = valid();
    let want: u64 = g.tensors.iter().map(|t| t.data.len() as u64).sum();
    let path = tmp("progress");
    g.write(&path);
    let calls = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = calls.clone();
    let opts = LoadOptions {
        model: path.display().to_string(),
        device: Some("cpu".into()),
        progress: Some(callm::model::weights::LoadProgress(std::sync::Arc::new(
            move |read, total| seen.lock().unwrap().push((read, total)),
        ))),
        ..Default::default()
    };
    LoadedModel::load(&opts, &Registry::builtin()).unwrap();
    std::fs::remove_file(&path).ok();
    let calls = calls.lock().unwrap();
    assert!(calls.len() > 1, "{calls:?}");
    assert!(
        calls.iter().all(|&(_, total)| total == want),
        "{calls:?} vs {want}"
    );
    assert!(calls.windows(2).all(|w| w[0].0 <= w[1].0), "{calls:?}");
    assert_eq!(calls.last().map(|c| c.0), Some(want));
}
