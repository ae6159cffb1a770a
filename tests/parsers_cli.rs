//! Tests of the `parse` subcommand's building blocks.

use callm::cli::parse::{parse_streaming, render, resolve_chain};
use callm::parsers::ParseOptions;
use serde_json::{json, Value};

#[test]
fn family_names_and_parser_lists_resolve() {
    assert_eq!(
        resolve_chain("qwen2.5").expect("family").names(),
        vec!["hermes", "json_fallback"]
    );
    assert_eq!(
        resolve_chain("gorilla, pythonic").expect("list").names(),
        vec!["gorilla", "pythonic"]
    );
    let err = resolve_chain("nope").unwrap_err().to_string();
    assert!(
        err.contains("nope") && err.contains("hermes") && err.contains("qwen2.5"),
        "{err}"
    );
}

#[test]
fn streaming_chunks_print_the_same_as_one_shot() {
    let chain = resolve_chain("llama-3.1").expect("family");
    let text = "Checking é.\n<|python_tag|>{\"name\": \"get_weather\", \"parameters\": {\"city\": \"東京\"}}";
    let opts = ParseOptions {
        tools: None,
        id_style: None,
        id_seed: Some(0),
    };
    let one = render(&chain.parse(text, &opts));
    for n in [1, 2, 3, 7, 1000] {
        assert_eq!(
            render(&parse_streaming(&chain, text, opts.clone(), n)),
            one,
            "chunks of {n}"
        );
    }
    let v: Value = serde_json::from_str(&one).expect("JSON");
    assert_eq!(v["content"], json!("Checking é."));
    assert_eq!(v["tool_calls"][0]["function"]["name"], json!("get_weather"));
    assert_eq!(v["tool_calls"][0]["type"], json!("function"));
}
