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
        super::print(&format!("{}\n", serde_json::to_string_pretty(&list)?))?;
        return Ok(());
    }
    let mut table = format!(
        "{:<28} {:<8} {:<38} {:<36} parsers\n",
        "family", "arch", "default weights", "template"
    );
    for f in registry.families() {
        let weights = match (&f.gguf_repo, &f.gguf_file) {
            (Some(r), Some(file)) => format!("{r}:{file}"),
            _ => f.hf_repo.clone(),
        };
        let weights = if weights.chars().count() > 37 {
            format!("{}…", weights.chars().take(36).collect::<String>())
        } else {
            weights
        };
        table += &format!(
            "{:<28} {:<8} {:<38} {:<36} {}\n",
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
    super::print(&table)?;
    Ok(())
}
