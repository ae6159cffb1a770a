//! Byte-for-byte comparison with the prompts of scripts/gen_template_goldens.py:
//! transformers' `apply_chat_template` for the upstream templates, the FORMATS.md reference
//! builders for the bundled ones.

use callm::template::{ModelTemplateInfo, PromptRenderer};
use serde_json::Value;

#[path = "template_support/mod.rs"]
mod template_support;
use template_support::fixtures;
use template_support::golden::{clock, data_dir, request, run_cases, template_text, token};

#[test]
fn upstream_templates_match_transformers() {
    let n = run_cases(|c| c["source"] == "fixture");
    assert!(n >= 200, "only {n} upstream cases");
}

#[test]
fn bundled_templates_match_reference_builders() {
    let n = run_cases(|c| c["source"] == "bundled");
    assert_eq!(n, 36);
}

#[test]
fn every_fixture_template_is_covered() {
    let manifest = std::fs::read_to_string(data_dir().join("manifest.json")).unwrap();
    for entry in std::fs::read_dir(fixtures().join("templates")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().to_string();
        if !name.ends_with(".jinja") {
            continue; // the folder's README
        }
        assert!(
            manifest.contains(&format!("\"{name}\"")),
            "{name} has no golden cases"
        );
    }
}

/// A request's effort level (what Chat Completions' `reasoning_effort`, Responses'
/// `reasoning.effort` and Anthropic's `thinking.type` set at the edges, tested there) reaches
/// each template as the variable it reads: every golden case rendered
/// by transformers with `enable_thinking`, `thinking` or `reasoning_effort` is rendered here
/// from the effort alone, without the variable, and must match byte for byte. Without the
/// effort the same request must render differently (the setting is what made the prompt).
#[test]
fn reasoning_effort_sets_the_variable_each_template_reads() {
    let manifest: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(data_dir().join("manifest.json")).unwrap())
            .unwrap();
    let mut covered = std::collections::BTreeSet::new();
    for case in &manifest {
        let kwargs = case["kwargs"].as_object().unwrap();
        let effort = match (
            kwargs.get("enable_thinking").or(kwargs.get("thinking")),
            kwargs.get("reasoning_effort"),
        ) {
            (Some(Value::Bool(false)), None) => "none",
            (Some(Value::Bool(true)), None) => "medium",
            (None, Some(Value::String(level))) => level.as_str(),
            _ => continue,
        };
        if case["error"].as_bool().unwrap() {
            continue;
        }
        let mut wire = case.clone();
        let kw = wire["kwargs"].as_object_mut().unwrap();
        for name in ["enable_thinking", "thinking", "reasoning_effort"] {
            kw.remove(name);
        }
        let info = ModelTemplateInfo::from_template(
            template_text(case),
            token(&case["bos_token"]),
            token(&case["eos_token"]),
        );
        let renderer = PromptRenderer::with_clock(info, None, clock(case)).unwrap();
        let expected =
            std::fs::read_to_string(data_dir().join(case["expected"].as_str().unwrap())).unwrap();
        let mut req = request(&wire);
        let plain = renderer.render(&req).unwrap().text;
        assert_ne!(plain, expected, "{}: no effect to test", case["expected"]);
        req.reasoning =
            callm::request::ReasoningControl::from_effort("reasoning_effort", Some(effort))
                .unwrap();
        let got = renderer.render(&req).unwrap().text;
        assert_eq!(got, expected, "{} from effort {effort}", case["expected"]);
        covered.insert(case["template"].as_str().unwrap().to_string());
    }
    // Qwen3 and SmolLM3 (`enable_thinking`), Granite 3.3 (`thinking`), gpt-oss
    // (`reasoning_effort`).
    assert_eq!(covered.len(), 4, "{covered:?}");
}
