//! Streaming equivalence, fuzz and pathological-input tests of the tool-call parsers.

use std::time::{Duration, Instant};

use callm::openai::{FunctionDefinition, ParsedOutput, Tool};
use callm::parsers::{self, collect_events, ParseOptions, ParserChain, StreamEvent};
use proptest::prelude::*;
use serde_json::json;

fn tools() -> Vec<Tool> {
    let t = |name: &str, props: serde_json::Value| {
        Tool::function(FunctionDefinition {
            name: name.into(),
            description: None,
            parameters: Some(json!({"type": "object", "properties": props})),
            strict: None,
        })
    };
    vec![
        t(
            "get_weather",
            json!({"city": {"type": "string"}, "days": {"type": "integer"}}),
        ),
        t("get_time", json!({"tz": {"type": "string"}})),
        t("f", json!({"a": {"type": "integer"}})),
    ]
}

/// Every single parser and every family chain of the registry.
fn chains() -> Vec<ParserChain> {
    let mut out: Vec<ParserChain> = parsers::names()
        .iter()
        .map(|n| ParserChain::single(n).expect("known"))
        .collect();
    for f in callm::registry::Registry::builtin().families() {
        out.push(parsers::chain(&f.parsers).expect("registry chain"));
    }
    out
}

const SAMPLES: &[&str] = &[
    r#"{"name": "get_weather", "parameters": {"city": "Tokyo"}}"#,
    "<|python_tag|>{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Tokyo\"}}; {\"name\": \"get_time\", \"parameters\": {\"tz\": \"JST\"}}\n",
    "<|python_tag|>brave_search.call(query=\"weather in Tokyo\")",
    "Sure! [get_weather(city='Tokyo', days=3), get_time(tz='JST')] done",
    "<|python_tag|>get_weather(city=\"Tokyo\"); get_time(tz='UTC')",
    r#"[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Tokyo"}}, {"name": "get_time", "arguments": {"tz": "JST"}}]"#,
    r#"[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}"#,
    "Let me look.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"東京\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_time\", \"arguments\": {\"tz\": \"JST\"}}\n</tool_call>",
    "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Tokyo\"}}",
    "```json\n{\"name\": \"get_time\", \"arguments\": {\"tz\": \"JST\"}}\n```\nok",
    "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"a\\\"b\\u00e9\"}}\n{\"name\": \"nope\", \"arguments\": {}}",
    r#"ASSISTANT: <functioncall> {"name": "get_time", "arguments": '{"tz": "it's JST"}'} <|endoftext|>"#,
    "<<function>>get_weather(city='Boston, MA', days=2)<<function>>get_time(tz=\"EST\")",
    "get_current_weather(location='Boston, MA', unit='fahrenheit')",
    "Call: get_weather(city=get_city(name='Seattle')); f(a=1)<bot_end>\nThought: done",
    "get_weather\n```python\ntool_call(city='Tokyo', days='4')\n```",
    "\nJust an answer with {braces} and [brackets] and (parens).",
    "Text with a partial <tool_ and [TOOL_ and <|python_ta and ``` fence",
    "f(a='''tri\nple''', b=r'\\d+', c=b\"x\\x41\", d=0x1F, e=1_000, g=-3.5e2, h=(1,), i={1, 2})",
    // End markers and role labels (FORMATS.md), also inside unclosed calls.
    r#"[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Tokyo"}}]</s>"#,
    "<|python_tag|>{\"name\": \"get_time\", \"parameters\": {\"tz\": \"JST\"}}<|eom_id|>",
    "[get_weather(city='Tokyo'), get_time(tz='JST')]<|eot_id|>",
    "  ASSISTANT: It is sunny. ASSISTANT: really.<|endoftext|>",
    "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Tokyo\"}}\n<|im_end|>",
    "get_weather(city='Tokyo')<|EOT|>",
    "Sure.</s> [TOOL_CALLS]get_time[ARGS]{\"tz\": \"<|eom_id|>\"}",
    // The newer families' formats (fixtures/templates/README.md, FORMATS.md).
    "<tool_call>\n<function=get_weather>\n<parameter=city>\nSan José\n</parameter>\n<parameter=days>\n3\n</parameter>\n</function>\n</tool_call>",
    "Let me check.\n<tool_call>\n<function=get_time>\n<parameter=tz>\nJST\n</function>\n</tool_call>\n<tool_call>\n<function=f>\n<parameter=a>\n1\n</parameter>\n</function>\n</tool_call><|im_end|>",
    "<tool_call>\n<function=get_weather>\n<parameter=city>\nline one\n</parameter> x\n",
    "[TOOL_CALLS]get_weather[CALL_ID]a1B2c3D4e[ARGS]{\"city\": \"Paris\"}[TOOL_CALLS]get_time[CALL_ID]zzz999yyy[ARGS]{\"tz\": \"CET\"}</s>",
    "[TOOL_CALLS]get_time[CALL_ID][ARGS]{}",
    "<|tool_call|>[{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Rome\"}}, {\"name\": \"f\", \"arguments\": {\"a\": 2}}]<|end_of_text|>",
    "<|tool_call|>{\"name\": \"get_time\", \"arguments\": {\"tz\": \"UTC\"}}, {\"name\": \"f\", \"arguments\": {}}<|/tool_call|><|end|>",
    "I can do that. <|tool_call|>[{\"name\": \"f\", \"arguments\": {\"a\": 1}}]<|/tool_call|> Done.",
    "<function=get_weather>{\"city\": \"Tokyo\"}</function><function=get_time>{\"tz\": \"JST\"}</function><|eom_id|>",
    "Checking <function=f>{\"a\": 1}",
    "get_weather\n{\"city\": \"Tokyo\"}>>>get_time\n{\"tz\": \"JST\"}<|eot_id|>",
    "all\nLet me check the weather.>>>get_weather\n{\"city\": \"Oslo\"}",
    "all\nJust text with >>> arrows and all\nlines.",
    "<think>\nThe user wants Tokyo. <tool_call>{\"name\": \"f\"}</tool_call>\n</think>\n\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Tokyo\"}}\n</tool_call>",
];

fn opts(with_tools: bool) -> ParseOptions {
    ParseOptions {
        tools: with_tools.then(tools),
        id_style: None,
        id_seed: Some(42),
    }
}

/// Streams `text` cut at the given byte offsets (moved to char boundaries).
fn stream(chain: &ParserChain, text: &str, cuts: &[usize], with_tools: bool) -> Vec<StreamEvent> {
    let mut cuts: Vec<usize> = cuts
        .iter()
        .map(|&c| {
            let mut c = c % (text.len() + 1);
            while !text.is_char_boundary(c) {
                c += 1;
            }
            c
        })
        .collect();
    cuts.push(text.len());
    cuts.sort_unstable();
    let mut s = chain.stream(opts(with_tools));
    let mut events = Vec::new();
    let mut last = 0;
    for c in cuts {
        events.extend(s.push(&text[last..c]));
        last = c;
    }
    events.extend(s.finish());
    events
}

/// Checks the event sequence is well formed and that argument deltas add up.
fn check_events(events: &[StreamEvent], out: &ParsedOutput) {
    let mut open: Option<usize> = None;
    let mut next = 0;
    for e in events {
        match e {
            StreamEvent::ToolCallStart { index, .. } => {
                assert!(open.is_none(), "start inside a call");
                assert_eq!(*index, next);
                open = Some(*index);
            }
            StreamEvent::ArgumentsDelta { index, .. } => assert_eq!(Some(*index), open),
            StreamEvent::ToolCallEnd { index } => {
                assert_eq!(Some(*index), open);
                open = None;
                next += 1;
            }
            StreamEvent::Content(s) => assert!(open.is_none() && !s.is_empty()),
            StreamEvent::Reasoning(s) => panic!("a call parser emitted reasoning {s:?}"),
        }
    }
    assert!(open.is_none(), "call left open");
    assert_eq!(next, out.tool_calls.len());
    for c in &out.tool_calls {
        let v: serde_json::Value =
            serde_json::from_str(&c.function.arguments).expect("arguments JSON");
        assert!(v.is_object());
    }
}

fn assert_equivalent(text: &str, cuts: &[usize], with_tools: bool) {
    for chain in chains() {
        let one = chain.parse(text, &opts(with_tools));
        let events = stream(&chain, text, cuts, with_tools);
        let streamed = collect_events(&events);
        assert_eq!(
            one,
            streamed,
            "chain {:?} text {text:?} cuts {cuts:?}",
            chain.names()
        );
        check_events(&events, &streamed);
    }
}

#[test]
fn samples_stream_byte_by_byte() {
    for text in SAMPLES {
        let cuts: Vec<usize> = (0..text.len()).collect();
        assert_equivalent(text, &cuts, true);
        assert_equivalent(text, &cuts, false);
    }
}

const TOKENS: &[&str] = &[
    "<tool_call>",
    "</tool_call>",
    "[TOOL_CALLS]",
    "[ARGS]",
    "<|python_tag|>",
    "<functioncall>",
    "<<function>>",
    "Call:",
    "<bot_end>",
    "</s>",
    "<|eom_id|>",
    "<|eot_id|>",
    "<|endoftext|>",
    "<|im_end|>",
    "<|EOT|>",
    "ASSISTANT:",
    "<|eom_",
    "</",
    "Thought:",
    "```",
    "```json\n",
    "```python\n",
    "<|assistant|>",
    "{",
    "}",
    "[",
    "]",
    "(",
    ")",
    "\"",
    "'",
    "'''",
    ":",
    ",",
    ";",
    "=",
    "\n",
    " ",
    "\"name\"",
    "\"arguments\"",
    "\"parameters\"",
    "name",
    "get_weather",
    "get_time",
    "f",
    "tool_call",
    ".call",
    "1",
    "-2.5",
    "True",
    "None",
    "null",
    "\\",
    "\\u00e9",
    "é",
    "東京",
    "x",
    "\"Tokyo\"",
    "'JST'",
    "a=",
    "city=",
    "tz=",
    "<function=",
    "</function>",
    "<parameter=",
    "</parameter>",
    "[CALL_ID]",
    "<|tool_call|>",
    "<|/tool_call|>",
    "<|end_of_text|>",
    "<|end|>",
    ">>>",
    "all\n",
    "get_weather\n",
    "<think>",
    "</think>",
];

fn near_miss() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::collection::vec(prop::sample::select(TOKENS), 0..40).prop_map(|v| v.concat()),
        (
            prop::sample::select(SAMPLES),
            any::<prop::sample::Index>(),
            any::<prop::sample::Index>()
        )
            .prop_map(|(s, a, b)| {
                // A sample with a slice cut out: truncations and mangled middles.
                let (mut i, mut j) = (a.index(s.len() + 1), b.index(s.len() + 1));
                if i > j {
                    std::mem::swap(&mut i, &mut j);
                }
                while !s.is_char_boundary(i) {
                    i -= 1;
                }
                while !s.is_char_boundary(j) {
                    j += 1;
                }
                format!("{}{}", &s[..i], &s[j..])
            }),
        (prop::sample::select(SAMPLES), prop::sample::select(SAMPLES))
            .prop_map(|(a, b)| format!("{a}\n{b}")),
        ".{0,60}",
    ]
}

/// Cases per property: `PROPTEST_CASES` runs a deeper fuzz than the CI default.
fn fuzz_cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: fuzz_cases(256), ..ProptestConfig::default() })]

    #[test]
    fn streaming_equals_one_shot(text in near_miss(), cuts in prop::collection::vec(any::<usize>(), 0..12), with_tools in any::<bool>()) {
        assert_equivalent(&text, &cuts, with_tools);
    }

    #[test]
    fn samples_with_random_splits(i in any::<prop::sample::Index>(), cuts in prop::collection::vec(any::<usize>(), 0..20), with_tools in any::<bool>()) {
        assert_equivalent(SAMPLES[i.index(SAMPLES.len())], &cuts, with_tools);
    }

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>(), with_tools in any::<bool>()) {
        for chain in chains() {
            let out = chain.parse(&text, &opts(with_tools));
            if out.tool_calls.is_empty() {
                // Nothing became a call: every non-space character is still in the content.
                let kept: String = out.content.unwrap_or_default().chars().filter(|c| !c.is_whitespace()).collect();
                let orig: String = text.chars().filter(|c| !c.is_whitespace()).collect();
                prop_assert!(kept.len() <= orig.len());
            }
        }
        let _ = parsers::pylit::parse_literal(&text);
    }
}

#[test]
fn content_without_markers_is_kept_verbatim() {
    let text = "Plain answer: the sky is blue; 3 < 4 and x = 5.";
    for chain in chains() {
        let out = chain.parse(text, &opts(true));
        assert_eq!(out.content.as_deref(), Some(text), "{:?}", chain.names());
        assert!(out.tool_calls.is_empty());
    }
}

fn pathological() -> Vec<String> {
    let mb = 1 << 20;
    vec![
        "[".repeat(100_000),
        "{".repeat(100_000),
        "(".repeat(100_000),
        "[]{}()".repeat(mb / 6),
        "{\"a\":".repeat(100_000),
        "[f(".repeat(100_000),
        "a(".repeat(200_000),
        format!("<tool_call>{}", "[".repeat(100_000)),
        format!("<|python_tag|>{}", "{\"a\": [".repeat(50_000)),
        format!("Call: f(a={}", "(".repeat(100_000)),
        format!("[TOOL_CALLS] {}", "[{".repeat(100_000)),
        format!(
            "<functioncall> {{\"name\": \"f\", \"arguments\": '{}'",
            "{".repeat(100_000)
        ),
        format!("f(\"{}", "x".repeat(mb)),
        "<tool_call>".repeat(50_000),
        "\\u".repeat(100_000),
        // A megabyte of nesting, and of unterminated markers and labels.
        "[".repeat(mb),
        format!("[get_weather({}", "[".repeat(mb)),
        "<|eom_id".repeat(mb / 8),
        "</s".repeat(mb / 3),
        "<bot_end".repeat(mb / 8),
        "<|im_end".repeat(mb / 8),
        format!("{}ASSISTAN", " ".repeat(mb)),
        "ASSISTANT:".repeat(mb / 10),
        format!("<tool_call>{}", "<|im_end|>[".repeat(mb / 11)),
        format!(
            "<tool_call>\n<function=f>\n{}",
            "<parameter=a>\n".repeat(mb / 14)
        ),
        format!("<|tool_call|>{}", "{\"a\": 1}, ".repeat(mb / 10)),
        format!("<|tool_call|>{}", "[".repeat(100_000)),
        ">>>".repeat(mb / 3),
        format!("{}\n", "a".repeat(mb)),
        "<function=f>".repeat(mb / 12),
        format!("[TOOL_CALLS]f[CALL_ID]{}", "a".repeat(mb)),
    ]
}

#[test]
fn pathological_inputs_are_fast_and_safe() {
    for text in pathological() {
        for chain in chains() {
            let t = Instant::now();
            let out = chain.parse(&text, &opts(true));
            let took = t.elapsed();
            assert!(
                took < Duration::from_secs(10),
                "{:?} took {took:?} on {:?}...",
                chain.names(),
                &text[..20]
            );
            assert!(out.tool_calls.len() <= text.len());
        }
    }
}

#[test]
fn pathological_inputs_stream_in_small_chunks() {
    let mut formats: Vec<ParserChain> = parsers::names()
        .iter()
        .map(|n| ParserChain::single(n).expect("known"))
        .collect();
    formats
        .push(parsers::chain(&["hermes".to_string(), "json_fallback".to_string()]).expect("chain"));
    for text in pathological() {
        for chain in &formats {
            let t = Instant::now();
            let mut s = chain.stream(opts(true));
            let mut events = Vec::new();
            for piece in text.as_bytes().chunks(64) {
                events.extend(s.push(std::str::from_utf8(piece).expect("ascii")));
            }
            events.extend(s.finish());
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "{:?} took {:?} on {:?}...",
                chain.names(),
                t.elapsed(),
                &text[..20]
            );
            assert_eq!(collect_events(&events), chain.parse(&text, &opts(true)));
        }
    }
}

/// A call list at the start of NexusRaven output after leading blank: found whether or not a
/// chunk ends inside the blank (a proptest once found the streamed and one-shot results differ).
#[test]
fn leading_blank_then_call_any_chunking() {
    for text in [
        " f(a=1)<bot_end>\nThought: done",
        "\n\n get_time(tz='JST')",
        "  Call: f(a=1)",
        " \u{3000}f(a=1)",
    ] {
        let cuts: Vec<usize> = (0..text.len()).collect();
        assert_equivalent(text, &cuts, true);
        for cut in 0..text.len() {
            assert_equivalent(text, &[cut], true);
            assert_equivalent(text, &[cut], false);
        }
    }
    let chain = ParserChain::single("nexusraven").expect("known");
    let out = chain.parse(" f(a=1)<bot_end>\nThought: done", &opts(true));
    assert_eq!(out.tool_calls.len(), 1);
    assert_eq!(out.tool_calls[0].function.name, "f");
    assert_eq!(out.content, None);
}
