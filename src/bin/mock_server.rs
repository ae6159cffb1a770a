//! A test double of `callm`: the real server and `callm chat` over the deterministic mock
//! engine (`callm::server::mock`), for developing the e2e scripts and clients without a model.

use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};

use callm::cli::chat::{run_chat, ChatOptions};
use callm::cli::serve::{init_logging, serve, ServeOptions};
use callm::server::mock::MockBackend;

/// Command line of the mock server.
#[derive(Debug, Parser)]
#[command(name = "mock_server", about = "callm over a mock engine (test double)")]
struct Cli {
    /// Model id of the mock.
    #[arg(long, global = true, default_value = "mock-model")]
    model: String,
    /// Milliseconds the mock sleeps per token.
    #[arg(long, global = true, default_value_t = 0)]
    token_delay_ms: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the OpenAI-compatible API.
    Serve(ServeOptions),
    /// Chat in the terminal.
    Chat(ChatOptions),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let backend = Arc::new(MockBackend::new(
        cli.model,
        Duration::from_millis(cli.token_delay_ms),
    ));
    match cli.command {
        Command::Serve(opts) => {
            init_logging();
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(serve(backend, &opts))
        }
        Command::Chat(opts) => run_chat(backend.as_ref(), &opts),
    }
}
