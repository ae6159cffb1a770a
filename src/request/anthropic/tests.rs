//! The Messages edge's decisions, each against Anthropic's documented meaning of the field.

use serde_json::{json, Value};

use super::count_tokens_request;
use crate::anthropic::MessagesRequest;
use crate::request::{ChatRequest, PromptEnd, RequestError, Role, ToolChoice};

fn body(extra: Value) -> MessagesRequest {
    let mut b = json!({"model": "m", "max_tokens": 64,
        "messages": [{"role": "user", "content": "What is the weather in Paris?"}]});
    for (k, v) in extra.as_object().unwrap() {
        b[k] = v.clone();
    }
    serde_json::from_value(b).unwrap()
}

fn convert(extra: Value) -> Result<ChatRequest, RequestError> {
    ChatRequest::try_from(body(extra))
}

fn refused(extra: Value) -> RequestError {
    convert(extra.clone())
        .map(|_| panic!("accepted {extra}"))
        .unwrap_err()
}

fn weather() -> Value {
    json!([{"name": "get_weather", "description": "Weather of a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}])
}

#[test]
fn max_tokens_is_required_and_positive_but_not_for_counting() {
    let mut b = body(json!({}));
    b.max_tokens = None;
    let e = ChatRequest::try_from(b.clone()).unwrap_err();
    assert_eq!(e.param, "max_tokens");
    assert!(count_tokens_request(b).is_ok());
    assert_eq!(refused(json!({"max_tokens": 0})).param, "max_tokens");
    let r = convert(json!({"max_tokens": 7})).unwrap();
    assert_eq!(r.limits.max_tokens, Some(7));
    assert_eq!(r.limits.n, 1);
}

#[test]
fn the_system_prompt_is_a_string_or_text_blocks_and_comes_first() {
    let r = convert(json!({"system": "Be brief."})).unwrap();
    assert_eq!(r.messages[0].role, Role::System);
    assert_eq!(r.messages[0].content.as_deref(), Some("Be brief."));
    let r = convert(json!({"system": [{"type": "text", "text": "A. "},
        {"type": "text", "text": "B.", "cache_control": {"type": "ephemeral"}}]}))
    .unwrap();
    assert_eq!(r.messages[0].content.as_deref(), Some("A. B."));
    assert_eq!(r.messages[1].role, Role::User);
    let e = refused(json!({"system": [{"type": "image", "source": {}}]}));
    assert_eq!(e.param, "system[0].type");
}

#[test]
fn only_user_and_assistant_turns() {
    let e = refused(json!({"messages": [{"role": "system", "content": "x"}]}));
    assert_eq!(e.param, "messages[0].role");
    let e = refused(json!({"messages": []}));
    assert_eq!(e.param, "messages");
}

#[test]
fn images_and_documents_are_refused_with_a_clear_error() {
    for kind in ["image", "document"] {
        let e = refused(json!({"messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": kind, "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}]}]}));
        assert_eq!(e.param, "messages[0].content[1].type");
        assert!(e.message.contains("text only"), "{}", e.message);
    }
    let e = refused(json!({"messages": [{"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "image", "source": {}}]}]}]}));
    assert_eq!(e.param, "messages[0].content[0].content[0].type");
}

#[test]
fn tool_use_and_tool_result_blocks_are_calls_and_results() {
    let r = convert(json!({"tools": weather(), "messages": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Let me check."},
            {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_01", "content": "sunny"},
            {"type": "tool_result", "tool_use_id": "toolu_02", "is_error": true,
             "content": [{"type": "text", "text": "timeout"}]},
            {"type": "text", "text": "And tomorrow?"}]}]}))
    .unwrap();
    let m = &r.messages;
    assert_eq!(m.len(), 5);
    assert_eq!(m[1].role, Role::Assistant);
    assert_eq!(m[1].content.as_deref(), Some("Let me check."));
    assert_eq!(m[1].tool_calls[0].id, "toolu_01");
    assert_eq!(m[1].tool_calls[0].name, "get_weather");
    assert_eq!(m[1].tool_calls[0].arguments, json!({"city": "Paris"}));
    assert_eq!(m[2].role, Role::Tool);
    assert_eq!(m[2].tool_call_id.as_deref(), Some("toolu_01"));
    assert_eq!(m[2].content.as_deref(), Some("sunny"));
    assert_eq!(m[3].content.as_deref(), Some("Error: timeout"));
    assert_eq!(m[4].role, Role::User);
    assert_eq!(m[4].content.as_deref(), Some("And tomorrow?"));
    assert_eq!(r.prompt_end, PromptEnd::GenerationPrompt);
}

#[test]
fn a_call_without_text_has_no_content_and_bad_blocks_name_their_field() {
    let r = convert(json!({"messages": [
        {"role": "user", "content": "x"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1"}]}]}))
    .unwrap();
    assert_eq!(r.messages[1].content, None);
    assert_eq!(r.messages[2].content.as_deref(), Some(""));
    assert_eq!(
        r.messages.len(),
        3,
        "a turn of results only has no user text"
    );
    let e = refused(json!({"messages": [{"role": "assistant", "content": [
        {"type": "tool_use", "id": "toolu_1", "name": "f", "input": [1]}]}]}));
    assert_eq!(e.param, "messages[0].content[0].input");
    let e = refused(json!({"messages": [{"role": "user", "content": [{"type": "tool_result"}]}]}));
    assert_eq!(e.param, "messages[0].content[0].tool_use_id");
    let e = refused(
        json!({"messages": [{"role": "user", "content": [{"type": "tool_use", "id": "a", "name": "f"}]}]}),
    );
    assert_eq!(e.param, "messages[0].content[0].type");
}

#[test]
fn thinking_blocks_are_the_assistant_reasoning() {
    let r = convert(json!({"messages": [
        {"role": "user", "content": "x"},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "The user wants x.", "signature": "sig"},
            {"type": "redacted_thinking", "data": "..."},
            {"type": "text", "text": "x!"}]},
        {"role": "user", "content": "y"}]}))
    .unwrap();
    assert_eq!(
        r.messages[1].reasoning_content.as_deref(),
        Some("The user wants x.")
    );
    assert_eq!(r.messages[1].content.as_deref(), Some("x!"));
}

#[test]
fn client_tools_only_each_with_an_input_schema() {
    let r = convert(json!({"tools": weather()})).unwrap();
    assert_eq!(r.tools[0].name, "get_weather");
    assert_eq!(
        r.tools[0].parameters,
        weather()[0]["input_schema"].clone().into()
    );
    let e = refused(
        json!({"tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 5}]}),
    );
    assert_eq!(e.param, "tools[0].type");
    assert!(e.message.contains("server tools"), "{}", e.message);
    let e = refused(json!({"tools": [{"name": "f"}]}));
    assert_eq!(e.param, "tools[0].input_schema");
    let e = refused(json!({"tools": [{"name": "bad name", "input_schema": {"type": "object"}}]}));
    assert_eq!(e.param, "tools[0].name");
    assert!(convert(
        json!({"tools": [{"type": "custom", "name": "f", "input_schema": {"type": "object"}}]})
    )
    .is_ok());
}

#[test]
fn tool_choice_modes_and_disable_parallel_tool_use() {
    let choice = |tc: Value| convert(json!({"tools": weather(), "tool_choice": tc})).unwrap();
    assert_eq!(
        choice(json!({"type": "auto"})).tool_choice,
        ToolChoice::Auto
    );
    assert_eq!(
        choice(json!({"type": "any"})).tool_choice,
        ToolChoice::Required
    );
    assert_eq!(
        choice(json!({"type": "none"})).tool_choice,
        ToolChoice::None
    );
    let named = choice(json!({"type": "tool", "name": "get_weather"}));
    assert_eq!(named.tool_choice, ToolChoice::Named("get_weather".into()));
    let r = choice(json!({"type": "any", "disable_parallel_tool_use": true}));
    assert!(!r.limits.parallel_tool_calls && r.single_call());
    assert!(choice(json!({"type": "any"})).limits.parallel_tool_calls);
    let e = refused(json!({"tools": weather(), "tool_choice": {"type": "tool", "name": "nope"}}));
    assert_eq!(e.param, "tool_choice.name");
    let e = refused(json!({"tool_choice": {"type": "any"}}));
    assert_eq!(e.param, "tool_choice");
    let e = refused(json!({"tools": weather(), "tool_choice": {"type": "required"}}));
    assert_eq!(e.param, "tool_choice.type");
}

#[test]
fn sampling_uses_anthropic_ranges_and_top_k() {
    let r = convert(json!({"temperature": 0.5, "top_p": 0.9, "top_k": 40})).unwrap();
    assert_eq!(r.sampling.temperature, Some(0.5));
    assert_eq!(r.sampling.top_p, 0.9);
    assert_eq!(r.sampling.top_k, 40);
    assert_eq!(refused(json!({"temperature": 1.5})).param, "temperature");
    assert_eq!(refused(json!({"top_p": 0.0})).param, "top_p");
}

#[test]
fn stop_sequences_are_the_stops() {
    let r = convert(json!({"stop_sequences": ["\n\nHuman:", "END"]})).unwrap();
    assert_eq!(r.stop, vec!["\n\nHuman:".to_string(), "END".to_string()]);
    assert_eq!(
        refused(json!({"stop_sequences": [""]})).param,
        "stop_sequences"
    );
    let many: Vec<String> = (0..17).map(|i| format!("s{i}")).collect();
    assert_eq!(
        refused(json!({"stop_sequences": many})).param,
        "stop_sequences"
    );
}

#[test]
fn a_final_assistant_turn_is_a_prefill() {
    let turns =
        |last: Value| json!({"messages": [{"role": "user", "content": "Pick A or B."}, last]});
    let r = convert(turns(
        json!({"role": "assistant", "content": "The answer is ("}),
    ))
    .unwrap();
    assert_eq!(r.prompt_end, PromptEnd::ContinueFinal);
    let e = refused(turns(
        json!({"role": "assistant", "content": "The answer is "}),
    ));
    assert_eq!(e.param, "messages");
    let call = json!({"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}]});
    assert_eq!(
        convert(turns(call)).unwrap().prompt_end,
        PromptEnd::GenerationPrompt
    );
    // A prefill cannot be combined with a forced call.
    let mut forced = turns(json!({"role": "assistant", "content": "Sure"}));
    forced["tools"] = weather();
    forced["tool_choice"] = json!({"type": "any"});
    assert_eq!(refused(forced).param, "messages");
}

#[test]
fn unknown_fields_are_ignored() {
    let r = convert(
        json!({"metadata": {"user_id": "u1"}, "service_tier": "auto",
        "thinking": {"type": "disabled"}, "messages": [{"role": "user", "content": [
            {"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}, "citations": null}]}]}),
    );
    assert_eq!(r.unwrap().messages[0].content.as_deref(), Some("hi"));
}

#[test]
fn output_config_format_is_an_enforced_schema_and_tools_may_be_strict() {
    use crate::request::ResponseFormat;
    let schema = json!({"type": "object", "properties": {"a": {"type": "integer"}}});
    let r = convert(
        json!({"output_config": {"format": {"type": "json_schema", "schema": schema},
        "effort": "low"}}),
    )
    .unwrap();
    assert_eq!(
        r.response_format,
        ResponseFormat::JsonSchema {
            schema,
            strict: true
        }
    );
    assert_eq!(
        refused(json!({"output_config": {"format": {"type": "xml"}}})).param,
        "output_config.format"
    );
    let mut tools = weather();
    tools[0]["strict"] = json!(true);
    assert_eq!(
        convert(json!({"tools": tools})).unwrap().tools[0].strict,
        Some(true)
    );
}

#[test]
fn thinking_is_the_templates_thinking_switch() {
    let switch = |thinking: Value| {
        convert(json!({ "thinking": thinking }))
            .unwrap()
            .reasoning
            .thinking
    };
    assert_eq!(
        switch(json!({"type": "enabled", "budget_tokens": 2048})),
        Some(true)
    );
    assert_eq!(switch(json!({"type": "adaptive"})), Some(true));
    assert_eq!(switch(json!({"type": "disabled"})), Some(false));
    let none = convert(json!({})).unwrap();
    assert_eq!(none.reasoning, Default::default());
    assert_eq!(none.template_kwargs.len(), 0);
    // output_config.effort is the level; it leaves the switch as `thinking` says.
    use crate::request::Effort;
    let level = |effort: &str| {
        convert(json!({"output_config": {"effort": effort}}))
            .unwrap()
            .reasoning
    };
    assert_eq!(level("low").effort, Some(Effort::Low));
    assert_eq!(level("max").effort, Some(Effort::XHigh));
    assert_eq!(level("high").thinking, None);
    assert_eq!(
        refused(json!({"output_config": {"effort": "none"}})).param,
        "output_config.effort"
    );
    assert_eq!(
        refused(json!({"thinking": {"type": "x"}})).param,
        "thinking.type"
    );
}

#[test]
fn budget_tokens_caps_the_reasoning_block() {
    let budget = |thinking: Value| {
        convert(json!({ "thinking": thinking }))
            .unwrap()
            .limits
            .max_reasoning_tokens
    };
    assert_eq!(
        budget(json!({"type": "enabled", "budget_tokens": 2048})),
        Some(2048)
    );
    assert_eq!(budget(json!({"type": "enabled"})), None);
    // Thinking off has no block to bound; an adaptive model budgets itself.
    assert_eq!(
        budget(json!({"type": "disabled", "budget_tokens": 2048})),
        None
    );
    assert_eq!(
        budget(json!({"type": "adaptive", "budget_tokens": 2048})),
        None
    );
    assert_eq!(
        convert(json!({})).unwrap().limits.max_reasoning_tokens,
        None
    );
}
