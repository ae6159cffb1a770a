//! The model-family registry (`models.toml`): architecture, template, tool-call formats,
//! stops, roles.
//!
//! The registry is compiled into the binary; `CALLM_MODELS_TOML` may point at another
//! file to extend or override it without rebuilding. Architectures and formats are typed
//! ([`Arch`], [`Format`]): a name callm does not know is an error naming the family when the
//! registry is read, before any model loads.

use serde::{Deserialize, Deserializer};
use std::path::Path;

use crate::model::config::Arch;
use crate::parsers::{id_style_of, Format, IdStyle, Reasoning};

/// The registry shipped with callm.
pub const BUILTIN_MODELS_TOML: &str = include_str!("../../models.toml");

/// Errors reading the registry or looking a family up.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The TOML text is malformed, misses a field or names an unknown architecture or format.
    #[error("invalid model registry {origin}{}: {error}", in_family(family))]
    Parse {
        /// Where the text came from.
        origin: String,
        /// The name of the family entry at fault, when one is.
        family: Option<String>,
        /// The TOML error (with the line; part of this error's message, not a separate cause).
        error: Box<toml::de::Error>,
    },
    /// A family lists no tool-call format.
    #[error("invalid model registry {origin}: family \"{family}\" lists no tool-call format in `parsers`")]
    NoFormat {
        /// Where the text came from.
        origin: String,
        /// The family.
        family: String,
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

/// ` (family "NAME")` for an error message, or nothing.
fn in_family(family: &Option<String>) -> String {
    family
        .as_ref()
        .map(|f| format!(" (family \"{f}\")"))
        .unwrap_or_default()
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
    /// Decoder architecture, by its registry name (`llama`, `mistral`, `qwen2`, ...).
    #[serde(deserialize_with = "arch_by_name")]
    pub architecture: Arch,
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
    /// Tool-call output formats, tried in order; the first is the family's own (its grammar
    /// and forced call openings).
    pub parsers: Vec<Format>,
    /// Stop strings besides the model's eos ids.
    #[serde(default)]
    pub stop: Vec<String>,
    /// Role name tool results take in the prompt.
    pub tool_role: String,
    /// The reasoning block of thinking models (`<think>`/`</think>`): split off the answer
    /// as its reasoning, and allowed first by the grammars.
    #[serde(default)]
    pub reasoning: Option<Reasoning>,
    /// Special tokens the family's reference tokenizer appends after the vocabulary of its
    /// SentencePiece `tokenizer.model`, in id order (used when there is no tokenizer.json).
    #[serde(default)]
    pub spm_special_tokens: Vec<String>,
    /// Detection hints.
    #[serde(default)]
    pub detect: Detect,
}

impl Family {
    /// The family's own tool-call format (the first it lists).
    pub fn format(&self) -> Option<Format> {
        self.parsers.first().copied()
    }

    /// The shape of the call ids this family's formats need.
    pub fn id_style(&self) -> IdStyle {
        id_style_of(&self.parsers)
    }

    /// Where this family's chat template comes from.
    pub fn template_source(&self) -> TemplateSource {
        match self.template.strip_prefix("file:") {
            Some(file) => TemplateSource::Bundled(file.to_string()),
            None => TemplateSource::Model,
        }
    }
}

/// An architecture by its registry name: exactly the name [`Arch::name`] gives it.
fn arch_by_name<'de, D: Deserializer<'de>>(d: D) -> Result<Arch, D::Error> {
    let name = String::deserialize(d)?;
    Arch::from_name(&name)
        .filter(|a| a.name() == name)
        .ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown architecture \"{name}\": not a decoder callm implements \
                 (the registry names them in lower case, e.g. \"llama\", \"qwen2\")"
            ))
        })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistryFile {
    family: Vec<Family>,
}

/// The name (or, nameless, the position) of the first `[[family]]` entry of `text` that
/// does not deserialize on its own.
fn failing_family(text: &str) -> Option<String> {
    let table: toml::Table = toml::from_str(text).ok()?;
    let entries = table.get("family")?.as_array()?;
    entries.iter().enumerate().find_map(|(i, entry)| {
        let bad = entry.clone().try_into::<Family>().is_err();
        bad.then(|| match entry.get("name").and_then(|n| n.as_str()) {
            Some(name) => name.to_string(),
            None => format!("#{}", i + 1),
        })
    })
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
        let file: RegistryFile = toml::from_str(text).map_err(|error| RegistryError::Parse {
            origin: origin.to_string(),
            family: failing_family(text),
            error: Box::new(error),
        })?;
        let mut seen = std::collections::HashSet::new();
        for f in &file.family {
            if !seen.insert(f.name.clone()) {
                return Err(RegistryError::Duplicate(f.name.clone()));
            }
        }
        if let Some(f) = file.family.iter().find(|f| f.parsers.is_empty()) {
            return Err(RegistryError::NoFormat {
                origin: origin.to_string(),
                family: f.name.clone(),
            });
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
mod tests;
