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
    pub steps: Option<Vec<toml::Value>>,
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

/// `[verifier]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VerifierConfig {
    pub timeout_sec: f64,
    pub env: BTreeMap<String, String>,
    pub user: Option<UserSpec>,
    pub environment_mode: Option<String>,
    pub environment: Option<toml::Value>,
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

impl TaskConfig {
    /// Checks the numbers serde cannot: finite, not negative, not absurd. Returns the field and
    /// what was expected.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let secs = |field: &str, v: f64| {
            if v.is_finite() && (0.0..=MAX_SECONDS).contains(&v) {
                Ok(())
            } else {
                Err((
                    field.to_owned(),
                    format!("expected seconds between 0 and {MAX_SECONDS}, found {v}"),
                ))
            }
        };
        if let Some(t) = self.agent.timeout_sec {
            secs("agent.timeout_sec", t)?;
        }
        secs("verifier.timeout_sec", self.verifier.timeout_sec)?;
        secs(
            "environment.build_timeout_sec",
            self.environment.build_timeout_sec,
        )?;
        if let Some(h) = &self.environment.healthcheck {
            secs("environment.healthcheck.interval_sec", h.interval_sec)?;
            secs("environment.healthcheck.timeout_sec", h.timeout_sec)?;
            secs(
                "environment.healthcheck.start_period_sec",
                h.start_period_sec,
            )?;
            secs(
                "environment.healthcheck.start_interval_sec",
                h.start_interval_sec,
            )?;
        }
        for (i, c) in self.verifier.collect.iter().enumerate() {
            secs(&format!("verifier.collect[{i}].timeout_sec"), c.timeout_sec)?;
        }
        if let Some(c) = self.environment.cpus
            && !(c.is_finite() && c > 0.0 && c <= 4096.0)
        {
            return Err((
                "environment.cpus".into(),
                format!("expected a number of CPUs above 0, found {c}"),
            ));
        }
        if let Some(m) = self.environment.memory_mb
            && !(1..=(1 << 30)).contains(&m)
        {
            return Err((
                "environment.memory_mb".into(),
                format!("expected MiB between 1 and 2^30, found {m}"),
            ));
        }
        Ok(())
    }
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
    fn size_strings() {
        assert_eq!(parse_size_mb("1024K"), Ok(1));
        assert!(parse_size_mb("lots").is_err());
    }
}
