//! `autoagent models`: is this model reachable, keyed and priced?
//!
//! The logic lives in `autoagent_llm::check`; this module parses flags and prints.

use std::time::Duration;

use anyhow::bail;
use autoagent_llm::{check, explain};
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
        #[command(flatten)]
        model: crate::settings::ModelArgs,
        /// Check the meta-agent's model (`--meta-model`, $AUTOAGENT_META_MODEL, `[models].meta`)
        /// instead of the task model.
        #[arg(long)]
        meta: bool,
        /// The meta-agent's model, with --meta.
        #[arg(long)]
        meta_model: Option<String>,
        /// Seconds to wait for the answer.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
}

/// `models check`'s model flags: the task model's, and `--meta-model`.
pub(crate) fn check_flags(
    model: &crate::settings::ModelArgs,
    meta_model: Option<String>,
) -> autoagent_settings::ModelFlags {
    autoagent_settings::ModelFlags {
        meta_model,
        ..model.flags()
    }
}

pub async fn run(args: ModelsArgs) -> anyhow::Result<()> {
    match args.command {
        ModelsCommand::Check {
            model,
            meta,
            meta_model,
            timeout,
        } => {
            // Keys come from the environment and ./.env; the process environment is not changed.
            let env = crate::settings::env_in(std::path::Path::new("."))?;
            let ws = crate::settings::current_workspace()?;
            let flags = check_flags(&model, meta_model);
            let resolved = crate::settings::models(&flags, &env, ws.as_ref(), None)?;
            let (mut cfg, model_source, url_source) = if meta {
                (
                    resolved.meta,
                    resolved.meta_model_source,
                    resolved.meta_base_url_source,
                )
            } else {
                (
                    resolved.task,
                    resolved.task_model_source,
                    resolved.task_base_url_source,
                )
            };
            cfg.timeout = Duration::from_secs(timeout);
            eprintln!("model {} (from {model_source})", cfg.model);
            if let (Some(url), Some(source)) = (&cfg.base_url, url_source) {
                eprintln!("base URL {url} (from {source})");
            }
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
