//! The newer families' tool-call formats, against their documented output (the templates'
//! own examples and descriptions in fixtures/templates/README.md, FORMATS.md, the Berkeley
//! Function-Calling Leaderboard's Phi-4-mini handler), and reasoning kept apart from the
//! answer on every chunking.

use callm::openai::{FunctionDefinition, ParsedOutput, Tool};
use callm::parsers::{
    self, collect_events, collect_reasoning, AnswerStream, ParseOptions, Reasoning,
    ReasoningSplitter, StreamEvent,
};
use proptest::prelude::*;
use serde_json::{json, Value};

fn tool(name: &str, props: Value) -> Tool {
    Tool::function(FunctionDefinition {
        name: name.into(),
        description: None,
        parameters: Some(json!({"type": "object", "properties": props})),
        strict: None,
    })
}

fn tools() -> Vec<Tool> {
    vec![
        tool(
            "get_weather",
            json!({"city": {"type": "string"}, "days": {"type": "integer"},
                   "metric": {"type": "boolean"}, "where": {"type": "object"},
                   "tags": {"type": "array", "items": {"type": "string"}}}),
        ),
        tool("get_time", json!({"tz": {"type": "string"}})),
    ]
}

fn opts(with_tools: bool) -> ParseOptions {
    ParseOptions {
        tools: with_tools.then(tools),
        id_style: None,
        id_seed: Some(3),
    }
}

fn run(format: &str, text: &str, with_tools: bool) -> ParsedOutput {
    parsers::parse(&[format], text, &opts(with_tools)).expect("known format")
}

fn calls(out: &ParsedOutput) -> Vec<(String, Value)> {
    out.tool_calls
        .iter()
        .map(|c| {
            let v: Value = serde_json::from_str(&c.function.arguments).expect("JSON");
            (c.function.name.clone(), v)
        })
        .collect()
}

fn call(name: &str, args: Value) -> (String, Value) {
    (name.to_string(), args)
}

#[test]
fn qwen3_coder_values_are_typed_by_the_schema() {
    // The layout the Qwen3-Coder template renders and asks for.
    let text = "I'll check.\n<tool_call>\n<function=get_weather>\n<parameter=city>\nSan José\n</parameter>\n<parameter=days>\n3\n</parameter>\n<parameter=metric>\ntrue\n</parameter>\n<parameter=where>\n{\"lat\": 1.5}\n</parameter>\n<parameter=tags>\n[\"a\", \"b\"]\n</parameter>\n</function>\n</tool_call>";
    let out = run("qwen3_coder", text, true);
    assert_eq!(
        calls(&out),
        vec![call(
            "get_weather",
            json!({"city": "San José", "days": 3, "metric": true, "where": {"lat": 1.5}, "tags": ["a", "b"]})
        )]
    );
    assert_eq!(out.content.as_deref(), Some("I'll check."));
    // Without a schema, values stay text (as Qwen's own parser keeps them).
    assert_eq!(
        calls(&run("qwen3_coder", text, false))[0].1["days"],
        json!("3")
    );
}

#[test]
fn qwen3_coder_multiline_values_several_calls_and_drift() {
    let text = "<tool_call>\n<function=get_time>\n<parameter=tz>\nline one\nline two\n</parameter>\n</function>\n</tool_call>\n<tool_call>\n<function=get_weather>\n<parameter=city>\nOslo\n<parameter=days>\n2\n</function>\n</tool_call>";
    assert_eq!(
        calls(&run("qwen3_coder", text, true)),
        vec![
            call("get_time", json!({"tz": "line one\nline two"})),
            call("get_weather", json!({"city": "Oslo", "days": 2})),
        ]
    );
    // A block left open at the end is read; one without a function is content.
    let open = "<tool_call>\n<function=get_time>\n<parameter=tz>\nUTC\n</parameter>\n";
    assert_eq!(calls(&run("qwen3_coder", open, true)).len(), 1);
    let empty = run("qwen3_coder", "<tool_call>\nnothing\n</tool_call>", true);
    assert!(empty.tool_calls.is_empty());
    assert_eq!(
        empty.content.as_deref(),
        Some("<tool_call>\nnothing\n</tool_call>")
    );
}

#[test]
fn mistral_call_id_form_gets_callm_ids() {
    // Mistral Small 3.2's template writes past calls as NAME[CALL_ID]ID[ARGS]{json}.
    let text = "[TOOL_CALLS]get_weather[CALL_ID]abc123XYZ[ARGS]{\"city\": \"Paris\"}[TOOL_CALLS]get_time[CALL_ID]def456UVW[ARGS]{\"tz\": \"CET\"}</s>";
    for format in ["mistral_call_id", "mistral_args", "mistral"] {
        let out = run(format, text, true);
        assert_eq!(
            calls(&out),
            vec![
                call("get_weather", json!({"city": "Paris"})),
                call("get_time", json!({"tz": "CET"})),
            ],
            "{format}"
        );
        assert_eq!(out.content, None, "{format}");
        for c in &out.tool_calls {
            assert!(c.id.len() == 9 && c.id.bytes().all(|b| b.is_ascii_alphanumeric()));
            assert!(c.id != "abc123XYZ" && c.id != "def456UVW");
        }
    }
}

#[test]
fn devstral_args_form_and_the_older_list() {
    let out = run(
        "mistral_args",
        "Let me look.[TOOL_CALLS]get_time[ARGS]{\"tz\": \"UTC\"}",
        true,
    );
    assert_eq!(calls(&out), vec![call("get_time", json!({"tz": "UTC"}))]);
    assert_eq!(out.content.as_deref(), Some("Let me look."));
    let list = run(
        "mistral_args",
        "[TOOL_CALLS] [{\"name\": \"get_time\", \"arguments\": {\"tz\": \"JST\"}}]",
        true,
    );
    assert_eq!(calls(&list), vec![call("get_time", json!({"tz": "JST"}))]);
}

#[test]
fn granite_tool_call_list() {
    // "respond only with <|tool_call|> followed by a JSON list of tools used".
    let out = run(
        "granite",
        "<|tool_call|>[{\"arguments\": {\"city\": \"Rome\"}, \"name\": \"get_weather\"}, {\"name\": \"get_time\", \"arguments\": {\"tz\": \"CET\"}}]<|end_of_text|>",
        true,
    );
    assert_eq!(
        calls(&out),
        vec![
            call("get_weather", json!({"city": "Rome"})),
            call("get_time", json!({"tz": "CET"})),
        ]
    );
    assert_eq!(out.content, None);
    let plain = run("granite", "No tool needed: 2 + 2 = 4.", true);
    assert!(plain.tool_calls.is_empty());
}

#[test]
fn phi4_mini_calls_with_and_without_the_closing_tag() {
    // The forms the BFCL handler documents: normal, closing tag missing, objects not in a list.
    for text in [
        "<|tool_call|>[{\"name\": \"get_time\", \"arguments\": {\"tz\": \"UTC\"}}]<|/tool_call|>",
        "<|tool_call|>[{\"name\": \"get_time\", \"arguments\": {\"tz\": \"UTC\"}}]",
        "<|tool_call|>{\"name\": \"get_time\", \"arguments\": {\"tz\": \"UTC\"}}<|/tool_call|><|end|>",
    ] {
        let out = run("phi4_mini", text, true);
        assert_eq!(calls(&out), vec![call("get_time", json!({"tz": "UTC"}))], "{text}");
        assert_eq!(out.content, None, "{text}");
    }
    let two = run(
        "phi4_mini",
        "<|tool_call|>{\"name\": \"get_time\", \"arguments\": {\"tz\": \"UTC\"}}, {\"name\": \"get_weather\", \"arguments\": {\"city\": \"Lima\"}}",
        true,
    );
    assert_eq!(two.tool_calls.len(), 2);
}

#[test]
fn functionary_v3_1_function_tags() {
    // The template's own example: <function=example_function_name>{"example_name": "example_value"}</function>
    let out = run(
        "functionary_v3_1",
        "<function=get_weather>{\"city\": \"Tokyo\"}</function><function=get_time>{\"tz\": \"JST\"}</function><|eom_id|>",
        true,
    );
    assert_eq!(
        calls(&out),
        vec![
            call("get_weather", json!({"city": "Tokyo"})),
            call("get_time", json!({"tz": "JST"})),
        ]
    );
    assert_eq!(out.content, None);
    let text = run("functionary_v3_1", "Use <function= tags like this.", true);
    assert!(text.tool_calls.is_empty());
}

#[test]
fn functionary_v3_2_recipients() {
    // The prompt ends with ">>>": the answer starts with the recipient.
    let out = run(
        "functionary_v3_2",
        "all\nLet me check.>>>get_weather\n{\"city\": \"Oslo\"}>>>get_time\n{\"tz\": \"CET\"}<|eot_id|>",
        true,
    );
    assert_eq!(
        calls(&out),
        vec![
            call("get_weather", json!({"city": "Oslo"})),
            call("get_time", json!({"tz": "CET"})),
        ]
    );
    assert_eq!(out.content.as_deref(), Some("Let me check."));
    let first = run("functionary_v3_2", "get_time\n{\"tz\": \"UTC\"}", true);
    assert_eq!(calls(&first), vec![call("get_time", json!({"tz": "UTC"}))]);
    let text = run("functionary_v3_2", "all\nHello there!", true);
    assert!(text.tool_calls.is_empty());
    assert_eq!(text.content.as_deref(), Some("Hello there!"));
}

/// Reasoning (`<think>`) split off in front of a chain, on a chunking.
fn answer(
    chain: &str,
    text: &str,
    cuts: &[usize],
    with_tools: bool,
) -> (Option<String>, ParsedOutput) {
    let markers = Reasoning {
        open: "<think>".into(),
        close: "</think>".into(),
    };
    let chain = parsers::chain(&[chain, "json_fallback"]).expect("chain");
    let mut s = AnswerStream::new(
        Some(ReasoningSplitter::new(markers, false)),
        Some(chain.stream(opts(with_tools))),
    );
    let mut events: Vec<StreamEvent> = Vec::new();
    let mut last = 0;
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (text.len() + 1)).collect();
    cuts.sort_unstable();
    for c in cuts.into_iter().chain(std::iter::once(text.len())) {
        if c < last || !text.is_char_boundary(c) {
            continue;
        }
        events.extend(s.push(&text[last..c]));
        last = c;
    }
    events.extend(s.finish());
    (collect_reasoning(&events), collect_events(&events))
}

const THINKING: &str = "<think>\nShould I call <tool_call>\n{\"name\": \"get_time\", \"arguments\": {\"tz\": \"UTC\"}}\n</tool_call>? Yes.\n</think>\n\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Tokyo\"}}\n</tool_call>";

#[test]
fn a_call_inside_the_thinking_is_not_a_call_one_after_it_is() {
    let (reasoning, out) = answer("hermes", THINKING, &[], true);
    assert_eq!(
        reasoning.as_deref(),
        Some("Should I call <tool_call>\n{\"name\": \"get_time\", \"arguments\": {\"tz\": \"UTC\"}}\n</tool_call>? Yes.")
    );
    assert_eq!(
        calls(&out),
        vec![call("get_weather", json!({"city": "Tokyo"}))]
    );
    assert_eq!(out.content, None);
}

/// Cases per property: `PROPTEST_CASES` runs a deeper fuzz than the CI default.
fn fuzz_cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: fuzz_cases(128), ..ProptestConfig::default() })]

    #[test]
    fn reasoning_and_answer_are_the_same_on_every_chunking(
        cuts in prop::collection::vec(any::<usize>(), 0..16),
        with_tools in any::<bool>(),
        chain in prop::sample::select(vec!["hermes", "qwen3_coder", "granite"]),
        tail in "[a-z <>/{}\"\n]{0,30}",
    ) {
        let text = format!("{THINKING}{tail}");
        let whole = answer(chain, &text, &[], with_tools);
        prop_assert_eq!(answer(chain, &text, &cuts, with_tools), whole);
    }
}
