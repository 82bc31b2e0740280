//! `autoagent models`: is this model reachable, keyed and priced?
//!
//! The logic lives in `autoagent_llm::check`; this module parses flags and prints.

use std::time::Duration;

use anyhow::bail;
use autoagent_llm::{DEFAULT_MODEL, EnvSource, ModelConfig, check, explain};
use clap::{Args, Subcommand};

#[derive(Debug, Args)]
pub struct ModelsArgs {
    #[command(subcommand)]
    pub command: ModelsCommand,
}

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Send one tiny request and print the answer, latency, tokens and cost.
    Check {
        /// provider/model: anthropic/claude-sonnet-4-5, openai/gpt-5, openai-responses/gpt-5,
        /// openai-compatible/qwen3-coder, or scripted/path/to/script.toml.
        #[arg(long, env = "AUTOAGENT_MODEL", default_value = DEFAULT_MODEL)]
        model: String,
        /// Base URL of the provider (a gateway or a local server), instead of the default and of
        /// ANTHROPIC_BASE_URL / OPENAI_BASE_URL.
        #[arg(long)]
        base_url: Option<String>,
        /// Seconds to wait for the answer.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
}

pub async fn run(args: ModelsArgs) -> anyhow::Result<()> {
    match args.command {
        ModelsCommand::Check {
            model,
            base_url,
            timeout,
        } => {
            let cfg = ModelConfig {
                base_url,
                timeout: Duration::from_secs(timeout),
                ..ModelConfig::new(model)
            };
            // Keys come from the environment and ./.env; the process environment is not changed.
            let env = match EnvSource::current() {
                Ok(env) => env,
                Err(err) => bail!("{}", explain(&err)),
            };
            match check(&cfg, &env).await {
                Ok(report) => {
                    print!("{report}");
                    Ok(())
                }
                Err(err) => bail!("model check of {} failed: {}", cfg.model, explain(&err)),
            }
        }
    }
}
