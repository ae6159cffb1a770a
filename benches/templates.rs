//! Rendering speed of a typical tools prompt (Qwen2.5 template, two tools, a tool round trip),
//! and the worst cases of hostile templates: how long a render runs before it stops at its
//! budget (`callm::template::limits`), which bounds how long a server slot stays busy. Last,
//! the typical prompt again through the render worker of `callm::template::sandbox` (what
//! the `callm` binary does), for the cost of the process boundary.

use callm::openai::ChatCompletionRequest;
use callm::request::ChatRequest;
use callm::template::{ModelTemplateInfo, PromptRenderer};
use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;

const TEMPLATE: &str = r#"{%- if tools %}{{- '<|im_start|>system\n' }}{%- if messages[0]['role'] == 'system' %}{{- messages[0]['content'] }}{%- else %}{{- 'You are a helpful assistant.' }}{%- endif %}{{- "\n\n# Tools\n\n<tools>" }}{%- for tool in tools %}{{- "\n" }}{{- tool | tojson }}{%- endfor %}{{- "\n</tools><|im_end|>\n" }}{%- endif %}
{%- for message in messages %}{%- if message.role == "user" or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}{{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>\n' }}{%- elif message.role == "assistant" %}{{- '<|im_start|>assistant' }}{%- for tool_call in message.tool_calls %}{{- '\n<tool_call>\n{"name": "' + tool_call.function.name + '", "arguments": ' + tool_call.function.arguments | tojson + '}\n</tool_call>' }}{%- endfor %}{{- '<|im_end|>\n' }}{%- elif message.role == "tool" %}{{- '<|im_start|>user\n<tool_response>\n' + message.content + '\n</tool_response><|im_end|>\n' }}{%- endif %}{%- endfor %}
{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}"#;

fn request() -> ChatRequest {
    let body: ChatCompletionRequest = serde_json::from_value(serde_json::json!({
        "tools": [
            {"type": "function", "function": {"name": "get_weather", "description": "Get the current weather in a city.",
             "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "City name"},
             "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city"]}}},
            {"type": "function", "function": {"name": "get_time", "description": "Local time in a time zone.",
             "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]}}}
        ],
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "What's the weather in Paris? <|im_end|>"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "{\"temperature\": 21}"},
            {"role": "user", "content": "And in Tokyo?"}
        ]
    }))
    .expect("valid request body");
    ChatRequest::try_from(body).expect("valid request")
}

/// A long conversation: 100 tools with long descriptions, 200 turns (a 0.4 MB prompt).
fn long_request() -> ChatRequest {
    let tools: Vec<_> = (0..100)
        .map(|i| {
            let props: serde_json::Map<_, _> = (0..8)
                .map(|j| {
                    let d = format!("parameter {j} of tool {i}. ").repeat(5);
                    (
                        format!("p{j}"),
                        serde_json::json!({"type": "string", "description": d}),
                    )
                })
                .collect();
            serde_json::json!({"type": "function", "function": {"name": format!("tool_{i}"),
                "description": format!("Does thing number {i}. ").repeat(20),
                "parameters": {"type": "object", "properties": props, "required": ["p0"]}}})
        })
        .collect();
    let mut messages: Vec<_> = (0..100)
        .flat_map(|i| {
            [
                serde_json::json!({"role": "user", "content": format!("question {i} ").repeat(100)}),
                serde_json::json!({"role": "assistant", "content": format!("answer {i} ").repeat(100)}),
            ]
        })
        .collect();
    messages.push(serde_json::json!({"role": "user", "content": "last"}));
    let body: ChatCompletionRequest =
        serde_json::from_value(serde_json::json!({"tools": tools, "messages": messages}))
            .expect("valid request body");
    ChatRequest::try_from(body).expect("valid request")
}

fn renderer() -> PromptRenderer {
    let info = ModelTemplateInfo::from_template(TEMPLATE, None, Some("<|im_end|>".into()));
    PromptRenderer::new(info, None)
        .expect("template compiles")
        .with_protected_tokens([
            "<|im_start|>",
            "<|im_end|>",
            "<|endoftext|>",
            "<tool_call>",
            "</tool_call>",
        ])
}

fn bench(c: &mut Criterion) {
    let renderer = renderer();
    let req = request();
    c.bench_function("render_tools_prompt", |b| {
        b.iter(|| renderer.render(black_box(&req)).expect("renders"))
    });
    let long = long_request();
    c.bench_function("render_long_prompt", |b| {
        b.iter(|| renderer.render(black_box(&long)).expect("renders"))
    });
}

/// Hostile templates that use up the whole fuel (or the output cap) in different ways.
const HOSTILE: &[(&str, &str)] = &[
    (
        "nested_loops",
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    ),
    (
        "string_doubling",
        "{% set ns = namespace(s='ab') %}{% for i in range(100) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
    ),
    (
        "exponential_macro",
        "{% macro f(n) %}{% if n < 60 %}{{ f(n + 1) }}{{ f(n + 1) }}{% endif %}{% endmacro %}{{ f(0) }}",
    ),
    (
        "contains_in_lazy_sequence",
        "{{ 'x' in ([[1] * 10000] * 100000000) }}",
    ),
    ("tojson_of_lazy_sequence", "{{ ([1] * 100000000) | tojson }}"),
    ("print_lazy_sequence", "{{ [1] * 100000000 }}"),
    (
        "sort_in_loop",
        "{% for i in range(100000) %}{{ (messages | sort(attribute='content')) | length }}{% endfor %}",
    ),
    (
        "output_flood",
        "{% for i in range(100000) %}{% for j in range(1000) %}{{ messages[1].content }}{% endfor %}{% endfor %}",
    ),
];

fn bench_hostile(c: &mut Criterion) {
    let req = request();
    let mut group = c.benchmark_group("hostile_at_fuel_limit");
    group.sample_size(10);
    for (name, template) in HOSTILE {
        let info = ModelTemplateInfo::from_template(*template, None, Some("</s>".into()));
        let renderer = PromptRenderer::new(info, None).expect("template compiles");
        group.bench_function(*name, |b| {
            b.iter(|| {
                renderer
                    .render(black_box(&req))
                    .expect_err("stops at a limit")
            })
        });
    }
    group.finish();
}

/// The typical prompt rendered in a worker process (installed last: every later render in
/// this process goes through the worker).
fn bench_sandboxed(c: &mut Criterion) {
    use callm::template::sandbox::{install, SandboxConfig};
    assert!(install(SandboxConfig::new(env!("CARGO_BIN_EXE_callm"))));
    let renderer = renderer();
    let req = request();
    c.bench_function("render_tools_prompt_sandboxed", |b| {
        b.iter(|| renderer.render(black_box(&req)).expect("renders"))
    });
    let long = long_request();
    c.bench_function("render_long_prompt_sandboxed", |b| {
        b.iter(|| renderer.render(black_box(&long)).expect("renders"))
    });
}

criterion_group!(benches, bench, bench_hostile, bench_sandboxed);
criterion_main!(benches);
