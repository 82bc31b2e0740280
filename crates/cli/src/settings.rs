//! Each command's inputs to the one settings resolution (`autoagent_settings::resolve`): its
//! flags, the environment with `.env`, the workspace's `autoagent.toml`, and the harness.

use std::path::Path;

use anyhow::Context as _;
use autoagent_agent::Harness;
use autoagent_llm::EnvSource;
use autoagent_settings::{HarnessModel, ModelFlags, ResolvedModels, WorkspaceConfig};

/// `--model` and `--base-url`, for the commands that run the task agent.
#[derive(Debug, Clone, clap::Args)]
pub struct ModelArgs {
    /// `provider/model`: anthropic/claude-sonnet-4-5, openai/gpt-5, openai-responses/gpt-5,
    /// openai-compatible/NAME (with --base-url), scripted/PATH. Default: $AUTOAGENT_MODEL, then
    /// `[models].task` of ./autoagent.toml, then the harness's `agent.model`.
    #[arg(long, short = 'm')]
    pub model: Option<String>,
    /// The provider's base URL (a gateway, or a local vLLM / llama.cpp / Ollama server).
    /// Default: ANTHROPIC_BASE_URL / OPENAI_BASE_URL, then `[models].base_url`.
    #[arg(long)]
    pub base_url: Option<String>,
}

impl ModelArgs {
    pub fn flags(&self) -> ModelFlags {
        ModelFlags {
            model: self.model.clone(),
            meta_model: None,
            base_url: self.base_url.clone(),
        }
    }
}

/// The workspace file of the current folder, when there is one (`eval`, `run` and
/// `models check` run inside a workspace or in any folder).
pub fn current_workspace() -> anyhow::Result<Option<WorkspaceConfig>> {
    let path = Path::new("autoagent.toml");
    if !path.is_file() {
        return Ok(None);
    }
    Ok(Some(WorkspaceConfig::load(path)?))
}

/// The environment with the `.env` file of `dir`.
pub fn env_in(dir: &Path) -> anyhow::Result<EnvSource> {
    let path = dir.join(".env");
    EnvSource::process_with_dotenv(&path)
        .with_context(|| format!("reading the environment and {}", path.display()))
}

pub fn harness_model(harness: &Harness) -> HarnessModel {
    let a = &harness.config.agent;
    HarnessModel {
        model: a.model.clone(),
        max_tokens: a.max_tokens,
        temperature: a.temperature,
    }
}

/// The models of a command, resolved once.
pub fn models(
    flags: &ModelFlags,
    env: &EnvSource,
    workspace: Option<&WorkspaceConfig>,
    harness: Option<&Harness>,
) -> anyhow::Result<ResolvedModels> {
    let harness = harness.map(harness_model).unwrap_or_default();
    Ok(autoagent_settings::resolve_models(
        flags, env, workspace, &harness,
    )?)
}

#[cfg(test)]
mod tests {
    //! The matrix: every command × every source of the model, its base URL, key variable and
    //! prices, through each command's own flag parsing.

    use clap::Parser as _;

    use super::*;
    use crate::{Cli, Command};

    /// A command line's model flags, taken the way that command takes them.
    fn model_flags(argv: &[&str]) -> ModelFlags {
        let cli = Cli::try_parse_from(std::iter::once("autoagent").chain(argv.iter().copied()))
            .unwrap_or_else(|e| panic!("{argv:?}: {e}"));
        match cli.command {
            Command::Eval(a) => a.model.flags(),
            Command::Run(a) => a.model.flags(),
            Command::Optimize(a) => a.model_flags(),
            Command::Models(a) => match a.command {
                crate::models::ModelsCommand::Check {
                    model, meta_model, ..
                } => crate::models::check_flags(&model, meta_model),
            },
            _ => panic!("{argv:?} runs no model"),
        }
    }

    /// Each command without model flags, then with `--model` and `--base-url`.
    const COMMANDS: &[&[&str]] = &[
        &["eval", "-a", "harness"],
        &["run", "do it", "--image", "img"],
        &["models", "check"],
        &["optimize"],
    ];

    fn workspace() -> WorkspaceConfig {
        let d = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let p = d.path().join("autoagent.toml");
        std::fs::write(
            &p,
            "[models]\ntask = \"openai-compatible/ws\"\nbase_url = \"http://127.0.0.1:9/v1\"\n\
             api_key_env = \"WS_KEY\"\n[models.prices.\"openai-compatible/ws\"]\ninput = 1.0\noutput = 2.0\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        WorkspaceConfig::load(&p).unwrap_or_else(|e| panic!("{e}"))
    }

    fn resolve(argv: &[&str], env: &EnvSource, ws: Option<&WorkspaceConfig>) -> ResolvedModels {
        let harness = HarnessModel {
            model: Some("anthropic/from-harness".into()),
            ..HarnessModel::default()
        };
        autoagent_settings::resolve_models(&model_flags(argv), env, ws, &harness)
            .unwrap_or_else(|e| panic!("{argv:?}: {e}"))
    }

    #[test]
    fn every_command_resolves_models_alike() {
        let ws = workspace();
        let none = EnvSource::from_vars(Vec::<(String, String)>::new());
        let env = EnvSource::from_vars([
            ("AUTOAGENT_MODEL", "openai/from-env"),
            ("OPENAI_BASE_URL", "http://127.0.0.1:8/v1"),
        ]);
        for cmd in COMMANDS {
            let with_flags: Vec<&str> = cmd
                .iter()
                .copied()
                .chain([
                    "--model",
                    "openai/from-flag",
                    "--base-url",
                    "http://127.0.0.1:7/v1",
                ])
                .collect();
            let cases = [
                // (argv, env, workspace) → (model, base URL, key variable, priced)
                (
                    with_flags.as_slice(),
                    &env,
                    Some(&ws),
                    "openai/from-flag",
                    Some("http://127.0.0.1:7/v1"),
                    Some("WS_KEY"),
                    true,
                ),
                (
                    cmd,
                    &env,
                    Some(&ws),
                    "openai/from-env",
                    Some("http://127.0.0.1:8/v1"),
                    Some("WS_KEY"),
                    true,
                ),
                (
                    cmd,
                    &none,
                    Some(&ws),
                    "openai-compatible/ws",
                    Some("http://127.0.0.1:9/v1"),
                    Some("WS_KEY"),
                    true,
                ),
                (
                    cmd,
                    &none,
                    None,
                    "anthropic/from-harness",
                    None,
                    None,
                    false,
                ),
            ];
            for (argv, env, ws, model, url, key, priced) in cases {
                let r = resolve(argv, env, ws);
                assert_eq!(
                    (
                        r.task.model.as_str(),
                        r.task.base_url.as_deref(),
                        r.task.api_key_env.as_deref(),
                        r.task.prices.contains_key("openai-compatible/ws"),
                    ),
                    (model, url, key, priced),
                    "{argv:?}"
                );
            }
        }
    }

    #[test]
    fn the_meta_model_flag_exists_where_a_meta_model_runs() {
        let none = EnvSource::from_vars(Vec::<(String, String)>::new());
        for argv in [
            &["optimize", "--meta-model", "openai/m"][..],
            &["models", "check", "--meta", "--meta-model", "openai/m"][..],
        ] {
            let r = resolve(argv, &none, None);
            assert_eq!(r.meta.model, "openai/m", "{argv:?}");
        }
    }
}
