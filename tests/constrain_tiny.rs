//! Constrained decoding end to end with the tiny random-weight fixture models, which on
//! their own emit noise: under `tool_choice` required / named and `response_format`
//! json_schema, every sampled answer (many seeds, several schemas) goes through the full
//! chat pipeline (template, forced call opening, masked sampling, the family's parser) and
//! comes out as calls / JSON that an independent validator (`jsonschema`) accepts.
//!
//! The models have 256 positions, so string parameters are length-bounded and most runs
//! ask for one call (`parallel_tool_calls: false`): the test is about validity, and an
//! answer cut off by the context would say nothing about it.

use std::path::PathBuf;

use callm::chat::{self, ChatFinish};
use callm::engine::CancelToken;
use callm::openai::ChatCompletionRequest;
use callm::registry::Registry;
use callm::request::ChatRequest;
use callm::runtime::LoadOptions;
use callm::runtime::LoadedModel;
use serde_json::{json, Value};

/// (fixture architecture, family whose call format is used).
const MODELS: &[(&str, &str)] = &[
    ("qwen2", "qwen2.5"),
    ("mistral", "mistral-7b-instruct-v0.3"),
    ("llama3", "llama-3.1"),
    ("codellama", "llama-3.2"),
];

fn model_dir(arch: &str) -> PathBuf {
    // One directory per load: the tests run in parallel, and a model file another test rewrites
    // while this one maps or reads it fails the load or is a SIGBUS.
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir =
        std::env::temp_dir().join(format!("callm-constrain-{arch}-{}-{n}", std::process::id()));
    callm::constrain::testing::tiny_model_dir(arch, &dir, r#"{"eos_token": "<|im_end|>"}"#)
        .unwrap();
    dir
}

fn load(arch: &str, family: &str) -> LoadedModel {
    let dir = model_dir(arch);
    let opts = LoadOptions {
        model: dir.display().to_string(),
        family: Some(family.to_string()),
        context: Some(256),
        ..Default::default()
    };
    let lm = LoadedModel::load(&opts, &Registry::builtin()).unwrap();
    // Loaded (the weights stay mapped after the files are unlinked).
    std::fs::remove_dir_all(&dir).ok();
    lm
}

fn tools() -> Value {
    json!([
        {"type": "function", "function": {"name": "get_weather", "parameters": {
            "type": "object", "properties": {
                "city": {"type": "string", "maxLength": 6},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}
            }, "required": ["city", "unit"]}}},
        {"type": "function", "function": {"name": "add", "parameters": {
            "type": "object", "properties": {
                "a": {"type": "integer", "minimum": -50, "maximum": 50},
                "b": {"type": "integer"}
            }, "required": ["a", "b"]}}},
        {"type": "function", "function": {"name": "book", "parameters": {
            "type": "object", "properties": {
                "guest": {"type": "object", "properties": {
                    "vip": {"type": "boolean"},
                    "age": {"type": "integer", "minimum": 0, "maximum": 120}
                }, "required": ["vip"]},
                "tags": {"type": "array", "items": {"enum": ["x", "y"]}, "maxItems": 2}
            }, "required": ["guest"]}}}
    ])
}

fn schema_of(name: &str) -> Value {
    tools()
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["function"]["name"] == name)
        .map(|t| t["function"]["parameters"].clone())
        .unwrap_or_else(|| panic!("model called unknown function {name}"))
}

fn validate(schema: &Value, v: &Value) -> Result<(), String> {
    let val = jsonschema::validator_for(schema).map_err(|e| e.to_string())?;
    let errs: Vec<String> = val.iter_errors(v).map(|e| e.to_string()).collect();
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs.join("; "))
    }
}

fn request(extra: Value, seed: u64) -> ChatRequest {
    let mut req = json!({
        "model": "tiny",
        "messages": [{"role": "user", "content": "Weather in Oslo?"}],
        "temperature": 1.0,
        "seed": seed,
    });
    for (k, v) in extra.as_object().unwrap() {
        req[k] = v.clone();
    }
    let body: ChatCompletionRequest = serde_json::from_value(req).unwrap();
    ChatRequest::try_from(body).unwrap()
}

fn run(lm: &LoadedModel, req: &ChatRequest) -> chat::ChatOutcome {
    chat::run(lm, req, 0, &CancelToken::new(), &mut |_| true).unwrap()
}

/// Checks an outcome holds only valid calls; returns their names.
fn valid_calls(family: &str, seed: u64, out: &chat::ChatOutcome) -> Vec<String> {
    assert_eq!(
        out.finish,
        ChatFinish::ToolCalls,
        "{family} seed {seed}: {:?}",
        out.message
    );
    let calls = out.message.tool_calls.clone();
    assert!(!calls.is_empty(), "{family} seed {seed}");
    for c in &calls {
        let args: Value = serde_json::from_str(&c.arguments).unwrap();
        if let Err(e) = validate(&schema_of(&c.name), &args) {
            panic!("{family} seed {seed}: {} {args} invalid: {e}", c.name);
        }
    }
    calls.into_iter().map(|c| c.name).collect()
}

#[test]
fn required_always_yields_valid_calls() {
    for (arch, family) in MODELS {
        let lm = load(arch, family);
        for seed in 0..32 {
            let req = request(
                json!({"tools": tools(), "tool_choice": "required", "parallel_tool_calls": false}),
                seed,
            );
            let out = run(&lm, &req);
            assert_eq!(valid_calls(family, seed, &out).len(), 1);
        }
    }
}

#[test]
fn named_choice_always_yields_that_call() {
    for (arch, family) in MODELS {
        let lm = load(arch, family);
        for (seed, name) in (0..32).zip(["get_weather", "add", "book"].iter().cycle()) {
            let req = request(
                json!({"tools": tools(),
                       "tool_choice": {"type": "function", "function": {"name": name}}}),
                seed,
            );
            let out = run(&lm, &req);
            assert_eq!(valid_calls(family, seed, &out), vec![name.to_string()]);
        }
    }
}

#[test]
fn required_with_parallel_calls_every_complete_answer_is_valid() {
    let lm = load("qwen2", "qwen2.5");
    let mut complete = 0;
    for seed in 0..12 {
        let req = request(json!({"tools": tools(), "tool_choice": "required"}), seed);
        let out = run(&lm, &req);
        if out.finish == ChatFinish::Length {
            continue; // the 256-position context ran out mid-call
        }
        valid_calls("qwen2.5", seed, &out);
        complete += 1;
    }
    assert!(complete >= 6, "only {complete} of 12 answers completed");
}

#[test]
fn json_schema_outputs_always_validate() {
    let schemas = [
        json!({"type": "object", "properties": {
            "answer": {"enum": ["yes", "no", "maybe"]},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1}
        }, "required": ["answer", "confidence"], "additionalProperties": false}),
        json!({"type": "object", "properties": {
            "items": {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 1, "maxItems": 3},
            "meta": {"type": "object", "properties": {"ok": {"type": "boolean"}},
                     "required": ["ok"], "additionalProperties": false}
        }, "required": ["items", "meta"], "additionalProperties": false}),
        json!({"type": "array", "items": {"type": "string", "maxLength": 4}, "maxItems": 3}),
    ];
    for (arch, family) in &MODELS[..2] {
        let lm = load(arch, family);
        for (k, schema) in schemas.iter().enumerate() {
            for seed in 0..32 {
                let req = request(
                    json!({"response_format": {"type": "json_schema",
                        "json_schema": {"name": "out", "schema": schema, "strict": true}}}),
                    seed,
                );
                let out = run(&lm, &req);
                let text = out.message.content.clone().unwrap_or_default();
                assert_eq!(
                    out.finish,
                    ChatFinish::Stop,
                    "{family} schema {k} seed {seed}: {text:?}"
                );
                let v: Value = serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("{family} schema {k} seed {seed}: {e}: {text:?}"));
                if let Err(e) = validate(schema, &v) {
                    panic!("{family} schema {k} seed {seed}: {text} invalid: {e}");
                }
            }
        }
    }
}

#[test]
fn json_object_outputs_are_objects() {
    let lm = load("qwen2", "qwen2.5");
    let mut complete = 0;
    for seed in 0..16 {
        let req = request(json!({"response_format": {"type": "json_object"}}), seed);
        let out = run(&lm, &req);
        if out.finish == ChatFinish::Length {
            continue; // free-form strings can outgrow the tiny context
        }
        let text = out.message.content.clone().unwrap_or_default();
        // Syntax only: noise may write numbers like 6E4627, valid JSON that serde_json
        // cannot hold in an f64.
        // (IgnoredAny checks the syntax without converting numbers.)
        serde_json::from_str::<serde::de::IgnoredAny>(&text)
            .unwrap_or_else(|e| panic!("{e}: {text:?}"));
        assert!(text.starts_with('{'), "{text:?}");
        complete += 1;
    }
    assert!(complete >= 1, "no json_object answer completed");
}

#[test]
fn bad_schemas_are_rejected_before_generation() {
    let lm = load("qwen2", "qwen2.5");
    let req = request(
        json!({"tools": [{"type": "function", "function": {"name": "f",
            "parameters": {"type": "object", "properties": {"x": {"$ref": "#/$defs/nope"}}}}}],
            "tool_choice": "required"}),
        0,
    );
    let err = chat::run(&lm, &req, 0, &CancelToken::new(), &mut |_| true).unwrap_err();
    assert!(matches!(err, chat::ChatError::Invalid { .. }), "{err}");
    assert!(
        err.to_string().contains("tools[0].function.parameters"),
        "{err}"
    );
}
