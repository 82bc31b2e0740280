//! `autoagent.toml`: the workspace's settings. Every command reads it from the current folder;
//! flags override it.

use std::collections::HashMap;
use std::path::Path;

use autoagent_llm::Price;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkspaceConfig {
    pub models: ModelsSection,
    pub eval: EvalSection,
    pub optimize: OptimizeSection,
    /// How the loop decides keep or discard (`[accept]`).
    pub accept: crate::accept::AcceptConfig,
    /// Where Docker sandboxes run (`[sandbox]`).
    pub sandbox: SandboxSection,
    /// A registry dataset for `eval` (`[tasks]`).
    pub tasks: TasksSection,
}

/// `[tasks]`: a dataset from a Harbor registry, used by `eval` when no `-p` is given.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TasksSection {
    /// `NAME@VERSION` in `registry`.
    pub dataset: Option<String>,
    /// A `registry.json` path or URL.
    pub registry: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxSection {
    /// The Docker daemons trials run on, as `DOCKER_HOST`-style URLs (`unix:///path`,
    /// `tcp://host:port`, `ssh://[user@]host[:port]`), each optionally with its slots:
    /// `docker_hosts = ["unix:///var/run/docker.sock", { url = "ssh://me@box", slots = 16 }]`.
    /// Empty: the one daemon `$DOCKER_HOST` or the default socket names. With two or more,
    /// trials are spread over them (a pool; see `autoagent-sandbox`).
    pub docker_hosts: Vec<DockerHostEntry>,
    /// Where `--sandbox kubernetes` runs pods (`[sandbox.kubernetes]`).
    pub kubernetes: KubernetesSection,
}

/// `[sandbox.kubernetes]`: the cluster comes from the usual kube config (`$KUBECONFIG`,
/// `~/.kube/config`, in-cluster); these say where in it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KubernetesSection {
    /// The namespace trial pods go in; unset: the kube config context's, else `default`.
    pub namespace: Option<String>,
    /// Where images built from a task's Dockerfile are pushed for the cluster to pull
    /// (`registry.example.com:5000/team`); unset: only tasks with a `docker_image` run.
    pub registry: Option<String>,
    /// A context of the kube config; unset: its current context.
    pub context: Option<String>,
}

impl KubernetesSection {
    /// The first field that cannot be right, and why.
    fn check(&self) -> Result<(), (String, String)> {
        if let Some(ns) = &self.namespace {
            let ok = !ns.is_empty()
                && ns.len() <= 63
                && ns
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !ns.starts_with('-')
                && !ns.ends_with('-');
            if !ok {
                return Err((
                    "sandbox.kubernetes.namespace".into(),
                    format!(
                        "expected a namespace name (at most 63 lowercase letters, digits and '-', not at either end), found {ns:?}"
                    ),
                ));
            }
        }
        if let Some(r) = &self.registry
            && (r.trim().is_empty() || r.contains("://") || r.chars().any(char::is_whitespace))
        {
            return Err((
                "sandbox.kubernetes.registry".into(),
                format!(
                    "expected a registry and optional path without a scheme (\"registry.example.com:5000/team\"), found {r:?}"
                ),
            ));
        }
        if self.context.as_deref().is_some_and(|c| c.trim().is_empty()) {
            return Err((
                "sandbox.kubernetes.context".into(),
                "expected a context name of the kube config, found an empty string".into(),
            ));
        }
        Ok(())
    }
}

/// One Docker host of `[sandbox].docker_hosts`: a URL, or `{ url, slots }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerHostEntry {
    pub url: String,
    /// Trials the host takes before the others are preferred; `None`: its CPU count.
    pub slots: Option<usize>,
}

impl DockerHostEntry {
    /// A `--docker-host` value: `URL` or `URL=SLOTS`.
    pub fn parse_flag(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (url, slots) = match s.rsplit_once('=') {
            Some((url, n)) if !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()) => {
                let n: usize = n
                    .parse()
                    .map_err(|_| format!("{s:?}: bad slot count {n:?}"))?;
                (url, Some(n))
            }
            _ => (s, None),
        };
        let entry = Self {
            url: url.to_owned(),
            slots,
        };
        entry.check()?;
        Ok(entry)
    }

    /// The URL as a host, and a slot count of at least 1.
    pub fn check(&self) -> Result<autoagent_sandbox::docker::DockerHost, String> {
        let host = self
            .url
            .parse::<autoagent_sandbox::docker::DockerHost>()
            .map_err(|e| e.to_string())?;
        if self.slots == Some(0) {
            return Err(format!("{}: slots must be at least 1", self.url));
        }
        Ok(host)
    }
}

impl Serialize for DockerHostEntry {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        match self.slots {
            None => s.serialize_str(&self.url),
            Some(n) => {
                let mut m = s.serialize_map(Some(2))?;
                m.serialize_entry("url", &self.url)?;
                m.serialize_entry("slots", &n)?;
                m.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for DockerHostEntry {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Entry;
        impl<'de> serde::de::Visitor<'de> for Entry {
            type Value = DockerHostEntry;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(
                    "a Docker host URL (\"unix:///var/run/docker.sock\") or { url = \"...\", slots = N }",
                )
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(DockerHostEntry {
                    url: v.to_owned(),
                    slots: None,
                })
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                struct Table {
                    url: String,
                    slots: Option<usize>,
                }
                let t = Table::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(DockerHostEntry {
                    url: t.url,
                    slots: t.slots,
                })
            }
        }
        d.deserialize_any(Entry)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelsSection {
    /// The task agent's model (`provider/model`); the harness's `agent.model` when unset.
    pub task: Option<String>,
    /// The meta-agent's model; defaults to the task model ("model empathy").
    pub meta: Option<String>,
    /// Base URL for the task model's provider (a gateway, a local server).
    pub base_url: Option<String>,
    /// Base URL for the meta model; defaults to `base_url` when both models share a provider.
    pub meta_base_url: Option<String>,
    /// The environment variable holding the task model's key, when not the provider's usual one.
    pub api_key_env: Option<String>,
    /// Prices (USD per million tokens) that extend or override the shipped table, keyed by
    /// `model` or `provider/model`: `[models.prices."openai-compatible/qwen3-coder"]`
    /// `input = 0.2`, `output = 0.6`. A model without a price has an unknown cost, never 0.
    pub prices: HashMap<String, Price>,
    /// Stream answers (server-sent events): `true` or `false`; unset streams only where the
    /// provider needs it (Anthropic with a large `max_tokens`).
    pub stream: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalSection {
    /// The tasks folder (Harbor format), relative to the workspace.
    pub tasks: String,
    /// `docker`, `local` or `kubernetes`; unset picks Docker when a daemon answers.
    pub sandbox: Option<String>,
    /// Trials at once.
    pub concurrency: usize,
    /// Attempts per task in each evaluation (k). Three by default: see the README.
    pub attempts: u32,
    /// Retries of a trial that failed for an infrastructure reason.
    pub max_retries: u32,
    pub timeout_multiplier: f64,
}

impl Default for EvalSection {
    fn default() -> Self {
        Self {
            tasks: "tasks".to_owned(),
            sandbox: None,
            concurrency: 4,
            attempts: 3,
            max_retries: 2,
            timeout_multiplier: 1.0,
        }
    }
}

/// A holdout given as a fraction of the tasks (picked by a stable hash) or as task names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Holdout {
    Fraction(f64),
    Tasks(Vec<String>),
}

impl Default for Holdout {
    fn default() -> Self {
        Self::Fraction(0.0)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimizeSection {
    /// Stop once the ledger has this many experiments after the baseline.
    pub max_iterations: Option<u32>,
    /// Stop after this many hours (of this invocation).
    pub hours: Option<f64>,
    /// Stop once task and meta spend together reach this many dollars.
    pub budget_usd: Option<f64>,
    pub holdout: Holdout,
    /// The meta-agent's turn budget per session.
    pub meta_max_turns: u32,
    /// The meta-agent's token budget per session (prompt + completion).
    pub meta_max_tokens: u64,
    /// Attempts per task of a spot check.
    pub spot_check_attempts: u32,
}

impl Default for OptimizeSection {
    fn default() -> Self {
        Self {
            max_iterations: None,
            hours: None,
            budget_usd: None,
            holdout: Holdout::default(),
            meta_max_turns: 60,
            meta_max_tokens: 3_000_000,
            spot_check_attempts: 1,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    #[error("{path}: field `{field}`: {message}")]
    Field {
        path: String,
        field: String,
        message: String,
    },
}

impl WorkspaceConfig {
    /// Reads `autoagent.toml`; a missing file gives the defaults.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let p = path.display().to_string();
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => {
                return Err(ConfigError::Invalid {
                    path: p,
                    message: e.to_string(),
                });
            }
        };
        let de = toml::Deserializer::parse(&text).map_err(|e| ConfigError::Invalid {
            path: p.clone(),
            message: autoagent_harbor::task::one_line(&e.to_string()),
        })?;
        let cfg: Self = serde_path_to_error::deserialize(de).map_err(|e| ConfigError::Field {
            path: p.clone(),
            field: e.path().to_string(),
            message: autoagent_harbor::task::one_line(&e.into_inner().to_string()),
        })?;
        cfg.check().map_err(|(field, message)| ConfigError::Field {
            path: p,
            field,
            message,
        })?;
        Ok(cfg)
    }

    fn check(&self) -> Result<(), (String, String)> {
        if self.eval.attempts == 0 {
            return Err(("eval.attempts".into(), "must be at least 1".into()));
        }
        if self.eval.concurrency == 0 {
            return Err(("eval.concurrency".into(), "must be at least 1".into()));
        }
        let m = self.eval.timeout_multiplier;
        if !(m.is_finite() && m > 0.0 && m <= 1000.0) {
            return Err((
                "eval.timeout_multiplier".into(),
                format!("expected a number above 0 (at most 1000), found {m}"),
            ));
        }
        if let Some(s) = &self.eval.sandbox
            && !["docker", "local", "kubernetes"].contains(&s.as_str())
        {
            return Err((
                "eval.sandbox".into(),
                format!("expected \"docker\", \"local\" or \"kubernetes\", found {s:?}"),
            ));
        }
        self.sandbox.kubernetes.check()?;
        if let Err(crate::accept::AcceptConfigError::Field { field, message }) =
            self.accept.validate()
        {
            return Err((format!("accept.{field}"), message));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, h) in self.sandbox.docker_hosts.iter().enumerate() {
            let field = format!("sandbox.docker_hosts[{i}]");
            let host = h.check().map_err(|m| (field.clone(), m))?;
            if !seen.insert(host) {
                return Err((field, format!("{} is listed twice", h.url)));
            }
        }
        if let Holdout::Fraction(f) = self.optimize.holdout
            && !(0.0..1.0).contains(&f)
        {
            return Err((
                "optimize.holdout".into(),
                format!("a fraction must be in [0, 1), found {f}"),
            ));
        }
        Ok(())
    }
}

/// The `autoagent.toml` that `autoagent init` writes: every setting, commented.
pub const TEMPLATE: &str = r#"# autoagent workspace settings. Flags override these (e.g. --model, --hours).

[models]
# The task agent's model, `provider/model`: anthropic/claude-sonnet-4-5, openai/gpt-5,
# openai-responses/gpt-5, or openai-compatible/NAME with base_url (vLLM, llama.cpp, Ollama).
task = "anthropic/claude-sonnet-4-5"
# The meta-agent's model; the task model when unset.
# meta = "anthropic/claude-sonnet-4-5"
# base_url = "http://127.0.0.1:8000/v1"
# Prices in USD per million tokens, for models the shipped table does not know:
# [models.prices."openai-compatible/qwen3-coder"]
# input = 0.2
# output = 0.6

[eval]
tasks = "tasks"
# sandbox = "docker"        # or "local", "kubernetes"; default: docker when a daemon answers
concurrency = 4
attempts = 3                # k: trials per task per evaluation
max_retries = 2             # retries of infrastructure failures

[sandbox]
# The Docker daemons trials run on; with two or more, each trial goes to the one with the most
# free slots (default: its CPU count), and one that stops answering is drained. Default: the
# daemon $DOCKER_HOST names, else the local socket. The CLI's --docker-host replaces this list.
# docker_hosts = [
#   "unix:///var/run/docker.sock",
#   { url = "ssh://me@build-1", slots = 16 },
# ]

# [sandbox.kubernetes]       # for sandbox = "kubernetes": one pod per trial
# namespace = "default"      # default: the kube config context's namespace
# registry = "registry.example.com:5000/team"   # where Dockerfile tasks' images are pushed
# context = "kind-kind"      # default: the kube config's current context

[optimize]
# max_iterations = 50
# hours = 24
# budget_usd = 50
holdout = 0.0               # a fraction of the tasks, or a list of task names
meta_max_turns = 60

[accept]
# How a proposal is kept or discarded (see the optimize crate's README for the measured tables):
# "sequential" compares per task in looks and spends attempts where the doubt is; "greedy" runs
# k attempts on every task against the incumbent's stored total (k = 1 is the original rule);
# "staged" screens on a slice of the tasks first.
policy = "sequential"
# k = 3                     # greedy: attempts per task
# z_accept = 1.5            # sequential: keep at this z
# cap = 12                  # sequential: at most this many attempts per task
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_parses_and_errors_name_the_field() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("autoagent.toml");
        std::fs::write(&p, TEMPLATE).unwrap();
        let c = WorkspaceConfig::load(&p).unwrap();
        assert_eq!(c.eval.attempts, 3);
        assert_eq!(
            c.models.task.as_deref(),
            Some("anthropic/claude-sonnet-4-5")
        );
        std::fs::write(&p, "[eval]\nattempts = \"three\"\n").unwrap();
        let e = WorkspaceConfig::load(&p).unwrap_err().to_string();
        assert!(
            e.contains("eval.attempts") && e.contains("autoagent.toml"),
            "{e}"
        );
        std::fs::write(&p, "[optimize]\nholdout = [\"a\", \"b\"]\nhuors = 3\n").unwrap();
        let e = WorkspaceConfig::load(&p).unwrap_err().to_string();
        assert!(e.contains("unknown field `huors`"), "{e}");
        std::fs::write(&p, "[accept]\npolicy = \"greedy\"\nk = 0\n").unwrap();
        let e = WorkspaceConfig::load(&p).unwrap_err().to_string();
        assert!(e.contains("accept.k") && e.contains("at least 1"), "{e}");
        std::fs::write(&p, "[accept]\npolicy = \"fancy\"\n").unwrap();
        let e = WorkspaceConfig::load(&p).unwrap_err().to_string();
        assert!(
            e.contains("accept.policy") && e.contains("sequential"),
            "{e}"
        );
        std::fs::write(
            &p,
            "[sandbox]\ndocker_hosts = [\"unix:///a.sock\", { url = \"tcp://h:2375\", slots = 8 }]\n",
        )
        .unwrap();
        let c = WorkspaceConfig::load(&p).unwrap();
        assert_eq!(
            c.sandbox.docker_hosts,
            [
                DockerHostEntry {
                    url: "unix:///a.sock".into(),
                    slots: None
                },
                DockerHostEntry {
                    url: "tcp://h:2375".into(),
                    slots: Some(8)
                }
            ]
        );
        for (text, wanted) in [
            (
                "[sandbox]\ndocker_hosts = [\"unix:///a.sock\", \"/b.sock\"]\n",
                "sandbox.docker_hosts[1]",
            ),
            (
                "[sandbox]\ndocker_hosts = [{ url = \"unix:///a.sock\", slots = 0 }]\n",
                "at least 1",
            ),
            (
                "[sandbox]\ndocker_hosts = [{ url = \"unix:///a.sock\", slot = 2 }]\n",
                "unknown field `slot`",
            ),
            (
                "[sandbox]\ndocker_hosts = [\"unix:///a.sock\", \"unix:///a.sock\"]\n",
                "listed twice",
            ),
            ("[sandbox]\ndocker_hosts = [3]\n", "a Docker host URL"),
        ] {
            std::fs::write(&p, text).unwrap();
            let e = WorkspaceConfig::load(&p).unwrap_err().to_string();
            assert!(
                e.contains(wanted) && e.contains("sandbox.docker_hosts"),
                "{text}: {e}"
            );
        }
        assert_eq!(
            DockerHostEntry::parse_flag("unix:///a.sock=4").unwrap(),
            DockerHostEntry {
                url: "unix:///a.sock".into(),
                slots: Some(4)
            }
        );
        assert!(DockerHostEntry::parse_flag("a.sock").is_err());
        std::fs::write(
            &p,
            "[eval]\nsandbox = \"kubernetes\"\n[sandbox.kubernetes]\nnamespace = \"trials\"\nregistry = \"registry.local:5000/team\"\ncontext = \"kind-kind\"\n",
        )
        .unwrap();
        let c = WorkspaceConfig::load(&p).unwrap();
        assert_eq!(
            c.sandbox.kubernetes,
            KubernetesSection {
                namespace: Some("trials".into()),
                registry: Some("registry.local:5000/team".into()),
                context: Some("kind-kind".into()),
            }
        );
        for (text, field, wanted) in [
            (
                "namespace = \"My_NS\"",
                "sandbox.kubernetes.namespace",
                "namespace name",
            ),
            (
                "registry = \"https://r.io\"",
                "sandbox.kubernetes.registry",
                "without a scheme",
            ),
            ("context = \"\"", "sandbox.kubernetes.context", "empty"),
            (
                "namspace = \"x\"",
                "sandbox.kubernetes",
                "unknown field `namspace`",
            ),
        ] {
            std::fs::write(&p, format!("[sandbox.kubernetes]\n{text}\n")).unwrap();
            let e = WorkspaceConfig::load(&p).unwrap_err().to_string();
            assert!(e.contains(field) && e.contains(wanted), "{text}: {e}");
        }
        std::fs::write(&p, "[eval]\nsandbox = \"k8s\"\n").unwrap();
        let e = WorkspaceConfig::load(&p).unwrap_err().to_string();
        assert!(
            e.contains("eval.sandbox") && e.contains("kubernetes"),
            "{e}"
        );
        std::fs::write(&p, "[optimize]\nholdout = 1.5\n").unwrap();
        assert!(
            WorkspaceConfig::load(&p)
                .unwrap_err()
                .to_string()
                .contains("optimize.holdout")
        );
    }
}
