//! Settings, resolved once for every command.
//!
//! * [`file`]: `autoagent.toml`, the workspace's settings file (its format, defaults, template).
//! * [`env_vars`]: every environment variable autoagent reads, by name.
//! * [`resolve`]: one precedence for every command — flags > environment > workspace
//!   `autoagent.toml` > harness > defaults — combined into resolved structs that remember where
//!   each value came from.

pub mod accept;
pub mod file;
pub mod resolve;

pub use accept::{AcceptConfig, AcceptConfigError, PolicyKind, StageSelect};
pub use file::{
    ConfigError, DockerHostEntry, Holdout, KubernetesSection, SandboxSection, WorkspaceConfig,
};
pub use resolve::{
    AttemptsDefault, EvalFlags, EvalSettings, HarnessModel, ModelFlags, ResolvedModels,
    SettingsError, Source, Sourced, resolve_eval, resolve_models,
};

/// Every environment variable autoagent reads (the providers' own are defined where they are
/// read, in `autoagent-llm`, and listed here too).
pub mod env_vars {
    pub use autoagent_llm::env::vars::{
        ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL, OPENAI_API_KEY, OPENAI_BASE_URL,
    };
    /// The task model (`provider/model`) when no flag names one.
    pub const AUTOAGENT_MODEL: &str = "AUTOAGENT_MODEL";
    /// The meta-agent's model when no flag names one.
    pub const AUTOAGENT_META_MODEL: &str = "AUTOAGENT_META_MODEL";
    /// The log filter (`tracing` syntax: `warn`, `autoagent_eval=debug`).
    pub const AUTOAGENT_LOG: &str = "AUTOAGENT_LOG";
    /// `1` makes tests that need Docker fail instead of skip (CI sets it).
    pub const AUTOAGENT_REQUIRE_DOCKER: &str = "AUTOAGENT_REQUIRE_DOCKER";
}
