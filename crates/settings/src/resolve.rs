//! One resolution of settings for every command: flags > environment > workspace
//! `autoagent.toml` > harness > defaults. Each command gathers its inputs (its flags, the
//! environment with `.env`, the workspace file if there is one, the harness's `[agent]`) and
//! calls the same functions, so `eval`, `run`, `models check` and `optimize` cannot disagree on
//! which endpoint, key or prices a model has.

use std::fmt;
use std::path::PathBuf;

use autoagent_llm::env::vars;
use autoagent_llm::{DEFAULT_MODEL, EnvSource, ModelConfig, ProviderKind, parse_model_name};

use crate::env_vars::{AUTOAGENT_META_MODEL, AUTOAGENT_MODEL};
use crate::file::{DockerHostEntry, KubernetesSection, WorkspaceConfig};

/// Where a resolved value came from; shown to the user when something looks wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A command-line flag, by name.
    Flag(&'static str),
    /// An environment variable (or `.env`), by name.
    Env(&'static str),
    /// A key of `autoagent.toml`, like `models.task`.
    Workspace(&'static str),
    /// A key of `harness.toml`, like `agent.model`.
    Harness(&'static str),
    /// The built-in default.
    Default,
    /// Taken over from the task model (the meta model's defaults).
    TaskModel,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Flag(name) => write!(f, "--{name}"),
            Self::Env(name) => write!(f, "${name}"),
            Self::Workspace(key) => write!(f, "autoagent.toml {key}"),
            Self::Harness(key) => write!(f, "harness.toml {key}"),
            Self::Default => f.write_str("the default"),
            Self::TaskModel => f.write_str("the task model"),
        }
    }
}

/// A value and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sourced<T> {
    pub value: T,
    pub source: Source,
}

/// The first of `candidates` that has a value.
fn first<T>(candidates: impl IntoIterator<Item = (Option<T>, Source)>) -> Option<Sourced<T>> {
    candidates
        .into_iter()
        .find_map(|(value, source)| value.map(|value| Sourced { value, source }))
}

/// The model flags a command was given.
#[derive(Debug, Clone, Default)]
pub struct ModelFlags {
    /// `--model`.
    pub model: Option<String>,
    /// `--meta-model`.
    pub meta_model: Option<String>,
    /// `--base-url`: the task model's provider.
    pub base_url: Option<String>,
}

/// What a harness's `[agent]` says about its model.
#[derive(Debug, Clone, Default)]
pub struct HarnessModel {
    pub model: Option<String>,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
}

/// The task and meta models, ready to build, with where their names and URLs came from.
#[derive(Debug, Clone)]
pub struct ResolvedModels {
    pub task: ModelConfig,
    pub meta: ModelConfig,
    pub task_model_source: Source,
    pub task_base_url_source: Option<Source>,
    pub meta_model_source: Source,
    pub meta_base_url_source: Option<Source>,
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("model {model:?} (from {from}): {message}")]
    Model {
        model: String,
        from: Source,
        message: String,
    },
}

/// The provider's base-URL variable (`ANTHROPIC_BASE_URL` or `OPENAI_BASE_URL`), if it has one.
fn base_url_var(provider: ProviderKind) -> Option<&'static str> {
    match provider {
        ProviderKind::Anthropic => Some(vars::ANTHROPIC_BASE_URL),
        ProviderKind::OpenAi | ProviderKind::OpenAiResponses | ProviderKind::OpenAiCompatible => {
            Some(vars::OPENAI_BASE_URL)
        }
        ProviderKind::Scripted => None,
    }
}

fn provider_of(model: &Sourced<String>) -> Result<ProviderKind, SettingsError> {
    parse_model_name(&model.value)
        .map(|(provider, _)| provider)
        .map_err(|e| SettingsError::Model {
            model: model.value.clone(),
            from: model.source.clone(),
            message: e.to_string(),
        })
}

/// Resolves the task and meta models.
///
/// * model name: `--model` > `$AUTOAGENT_MODEL` > `models.task` > `agent.model` > the default;
///   the meta model: `--meta-model` > `$AUTOAGENT_META_MODEL` > `models.meta` > the task model.
/// * base URL: `--base-url` > the provider's variable (`ANTHROPIC_BASE_URL`,
///   `OPENAI_BASE_URL`) > `models.base_url` > the provider's default; the meta model:
///   the provider's variable > `models.meta_base_url` > the task model's (same provider only).
/// * key variable, prices and streaming: `models.api_key_env` (the meta model too, on the same
///   provider), `models.prices` and `models.stream` (both).
/// * output limit and temperature of the task model: the harness's `agent.max_tokens` and
///   `agent.temperature`.
pub fn resolve_models(
    flags: &ModelFlags,
    env: &EnvSource,
    workspace: Option<&WorkspaceConfig>,
    harness: &HarnessModel,
) -> Result<ResolvedModels, SettingsError> {
    let ws = workspace.map(|w| &w.models);
    let task_name = first([
        (flags.model.clone(), Source::Flag("model")),
        (env.get(AUTOAGENT_MODEL), Source::Env(AUTOAGENT_MODEL)),
        (
            ws.and_then(|m| m.task.clone()),
            Source::Workspace("models.task"),
        ),
        (harness.model.clone(), Source::Harness("agent.model")),
        (Some(DEFAULT_MODEL.to_owned()), Source::Default),
    ])
    .unwrap_or_else(|| Sourced {
        value: DEFAULT_MODEL.to_owned(),
        source: Source::Default,
    });
    let task_provider = provider_of(&task_name)?;
    // The provider's own variable, as a candidate (no variable: nothing to take).
    let env_url = |provider: ProviderKind| match base_url_var(provider) {
        Some(var) => (env.get(var), Source::Env(var)),
        None => (None, Source::Default),
    };
    let task_url = first([
        (flags.base_url.clone(), Source::Flag("base-url")),
        env_url(task_provider),
        (
            ws.and_then(|m| m.base_url.clone()),
            Source::Workspace("models.base_url"),
        ),
    ]);

    let meta_name = first([
        (flags.meta_model.clone(), Source::Flag("meta-model")),
        (
            env.get(AUTOAGENT_META_MODEL),
            Source::Env(AUTOAGENT_META_MODEL),
        ),
        (
            ws.and_then(|m| m.meta.clone()),
            Source::Workspace("models.meta"),
        ),
    ])
    .unwrap_or_else(|| Sourced {
        value: task_name.value.clone(),
        source: Source::TaskModel,
    });
    let meta_provider = provider_of(&meta_name)?;
    let same_provider = meta_provider == task_provider;
    let meta_url = first([
        env_url(meta_provider),
        (
            ws.and_then(|m| m.meta_base_url.clone()),
            Source::Workspace("models.meta_base_url"),
        ),
        (
            task_url
                .as_ref()
                .filter(|_| same_provider)
                .map(|u| u.value.clone()),
            Source::TaskModel,
        ),
    ]);

    let prices = ws.map(|m| m.prices.clone()).unwrap_or_default();
    let api_key_env = ws.and_then(|m| m.api_key_env.clone());
    let stream = ws.and_then(|m| m.stream);
    let mut task = ModelConfig {
        model: task_name.value,
        base_url: task_url.as_ref().map(|u| u.value.clone()),
        api_key_env: api_key_env.clone(),
        prices: prices.clone(),
        stream,
        ..ModelConfig::default()
    };
    if let Some(t) = harness.max_tokens {
        task.max_tokens = t;
    }
    task.temperature = harness.temperature;
    let meta = ModelConfig {
        model: meta_name.value,
        base_url: meta_url.as_ref().map(|u| u.value.clone()),
        api_key_env: api_key_env.filter(|_| same_provider),
        prices,
        stream,
        ..ModelConfig::default()
    };
    Ok(ResolvedModels {
        task,
        meta,
        task_model_source: task_name.source,
        task_base_url_source: task_url.map(|u| u.source),
        meta_model_source: meta_name.source,
        meta_base_url_source: meta_url.map(|u| u.source),
    })
}

/// The evaluation flags a command was given (`None`: not given).
#[derive(Debug, Clone, Default)]
pub struct EvalFlags {
    pub tasks: Option<PathBuf>,
    pub concurrency: Option<usize>,
    pub attempts: Option<u32>,
    pub sandbox: Option<String>,
    pub max_retries: Option<u32>,
    pub timeout_multiplier: Option<f64>,
    /// `--docker-host` (repeatable); when given, it replaces `[sandbox].docker_hosts`.
    pub docker_hosts: Vec<DockerHostEntry>,
}

/// How `k` defaults when no flag gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptsDefault {
    /// `autoagent eval` is Harbor's `run`: one attempt unless asked.
    One,
    /// The loop: the workspace's `eval.attempts` (3 by default).
    Workspace,
}

/// Resolved evaluation settings.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalSettings {
    /// The tasks folder, relative to the workspace (or the current folder).
    pub tasks: PathBuf,
    pub concurrency: usize,
    pub attempts: u32,
    /// `docker`, `local` or `kubernetes`; `None`: Docker when a daemon answers.
    pub sandbox: Option<String>,
    pub max_retries: u32,
    pub timeout_multiplier: f64,
    /// `[sandbox.kubernetes]` of the workspace (no flags set it).
    pub kubernetes: KubernetesSection,
    /// The Docker hosts: `--docker-host` flags, else `[sandbox].docker_hosts`; empty: the one
    /// daemon `$DOCKER_HOST` or the default socket names.
    pub docker_hosts: Vec<DockerHostEntry>,
}

/// Flags > workspace `[eval]` > Harbor's defaults (outside a workspace `eval` behaves as
/// `harbor run`: tasks in `tasks`, 4 at once, no retries).
pub fn resolve_eval(
    flags: &EvalFlags,
    workspace: Option<&WorkspaceConfig>,
    attempts: AttemptsDefault,
) -> EvalSettings {
    let ws = workspace.map(|w| &w.eval);
    let ws_attempts = match attempts {
        AttemptsDefault::One => None,
        AttemptsDefault::Workspace => ws.map(|e| e.attempts),
    };
    EvalSettings {
        tasks: flags
            .tasks
            .clone()
            .or_else(|| ws.map(|e| PathBuf::from(&e.tasks)))
            .unwrap_or_else(|| PathBuf::from("tasks")),
        concurrency: flags
            .concurrency
            .or(ws.map(|e| e.concurrency))
            .unwrap_or(4)
            .max(1),
        attempts: flags.attempts.or(ws_attempts).unwrap_or(1).max(1),
        sandbox: flags
            .sandbox
            .clone()
            .or_else(|| ws.and_then(|e| e.sandbox.clone())),
        max_retries: flags.max_retries.or(ws.map(|e| e.max_retries)).unwrap_or(0),
        timeout_multiplier: flags
            .timeout_multiplier
            .or(ws.map(|e| e.timeout_multiplier))
            .unwrap_or(1.0),
        kubernetes: workspace
            .map(|w| w.sandbox.kubernetes.clone())
            .unwrap_or_default(),
        docker_hosts: if flags.docker_hosts.is_empty() {
            workspace
                .map(|w| w.sandbox.docker_hosts.clone())
                .unwrap_or_default()
        } else {
            flags.docker_hosts.clone()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use autoagent_llm::Price;
    use pretty_assertions::assert_eq;

    fn ws(toml_text: &str) -> WorkspaceConfig {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("autoagent.toml");
        std::fs::write(&p, toml_text).unwrap();
        WorkspaceConfig::load(&p).unwrap()
    }

    fn env(vars: &[(&str, &str)]) -> EnvSource {
        EnvSource::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    fn flags(model: Option<&str>, meta: Option<&str>, url: Option<&str>) -> ModelFlags {
        ModelFlags {
            model: model.map(str::to_owned),
            meta_model: meta.map(str::to_owned),
            base_url: url.map(str::to_owned),
        }
    }

    fn harness(model: Option<&str>) -> HarnessModel {
        HarnessModel {
            model: model.map(str::to_owned),
            max_tokens: Some(1234),
            temperature: Some(0.5),
        }
    }

    const WS: &str = r#"
        [models]
        task = "openai-compatible/ws-model"
        base_url = "http://127.0.0.1:9/v1"
        api_key_env = "MY_KEY"
        [models.prices."openai-compatible/ws-model"]
        input = 1.0
        output = 2.0
    "#;

    /// The task model's name: each source beats every one after it.
    #[test]
    fn model_name_precedence() {
        let w = ws(WS);
        let e = env(&[(AUTOAGENT_MODEL, "openai/env-model")]);
        let none = env(&[]);
        // (flags, environment, workspace, harness model) → (model, its source)
        type Case<'a> = (
            ModelFlags,
            &'a EnvSource,
            Option<&'a WorkspaceConfig>,
            Option<&'a str>,
            &'a str,
            Source,
        );
        let cases: Vec<Case<'_>> = vec![
            (
                flags(Some("anthropic/flag-model"), None, None),
                &e,
                Some(&w),
                Some("openai/h"),
                "anthropic/flag-model",
                Source::Flag("model"),
            ),
            (
                flags(None, None, None),
                &e,
                Some(&w),
                Some("openai/h"),
                "openai/env-model",
                Source::Env(AUTOAGENT_MODEL),
            ),
            (
                flags(None, None, None),
                &none,
                Some(&w),
                Some("openai/h"),
                "openai-compatible/ws-model",
                Source::Workspace("models.task"),
            ),
            (
                flags(None, None, None),
                &none,
                None,
                Some("openai/h"),
                "openai/h",
                Source::Harness("agent.model"),
            ),
            (
                flags(None, None, None),
                &none,
                None,
                None,
                DEFAULT_MODEL,
                Source::Default,
            ),
        ];
        for (f, e, w, h, want, source) in cases {
            let r = resolve_models(&f, e, w, &harness(h)).unwrap();
            assert_eq!(
                (r.task.model.as_str(), &r.task_model_source),
                (want, &source)
            );
            // The meta model follows the task model unless named.
            assert_eq!(
                (r.meta.model.as_str(), &r.meta_model_source),
                (want, &Source::TaskModel)
            );
            // The harness's sampling settings apply to the task model only.
            assert_eq!((r.task.max_tokens, r.task.temperature), (1234, Some(0.5)));
            assert_eq!(r.meta.temperature, None);
        }
    }

    #[test]
    fn meta_model_precedence() {
        let w = ws(&WS.replace("[models]\n", "[models]\nmeta = \"anthropic/ws-meta\"\n"));
        let e = env(&[(AUTOAGENT_META_MODEL, "openai/env-meta")]);
        let none = env(&[]);
        let r = resolve_models(
            &flags(None, Some("openai/flag-meta"), None),
            &e,
            Some(&w),
            &harness(None),
        )
        .unwrap();
        assert_eq!(
            (r.meta.model.as_str(), r.meta_model_source),
            ("openai/flag-meta", Source::Flag("meta-model"))
        );
        let r = resolve_models(&flags(None, None, None), &e, Some(&w), &harness(None)).unwrap();
        assert_eq!(
            (r.meta.model.as_str(), r.meta_model_source),
            ("openai/env-meta", Source::Env(AUTOAGENT_META_MODEL))
        );
        let r = resolve_models(&flags(None, None, None), &none, Some(&w), &harness(None)).unwrap();
        assert_eq!(
            (r.meta.model.as_str(), r.meta_model_source),
            ("anthropic/ws-meta", Source::Workspace("models.meta"))
        );
        // Another provider: the task model's URL and key variable are not the meta model's.
        assert_eq!((r.meta.base_url, r.meta.api_key_env), (None, None));
        assert_eq!(r.meta.prices.len(), 1, "prices apply to both");
    }

    /// The task model's base URL: flag > the provider's variable > workspace > none (the
    /// provider's default, applied by the client).
    #[test]
    fn base_url_precedence() {
        let w = ws(WS);
        let e = env(&[(vars::OPENAI_BASE_URL, "http://127.0.0.1:8/v1")]);
        let wrong_provider = env(&[(vars::ANTHROPIC_BASE_URL, "http://127.0.0.1:7")]);
        let none = env(&[]);
        let url = |f: ModelFlags, e: &EnvSource, w: Option<&WorkspaceConfig>| {
            let r = resolve_models(&f, e, w, &harness(None)).unwrap();
            (
                r.task.base_url,
                r.task_base_url_source,
                r.meta.base_url,
                r.meta_base_url_source,
            )
        };
        assert_eq!(
            url(
                flags(None, None, Some("http://127.0.0.1:6/v1")),
                &e,
                Some(&w)
            ),
            (
                Some("http://127.0.0.1:6/v1".into()),
                Some(Source::Flag("base-url")),
                Some("http://127.0.0.1:8/v1".into()),
                Some(Source::Env(vars::OPENAI_BASE_URL))
            )
        );
        assert_eq!(
            url(flags(None, None, None), &e, Some(&w)).0,
            Some("http://127.0.0.1:8/v1".into())
        );
        // A variable of another provider does not count.
        assert_eq!(
            url(flags(None, None, None), &wrong_provider, Some(&w)),
            (
                Some("http://127.0.0.1:9/v1".into()),
                Some(Source::Workspace("models.base_url")),
                Some("http://127.0.0.1:9/v1".into()),
                Some(Source::TaskModel)
            )
        );
        assert_eq!(
            url(flags(Some("anthropic/x"), None, None), &none, None),
            (None, None, None, None)
        );
        // The meta model's own URL beats the task model's.
        let w2 = ws(&WS.replace(
            "[models]\n",
            "[models]\nmeta_base_url = \"http://127.0.0.1:5/v1\"\n",
        ));
        assert_eq!(
            url(flags(None, None, None), &none, Some(&w2)).2,
            Some("http://127.0.0.1:5/v1".into())
        );
    }

    #[test]
    fn key_variable_and_prices_come_from_the_workspace() {
        let w = ws(WS);
        let r = resolve_models(
            &flags(None, None, None),
            &env(&[]),
            Some(&w),
            &harness(None),
        )
        .unwrap();
        assert_eq!(r.task.api_key_env.as_deref(), Some("MY_KEY"));
        assert_eq!(
            r.meta.api_key_env.as_deref(),
            Some("MY_KEY"),
            "same provider"
        );
        assert_eq!(
            r.task.prices.get("openai-compatible/ws-model"),
            Some(&Price {
                input: 1.0,
                output: 2.0,
                cache_read: None,
                cache_write: None
            })
        );
        let r = resolve_models(&flags(None, None, None), &env(&[]), None, &harness(None)).unwrap();
        assert_eq!((r.task.api_key_env, r.task.prices.len()), (None, 0));
    }

    #[test]
    fn a_bad_model_name_says_where_it_came_from() {
        let e = env(&[(AUTOAGENT_MODEL, "gpt-5")]);
        let err = resolve_models(&flags(None, None, None), &e, None, &harness(None))
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"gpt-5\" (from $AUTOAGENT_MODEL)"), "{err}");
    }

    #[test]
    fn eval_settings_precedence() {
        let w = ws(
            "[eval]\nconcurrency = 7\nattempts = 5\nmax_retries = 3\nsandbox = \"local\"\ntasks = \"t\"\n\
             [sandbox]\ndocker_hosts = [\"unix:///ws-a.sock\", \"unix:///ws-b.sock\"]\n",
        );
        let flag_host = DockerHostEntry {
            url: "unix:///flag.sock".into(),
            slots: Some(3),
        };
        let given = EvalFlags {
            concurrency: Some(2),
            attempts: Some(4),
            max_retries: Some(1),
            sandbox: Some("docker".into()),
            tasks: Some("x".into()),
            timeout_multiplier: Some(2.0),
            docker_hosts: vec![flag_host.clone()],
        };
        let r = resolve_eval(&given, Some(&w), AttemptsDefault::Workspace);
        assert_eq!(
            (
                r.concurrency,
                r.attempts,
                r.max_retries,
                r.sandbox.as_deref(),
                r.timeout_multiplier
            ),
            (2, 4, 1, Some("docker"), 2.0)
        );
        assert_eq!(
            r.docker_hosts,
            [flag_host],
            "the flags replace the file's list"
        );
        let r = resolve_eval(&EvalFlags::default(), Some(&w), AttemptsDefault::Workspace);
        assert_eq!(
            r.docker_hosts
                .iter()
                .map(|h| h.url.as_str())
                .collect::<Vec<_>>(),
            ["unix:///ws-a.sock", "unix:///ws-b.sock"]
        );
        assert_eq!(
            (
                r.concurrency,
                r.attempts,
                r.max_retries,
                r.sandbox.as_deref(),
                r.tasks
            ),
            (7, 5, 3, Some("local"), PathBuf::from("t"))
        );
        // `eval` keeps Harbor's one attempt in a workspace.
        assert_eq!(
            resolve_eval(&EvalFlags::default(), Some(&w), AttemptsDefault::One).attempts,
            1
        );
        // Outside a workspace: Harbor's defaults.
        let r = resolve_eval(&EvalFlags::default(), None, AttemptsDefault::One);
        assert_eq!(
            (r.concurrency, r.attempts, r.max_retries, r.sandbox, r.tasks),
            (4, 1, 0, None, PathBuf::from("tasks"))
        );
        assert!(r.docker_hosts.is_empty());
    }
}
