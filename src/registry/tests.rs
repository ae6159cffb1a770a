//! The registry's unit tests: parsing `models.toml`, detection, overrides.

use super::*;

#[test]
fn builtin_registry_parses_and_has_the_mission_families() {
    let r = Registry::from_toml(BUILTIN_MODELS_TOML, "models.toml").expect("valid");
    for name in [
        "llama-3.1",
        "llama-3.2",
        "mistral-7b-instruct-v0.3",
        "gorilla-openfunctions-v2",
        "glaive-function-calling-v1",
        "chatglm3-6b",
        "nexusraven-v2",
        "qwen2.5",
        "hermes-3",
        "qwen3",
        "qwen3-coder",
        "llama-3.3",
        "mistral-small-3.2",
        "devstral",
        "granite-3.3",
        "granite-4.0",
        "smollm3",
        "phi-4-mini",
        "hermes-2-pro",
        "functionary-v3.1",
        "functionary-v3.2",
        "gemma-3",
    ] {
        let f = r.require(name).expect(name);
        assert!(!f.parsers.is_empty(), "{name} has parsers");
    }
}

/// Each newer family is found from its model's own chat template alone (the fixture
/// copies), and from its repository name alone.
#[test]
fn detects_the_newer_families_from_template_or_name() {
    let r = Registry::builtin();
    let dir = crate::paths::fixtures_dir().join("templates");
    let cases = [
        ("Qwen-Qwen3-0.6B.jinja", "Qwen/Qwen3-0.6B", "qwen3"),
        (
            "Qwen3-Coder.jinja",
            "Qwen/Qwen3-Coder-30B-A3B-Instruct",
            "qwen3-coder",
        ),
        (
            "HuggingFaceTB-SmolLM3-3B.jinja",
            "HuggingFaceTB/SmolLM3-3B",
            "smollm3",
        ),
        (
            "ibm-granite-granite-3.3-2B-Instruct.jinja",
            "ibm-granite/granite-3.3-2b-instruct",
            "granite-3.3",
        ),
        (
            "ibm-granite-granite-4.0.jinja",
            "ibm-granite/granite-4.0-micro",
            "granite-4.0",
        ),
        (
            "Mistral-Small-3.2-24B-Instruct-2506.jinja",
            "mistralai/Mistral-Small-3.2-24B-Instruct-2506",
            "mistral-small-3.2",
        ),
        (
            "unsloth-mistral-Devstral-Small-2507.jinja",
            "mistralai/Devstral-Small-2507",
            "devstral",
        ),
        (
            "meetkai-functionary-medium-v3.1.jinja",
            "meetkai/functionary-medium-v3.1",
            "functionary-v3.1",
        ),
        (
            "meetkai-functionary-medium-v3.2.jinja",
            "meetkai/functionary-medium-v3.2",
            "functionary-v3.2",
        ),
    ];
    for (file, repo, family) in cases {
        let template = std::fs::read_to_string(dir.join(file)).expect(file);
        let by_template = ModelHints {
            template: Some(&template),
            ..Default::default()
        };
        assert_eq!(r.detect(&by_template).name, family, "{file}");
        let by_name = ModelHints {
            names: vec![repo.to_string()],
            ..Default::default()
        };
        assert_eq!(r.detect(&by_name).name, family, "{repo}");
    }
    for (repo, family) in [
        ("meta-llama/Llama-3.3-70B-Instruct", "llama-3.3"),
        ("NousResearch/Hermes-2-Pro-Llama-3-8B", "hermes-2-pro"),
        ("microsoft/Phi-4-mini-instruct", "phi-4-mini"),
        ("google/gemma-3-270m", "gemma-3"),
    ] {
        let by_name = ModelHints {
            names: vec![repo.to_string()],
            ..Default::default()
        };
        assert_eq!(r.detect(&by_name).name, family, "{repo}");
    }
    // Gemma 3's architecture alone names its family (no other uses it).
    let gemma = ModelHints {
        architectures: vec!["gemma3".into()],
        ..Default::default()
    };
    assert_eq!(r.detect(&gemma).name, "gemma-3");
}

#[test]
fn thinking_families_declare_their_reasoning_markers() {
    let r = Registry::builtin();
    for name in ["qwen3", "smollm3", "granite-3.3"] {
        let m = r.require(name).unwrap().reasoning.clone().expect(name);
        assert_eq!((m.open.as_str(), m.close.as_str()), ("<think>", "</think>"));
    }
    assert!(r.require("qwen2.5").unwrap().reasoning.is_none());
}

#[test]
fn bundled_templates_exist() {
    let r = Registry::builtin();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
    for f in r.families() {
        if let TemplateSource::Bundled(file) = f.template_source() {
            assert!(
                dir.join(&file).is_file(),
                "{} names missing template {file}",
                f.name
            );
        }
    }
}

#[test]
fn detects_families_from_hints() {
    let r = Registry::builtin();
    let qwen_tpl = "{%- if tools %}<tools>{{ tool }}</tools> <tool_call> <|im_start|>";
    let h = ModelHints {
        architectures: vec!["qwen2".into()],
        names: vec!["Qwen2.5 Coder 0.5B Instruct".into()],
        template: Some(qwen_tpl),
    };
    assert_eq!(r.detect(&h).name, "qwen2.5");
    let h = ModelHints {
        architectures: vec!["llama".into()],
        names: vec!["SmolLM2 135M Instruct".into()],
        template: Some("<|im_start|>"),
    };
    assert_eq!(r.detect(&h).name, "generic");
    let h = ModelHints {
        architectures: vec!["MistralForCausalLM".into()],
        names: vec![],
        template: Some("[AVAILABLE_TOOLS]"),
    };
    assert_eq!(r.detect(&h).name, "mistral-7b-instruct-v0.3");
    let h = ModelHints {
        architectures: vec![],
        names: vec!["/models/Meta-Llama-3.1-8B-Instruct".into()],
        template: None,
    };
    assert_eq!(r.detect(&h).name, "llama-3.1");
}

#[test]
fn unknown_family_lists_known_ones() {
    let err = Registry::builtin()
        .require("gpt-5")
        .unwrap_err()
        .to_string();
    assert!(err.contains("gpt-5") && err.contains("qwen2.5"), "{err}");
}

#[test]
fn malformed_registry_is_an_error_not_a_panic() {
    assert!(Registry::from_toml("[[family]]\nname = 3", "x").is_err());
    let dup = format!("{BUILTIN_MODELS_TOML}\n[[family]]\nname = \"generic\"\narchitecture = \"llama\"\nhf_repo = \"a/b\"\ntemplate = \"model\"\nparsers = []\ntool_role = \"tool\"\n");
    assert!(matches!(
        Registry::from_toml(&dup, "x"),
        Err(RegistryError::Duplicate(_))
    ));
}

/// A registry of one family built from `generic`'s entry with one line changed.
fn one_family(line: &str, value: &str) -> String {
    let mut out = String::from("[[family]]\nname = \"my-model\"\n");
    for l in [
        "architecture = \"llama\"",
        "hf_repo = \"a/b\"",
        "template = \"model\"",
        "parsers = [\"hermes\", \"json_fallback\"]",
        "tool_role = \"tool\"",
    ] {
        if l.starts_with(line) {
            out.push_str(&format!("{line} = {value}\n"));
        } else {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

#[test]
fn typed_names_parse() {
    let r = Registry::from_toml(&one_family("parsers", "[\"mistral\"]"), "x").expect("valid");
    let f = r.require("my-model").expect("family");
    assert_eq!(f.architecture, Arch::Llama);
    assert_eq!(f.parsers, vec![Format::Mistral]);
    assert_eq!(f.id_style(), IdStyle::Mistral9);
    let builtin = Registry::builtin();
    assert_eq!(
        builtin.require("qwen2.5").unwrap().architecture,
        Arch::Qwen2
    );
    assert_eq!(
        builtin
            .require("glaive-function-calling-v1")
            .unwrap()
            .architecture,
        Arch::Mpt
    );
}

#[test]
fn unknown_format_is_an_error_naming_family_and_value() {
    let text = one_family("parsers", "[\"hermes\", \"json_fallbak\"]");
    let err = Registry::from_toml(&text, "my.toml")
        .unwrap_err()
        .to_string();
    for part in [
        "my.toml",
        "my-model",
        "json_fallbak",
        "json_fallback",
        "line",
    ] {
        assert!(err.contains(part), "{part:?} missing from: {err}");
    }
}

#[test]
fn unknown_architecture_is_an_error_naming_family_and_value() {
    for bad in ["\"lama\"", "\"LlamaForCausalLM\"", "\"Llama\""] {
        let err = Registry::from_toml(&one_family("architecture", bad), "my.toml")
            .unwrap_err()
            .to_string();
        let value = bad.trim_matches('"');
        assert!(
            err.contains("my-model") && err.contains(value) && err.contains("architecture"),
            "{err}"
        );
    }
}

#[test]
fn a_family_needs_a_format() {
    let err = Registry::from_toml(&one_family("parsers", "[]"), "my.toml").unwrap_err();
    assert!(matches!(err, RegistryError::NoFormat { ref family, .. } if family == "my-model"));
}

#[test]
fn a_later_bad_entry_is_named() {
    let text = format!(
        "{BUILTIN_MODELS_TOML}\n{}",
        one_family("architecture", "\"qwen9\"")
    );
    let err = Registry::from_toml(&text, "x").unwrap_err().to_string();
    assert!(
        err.contains("(family \"my-model\")") && err.contains("qwen9"),
        "{err}"
    );
}
