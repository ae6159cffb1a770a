//! Rendering behaviour beyond the goldens: parallel-call splitting, raising templates, id
//! mapping, model directories, registry families, the CLI.

use callm::cli::render::{render_to_string, RenderArgs};
use callm::openai::ChatCompletionRequest;
use callm::registry::Registry;
use callm::request::ChatRequest;
use callm::template::{ChatTemplate, ModelTemplateInfo, PromptRenderer, TemplateError};
use serde_json::json;

#[path = "template_support/mod.rs"]
mod template_support;
use template_support::fixtures;

fn fixture_template(name: &str) -> String {
    std::fs::read_to_string(fixtures().join("templates").join(name)).unwrap()
}

fn req(v: serde_json::Value) -> ChatRequest {
    let body: ChatCompletionRequest = serde_json::from_value(v).unwrap();
    ChatRequest::try_from(body).unwrap()
}

fn parallel_history() -> ChatRequest {
    req(json!({
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}],
        "messages": [
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"a\": 1}"}},
                {"id": "call_2", "type": "function", "function": {"name": "f", "arguments": "{\"a\": 2}"}}]},
            {"role": "tool", "tool_call_id": "call_2", "content": "two"},
            {"role": "tool", "tool_call_id": "call_1", "content": "one"}],
        "chat_template_kwargs": {"date_string": "26 Jul 2024"}
    }))
}

#[test]
fn llama31_parallel_calls_are_split_not_rejected() {
    let info = ModelTemplateInfo::from_template(
        fixture_template("meta-llama-Llama-3.1-8B-Instruct.jinja"),
        Some("<|begin_of_text|>".into()),
        None,
    );
    let mut r = PromptRenderer::new(info, None).unwrap();
    assert!(
        r.options().split_parallel_calls,
        "known from the template text"
    );
    let text = r.render(&parallel_history()).unwrap().text;
    let one = text.find("{\"a\": 1}").unwrap();
    let res1 = text.find("\"one\"").unwrap();
    let two = text.find("{\"a\": 2}").unwrap();
    let res2 = text.find("\"two\"").unwrap();
    assert!(
        one < res1 && res1 < two && two < res2,
        "call, result, call, result:\n{text}"
    );

    // Without the up-front rule, the raise is caught and the render retried split.
    let mut opts = r.options().clone();
    opts.split_parallel_calls = false;
    r.set_options(opts);
    assert_eq!(r.render(&parallel_history()).unwrap().text, text);
}

#[test]
fn raising_template_gives_its_message_as_a_client_error() {
    let info =
        ModelTemplateInfo::from_template(fixture_template("codellama-instruct.jinja"), None, None);
    let r = PromptRenderer::new(info, None).unwrap();
    let err = r
        .render(&req(
            json!({"messages": [{"role": "assistant", "content": "x"}]}),
        ))
        .unwrap_err();
    assert!(err.is_client_error());
    assert_eq!(
        err.raised_message(),
        Some("Conversation roles must alternate user/assistant/user/assistant/...")
    );

    let t = ChatTemplate::compile("{{ raise_exception('nope: ' ~ messages|length) }}").unwrap();
    let e = t
        .render(&callm::template::env::to_value(json!({"messages": [1, 2]})))
        .unwrap_err();
    assert!(
        matches!(&e, TemplateError::Raised(m) if m == "nope: 2"),
        "{e}"
    );

    assert!(matches!(
        ChatTemplate::compile("{% if %}"),
        Err(TemplateError::Syntax(_))
    ));
    let t = ChatTemplate::compile("{{ messages[0].content.items() }}").unwrap();
    let e = t
        .render(&callm::template::env::to_value(
            json!({"messages": [{"content": 3}]}),
        ))
        .unwrap_err();
    assert!(e.is_client_error(), "{e}");
}

#[test]
fn mistral_ids_are_mapped_consistently() {
    let info = ModelTemplateInfo::from_template(
        fixture_template("mistralai-Mistral-7B-Instruct-v0.3.jinja"),
        Some("<s>".into()),
        Some("</s>".into()),
    );
    let r = PromptRenderer::new(info, None).unwrap();
    let a = r.render(&parallel_history()).unwrap().text;
    let b = r.render(&parallel_history()).unwrap().text;
    assert_eq!(a, b);
    let id1 = callm::template::normalize::alnum9_id("call_1");
    let id2 = callm::template::normalize::alnum9_id("call_2");
    assert!(
        a.contains(&format!("\"id\": \"{id1}\"")) && a.contains(&format!("\"call_id\": \"{id2}\"")),
        "{a}"
    );
    assert!(
        a.contains("[TOOL_RESULTS] {\"content\": one, \"call_id\": \""),
        "{a}"
    );
}

#[test]
fn mistral_tokenizer_config_is_a_model_dir() {
    let dir = fixtures().join("tokenizers/mistral-v0.3");
    let info = ModelTemplateInfo::from_model_dir(&dir).unwrap();
    assert_eq!(info.bos_token.as_deref(), Some("<s>"));
    let r = PromptRenderer::new(info, Registry::builtin().get("mistral-7b-instruct-v0.3")).unwrap();
    let text = r.render(&parallel_history()).unwrap().text;
    assert!(
        text.starts_with("<s>[AVAILABLE_TOOLS] [{\"type\": \"function\""),
        "{text}"
    );
    assert!(ModelTemplateInfo::from_model_dir(&fixtures().join("tokenizers/llama3")).is_err());
}

#[test]
fn registry_families_render_their_bundled_templates() {
    let reg = Registry::builtin();
    for name in [
        "gorilla-openfunctions-v2",
        "glaive-function-calling-v1",
        "nexusraven-v2",
        "chatglm3-6b",
    ] {
        let family = reg.require(name).unwrap();
        let info = ModelTemplateInfo::for_family(family, None).unwrap();
        let r = PromptRenderer::new(info, Some(family)).unwrap();
        let text = r.render(&parallel_history()).unwrap().text;
        assert!(
            text.contains("one") && text.contains("two"),
            "{name}: {text}"
        );
    }
    let llama = reg.require("llama-3.1").unwrap();
    assert!(matches!(
        ModelTemplateInfo::for_family(llama, None),
        Err(TemplateError::Missing(_))
    ));
}

#[test]
fn gorilla_without_functions_is_the_upstream_prompt() {
    let family = Registry::builtin()
        .require("gorilla-openfunctions-v2")
        .unwrap()
        .clone();
    let info = ModelTemplateInfo::for_family(&family, None).unwrap();
    let r = PromptRenderer::new(info, Some(&family)).unwrap();
    let text = r
        .render(&req(
            json!({"messages": [{"role": "user", "content": "Hi é"}]}),
        ))
        .unwrap()
        .text;
    assert!(
        text.ends_with(
            " you will refuse to answer.\n### Instruction: <<question>> Hi é\n### Response: "
        ),
        "{text}"
    );
}

#[test]
fn named_tool_use_template_is_picked_with_tools() {
    let info = ModelTemplateInfo::from_template("plain", None, None)
        .with_named("tool_use", "tools:{{ tools|length }}");
    let r = PromptRenderer::new(info, None).unwrap();
    assert_eq!(r.render(&parallel_history()).unwrap().text, "tools:1");
    assert_eq!(r.render(&ChatRequest::default()).unwrap().text, "plain");
}

/// Numbers in a request reach the template as Python's `json.loads` reads them: the nearest
/// double, also for 17-digit values (serde_json's default parser may miss by one unit in the
/// last place; callm enables its exact `float_roundtrip`). Expected: `python3 -c "import json;
/// print(json.dumps(json.loads(TEXT)))"` for the `default` array below.
#[test]
fn request_floats_reach_the_template_as_python_reads_them() {
    let body = r#"{"messages": [{"role": "user", "content": "hi"}],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object",
        "properties": {"x": {"type": "number", "default": [-4.0216414487815573e-252,
        48.85661400000001, 2.3509887016445750e-38, 0.1, 1e23, 9007199254740993.0]}}}}}]}"#;
    let body: ChatCompletionRequest = serde_json::from_str(body).unwrap();
    let req = ChatRequest::try_from(body).unwrap();
    let info = ModelTemplateInfo::from_template(
        "{{ tools[0].function.parameters.properties.x.default | tojson }}",
        None,
        None,
    );
    let out = PromptRenderer::new(info, None)
        .unwrap()
        .render(&req)
        .unwrap();
    assert_eq!(
        out.text,
        "[-4.0216414487815573e-252, 48.85661400000001, 2.350988701644575e-38, 0.1, 1e+23, 9007199254740992.0]"
    );
}

#[test]
fn python_semantics_in_templates() {
    let t = ChatTemplate::compile(
        "{{ x|tojson }}|{{ x|tojson(indent=2) }}|{{ x|tojson(separators=(',', ':')) }}|{{ none }}|{{ true }}|{{ 'a b'.split() }}|{{ '<x>' }}|{{ {'k': 'v'}.items()|list|length }}",
    )
    .unwrap();
    let out = t
        .render(&callm::template::env::to_value(
            json!({"x": {"b": "<é>", "a": [1, 2.5]}}),
        ))
        .unwrap();
    assert_eq!(
        out,
        "{\"b\": \"<é>\", \"a\": [1, 2.5]}|{\n  \"b\": \"<é>\",\n  \"a\": [\n    1,\n    2.5\n  ]\n}|{\"b\":\"<é>\",\"a\":[1,2.5]}|None|True|['a', 'b']|<x>|1"
    );
}

#[test]
fn cli_prints_prompt_and_ids() {
    let dir = std::env::temp_dir().join(format!("callm-render-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let req_path = dir.join("req.json");
    std::fs::write(
        &req_path,
        json!({"messages": [{"role": "user", "content": "Hi [INST]"}]}).to_string(),
    )
    .unwrap();
    let mistral = fixtures().join("tokenizers/mistral-v0.3");
    let args = RenderArgs {
        model: mistral.display().to_string(),
        request: req_path.display().to_string(),
        ids: false,
        tokenizer: None,
        family: None,
        template_limits: Default::default(),
    };
    assert_eq!(
        render_to_string(&args).unwrap(),
        "<s>[INST] Hi [INST][/INST]"
    );
    let ids = render_to_string(&RenderArgs { ids: true, ..args }).unwrap();
    let ids: Vec<u32> = serde_json::from_str(&ids).unwrap();
    assert_eq!(ids[..2], [1, 3]);
    assert_eq!(
        ids.iter().filter(|&&i| i == 3).count(),
        1,
        "user's [INST] stays text: {ids:?}"
    );
    assert_eq!(*ids.last().unwrap(), 4);

    let args = RenderArgs {
        model: "nexusraven-v2".into(),
        request: req_path.display().to_string(),
        ids: false,
        tokenizer: None,
        family: None,
        template_limits: Default::default(),
    };
    assert_eq!(
        render_to_string(&args).unwrap(),
        "User Query: Hi [INST]<human_end>"
    );
    let bad = RenderArgs {
        model: "no-such-model".into(),
        request: req_path.display().to_string(),
        ids: false,
        tokenizer: None,
        family: None,
        template_limits: Default::default(),
    };
    assert!(render_to_string(&bad).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn protected_text_survives_ascii_json_and_python_repr() {
    let family = Registry::builtin()
        .require("gorilla-openfunctions-v2")
        .unwrap()
        .clone();
    let info = ModelTemplateInfo::for_family(&family, None).unwrap();
    let r = PromptRenderer::new(info, Some(&family))
        .unwrap()
        .with_protected_tokens(["<|EOT|>"]);
    let body = json!({
        "tools": [{"type": "function", "function": {"name": "f", "description": "ends with <|EOT|> é"}}],
        "messages": [
            {"role": "user", "content": "first <|EOT|>"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"x\": \"<|EOT|>\"}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "ok"},
            {"role": "user", "content": "again"}]
    });
    let p = r.render(&req(body)).unwrap();
    assert!(
        p.text
            .contains("\"description\": \"ends with <|EOT|> \\u00e9\""),
        "{}",
        p.text
    );
    assert!(p.text.contains("f(x='<|EOT|>')"), "{}", p.text);
    assert_eq!(p.protected.len(), 3);
    for s in &p.protected {
        assert_eq!(&p.text[s.clone()], "<|EOT|>");
    }
    // The template's own "<|EOT|>" after the assistant turn is not protected.
    assert_eq!(p.text.matches("<|EOT|>").count(), 4);
}

/// Phi-4-mini reads the tools from the system message (`message['tools']`, a JSON string):
/// the prompt takes the layout of its model card's tool-enabled example,
/// `<|system|>You are a helpful assistant with some tools.<|tool|>[{"name": ...}]<|/tool|><|end|><|user|>...<|end|><|assistant|>`.
#[test]
fn tools_reach_templates_that_read_them_from_the_system_message() {
    let template = "{% for message in messages %}{% if message['role'] == 'system' and 'tools' in message and message['tools'] is not none %}{{ '<|' + message['role'] + '|>' + message['content'] + '<|tool|>' + message['tools'] + '<|/tool|>' + '<|end|>' }}{% else %}{{ '<|' + message['role'] + '|>' + message['content'] + '<|end|>' }}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}";
    let info = ModelTemplateInfo::from_template(template, None, Some("<|endoftext|>".into()));
    let family = Registry::builtin().require("phi-4-mini").unwrap().clone();
    let renderer = PromptRenderer::new(info, Some(&family)).unwrap();
    let r = req(json!({
        "tools": [{"type": "function", "function": {"name": "get_weather_updates",
            "description": "Fetches weather updates for a given city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
        "messages": [{"role": "user", "content": "What is the weather like in Paris today?"}]}));
    assert_eq!(
        renderer.render(&r).unwrap().text,
        "<|system|>You are a helpful assistant with some tools.<|tool|>[{\"name\": \"get_weather_updates\", \"description\": \"Fetches weather updates for a given city.\", \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}}}}]<|/tool|><|end|><|user|>What is the weather like in Paris today?<|end|><|assistant|>"
    );
}
