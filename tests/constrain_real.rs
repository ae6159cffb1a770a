//! Constrained decoding on a real model (Qwen2.5-Coder-0.5B-Instruct Q4_K_M, fetched by
//! `scripts/fetch-models.sh`; `CALLM_SKIP_REAL_MODELS=1` skips): `tool_choice: required` on a
//! question that needs no tool still yields a valid call, and `auto` stays free text.

use std::sync::OnceLock;

use callm::chat::{self, ChatFinish};
use callm::engine::CancelToken;
use callm::openai::ChatCompletionRequest;
use callm::registry::Registry;
use callm::request::ChatRequest;
use callm::runtime::LoadOptions;
use callm::runtime::LoadedModel;
use serde_json::{json, Value};

const QWEN: &str = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf";

fn qwen() -> Option<&'static LoadedModel> {
    if std::env::var_os("CALLM_SKIP_REAL_MODELS").is_some() {
        eprintln!("CALLM_SKIP_REAL_MODELS is set: skipping the test that needs {QWEN}");
        return None;
    }
    static LM: OnceLock<LoadedModel> = OnceLock::new();
    let path = callm::paths::models_dir().join(QWEN);
    assert!(
        path.is_file(),
        "{} is missing: run scripts/fetch-models.sh (or set CALLM_SKIP_REAL_MODELS=1)",
        path.display()
    );
    Some(LM.get_or_init(|| {
        let opts = LoadOptions {
            model: path.display().to_string(),
            context: Some(2048),
            ..Default::default()
        };
        LoadedModel::load(&opts, &Registry::builtin()).unwrap()
    }))
}

fn weather_tool() -> Value {
    json!([{"type": "function", "function": {"name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "description": "The city name"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}
        }, "required": ["city"]}}}])
}

fn request(question: &str, tool_choice: Value) -> ChatRequest {
    let body: ChatCompletionRequest = serde_json::from_value(json!({
        "model": "qwen",
        "messages": [{"role": "user", "content": question}],
        "tools": weather_tool(),
        "tool_choice": tool_choice,
        "temperature": 0,
        "max_tokens": 96,
    }))
    .unwrap();
    ChatRequest::try_from(body).unwrap()
}

#[test]
fn required_on_a_question_needing_no_tool_still_yields_a_valid_call() {
    let Some(lm) = qwen() else { return };
    let req = request("What is 2+2?", json!("required"));
    let out = chat::run(lm, &req, 0, &CancelToken::new(), &mut |_| true).unwrap();
    assert_eq!(out.finish, ChatFinish::ToolCalls, "{:?}", out.message);
    let calls = out.message.tool_calls;
    assert_eq!(calls[0].name, "get_weather");
    let args: Value = serde_json::from_str(&calls[0].arguments).unwrap();
    let schema = weather_tool()[0]["function"]["parameters"].clone();
    let validator = jsonschema::validator_for(&schema).unwrap();
    assert!(validator.is_valid(&args), "{args}");
}

#[test]
fn auto_leaves_a_plain_answer_alone() {
    let Some(lm) = qwen() else { return };
    let req = request("Say hello in one short sentence.", json!("auto"));
    let out = chat::run(lm, &req, 0, &CancelToken::new(), &mut |_| true).unwrap();
    assert!(out.message.tool_calls.is_empty(), "{:?}", out.message);
    assert!(
        !out.message.content.unwrap_or_default().trim().is_empty(),
        "no text"
    );
}

#[test]
fn auto_call_once_opened_is_valid() {
    let Some(lm) = qwen() else { return };
    let req = request(
        "What is the weather like in Paris right now?",
        json!("auto"),
    );
    let out = chat::run(lm, &req, 0, &CancelToken::new(), &mut |_| true).unwrap();
    let calls = &out.message.tool_calls;
    assert!(!calls.is_empty(), "no call: {:?}", out.message.content);
    assert_eq!(calls[0].name, "get_weather");
    let args: Value = serde_json::from_str(&calls[0].arguments).unwrap();
    assert!(
        args["city"].as_str().unwrap_or("").contains("Paris"),
        "{args}"
    );
}
