//! `callm models`: the registry's model families.

use crate::registry::Registry;

/// Arguments of `callm models`.
#[derive(clap::Args, Debug)]
pub struct ModelsArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Prints the families.
pub fn run(args: &ModelsArgs, registry: &Registry) -> anyhow::Result<()> {
    if args.json {
        let list: Vec<_> = registry
            .families()
            .iter()
            .map(|f| {
                serde_json::json!({
                    "name": f.name, "architecture": f.architecture.name(), "hf_repo": f.hf_repo,
                    "gguf_repo": f.gguf_repo, "gguf_file": f.gguf_file, "template": f.template,
                    "parsers": f.parsers, "stop": f.stop, "tool_role": f.tool_role,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    println!(
        "{:<28} {:<8} {:<38} {:<36} parsers",
        "family", "arch", "default weights", "template"
    );
    for f in registry.families() {
        let weights = match (&f.gguf_repo, &f.gguf_file) {
            (Some(r), Some(file)) => format!("{r}:{file}"),
            _ => f.hf_repo.clone(),
        };
        let weights = if weights.len() > 37 {
            format!("{}…", &weights[..36])
        } else {
            weights
        };
        println!(
            "{:<28} {:<8} {:<38} {:<36} {}",
            f.name,
            f.architecture.name(),
            weights,
            f.template,
            f.parsers
                .iter()
                .map(|p| p.name())
                .collect::<Vec<_>>()
                .join(",")
        );
    }
    Ok(())
}
