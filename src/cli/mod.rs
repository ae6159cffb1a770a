//! Command-line front end: one module per subcommand.

pub mod args;
pub mod bench;
pub mod bench_concurrent;
pub mod bench_prefix;
pub mod chat;
pub mod generate;
pub mod models;
pub mod parse;
pub mod progress;
pub mod render;
pub mod serve;

/// Writes `text` to stdout at once. A closed stdout (`callm models | head`) is not an
/// error: the reader has what it wanted.
pub fn print(text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r,
    }
}

use std::sync::Arc;

use clap::{Parser, Subcommand};

use crate::registry::Registry;
use crate::runtime::LoadedModel;

/// callm: run open function-calling models locally, with OpenAI-compatible tool calls.
#[derive(Parser, Debug)]
#[command(name = "callm", version, about, long_about = None)]
pub struct Cli {
    /// Log more (-v: info, -vv: debug). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// Arguments of `callm serve`.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    model: args::ModelArgs,
    #[command(flatten)]
    server: serve::ServeOptions,
}

/// Arguments of `callm chat`.
#[derive(clap::Args, Debug)]
pub struct ChatArgs {
    #[command(flatten)]
    model: args::ModelArgs,
    #[command(flatten)]
    chat: chat::ChatOptions,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Generate a continuation of one prompt (chat template applied unless --raw).
    Generate(generate::GenerateArgs),
    /// Serve the OpenAI-compatible HTTP API (/v1/chat/completions, /v1/completions, /v1/models).
    Serve(ServeArgs),
    /// Interactive terminal chat with tool calls.
    Chat(ChatArgs),
    /// Print the exact prompt (or token ids) for an OpenAI chat request body.
    Render(render::RenderArgs),
    /// Parse model output (stdin) into OpenAI tool_calls JSON.
    Parse(parse::ParseArgs),
    /// Measure prompt-processing and generation speed (like llama-bench).
    Bench(bench::BenchArgs),
    /// List the model families of the registry.
    Models(models::ModelsArgs),
}

impl Command {
    /// The log level used when neither -v nor RUST_LOG says otherwise.
    pub fn default_log_level(&self) -> &'static str {
        match self {
            Command::Serve(_) => "info",
            _ => "warn",
        }
    }

    /// The chat-template render limits the command was given (none for the commands that
    /// render no template).
    pub fn template_limits(&self) -> Option<&args::TemplateLimitArgs> {
        match self {
            Command::Generate(a) => Some(a.template_limits()),
            Command::Bench(a) => Some(a.template_limits()),
            Command::Serve(a) => Some(&a.model.template_limits),
            Command::Chat(a) => Some(&a.model.template_limits),
            Command::Render(a) => Some(&a.template_limits),
            Command::Parse(_) | Command::Models(_) => None,
        }
    }

    /// CPU threads requested by the command, if any.
    pub fn threads(&self) -> Option<usize> {
        match self {
            Command::Generate(a) => a.threads(),
            Command::Bench(a) => a.threads(),
            Command::Serve(a) => a.model.threads,
            Command::Chat(a) => a.model.threads,
            _ => None,
        }
    }
}

/// Runs the parsed command line.
/// Renders chat templates in worker processes of this executable
/// ([`crate::template::sandbox`]) unless `CALLM_TEMPLATE_SANDBOX` says `off`.
fn install_template_sandbox(limits: Option<&args::TemplateLimitArgs>) -> anyhow::Result<()> {
    let setting = std::env::var("CALLM_TEMPLATE_SANDBOX").unwrap_or_default();
    if !sandbox_wanted(&setting)? {
        if limits.is_some_and(|l| *l != args::TemplateLimitArgs::default()) {
            tracing::warn!(
                "CALLM_TEMPLATE_SANDBOX={setting}: chat templates render in-process, so \
                 --template-time-limit and --template-memory-mb have no effect"
            );
        } else {
            tracing::info!("CALLM_TEMPLATE_SANDBOX={setting}: chat templates render in-process");
        }
        return Ok(());
    }
    // On Linux the running executable itself, also after an upgrade replaced or removed the
    // file it was started from (its path then names another program, or nothing).
    let this = std::path::Path::new("/proc/self/exe");
    let exe = if cfg!(target_os = "linux") && this.exists() {
        Ok(this.to_path_buf())
    } else {
        std::env::current_exe()
    };
    match exe {
        Ok(exe) => {
            crate::template::sandbox::install(sandbox_config(exe, limits));
        }
        Err(e) => tracing::warn!(
            "cannot find this executable ({e}); chat templates render in-process, without the \
             render worker's memory and time limits"
        ),
    }
    Ok(())
}

/// The render workers' configuration: the defaults, with the limits the command was given.
fn sandbox_config(
    program: std::path::PathBuf,
    limits: Option<&args::TemplateLimitArgs>,
) -> crate::template::sandbox::SandboxConfig {
    let mut config = crate::template::sandbox::SandboxConfig::new(program);
    if let Some(limits) = limits {
        if let Some(t) = limits.template_time_limit {
            config.time_limit = t;
        }
        if let Some(mb) = limits.template_memory_mb {
            config.memory_bytes = mb << 20;
        }
    }
    config
}

/// `CALLM_TEMPLATE_SANDBOX`'s value read: unset or empty is on.
fn sandbox_wanted(setting: &str) -> anyhow::Result<bool> {
    match setting.trim().to_ascii_lowercase().as_str() {
        "" | "on" | "1" | "true" => Ok(true),
        "off" | "0" | "false" => Ok(false),
        other => anyhow::bail!(
            "CALLM_TEMPLATE_SANDBOX={other:?}: use on or off (off renders chat templates \
             in-process, without the render worker's memory and time limits)"
        ),
    }
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    install_template_sandbox(cli.command.template_limits())?;
    let registry = Registry::load()?;
    match &cli.command {
        Command::Generate(a) => generate::run(a, &registry),
        Command::Bench(a) => bench::run(a, &registry),
        Command::Parse(a) => parse::run(a),
        Command::Render(a) => render::run(a),
        Command::Models(a) => models::run(a, &registry),
        Command::Serve(a) => {
            let mut opts = a.model.load_options();
            opts.batch = a.server.batch();
            let mut lm = LoadedModel::load(&opts, &registry)?;
            lm.renderer.set_default_reasoning(a.server.reasoning());
            let lm = Arc::new(lm);
            // Build the constrained-decoding vocabulary before listening, not on the first
            // request or beside it: a server that answers `/health` is ready, and the first
            // requests do not share the cores with this work.
            let started = std::time::Instant::now();
            match lm.constraint_engine() {
                Ok(_) => tracing::info!(
                    seconds = started.elapsed().as_secs_f64(),
                    "constrained decoding ready"
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "constrained decoding is unavailable for this model")
                }
            }
            let backend: Arc<dyn crate::chat::ChatBackend> =
                Arc::new(crate::chat::EngineBackend::new(lm));
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(serve::serve(backend, &a.server))
        }
        Command::Chat(a) => {
            let lm = Arc::new(LoadedModel::load(&a.model.load_options(), &registry)?);
            let backend = crate::chat::EngineBackend::new(lm);
            chat::run_chat(&backend, &a.chat)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sandbox_setting_is_on_or_off() {
        for on in ["", " ", "on", "ON", "1", "true"] {
            assert!(sandbox_wanted(on).unwrap(), "{on:?}");
        }
        for off in ["off", "Off", "0", "false"] {
            assert!(!sandbox_wanted(off).unwrap(), "{off:?}");
        }
        let err = sandbox_wanted("no").unwrap_err().to_string();
        assert!(err.contains("use on or off"), "{err}");
    }

    #[test]
    fn template_limits_parse_into_the_worker_config() {
        let limits = |extra: &[&str]| {
            let mut a = vec!["callm", "serve", "-m", "x"];
            a.extend(extra);
            Cli::try_parse_from(a).map(|cli| {
                let l = cli.command.template_limits().cloned().unwrap();
                let c = sandbox_config("w".into(), Some(&l));
                (c.time_limit, c.memory_bytes)
            })
        };
        let defaults = crate::template::sandbox::SandboxConfig::new("w");
        assert_eq!(
            limits(&[]).unwrap(),
            (defaults.time_limit, defaults.memory_bytes)
        );
        assert_eq!(
            limits(&["--template-time-limit", "2.5", "--template-memory-mb", "64"]).unwrap(),
            (std::time::Duration::from_millis(2500), 64 << 20)
        );
        for bad in ["0", "-1", "inf", "1e400", "3601", "ten"] {
            assert!(limits(&["--template-time-limit", bad]).is_err(), "{bad}");
        }
        for bad in ["31", "0", "-5", "1048577"] {
            assert!(limits(&["--template-memory-mb", bad]).is_err(), "{bad}");
        }
        // The commands that render no template take no limits.
        let cli = Cli::try_parse_from(["callm", "models"]).unwrap();
        assert!(cli.command.template_limits().is_none());
    }

    #[test]
    fn reasoning_effort_takes_the_api_levels_only() {
        for cmd in ["generate", "chat"] {
            let args = |level: &str| {
                let mut a = vec!["callm", cmd, "-m", "x", "--reasoning-effort", level];
                if cmd == "generate" {
                    a.extend(["-p", "hi"]);
                }
                Cli::try_parse_from(a)
            };
            for level in crate::request::Effort::NAMES {
                assert!(args(level).is_ok(), "{cmd} {level}");
            }
            let err = args("max").unwrap_err().to_string();
            assert!(err.contains("minimal"), "{cmd}: {err}");
        }
        let serve = |level: &str| {
            Cli::try_parse_from(["callm", "serve", "-m", "x", "--reasoning-effort", level])
        };
        let Command::Serve(a) = serve("none").unwrap().command else {
            panic!("not serve");
        };
        assert_eq!(a.server.reasoning().thinking, Some(false));
        let err = serve("off").unwrap_err().to_string();
        assert!(err.contains("minimal"), "serve: {err}");
    }
}
