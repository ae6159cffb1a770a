//! How a prompt ends, byte for byte against transformers (scripts/gen_prompt_end_goldens.py
//! renders upstream templates with `render_jinja_template`): `add_generation_prompt: false`,
//! `continue_final_message` (the final assistant message left open: transformers tags it and
//! cuts at the tag) and `reasoning_content` on assistant messages in history. The requests
//! go through the Chat Completions edge, as the server and `callm render` take them.

use callm::openai::ChatCompletionRequest;
use callm::request::ChatRequest;
use callm::template::{ModelTemplateInfo, PromptRenderer};
use serde_json::Value;
use std::path::{Path, PathBuf};

#[path = "template_support/mod.rs"]
mod template_support;
use template_support::fixtures;

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/prompt_end")
}

fn check(case: &Value) -> Result<(), String> {
    let text = std::fs::read_to_string(
        fixtures()
            .join("templates")
            .join(case["template"].as_str().unwrap()),
    )
    .unwrap();
    let token = |v: &Value| v.as_str().map(str::to_string);
    let info = ModelTemplateInfo::from_template(
        text,
        token(&case["bos_token"]),
        token(&case["eos_token"]),
    );
    let renderer = PromptRenderer::new(info, None).map_err(|e| format!("compile: {e}"))?;
    let body: ChatCompletionRequest = serde_json::from_value(case["request"].clone()).unwrap();
    let req = ChatRequest::try_from(body).map_err(|e| format!("edge: {e}"))?;
    let expected =
        std::fs::read_to_string(data_dir().join(case["expected"].as_str().unwrap())).unwrap();
    match (case["error"].as_bool().unwrap(), renderer.render(&req)) {
        (false, Ok(p)) if p.text == expected => Ok(()),
        (false, Ok(p)) => Err(format!(
            "prompt differs\n--- expected\n{expected}\n--- got\n{}\n---",
            p.text
        )),
        (false, Err(e)) => Err(format!("unexpected error {e}")),
        (true, Ok(p)) => Err(format!("expected {expected:?}, got a prompt\n{}", p.text)),
        (true, Err(e)) if e.is_client_error() => Ok(()),
        (true, Err(e)) => Err(format!("error {e} is not a client error")),
    }
}

#[test]
fn prompt_ends_match_transformers() {
    let manifest: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(data_dir().join("manifest.json")).unwrap())
            .unwrap();
    let failures: Vec<String> = manifest
        .iter()
        .filter_map(|c| {
            check(c)
                .err()
                .map(|m| format!("{} / {}: {m}", c["template"], c["case"]))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases fail:\n{}",
        failures.len(),
        manifest.len(),
        failures.join("\n")
    );
    assert_eq!(manifest.len(), 20);
}

#[test]
fn callm_render_honours_the_same_fields() {
    // The Mistral v0.3 tokenizer directory ships the same template as the fixture.
    use callm::cli::render::{render_to_string, RenderArgs};
    let manifest: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(data_dir().join("manifest.json")).unwrap())
            .unwrap();
    let dir = std::env::temp_dir().join(format!("callm-render-end-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut n = 0;
    for case in manifest.iter().filter(|c| {
        c["template"] == "mistralai-Mistral-7B-Instruct-v0.3.jinja" && c["error"] == false
    }) {
        let path = dir.join(format!("{}.json", case["case"].as_str().unwrap()));
        std::fs::write(&path, case["request"].to_string()).unwrap();
        let args = RenderArgs {
            model: fixtures()
                .join("tokenizers/mistral-v0.3")
                .display()
                .to_string(),
            request: path.display().to_string(),
            ids: false,
            tokenizer: None,
            family: None,
            template_limits: Default::default(),
        };
        let expected =
            std::fs::read_to_string(data_dir().join(case["expected"].as_str().unwrap())).unwrap();
        assert_eq!(
            render_to_string(&args).unwrap(),
            expected,
            "{}",
            case["case"]
        );
        n += 1;
    }
    assert!(n >= 3, "{n} cases");
    let _ = std::fs::remove_dir_all(&dir);
}
