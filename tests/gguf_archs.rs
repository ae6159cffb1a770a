//! The tiny Qwen3, Qwen3-MoE, Gemma 3, Phi-3, Granite and SmolLM3 fixtures written as GGUF
//! files the way llama.cpp's `convert_hf_to_gguf.py` lays them out (its metadata keys and
//! tensor names; q/k rows permuted for the architectures llama.cpp ropes on interleaved pairs,
//! Granite and SmolLM3; Gemma's norm weights stored as `1 + w`; experts stacked into 3-D
//! `ffn_*_exps`), in f32 and Q8_0. Each must reproduce transformers' logits
//! (../shared/fixtures/tiny-models).
//!
//! Two keys are not llama.cpp's defaults: the files carry `gemma3.attention.sliding_window_pattern`
//! 2 (a key llama.cpp reads; its default is 6) because the fixture's two layers are one sliding,
//! one global; and `smollm3.no_rope_layer_interval` 2, a key only callm reads (llama.cpp fixes
//! the interval at 4, which would rope both layers of a two-layer model).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use callm::model::gguf::GgufFile;
use callm::model::LanguageModel;
use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use serde_json::Value;

const ARCHS: &[&str] = &["qwen3", "qwen3_moe", "gemma3", "phi3", "granite", "smollm3"];

fn fixture(arch: &str) -> PathBuf {
    callm::paths::fixtures_dir().join("tiny-models").join(arch)
}

fn json(path: PathBuf) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// llama.cpp's architecture name.
fn gguf_arch(arch: &str) -> &'static str {
    match arch {
        "qwen3" => "qwen3",
        "qwen3_moe" => "qwen3moe",
        "gemma3" => "gemma3",
        "phi3" => "phi3",
        "granite" => "granite",
        _ => "smollm3",
    }
}

/// A Hugging Face tensor name in llama.cpp's naming.
fn gguf_name(arch: &str, hf: &str) -> String {
    let mut n = hf.replace("model.layers.", "blk.");
    let post_attn = if arch == "gemma3" {
        "post_attention_norm"
    } else {
        "ffn_norm"
    };
    for (from, to) in [
        ("model.embed_tokens", "token_embd"),
        ("model.norm", "output_norm"),
        ("lm_head", "output"),
        ("input_layernorm", "attn_norm"),
        ("post_attention_layernorm", post_attn),
        ("pre_feedforward_layernorm", "ffn_norm"),
        ("post_feedforward_layernorm", "post_ffw_norm"),
        ("self_attn.q_proj", "attn_q"),
        ("self_attn.k_proj", "attn_k"),
        ("self_attn.v_proj", "attn_v"),
        ("self_attn.qkv_proj", "attn_qkv"),
        ("self_attn.o_proj", "attn_output"),
        ("self_attn.q_norm", "attn_q_norm"),
        ("self_attn.k_norm", "attn_k_norm"),
        ("mlp.gate_up_proj", "ffn_up"),
        ("mlp.gate_proj", "ffn_gate"),
        ("mlp.up_proj", "ffn_up"),
        ("mlp.down_proj", "ffn_down"),
        ("mlp.gate.", "ffn_gate_inp."),
    ] {
        n = n.replace(from, to);
    }
    n
}

/// `convert_hf_to_gguf.py`'s `LlamaModel.permute`: each head's rows reordered from the two
/// halves (rotate-half) to interleaved pairs.
fn permute(t: &Tensor, heads: usize) -> Tensor {
    let (out, inp) = t.dims2().unwrap();
    t.reshape((heads, 2, out / heads / 2, inp))
        .unwrap()
        .transpose(1, 2)
        .unwrap()
        .reshape((out, inp))
        .unwrap()
}

/// The fixture's tensors under their GGUF names, transformed as the converter does.
fn gguf_tensors(arch: &str, cfg: &Value) -> Vec<(String, Tensor)> {
    let mut ts: HashMap<String, Tensor> =
        candle_core::safetensors::load(fixture(arch).join("model.safetensors"), &Device::Cpu)
            .unwrap();
    let n = |k: &str| cfg[k].as_u64().unwrap() as usize;
    let mut out = vec![];
    if arch == "qwen3_moe" {
        // Experts stacked per layer: ffn_{gate,up,down}_exps [experts, out, in].
        for layer in 0..n("num_hidden_layers") {
            for (proj, short) in [
                ("gate_proj", "gate"),
                ("up_proj", "up"),
                ("down_proj", "down"),
            ] {
                let parts: Vec<Tensor> = (0..n("num_local_experts"))
                    .map(|e| {
                        ts.remove(&format!(
                            "model.layers.{layer}.mlp.experts.{e}.{proj}.weight"
                        ))
                        .unwrap()
                    })
                    .collect();
                out.push((
                    format!("blk.{layer}.ffn_{short}_exps.weight"),
                    Tensor::stack(&parts, 0).unwrap(),
                ));
            }
        }
    }
    let mut names: Vec<String> = ts.keys().cloned().collect();
    names.sort();
    for name in names {
        let mut t = ts[&name].clone();
        let interleaved = matches!(arch, "granite" | "smollm3");
        if interleaved && name.ends_with("self_attn.q_proj.weight") {
            t = permute(&t, n("num_attention_heads"));
        }
        if interleaved && name.ends_with("self_attn.k_proj.weight") {
            t = permute(&t, n("num_key_value_heads"));
        }
        if arch == "gemma3" && name.ends_with("norm.weight") {
            t = (t + 1.0).unwrap();
        }
        out.push((gguf_name(arch, &name), t));
    }
    out
}

fn metadata(arch: &str, cfg: &Value) -> Vec<(String, gguf_file::Value)> {
    use gguf_file::Value as V;
    let u = |k: &str| V::U32(cfg[k].as_u64().unwrap() as u32);
    let f = |x: f64| V::F32(x as f32);
    let theta = cfg["rope_parameters"]["rope_theta"]
        .as_f64()
        .or_else(|| cfg["rope_parameters"]["full_attention"]["rope_theta"].as_f64())
        .unwrap();
    let mut m: Vec<(&str, V)> = vec![
        ("context_length", u("max_position_embeddings")),
        ("embedding_length", u("hidden_size")),
        ("block_count", u("num_hidden_layers")),
        ("feed_forward_length", u("intermediate_size")),
        ("attention.head_count", u("num_attention_heads")),
        ("attention.head_count_kv", u("num_key_value_heads")),
        (
            "attention.layer_norm_rms_epsilon",
            f(cfg["rms_norm_eps"].as_f64().unwrap()),
        ),
        ("rope.freq_base", f(theta)),
    ];
    if cfg.get("head_dim").is_some_and(|h| !h.is_null()) {
        m.push(("attention.key_length", u("head_dim")));
        m.push(("attention.value_length", u("head_dim")));
    }
    match arch {
        "qwen3_moe" => {
            m.push(("expert_count", u("num_local_experts")));
            m.push(("expert_used_count", u("num_experts_per_tok")));
            m.push(("expert_feed_forward_length", u("moe_intermediate_size")));
        }
        "gemma3" => {
            m.push(("attention.sliding_window", u("sliding_window")));
            m.push((
                "attention.sliding_window_pattern",
                u("_sliding_window_pattern"),
            ));
        }
        "phi3" => {
            // convert_hf_to_gguf: int(partial_rotary_factor * n_embd) // n_head.
            let p = cfg["rope_parameters"]["partial_rotary_factor"]
                .as_f64()
                .unwrap();
            let rot = (p * cfg["hidden_size"].as_f64().unwrap()) as u32
                / cfg["num_attention_heads"].as_u64().unwrap() as u32;
            m.push(("rope.dimension_count", V::U32(rot)));
        }
        "granite" => {
            for (key, hf) in [
                ("embedding_scale", "embedding_multiplier"),
                ("residual_scale", "residual_multiplier"),
                ("attention.scale", "attention_multiplier"),
                ("logit_scale", "logits_scaling"),
            ] {
                m.push((key, f(cfg[hf].as_f64().unwrap())));
            }
        }
        "smollm3" => m.push(("no_rope_layer_interval", u("no_rope_layer_interval"))),
        _ => {}
    }
    let a = gguf_arch(arch);
    let mut out = vec![("general.architecture".to_string(), V::String(a.into()))];
    out.extend(m.into_iter().map(|(k, v)| (format!("{a}.{k}"), v)));
    out
}

fn write_gguf(arch: &str, quant: GgmlDType) -> PathBuf {
    let cfg = json(fixture(arch).join("config.json"));
    let qts: Vec<(String, QTensor)> = gguf_tensors(arch, &cfg)
        .into_iter()
        .map(|(name, t)| {
            // Matrices (and stacked experts) quantized as llama.cpp's converters do; norms
            // and expert routers (`ffn_gate_inp`, which llama.cpp never quantizes) f32.
            let router = name.contains("ffn_gate_inp");
            let dtype = if t.rank() >= 2 && !router {
                quant
            } else {
                GgmlDType::F32
            };
            (name, QTensor::quantize(&t, dtype).unwrap())
        })
        .collect();
    let md = metadata(arch, &cfg);
    let dir = std::env::temp_dir().join(format!("callm-gguf-archs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // One file per call: tests run in parallel and several write the same arch and kind, and
    // a file truncated and rewritten under another test's load breaks that load.
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = dir.join(format!("{arch}-{quant:?}-{n}.gguf"));
    let mut f = std::fs::File::create(&path).unwrap();
    let mdr: Vec<(&str, &gguf_file::Value)> = md.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tsr: Vec<(&str, &QTensor)> = qts.iter().map(|(k, v)| (k.as_str(), v)).collect();
    gguf_file::write(&mut f, &mdr, &tsr).unwrap();
    path
}

/// Per case, the max abs difference from transformers' logits at each position.
fn row_diffs(model: &dyn LanguageModel, arch: &str) -> Vec<Vec<f32>> {
    let g = json(fixture(arch).join("golden.json"));
    let refs =
        candle_core::safetensors::load(fixture(arch).join("logits.safetensors"), &Device::Cpu)
            .unwrap();
    g["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|case| {
            let ids: Vec<u32> = case["input_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as u32)
                .collect();
            let mut cache = model.new_cache(256).unwrap();
            let got = model.forward(&ids, &mut cache, true).unwrap();
            let want = &refs[case["logits_tensor"].as_str().unwrap()];
            (got - want)
                .unwrap()
                .abs()
                .unwrap()
                .max(1)
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        })
        .collect()
}

/// Max abs difference from transformers' logits over both cases, every position.
fn max_diff(model: &dyn LanguageModel, arch: &str) -> f32 {
    row_diffs(model, arch)
        .iter()
        .flatten()
        .fold(0f32, |m, &d| m.max(d))
}

fn load(path: &Path) -> Box<dyn LanguageModel> {
    GgufFile::open(path, &Device::Cpu)
        .unwrap()
        .load_decoder(&Device::Cpu)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn gguf_copies_of_the_new_archs_match_transformers() {
    for arch in ARCHS {
        // f32: the same numbers as the safetensors, so the fixture's own tolerance.
        let path = write_gguf(arch, GgmlDType::F32);
        let d = max_diff(load(&path).as_ref(), arch);
        assert!(d <= 1e-4, "{arch} f32 GGUF: max abs diff {d}");
        // Q8_0 (weights, and activations in the matmul, quantized): the tolerance of the other
        // GGUF tests, 0.3 (logits within ±3.6, std 0.8). Granite divides its logits by 8, so
        // its bound is divided by 8 too. Gemma 3's logits are twice as large (±6.2, std 1.6)
        // and its norms' gain twice as high, so the rounding noise is too (measured: 0.1-0.74
        // per position); its bound, 1.0, is still below the effect of every mistake in the
        // fixture README's sensitivity table (1.7 or more on some case).
        let path8 = write_gguf(arch, GgmlDType::Q8_0);
        let model = load(&path8);
        let tol = match *arch {
            "granite" => 0.3 / 8.0,
            "gemma3" => 1.0,
            _ => 0.3,
        };
        if *arch == "qwen3_moe" {
            // Routing is discontinuous: where a token's 2nd and 3rd expert are nearly tied, the
            // quantization noise flips the choice and moves that token's logits (and, through
            // attention, some later ones) by up to ~2. Measured: 34 of 40 positions of case 1
            // within the tolerance, all 5 of case 0. A wrong expert layout moves every position.
            // The quantized expert matmuls themselves are checked exactly below.
            for rows in row_diffs(model.as_ref(), arch) {
                let close = rows.iter().filter(|&&d| d <= tol).count();
                assert!(close * 5 >= rows.len() * 4, "{arch} Q8_0 GGUF: {rows:?}");
            }
        } else {
            let d = max_diff(model.as_ref(), arch);
            assert!(d <= tol, "{arch} Q8_0 GGUF: max abs diff {d}");
        }
        std::fs::remove_file(&path).ok();
        std::fs::remove_file(&path8).ok();
    }
}

#[test]
fn gguf_metadata_gives_the_new_archs_their_settings() {
    // What the loader reads from llama.cpp's keys (and its defaults), checked on the written
    // files against the fixtures' configs.
    let cfg = |arch: &str| {
        let path = write_gguf(arch, GgmlDType::F32);
        let c = GgufFile::open(&path, &Device::Cpu)
            .unwrap()
            .config()
            .unwrap();
        std::fs::remove_file(&path).ok();
        c
    };
    let g = cfg("gemma3");
    assert_eq!(g.sliding_window, Some(16));
    assert_eq!((g.opts.is_sliding(0), g.opts.is_sliding(1)), (true, false));
    assert_eq!(g.opts.local_rope_theta, Some(10_000.0));
    assert_eq!(g.rope_theta, 1e6);
    assert!(!g.rope_interleaved);
    let m = cfg("qwen3_moe");
    let moe = m.opts.moe.as_ref().unwrap();
    assert_eq!(
        (moe.num_experts, moe.top_k, moe.expert_intermediate_size),
        (4, 2, 64)
    );
    assert!(moe.norm_topk_prob && moe.sparse_layers == vec![true, true]);
    let p = cfg("phi3");
    assert_eq!((p.rotary_dim, p.head_dim), (12, 16));
    let s = cfg("smollm3");
    assert!(s.rope_interleaved && s.opts.uses_rope(0) && !s.opts.uses_rope(1));
    let gr = cfg("granite");
    assert_eq!(gr.opts.logits_divisor, Some(8.0));
    assert_eq!(gr.opts.attention_scale, Some(0.0625));
}

#[test]
fn stacked_quantized_experts_split_into_their_own_matrices() {
    // Three experts stacked as llama.cpp stores them (`ffn_up_exps`), in a 32-value block type
    // and a K-quant, next to each expert's matrix quantized alone: each expert's projection
    // from the stacked tensor must equal the one loaded from its own tensor, and be the product
    // with that expert's (dequantized) weights up to the 8-bit activation rounding.
    use callm::model::weights::{GgufSource, WeightSource};
    let (experts, out, inp) = (3, 32, 256);
    // Separate tensors: candle's `QTensor::quantize` reads a view (`w.get(e)`) from the start
    // of its storage, not from the view's offset.
    let ws: Vec<Tensor> = (0..experts)
        .map(|_| Tensor::randn(0f32, 1.0, (out, inp), &Device::Cpu).unwrap())
        .collect();
    let w = Tensor::stack(&ws, 0).unwrap();
    let x = Tensor::randn(0f32, 1.0, (5, inp), &Device::Cpu).unwrap();
    let maxabs = |t: Tensor| {
        t.abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    };
    for dtype in [GgmlDType::Q8_0, GgmlDType::Q4K] {
        let path = std::env::temp_dir().join(format!(
            "callm-experts-{dtype:?}-{}.gguf",
            std::process::id()
        ));
        let mut tensors = vec![(
            "blk.0.ffn_up_exps.weight".to_string(),
            QTensor::quantize(&w, dtype).unwrap(),
        )];
        for (e, we) in ws.iter().enumerate() {
            let alone = QTensor::quantize(we, dtype).unwrap();
            tensors.push((format!("expert{e}.weight"), alone));
        }
        let arch = gguf_file::Value::String("qwen3moe".into());
        let refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let mut f = std::fs::File::create(&path).unwrap();
        gguf_file::write(&mut f, &[("general.architecture", &arch)], &refs).unwrap();
        let mut file = std::fs::File::open(&path).unwrap();
        let content = gguf_file::Content::read(&mut file).unwrap();
        let mut src = GgufSource::new(content, file, &path, &Device::Cpu);
        let stacked = src
            .stacked_linears("blk.0.ffn_up_exps.weight", experts, out, inp)
            .unwrap();
        assert_eq!(stacked.len(), experts);
        for (e, lin) in stacked.iter().enumerate() {
            let alone = src
                .linear(&format!("expert{e}.weight"), out, inp, false)
                .unwrap();
            let got = lin.forward(&x).unwrap();
            let d = maxabs((&got - alone.forward(&x).unwrap()).unwrap());
            assert_eq!(
                d, 0.0,
                "{dtype:?} expert {e}: stacked and alone differ by {d}"
            );
            // Outputs are about ±50; 8-bit activations move them by a few tenths.
            let weights = QTensor::quantize(&ws[e], dtype)
                .unwrap()
                .dequantize(&Device::Cpu)
                .unwrap();
            let exact = x.matmul(&weights.t().unwrap()).unwrap();
            let d = maxabs((got - exact).unwrap());
            assert!(d <= 1.0, "{dtype:?} expert {e}: {d} from the f32 product");
        }
        assert!(src
            .stacked_linears("blk.0.ffn_up_exps.weight", experts, out + 1, inp)
            .is_err());
        std::fs::remove_file(&path).ok();
    }
}
