//! Each fixture `tokenizer.json` reproduces the independent llama.cpp token-id vectors.

#[path = "tokenizer_support/mod.rs"]
mod support;

use callm::tokenizer::Tokenizer;

/// Encodes every vector string (no BOS) with the fixture tokenizer and compares all ids.
fn check(tokenizer: &str, vectors: &str) {
    let path = support::tokenizer_json(tokenizer);
    let tok = Tokenizer::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
    let cases = support::read_vectors(vectors);
    assert!(cases.len() >= 40, "{vectors}: only {} vectors", cases.len());
    let mut failures = Vec::new();
    for (i, (text, expected)) in cases.iter().enumerate() {
        let got = tok.encode(text, false).unwrap_or_else(|e| panic!("{e}"));
        if &got != expected {
            failures.push(format!(
                "  #{i} {text:?}\n    expected {expected:?}\n    got      {got:?}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{tokenizer}: {} of {} vectors of ggml-vocab-{vectors} differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn llama3_matches_llama_bpe_vectors() {
    check("llama3", "llama-bpe");
}

#[test]
fn qwen2_matches_vectors() {
    check("qwen2", "qwen2");
}

#[test]
fn deepseek_llm_matches_vectors() {
    check("deepseek-llm", "deepseek-llm");
}

#[test]
fn deepseek_coder_matches_vectors() {
    check("deepseek-coder", "deepseek-coder");
}

#[test]
fn llama2_spm_matches_llama_spm_vectors() {
    check("llama2-spm", "llama-spm");
}

#[test]
fn gpt_neox_matches_mpt_vectors() {
    check("gpt-neox", "mpt");
}

#[test]
fn fixture_special_tokens_are_single_ids() {
    let llama3 =
        Tokenizer::from_file(support::tokenizer_json("llama3")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(llama3.token_to_id("<|begin_of_text|>"), Some(128000));
    assert_eq!(llama3.bos_token_id(), Some(128000));
    assert!(llama3.add_bos_token());
    let ids = llama3
        .encode("<|python_tag|>x<|eot_id|>", true)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ids.first(), Some(&128000));
    assert_eq!(ids[1], 128010);
    assert_eq!(ids.last(), Some(&128009));
    assert!(llama3.is_special(128009));
    assert_eq!(llama3.vocab_size(), 128256);

    let mistral = Tokenizer::from_file(support::tokenizer_json("mistral-v0.3"))
        .unwrap_or_else(|e| panic!("{e}"));
    for (s, id) in [
        ("[INST]", 3),
        ("[/INST]", 4),
        ("[TOOL_CALLS]", 5),
        ("[AVAILABLE_TOOLS]", 6),
    ] {
        assert_eq!(mistral.token_to_id(s), Some(id), "{s}");
    }
    assert_eq!(
        mistral.eos_token_id(),
        Some(2),
        "eos from tokenizer_config.json"
    );
    assert_eq!(mistral.bos_token_id(), Some(1));
    let ids = mistral
        .encode("[TOOL_CALLS] [", false)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ids[0], 5);
}
