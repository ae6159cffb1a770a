//! Hostile chat templates (a GGUF's or tokenizer_config's template is untrusted input) end with
//! a clear template error, within bounded time and memory; legitimate large prompts still render.
//!
//! Each test runs its renders in a child process under an address-space limit and a CPU-time
//! limit, on a 2 MiB thread like tokio's (`template_support::bounded`): a render that tried to
//! allocate gigabytes, overflowed its stack or looped for ever fails the test, not the machine.
//! These are the cases the fuel stops in-process; `templates_sandbox` has those only the render
//! worker's limits stop.

use callm::openai::ChatCompletionRequest;
use callm::request::ChatRequest;
use callm::template::limits::{MAX_INDENT, MAX_PROMPT_BYTES, MAX_TEMPLATE_BYTES};
use callm::template::{ModelTemplateInfo, PromptRenderer, RenderedPrompt, TemplateError};
use serde_json::{json, Value as Json};

#[path = "template_support/mod.rs"]
mod template_support;
use template_support::{bounded, fixtures};

fn request() -> ChatRequest {
    let body: ChatCompletionRequest = serde_json::from_value(json!({
        "tools": [{"type": "function", "function": {"name": "lookup", "description": "Looks up.",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}],
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "line one\nline two\nline three"}]
    }))
    .unwrap();
    ChatRequest::try_from(body).unwrap()
}

fn render(template: &str) -> Result<RenderedPrompt, TemplateError> {
    let info = ModelTemplateInfo::from_template(template, None, Some("</s>".into()));
    PromptRenderer::new(info, None)?.render(&request())
}

/// The template ends with a client error (HTTP 400) whose message contains `needle`.
fn refused(template: &str, needle: &str) {
    match render(template) {
        Ok(p) => panic!("rendered {} bytes from {template:.80}", p.text.len()),
        Err(e) => {
            assert!(e.is_client_error(), "{e}");
            assert!(e.to_string().contains(needle), "{template:.80}: {e}");
        }
    }
}

const OUT_OF_FUEL: &str = "render used up its budget";

#[test]
fn nested_loops_run_out_of_fuel() {
    bounded("nested_loops_run_out_of_fuel", || {
        refused(
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
            OUT_OF_FUEL,
        );
        refused(
            "{% for m in messages * 100000 %}{% for n in messages * 100000 %}{{ '' }}{% endfor %}{% endfor %}",
            OUT_OF_FUEL,
        );
    });
}

#[test]
fn string_doubling_runs_out_of_fuel() {
    bounded("string_doubling_runs_out_of_fuel", || {
        refused(
            "{% set ns = namespace(s='ab') %}{% for i in range(100) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}",
            OUT_OF_FUEL,
        );
        // No loop needed: the doubling written out.
        let unrolled = format!(
            "{{% set s = messages[1].content %}}{}{{{{ s|length }}}}",
            "{% set s = s + s %}".repeat(64)
        );
        refused(&unrolled, OUT_OF_FUEL);
        for step in [
            "ns.s.replace('a', 'aaaa')",
            "ns.s|replace('a', 'aaaa')",
            "[ns.s, ns.s]|join",
            "ns.s ~ ns.s|upper",
            "ns.s * 2",
            "ns.s ~ ns.s|tojson",
            "ns.s ~ ns.s|indent(4)",
            "'{}{}'.format(ns.s, ns.s)",
            "'%s%s'|format(ns.s, ns.s)",
        ] {
            refused(
                &format!("{{% set ns = namespace(s='a\\nb') %}}{{% for i in range(100) %}}{{% set ns.s = {step} %}}{{% endfor %}}"),
                OUT_OF_FUEL,
            );
        }
    });
}

#[test]
fn huge_sizes_in_arguments_are_refused() {
    bounded("huge_sizes_in_arguments_are_refused", || {
        refused(
            "{{ messages[1].content | indent(1000000000) }}",
            &format!("over the limit of {MAX_INDENT}"),
        );
        refused(
            "{{ messages[1].content | indent(width=1000000000, first=true) }}",
            "over the limit",
        );
        refused(
            "{{ messages | tojson(indent=1000000000000) }}",
            "over the limit",
        );
        refused(
            "{{ messages | tojson(indent='x' * 100000) }}",
            "over the limit",
        );
        refused("{{ '{:>1000000000}'.format(1) }}", OUT_OF_FUEL);
        refused("{{ '{:.1000000000f}'.format(1.5) }}", OUT_OF_FUEL);
        refused("{{ '%1000000000s' | format(1) }}", OUT_OF_FUEL);
        refused("{{ ('x' * 100000000) ~ ('y' * 100000000) }}", OUT_OF_FUEL);
        refused("{{ 'x' * 1000000000000 }}", OUT_OF_FUEL);
        refused("{{ strftime_now('%c' * 10000000) }}", OUT_OF_FUEL);
        refused("{% for i in range(1000000000000) %}{% endfor %}", "range");
    });
}

#[test]
fn lazily_huge_sequences_are_written_within_the_budget() {
    // `[1] * 10**8` costs nothing until something writes it out.
    bounded(
        "lazily_huge_sequences_are_written_within_the_budget",
        || {
            for sink in [
                "{{ [1] * 100000000 }}",
                "{{ ([1] * 100000000) | tojson }}",
                "{{ ([1] * 100000000) | tojson(indent=2) }}",
                "{{ ([1] * 100000000) | py_repr }}",
                "{{ ([1] * 100000000) | indent }}",
                "{{ raise_exception([1] * 100000000) }}",
                "{{ {'name': 'f', 'arguments': {'a': [1] * 100000000}} | py_call }}",
                "{{ {'name': 'f', 'parameters': {'a': [1] * 100000000}} | py_stub }}",
            ] {
                refused(sink, OUT_OF_FUEL);
            }
        },
    );
}

#[test]
fn output_is_capped() {
    bounded("output_is_capped", || {
        // 100,000 copies of a 512 KiB string: the output cap stops it, not the fuel.
        let long = format!(
            "{{% set s = '{}' %}}{{% for i in range(100000) %}}{{{{ s }}}}{{% endfor %}}",
            "x".repeat(512 << 10)
        );
        refused(&long, &format!("passed {MAX_PROMPT_BYTES} bytes"));
        // Many small writes run out of fuel first.
        refused(
            "{% for i in range(100000) %}{% for j in range(1000) %}{{ messages[1].content }}{% endfor %}{% endfor %}",
            OUT_OF_FUEL,
        );
    });
}

#[test]
fn deep_recursion_is_refused_without_overflowing_the_stack() {
    bounded(
        "deep_recursion_is_refused_without_overflowing_the_stack",
        || {
            refused(
                "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
                "recursion limit",
            );
            refused(
                "{% macro f(n) %}{% set x = f(n + 1) %}{{ x }}{% endmacro %}{{ f(0) }}",
                "recursion limit",
            );
            refused("{% include 'chat_template' %}", "recursion limit");
            refused(
                "{% for m in [messages] recursive %}{{ loop([m]) }}{% endfor %}",
                "recursion limit",
            );
            // A macro that calls itself twice: exponential calls, bounded by the fuel.
            refused(
                "{% macro f(n) %}{% if n < 60 %}{{ f(n + 1) }}{{ f(n + 1) }}{% endif %}{% endmacro %}{{ f(0) }}",
                OUT_OF_FUEL,
            );
        },
    );
}

#[test]
fn hostile_template_sources_do_not_compile() {
    bounded("hostile_template_sources_do_not_compile", || {
        let syntax = |src: &str, needle: &str| match render(src) {
            Err(TemplateError::Syntax(m)) => assert!(m.contains(needle), "{m}"),
            other => panic!("{other:?}"),
        };
        syntax(
            &format!("{{{{ {}1{} }}}}", "(".repeat(100_000), ")".repeat(100_000)),
            "",
        );
        syntax(
            &format!(
                "{}x{}",
                "{% if true %}".repeat(100_000),
                "{% endif %}".repeat(100_000)
            ),
            "",
        );
        syntax(
            &"x".repeat(MAX_TEMPLATE_BYTES + 1),
            &format!("over the limit of {MAX_TEMPLATE_BYTES}"),
        );
    });
}

/// 100 tools with ten long-described parameters each, as an agent framework sends them.
fn hundred_tools() -> Vec<Json> {
    (0..100)
        .map(|i| {
            let props: serde_json::Map<String, Json> = (0..10)
                .map(|p| {
                    (
                        format!("param_{p}"),
                        json!({"type": "string", "enum": ["alpha", "beta", "gamma"],
                        "description": format!("Parameter {p} of tool {i}. {}", "It matters. ".repeat(25))}),
                    )
                })
                .collect();
            json!({"type": "function", "function": {"name": format!("tool_{i}"),
                "description": format!("Tool number {i}. {}", "Does useful work. ".repeat(20)),
                "parameters": {"type": "object", "properties": props, "required": ["param_0"]}}})
        })
        .collect()
}

#[test]
fn a_hundred_long_tools_and_a_long_conversation_still_render() {
    bounded(
        "a_hundred_long_tools_and_a_long_conversation_still_render",
        || {
            let tools = hundred_tools();
            let mut messages = vec![json!({"role": "system", "content": "You are helpful."})];
            for i in 0..100 {
                messages.push(json!({"role": "user", "content": format!("Question {i}: {}", "Please help me with this task. ".repeat(30))}));
                messages.push(json!({"role": "assistant", "content": format!("Answer {i}: {}", "Here is what I found. ".repeat(30))}));
            }
            messages.push(json!({"role": "user", "content": "And now?"}));
            let body: ChatCompletionRequest =
                serde_json::from_value(json!({"tools": tools, "messages": messages})).unwrap();
            let req = ChatRequest::try_from(body).unwrap();
            let text = std::fs::read_to_string(
                fixtures()
                    .join("templates")
                    .join("meta-llama-Llama-3.1-8B-Instruct.jinja"),
            )
            .unwrap();
            let info = ModelTemplateInfo::from_template(
                text,
                Some("<|begin_of_text|>".into()),
                Some("<|eot_id|>".into()),
            );
            let p = PromptRenderer::new(info, None)
                .unwrap()
                .render(&req)
                .unwrap();
            // Each tool appears as json.dumps(tool, indent=4) (serde_json's 4-space pretty
            // printer writes the same text for these ASCII, float-free values).
            for t in &tools {
                let mut pretty = Vec::new();
                let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
                let mut ser = serde_json::Serializer::with_formatter(&mut pretty, fmt);
                serde::Serialize::serialize(t, &mut ser).unwrap();
                let pretty = String::from_utf8(pretty).unwrap();
                assert!(p.text.contains(&pretty), "missing {:.60}", pretty);
            }
            assert!(p.text.contains("Answer 99: Here is what I found."));
            assert!(p.text.len() > 500_000, "{}", p.text.len());
        },
    );
}
