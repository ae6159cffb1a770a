//! Where chat templates come from: tokenizer_config.json, chat_template.jinja/json, GGUF
//! metadata, or the templates bundled with callm.

use serde_json::Value as Json;
use std::path::Path;

use super::error::TemplateError;
use crate::registry::{Family, TemplateSource};

/// The templates bundled in `templates/`, by file name.
pub const BUNDLED_TEMPLATES: &[(&str, &str)] = &[
    (
        "gorilla-openfunctions-v2.jinja",
        include_str!("../../templates/gorilla-openfunctions-v2.jinja"),
    ),
    (
        "glaive-function-calling-v1.jinja",
        include_str!("../../templates/glaive-function-calling-v1.jinja"),
    ),
    (
        "nexusraven-v2.jinja",
        include_str!("../../templates/nexusraven-v2.jinja"),
    ),
    (
        "chatglm3-6b.jinja",
        include_str!("../../templates/chatglm3-6b.jinja"),
    ),
];

/// The text of a bundled template, by file name.
pub fn bundled_template(file: &str) -> Option<&'static str> {
    BUNDLED_TEMPLATES
        .iter()
        .find(|(n, _)| *n == file)
        .map(|(_, t)| *t)
}

/// A model's chat template(s) and the special-token strings templates refer to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelTemplateInfo {
    /// Named templates; a single unnamed template is called `default`.
    pub templates: Vec<(String, String)>,
    /// The `bos_token` string, if the model has one.
    pub bos_token: Option<String>,
    /// The `eos_token` string, if the model has one.
    pub eos_token: Option<String>,
}

impl ModelTemplateInfo {
    /// One template with the given special tokens.
    pub fn from_template(
        source: impl Into<String>,
        bos_token: Option<String>,
        eos_token: Option<String>,
    ) -> Self {
        ModelTemplateInfo {
            templates: vec![("default".to_string(), source.into())],
            bos_token,
            eos_token,
        }
    }

    /// A template from GGUF metadata (`tokenizer.chat_template` and the bos/eos token strings).
    pub fn from_gguf_metadata(
        chat_template: &str,
        bos_token: Option<String>,
        eos_token: Option<String>,
    ) -> Self {
        Self::from_template(chat_template, bos_token, eos_token)
    }

    /// Adds or replaces a named template (e.g. GGUF `tokenizer.chat_template.tool_use`).
    pub fn with_named(mut self, name: &str, source: impl Into<String>) -> Self {
        self.templates.retain(|(n, _)| n != name);
        self.templates.push((name.to_string(), source.into()));
        self
    }

    /// Reads the template and special tokens from `tokenizer_config.json` text.
    pub fn from_tokenizer_config(text: &str) -> Result<Self, TemplateError> {
        let cfg: Json =
            serde_json::from_str(text).map_err(|e| config_err("tokenizer_config.json", e))?;
        let mut info = ModelTemplateInfo {
            templates: Vec::new(),
            bos_token: token_string(cfg.get("bos_token")),
            eos_token: token_string(cfg.get("eos_token")),
        };
        if let Some(t) = cfg.get("chat_template") {
            info.templates = parse_chat_template_field(t)?;
        }
        Ok(info)
    }

    /// Reads a model directory: `tokenizer_config.json`, then `chat_template.json` and
    /// `chat_template.jinja`, each overriding the template(s) found before.
    pub fn from_model_dir(dir: &Path) -> Result<Self, TemplateError> {
        let info = Self::read_model_dir(dir)?;
        if info.templates.is_empty() {
            return Err(TemplateError::Missing(format!(
                "{} has no chat template",
                dir.display()
            )));
        }
        Ok(info)
    }

    /// Like [`Self::from_model_dir`], but a directory without any template is not an error.
    pub fn read_model_dir(dir: &Path) -> Result<Self, TemplateError> {
        let mut info = match read_opt(&dir.join("tokenizer_config.json"))? {
            Some(text) => Self::from_tokenizer_config(&text)?,
            None => ModelTemplateInfo::default(),
        };
        if let Some(text) = read_opt(&dir.join("chat_template.json"))? {
            let v: Json =
                serde_json::from_str(&text).map_err(|e| config_err("chat_template.json", e))?;
            if let Some(t) = v.get("chat_template") {
                info.templates = parse_chat_template_field(t)?;
            }
        }
        if let Some(text) = read_opt(&dir.join("chat_template.jinja"))? {
            info.templates = vec![("default".to_string(), text)];
        }
        Ok(info)
    }

    /// A bundled template with the given special tokens.
    pub fn bundled(
        file: &str,
        bos_token: Option<String>,
        eos_token: Option<String>,
    ) -> Result<Self, TemplateError> {
        let text = bundled_template(file)
            .ok_or_else(|| TemplateError::Missing(format!("no bundled template named {file}")))?;
        Ok(Self::from_template(text, bos_token, eos_token))
    }

    /// The template for a family: its bundled file, or else the model's own (`model`).
    ///
    /// For bundled families the model's bos/eos strings are kept.
    pub fn for_family(
        family: &Family,
        model: Option<ModelTemplateInfo>,
    ) -> Result<Self, TemplateError> {
        match family.template_source() {
            TemplateSource::Bundled(file) => {
                let (bos, eos) = model
                    .map(|m| (m.bos_token, m.eos_token))
                    .unwrap_or_default();
                Self::bundled(&file, bos, eos)
            }
            TemplateSource::Model => match model {
                Some(m) if !m.templates.is_empty() => Ok(m),
                _ => Err(TemplateError::Missing(format!(
                    "family {} uses the model's own chat template, and the model has none",
                    family.name
                ))),
            },
        }
    }

    /// The template transformers would pick: `tool_use` when tools are given and it exists,
    /// else `default`, else the only one.
    pub fn select(&self, has_tools: bool) -> Result<&str, TemplateError> {
        let find = |name: &str| {
            self.templates
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, t)| t.as_str())
        };
        if has_tools {
            if let Some(t) = find("tool_use") {
                return Ok(t);
            }
        }
        if let Some(t) = find("default") {
            return Ok(t);
        }
        match self.templates.as_slice() {
            [(_, t)] => Ok(t),
            [] => Err(TemplateError::Missing(
                "the model has no chat template".to_string(),
            )),
            _ => Err(TemplateError::Missing(
                "the model has several chat templates and none is named 'default'".to_string(),
            )),
        }
    }
}

fn config_err(what: &str, e: impl std::fmt::Display) -> TemplateError {
    TemplateError::Config {
        what: what.to_string(),
        message: e.to_string(),
    }
}

fn read_opt(path: &Path) -> Result<Option<String>, TemplateError> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(TemplateError::Io {
            path: path.display().to_string(),
            source,
        }),
    }
}

/// `chat_template`: a string, or a list of `{"name", "template"}`.
fn parse_chat_template_field(v: &Json) -> Result<Vec<(String, String)>, TemplateError> {
    match v {
        Json::String(s) => Ok(vec![("default".to_string(), s.clone())]),
        Json::Array(items) => items
            .iter()
            .map(|it| {
                match (
                    it.get("name").and_then(Json::as_str),
                    it.get("template").and_then(Json::as_str),
                ) {
                    (Some(n), Some(t)) => Ok((n.to_string(), t.to_string())),
                    _ => Err(config_err(
                        "chat_template",
                        "list entries need string 'name' and 'template'",
                    )),
                }
            })
            .collect(),
        Json::Null => Ok(Vec::new()),
        _ => Err(config_err(
            "chat_template",
            "expected a string or a list of {name, template}",
        )),
    }
}

/// A special token in tokenizer_config.json: a string or an AddedToken object with `content`.
fn token_string(v: Option<&Json>) -> Option<String> {
    match v? {
        Json::String(s) => Some(s.clone()),
        Json::Object(m) => m.get("content").and_then(Json::as_str).map(str::to_string),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_templates_are_selected_like_transformers() {
        let cfg = r#"{"bos_token": {"content": "<s>"}, "eos_token": "</s>",
            "chat_template": [{"name": "default", "template": "D"}, {"name": "tool_use", "template": "T"}]}"#;
        let info = ModelTemplateInfo::from_tokenizer_config(cfg).unwrap();
        assert_eq!(info.bos_token.as_deref(), Some("<s>"));
        assert_eq!(info.select(true).unwrap(), "T");
        assert_eq!(info.select(false).unwrap(), "D");
        assert!(ModelTemplateInfo::from_tokenizer_config("{").is_err());
        assert!(ModelTemplateInfo::default().select(false).is_err());
    }
}
