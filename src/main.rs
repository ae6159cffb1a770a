//! The `callm` binary: see `callm --help`.

use clap::Parser;

fn main() -> std::process::ExitCode {
    // A chat-template render worker started by this binary's own sandbox (no CLI, no logs).
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == callm::template::sandbox::WORKER_ARG)
    {
        let rest: Vec<String> = std::env::args_os()
            .skip(2)
            .filter_map(|a| a.into_string().ok())
            .collect();
        return callm::template::sandbox::worker::run(&rest);
    }
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
