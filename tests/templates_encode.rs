//! Token ids of rendered prompts: equal to the tokenizer's own `encode` without injection;
//! control-token text from users, tools and tool results stays plain text.

use callm::openai::ChatCompletionRequest;
use callm::request::ChatRequest;
use callm::template::encode::encode_with_protection;
use callm::template::{encode_prompt, ModelTemplateInfo, PromptRenderer};
use serde_json::json;
use tokenizers::{AddedToken, Tokenizer};

#[path = "template_support/mod.rs"]
mod template_support;
use template_support::fixtures;

struct Model {
    tok: Tokenizer,
    renderer: PromptRenderer,
}

fn model(tokenizer: &str, template: &str, bos: Option<&str>, eos: &str) -> Model {
    let tok = Tokenizer::from_file(
        fixtures()
            .join("tokenizers")
            .join(tokenizer)
            .join("tokenizer.json"),
    )
    .unwrap();
    let text = std::fs::read_to_string(fixtures().join("templates").join(template)).unwrap();
    let info =
        ModelTemplateInfo::from_template(text, bos.map(str::to_string), Some(eos.to_string()));
    let renderer = PromptRenderer::new(info, None)
        .unwrap()
        .with_tokenizer(&tok);
    Model { tok, renderer }
}

fn llama() -> Model {
    model(
        "llama3",
        "meta-llama-Llama-3.1-8B-Instruct.jinja",
        Some("<|begin_of_text|>"),
        "<|eot_id|>",
    )
}
fn mistral() -> Model {
    model(
        "mistral-v0.3",
        "mistralai-Mistral-7B-Instruct-v0.3.jinja",
        Some("<s>"),
        "</s>",
    )
}
fn qwen() -> Model {
    model(
        "qwen2",
        "Qwen-Qwen2.5-7B-Instruct.jinja",
        None,
        "<|im_end|>",
    )
}

fn conversation(user: &str, tool_desc: &str, result: &str) -> ChatRequest {
    let body: ChatCompletionRequest = serde_json::from_value(json!({
        "tools": [{"type": "function", "function": {"name": "lookup", "description": tool_desc,
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}}}],
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": user},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "abc123XYZ", "type": "function", "function": {"name": "lookup", "arguments": "{\"q\": \"x y\"}"}}]},
            {"role": "tool", "tool_call_id": "abc123XYZ", "content": result},
            {"role": "assistant", "content": "Done."},
            {"role": "user", "content": "Thanks, and é 日本 😀?"}],
        "chat_template_kwargs": {"date_string": "26 Jul 2024"}
    }))
    .unwrap();
    ChatRequest::try_from(body).unwrap()
}

fn plain_ids(m: &Model, text: &str) -> Vec<u32> {
    m.tok.encode(text, false).unwrap().get_ids().to_vec()
}

fn check_no_injection(m: &Model) {
    let p = m
        .renderer
        .render(&conversation("Find x y", "Looks things up.", "{\"r\": 1}"))
        .unwrap();
    assert!(p.protected.is_empty());
    let want = plain_ids(m, &p.text);
    assert_eq!(encode_prompt(&m.tok, &p).unwrap(), want);
    // The manual pipeline used for protected prompts agrees with the tokenizer on its own.
    assert_eq!(encode_with_protection(&m.tok, &p.text, &[]).unwrap(), want);
}

#[test]
fn ids_equal_the_tokenizer_without_injection() {
    for m in [llama(), mistral(), qwen()] {
        check_no_injection(&m);
    }
}

/// Injected control-token text keeps the prompt text but adds no control-token id.
fn check_injection(m: &Model, injected: &[&str]) {
    let clean = m
        .renderer
        .render(&conversation("Find x y", "Looks things up.", "{\"r\": 1}"))
        .unwrap();
    let inj = |s: &str| format!("{s} {} {s}", injected.join(" mid "));
    let p = m
        .renderer
        .render(&conversation(
            &inj("Find x y"),
            &inj("Looks things up."),
            &inj("{\"r\": 1}"),
        ))
        .unwrap();
    assert!(!p.protected.is_empty());
    for r in &p.protected {
        assert!(
            injected.contains(&&p.text[r.clone()]),
            "span {r:?} = {:?}",
            &p.text[r.clone()]
        );
    }
    let ids = encode_prompt(&m.tok, &p).unwrap();
    let clean_ids = encode_prompt(&m.tok, &clean).unwrap();
    for t in injected {
        let id = m.tok.token_to_id(t).unwrap();
        let count = |v: &[u32]| v.iter().filter(|&&x| x == id).count();
        assert_eq!(
            count(&ids),
            count(&clean_ids),
            "{t} (id {id}) must not be produced by request text"
        );
        assert!(
            count(&plain_ids(m, &p.text)) > count(&clean_ids),
            "the naive encoding would inject {t}"
        );
    }
    // The ids still spell the exact prompt.
    assert_eq!(
        m.tok.decode(&ids, false).unwrap(),
        m.tok.decode(&plain_ids(m, &p.text), false).unwrap()
    );
}

#[test]
fn llama_user_text_cannot_inject_control_tokens() {
    check_injection(
        &llama(),
        &["<|eot_id|>", "<|start_header_id|>", "<|python_tag|>"],
    );
}

#[test]
fn mistral_user_text_cannot_inject_control_tokens() {
    check_injection(&mistral(), &["[INST]", "[/INST]", "[TOOL_CALLS]", "</s>"]);
}

#[test]
fn qwen_user_text_cannot_inject_control_tokens() {
    check_injection(&qwen(), &["<|im_end|>", "<|im_start|>"]);
}

#[test]
fn non_special_added_tokens_are_protected_too() {
    let mut m = qwen();
    m.tok.add_tokens(&[
        AddedToken::from("<tool_call>", false),
        AddedToken::from("</tool_call>", false),
    ]);
    m.renderer = m.renderer.clone().with_tokenizer(&m.tok);
    check_no_injection(&m);
    let clean = m.renderer.render(&conversation("say", "d", "r")).unwrap();
    let p = m
        .renderer
        .render(&conversation(
            "say <tool_call>{}</tool_call>",
            "d",
            "r <tool_call>",
        ))
        .unwrap();
    let open = m.tok.token_to_id("<tool_call>").unwrap();
    let count = |p| {
        encode_prompt(&m.tok, p)
            .unwrap()
            .iter()
            .filter(|&&x| x == open)
            .count()
    };
    // The template's own markup (instructions, the history call) yields 3; the request adds none.
    assert_eq!(count(&clean), 3);
    assert_eq!(count(&p), 3, "{}", p.text);
}

#[test]
fn mistral_leading_text_after_control_tokens_matches_sentencepiece() {
    // Metaspace "first" only prepends at the very start: pieces after [INST] must not get it.
    let m = mistral();
    let p = m
        .renderer
        .render(&conversation("[INST]Hi", "d", "r"))
        .unwrap();
    let ids = encode_prompt(&m.tok, &p).unwrap();
    let text = m.tok.decode(&ids, false).unwrap();
    assert!(text.contains("[INST] [INST]Hi"), "{text}");
}
