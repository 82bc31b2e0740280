//! `autoagent harness check DIR`, and the model flags shared by the commands that run the agent.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use autoagent_agent::Harness;
use autoagent_llm::{EnvSource, ModelConfig};

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

/// `--model` and `--base-url`.
#[derive(Debug, Clone, clap::Args)]
pub struct ModelArgs {
    /// `provider/model`: anthropic/claude-sonnet-4-5, openai/gpt-5, openai-responses/gpt-5,
    /// openai-compatible/NAME (with --base-url), scripted/PATH. Default: the harness's
    /// `agent.model`, then $AUTOAGENT_MODEL.
    #[arg(long, short = 'm')]
    pub model: Option<String>,
    /// The provider's base URL (a gateway, or a local vLLM / llama.cpp / Ollama server).
    #[arg(long)]
    pub base_url: Option<String>,
}

impl ModelArgs {
    /// The model config for a harness: `--model`, else `agent.model`, else `$AUTOAGENT_MODEL`.
    pub fn resolve(&self, harness: &Harness) -> anyhow::Result<(ModelConfig, EnvSource)> {
        let env = EnvSource::current().context("reading the environment and .env")?;
        let model = self
            .model
            .clone()
            .or_else(|| harness.config.agent.model.clone())
            .or_else(|| env.get("AUTOAGENT_MODEL"))
            .context("no model: pass --model provider/model (or set agent.model in harness.toml, or AUTOAGENT_MODEL)")?;
        let mut cfg = ModelConfig {
            model,
            base_url: self.base_url.clone(),
            ..ModelConfig::default()
        };
        if let Some(t) = harness.config.agent.max_tokens {
            cfg.max_tokens = t;
        }
        cfg.temperature = harness.config.agent.temperature;
        Ok((cfg, env))
    }
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
