//! Numerical correctness of every architecture against transformers (and THUDM's ChatGLM3
//! code): the tiny random-weight fixture models (see ../shared/fixtures/tiny-models/README.md).
//! Logits at every position within 1e-4 of the reference and the 16-token greedy
//! continuation identical, with both config key styles where the fixture has both.

mod tiny_support;

use std::path::Path;

use callm::model::{decoder::Decoder, weights::SafetensorsSource, LanguageModel, ModelConfig};
use candle_core::{DType, Device, Tensor};
use serde_json::Value;

use tiny_support::ARCHS;

fn load(dir: &Path, config_file: &str) -> Box<dyn LanguageModel> {
    let text = std::fs::read_to_string(dir.join(config_file)).unwrap();
    let cfg = ModelConfig::from_hf_json(&text, config_file).unwrap();
    let mut src =
        SafetensorsSource::open(&[dir.join("model.safetensors")], DType::F32, &Device::Cpu)
            .unwrap();
    callm::model::load_model(cfg, &mut src, DType::F32, &Device::Cpu).unwrap()
}

/// The config files a fixture has (chatglm3 has no legacy-key variant).
fn configs(dir: &Path) -> Vec<&'static str> {
    ["config.json", "config_legacy.json"]
        .into_iter()
        .filter(|f| dir.join(f).is_file())
        .collect()
}

fn golden(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("golden.json")).unwrap()).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

#[test]
fn every_fixture_architecture_is_tested() {
    tiny_support::check_archs_cover_the_fixtures();
}

#[test]
fn logits_match_transformers_at_every_position() {
    for arch in ARCHS {
        let dir = callm::paths::fixtures_dir().join("tiny-models").join(arch);
        let g = golden(&dir);
        let refs =
            candle_core::safetensors::load(dir.join("logits.safetensors"), &Device::Cpu).unwrap();
        for config in configs(&dir) {
            let model = load(&dir, config);
            for case in g["cases"].as_array().unwrap() {
                let input = ids(&case["input_ids"]);
                let want = &refs[case["logits_tensor"].as_str().unwrap()];
                let mut cache = model.new_cache(256).unwrap();
                let got = model.forward(&input, &mut cache, true).unwrap();
                assert_eq!(got.dims(), want.dims(), "{arch}");
                let d = max_abs_diff(&got, want);
                assert!(
                    d <= 1e-4,
                    "{arch} {config} case of {} tokens: max abs diff {d}",
                    input.len()
                );
            }
        }
    }
}

#[test]
fn greedy_continuation_with_kv_cache_matches_transformers() {
    for arch in ARCHS {
        let dir = callm::paths::fixtures_dir().join("tiny-models").join(arch);
        let g = golden(&dir);
        let step_logits =
            candle_core::safetensors::load(dir.join("greedy_logits.safetensors"), &Device::Cpu)
                .unwrap();
        let model = load(&dir, configs(&dir).last().unwrap());
        for (ci, case) in g["cases"].as_array().unwrap().iter().enumerate() {
            let input = ids(&case["input_ids"]);
            let want = ids(&case["greedy_continuation"]);
            let want_logits = &step_logits[&format!("case{ci}")];
            let mut cache = model.new_cache(256).unwrap();
            let mut logits = model
                .forward(&input, &mut cache, false)
                .unwrap()
                .squeeze(0)
                .unwrap();
            let mut got = vec![];
            for step in 0..want.len() {
                let row = want_logits.get(step).unwrap();
                let d = max_abs_diff(&logits, &row);
                assert!(d <= 1e-4, "{arch} case{ci} step {step}: max abs diff {d}");
                let next = logits.argmax(0).unwrap().to_scalar::<u32>().unwrap();
                got.push(next);
                logits = model
                    .forward(&[next], &mut cache, false)
                    .unwrap()
                    .squeeze(0)
                    .unwrap();
            }
            assert_eq!(got, want, "{arch} case{ci} greedy continuation");
        }
    }
}

#[test]
fn chunked_prefill_equals_one_pass() {
    // Feeding the prompt in pieces through the cache must give the same last logits.
    let dir = callm::paths::fixtures_dir().join("tiny-models/qwen2");
    let g = golden(&dir);
    let input = ids(&g["cases"][1]["input_ids"]);
    let model = load(&dir, "config.json");
    let mut c1 = model.new_cache(256).unwrap();
    let a = model.forward(&input, &mut c1, false).unwrap();
    let mut c2 = model.new_cache(256).unwrap();
    let mut last = None;
    for chunk in input.chunks(7) {
        last = Some(model.forward(chunk, &mut c2, false).unwrap());
    }
    assert!(max_abs_diff(&a, &last.unwrap()) <= 1e-5);
}

#[test]
fn wrong_shaped_and_truncated_weights_are_clear_errors() {
    let dir = callm::paths::fixtures_dir().join("tiny-models/llama3");
    // A config that disagrees with the weights: the error names the tensor and both shapes.
    let mut cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    cfg["intermediate_size"] = 96.into();
    let cfg = ModelConfig::from_hf_value(&cfg, "config.json").unwrap();
    let mut src =
        SafetensorsSource::open(&[dir.join("model.safetensors")], DType::F32, &Device::Cpu)
            .unwrap();
    let err = Decoder::load(cfg, &mut src, DType::F32, &Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("mlp") && err.contains("96"), "{err}");
    // A truncated copy of the weights.
    let tmp = std::env::temp_dir().join(format!("callm-trunc-{}.safetensors", std::process::id()));
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    std::fs::write(&tmp, &bytes[..bytes.len() / 2]).unwrap();
    let err = SafetensorsSource::open(std::slice::from_ref(&tmp), DType::F32, &Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("truncated") && err.contains("callm-trunc"),
        "{err}"
    );
    std::fs::write(&tmp, b"garbage").unwrap();
    assert!(SafetensorsSource::open(std::slice::from_ref(&tmp), DType::F32, &Device::Cpu).is_err());
    std::fs::remove_file(&tmp).ok();
}

#[test]
fn bf16_and_f16_checkpoints_load_and_agree_with_f32() {
    // Half-precision copies of the llama3 fixture (as Hub checkpoints often ship) load
    // through the same path; their logits stay close to transformers' f32 logits.
    let dir = callm::paths::fixtures_dir().join("tiny-models/llama3");
    let g = golden(&dir);
    let refs =
        candle_core::safetensors::load(dir.join("logits.safetensors"), &Device::Cpu).unwrap();
    let tensors =
        candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).unwrap();
    for (dtype, tol) in [(DType::BF16, 0.15f32), (DType::F16, 0.02)] {
        let half: std::collections::HashMap<String, Tensor> = tensors
            .iter()
            .map(|(k, v)| (k.clone(), v.to_dtype(dtype).unwrap()))
            .collect();
        let tmp = std::env::temp_dir().join(format!(
            "callm-{dtype:?}-{}.safetensors",
            std::process::id()
        ));
        candle_core::safetensors::save(&half, &tmp).unwrap();
        let cfg = ModelConfig::from_hf_json(
            &std::fs::read_to_string(dir.join("config.json")).unwrap(),
            "config.json",
        )
        .unwrap();
        // Computed in f32 (the CPU default) from half-precision weights.
        let mut src =
            SafetensorsSource::open(std::slice::from_ref(&tmp), DType::F32, &Device::Cpu).unwrap();
        let model = Decoder::load(cfg, &mut src, DType::F32, &Device::Cpu).unwrap();
        let case = &g["cases"][1];
        let input = ids(&case["input_ids"]);
        let mut cache = model.new_cache(256).unwrap();
        let got = model.forward(&input, &mut cache, true).unwrap();
        let d = max_abs_diff(&got, &refs[case["logits_tensor"].as_str().unwrap()]);
        assert!(d <= tol, "{dtype:?}: max abs diff {d}");
        std::fs::remove_file(&tmp).ok();
    }
}

#[test]
fn moe_runs_only_the_routed_experts() {
    // Qwen3-MoE's last layer with one expert's weights replaced by NaN: a token routed to it
    // gets NaN logits, every other token the reference logits. golden.json records how many
    // of case 1's 40 tokens transformers routes to each expert of layer 1; an implementation
    // that runs every expert (weighting the unpicked ones by 0) would give NaN everywhere.
    let dir = callm::paths::fixtures_dir().join("tiny-models/qwen3_moe");
    let g = golden(&dir);
    let counts = ids(&g["arch_notes"]["experts_selected_case1"]["layer1"]);
    let case = &g["cases"][1];
    let input = ids(&case["input_ids"]);
    let refs =
        candle_core::safetensors::load(dir.join("logits.safetensors"), &Device::Cpu).unwrap();
    let want = &refs[case["logits_tensor"].as_str().unwrap()];
    let tensors =
        candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).unwrap();
    for (expert, &count) in counts.iter().enumerate() {
        let mut poisoned = tensors.clone();
        let name = format!("model.layers.1.mlp.experts.{expert}.down_proj.weight");
        let w = &poisoned[&name];
        poisoned.insert(name.clone(), (w.zeros_like().unwrap() * f64::NAN).unwrap());
        let tmp = std::env::temp_dir().join(format!(
            "callm-moe-nan-{expert}-{}.safetensors",
            std::process::id()
        ));
        candle_core::safetensors::save(&poisoned, &tmp).unwrap();
        let cfg = ModelConfig::from_hf_json(
            &std::fs::read_to_string(dir.join("config.json")).unwrap(),
            "config.json",
        )
        .unwrap();
        let mut src =
            SafetensorsSource::open(std::slice::from_ref(&tmp), DType::F32, &Device::Cpu).unwrap();
        let model = Decoder::load(cfg, &mut src, DType::F32, &Device::Cpu).unwrap();
        let mut cache = model.new_cache(256).unwrap();
        let got = model.forward(&input, &mut cache, true).unwrap();
        let mut nan_rows = 0;
        for row in 0..input.len() {
            let g = got.get(row).unwrap();
            if g.to_vec1::<f32>().unwrap().iter().any(|x| x.is_nan()) {
                nan_rows += 1;
            } else {
                let d = max_abs_diff(&g, &want.get(row).unwrap());
                assert!(d <= 1e-4, "expert {expert} poisoned, row {row}: diff {d}");
            }
        }
        assert_eq!(
            nan_rows, count,
            "tokens routed to expert {expert} of layer 1"
        );
        std::fs::remove_file(&tmp).ok();
    }
}

/// `--kv-cache-type` (the configuration's `kv_cache`) is what a model's caches hold: an f16
/// cache asked for on float weights takes half the bytes per position and its logits stay
/// near transformers' (f16 keys and values round at ~1e-3 relative), while the default for
/// float weights stays exact.
#[test]
fn the_kv_cache_type_asked_for_is_the_one_used() {
    let dir = callm::paths::fixtures_dir().join("tiny-models/llama3");
    let g = golden(&dir);
    let refs =
        candle_core::safetensors::load(dir.join("logits.safetensors"), &Device::Cpu).unwrap();
    let load_as = |kv: Option<callm::model::KvType>| {
        let text = std::fs::read_to_string(dir.join("config.json")).unwrap();
        let mut cfg = ModelConfig::from_hf_json(&text, "config.json").unwrap();
        cfg.kv_cache = kv;
        let mut src =
            SafetensorsSource::open(&[dir.join("model.safetensors")], DType::F32, &Device::Cpu)
                .unwrap();
        callm::model::load_model(cfg, &mut src, DType::F32, &Device::Cpu).unwrap()
    };
    let (exact, half) = (load_as(None), load_as(Some(callm::model::KvType::F16)));
    let (c32, c16) = (exact.new_cache(64).unwrap(), half.new_cache(64).unwrap());
    assert_eq!(c32.position_bytes(), 2 * c16.position_bytes());
    let case = &g["cases"][0];
    let input = ids(&case["input_ids"]);
    let want = &refs[case["logits_tensor"].as_str().unwrap()];
    let got32 = exact
        .forward(&input, &mut exact.new_cache(64).unwrap(), true)
        .unwrap();
    let got16 = half
        .forward(&input, &mut half.new_cache(64).unwrap(), true)
        .unwrap();
    assert!(max_abs_diff(&got32, want) <= 1e-4);
    let d16 = max_abs_diff(&got16, want);
    assert!(d16 > 0.0 && d16 <= 2e-2, "f16 cache: max abs diff {d16}");
}
