//! The model-family registry (`models.toml`): architecture, template, parsers, stops, roles.
//!
//! The registry is compiled into the binary; `CALLM_MODELS_TOML` may point at another
//! file to extend or override it without rebuilding.

use serde::Deserialize;
use std::path::Path;

/// The registry shipped with callm.
pub const BUILTIN_MODELS_TOML: &str = include_str!("../models.toml");

/// Errors reading the registry or looking a family up.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The TOML text is malformed or misses a field.
    #[error("invalid model registry {origin}: {source}")]
    Parse {
        /// Where the text came from.
        origin: String,
        /// The TOML error.
        #[source]
        source: toml::de::Error,
    },
    /// The registry file could not be read.
    #[error("cannot read model registry {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// No family of that name.
    #[error("unknown model family '{name}'; known families: {known}")]
    UnknownFamily {
        /// The requested name.
        name: String,
        /// Comma-separated list of known names.
        known: String,
    },
    /// Two entries share a name.
    #[error("model registry names family '{0}' twice")]
    Duplicate(String),
}

/// Where a family's chat template comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateSource {
    /// The model's own template (tokenizer_config.json, chat_template.jinja, GGUF metadata).
    Model,
    /// A template bundled in `templates/`, by file name.
    Bundled(String),
}

/// How to recognise a family when the user names none.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Detect {
    /// `config.json` architectures / GGUF `general.architecture` values.
    #[serde(default)]
    pub architectures: Vec<String>,
    /// Lower-case substrings of the model's name or path.
    #[serde(default)]
    pub name_patterns: Vec<String>,
    /// Substrings of the chat template.
    #[serde(default)]
    pub template_markers: Vec<String>,
}

/// One model family.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Family {
    /// Registry name.
    pub name: String,
    /// Decoder architecture: llama, mistral, qwen2, mpt, chatglm.
    pub architecture: String,
    /// Default Hugging Face repo with safetensors weights.
    pub hf_repo: String,
    /// Default Hugging Face repo holding a GGUF file.
    #[serde(default)]
    pub gguf_repo: Option<String>,
    /// The GGUF file inside `gguf_repo`.
    #[serde(default)]
    pub gguf_file: Option<String>,
    /// `"model"` or `"file:NAME.jinja"`.
    pub template: String,
    /// Output parsers, tried in order.
    pub parsers: Vec<String>,
    /// Stop strings besides the model's eos ids.
    #[serde(default)]
    pub stop: Vec<String>,
    /// Role name tool results take in the prompt.
    pub tool_role: String,
    /// Text that opens a tool call (forced for `tool_choice: "required"`).
    #[serde(default)]
    pub call_prefix: Option<String>,
    /// Text that opens a call of `{name}` (forced for a named `tool_choice`).
    #[serde(default)]
    pub named_call_prefix: Option<String>,
    /// Special tokens the family's reference tokenizer appends after the vocabulary of its
    /// SentencePiece `tokenizer.model`, in id order (used when there is no tokenizer.json).
    #[serde(default)]
    pub spm_special_tokens: Vec<String>,
    /// Detection hints.
    #[serde(default)]
    pub detect: Detect,
}

impl Family {
    /// Where this family's chat template comes from.
    pub fn template_source(&self) -> TemplateSource {
        match self.template.strip_prefix("file:") {
            Some(file) => TemplateSource::Bundled(file.to_string()),
            None => TemplateSource::Model,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistryFile {
    family: Vec<Family>,
}

/// What is known about a model when guessing its family.
#[derive(Debug, Clone, Default)]
pub struct ModelHints<'a> {
    /// Architecture names (`config.json` architectures and model_type, GGUF general.architecture).
    pub architectures: Vec<String>,
    /// Names: repo id, directory or file name, GGUF general.name / basename.
    pub names: Vec<String>,
    /// The chat template text, when the model has one.
    pub template: Option<&'a str>,
}

/// The set of known model families.
#[derive(Debug, Clone)]
pub struct Registry {
    families: Vec<Family>,
}

impl Registry {
    /// Parses a registry from TOML text; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, RegistryError> {
        let file: RegistryFile = toml::from_str(text).map_err(|source| RegistryError::Parse {
            origin: origin.to_string(),
            source,
        })?;
        let mut seen = std::collections::HashSet::new();
        for f in &file.family {
            if !seen.insert(f.name.clone()) {
                return Err(RegistryError::Duplicate(f.name.clone()));
            }
        }
        Ok(Registry {
            families: file.family,
        })
    }

    /// The registry compiled into callm.
    pub fn builtin() -> Self {
        // The embedded file is validated by the unit tests below; a failure here is a build bug.
        Self::from_toml(BUILTIN_MODELS_TOML, "models.toml (built in)")
            .unwrap_or_else(|e| panic!("built-in models.toml is invalid: {e}"))
    }

    /// The built-in registry, or the file named by `CALLM_MODELS_TOML` when set.
    pub fn load() -> Result<Self, RegistryError> {
        match std::env::var_os("CALLM_MODELS_TOML") {
            Some(path) => Self::from_file(Path::new(&path)),
            None => Ok(Self::builtin()),
        }
    }

    /// Reads a registry file.
    pub fn from_file(path: &Path) -> Result<Self, RegistryError> {
        let text = std::fs::read_to_string(path).map_err(|source| RegistryError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// All families, in file order.
    pub fn families(&self) -> &[Family] {
        &self.families
    }

    /// The family called `name`, if any.
    pub fn get(&self, name: &str) -> Option<&Family> {
        self.families.iter().find(|f| f.name == name)
    }

    /// The family called `name`, or an error listing the known ones.
    pub fn require(&self, name: &str) -> Result<&Family, RegistryError> {
        self.get(name).ok_or_else(|| RegistryError::UnknownFamily {
            name: name.to_string(),
            known: self
                .families
                .iter()
                .map(|f| f.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    /// Guesses the family from what is known about the model; falls back to `generic`.
    ///
    /// A name pattern is the strongest hint, then template markers, then the architecture.
    pub fn detect(&self, hints: &ModelHints<'_>) -> &Family {
        let names: Vec<String> = hints.names.iter().map(|n| n.to_lowercase()).collect();
        let arch_match = |f: &Family| {
            f.detect.architectures.iter().any(|a| {
                hints
                    .architectures
                    .iter()
                    .any(|h| h.eq_ignore_ascii_case(a))
            })
        };
        // An architecture only one family uses (chatglm, mpt) identifies that family when
        // the model brings no chat template of its own to go by.
        let arch_families = self.families.iter().filter(|f| arch_match(f)).count();
        let unique_arch = arch_families == 1 && hints.template.is_none();
        let mut best: Option<(u32, &Family)> = None;
        for f in &self.families {
            let mut score = 0;
            if f.detect
                .name_patterns
                .iter()
                .any(|p| names.iter().any(|n| n.contains(p.as_str())))
            {
                score += 100;
            }
            if let Some(t) = hints.template {
                let hits = f
                    .detect
                    .template_markers
                    .iter()
                    .filter(|m| t.contains(m.as_str()))
                    .count();
                score += 10 * hits as u32;
            }
            if arch_match(f) {
                score += if unique_arch { 2 } else { 1 };
            }
            // Architecture alone is not enough: many unrelated models share "llama".
            if score > 1 && best.is_none_or(|(s, _)| score > s) {
                best = Some((score, f));
            }
        }
        match best {
            Some((_, f)) => f,
            None => self.get("generic").unwrap_or(&self.families[0]),
        }
    }
}

#[cfg(test)]
mod tests {
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
        ] {
            let f = r.require(name).expect(name);
            assert!(!f.parsers.is_empty(), "{name} has parsers");
        }
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
}
