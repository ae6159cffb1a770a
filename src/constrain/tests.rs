//! Grammar tests per parser format: what the grammar lets a random (noise) walker write
//! parses with the format's own parser into calls that validate (independent `jsonschema`
//! validator) against the tool's schema; malformed calls are rejected.

use std::sync::Arc;

use serde_json::{json, Value};

use super::testing::{byte_tokenizer, random_walk};
use super::{ConstraintEngine, GrammarSpec, ToolMode};
use crate::openai::{FunctionDefinition, Tool};
use crate::parsers::{self, Format, ParseOptions};
use crate::tokenizer::Tokenizer;

const VOCAB: usize = 512;
const EOS: u32 = 500;

const FORMATS: &[&str] = &[
    "hermes",
    "mistral",
    "glaive",
    "llama3_json",
    "json_fallback",
    "pythonic",
    "gorilla",
    "nexusraven",
    "chatglm3",
    "qwen3_coder",
    "mistral_args",
    "mistral_call_id",
    "granite",
    "phi4_mini",
    "functionary_v3_1",
    "functionary_v3_2",
];

fn tool(name: &str, params: Value) -> Tool {
    Tool::function(FunctionDefinition {
        name: name.into(),
        description: None,
        parameters: Some(params),
        strict: None,
    })
}

/// Tools covering enums, integers, booleans, nested objects, arrays and required fields;
/// strings are length-bounded so that a noise walk ends.
pub fn tools() -> Vec<Tool> {
    vec![
        tool(
            "get_weather",
            json!({"type": "object", "properties": {
                "city": {"type": "string", "maxLength": 8},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "minimum": 1, "maximum": 7}
            }, "required": ["city"]}),
        ),
        tool(
            "book",
            json!({"type": "object", "properties": {
                "guest": {"type": "object", "properties": {
                    "name": {"type": "string", "maxLength": 5},
                    "vip": {"type": "boolean"}
                }, "required": ["name", "vip"]},
                "nights": {"type": "integer"},
                "tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}, "maxItems": 3}
            }, "required": ["guest", "nights"]}),
        ),
        tool(
            "ping",
            json!({"type": "object", "properties": {"loud": {"type": "boolean"}}}),
        ),
    ]
}

fn engine() -> (Arc<Tokenizer>, ConstraintEngine) {
    let tok = Arc::new(byte_tokenizer().unwrap());
    let e = ConstraintEngine::new(tok.clone(), VOCAB, &[EOS]).unwrap();
    (tok, e)
}

fn spec(format: &str, mode: ToolMode, parallel: bool) -> GrammarSpec {
    GrammarSpec::Tools {
        format: parsers::get(format).unwrap(),
        tools: tools(),
        mode,
        parallel,
    }
}

fn validate(schema: &Value, instance: &Value) -> Result<(), String> {
    let v = jsonschema::validator_for(schema).map_err(|e| e.to_string())?;
    let errs: Vec<String> = v.iter_errors(instance).map(|e| e.to_string()).collect();
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs.join("; "))
    }
}

/// Parses `text` with the format's parser and checks every call; returns the call names.
fn check_calls(format: &str, text: &str) -> Vec<String> {
    let chain = parsers::chain(&[format.to_string()]).unwrap();
    let opts = ParseOptions {
        tools: Some(tools()),
        ..Default::default()
    };
    let out = chain.parse(text, &opts);
    assert!(
        !out.tool_calls.is_empty(),
        "{format}: no call parsed from {text:?} (content {:?})",
        out.content
    );
    assert!(
        out.content.as_deref().unwrap_or("").trim().is_empty(),
        "{format}: stray content {:?} in {text:?}",
        out.content
    );
    let all = tools();
    out.tool_calls
        .iter()
        .map(|c| {
            let t = all
                .iter()
                .find(|t| t.function.name == c.function.name)
                .unwrap_or_else(|| panic!("{format}: unknown function in {text:?}"));
            let args: Value = serde_json::from_str(&c.function.arguments).unwrap();
            let schema = t.function.parameters.clone().unwrap();
            if let Err(e) = validate(&schema, &args) {
                panic!("{format}: {args} does not validate ({e}) in {text:?}");
            }
            c.function.name.clone()
        })
        .collect()
}

#[test]
fn required_calls_parse_and_validate_in_every_format() {
    let (tok, e) = engine();
    for format in FORMATS {
        let c = e
            .compile(&spec(format, ToolMode::Required, true), "")
            .unwrap_or_else(|err| panic!("{format}: {err}"));
        for seed in 0..40 {
            let (ids, ended) = random_walk(&c, VOCAB, &[EOS], seed, 3000).unwrap();
            let text = tok.decode(&ids, false).unwrap();
            assert!(ended, "{format} seed {seed}: walk did not end: {text:?}");
            check_calls(format, &text);
        }
    }
}

#[test]
fn named_choice_yields_exactly_that_call() {
    let (tok, e) = engine();
    for format in FORMATS {
        let c = e
            .compile(&spec(format, ToolMode::Named("book".into()), true), "")
            .unwrap_or_else(|err| panic!("{format}: {err}"));
        for seed in 0..15 {
            let (ids, ended) = random_walk(&c, VOCAB, &[EOS], seed, 3000).unwrap();
            let text = tok.decode(&ids, false).unwrap();
            assert!(ended, "{format}: {text:?}");
            assert_eq!(
                check_calls(format, &text),
                vec!["book"],
                "{format}: {text:?}"
            );
        }
    }
}

#[test]
fn single_call_when_not_parallel() {
    let (tok, e) = engine();
    for format in FORMATS {
        let c = e
            .compile(&spec(format, ToolMode::Required, false), "")
            .unwrap();
        for seed in 0..15 {
            let (ids, _) = random_walk(&c, VOCAB, &[EOS], seed, 3000).unwrap();
            let text = tok.decode(&ids, false).unwrap();
            assert_eq!(check_calls(format, &text).len(), 1, "{format}: {text:?}");
        }
    }
}

/// Every format's forced `required` / named openings fit its own grammar, and a named call
/// the grammar then completes parses, with the opening, as exactly that call.
#[test]
fn forced_openings_fit_the_grammars() {
    let (tok, e) = engine();
    for format in Format::ALL {
        let def = format.def();
        e.compile(
            &spec(format.name(), ToolMode::Required, true),
            &def.required_opening(),
        )
        .unwrap_or_else(|err| panic!("{format}: {err}"));
        let named = def.named_opening("book");
        let c = e
            .compile(
                &spec(format.name(), ToolMode::Named("book".into()), true),
                &named,
            )
            .unwrap_or_else(|err| panic!("{format}: {err}"));
        for seed in 0..5 {
            let (ids, ended) = random_walk(&c, VOCAB, &[EOS], seed, 3000).unwrap();
            let text = format!("{named}{}", tok.decode(&ids, false).unwrap());
            assert!(ended, "{format}: {text:?}");
            assert_eq!(check_calls(format.name(), &text), vec!["book"], "{text:?}");
        }
    }
}

#[test]
fn malformed_calls_are_rejected() {
    let (_, e) = engine();
    let bad: &[(&str, &str)] = &[
        ("hermes", "<tool_call>\n{\"name\": \"get_wether\""),
        ("hermes", "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"unit\": \"celsius\"}}"),
        ("hermes", "<tool_call>\n{\"name\": \"book\", \"arguments\": {\"guest\": {\"name\": \"x\", \"vip\": true}, \"nights\": \"3\""),
        ("mistral", "[TOOL_CALLS] [{\"name\": \"ping\", \"arguments\": {\"loud\": 1"),
        ("llama3_json", "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\", \"unit\": \"kelvin\""),
        ("pythonic", "[get_weather(unit=\"celsius\")"),
        ("pythonic", "[get_weather(city=\"Paris\", town=1"),
        ("gorilla", "book(nights=2)"),
        ("nexusraven", "Call: ping(loud=maybe"),
        ("chatglm3", "ping\n```python\ntool_call(loud=true"),
        ("glaive", "<functioncall> {\"name\": \"ping\", \"arguments\": {\"quiet\""),
        ("qwen3_coder", "<tool_call>\n<function=get_weather>\n<parameter=unit>\nkelvin"),
        ("qwen3_coder", "<tool_call>\n<function=book>\n<parameter=nights>\nthree"),
        ("qwen3_coder", "<tool_call>\n<function=get_weather>\n</function>"),
        ("mistral_args", "[TOOL_CALLS]ping[ARGS]{\"loud\": 1"),
        ("mistral_call_id", "[TOOL_CALLS]ping[ARGS]{"),
        ("mistral_call_id", "[TOOL_CALLS]ping[CALL_ID]abc[ARGS]"),
        ("granite", "<|tool_call|>[{\"name\": \"ping\", \"arguments\": {\"loud\": \"yes\""),
        ("phi4_mini", "<|tool_call|>[{\"name\": \"ping\", \"arguments\": {}}]]"),
        ("functionary_v3_1", "<function=get_weather>{\"unit\": \"celsius\"}"),
        ("functionary_v3_2", "all\nhello"),
        ("functionary_v3_2", "ping\n{\"loud\": null"),
    ];
    for (format, text) in bad {
        assert!(
            e.compile(&spec(format, ToolMode::Required, true), text)
                .is_err(),
            "{format} accepted {text:?}"
        );
    }
}

#[test]
fn well_formed_calls_are_accepted_whole() {
    let (_, e) = engine();
    let good: &[(&str, &str)] = &[
        ("hermes", "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"unit\": \"celsius\"}}\n</tool_call>"),
        ("mistral", "[TOOL_CALLS] [{\"name\": \"ping\", \"arguments\": {\"loud\": true}}, {\"name\": \"ping\", \"arguments\": {}}]"),
        ("llama3_json", "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Oslo\"}}"),
        ("pythonic", "[get_weather(city=\"Oslo\", days=3), ping()]"),
        ("gorilla", "ping(loud=True)"),
        ("nexusraven", "Call: get_weather(city=\"Oslo\"); ping(loud=False)"),
        ("chatglm3", "ping\n```python\ntool_call(loud=True)\n```"),
        ("glaive", "<functioncall> {\"name\": \"ping\", \"arguments\": {}}"),
        ("qwen3_coder", "<tool_call>\n<function=get_weather>\n<parameter=city>\nSan José\n</parameter>\n<parameter=days>\n3\n</parameter>\n</function>\n</tool_call>"),
        ("qwen3_coder", "<tool_call>\n<function=book>\n<parameter=guest>\n{\"name\": \"Ada\", \"vip\": true}\n</parameter>\n<parameter=nights>\n2\n</parameter>\n<parameter=tags>\n[\"a\"]\n</parameter>\n</function>\n</tool_call>\n<tool_call>\n<function=ping>\n</function>\n</tool_call>"),
        ("mistral_args", "[TOOL_CALLS]ping[ARGS]{\"loud\": true}[TOOL_CALLS]get_weather[ARGS]{\"city\": \"Oslo\"}"),
        ("mistral_call_id", "[TOOL_CALLS]ping[CALL_ID]a1B2c3D4e[ARGS]{\"loud\": false}"),
        ("granite", "<|tool_call|>[{\"name\": \"ping\", \"arguments\": {}}, {\"name\": \"get_weather\", \"arguments\": {\"city\": \"Rome\"}}]"),
        ("phi4_mini", "<|tool_call|>[{\"name\": \"ping\", \"arguments\": {\"loud\": true}}]<|/tool_call|>"),
        ("functionary_v3_1", "<function=ping>{\"loud\": true}</function><function=get_weather>{\"city\": \"Oslo\"}</function>"),
        ("functionary_v3_2", "ping\n{\"loud\": true}>>>get_weather\n{\"city\": \"Oslo\", \"days\": 2}"),
    ];
    for (format, text) in good {
        let c = e
            .compile(&spec(format, ToolMode::Required, true), text)
            .unwrap_or_else(|err| panic!("{format} rejected {text:?}: {err}"));
        assert!(
            c.start().is_accepting(),
            "{format}: {text:?} is not complete"
        );
        check_calls(format, text);
    }
}

#[test]
fn auto_mode_is_free_until_a_call_opens_then_completes_validly() {
    let (tok, e) = engine();
    let cases: &[(&str, &str)] = &[
        ("hermes", "Let me check that. <tool_call>"),
        ("hermes", "Sure.<tool_call>\n{\"na"),
        ("mistral", "Hmm [TOOL_CALLS]"),
        ("glaive", "ok <functioncall>"),
        ("llama3_json", "<|python_tag|>"),
        ("llama3_json", "  {"),
        ("pythonic", "["),
        ("gorilla", "get_weather("),
        ("nexusraven", "Thinking... Call:"),
        ("chatglm3", "ping\n"),
        ("qwen3_coder", "I will look it up.\n<tool_call>"),
        (
            "qwen3_coder",
            "<tool_call>\n<function=get_weather>\n<parameter=city>\nLi",
        ),
        ("mistral_args", "Checking. [TOOL_CALLS]"),
        ("mistral_call_id", "[TOOL_CALLS]get_weather"),
        ("granite", "Let me see <|tool_call|>"),
        ("phi4_mini", "<|tool_call|>[{\"name\": \"ping\""),
        ("functionary_v3_1", "Sure. <function=ping>"),
        ("functionary_v3_2", "all\nLet me check.>>>"),
        ("functionary_v3_2", "get_weather\n"),
    ];
    for (format, prefix) in cases {
        let c = e
            .compile(&spec(format, ToolMode::Auto, true), prefix)
            .unwrap_or_else(|err| panic!("{format} {prefix:?}: {err}"));
        for seed in 0..10 {
            // The walk stops at EOS, which is allowed once the call is complete.
            let (ids, _) = random_walk(&c, VOCAB, &[EOS], seed, 300).unwrap();
            let text = format!("{prefix}{}", tok.decode(&ids, false).unwrap());
            let chain = parsers::chain(&[format.to_string()]).unwrap();
            let opts = ParseOptions {
                tools: Some(tools()),
                ..Default::default()
            };
            let out = chain.parse(&text, &opts);
            assert!(
                !out.tool_calls.is_empty(),
                "{format}: opened call did not complete: {text:?}"
            );
        }
    }
    // Plain text is free in auto mode, in every format.
    for format in FORMATS {
        e.compile(
            &spec(format, ToolMode::Auto, true),
            "The weather is fine today, no tool needed.",
        )
        .unwrap_or_else(|err| panic!("{format}: {err}"));
    }
}

#[test]
fn json_schema_and_object_outputs_validate() {
    let (tok, e) = engine();
    let schema = json!({"type": "object", "properties": {
        "answer": {"type": "string", "enum": ["yes", "no"]},
        "score": {"type": "integer", "minimum": 0, "maximum": 10},
        "items": {"type": "array", "items": {"type": "object", "properties": {
            "id": {"type": "integer"}}, "required": ["id"], "additionalProperties": false},
            "maxItems": 2}
    }, "required": ["answer", "score", "items"], "additionalProperties": false});
    let c = e
        .compile(
            &GrammarSpec::JsonSchema {
                schema: schema.clone(),
                strict: true,
            },
            "",
        )
        .unwrap();
    for seed in 0..30 {
        let (ids, ended) = random_walk(&c, VOCAB, &[EOS], seed, 300).unwrap();
        let text = tok.decode(&ids, false).unwrap();
        assert!(ended, "{text:?}");
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text:?}"));
        validate(&schema, &v).unwrap_or_else(|e| panic!("{e}: {text:?}"));
    }
    let c = e.compile(&GrammarSpec::JsonObject, "{").unwrap();
    assert!(e.compile(&GrammarSpec::JsonObject, "[").is_err());
    let _ = c.start();
}

#[test]
fn bad_schemas_are_client_errors_naming_the_parameter() {
    let (_, e) = engine();
    let mut ts = tools();
    ts.push(tool(
        "weird",
        json!({"type": "object", "properties": {"x": {"$ref": "#/$defs/missing"}}}),
    ));
    let err = e
        .compile(
            &GrammarSpec::Tools {
                format: Format::Hermes,
                tools: ts,
                mode: ToolMode::Required,
                parallel: true,
            },
            "",
        )
        .unwrap_err();
    assert_eq!(err.param(), Some("tools[3].function.parameters"), "{err}");
    let err = e
        .compile(
            &GrammarSpec::JsonSchema {
                schema: json!({"type": "nonsense"}),
                strict: true,
            },
            "",
        )
        .unwrap_err();
    assert_eq!(
        err.param(),
        Some("response_format.json_schema.schema"),
        "{err}"
    );
    let err = e
        .compile(
            &GrammarSpec::JsonSchema {
                schema: json!([1, 2]),
                strict: false,
            },
            "",
        )
        .unwrap_err();
    assert!(err.param().is_some(), "{err}");
}

fn thinking(max_chars: usize, started: bool) -> super::Thinking {
    super::Thinking {
        open: "<think>".into(),
        close: "</think>".into(),
        max_chars,
        started,
    }
}

/// (reasoning, answer text) of a walk: the reasoning split off as `chat::run` splits it.
fn split_thinking(text: &str, started: bool) -> (String, String) {
    use crate::parsers::{Piece, Reasoning, ReasoningSplitter};
    let markers = Reasoning {
        open: "<think>".into(),
        close: "</think>".into(),
    };
    let mut s = ReasoningSplitter::new(markers, started);
    let mut pieces = s.push(text);
    pieces.extend(s.finish());
    let (mut r, mut a) = (String::new(), String::new());
    for p in pieces {
        match p {
            Piece::Reasoning(t) => r.push_str(&t),
            Piece::Answer(t) => a.push_str(&t),
        }
    }
    (r, a)
}

/// Under `required`, named and `json_schema`, the grammar lets a thinking model reason first
/// (within the budget, never past its close marker), then requires the call or the JSON.
#[test]
fn thinking_comes_first_then_the_required_call() {
    let (tok, e) = engine();
    for format in [
        "hermes",
        "qwen3_coder",
        "mistral_call_id",
        "functionary_v3_2",
    ] {
        for (mode, started) in [
            (ToolMode::Required, false),
            (ToolMode::Named("book".into()), false),
            (ToolMode::Required, true),
        ] {
            let t = thinking(40, started);
            let c = e
                .compile_with(&spec(format, mode.clone(), true), Some(&t), "")
                .unwrap_or_else(|err| panic!("{format}: {err}"));
            let mut reasoned = 0;
            for seed in 0..12 {
                let (ids, ended) = random_walk(&c, VOCAB, &[EOS], seed, 3000).unwrap();
                let text = tok.decode(&ids, false).unwrap();
                assert!(ended, "{format}: {text:?}");
                let (reasoning, rest) = split_thinking(&text, started);
                assert!(reasoning.chars().count() <= 40, "{format}: {text:?}");
                reasoned += usize::from(!reasoning.is_empty());
                let names = check_calls(format, &rest);
                if let ToolMode::Named(n) = &mode {
                    assert_eq!(names, vec![n.clone()], "{format}: {text:?}");
                }
            }
            assert!(reasoned > 0, "{format}: no walk used the thinking block");
        }
    }
    let schema = json!({"type": "object", "properties": {"ok": {"type": "boolean"}},
        "required": ["ok"], "additionalProperties": false});
    let c = e
        .compile_with(
            &GrammarSpec::JsonSchema {
                schema: schema.clone(),
                strict: true,
            },
            Some(&thinking(40, false)),
            "",
        )
        .unwrap();
    for seed in 0..12 {
        let (ids, _) = random_walk(&c, VOCAB, &[EOS], seed, 300).unwrap();
        let (_, rest) = split_thinking(&tok.decode(&ids, false).unwrap(), false);
        let v: Value = serde_json::from_str(&rest).unwrap_or_else(|e| panic!("{e}: {rest:?}"));
        validate(&schema, &v).unwrap();
    }
}

/// In `auto` mode a call marker inside the thinking opens no call; the answer after it is
/// free text or a call as usual.
#[test]
fn a_marker_inside_the_thinking_is_not_a_call_opening() {
    let (tok, e) = engine();
    let t = thinking(200, false);
    let spec = spec("hermes", ToolMode::Auto, true);
    let prefix = "<think>maybe <tool_call> here";
    let c = e.compile_with(&spec, Some(&t), prefix).unwrap();
    // Still inside the thinking: it may close and answer in plain text.
    let mut st = c.start();
    for id in e.env.tokens_for("</think>\n\nNo call needed.") {
        st.commit(id).unwrap();
    }
    assert!(st.is_accepting());
    // A call after the thinking completes validly.
    let c = e
        .compile_with(&spec, Some(&t), "<think>ok</think>\n<tool_call>")
        .unwrap();
    for seed in 0..5 {
        let (ids, _) = random_walk(&c, VOCAB, &[EOS], seed, 300).unwrap();
        let text = format!("<tool_call>{}", tok.decode(&ids, false).unwrap());
        let chain = parsers::chain(&["hermes"]).unwrap();
        let opts = ParseOptions {
            tools: Some(tools()),
            ..Default::default()
        };
        let out = chain.parse(&text, &opts);
        assert!(!out.tool_calls.is_empty(), "{text:?}");
    }
}

/// The largest reasoning budget a request can ask for (`chat::prepare::MAX_REASONING_CHARS`)
/// compiles and walks like a small one.
#[test]
fn the_largest_reasoning_budget_compiles() {
    let (_, e) = engine();
    // `chat::prepare::MAX_REASONING_CHARS`.
    let t = thinking(32768, false);
    let c = e
        .compile_with(
            &spec("hermes", ToolMode::Required, true),
            Some(&t),
            "<think>",
        )
        .unwrap();
    let (ids, _) = random_walk(&c, VOCAB, &[EOS], 1, 500).unwrap();
    assert_eq!(ids.len(), 500, "the block may run on past 500 tokens");
}
