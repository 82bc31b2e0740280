//! `task.toml` as Harbor 0.25 reads it (`models/task/config.py`).
//!
//! Every field has Harbor's default, unknown keys are ignored (pydantic's `extra="ignore"`),
//! and the legacy aliases (`version`, `allow_internet`, `memory`, `storage`) are accepted.
//! Floats accept integers, as TOML-to-pydantic does.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

/// The whole `task.toml`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TaskConfig {
    #[serde(alias = "version")]
    pub schema_version: SchemaVersion,
    pub source: Option<String>,
    pub multi_step_reward_strategy: Option<MultiStepRewardStrategy>,
    pub artifacts: Vec<ArtifactSpec>,
    pub task: Option<PackageInfo>,
    pub metadata: BTreeMap<String, toml::Value>,
    /// `[[steps]]`: a multi-step task when not empty.
    pub steps: Option<Vec<StepConfig>>,
    pub agent: AgentConfig,
    pub verifier: VerifierConfig,
    pub environment: EnvironmentConfig,
    pub solution: SolutionConfig,
}

/// `schema_version`, defaulting to Harbor's current "1.4".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SchemaVersion(pub String);

impl Default for SchemaVersion {
    fn default() -> Self {
        Self("1.4".to_owned())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MultiStepRewardStrategy {
    Mean,
    Final,
}

/// `[task]`: package info. When present, `name` is required and becomes the task's name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PackageInfo {
    pub name: String,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub authors: Vec<Author>,
    #[serde(default)]
    pub keywords: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Author {
    pub name: String,
    #[serde(default)]
    pub email: Option<String>,
}

/// An entry of `artifacts`: a bare path or a table with a destination.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ArtifactSpec {
    Path(String),
    Table {
        source: String,
        #[serde(default)]
        destination: Option<String>,
        #[serde(default)]
        exclude: Vec<String>,
    },
}

impl ArtifactSpec {
    pub fn source(&self) -> &str {
        match self {
            Self::Path(p) => p,
            Self::Table { source, .. } => source,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NetworkMode {
    NoNetwork,
    Public,
    Allowlist,
}

/// A user given as a name or a numeric id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum UserSpec {
    Name(String),
    Id(i64),
}

impl std::fmt::Display for UserSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Name(n) => f.write_str(n),
            Self::Id(i) => write!(f, "{i}"),
        }
    }
}

/// `[agent]`. `timeout_sec = None` means no limit (Harbor's docs wrongly say 600).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AgentConfig {
    pub timeout_sec: Option<f64>,
    pub user: Option<UserSpec>,
    pub network_mode: Option<NetworkMode>,
    pub allowed_hosts: Option<Vec<String>>,
}

/// One `[[steps]]` entry of a multi-step task (Harbor's `StepConfig`): the step's files are in
/// `steps/<name>/` (`instruction.md`, `tests/`, `solution/`, `workdir/` with an optional
/// `setup.sh`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepConfig {
    pub name: String,
    /// Overrides of `[agent]`: a `timeout_sec` or `user` left unset falls back to the task's.
    #[serde(default)]
    pub agent: AgentConfig,
    /// The step's verifier. Harbor reads it as a whole `VerifierConfig`, so its `timeout_sec`
    /// defaults to 600 s (not to the task's), and its `env` is merged over the task's.
    #[serde(default)]
    pub verifier: VerifierConfig,
    /// The remaining steps are skipped when this step's rewards are below it.
    #[serde(default)]
    pub min_reward: Option<MinReward>,
    /// Run after the step's setup and before its agent, beside the environment's own.
    #[serde(default)]
    pub healthcheck: Option<Healthcheck>,
    /// Collected after this step, beside the task's `artifacts`.
    #[serde(default)]
    pub artifacts: Vec<ArtifactSpec>,
}

/// `min_reward`: a number gates on the `reward` key, a table on each key it names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MinReward {
    Reward(f64),
    Keys(BTreeMap<String, f64>),
}

impl MinReward {
    /// `None` when `rewards` meet every threshold, else the first key that does not, as
    /// Harbor words it (a missing key or a missing result counts as minus infinity).
    pub fn failure(&self, rewards: Option<&BTreeMap<String, f64>>) -> Option<String> {
        let keys: Vec<(&str, f64)> = match self {
            Self::Reward(r) => vec![("reward", *r)],
            Self::Keys(m) => m.iter().map(|(k, v)| (k.as_str(), *v)).collect(),
        };
        for (key, threshold) in keys {
            let actual = rewards
                .and_then(|r| r.get(key).copied())
                .unwrap_or(f64::NEG_INFINITY);
            if actual < threshold {
                return Some(format!("{key}={actual} below min_reward {threshold}"));
            }
        }
        None
    }
}

/// `[verifier] environment_mode`: whether the verifier runs in the agent's sandbox or in a
/// container of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VerifierEnvironmentMode {
    Shared,
    Separate,
}

impl VerifierEnvironmentMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Shared => "shared",
            Self::Separate => "separate",
        }
    }
}

/// `[verifier]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VerifierConfig {
    pub timeout_sec: f64,
    pub env: BTreeMap<String, String>,
    pub user: Option<UserSpec>,
    pub environment_mode: Option<VerifierEnvironmentMode>,
    /// The separate verifier's environment, same schema as `[environment]`.
    pub environment: Option<EnvironmentConfig>,
    pub collect: Vec<CollectHook>,
    pub network_mode: Option<NetworkMode>,
    pub allowed_hosts: Option<Vec<String>>,
}

impl Default for VerifierConfig {
    fn default() -> Self {
        Self {
            timeout_sec: 600.0,
            env: BTreeMap::new(),
            user: None,
            environment_mode: None,
            environment: None,
            collect: Vec::new(),
            network_mode: None,
            allowed_hosts: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CollectHook {
    pub command: String,
    #[serde(default = "default_main")]
    pub service: String,
    #[serde(default = "default_collect_timeout")]
    pub timeout_sec: f64,
    #[serde(default)]
    pub user: Option<UserSpec>,
}

fn default_main() -> String {
    "main".to_owned()
}

fn default_collect_timeout() -> f64 {
    60.0
}

/// `[environment]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EnvironmentConfig {
    pub build_timeout_sec: f64,
    pub docker_image: Option<String>,
    pub os: String,
    pub cpus: Option<f64>,
    pub memory_mb: Option<u64>,
    pub storage_mb: Option<u64>,
    pub gpus: Option<u32>,
    pub gpu_types: Option<Vec<String>>,
    pub network_mode: NetworkMode,
    pub allowed_hosts: Option<Vec<String>>,
    pub env: BTreeMap<String, String>,
    pub workdir: Option<String>,
    pub skills_dir: Option<String>,
    pub healthcheck: Option<Healthcheck>,
    pub mcp_servers: Vec<toml::Value>,
}

impl Default for EnvironmentConfig {
    fn default() -> Self {
        Self {
            build_timeout_sec: 600.0,
            docker_image: None,
            os: "linux".to_owned(),
            cpus: None,
            memory_mb: None,
            storage_mb: None,
            gpus: None,
            gpu_types: None,
            network_mode: NetworkMode::Public,
            allowed_hosts: None,
            env: BTreeMap::new(),
            workdir: None,
            skills_dir: None,
            healthcheck: None,
            mcp_servers: Vec::new(),
        }
    }
}

/// The raw `[environment]` table, before the deprecated keys are folded in.
#[derive(Deserialize)]
#[serde(default)]
struct RawEnvironment {
    build_timeout_sec: f64,
    docker_image: Option<String>,
    os: String,
    cpus: Option<f64>,
    memory_mb: Option<u64>,
    storage_mb: Option<u64>,
    gpus: Option<u32>,
    gpu_types: Option<Vec<String>>,
    network_mode: Option<NetworkMode>,
    allowed_hosts: Option<Vec<String>>,
    allow_internet: Option<bool>,
    memory: Option<String>,
    storage: Option<String>,
    env: BTreeMap<String, String>,
    workdir: Option<String>,
    skills_dir: Option<String>,
    healthcheck: Option<Healthcheck>,
    mcp_servers: Vec<toml::Value>,
}

impl Default for RawEnvironment {
    fn default() -> Self {
        let d = EnvironmentConfig::default();
        Self {
            build_timeout_sec: d.build_timeout_sec,
            docker_image: None,
            os: d.os,
            cpus: None,
            memory_mb: None,
            storage_mb: None,
            gpus: None,
            gpu_types: None,
            network_mode: None,
            allowed_hosts: None,
            allow_internet: None,
            memory: None,
            storage: None,
            env: BTreeMap::new(),
            workdir: None,
            skills_dir: None,
            healthcheck: None,
            mcp_servers: Vec::new(),
        }
    }
}

impl<'de> Deserialize<'de> for EnvironmentConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let raw = RawEnvironment::deserialize(deserializer)?;
        let memory_mb = match (raw.memory_mb, raw.memory.as_deref()) {
            (Some(mb), _) => Some(mb),
            (None, Some(s)) => Some(parse_size_mb(s).map_err(D::Error::custom)?),
            (None, None) => None,
        };
        let storage_mb = match (raw.storage_mb, raw.storage.as_deref()) {
            (Some(mb), _) => Some(mb),
            (None, Some(s)) => Some(parse_size_mb(s).map_err(D::Error::custom)?),
            (None, None) => None,
        };
        let network_mode = match (raw.network_mode, raw.allow_internet) {
            (Some(m), _) => m,
            (None, Some(true)) | (None, None) => NetworkMode::Public,
            (None, Some(false)) => NetworkMode::NoNetwork,
        };
        let os = raw.os.to_ascii_lowercase();
        if os != "linux" && os != "windows" {
            return Err(D::Error::custom(format!(
                "os: expected \"linux\" or \"windows\", found \"{}\"",
                raw.os
            )));
        }
        Ok(Self {
            build_timeout_sec: raw.build_timeout_sec,
            docker_image: raw.docker_image,
            os,
            cpus: raw.cpus,
            memory_mb,
            storage_mb,
            gpus: raw.gpus,
            gpu_types: raw.gpu_types,
            network_mode,
            allowed_hosts: raw.allowed_hosts,
            env: raw.env,
            workdir: raw.workdir,
            skills_dir: raw.skills_dir,
            healthcheck: raw.healthcheck,
            mcp_servers: raw.mcp_servers,
        })
    }
}

/// Harbor's deprecated size strings: "2G", "512M", "1024K" → MiB (G×1024, K/1024).
fn parse_size_mb(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let err = || format!("expected a size like \"2G\", \"512M\" or \"1024K\", found \"{s}\"");
    let (num, unit) = t.split_at(t.len().saturating_sub(1));
    let n: f64 = num.trim().parse().map_err(|_| err())?;
    let mb = match unit.to_ascii_uppercase().as_str() {
        "G" => n * 1024.0,
        "M" => n,
        "K" => n / 1024.0,
        _ => return Err(err()),
    };
    Ok(mb as u64)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Healthcheck {
    pub command: String,
    #[serde(default = "d5")]
    pub interval_sec: f64,
    #[serde(default = "d30")]
    pub timeout_sec: f64,
    #[serde(default)]
    pub start_period_sec: f64,
    #[serde(default = "d5")]
    pub start_interval_sec: f64,
    #[serde(default = "d3")]
    pub retries: u32,
}

fn d5() -> f64 {
    5.0
}
fn d30() -> f64 {
    30.0
}
fn d3() -> u32 {
    3
}

/// `[solution]`: env for `solve.sh`, taking precedence over the agent env.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SolutionConfig {
    pub env: BTreeMap<String, String>,
}

/// The longest time any phase may be given (a year): beyond it, durations overflow.
pub const MAX_SECONDS: f64 = 365.0 * 24.0 * 3600.0;

impl VerifierConfig {
    /// This verifier's own mode, before inheritance: explicit, else separate when it has an
    /// environment, else not said here (Harbor's `_resolve_mode`).
    fn own_mode(&self) -> Option<VerifierEnvironmentMode> {
        self.environment_mode.or_else(|| {
            self.environment
                .is_some()
                .then_some(VerifierEnvironmentMode::Separate)
        })
    }
}

impl TaskConfig {
    /// Whether `[[steps]]` makes this a multi-step task (an empty list does not).
    pub fn has_steps(&self) -> bool {
        self.steps.as_ref().is_some_and(|s| !s.is_empty())
    }

    /// The steps, in order (none for a single-step task).
    pub fn step_list(&self) -> &[StepConfig] {
        self.steps.as_deref().unwrap_or_default()
    }

    /// Where the single-step verifier runs (`resolve_task_verifier_mode`).
    pub fn verifier_mode(&self) -> VerifierEnvironmentMode {
        self.verifier
            .own_mode()
            .unwrap_or(VerifierEnvironmentMode::Shared)
    }

    /// Where a step's verifier runs: the step's own mode, else the task's
    /// (`resolve_step_verifier_mode`).
    pub fn step_verifier_mode(&self, step: &StepConfig) -> VerifierEnvironmentMode {
        step.verifier
            .own_mode()
            .unwrap_or_else(|| self.verifier_mode())
    }

    /// The environment a separate verifier runs in (`resolve_effective_verifier_env_config`):
    /// the step's `[verifier.environment]`, else the task's, else a copy of `[environment]`.
    /// `None` when the verifier is shared.
    pub fn verifier_environment(&self, step: Option<&StepConfig>) -> Option<EnvironmentConfig> {
        let mode = match step {
            Some(s) => self.step_verifier_mode(s),
            None => self.verifier_mode(),
        };
        if mode != VerifierEnvironmentMode::Separate {
            return None;
        }
        step.and_then(|s| s.verifier.environment.clone())
            .or_else(|| self.verifier.environment.clone())
            .or_else(|| Some(self.environment.clone()))
    }

    /// Checks the numbers serde cannot: finite, not negative, not absurd. Returns the field and
    /// what was expected.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let secs = check_secs;
        if let Some(t) = self.agent.timeout_sec {
            secs("agent.timeout_sec", t)?;
        }
        secs("verifier.timeout_sec", self.verifier.timeout_sec)?;
        check_environment("environment", &self.environment)?;
        if let Some(e) = &self.verifier.environment {
            check_environment("verifier.environment", e)?;
        }
        for (i, c) in self.verifier.collect.iter().enumerate() {
            secs(&format!("verifier.collect[{i}].timeout_sec"), c.timeout_sec)?;
        }
        shared_without_environment("verifier", &self.verifier)?;
        let mut names = std::collections::BTreeSet::new();
        for (i, step) in self.step_list().iter().enumerate() {
            let at = |f: &str| format!("steps[{i}].{f}");
            if let Err(why) = check_step_name(&step.name) {
                return Err((at("name"), why));
            }
            // Step names are directory names: two that differ only in case would collide on
            // a case-insensitive file system, as Harbor's `step_name_key` refuses.
            if !names.insert(step.name.to_lowercase()) {
                return Err((
                    at("name"),
                    format!(
                        "duplicate step name {:?}: step names must be unique",
                        step.name
                    ),
                ));
            }
            if let Some(t) = step.agent.timeout_sec {
                secs(&at("agent.timeout_sec"), t)?;
            }
            secs(&at("verifier.timeout_sec"), step.verifier.timeout_sec)?;
            if let Some(h) = &step.healthcheck {
                check_healthcheck(&at("healthcheck"), h)?;
            }
            if let Some(e) = &step.verifier.environment {
                check_environment(&at("verifier.environment"), e)?;
            }
            shared_without_environment(&format!("steps[{i}].verifier"), &step.verifier)?;
            for (j, c) in step.verifier.collect.iter().enumerate() {
                secs(
                    &at(&format!("verifier.collect[{j}].timeout_sec")),
                    c.timeout_sec,
                )?;
            }
        }
        Ok(())
    }
}

/// Seconds a phase may be given: finite, not negative, not absurd.
fn check_secs(field: &str, v: f64) -> Result<(), (String, String)> {
    if v.is_finite() && (0.0..=MAX_SECONDS).contains(&v) {
        Ok(())
    } else {
        Err((
            field.to_owned(),
            format!("expected seconds between 0 and {MAX_SECONDS}, found {v}"),
        ))
    }
}

fn check_healthcheck(at: &str, h: &Healthcheck) -> Result<(), (String, String)> {
    check_secs(&format!("{at}.interval_sec"), h.interval_sec)?;
    check_secs(&format!("{at}.timeout_sec"), h.timeout_sec)?;
    check_secs(&format!("{at}.start_period_sec"), h.start_period_sec)?;
    check_secs(&format!("{at}.start_interval_sec"), h.start_interval_sec)
}

/// The numbers of an environment table (`[environment]`, or a verifier's).
fn check_environment(at: &str, e: &EnvironmentConfig) -> Result<(), (String, String)> {
    check_secs(&format!("{at}.build_timeout_sec"), e.build_timeout_sec)?;
    if let Some(h) = &e.healthcheck {
        check_healthcheck(&format!("{at}.healthcheck"), h)?;
    }
    if let Some(c) = e.cpus
        && !(c.is_finite() && c > 0.0 && c <= 4096.0)
    {
        return Err((
            format!("{at}.cpus"),
            format!("expected a number of CPUs above 0, found {c}"),
        ));
    }
    if let Some(m) = e.memory_mb
        && !(1..=(1 << 30)).contains(&m)
    {
        return Err((
            format!("{at}.memory_mb"),
            format!("expected MiB between 1 and 2^30, found {m}"),
        ));
    }
    Ok(())
}

/// Harbor refuses `environment_mode = "shared"` beside a verifier environment.
fn shared_without_environment(at: &str, v: &VerifierConfig) -> Result<(), (String, String)> {
    if v.environment_mode == Some(VerifierEnvironmentMode::Shared) && v.environment.is_some() {
        return Err((
            format!("{at}.environment_mode"),
            format!(
                "\"shared\" is incompatible with [{at}.environment]; either omit the environment or set environment_mode = \"separate\""
            ),
        ));
    }
    Ok(())
}

/// Harbor's `validate_step_name`: a step name is one portable directory name.
fn check_step_name(name: &str) -> Result<(), String> {
    const DEVICES: [&str; 22] = [
        "CON", "PRN", "AUX", "NUL", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8",
        "COM9", "LPT1", "LPT2", "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9",
    ];
    let stem = name
        .split('.')
        .next()
        .unwrap_or_default()
        .trim_end_matches(' ');
    let bad = name.trim().is_empty()
        || name == "."
        || name == ".."
        || name.ends_with(['.', ' '])
        || name
            .chars()
            .any(|c| c.is_control() || "<>:\"/\\|?*".contains(c))
        || DEVICES.iter().any(|d| d.eq_ignore_ascii_case(stem));
    if bad {
        return Err(format!(
            "invalid step name {name:?}: expected a non-empty, portable directory name, without path separators, control characters, Windows reserved characters or device names, or trailing dots or spaces"
        ));
    }
    if name.len() > 255 {
        return Err(format!(
            "invalid step name {name:?}: at most 255 UTF-8 bytes"
        ));
    }
    Ok(())
}

/// Resolves `${VAR}` and `${VAR:-default}` templates from the given lookup
/// (Harbor's `utils/env.py: resolve_env_vars`). An unset variable without a default
/// becomes an empty string.
pub fn resolve_env_template(value: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return out;
        };
        let expr = &after[..end];
        let (name, default) = match expr.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (expr, None),
        };
        match lookup(name) {
            Some(v) if !(v.is_empty() && default.is_some()) => out.push_str(&v),
            _ => out.push_str(default.unwrap_or("")),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn empty_file_gives_harbor_defaults() {
        let c: TaskConfig = toml::from_str("").unwrap();
        assert_eq!(c.schema_version.0, "1.4");
        assert_eq!(c.agent.timeout_sec, None);
        assert_eq!(c.verifier.timeout_sec, 600.0);
        assert_eq!(c.environment.build_timeout_sec, 600.0);
        assert_eq!(c.environment.network_mode, NetworkMode::Public);
        assert_eq!(c.environment.cpus, None);
        assert_eq!(c.environment.memory_mb, None);
        assert_eq!(c.environment.os, "linux");
    }

    #[test]
    fn aliases_and_unknown_keys() {
        let c: TaskConfig = toml::from_str(
            r#"
version = "1.0"
whatever = 3
[environment]
memory = "2G"
storage = "512M"
allow_internet = false
cpus = 2
OS = "x"
[agent]
timeout_sec = 3
user = 1000
[unknown_section]
a = 1
"#,
        )
        .unwrap();
        assert_eq!(c.schema_version.0, "1.0");
        assert_eq!(c.environment.memory_mb, Some(2048));
        assert_eq!(c.environment.storage_mb, Some(512));
        assert_eq!(c.environment.network_mode, NetworkMode::NoNetwork);
        assert_eq!(c.environment.cpus, Some(2.0));
        assert_eq!(c.agent.timeout_sec, Some(3.0));
        assert_eq!(c.agent.user, Some(UserSpec::Id(1000)));
    }

    #[test]
    fn network_mode_wins_over_allow_internet() {
        let c: TaskConfig =
            toml::from_str("[environment]\nallow_internet = false\nnetwork_mode = \"public\"\n")
                .unwrap();
        assert_eq!(c.environment.network_mode, NetworkMode::Public);
    }

    #[test]
    fn env_templates() {
        let look = |k: &str| (k == "HOME").then(|| "/root".to_owned());
        assert_eq!(resolve_env_template("${HOME}/x", look), "/root/x");
        assert_eq!(resolve_env_template("${NOPE:-dflt}", look), "dflt");
        assert_eq!(resolve_env_template("${NOPE}", look), "");
        assert_eq!(resolve_env_template("plain", look), "plain");
    }

    #[test]
    fn steps_and_verifier_modes_resolve_as_harbor_does() {
        let c: TaskConfig = toml::from_str(
            r#"
[agent]
timeout_sec = 30
[[steps]]
name = "one"
min_reward = 1.0
[steps.agent]
user = "agent"
[[steps]]
name = "two"
min_reward = { tests = 0.5 }
[steps.verifier]
environment_mode = "separate"
timeout_sec = 10
[steps.verifier.environment]
docker_image = "grader:1"
"#,
        )
        .unwrap();
        c.validate().unwrap();
        assert!(c.has_steps());
        let [one, two] = c.step_list() else {
            panic!("{c:?}")
        };
        assert_eq!(
            one.verifier.timeout_sec, 600.0,
            "a step's verifier has its own default"
        );
        assert_eq!(c.step_verifier_mode(one), VerifierEnvironmentMode::Shared);
        assert_eq!(c.step_verifier_mode(two), VerifierEnvironmentMode::Separate);
        assert_eq!(c.verifier_environment(Some(one)), None);
        assert_eq!(
            c.verifier_environment(Some(two))
                .and_then(|e| e.docker_image),
            Some("grader:1".to_owned())
        );
        let r = BTreeMap::from([("reward".to_owned(), 0.5)]);
        assert_eq!(
            one.min_reward.as_ref().unwrap().failure(Some(&r)),
            Some("reward=0.5 below min_reward 1".to_owned())
        );
        assert_eq!(
            two.min_reward.as_ref().unwrap().failure(Some(&r)),
            Some("tests=-inf below min_reward 0.5".to_owned())
        );
        assert_eq!(
            one.min_reward.as_ref().unwrap().failure(None).is_some(),
            true
        );

        // A verifier environment alone means separate; without one, separate copies
        // [environment].
        let c: TaskConfig = toml::from_str(
            "[environment]\ncpus = 2\n[verifier]\nenvironment_mode = \"separate\"\n",
        )
        .unwrap();
        assert_eq!(c.verifier_mode(), VerifierEnvironmentMode::Separate);
        assert_eq!(c.verifier_environment(None).unwrap().cpus, Some(2.0));
        let c: TaskConfig =
            toml::from_str("[verifier.environment]\ndocker_image = \"g\"\n").unwrap();
        assert_eq!(c.verifier_mode(), VerifierEnvironmentMode::Separate);

        let bad = |text: &str| {
            toml::from_str::<TaskConfig>(text)
                .unwrap()
                .validate()
                .unwrap_err()
        };
        assert_eq!(
            bad("[verifier]\nenvironment_mode = \"shared\"\n[verifier.environment]\ncpus = 1\n").0,
            "verifier.environment_mode"
        );
        assert_eq!(bad("[[steps]]\nname = \"a/b\"\n").0, "steps[0].name");
        assert_eq!(
            bad("[[steps]]\nname = \"x\"\n[[steps]]\nname = \"X\"\n").0,
            "steps[1].name"
        );
        assert_eq!(bad("[[steps]]\nname = \"nul.txt\"\n").0, "steps[0].name");
        assert_eq!(
            bad("[[steps]]\nname = \"a\"\n[steps.healthcheck]\ncommand = \"true\"\ntimeout_sec = -1\n").0,
            "steps[0].healthcheck.timeout_sec"
        );
        assert_eq!(
            bad("[verifier.environment]\ncpus = 0\n").0,
            "verifier.environment.cpus"
        );
    }

    #[test]
    fn size_strings() {
        assert_eq!(parse_size_mb("1024K"), Ok(1));
        assert!(parse_size_mb("lots").is_err());
    }
}
