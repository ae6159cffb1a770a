//! Domain chat request -> the input chat templates expect (transformers' conversation format).
//!
//! The request arrives complete (`crate::request`): roles mapped (`developer` is `system`,
//! legacy `function` results are `tool`), legacy `functions` turned into tools, content
//! parts joined, call arguments parsed, every call and every tool result with its id.
//! Rules applied here, for the template:
//! - Tools are written as `{"type": "function", "function": {...}}`; no tools is `None`.
//! - Missing content is `""`, also for an assistant tool-call message sent with `content:
//!   null` (as llama.cpp and vLLM normalise it): several templates (Qwen3, Granite 3.3,
//!   Devstral) read that content and fail on a null, and no supported template renders `""`
//!   differently from a missing key (checked by the golden generator).
//! - An assistant message's reasoning goes in `reasoning_content` (Qwen3 reads it) and in
//!   `thinking` (gpt-oss reads it), as transformers copies it.
//! - `tools_in_system`: templates that read the tools from the system message (Phi-4-mini:
//!   `message['tools']`, a JSON string between `<|tool|>` and `<|/tool|>`) get the function
//!   definitions there, as a JSON list (Python `json.dumps`, `ensure_ascii=False`), with the
//!   model card's "You are a helpful assistant with some tools." when the request has no
//!   system message.
//! - `text_arguments`: call arguments are given as JSON text (Python's `json.dumps` of the
//!   parsed value, `ensure_ascii=False`) to templates that concatenate them as strings
//!   (Functionary v3.2); every other template gets the parsed value.
//! - Keys a message does not have are left out (`'tool_calls' in message` must be false for
//!   plain messages).
//! - [`CallIdStyle::Alnum9`] (Mistral): ids that are not exactly 9 ASCII alphanumerics are
//!   replaced by 9 base-62 digits of their FNV-1a hash, identically in the call and its
//!   result, so the same history renders the same prompt in every turn.
//! - `tool_role`: role `tool` is renamed (only set when the template does not know `tool`).
//! - `split_parallel_calls`: an assistant message with several calls becomes one assistant
//!   message per call (the first keeps the text); when the results follow right after, in
//!   any order, each call is followed by its own result (call, result, call, result), the
//!   shape a model that calls one tool at a time was trained on; otherwise the calls stay
//!   consecutive.

use serde_json::{json, Map, Value as Json};

use super::env::to_value;
use super::pyjson::{dumps, DumpOptions};
use crate::request::{ChatRequest, Message, Role, Tool, ToolCall};

/// How tool-call ids must look in the prompt.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CallIdStyle {
    /// Ids go through unchanged.
    #[default]
    Keep,
    /// Exactly 9 ASCII alphanumerics (Mistral); other ids are mapped deterministically.
    Alnum9,
}

/// What a family's template needs from the normalization.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NormalizeOptions {
    /// Rename role `tool` to this name.
    pub tool_role: Option<String>,
    /// The id shape the template accepts.
    pub call_ids: CallIdStyle,
    /// Give each tool call its own assistant message.
    pub split_parallel_calls: bool,
    /// Call arguments as JSON text instead of the parsed value.
    pub text_arguments: bool,
    /// The tools go in the system message's `tools` key (Phi-4-mini).
    pub tools_in_system: bool,
}

/// The system message a tools-in-system template gets when the request has none (the
/// Phi-4-mini model card's example).
pub const TOOLS_SYSTEM_DEFAULT: &str = "You are a helpful assistant with some tools.";

/// Messages and tools in the shape chat templates read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TemplateInput {
    /// The conversation.
    pub messages: Vec<Json>,
    /// The tools, `None` when the request offers none.
    pub tools: Option<Vec<Json>>,
}

/// Turns a request into template input.
pub fn normalize_request(req: &ChatRequest, opts: &NormalizeOptions) -> TemplateInput {
    let tools = (!req.tools.is_empty()).then(|| req.tools.iter().map(tool_json).collect());
    let mut messages: Vec<Json> = req
        .messages
        .iter()
        .map(|m| message_json(m, opts.text_arguments))
        .collect();
    if opts.call_ids == CallIdStyle::Alnum9 {
        for m in &mut messages {
            remap_ids(m);
        }
    }
    if let Some(role) = &opts.tool_role {
        for m in &mut messages {
            if m["role"] == "tool" {
                m["role"] = Json::String(role.clone());
            }
        }
    }
    if opts.split_parallel_calls {
        messages = split_parallel_calls(messages);
    }
    if opts.tools_in_system && !req.tools.is_empty() {
        let functions: Vec<Json> = req
            .tools
            .iter()
            .map(|t| tool_json(t)["function"].clone())
            .collect();
        if messages.first().is_none_or(|m| m["role"] != "system") {
            messages.insert(
                0,
                json!({"role": "system", "content": TOOLS_SYSTEM_DEFAULT}),
            );
        }
        messages[0]["tools"] = Json::String(py_dumps(&Json::Array(functions)));
    }
    TemplateInput { messages, tools }
}

/// A tool as transformers' templates read it (keys in OpenAI's order, absent ones left out).
fn tool_json(t: &Tool) -> Json {
    let mut f = Map::new();
    f.insert("name".into(), Json::String(t.name.clone()));
    if let Some(d) = &t.description {
        f.insert("description".into(), Json::String(d.clone()));
    }
    if let Some(p) = &t.parameters {
        f.insert("parameters".into(), p.clone());
    }
    if let Some(s) = t.strict {
        f.insert("strict".into(), Json::Bool(s));
    }
    json!({"type": "function", "function": f})
}

fn call_json(c: &ToolCall, text_arguments: bool) -> Json {
    let arguments = if text_arguments {
        Json::String(py_dumps(&c.arguments))
    } else {
        c.arguments.clone()
    };
    json!({
        "id": c.id,
        "type": "function",
        "function": {"name": c.name, "arguments": arguments},
    })
}

/// Python's `json.dumps(value, ensure_ascii=False)`: `", "` and `": "` separators.
fn py_dumps(v: &Json) -> String {
    // Only a byte budget stops `dumps`, and this one has none.
    dumps(&to_value(v), &DumpOptions::python(false, None)).unwrap_or_else(|_| v.to_string())
}

fn message_json(m: &Message, text_arguments: bool) -> Json {
    let mut out = Map::new();
    let has_calls = !m.tool_calls.is_empty();
    out.insert("role".into(), Json::String(m.role.as_str().to_string()));
    let content = m.content.clone().unwrap_or_default();
    out.insert("content".into(), Json::String(content));
    if let Some(r) = &m.reasoning_content {
        out.insert("reasoning_content".into(), Json::String(r.clone()));
        out.insert("thinking".into(), Json::String(r.clone()));
    }
    if let Some(name) = &m.name {
        out.insert("name".into(), Json::String(name.clone()));
    }
    if has_calls {
        out.insert(
            "tool_calls".into(),
            Json::Array(
                m.tool_calls
                    .iter()
                    .map(|c| call_json(c, text_arguments))
                    .collect(),
            ),
        );
    }
    if m.role == Role::Tool {
        let id = m.tool_call_id.clone().unwrap_or_default();
        out.insert("tool_call_id".into(), Json::String(id));
    }
    Json::Object(out)
}

/// A 9-character alphanumeric id: `id` itself when it has that shape, else a stable hash.
pub fn alnum9_id(id: &str) -> String {
    if id.len() == 9 && id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return id.to_string();
    }
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (0..9)
        .map(|_| {
            let d = DIGITS[(h % 62) as usize] as char;
            h /= 62;
            d
        })
        .collect()
}

fn remap_ids(m: &mut Json) {
    if let Some(id) = m.get("tool_call_id").and_then(Json::as_str).map(alnum9_id) {
        m["tool_call_id"] = Json::String(id);
    }
    if let Some(calls) = m.get_mut("tool_calls").and_then(Json::as_array_mut) {
        for c in calls {
            if let Some(id) = c.get("id").and_then(Json::as_str).map(alnum9_id) {
                c["id"] = Json::String(id);
            }
        }
    }
}

fn split_parallel_calls(messages: Vec<Json>) -> Vec<Json> {
    let mut out = Vec::with_capacity(messages.len() + 4);
    let mut i = 0;
    while i < messages.len() {
        let m = &messages[i];
        let calls = m
            .get("tool_calls")
            .and_then(Json::as_array)
            .cloned()
            .unwrap_or_default();
        if calls.len() < 2 {
            out.push(m.clone());
            i += 1;
            continue;
        }
        let ids: Vec<&str> = calls
            .iter()
            .map(|c| c["id"].as_str().unwrap_or(""))
            .collect();
        let results = &messages[i + 1..(i + 1 + calls.len()).min(messages.len())];
        let mut ordered: Vec<&Json> = Vec::new();
        for id in &ids {
            if let Some(r) = results
                .iter()
                .find(|r| r.get("tool_call_id").and_then(Json::as_str) == Some(id))
            {
                ordered.push(r);
            }
        }
        let distinct = ids.iter().enumerate().all(|(k, id)| !ids[..k].contains(id));
        let interleave = distinct && results.len() == calls.len() && ordered.len() == calls.len();
        for (k, call) in calls.iter().enumerate() {
            let mut single = m.clone();
            single["tool_calls"] = Json::Array(vec![call.clone()]);
            if k > 0 {
                single["content"] = Json::Null;
            }
            out.push(single);
            if interleave {
                out.push(ordered[k].clone());
            }
        }
        i += 1;
        if interleave {
            i += calls.len();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(v: Json) -> ChatRequest {
        let wire: crate::openai::ChatCompletionRequest = serde_json::from_value(v).unwrap();
        ChatRequest::try_from(wire).unwrap()
    }

    #[test]
    fn ids_map_consistently_and_args_parse() {
        let r = req(json!({"messages": [
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_abc-123", "type": "function", "function": {"name": "f", "arguments": "{\"x\": 1}"}},
                {"id": "abcDEF123", "type": "function", "function": {"name": "g", "arguments": "not json"}}]},
            {"role": "tool", "tool_call_id": "abcDEF123", "content": "2"},
            {"role": "tool", "tool_call_id": "call_abc-123", "content": "1"}]}));
        let opts = NormalizeOptions {
            call_ids: CallIdStyle::Alnum9,
            split_parallel_calls: true,
            ..Default::default()
        };
        let out = normalize_request(&r, &opts);
        let m = &out.messages;
        assert_eq!(m[0]["content"], "ab");
        assert_eq!(m.len(), 5);
        let id = m[1]["tool_calls"][0]["id"].as_str().unwrap();
        assert_eq!(id.len(), 9);
        assert_eq!(
            m[1]["tool_calls"][0]["function"]["arguments"],
            json!({"x": 1})
        );
        assert_eq!(m[2]["tool_call_id"], id);
        assert_eq!(m[3]["tool_calls"][0]["function"]["arguments"], "not json");
        assert_eq!(m[4]["tool_call_id"], "abcDEF123");
        assert_eq!(alnum9_id("call_abc-123"), id);
    }

    #[test]
    fn tools_in_the_system_message_for_templates_that_read_them_there() {
        let r = req(
            json!({"tools": [{"type": "function", "function": {"name": "get_weather",
            "description": "Météo.", "parameters": {"type": "object", "properties": {}}}}],
            "messages": [{"role": "user", "content": "hi"}]}),
        );
        let opts = NormalizeOptions {
            tools_in_system: true,
            ..Default::default()
        };
        let out = normalize_request(&r, &opts);
        assert_eq!(out.messages[0]["role"], "system");
        assert_eq!(out.messages[0]["content"], TOOLS_SYSTEM_DEFAULT);
        // Python's json.dumps(functions, ensure_ascii=False).
        assert_eq!(
            out.messages[0]["tools"],
            r#"[{"name": "get_weather", "description": "Météo.", "parameters": {"type": "object", "properties": {}}}]"#
        );
        assert_eq!(out.messages[1]["content"], "hi");
        assert!(out.messages[1].get("tools").is_none());
    }

    #[test]
    fn legacy_functions_become_tools() {
        let r = req(
            json!({"functions": [{"name": "f", "parameters": {}}], "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "function_call": {"name": "f", "arguments": ""}},
            {"role": "function", "name": "f", "content": "ok"}]}),
        );
        let out = normalize_request(&r, &NormalizeOptions::default());
        assert_eq!(out.tools.unwrap()[0]["function"]["name"], "f");
        assert_eq!(
            out.messages[1]["tool_calls"][0]["function"]["arguments"],
            json!({})
        );
        assert_eq!(out.messages[2]["role"], "tool");
        assert_eq!(
            out.messages[2]["tool_call_id"],
            out.messages[1]["tool_calls"][0]["id"]
        );
    }
}
