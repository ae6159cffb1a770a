//! Phi-3 "longrope" rope scaling (Phi-3.5-mini, Phi-4-mini), from `config.json` (both key
//! styles) and from a GGUF laid out as llama.cpp's converter writes it, against numbers
//! produced by transformers.
//!
//! Reference: `scripts/gen-longrope-reference.py` run with torch 2.15.0+cu132 and transformers
//! 5.23.0 (on CPU, one thread) on the tiny Phi-3 fixture's weights
//! (`../shared/fixtures/tiny-models/phi3`) with the longrope settings below. torch is too heavy to
//! install in CI, so the script's output is pinned here; rerunning it prints the same numbers.
//! With these settings longrope moves the last position's logits by 0.52 (case 0) and 2.35
//! (case 1) against plain rope.

use std::collections::HashMap;
use std::path::PathBuf;

use callm::model::config::RopeScaling;
use callm::model::gguf::GgufFile;
use callm::model::{self, LanguageModel, ModelConfig};
use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use serde_json::{json, Value};

const ORIGINAL: usize = 16;
const MAX_POSITIONS: usize = 256;
const SHORT: [f32; 6] = [1.0, 1.05, 1.2, 1.5, 2.0, 2.5];
const LONG: [f32; 6] = [1.0, 1.5, 3.0, 6.0, 12.0, 24.0];

// transformers' output (see the module comment).
/// transformers printed 1.4142135623730951, which is sqrt(2): sqrt(1 + ln(256 / 16) / ln(16)).
const ATTENTION_FACTOR: f64 = std::f64::consts::SQRT_2;
const INV_FREQ_SHORT: [f64; 6] = [
    1.0,
    0.20518426597118378,
    0.038679901510477066,
    0.006666666828095913,
    0.001077217166312039,
    0.00018566357903182507,
];
const INV_FREQ_LONG: [f64; 6] = [
    1.0,
    0.14362896978855133,
    0.015471960417926311,
    0.0016666667070239782,
    0.0001795361895347014,
    1.9339957361808047e-05,
];
/// Last-position logits of ids 0..16 and the top 5 ids: case 0 (5 tokens, short factors).
const CASE0_FIRST16: [f32; 16] = [
    -0.270996, -1.843056, 0.447469, -1.337831, 0.304333, 1.039162, -0.055647, 2.199212, 0.126599,
    0.512837, 0.253841, -0.066661, -1.540307, 0.306783, 1.15616, -2.683966,
];
const CASE0_TOP5: [u32; 5] = [258, 7, 20, 329, 124];
/// Case 1 (40 tokens, longer than the original 16: long factors).
const CASE1_FIRST16: [f32; 16] = [
    0.818246, 0.071217, -0.492662, -0.559541, -0.619152, -0.289919, 1.334077, 0.180247, -1.48707,
    1.622115, 0.129581, -0.512862, -0.836358, -1.163061, 0.058535, 0.522045,
];
const CASE1_TOP5: [u32; 5] = [200, 199, 232, 380, 23];

fn fixture() -> PathBuf {
    callm::paths::fixtures_dir().join("tiny-models/phi3")
}

fn read_json(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture().join(name)).unwrap()).unwrap()
}

/// The fixture's config with longrope: transformers-5 `rope_parameters` or the Hub's
/// `rope_scaling` with `type` (Phi-3.5-mini's own `config.json` shape).
fn longrope_config(legacy: bool) -> Value {
    let mut cfg = read_json(if legacy {
        "config_legacy.json"
    } else {
        "config.json"
    });
    cfg["max_position_embeddings"] = json!(MAX_POSITIONS);
    cfg["original_max_position_embeddings"] = json!(ORIGINAL);
    let scaling = json!({"short_factor": SHORT, "long_factor": LONG});
    if legacy {
        let mut s = scaling;
        s["type"] = json!("longrope");
        cfg["rope_scaling"] = s;
    } else {
        let p = cfg["rope_parameters"].as_object_mut().unwrap();
        p.insert("rope_type".into(), json!("longrope"));
        p.insert("short_factor".into(), json!(SHORT));
        p.insert("long_factor".into(), json!(LONG));
    }
    cfg
}

fn assert_close(got: &[f32], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (g, w) in got.iter().zip(want) {
        assert!(
            (f64::from(*g) - w).abs() <= tol * w.abs().max(1.0),
            "{what}: {got:?} vs {want:?}"
        );
    }
}

fn with_context(mut cfg: ModelConfig, context: usize) -> ModelConfig {
    cfg.set_context(Some(context)).unwrap();
    cfg
}

#[test]
fn frequencies_and_attention_factor_match_transformers() {
    for legacy in [false, true] {
        let cfg = ModelConfig::from_hf_value(&longrope_config(legacy), "config.json").unwrap();
        let RopeScaling::LongRope(s) = &cfg.rope_scaling else {
            panic!("not longrope: {:?}", cfg.rope_scaling)
        };
        assert_eq!(s.original_max_position_embeddings, ORIGINAL);
        assert!((cfg.rope_attention_factor() - ATTENTION_FACTOR).abs() < 1e-12);
        // Allocated context up to the original length: short factors; beyond it: long.
        let short = with_context(cfg.clone(), ORIGINAL);
        assert_close(&short.rope_inv_freq(), &INV_FREQ_SHORT, 1e-6, "short");
        let long = with_context(cfg, ORIGINAL + 1);
        assert_close(&long.rope_inv_freq(), &INV_FREQ_LONG, 1e-6, "long");
    }
}

fn input_ids(case: usize) -> Vec<u32> {
    read_json("golden.json")["cases"][case]["input_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// The last position's logits of `case` match transformers': ids 0..16 within `tol`, same top 5.
fn check_case(model: &dyn LanguageModel, case: usize, tol: f64) {
    let (first16, top5) = match case {
        0 => (CASE0_FIRST16, CASE0_TOP5),
        _ => (CASE1_FIRST16, CASE1_TOP5),
    };
    let ids = input_ids(case);
    let mut cache = model.new_cache(ids.len()).unwrap();
    let logits = model.forward(&ids, &mut cache, false).unwrap();
    let logits = logits.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let want: Vec<f64> = first16.iter().map(|&x| f64::from(x)).collect();
    assert_close(&logits[..16], &want, tol, &format!("case {case}"));
    let mut order: Vec<u32> = (0..logits.len() as u32).collect();
    order.sort_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]));
    assert_eq!(&order[..5], &top5, "case {case} top 5");
}

#[test]
fn checkpoint_with_longrope_matches_transformers() {
    let dir = std::env::temp_dir().join(format!("callm-longrope-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(
        fixture().join("model.safetensors"),
        dir.join("model.safetensors"),
    )
    .unwrap();
    for legacy in [false, true] {
        std::fs::write(dir.join("config.json"), longrope_config(legacy).to_string()).unwrap();
        let cfg = model::read_dir_config(&dir).unwrap();
        // Case 0 (5 tokens) in a context of the original length: short factors, as
        // transformers uses for a sequence that short.
        let m = model::load_dir_with(
            &dir,
            with_context(cfg.clone(), ORIGINAL),
            DType::F32,
            &Device::Cpu,
            None,
        )
        .unwrap();
        check_case(m.as_ref(), 0, 1e-4);
        // Case 1 (40 tokens) in the full context: long factors, as transformers uses for a
        // sequence past the original length.
        let m = model::load_dir_with(
            &dir,
            with_context(cfg, MAX_POSITIONS),
            DType::F32,
            &Device::Cpu,
            None,
        )
        .unwrap();
        check_case(m.as_ref(), 1, 1e-4);
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// The fixture as llama.cpp's converter writes a longrope Phi-3: its tensor names, the rope
/// factors as `rope_factors_short/long.weight`, `rope.scaling.original_context_length` and
/// `rope.scaling.attn_factor` (the converter's `sqrt(1 + ln(scale) / ln(original))`).
fn write_gguf(attn_factor_key: bool) -> PathBuf {
    let ts: HashMap<String, Tensor> =
        candle_core::safetensors::load(fixture().join("model.safetensors"), &Device::Cpu).unwrap();
    let mut tensors: Vec<(String, QTensor)> = vec![];
    for (name, t) in &ts {
        let mut n = name.replace("model.layers.", "blk.");
        for (from, to) in [
            ("model.embed_tokens", "token_embd"),
            ("model.norm", "output_norm"),
            ("input_layernorm", "attn_norm"),
            ("post_attention_layernorm", "ffn_norm"),
            ("self_attn.qkv_proj", "attn_qkv"),
            ("self_attn.o_proj", "attn_output"),
            ("mlp.gate_up_proj", "ffn_up"),
            ("mlp.down_proj", "ffn_down"),
        ] {
            n = n.replace(from, to);
        }
        tensors.push((n, QTensor::quantize(t, GgmlDType::F32).unwrap()));
    }
    for (n, f) in [
        ("rope_factors_short.weight", SHORT),
        ("rope_factors_long.weight", LONG),
    ] {
        let t = Tensor::new(&f, &Device::Cpu).unwrap();
        tensors.push((n.into(), QTensor::quantize(&t, GgmlDType::F32).unwrap()));
    }
    let cfg = read_json("config.json");
    let u = |k: &str| gguf_file::Value::U32(cfg[k].as_u64().unwrap() as u32);
    let scale = MAX_POSITIONS as f64 / ORIGINAL as f64;
    let mut md: Vec<(&str, gguf_file::Value)> = vec![
        (
            "general.architecture",
            gguf_file::Value::String("phi3".into()),
        ),
        (
            "phi3.context_length",
            gguf_file::Value::U32(MAX_POSITIONS as u32),
        ),
        (
            "phi3.rope.scaling.original_context_length",
            gguf_file::Value::U32(ORIGINAL as u32),
        ),
        ("phi3.embedding_length", u("hidden_size")),
        ("phi3.feed_forward_length", u("intermediate_size")),
        ("phi3.block_count", u("num_hidden_layers")),
        ("phi3.attention.head_count", u("num_attention_heads")),
        ("phi3.attention.head_count_kv", u("num_key_value_heads")),
        (
            "phi3.attention.layer_norm_rms_epsilon",
            gguf_file::Value::F32(1e-5),
        ),
        ("phi3.rope.dimension_count", gguf_file::Value::U32(12)),
        ("phi3.rope.freq_base", gguf_file::Value::F32(10000.0)),
    ];
    if attn_factor_key {
        let f = (1.0 + scale.ln() / (ORIGINAL as f64).ln()).sqrt();
        md.push((
            "phi3.rope.scaling.attn_factor",
            gguf_file::Value::F32(f as f32),
        ));
    }
    let path = std::env::temp_dir().join(format!(
        "callm-longrope-{attn_factor_key}-{}.gguf",
        std::process::id()
    ));
    let mut f = std::fs::File::create(&path).unwrap();
    let mdr: Vec<(&str, &gguf_file::Value)> = md.iter().map(|(k, v)| (*k, v)).collect();
    let tsr: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    gguf_file::write(&mut f, &mdr, &tsr).unwrap();
    path
}

#[test]
fn gguf_with_rope_factor_tensors_matches_transformers() {
    // With llama.cpp's attn_factor key, and without it (the factor derived as transformers does).
    for key in [true, false] {
        let path = write_gguf(key);
        let load = |context: usize| {
            let gguf = GgufFile::open(&path, &Device::Cpu).unwrap();
            let cfg = with_context(gguf.config().unwrap(), context);
            assert!((cfg.rope_attention_factor() - ATTENTION_FACTOR).abs() < 1e-6);
            gguf.load_with(cfg, &Device::Cpu).unwrap()
        };
        check_case(load(ORIGINAL).as_ref(), 0, 1e-4);
        check_case(load(MAX_POSITIONS).as_ref(), 1, 1e-4);
        std::fs::remove_file(&path).ok();
    }
}

#[test]
fn factor_lists_of_the_wrong_length_are_refused() {
    let mut cfg = longrope_config(false);
    cfg["rope_parameters"]["long_factor"] = json!([1.0, 2.0]);
    let err = ModelConfig::from_hf_value(&cfg, "config.json")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("2 long_factor for 6 rotary dimension pairs"),
        "{err}"
    );
    let mut cfg = longrope_config(false);
    cfg["rope_parameters"]["short_factor"] = json!([1.0, 0.0, 1.0, 1.0, 1.0, 1.0]);
    let err = ModelConfig::from_hf_value(&cfg, "config.json")
        .unwrap_err()
        .to_string();
    assert!(err.contains("short_factor = 0"), "{err}");
}
