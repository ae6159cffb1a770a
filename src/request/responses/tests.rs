//! The Responses edge's decisions, each against the API's documented meaning of the field.

use serde_json::{json, Value};

use crate::openai::responses::{InputItem, ResponsesRequest};
use crate::request::{ChatRequest, RequestError, ResponseFormat, Role, ToolChoice};

fn convert(body: Value) -> Result<ChatRequest, RequestError> {
    let wire: ResponsesRequest = serde_json::from_value(body).unwrap();
    ChatRequest::try_from(wire)
}

fn with(extra: Value) -> Result<ChatRequest, RequestError> {
    let mut b = json!({"model": "m", "input": "Weather in Paris?"});
    for (k, v) in extra.as_object().unwrap() {
        b[k] = v.clone();
    }
    convert(b)
}

fn refused(extra: Value) -> RequestError {
    with(extra.clone())
        .map(|_| panic!("accepted {extra}"))
        .unwrap_err()
}

fn weather() -> Value {
    json!([{"type": "function", "name": "get_weather", "description": "Weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}])
}

#[test]
fn a_string_input_is_one_user_message_after_the_instructions() {
    let r = with(json!({"instructions": "Be brief."})).unwrap();
    assert_eq!(r.messages.len(), 2);
    assert_eq!(r.messages[0].role, Role::System);
    assert_eq!(r.messages[0].content.as_deref(), Some("Be brief."));
    assert_eq!(r.messages[1].role, Role::User);
    assert_eq!(r.messages[1].content.as_deref(), Some("Weather in Paris?"));
    assert_eq!(refused(json!({"input": []})).param, "input");
}

#[test]
fn items_become_messages_calls_and_results() {
    let r = with(json!({"input": [
        {"role": "developer", "content": "Use tools."},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Weather "},
            {"type": "input_text", "text": "in Paris?"}]},
        {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
         "content": [{"type": "output_text", "text": "Checking.", "annotations": []}]},
        {"type": "function_call", "id": "fc_1", "call_id": "call_a", "name": "get_weather",
         "arguments": "{\"city\": \"Paris\"}", "status": "completed"},
        {"type": "function_call", "call_id": "call_b", "name": "get_weather", "arguments": ""},
        {"type": "reasoning", "id": "rs_1", "summary": []},
        {"type": "function_call_output", "call_id": "call_a", "output": "sunny"},
        {"type": "function_call_output", "call_id": "call_b",
         "output": [{"type": "input_text", "text": "rain"}]}]}))
    .unwrap();
    let m = &r.messages;
    assert_eq!(m.len(), 5);
    assert_eq!(m[0].role, Role::System);
    assert_eq!(m[1].content.as_deref(), Some("Weather in Paris?"));
    assert_eq!(m[2].role, Role::Assistant);
    assert_eq!(m[2].content.as_deref(), Some("Checking."));
    assert_eq!(
        m[2].tool_calls.len(),
        2,
        "calls join the assistant message before them"
    );
    assert_eq!(m[2].tool_calls[0].id, "call_a");
    assert_eq!(m[2].tool_calls[0].arguments, json!({"city": "Paris"}));
    assert_eq!(m[2].tool_calls[1].arguments, json!({}));
    assert_eq!(m[3].role, Role::Tool);
    assert_eq!(m[3].tool_call_id.as_deref(), Some("call_a"));
    assert_eq!(m[4].content.as_deref(), Some("rain"));
    // A call after a result (or first) opens its own assistant message.
    let r = with(json!({"input": [{"role": "user", "content": "x"},
        {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"}]}))
    .unwrap();
    assert_eq!(r.messages[1].role, Role::Assistant);
    assert_eq!(r.messages[1].content, None);
}

#[test]
fn images_files_and_hosted_items_are_refused() {
    let e = refused(json!({"input": [{"role": "user", "content": [
        {"type": "input_text", "text": "What is this?"},
        {"type": "input_image", "image_url": "data:image/png;base64,AAAA"}]}]}));
    assert_eq!(e.param, "input[0].content[1].type");
    assert!(e.message.contains("text only"), "{}", e.message);
    let e = refused(
        json!({"input": [{"type": "web_search_call", "id": "ws_1", "status": "completed"}]}),
    );
    assert_eq!(e.param, "input[0].type");
    let e = refused(json!({"input": [{"type": "item_reference", "id": "msg_1"}]}));
    assert_eq!(e.param, "input[0].type");
    let e = refused(json!({"input": [{"type": "function_call_output", "output": "x"}]}));
    assert_eq!(e.param, "input[0].call_id");
    let e = refused(json!({"input": [{"role": "tool", "content": "x"}]}));
    assert_eq!(e.param, "input[0].role");
}

#[test]
fn function_tools_are_strict_unless_they_say_otherwise() {
    let r = with(json!({"tools": weather()})).unwrap();
    assert_eq!(r.tools[0].name, "get_weather");
    assert_eq!(r.tools[0].strict, Some(true));
    let mut loose = weather();
    loose[0]["strict"] = json!(false);
    assert_eq!(
        with(json!({"tools": loose})).unwrap().tools[0].strict,
        Some(false)
    );
    let e = refused(json!({"tools": [{"type": "web_search"}]}));
    assert_eq!(e.param, "tools[0].type");
    let e = refused(json!({"tools": [{"type": "function", "name": "f", "parameters": "x"}]}));
    assert_eq!(e.param, "tools[0].parameters");
}

#[test]
fn tool_choice_and_parallel_calls() {
    let choice = |tc: Value| with(json!({"tools": weather(), "tool_choice": tc})).unwrap();
    assert_eq!(choice(json!("auto")).tool_choice, ToolChoice::Auto);
    assert_eq!(choice(json!("none")).tool_choice, ToolChoice::None);
    assert_eq!(choice(json!("required")).tool_choice, ToolChoice::Required);
    assert_eq!(
        choice(json!({"type": "function", "name": "get_weather"})).tool_choice,
        ToolChoice::Named("get_weather".into())
    );
    assert_eq!(
        refused(json!({"tool_choice": "required"})).param,
        "tool_choice"
    );
    let e = refused(json!({"tools": weather(), "tool_choice": {"type": "function", "name": "x"}}));
    assert_eq!(e.param, "tool_choice.name");
    let e = refused(json!({"tools": weather(), "tool_choice": {"type": "web_search_preview"}}));
    assert_eq!(e.param, "tool_choice.type");
    let r = with(json!({"tools": weather(), "parallel_tool_calls": false})).unwrap();
    assert!(r.single_call());
}

#[test]
fn text_format_sampling_and_limits() {
    let schema = json!({"type": "object", "properties": {"a": {"type": "integer"}}});
    let r = with(json!({"text": {"format": {"type": "json_schema", "name": "x", "schema": schema, "strict": true}},
        "max_output_tokens": 32, "temperature": 0.2, "top_p": 0.5}))
    .unwrap();
    assert_eq!(
        r.response_format,
        ResponseFormat::JsonSchema {
            schema: schema.clone(),
            strict: true
        }
    );
    assert_eq!(r.limits.max_tokens, Some(32));
    assert_eq!(r.sampling.temperature, Some(0.2));
    assert_eq!(r.sampling.top_p, 0.5);
    let r = with(json!({"text": {"format": {"type": "json_object"}}})).unwrap();
    assert_eq!(r.response_format, ResponseFormat::JsonObject);
    assert_eq!(
        refused(json!({"text": {"format": {"type": "xml"}}})).param,
        "text.format.type"
    );
    assert_eq!(
        refused(json!({"text": {"format": {"type": "json_schema", "name": "x"}}})).param,
        "text.format.schema"
    );
    assert_eq!(
        refused(json!({"max_output_tokens": 0})).param,
        "max_output_tokens"
    );
    assert_eq!(refused(json!({"temperature": 2.5})).param, "temperature");
}

#[test]
fn background_and_hosted_state_are_refused() {
    assert_eq!(refused(json!({"background": true})).param, "background");
    assert_eq!(
        refused(json!({"conversation": "conv_1"})).param,
        "conversation"
    );
    assert_eq!(refused(json!({"prompt": {"id": "pmpt_1"}})).param, "prompt");
    assert!(with(
        json!({"background": false, "include": ["reasoning.encrypted_content"],
        "reasoning": {"effort": "low"}, "truncation": "auto"})
    )
    .is_ok());
}

#[test]
fn output_items_read_back_as_input_items() {
    // What the server answers (message and function_call items) is what a stored
    // conversation holds and what clients send back.
    let output = [
        json!({"id": "msg_1", "type": "message", "status": "completed", "role": "assistant",
            "content": [{"type": "output_text", "text": "Checking.", "annotations": [], "logprobs": []}]}),
        json!({"id": "fc_1", "type": "function_call", "status": "completed", "call_id": "call_1",
            "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}),
    ];
    let mut items: Vec<Value> = vec![json!({"role": "user", "content": "Weather?"})];
    items.extend(output.iter().cloned());
    items.push(json!({"type": "function_call_output", "call_id": "call_1", "output": "sunny"}));
    for o in &output {
        let item: InputItem = serde_json::from_value(o.clone()).unwrap();
        assert_eq!(
            serde_json::from_value::<InputItem>(serde_json::to_value(&item).unwrap()).unwrap(),
            item
        );
    }
    let r = convert(json!({"input": items})).unwrap();
    assert_eq!(r.messages[1].tool_calls[0].name, "get_weather");
    assert_eq!(r.messages[2].tool_call_id.as_deref(), Some("call_1"));
}

#[test]
fn a_reasoning_item_is_the_reasoning_of_the_answer_after_it() {
    let reasoning = json!({"type": "reasoning", "id": "rs_1", "summary": [],
        "content": [{"type": "reasoning_text", "text": "Paris is a city."}]});
    let r = with(json!({"input": [
        {"role": "user", "content": "Weather in Paris?"},
        reasoning,
        {"type": "function_call", "call_id": "call_a", "name": "get_weather",
         "arguments": "{\"city\": \"Paris\"}"},
        {"type": "function_call_output", "call_id": "call_a", "output": "sunny"},
        reasoning,
        {"type": "message", "role": "assistant",
         "content": [{"type": "output_text", "text": "Sunny."}]},
        {"role": "user", "content": "Thanks"},
        // Reasoning no answer followed renders nothing.
        reasoning]}))
    .unwrap();
    let m = &r.messages;
    assert_eq!(m.len(), 5, "{m:?}");
    assert_eq!(m[1].role, Role::Assistant);
    assert_eq!(m[1].reasoning_content.as_deref(), Some("Paris is a city."));
    assert_eq!(m[1].tool_calls[0].id, "call_a");
    assert_eq!(m[3].content.as_deref(), Some("Sunny."));
    assert_eq!(m[3].reasoning_content.as_deref(), Some("Paris is a city."));
    assert_eq!(m[4].role, Role::User);
}

#[test]
fn reasoning_effort_and_budgets() {
    use crate::request::{Effort, ReasoningControl};
    let r = with(
        json!({"reasoning": {"effort": "none", "summary": "detailed"},
        "max_reasoning_tokens": 64, "max_reasoning_chars": 100}),
    )
    .unwrap();
    assert_eq!(r.reasoning, ReasoningControl::effort(Effort::None));
    assert_eq!(r.reasoning.thinking, Some(false));
    assert_eq!(r.limits.max_reasoning_tokens, Some(64));
    assert_eq!(r.limits.max_reasoning_chars, Some(100));
    let r = with(json!({"reasoning": {"effort": "high"}})).unwrap();
    assert_eq!(r.reasoning.effort, Some(Effort::High));
    assert_eq!(r.reasoning.thinking, Some(true));
    // A summary alone asks nothing of the reasoning.
    let r = with(json!({"reasoning": {"summary": "auto"}})).unwrap();
    assert_eq!(r.reasoning, ReasoningControl::default());
    assert_eq!(
        with(json!({})).unwrap().reasoning,
        ReasoningControl::default()
    );
    assert_eq!(
        refused(json!({"reasoning": {"effort": "max"}})).param,
        "reasoning.effort"
    );
    assert_eq!(
        refused(json!({"reasoning": {"summary": "short"}})).param,
        "reasoning.summary"
    );
}
