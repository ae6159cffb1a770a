//! Model sources: what `--model` names (a local checkpoint directory, one GGUF file, a
//! Hugging Face repo id, or a registry name) resolved to files on disk.

pub mod hub;

use std::path::{Path, PathBuf};

use crate::registry::Registry;

/// Errors resolving or downloading a model.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Nothing matches the name.
    #[error("'{0}' is neither an existing file or directory, a registry name (see `callm models`), nor a Hugging Face repo id (org/name)")]
    NotFound(String),
    /// A local directory lacks a needed file.
    #[error("{dir}: missing {file} ({why})")]
    MissingFile {
        /// The directory.
        dir: String,
        /// The file.
        file: String,
        /// Why it is needed.
        why: String,
    },
    /// Download from the Hugging Face Hub failed.
    #[error("cannot download {repo}/{file} from the Hugging Face Hub: {msg}")]
    Download {
        /// Repo id.
        repo: String,
        /// File in the repo.
        file: String,
        /// The error.
        msg: String,
    },
}

/// Where a model's files are, once resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelFiles {
    /// A Hugging Face-style directory (config.json, safetensors, tokenizer files).
    Dir(PathBuf),
    /// A single GGUF file (tokenizer and template in its metadata).
    Gguf(PathBuf),
}

/// A resolved model: files plus the names it is known by (for family detection).
#[derive(Debug, Clone)]
pub struct ResolvedModel {
    /// The files.
    pub files: ModelFiles,
    /// Names: what the user typed, repo ids, file names.
    pub names: Vec<String>,
    /// The family the registry entry names, when the user gave a registry name.
    pub family: Option<String>,
}

/// A parsed `--model` argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSpec {
    /// A path that exists.
    Local(PathBuf),
    /// A registry family name.
    Registry(String),
    /// A Hub repo, optionally with one GGUF file in it.
    Hub {
        /// `org/name`.
        repo: String,
        /// A `.gguf` file inside the repo.
        file: Option<String>,
    },
}

impl ModelSpec {
    /// Interprets `s`: an existing path first, then a registry name, then `org/name[:file.gguf]`.
    pub fn parse(s: &str, registry: &Registry) -> Result<Self, SourceError> {
        let p = Path::new(s);
        if p.exists() {
            return Ok(ModelSpec::Local(p.to_path_buf()));
        }
        if registry.get(s).is_some() {
            return Ok(ModelSpec::Registry(s.to_string()));
        }
        let (repo, file) = match s.split_once(':') {
            Some((r, f)) => (r, Some(f.to_string())),
            None => (s, None),
        };
        let parts: Vec<&str> = repo.split('/').collect();
        let valid = |x: &str| {
            !x.is_empty()
                && x.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        };
        if parts.len() == 2
            && parts.iter().all(|x| valid(x))
            && file.as_deref().is_none_or(|f| !f.is_empty())
        {
            return Ok(ModelSpec::Hub {
                repo: repo.to_string(),
                file,
            });
        }
        Err(SourceError::NotFound(s.to_string()))
    }
}

/// Resolves a `--model` argument to files, downloading from the Hub when needed.
pub fn resolve(s: &str, registry: &Registry) -> Result<ResolvedModel, SourceError> {
    match ModelSpec::parse(s, registry)? {
        ModelSpec::Local(p) => {
            let files = if p.is_dir() {
                if p.join("config.json").is_file() || p.join("tokenizer_config.json").is_file() {
                    ModelFiles::Dir(p.clone())
                } else {
                    // A directory holding exactly one GGUF file is that file.
                    let ggufs = gguf_files_in(&p);
                    match ggufs.as_slice() {
                        [one] => ModelFiles::Gguf(one.clone()),
                        _ => {
                            return Err(SourceError::MissingFile {
                                dir: p.display().to_string(),
                                file: "config.json".into(),
                                why: "a model directory needs config.json and safetensors (or pytorch_model*.bin) weights, or exactly one .gguf file".into(),
                            })
                        }
                    }
                }
            } else {
                ModelFiles::Gguf(p.clone())
            };
            let mut names = vec![s.to_string()];
            if let Some(n) = p.file_name() {
                names.push(n.to_string_lossy().into_owned());
            }
            Ok(ResolvedModel {
                files,
                names,
                family: None,
            })
        }
        ModelSpec::Registry(name) => {
            let fam = registry
                .get(&name)
                .ok_or_else(|| SourceError::NotFound(name.clone()))?;
            let (repo, file) = match (&fam.gguf_repo, &fam.gguf_file) {
                (Some(r), Some(f)) => (r.clone(), Some(f.clone())),
                _ => (fam.hf_repo.clone(), None),
            };
            let files = hub::download(&repo, file.as_deref())?;
            Ok(ResolvedModel {
                files,
                names: vec![name.clone(), repo],
                family: Some(name),
            })
        }
        ModelSpec::Hub { repo, file } => {
            let files = hub::download(&repo, file.as_deref())?;
            let mut names = vec![repo.clone()];
            names.extend(file);
            Ok(ResolvedModel {
                files,
                names,
                family: None,
            })
        }
    }
}

fn gguf_files_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.extension()
                        .is_some_and(|x| x.eq_ignore_ascii_case("gguf"))
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_specs() {
        let r = Registry::builtin();
        assert_eq!(
            ModelSpec::parse("qwen2.5", &r).unwrap(),
            ModelSpec::Registry("qwen2.5".into())
        );
        assert_eq!(
            ModelSpec::parse(
                "Qwen/Qwen2.5-0.5B-Instruct-GGUF:qwen2.5-0.5b-instruct-q4_k_m.gguf",
                &r
            )
            .unwrap(),
            ModelSpec::Hub {
                repo: "Qwen/Qwen2.5-0.5B-Instruct-GGUF".into(),
                file: Some("qwen2.5-0.5b-instruct-q4_k_m.gguf".into())
            }
        );
        assert_eq!(
            ModelSpec::parse("meta-llama/Llama-3.1-8B-Instruct", &r).unwrap(),
            ModelSpec::Hub {
                repo: "meta-llama/Llama-3.1-8B-Instruct".into(),
                file: None
            }
        );
        assert!(matches!(
            ModelSpec::parse("/no/such/file.gguf", &r),
            Err(SourceError::NotFound(_))
        ));
        assert!(matches!(
            ModelSpec::parse("not a model", &r),
            Err(SourceError::NotFound(_))
        ));
        assert!(matches!(
            ModelSpec::parse("a/b:", &r),
            Err(SourceError::NotFound(_))
        ));
        let here = env!("CARGO_MANIFEST_DIR");
        assert_eq!(
            ModelSpec::parse(here, &r).unwrap(),
            ModelSpec::Local(here.into())
        );
    }

    #[test]
    fn directory_without_model_files_is_a_clear_error() {
        let dir = std::env::temp_dir().join(format!("callm-empty-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let err = resolve(dir.to_str().unwrap(), &Registry::builtin())
            .unwrap_err()
            .to_string();
        assert!(err.contains("config.json"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
