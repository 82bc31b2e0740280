//! Harbor's `registry.json`: a list of datasets, each a name, a version and its tasks, every task
//! a path in a git repository at a commit (or, without `git_url`, a path next to the registry
//! file). `harbor/models/registry.py: DatasetSpec`, `RegistryTaskId`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One task of a registry dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegistryTask {
    pub name: String,
    #[serde(default)]
    pub git_url: Option<String>,
    #[serde(default)]
    pub git_commit_id: Option<String>,
    /// The task's dir inside the repository (or next to the registry file).
    pub path: PathBuf,
}

/// One dataset of a registry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetSpec {
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub description: String,
    pub tasks: Vec<RegistryTask>,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{source_name}: not a Harbor registry (a JSON list of datasets): {message}")]
    Parse {
        source_name: String,
        message: String,
    },
    #[error(
        "{source_name}: no dataset `{name}`{at}; it has: {available}",
        at = version.as_ref().map(|v| format!(" at version `{v}`")).unwrap_or_default()
    )]
    NotFound {
        source_name: String,
        name: String,
        version: Option<String>,
        available: String,
    },
    #[error(
        "{source_name}: dataset `{name}` has versions {versions}; name one as `{name}@VERSION`"
    )]
    Ambiguous {
        source_name: String,
        name: String,
        versions: String,
    },
    #[error("{source_name}: dataset `{dataset}` task `{task}`: {message}")]
    Task {
        source_name: String,
        dataset: String,
        task: String,
        message: String,
    },
}

/// A parsed registry, and where it came from (for errors and for local task paths).
#[derive(Debug, Clone)]
pub struct Registry {
    /// The file path or URL it was read from.
    pub source: String,
    /// The directory local task paths are relative to (`None` for a URL).
    pub base_dir: Option<PathBuf>,
    pub datasets: Vec<DatasetSpec>,
}

impl Registry {
    /// Parses `registry.json` text read from `source` (a path or URL).
    pub fn parse(text: &str, source: &str, base_dir: Option<&Path>) -> Result<Self, RegistryError> {
        let datasets: Vec<DatasetSpec> =
            serde_json::from_str(text).map_err(|e| RegistryError::Parse {
                source_name: source.to_owned(),
                message: e.to_string(),
            })?;
        for d in &datasets {
            for t in &d.tasks {
                let bad = if t.name.is_empty() || t.name.contains('/') {
                    Some("expected a task name without `/`".to_owned())
                } else if t.path.is_absolute()
                    || t.path
                        .components()
                        .any(|c| c == std::path::Component::ParentDir)
                {
                    Some(format!(
                        "path {}: expected a relative path inside the repository",
                        t.path.display()
                    ))
                } else if t.git_url.is_some() != t.git_commit_id.is_some() {
                    Some("expected both `git_url` and `git_commit_id`, or neither".to_owned())
                } else {
                    None
                };
                if let Some(message) = bad {
                    return Err(RegistryError::Task {
                        source_name: source.to_owned(),
                        dataset: d.name.clone(),
                        task: t.name.clone(),
                        message,
                    });
                }
            }
        }
        Ok(Self {
            source: source.to_owned(),
            base_dir: base_dir.map(Path::to_path_buf),
            datasets,
        })
    }

    /// The dataset `NAME@VERSION`, or `NAME` when it has one version.
    pub fn find(&self, spec: &str) -> Result<&DatasetSpec, RegistryError> {
        let (name, version) = match spec.split_once('@') {
            Some((n, v)) => (n, Some(v)),
            None => (spec, None),
        };
        let same: Vec<&DatasetSpec> = self.datasets.iter().filter(|d| d.name == name).collect();
        let found: Vec<&DatasetSpec> = same
            .iter()
            .copied()
            .filter(|d| version.is_none_or(|v| d.version == v))
            .collect();
        match found.as_slice() {
            [one] => Ok(one),
            [] => Err(RegistryError::NotFound {
                source_name: self.source.clone(),
                name: name.to_owned(),
                version: version.map(str::to_owned),
                available: self
                    .datasets
                    .iter()
                    .map(|d| format!("{}@{}", d.name, d.version))
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
            many => Err(RegistryError::Ambiguous {
                source_name: self.source.clone(),
                name: name.to_owned(),
                versions: many
                    .iter()
                    .map(|d| d.version.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }
}

/// Where a task of a materialized registry dataset came from: written next to the tasks
/// (`.autoagent-dataset.json`) so trials record Harbor's git task id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskOrigin {
    pub git_url: Option<String>,
    pub git_commit_id: Option<String>,
    pub path: PathBuf,
}

/// The file in a materialized dataset dir that maps task names to their origins.
pub const ORIGINS_FILE: &str = ".autoagent-dataset.json";

#[cfg(test)]
mod tests {
    use super::*;

    const REG: &str = r#"[
      {"name": "demo", "version": "1.0", "description": "d", "tasks": [
        {"name": "a", "git_url": "file:///r.git", "git_commit_id": "abc", "path": "tasks/a"}]},
      {"name": "demo", "version": "2.0", "tasks": [{"name": "b", "path": "b"}]},
      {"name": "solo", "version": "head", "tasks": []}
    ]"#;

    #[test]
    fn datasets_are_found_by_name_and_version_and_errors_say_what_exists() {
        let r = Registry::parse(REG, "registry.json", None).unwrap();
        assert_eq!(r.find("demo@1.0").unwrap().tasks[0].name, "a");
        assert_eq!(r.find("solo").unwrap().version, "head");
        let e = r.find("demo").unwrap_err().to_string();
        assert!(e.contains("versions 1.0, 2.0"), "{e}");
        let e = r.find("demo@3").unwrap_err().to_string();
        assert!(
            e.contains("no dataset `demo` at version `3`")
                && e.contains("demo@1.0, demo@2.0, solo@head"),
            "{e}"
        );
        let e = Registry::parse("{}", "r.json", None)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("r.json: not a Harbor registry"), "{e}");
        let bad = r#"[{"name": "x", "version": "1", "tasks": [{"name": "t", "path": "../up"}]}]"#;
        let e = Registry::parse(bad, "r.json", None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("dataset `x` task `t`: path ../up"), "{e}");
    }
}
