//! `autoagent harness check DIR`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use autoagent_agent::Harness;

#[derive(Debug, clap::Args)]
pub struct HarnessArgs {
    #[command(subcommand)]
    pub command: HarnessCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum HarnessCommand {
    /// Validate a harness dir and print every problem with its file and field.
    Check {
        #[arg(default_value = "harness")]
        dir: PathBuf,
    },
}

pub fn load(dir: &Path) -> anyhow::Result<Harness> {
    Harness::load(dir).map_err(|e| anyhow::anyhow!("{e}"))
}

pub fn run(args: HarnessArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        HarnessCommand::Check { dir } => match Harness::load(&dir) {
            Ok(h) => {
                let tools = h.config.agent.tools.join(", ");
                println!("{}: ok", dir.display());
                println!("  built-in tools: {tools}");
                if !h.script_tools.is_empty() {
                    println!(
                        "  script tools: {}",
                        h.script_tools
                            .keys()
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                }
                if !h.config.subagents.is_empty() {
                    println!(
                        "  sub-agents: {}",
                        h.config
                            .subagents
                            .iter()
                            .map(|s| s.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                }
                println!(
                    "  max turns: {}; verification: {}",
                    h.config.agent.max_turns,
                    if h.config.verify.enabled {
                        format!("on, {} bonus turns", h.config.verify.bonus_turns)
                    } else {
                        "off".to_owned()
                    }
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprint!("{e}");
                Ok(ExitCode::FAILURE)
            }
        },
    }
}
