//! Random mutations of the real chat templates (`fixtures/templates/*.jinja`) rendered with
//! random conversations: every render ends, with a prompt or a template error, never a panic,
//! an abort or a hang. The whole run is one child process under an address-space and a CPU-time
//! limit (`template_support::bounded`).

use callm::openai::ChatCompletionRequest;
use callm::request::ChatRequest;
use callm::template::limits::MAX_PROMPT_BYTES;
use callm::template::{ModelTemplateInfo, PromptRenderer};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::json;
use std::cell::Cell;

#[path = "template_support/mod.rs"]
mod template_support;
use template_support::{bounded, fixtures};

/// Jinja pieces inserted between a template's tags: loops, growth, recursion, huge arguments,
/// and a few that break the syntax.
const SNIPPETS: &[&str] = &[
    "{% for m in messages * 30 %}{{ m }}{% endfor %}",
    "{{ messages | tojson(indent=4) }}",
    "{{ tools | tojson(indent=1000000) }}",
    "{{ messages[0].content * 1000 }}",
    "{{ messages[0].content | indent(100000) }}",
    "{{ '{:>99999999}'.format(1) }}",
    "{% set ns = namespace(s='ab') %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
    "{% macro m(x) %}{{ m(x) }}{% endmacro %}{{ m(1) }}",
    "{% include 'chat_template' %}",
    "{{ range(100000) | join(',') | length }}",
    "{{ raise_exception('mutated') }}",
    "{{ (messages * 1000) | tojson }}",
    "{{ [1] * 10000000 }}",
    "{{ strftime_now('%d %b %Y') }}",
    "{{ undefined_variable.attr }}",
    "{%",
    "{{ messages[",
];

/// A template cut into text and tags (`{{ }}`, `{% %}`, `{# #}`).
fn segments(src: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = src;
    while let Some(open) = rest.find('{').filter(|_| !rest.is_empty()) {
        let close = match rest[open..].get(..2) {
            Some("{{") => "}}",
            Some("{%") => "%}",
            Some("{#") => "#}",
            _ => {
                out.push(rest[..open + 1].to_string());
                rest = &rest[open + 1..];
                continue;
            }
        };
        if open > 0 {
            out.push(rest[..open].to_string());
        }
        let end = rest[open + 2..]
            .find(close)
            .map_or(rest.len(), |e| open + 2 + e + 2);
        out.push(rest[open..end].to_string());
        rest = &rest[end..];
    }
    if !rest.is_empty() {
        out.push(rest.to_string());
    }
    out
}

/// Whether a segment opens or closes a block (removing or copying it alone breaks nesting).
fn is_block_tag(seg: &str) -> bool {
    seg.starts_with("{%")
}

/// A mutation of a template, on its segments (indices are taken modulo their count).
#[derive(Debug, Clone)]
enum Mutation {
    /// Remove a text or `{{ }}` segment.
    Delete(usize),
    /// Copy a text or `{{ }}` segment elsewhere.
    Duplicate(usize, usize),
    /// Insert one of [`SNIPPETS`] between segments.
    Insert(usize, usize),
    /// Run segments `a..=b` `n` times in a loop (it may cut through a block: a syntax error).
    Loop(usize, usize, u16),
    /// Remove any one segment, tags included.
    DeleteAny(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        2 => any::<usize>().prop_map(Mutation::Delete),
        2 => (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::Duplicate(a, b)),
        3 => (any::<usize>(), 0..SNIPPETS.len()).prop_map(|(at, i)| Mutation::Insert(at, i)),
        3 => (any::<usize>(), 0usize..20, 1u16..2000).prop_map(|(a, len, n)| Mutation::Loop(a, len, n)),
        1 => any::<usize>().prop_map(Mutation::DeleteAny),
    ]
}

fn apply(mut segs: Vec<String>, m: &Mutation) -> Vec<String> {
    let n = segs.len().max(1);
    let plain: Vec<usize> = (0..segs.len())
        .filter(|&i| !is_block_tag(&segs[i]))
        .collect();
    match *m {
        Mutation::Delete(i) if !plain.is_empty() => {
            segs.remove(plain[i % plain.len()]);
        }
        Mutation::Duplicate(i, to) if !plain.is_empty() => {
            let piece = segs[plain[i % plain.len()]].clone();
            segs.insert(to % n, piece);
        }
        Mutation::Insert(at, i) => segs.insert(at % n, SNIPPETS[i].to_string()),
        Mutation::Loop(a, len, times) => {
            let a = a % n;
            let b = (a + len).min(segs.len());
            segs.insert(b, "{% endfor %}".to_string());
            segs.insert(a, format!("{{% for _fuzz in range({times}) %}}"));
        }
        Mutation::DeleteAny(i) if !segs.is_empty() => {
            segs.remove(i % n);
        }
        _ => {}
    }
    segs
}

/// A random conversation: roles in any order, calls and results, tools or none.
fn conversation() -> impl Strategy<Value = ChatRequest> {
    let text = prop_oneof![
        "[a-zA-Z0-9 .,\n]{0,40}",
        Just("<|im_end|>".to_string()),
        Just("{{ '{%".to_string()),
        any::<String>(),
    ];
    let message = (0..5usize, text.clone(), any::<bool>()).prop_map(|(role, content, call)| {
        match role {
            0 => json!({"role": "system", "content": content}),
            1 => json!({"role": "user", "content": content}),
            2 if call => json!({"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "lookup",
                 "arguments": serde_json::to_string(&json!({"q": content})).unwrap_or_default()}}]}),
            2 => json!({"role": "assistant", "content": content}),
            3 => json!({"role": "tool", "tool_call_id": "call_1", "content": content}),
            _ => json!({"role": "user", "content": [{"type": "text", "text": content}]}),
        }
    });
    (
        proptest::collection::vec(message, 1..6),
        any::<bool>(),
        text,
    )
        .prop_map(|(messages, with_tools, desc)| {
            let mut req = json!({"messages": messages});
            if with_tools {
                req["tools"] = json!([{"type": "function", "function": {"name": "lookup",
                    "description": desc, "parameters": {"type": "object",
                    "properties": {"q": {"type": "string"}}, "required": ["q"]}}}]);
            }
            let body = serde_json::from_value::<ChatCompletionRequest>(req)
                .expect("the generator writes valid requests");
            ChatRequest::try_from(body).expect("the generator writes valid requests")
        })
}

fn templates() -> Vec<String> {
    let dir = fixtures().join("templates");
    let mut out: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "jinja"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    out.sort();
    assert!(
        out.len() >= 20,
        "{} templates in {}",
        out.len(),
        dir.display()
    );
    out
}

fn fuzz() {
    let sources = templates();
    let mut runner = TestRunner::new(Config {
        cases: 300,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (
        proptest::sample::select(sources),
        proptest::collection::vec(mutation(), 1..4),
        conversation(),
    );
    let (ok, failed) = (Cell::new(0usize), Cell::new(0usize));
    runner
        .run(&strategy, |(source, mutations, req)| {
            let text = mutations.iter().fold(segments(&source), apply).concat();
            let info =
                ModelTemplateInfo::from_template(text, Some("<s>".into()), Some("</s>".into()));
            let result = PromptRenderer::new(info, None).and_then(|r| r.render(&req));
            match result {
                Ok(p) => {
                    prop_assert!(p.text.len() <= MAX_PROMPT_BYTES);
                    ok.set(ok.get() + 1);
                }
                Err(e) => {
                    prop_assert!(!e.to_string().is_empty());
                    failed.set(failed.get() + 1);
                }
            }
            Ok(())
        })
        .unwrap();
    // Both outcomes occur: the mutations neither break every template nor leave them all intact.
    let (ok, failed) = (ok.get(), failed.get());
    assert!(ok > 0 && failed > 0, "{ok} rendered, {failed} failed");
}

#[test]
fn mutated_real_templates_render_or_fail_cleanly() {
    bounded("mutated_real_templates_render_or_fail_cleanly", fuzz);
}
