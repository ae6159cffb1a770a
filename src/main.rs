//! The `callm` binary: see `callm --help`.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = callm::cli::Cli::parse();
    let level = match cli.verbose {
        0 => cli.command.default_log_level(),
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("callm={level},warn")));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    callm::device::set_threads(cli.command.threads());
    match callm::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
