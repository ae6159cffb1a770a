//! Byte-for-byte comparison with the prompts of scripts/gen_template_goldens.py:
//! transformers' `apply_chat_template` for the upstream templates, the FORMATS.md reference
//! builders for the bundled ones.

use callm::openai::ChatCompletionRequest;
use callm::request::ChatRequest;
use callm::template::{bundled_template, Clock, ModelTemplateInfo, PromptRenderer, TemplateError};
use serde_json::Value;
use std::path::{Path, PathBuf};

#[path = "template_support/mod.rs"]
mod template_support;
use template_support::fixtures;

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/templates")
}

/// `CALLM_FIXTURES`, else `../shared/fixtures` (or `../../shared/fixtures`) from the crate.
fn template_text(case: &Value) -> String {
    let name = case["template"].as_str().unwrap();
    match case["source"].as_str().unwrap() {
        "bundled" => bundled_template(name)
            .unwrap_or_else(|| panic!("bundled {name}"))
            .to_string(),
        _ => std::fs::read_to_string(fixtures().join("templates").join(name)).unwrap(),
    }
}

fn request(case: &Value) -> ChatRequest {
    let conv = case["conversation"].as_str().unwrap();
    let text = std::fs::read_to_string(
        data_dir()
            .join("conversations")
            .join(format!("{conv}.json")),
    )
    .unwrap();
    let mut req: ChatCompletionRequest = serde_json::from_str(&text).unwrap();
    let kwargs = req
        .chat_template_kwargs
        .get_or_insert_with(Default::default);
    for (k, v) in case["kwargs"].as_object().unwrap() {
        kwargs.insert(k.clone(), v.clone());
    }
    ChatRequest::try_from(req).unwrap()
}

fn token(v: &Value) -> Option<String> {
    v.as_str().map(str::to_string)
}

/// Cases where minijinja knowingly differs from Jinja2: iterating `none` (the Hermes 2 Pro
/// and Hermes 3 tool-use templates, byte-identical, without tools) is an empty loop in
/// minijinja, a TypeError in Python. callm renders a prompt there (with an empty tool list)
/// instead of failing.
const KNOWN_DIVERGENCES: &[(&str, &str)] = &[
    ("NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja", "plain"),
    (
        "NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja",
        "system",
    ),
    (
        "NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja",
        "reasoning_history",
    ),
    (
        "NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use.jinja",
        "plain",
    ),
    (
        "NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use.jinja",
        "system",
    ),
    (
        "NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use.jinja",
        "reasoning_history",
    ),
];

/// The instant the generator pinned `strftime_now` to (templates that print today's date).
fn clock(case: &Value) -> Clock {
    match case["now"].as_str() {
        Some(t) => Clock::Fixed(
            chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S").expect("now"),
        ),
        None => Clock::Local,
    }
}

fn check(case: &Value) -> Result<(), String> {
    let key = (
        case["template"].as_str().unwrap(),
        case["conversation"].as_str().unwrap(),
    );
    if KNOWN_DIVERGENCES.contains(&key) {
        return Ok(());
    }
    let info = ModelTemplateInfo::from_template(
        template_text(case),
        token(&case["bos_token"]),
        token(&case["eos_token"]),
    );
    let renderer =
        PromptRenderer::with_clock(info, None, clock(case)).map_err(|e| format!("compile: {e}"))?;
    // The generator's decision, taken independently (transformers renders a probe both ways).
    let text_arguments = case["text_arguments"].as_bool().unwrap_or(false);
    if renderer.options().text_arguments != text_arguments {
        return Err(format!(
            "arguments as text: callm {}, generator {text_arguments}",
            renderer.options().text_arguments
        ));
    }
    let expected =
        std::fs::read_to_string(data_dir().join(case["expected"].as_str().unwrap())).unwrap();
    let got = renderer.render(&request(case));
    match (case["error"].as_bool().unwrap(), got) {
        (false, Ok(p)) if p.text == expected => Ok(()),
        (false, Ok(p)) => Err(format!(
            "prompt differs\n--- expected\n{expected}\n--- got\n{}\n---",
            p.text
        )),
        (false, Err(e)) => Err(format!("unexpected error {e}")),
        (true, Ok(p)) => Err(format!(
            "expected the error {expected:?}, got a prompt\n{}",
            p.text
        )),
        (true, Err(e)) => {
            if !e.is_client_error() {
                return Err(format!("error {e} is not a client error"));
            }
            match &e {
                TemplateError::Raised(m) if m != &expected => {
                    Err(format!("raised {m:?}, transformers {expected:?}"))
                }
                _ => Ok(()),
            }
        }
    }
}

fn run_cases(filter: impl Fn(&Value) -> bool) -> usize {
    let manifest: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(data_dir().join("manifest.json")).unwrap())
            .unwrap();
    let mut failures = Vec::new();
    let mut n = 0;
    for case in manifest.iter().filter(|c| filter(c)) {
        n += 1;
        if let Err(msg) = check(case) {
            failures.push(format!(
                "{} / {}: {msg}",
                case["template"], case["conversation"]
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {n} cases fail:\n{}",
        failures.len(),
        failures.join("\n")
    );
    n
}

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
