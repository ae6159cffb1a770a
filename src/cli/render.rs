//! `callm render`: prints the exact prompt (or its token ids) for an OpenAI chat request.

use anyhow::{bail, Context};
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::openai::ChatCompletionRequest;
use crate::registry::{Family, ModelHints, Registry};
use crate::request::ChatRequest;
use crate::template::{encode_prompt, ModelTemplateInfo, PromptRenderer};

/// Arguments of `callm render`.
#[derive(clap::Args, Debug)]
pub struct RenderArgs {
    /// A model directory (tokenizer_config.json / chat_template.jinja, tokenizer.json for --ids),
    /// a GGUF file (template and tokenizer from its metadata), or a registry family name.
    #[arg(short, long)]
    pub model: String,
    /// The chat request body as JSON; '-' reads standard input.
    #[arg(long)]
    pub request: String,
    /// Print the prompt's token ids (a JSON array) instead of its text.
    #[arg(long)]
    pub ids: bool,
    /// A directory holding tokenizer.json (and optionally tokenizer_config.json).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// The model family; detected from the model when not given.
    #[arg(long)]
    pub family: Option<String>,
    #[command(flatten)]
    pub template_limits: super::args::TemplateLimitArgs,
}

/// Renders the request and prints the prompt or its ids.
pub fn run(args: &RenderArgs) -> anyhow::Result<()> {
    let out = render_to_string(args)?;
    super::print(&out)?;
    Ok(())
}

/// What `run` prints: the prompt text, or the ids as a JSON array followed by a newline.
pub fn render_to_string(args: &RenderArgs) -> anyhow::Result<String> {
    let registry = Registry::load()?;
    let request = read_request(&args.request)?;
    let model_dir = Path::new(&args.model);
    let tok_dir = args
        .tokenizer
        .clone()
        .or_else(|| model_dir.is_dir().then(|| model_dir.to_path_buf()));

    if model_dir.is_file() {
        return render_gguf(args, &registry, &request, model_dir);
    }
    let (info, family) = if model_dir.is_dir() {
        let info = ModelTemplateInfo::read_model_dir(model_dir)?;
        let family = match &args.family {
            Some(name) => registry.require(name)?.clone(),
            None => detect_family(&registry, model_dir, &info),
        };
        (info, family)
    } else {
        let name = args.family.as_deref().unwrap_or(&args.model);
        let family = registry
            .require(name)
            .with_context(|| {
                format!(
                    "--model {} is neither a directory nor a registry name",
                    args.model
                )
            })?
            .clone();
        let info = match &tok_dir {
            Some(dir) => ModelTemplateInfo::read_model_dir(dir)?,
            None => ModelTemplateInfo::default(),
        };
        (info, family)
    };
    let info = ModelTemplateInfo::for_family(&family, Some(info))?;

    // tokenizer.json, or a SentencePiece model with the family's extra special tokens.
    let tokenizer = match &tok_dir {
        Some(dir) if crate::tokenizer::Tokenizer::dir_has_tokenizer(dir) => {
            let tok = crate::tokenizer::Tokenizer::from_model_dir(dir, &family.spm_special_tokens)
                .with_context(|| format!("{}: loading the tokenizer", dir.display()))?;
            Some(tok.inner().clone())
        }
        _ => None,
    };
    let mut renderer = PromptRenderer::new(info, Some(&family))?;
    if let Some(tok) = &tokenizer {
        renderer = renderer.with_tokenizer(tok);
    }
    let prompt = renderer.render(&request)?;
    if !args.ids {
        return Ok(prompt.text);
    }
    let Some(tok) = &tokenizer else {
        bail!("--ids needs a tokenizer (tokenizer.json or a SentencePiece tokenizer.model): give a model directory or --tokenizer DIR");
    };
    let ids = encode_prompt(tok, &prompt)?;
    Ok(format!("{}\n", serde_json::to_string(&ids)?))
}

/// Renders for a GGUF file: template and tokenizer from its metadata, no weights loaded.
fn render_gguf(
    args: &RenderArgs,
    registry: &Registry,
    request: &ChatRequest,
    path: &Path,
) -> anyhow::Result<String> {
    let gguf = crate::model::gguf::GgufFile::open(path, &candle_core::Device::Cpu)?;
    let meta = crate::runtime::gguf_meta(&gguf, path)?;
    let family = match &args.family {
        Some(name) => registry.require(name)?.clone(),
        None => {
            let mut names = meta.names.clone();
            names.push(path.display().to_string());
            registry
                .detect(&ModelHints {
                    architectures: meta.architectures.clone(),
                    names,
                    template: meta.template.select(true).ok(),
                })
                .clone()
        }
    };
    let info = ModelTemplateInfo::for_family(&family, Some(meta.template.clone()))?;
    let tok = meta.tokenizer.inner();
    let renderer = PromptRenderer::new(info, Some(&family))?.with_tokenizer(tok);
    let prompt = renderer.render(request)?;
    if !args.ids {
        return Ok(prompt.text);
    }
    let ids = encode_prompt(tok, &prompt)?;
    Ok(format!("{}\n", serde_json::to_string(&ids)?))
}

/// Reads a chat completion body and converts it at the OpenAI edge (judged as the server would).
fn read_request(path: &str) -> anyhow::Result<ChatRequest> {
    let mut text = String::new();
    if path == "-" {
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the request from stdin")?;
    } else {
        text = std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))?;
    }
    let body: ChatCompletionRequest = serde_json::from_str(&text)
        .with_context(|| format!("{path} is not a chat completion request"))?;
    ChatRequest::try_from(body).with_context(|| format!("{path}: invalid chat completion request"))
}

fn detect_family(registry: &Registry, dir: &Path, info: &ModelTemplateInfo) -> Family {
    let mut architectures = Vec::new();
    if let Ok(text) = std::fs::read_to_string(dir.join("config.json")) {
        if let Ok(cfg) = serde_json::from_str::<serde_json::Value>(&text) {
            if let Some(a) = cfg.get("architectures").and_then(|a| a.as_array()) {
                architectures.extend(a.iter().filter_map(|x| x.as_str()).map(str::to_string));
            }
            if let Some(t) = cfg.get("model_type").and_then(|t| t.as_str()) {
                architectures.push(t.to_string());
            }
        }
    }
    let names = vec![dir
        .canonicalize()
        .unwrap_or_else(|_| dir.to_path_buf())
        .display()
        .to_string()];
    let template = info.select(true).ok();
    registry
        .detect(&ModelHints {
            architectures,
            names,
            template,
        })
        .clone()
}
