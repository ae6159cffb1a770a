//! The golden cases of `tests/data/templates` (scripts/gen_template_goldens.py: transformers'
//! `apply_chat_template` for the upstream templates, the FORMATS.md reference builders for the
//! bundled ones) and how callm's prompt is compared with each. Used by `templates_golden`
//! (in-process) and `templates_sandbox` (in the render worker).

use callm::openai::ChatCompletionRequest;
use callm::request::ChatRequest;
use callm::template::{bundled_template, Clock, ModelTemplateInfo, PromptRenderer, TemplateError};
use serde_json::Value;
use std::path::{Path, PathBuf};

use super::fixtures;

pub fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/templates")
}

/// `CALLM_FIXTURES`, else `../shared/fixtures` (or `../../shared/fixtures`) from the crate.
pub fn template_text(case: &Value) -> String {
    let name = case["template"].as_str().unwrap();
    match case["source"].as_str().unwrap() {
        "bundled" => bundled_template(name)
            .unwrap_or_else(|| panic!("bundled {name}"))
            .to_string(),
        _ => std::fs::read_to_string(fixtures().join("templates").join(name)).unwrap(),
    }
}

pub fn request(case: &Value) -> ChatRequest {
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

pub fn token(v: &Value) -> Option<String> {
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
pub fn clock(case: &Value) -> Clock {
    match case["now"].as_str() {
        Some(t) => Clock::Fixed(
            chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S").expect("now"),
        ),
        None => Clock::Local,
    }
}

pub fn check(case: &Value) -> Result<(), String> {
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

pub fn run_cases(filter: impl Fn(&Value) -> bool) -> usize {
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
