//! Per-format tests of the tool-call parsers; expected values are written from the format specs.

use callm::openai::{FunctionDefinition, ParsedOutput, Tool};
use callm::parsers::{self, IdStyle, ParseOptions};
use serde_json::{json, Value};

fn tool(name: &str, props: Value) -> Tool {
    Tool::function(FunctionDefinition {
        name: name.into(),
        description: None,
        parameters: Some(json!({"type": "object", "properties": props})),
        strict: None,
    })
}

fn weather_tools() -> Vec<Tool> {
    vec![
        tool(
            "get_weather",
            json!({"city": {"type": "string"}, "unit": {"type": "string"}}),
        ),
        tool("get_time", json!({"tz": {"type": "string"}})),
        tool(
            "send_email",
            json!({"to": {"type": "string"}, "body": {"type": "string"}}),
        ),
    ]
}

fn run(names: &[&str], text: &str, tools: Option<Vec<Tool>>) -> ParsedOutput {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let opts = ParseOptions {
        tools,
        id_style: None,
        id_seed: Some(7),
    };
    parsers::parse(&names, text, &opts).expect("known parsers")
}

/// (name, arguments) of every call, arguments decoded.
fn calls(out: &ParsedOutput) -> Vec<(String, Value)> {
    out.tool_calls
        .iter()
        .map(|c| {
            let v: Value = serde_json::from_str(&c.function.arguments).expect("arguments are JSON");
            assert!(v.is_object(), "arguments are an object: {v}");
            assert_eq!(c.kind, "function");
            (c.function.name.clone(), v)
        })
        .collect()
}

fn call(name: &str, args: Value) -> (String, Value) {
    (name.to_string(), args)
}

fn is_openai_id(id: &str) -> bool {
    id.len() == 29 && id.starts_with("call_") && id[5..].bytes().all(|c| c.is_ascii_alphanumeric())
}

// ---------- llama3_json ----------

#[test]
fn llama3_plain_json_parameters() {
    let out = run(
        &["llama3_json"],
        r#"{"name": "get_weather", "parameters": {"city": "Tokyo"}}"#,
        None,
    );
    assert_eq!(
        calls(&out),
        vec![call("get_weather", json!({"city": "Tokyo"}))]
    );
    assert_eq!(out.content, None);
    assert!(is_openai_id(&out.tool_calls[0].id));
}

#[test]
fn llama3_python_tag_and_arguments_key() {
    let out = run(
        &["llama3_json"],
        r#"<|python_tag|>{"name": "get_weather", "arguments": {"city": "Tokyo"}}"#,
        None,
    );
    assert_eq!(
        calls(&out),
        vec![call("get_weather", json!({"city": "Tokyo"}))]
    );
    assert_eq!(out.content, None);
}

#[test]
fn llama3_several_calls_semicolon_and_newline() {
    let text = "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Tokyo\"}}; {\"name\": \"get_time\", \"parameters\": {\"tz\": \"JST\"}}\n{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}";
    let out = run(&["llama3_json"], text, None);
    assert_eq!(
        calls(&out),
        vec![
            call("get_weather", json!({"city": "Tokyo"})),
            call("get_time", json!({"tz": "JST"})),
            call("get_weather", json!({"city": "Paris"})),
        ]
    );
    assert_eq!(out.content, None);
    let ids: std::collections::HashSet<_> = out.tool_calls.iter().map(|c| c.id.clone()).collect();
    assert_eq!(ids.len(), 3, "ids are distinct");
}

#[test]
fn llama3_builtin_brave_search() {
    let out = run(
        &["llama3_json"],
        r#"<|python_tag|>brave_search.call(query="weather in Tokyo")"#,
        None,
    );
    assert_eq!(
        calls(&out),
        vec![call("brave_search", json!({"query": "weather in Tokyo"}))]
    );
    assert_eq!(out.content, None);
}

#[test]
fn llama3_plain_text_is_content() {
    let out = run(&["llama3_json"], "The weather in Tokyo is sunny.", None);
    assert_eq!(
        out.content.as_deref(),
        Some("The weather in Tokyo is sunny.")
    );
    assert!(out.tool_calls.is_empty());
}

#[test]
fn llama3_json_that_is_not_a_call_stays_content() {
    let text = r#"Here is data: {"city": "Tokyo", "temp": 20}"#;
    let out = run(&["llama3_json"], text, None);
    assert_eq!(out.content.as_deref(), Some(text));
    assert!(out.tool_calls.is_empty());
}

// ---------- pythonic ----------

#[test]
fn pythonic_list_of_calls() {
    let out = run(
        &["pythonic"],
        "[get_weather(city='Tokyo'), get_time(tz='JST')]",
        None,
    );
    assert_eq!(
        calls(&out),
        vec![
            call("get_weather", json!({"city": "Tokyo"})),
            call("get_time", json!({"tz": "JST"}))
        ]
    );
    assert_eq!(out.content, None);
}

#[test]
fn pythonic_after_python_tag() {
    let out = run(
        &["pythonic"],
        r#"<|python_tag|>get_weather(city="Tokyo")"#,
        None,
    );
    assert_eq!(
        calls(&out),
        vec![call("get_weather", json!({"city": "Tokyo"}))]
    );
}

#[test]
fn pythonic_literals_and_positional_mapping() {
    let text = "[get_weather('Tokyo', unit=\"celsius\")]";
    let out = run(&["pythonic"], text, Some(weather_tools()));
    assert_eq!(
        calls(&out),
        vec![call(
            "get_weather",
            json!({"city": "Tokyo", "unit": "celsius"})
        )]
    );
    let out = run(
        &["pythonic"],
        "[f(a=1, b=-2.5, c=True, d=None, e=[1, (2, 3)], g={'k': 'v'})]",
        None,
    );
    assert_eq!(
        calls(&out),
        vec![call(
            "f",
            json!({"a": 1, "b": -2.5, "c": true, "d": null, "e": [1, [2, 3]], "g": {"k": "v"}})
        )]
    );
}

#[test]
fn pythonic_text_before_and_after() {
    let out = run(
        &["pythonic"],
        "Let me check. [get_time(tz='JST')] Done.",
        None,
    );
    assert_eq!(calls(&out), vec![call("get_time", json!({"tz": "JST"}))]);
    assert_eq!(out.content.as_deref(), Some("Let me check.  Done."));
}

#[test]
fn pythonic_bracketed_prose_is_content() {
    let text = "See [1] and [note] and [a, b].";
    let out = run(&["pythonic"], text, None);
    assert_eq!(out.content.as_deref(), Some(text));
    assert!(out.tool_calls.is_empty());
}

// ---------- mistral ----------

#[test]
fn mistral_parallel_calls_with_9_char_ids() {
    let text = r#"[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Tokyo"}}, {"name": "get_time", "arguments": {"tz": "JST"}}]"#;
    let out = run(&["mistral", "json_fallback"], text, None);
    assert_eq!(
        calls(&out),
        vec![
            call("get_weather", json!({"city": "Tokyo"})),
            call("get_time", json!({"tz": "JST"}))
        ]
    );
    assert_eq!(out.content, None);
    for c in &out.tool_calls {
        assert_eq!(c.id.len(), 9, "{}", c.id);
        assert!(c.id.bytes().all(|b| b.is_ascii_alphanumeric()), "{}", c.id);
    }
}

#[test]
fn mistral_id_style_can_be_forced() {
    let opts = ParseOptions {
        tools: None,
        id_style: Some(IdStyle::OpenAi),
        id_seed: Some(1),
    };
    let out = parsers::parse(
        &["mistral".to_string()],
        r#"[TOOL_CALLS] [{"name": "f", "arguments": {}}]"#,
        &opts,
    )
    .expect("parser");
    assert!(is_openai_id(&out.tool_calls[0].id));
}

#[test]
fn mistral_arguments_as_string_and_text_before() {
    let text =
        r#"Sure. [TOOL_CALLS] [{"name": "get_weather", "arguments": "{\"city\": \"Tokyo\"}"}]"#;
    let out = run(&["mistral"], text, None);
    assert_eq!(
        calls(&out),
        vec![call("get_weather", json!({"city": "Tokyo"}))]
    );
    assert_eq!(out.content.as_deref(), Some("Sure."));
}

#[test]
fn mistral_args_marker_form() {
    let out = run(
        &["mistral"],
        r#"[TOOL_CALLS]get_weather[ARGS]{"city": "Tokyo"}"#,
        None,
    );
    assert_eq!(
        calls(&out),
        vec![call("get_weather", json!({"city": "Tokyo"}))]
    );
}

#[test]
fn mistral_truncated_is_content() {
    let text = r#"[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Tok"#;
    let out = run(&["mistral"], text, None);
    assert!(out.tool_calls.is_empty());
    assert_eq!(out.content.as_deref(), Some(text));
}

// ---------- hermes ----------

#[test]
fn hermes_single_block() {
    let text = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Tokyo\"}}\n</tool_call>";
    let out = run(&["hermes", "json_fallback"], text, None);
    assert_eq!(
        calls(&out),
        vec![call("get_weather", json!({"city": "Tokyo"}))]
    );
    assert_eq!(out.content, None);
}

#[test]
fn hermes_text_around_and_parallel_blocks() {
    let text = "I'll check both.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"東京\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_time\", \"arguments\": {\"tz\": \"JST\"}}\n</tool_call>\nOne moment.";
    let out = run(&["hermes"], text, Some(weather_tools()));
    assert_eq!(
        calls(&out),
        vec![
            call("get_weather", json!({"city": "東京"})),
            call("get_time", json!({"tz": "JST"}))
        ]
    );
    assert_eq!(
        out.content.as_deref(),
        Some("I'll check both.\n\n\nOne moment.")
    );
}

#[test]
fn hermes_missing_closing_tag_at_end() {
    let text = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Tokyo\"}}";
    let out = run(&["hermes"], text, None);
    assert_eq!(
        calls(&out),
        vec![call("get_weather", json!({"city": "Tokyo"}))]
    );
    assert_eq!(out.content, None);
}

#[test]
fn hermes_nested_json_and_escapes() {
    let text = r#"<tool_call>{"name": "send_email", "arguments": {"to": "a@b.c", "body": "line1\nline2 \"quoted\" \u00e9 {not a brace}", "meta": {"tags": ["x", {"y": [1, 2]}]}}}</tool_call>"#;
    let out = run(&["hermes"], text, None);
    assert_eq!(
        calls(&out),
        vec![call(
            "send_email",
            json!({"to": "a@b.c", "body": "line1\nline2 \"quoted\" é {not a brace}", "meta": {"tags": ["x", {"y": [1, 2]}]}})
        )]
    );
}

#[test]
fn hermes_single_quoted_drift() {
    let text = "<tool_call>{'name': 'get_weather', 'arguments': {'city': 'Tokyo'}}</tool_call>";
    let out = run(&["hermes"], text, None);
    assert_eq!(
        calls(&out),
        vec![call("get_weather", json!({"city": "Tokyo"}))]
    );
}

#[test]
fn hermes_bare_json_with_declared_tool() {
    let text = r#"{"name": "get_weather", "arguments": {"city": "Tokyo"}}"#;
    let out = run(&["hermes"], text, Some(weather_tools()));
    assert_eq!(
        calls(&out),
        vec![call("get_weather", json!({"city": "Tokyo"}))]
    );
    assert_eq!(out.content, None);
    // Without tools a bare object is not a hermes call.
    let out = run(&["hermes"], text, None);
    assert!(out.tool_calls.is_empty());
    assert_eq!(out.content.as_deref(), Some(text));
}

#[test]
fn hermes_bare_json_several_and_fenced() {
    let text = "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Tokyo\"}}\n{\"name\": \"get_time\", \"arguments\": {\"tz\": \"JST\"}}";
    let out = run(&["hermes"], text, Some(weather_tools()));
    assert_eq!(
        calls(&out),
        vec![
            call("get_weather", json!({"city": "Tokyo"})),
            call("get_time", json!({"tz": "JST"}))
        ]
    );
    let text = "Calling:\n```json\n{\"name\": \"get_time\", \"arguments\": {\"tz\": \"JST\"}}\n```";
    let out = run(&["hermes"], text, Some(weather_tools()));
    assert_eq!(calls(&out), vec![call("get_time", json!({"tz": "JST"}))]);
    assert_eq!(out.content.as_deref(), Some("Calling:"));
}

#[test]
fn hermes_undeclared_function_stays_content() {
    let text = "<tool_call>{\"name\": \"launch_rocket\", \"arguments\": {}}</tool_call>";
    let out = run(&["hermes"], text, Some(weather_tools()));
    assert!(out.tool_calls.is_empty());
    assert_eq!(out.content.as_deref(), Some(text));
}

#[test]
fn hermes_mixed_declared_and_undeclared() {
    let text = "<tool_call>{\"name\": \"get_time\", \"arguments\": {\"tz\": \"JST\"}}</tool_call><tool_call>{\"name\": \"nope\", \"arguments\": {}}</tool_call>";
    let out = run(&["hermes"], text, Some(weather_tools()));
    assert_eq!(calls(&out), vec![call("get_time", json!({"tz": "JST"}))]);
    assert_eq!(
        out.content.as_deref(),
        Some("<tool_call>{\"name\": \"nope\", \"arguments\": {}}</tool_call>")
    );
}

#[test]
fn coercion_follows_the_schema() {
    let tools = vec![tool(
        "book",
        json!({"n": {"type": "integer"}, "ok": {"type": "boolean"}, "label": {"type": "string"}, "price": {"type": "number"}, "tags": {"type": "array", "items": {"type": "integer"}}}),
    )];
    let text = r#"<tool_call>{"name": "book", "arguments": {"n": "5", "ok": "true", "label": 12, "price": "2.5", "tags": ["1", 2]}}</tool_call>"#;
    let out = run(&["hermes"], text, Some(tools));
    assert_eq!(
        calls(&out),
        vec![call(
            "book",
            json!({"n": 5, "ok": true, "label": "12", "price": 2.5, "tags": [1, 2]})
        )]
    );
}

#[test]
fn coercion_keeps_uncoercible_values() {
    let tools = vec![tool("book", json!({"n": {"type": "integer"}}))];
    let text = r#"<tool_call>{"name": "book", "arguments": {"n": "five", "extra": 1}}</tool_call>"#;
    let out = run(&["hermes"], text, Some(tools));
    assert_eq!(
        calls(&out),
        vec![call("book", json!({"n": "five", "extra": 1}))]
    );
}

// ---------- glaive ----------

#[test]
fn glaive_single_quoted_arguments() {
    let text =
        r#"<functioncall> {"name": "send_email", "arguments": '{"to": "a@b.c", "body": "hi"}'} "#;
    let out = run(&["glaive"], text, None);
    assert_eq!(
        calls(&out),
        vec![call("send_email", json!({"to": "a@b.c", "body": "hi"}))]
    );
    assert_eq!(out.content, None);
}

#[test]
fn glaive_apostrophe_inside_quoted_json() {
    let text = r#"<functioncall> {"name": "send_email", "arguments": '{"to": "a@b.c", "body": "it's fine"}'}"#;
    let out = run(&["glaive"], text, None);
    assert_eq!(
        calls(&out),
        vec![call(
            "send_email",
            json!({"to": "a@b.c", "body": "it's fine"})
        )]
    );
}

#[test]
fn glaive_object_and_string_arguments() {
    let out = run(
        &["glaive"],
        r#"<functioncall> {"name": "get_time", "arguments": {"tz": "JST"}}"#,
        None,
    );
    assert_eq!(calls(&out), vec![call("get_time", json!({"tz": "JST"}))]);
    let out = run(
        &["glaive"],
        r#"<functioncall> {"name": "get_time", "arguments": "{\"tz\": \"JST\"}"}"#,
        None,
    );
    assert_eq!(calls(&out), vec![call("get_time", json!({"tz": "JST"}))]);
}

#[test]
fn glaive_plain_answer() {
    let out = run(&["glaive"], "The email was sent successfully.", None);
    assert_eq!(
        out.content.as_deref(),
        Some("The email was sent successfully.")
    );
    assert!(out.tool_calls.is_empty());
}

// ---------- gorilla ----------

#[test]
fn gorilla_single_call() {
    let out = run(
        &["gorilla"],
        "get_current_weather(location='Boston, MA', unit='fahrenheit')",
        None,
    );
    assert_eq!(
        calls(&out),
        vec![call(
            "get_current_weather",
            json!({"location": "Boston, MA", "unit": "fahrenheit"})
        )]
    );
    assert_eq!(out.content, None);
}

#[test]
fn gorilla_function_separator_and_list() {
    let out = run(
        &["gorilla"],
        "<<function>>get_weather(city='Tokyo')<<function>>get_time(tz=\"JST\")",
        None,
    );
    assert_eq!(
        calls(&out),
        vec![
            call("get_weather", json!({"city": "Tokyo"})),
            call("get_time", json!({"tz": "JST"}))
        ]
    );
    assert_eq!(out.content, None);
    let out = run(&["gorilla"], "[f(a=1), g(b='x')]", None);
    assert_eq!(
        calls(&out),
        vec![call("f", json!({"a": 1})), call("g", json!({"b": "x"}))]
    );
}

#[test]
fn gorilla_prose_is_content() {
    let text = "I cannot help with that (sorry).";
    let out = run(&["gorilla"], text, None);
    assert_eq!(out.content.as_deref(), Some(text));
    assert!(out.tool_calls.is_empty());
}

// ---------- nexusraven ----------

#[test]
fn nexusraven_nested_call() {
    let text = "Call: get_weather_data(coordinates=get_coordinates_from_city(city_name='Seattle'))<bot_end>";
    let out = run(&["nexusraven"], text, None);
    assert_eq!(
        calls(&out),
        vec![call(
            "get_weather_data",
            json!({"coordinates": {"__call__": "get_coordinates_from_city", "arguments": {"city_name": "Seattle"}}})
        )]
    );
    assert_eq!(out.content, None);
}

#[test]
fn nexusraven_several_calls_and_thought_dropped() {
    let text = "Call: f(a=1); g(b=h(c='x'))<bot_end>\nThought: I called f and g.";
    let out = run(&["nexusraven"], text, None);
    assert_eq!(
        calls(&out),
        vec![
            call("f", json!({"a": 1})),
            call(
                "g",
                json!({"b": {"__call__": "h", "arguments": {"c": "x"}}})
            )
        ]
    );
    assert_eq!(out.content, None);
}

#[test]
fn nexusraven_nested_positional_uses_declared_schema() {
    let tools = vec![
        tool(
            "get_weather_data",
            json!({"coordinates": {"type": "array"}}),
        ),
        tool(
            "get_coordinates_from_city",
            json!({"city_name": {"type": "string"}}),
        ),
    ];
    let text = "Call: get_weather_data(get_coordinates_from_city('Seattle'))";
    let out = run(&["nexusraven"], text, Some(tools));
    // `coordinates` is declared an array but holds a call: left as the call object.
    assert_eq!(
        calls(&out),
        vec![call(
            "get_weather_data",
            json!({"coordinates": {"__call__": "get_coordinates_from_city", "arguments": {"city_name": "Seattle"}}})
        )]
    );
}

// ---------- chatglm3 ----------

#[test]
fn chatglm3_tool_block() {
    let text = "get_stock_price\n```python\ntool_call(symbol='10111', unit=\"celsius\")\n```";
    let out = run(&["chatglm3"], text, None);
    assert_eq!(
        calls(&out),
        vec![call(
            "get_stock_price",
            json!({"symbol": "10111", "unit": "celsius"})
        )]
    );
    assert_eq!(out.content, None);
}

#[test]
fn chatglm3_plain_answer_and_missing_fence() {
    let out = run(&["chatglm3"], "\nThe price is 42.", None);
    assert_eq!(out.content.as_deref(), Some("The price is 42."));
    assert!(out.tool_calls.is_empty());
    let out = run(
        &["chatglm3"],
        "get_stock_price\n```python\ntool_call(symbol='10111')",
        None,
    );
    assert_eq!(
        calls(&out),
        vec![call("get_stock_price", json!({"symbol": "10111"}))]
    );
}

// ---------- json_fallback and chains ----------

#[test]
fn json_fallback_object_and_array() {
    let out = run(
        &["json_fallback"],
        r#"{"name": "get_time", "parameters": {"tz": "JST"}}"#,
        None,
    );
    assert_eq!(calls(&out), vec![call("get_time", json!({"tz": "JST"}))]);
    let out = run(
        &["json_fallback"],
        r#"Sure: [{"name": "get_time", "arguments": {"tz": "JST"}}, {"name": "get_weather", "arguments": {"city": "Oslo"}}]"#,
        None,
    );
    assert_eq!(
        calls(&out),
        vec![
            call("get_time", json!({"tz": "JST"})),
            call("get_weather", json!({"city": "Oslo"}))
        ]
    );
    assert_eq!(out.content.as_deref(), Some("Sure:"));
}

#[test]
fn chain_falls_back_to_json() {
    let text = r#"[{"name": "get_time", "arguments": {"tz": "JST"}}]"#;
    let out = run(&["mistral", "json_fallback"], text, Some(weather_tools()));
    assert_eq!(calls(&out), vec![call("get_time", json!({"tz": "JST"}))]);
}

#[test]
fn llama_chain_reads_pythonic_and_json() {
    let chain = ["llama3_json", "pythonic", "json_fallback"];
    let out = run(&chain, "[get_weather(city='Tokyo')]", None);
    assert_eq!(
        calls(&out),
        vec![call("get_weather", json!({"city": "Tokyo"}))]
    );
    let out = run(
        &chain,
        r#"{"name": "get_weather", "parameters": {"city": "Tokyo"}}"#,
        None,
    );
    assert_eq!(
        calls(&out),
        vec![call("get_weather", json!({"city": "Tokyo"}))]
    );
}

#[test]
fn unknown_parser_lists_known_names() {
    let err = parsers::chain(&["nope".to_string()])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("nope") && err.contains("hermes") && err.contains("json_fallback"),
        "{err}"
    );
    assert!(parsers::chain::<&str>(&[]).is_err());
}

#[test]
fn every_registry_parser_name_resolves() {
    let reg = callm::registry::Registry::builtin();
    for f in reg.families() {
        parsers::chain(&f.parsers).unwrap_or_else(|e| panic!("{}: {e}", f.name));
    }
}

#[test]
fn no_tools_accepts_any_name_and_ids_are_deterministic() {
    let text = "<tool_call>{\"name\": \"anything\", \"arguments\": {\"x\": 1}}</tool_call>";
    let a = run(&["hermes"], text, None);
    let b = run(&["hermes"], text, None);
    assert_eq!(calls(&a), vec![call("anything", json!({"x": 1}))]);
    assert_eq!(a, b);
}

/// The call openings forced for a named `tool_choice` are how each format's documented output
/// (`../shared/FORMATS.md`, copied here) begins, and the `required` opening begins it too.
#[test]
fn forced_openings_begin_the_documented_outputs() {
    let documented: &[(&str, &str, &str)] = &[
        (
            "llama3_json",
            "get_weather",
            r#"{"name": "get_weather", "parameters": {"city": "Tokyo"}}"#,
        ),
        (
            "pythonic",
            "get_weather",
            "[get_weather(city='Tokyo'), get_time(tz='JST')]",
        ),
        (
            "mistral",
            "get_weather",
            r#"[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Tokyo"}}, {...}]"#,
        ),
        (
            "hermes",
            "get_weather",
            "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Tokyo\"}}\n</tool_call>",
        ),
        (
            "gorilla",
            "get_current_weather",
            "get_current_weather(location='Boston, MA', unit='fahrenheit')",
        ),
        (
            "glaive",
            "send_email",
            r#"<functioncall> {"name": "send_email", "arguments": '{"to": "a@b.c", "body": "hi"}'} <|endoftext|>"#,
        ),
        (
            "nexusraven",
            "get_weather_data",
            "Call: get_weather_data(coordinates=get_coordinates_from_city(city_name='Seattle'))<bot_end>",
        ),
        (
            "chatglm3",
            "get_stock",
            "get_stock\n```python\ntool_call(symbol='10111', unit=\"celsius\")\n```",
        ),
    ];
    for (format, name, output) in documented {
        let def = parsers::get(format).expect("known format").def();
        let named = def.named_opening(name);
        assert!(output.starts_with(&named), "{format}: {named:?}");
        let required = def.required_opening();
        assert!(output.starts_with(&required), "{format}: {required:?}");
    }
}

/// Runs the chain of a registry family.
fn run_family(family: &str, text: &str, tools: Option<Vec<Tool>>) -> ParsedOutput {
    let reg = callm::registry::Registry::builtin();
    let f = reg.require(family).expect("family");
    run(
        &f.parsers.iter().map(|p| p.name()).collect::<Vec<_>>(),
        text,
        tools,
    )
}

/// End-of-turn markers and the role label a model writes itself (FORMATS.md: Mistral's `</s>`,
/// Llama's `<|eom_id|>`/`<|eot_id|>`, Glaive's `ASSISTANT:` and `<|endoftext|>`, NexusRaven's
/// `<bot_end>`, Qwen's `<|im_end|>`, Gorilla's `<|EOT|>`) are neither content nor arguments.
#[test]
fn end_markers_and_role_labels_never_reach_content_or_arguments() {
    let cases: &[(&str, &str, Option<&str>)] = &[
        (
            "mistral-7b-instruct-v0.3",
            r#"[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Tokyo"}}]</s>"#,
            None,
        ),
        ("mistral-7b-instruct-v0.3", "It is sunny.</s>", Some("It is sunny.")),
        (
            "llama-3.1",
            r#"<|python_tag|>{"name": "get_weather", "parameters": {"city": "Tokyo"}}<|eom_id|>"#,
            None,
        ),
        ("llama-3.1", "It is sunny.<|eot_id|>", Some("It is sunny.")),
        (
            "llama-3.2",
            "[get_weather(city='Tokyo')]<|eom_id|>",
            None,
        ),
        (
            "glaive-function-calling-v1",
            r#"ASSISTANT: <functioncall> {"name": "get_weather", "arguments": '{"city": "Tokyo"}'} <|endoftext|>"#,
            None,
        ),
        (
            "glaive-function-calling-v1",
            "ASSISTANT: It is sunny in ASSISTANT: mode.<|endoftext|>",
            Some("It is sunny in ASSISTANT: mode."),
        ),
        (
            "nexusraven-v2",
            "Call: get_weather(city='Tokyo')<bot_end>",
            None,
        ),
        (
            "qwen2.5",
            "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Tokyo\"}}\n<|im_end|>",
            None,
        ),
        ("qwen2.5", "It is sunny.<|im_end|>", Some("It is sunny.")),
        (
            "gorilla-openfunctions-v2",
            "get_weather(city='Tokyo')<|EOT|>",
            None,
        ),
    ];
    for (family, text, content) in cases {
        let out = run_family(family, text, Some(weather_tools()));
        assert_eq!(out.content.as_deref(), *content, "{family}: {text:?}");
        if content.is_none() {
            assert_eq!(
                calls(&out),
                vec![call("get_weather", json!({"city": "Tokyo"}))],
                "{family}: {text:?}"
            );
        }
    }
}
/// Gorilla's list form (FORMATS.md: `[f(a=1), g(b='x')]`) is calls only, no bracket content.
#[test]
fn gorilla_call_list_leaves_no_brackets() {
    let out = run(
        &["gorilla"],
        "[get_weather(city='Tokyo'), get_time(tz='JST')]",
        Some(weather_tools()),
    );
    assert_eq!(out.content, None);
    assert_eq!(
        calls(&out),
        vec![
            call("get_weather", json!({"city": "Tokyo"})),
            call("get_time", json!({"tz": "JST"}))
        ]
    );
}
