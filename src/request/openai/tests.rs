//! The OpenAI edge's decisions, each against the API's documented meaning of the field.

use serde_json::{json, Value};

use crate::openai::{ChatCompletionRequest, CompletionRequest};
use crate::request::{
    ChatRequest, RequestError, ResponseFormat, Role, TextRequest, ToolCall, ToolChoice,
};

fn chat(extra: Value) -> Result<ChatRequest, RequestError> {
    let mut body = json!({"messages": [{"role": "user", "content": "hi"}]});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let wire: ChatCompletionRequest = serde_json::from_value(body).unwrap();
    ChatRequest::try_from(wire)
}

fn param(extra: Value) -> String {
    chat(extra.clone())
        .map(|_| panic!("accepted {extra}"))
        .unwrap_err()
        .param
}

fn function(name: &str) -> Value {
    json!({"name": name, "parameters": {"type": "object", "properties": {}}})
}

fn tool(name: &str) -> Value {
    json!({"type": "function", "function": function(name)})
}

#[test]
fn legacy_functions_are_the_tools_when_tools_are_absent_or_empty() {
    for tools in [None, Some(json!([]))] {
        let mut extra = json!({"functions": [function("f")]});
        if let Some(t) = tools {
            extra["tools"] = t;
        }
        let req = chat(extra.clone()).unwrap();
        assert!(req.legacy_function_call, "{extra}");
        assert_eq!(req.tools.len(), 1);
        assert_eq!(req.tools[0].name, "f");
        assert!(req.single_call(), "a legacy answer holds one call");
    }
    // With tools, `functions` are ignored and the answer is `tool_calls`.
    let req = chat(json!({"tools": [tool("g")], "functions": [function("f")]})).unwrap();
    assert!(!req.legacy_function_call);
    assert_eq!(req.tools[0].name, "g");
    assert!(!req.single_call());
}

#[test]
fn tool_choice_and_function_call_become_one_typed_choice() {
    let t = json!([tool("f")]);
    let cases = [
        (json!({"tools": t}), ToolChoice::Auto),
        (json!({"tools": t, "tool_choice": "none"}), ToolChoice::None),
        (json!({"tools": t, "tool_choice": "auto"}), ToolChoice::Auto),
        (
            json!({"tools": t, "tool_choice": "required"}),
            ToolChoice::Required,
        ),
        (
            json!({"tools": t, "tool_choice": {"type": "function", "function": {"name": "f"}}}),
            ToolChoice::Named("f".into()),
        ),
        (
            json!({"functions": [function("f")], "function_call": {"name": "f"}}),
            ToolChoice::Named("f".into()),
        ),
        (
            json!({"functions": [function("f")], "function_call": "none"}),
            ToolChoice::None,
        ),
        // `function_call` only speaks for legacy requests.
        (
            json!({"tools": t, "functions": [function("f")], "function_call": "none"}),
            ToolChoice::Auto,
        ),
    ];
    for (extra, want) in cases {
        assert_eq!(chat(extra.clone()).unwrap().tool_choice, want, "{extra}");
    }
    assert_eq!(
        param(json!({"tools": t, "tool_choice": "always"})),
        "tool_choice"
    );
    assert_eq!(param(json!({"tool_choice": "required"})), "tool_choice");
    assert_eq!(
        param(json!({"tools": t, "tool_choice": {"type": "function", "function": {"name": "g"}}})),
        "tool_choice"
    );
    assert_eq!(
        param(json!({"functions": [function("f")], "function_call": {"name": "g"}})),
        "function_call"
    );
    assert_eq!(
        param(json!({"functions": [function("f")], "function_call": 3})),
        "function_call"
    );
}

#[test]
fn response_format_is_typed_once() {
    let schema = json!({"type": "object", "properties": {"a": {"type": "integer"}}});
    let cases = [
        (json!({"type": "text"}), ResponseFormat::Text),
        (json!({"type": "json_object"}), ResponseFormat::JsonObject),
        (
            json!({"type": "json_schema", "json_schema": {"name": "x"}}),
            ResponseFormat::JsonObject,
        ),
        (
            json!({"type": "json_schema", "json_schema": {"name": "x", "schema": schema, "strict": true}}),
            ResponseFormat::JsonSchema {
                schema: schema.clone(),
                strict: true,
            },
        ),
    ];
    for (rf, want) in cases {
        let req = chat(json!({"response_format": rf})).unwrap();
        assert_eq!(req.response_format, want, "{rf}");
    }
    assert_eq!(
        param(json!({"response_format": {"type": "xml"}})),
        "response_format.type"
    );
    assert_eq!(
        param(json!({"response_format": {"type": "json_schema"}})),
        "response_format.json_schema"
    );
    assert_eq!(
        param(json!({"response_format": {"type": "json_schema", "json_schema": {"schema": [1]}}})),
        "response_format.json_schema.schema"
    );
}

#[test]
fn sampling_fields_are_checked_and_typed() {
    let req = chat(json!({"temperature": 0.5, "top_p": 0.9, "seed": 7,
        "logit_bias": {"42": -100, "7": 2.5}, "stop": ["", "END"], "n": 3,
        "max_tokens": 5, "max_completion_tokens": 9, "logprobs": true, "top_logprobs": 2,
        "parallel_tool_calls": false}))
    .unwrap();
    assert_eq!(req.sampling.temperature, Some(0.5));
    assert_eq!(req.sampling.top_p, 0.9);
    assert_eq!(req.sampling.logit_bias, vec![(42, -100.0), (7, 2.5)]);
    assert_eq!(req.sampling.seed_for(2), Some(9));
    assert_eq!(req.stop, vec!["END".to_string()], "empty stops are dropped");
    assert_eq!(req.limits.n, 3);
    assert_eq!(req.limits.max_tokens, Some(9), "max_completion_tokens wins");
    assert_eq!(req.limits.logprobs, Some(2));
    assert!(!req.limits.parallel_tool_calls);
    let plain = chat(json!({})).unwrap();
    assert_eq!(plain.sampling.temperature, None);
    assert_eq!(plain.limits.logprobs, None);
    assert_eq!(
        chat(json!({"logprobs": true})).unwrap().limits.logprobs,
        Some(0)
    );

    for (extra, p) in [
        (json!({"logit_bias": {"x": 1}}), "logit_bias"),
        (json!({"logit_bias": {"5": 101}}), "logit_bias"),
        (json!({"logit_bias": {"5": "high"}}), "logit_bias"),
        (json!({"top_p": 0}), "top_p"),
        (json!({"top_p": 1.5}), "top_p"),
        (json!({"presence_penalty": -3}), "presence_penalty"),
        (json!({"stop": ["a", "b", "c", "d", "e"]}), "stop"),
        (json!({"max_tokens": 0}), "max_tokens"),
        (json!({"max_completion_tokens": 0}), "max_completion_tokens"),
        (json!({"top_logprobs": 2}), "top_logprobs"),
        (json!({"n": 129}), "n"),
    ] {
        assert_eq!(param(extra.clone()), p, "{extra}");
    }
}

#[test]
fn history_is_completed_at_the_edge() {
    let req = chat(json!({"functions": [function("f")], "messages": [
        {"role": "developer", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": null, "tool_calls": [
            {"type": "function", "function": {"name": "f", "arguments": "{\"x\": 1}"}},
            {"id": "c2", "type": "function", "function": {"name": "f", "arguments": "not json"}}]},
        {"role": "tool", "tool_call_id": "c2", "content": "two"},
        {"role": "function", "name": "f", "content": "one"},
        {"role": "assistant", "function_call": {"name": "f", "arguments": ""}},
        {"role": "function", "name": "f", "content": "three"}]}))
    .unwrap();
    let m = &req.messages;
    assert_eq!(m[0].role, Role::System);
    assert_eq!(m[0].content.as_deref(), Some("ab"));
    assert_eq!(
        m[2].tool_calls,
        vec![
            ToolCall {
                id: "call_2_0".into(),
                name: "f".into(),
                arguments: json!({"x": 1}),
            },
            ToolCall {
                id: "c2".into(),
                name: "f".into(),
                arguments: json!("not json"),
            },
        ]
    );
    assert_eq!(m[2].content, None);
    assert_eq!(m[3].tool_call_id.as_deref(), Some("c2"));
    // A legacy result answers the oldest call not answered yet.
    assert_eq!(m[4].role, Role::Tool);
    assert_eq!(m[4].tool_call_id.as_deref(), Some("call_2_0"));
    assert_eq!(m[4].name.as_deref(), Some("f"));
    assert_eq!(m[5].tool_calls[0].id, "call_5_0");
    assert_eq!(m[5].tool_calls[0].arguments, json!({}));
    assert_eq!(m[6].tool_call_id.as_deref(), Some("call_5_0"));
}

#[test]
fn messages_are_checked() {
    for (messages, p) in [
        (json!([]), "messages"),
        (
            json!([{"role": "wizard", "content": "x"}]),
            "messages[0].role",
        ),
        (
            json!([{"role": "user", "content": [{"type": "image_url"}]}]),
            "messages[0].content[0].type",
        ),
        (
            json!([{"role": "tool", "content": "x"}]),
            "messages[0].tool_call_id",
        ),
        (
            json!([{"role": "function", "content": "x"}]),
            "messages[0].name",
        ),
        (json!([{"role": "system"}]), "messages[0].content"),
        (
            json!([{"role": "assistant", "tool_calls": [{"function": {"name": ""}}]}]),
            "messages[0].tool_calls[0].function.name",
        ),
    ] {
        assert_eq!(param(json!({"messages": messages})), p, "{messages}");
    }
    assert_eq!(
        param(json!({"tools": [{"type": "code", "function": function("f")}]})),
        "tools[0].type"
    );
    assert_eq!(
        param(json!({"tools": [tool("bad name")]})),
        "tools[0].function.name"
    );
    assert_eq!(
        param(json!({"functions": [{"name": "f", "parameters": []}]})),
        "functions[0].parameters"
    );
}

#[test]
fn completions_prompts_and_defaults() {
    let text = |body: Value| {
        let wire: CompletionRequest = serde_json::from_value(body).unwrap();
        TextRequest::try_from(wire)
    };
    let req = text(json!({"prompt": ["a", "b"], "n": 2, "echo": true})).unwrap();
    assert_eq!(req.prompts, vec!["a".to_string(), "b".to_string()]);
    assert_eq!(req.max_tokens, 16, "OpenAI's default for completions");
    assert!(req.echo);
    assert_eq!(
        text(json!({"prompt": "a", "max_tokens": 3}))
            .unwrap()
            .max_tokens,
        3
    );
    for (body, p) in [
        (json!({"prompt": [1, 2]}), "prompt"),
        (json!({"prompt": []}), "prompt"),
        (json!({"prompt": ["a", "b"], "n": 65}), "n"),
        (json!({"prompt": "a", "max_tokens": 0}), "max_tokens"),
        (json!({"prompt": "a", "temperature": 2.5}), "temperature"),
    ] {
        assert_eq!(text(body.clone()).unwrap_err().param, p, "{body}");
    }
}

#[test]
fn tools_are_capped_and_named_once() {
    // OpenAI documents at most 128 functions per request.
    let many: Vec<Value> = (0..129).map(|i| tool(&format!("f{i}"))).collect();
    assert_eq!(param(json!({"tools": many})), "tools");
    let enough: Vec<Value> = (0..128).map(|i| tool(&format!("f{i}"))).collect();
    assert_eq!(chat(json!({"tools": enough})).unwrap().tools.len(), 128);
    assert_eq!(
        param(json!({"tools": [tool("a"), tool("b"), tool("a")]})),
        "tools[2].function.name"
    );
    assert_eq!(
        param(json!({"functions": [function("a"), function("a")]})),
        "functions[1].name"
    );
    let many: Vec<Value> = (0..129).map(|i| function(&format!("f{i}"))).collect();
    assert_eq!(param(json!({"functions": many})), "functions");
}

#[test]
fn an_assistant_reasoning_is_kept_for_the_template() {
    // `reasoning_content` (as callm answers it) and `reasoning` (its other common name) both
    // reach the domain message; other roles carry none.
    for key in ["reasoning_content", "reasoning"] {
        let req = chat(json!({"messages": [
            {"role": "user", "content": "hi", key: "ignored"},
            {"role": "assistant", "content": "7.", key: "7 is prime."},
            {"role": "user", "content": "again"}]}))
        .unwrap();
        assert_eq!(req.messages[0].reasoning_content, None, "{key}");
        assert_eq!(
            req.messages[1].reasoning_content.as_deref(),
            Some("7 is prime."),
            "{key}"
        );
    }
}

#[test]
fn generation_prompt_and_continuing_the_final_message() {
    use crate::request::PromptEnd;
    let trailing = json!([{"role": "user", "content": "Pick A or B."},
        {"role": "assistant", "content": "The answer is (", "reasoning_content": "Think."}]);
    let r = chat(json!({"messages": trailing})).unwrap();
    assert_eq!(r.prompt_end, PromptEnd::GenerationPrompt, "vLLM's default");
    assert_eq!(r.messages[1].reasoning_content.as_deref(), Some("Think."));
    let r = chat(json!({"messages": trailing, "continue_final_message": true})).unwrap();
    assert_eq!(r.prompt_end, PromptEnd::ContinueFinal);
    let r = chat(json!({"add_generation_prompt": false})).unwrap();
    assert_eq!(r.prompt_end, PromptEnd::Conversation);
    let both = json!({"messages": trailing, "continue_final_message": true, "add_generation_prompt": true});
    assert_eq!(param(both), "continue_final_message");
    assert_eq!(
        param(json!({"continue_final_message": true})),
        "continue_final_message"
    );
    let forced = json!({"messages": trailing, "continue_final_message": true,
        "tools": [tool("f")], "tool_choice": "required"});
    assert_eq!(param(forced), "continue_final_message");
    // Reasoning is an assistant field.
    let r =
        chat(json!({"messages": [{"role": "user", "content": "x", "reasoning_content": "no"}]}))
            .unwrap();
    assert_eq!(r.messages[0].reasoning_content, None);
}

#[test]
fn reasoning_effort_is_typed_once() {
    use crate::request::{Effort, ReasoningControl};
    let r = chat(json!({"reasoning_effort": "minimal"})).unwrap();
    assert_eq!(r.reasoning, ReasoningControl::effort(Effort::Minimal));
    assert_eq!(r.reasoning.thinking, Some(true));
    assert_eq!(
        chat(json!({"reasoning_effort": "none"}))
            .unwrap()
            .reasoning
            .thinking,
        Some(false)
    );
    assert_eq!(
        chat(json!({})).unwrap().reasoning,
        ReasoningControl::default()
    );
    assert_eq!(
        param(json!({"reasoning_effort": "auto"})),
        "reasoning_effort"
    );
}
