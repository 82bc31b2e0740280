//! Task directories and datasets (`models/task/paths.py`, `models/task/task.py`).

use std::fmt;
use std::path::{Path, PathBuf};

use crate::config::{StepConfig, TaskConfig};

/// What went wrong loading a task: always names the task, the file and, when known, the field.
#[derive(Debug, Clone, thiserror::Error)]
#[error("task `{task}`: {file}: {message}")]
pub struct TaskError {
    /// The task's name (its directory name when `task.toml` could not be read).
    pub task: String,
    /// The file at fault, relative to the task dir (`task.toml`, `instruction.md`, `tests/test.sh`…).
    pub file: String,
    /// The field path inside the file, when the error is about one field.
    pub field: Option<String>,
    /// What was expected, in words.
    pub message: String,
}

/// A loaded, validated task (single-step, or multi-step with `[[steps]]`).
#[derive(Debug, Clone)]
pub struct Task {
    /// `[task].name` when set, else the directory name.
    pub name: String,
    /// Absolute path of the task dir.
    pub dir: PathBuf,
    pub config: TaskConfig,
    /// `instruction.md` with leading canary lines removed; empty for a multi-step task, whose
    /// instructions are its steps'.
    pub instruction: String,
    /// Each step's `instruction.md`, canary lines removed, in step order.
    pub step_instructions: Vec<String>,
    /// Where a registry dataset's task came from (`None` for a local task).
    pub origin: Option<crate::registry::TaskOrigin>,
}

impl Task {
    pub fn toml_path(&self) -> PathBuf {
        self.dir.join("task.toml")
    }
    pub fn environment_dir(&self) -> PathBuf {
        self.dir.join("environment")
    }
    pub fn tests_dir(&self) -> PathBuf {
        self.dir.join("tests")
    }
    pub fn solution_dir(&self) -> PathBuf {
        self.dir.join("solution")
    }
    /// `environment/docker-compose.yaml` (or `.yml`) when the task has one.
    pub fn compose_file(&self) -> Option<PathBuf> {
        ["docker-compose.yaml", "docker-compose.yml"]
            .iter()
            .map(|f| self.environment_dir().join(f))
            .find(|p| p.is_file())
    }

    /// Loads and validates a task dir. `verification_disabled` mirrors Harbor's flag:
    /// without it, `tests/test.sh` is required.
    pub fn load(dir: &Path, verification_disabled: bool) -> Result<Self, TaskError> {
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        let dir_name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| dir.display().to_string());
        let err = |task: &str, file: &str, field: Option<String>, message: String| TaskError {
            task: task.to_owned(),
            file: file.to_owned(),
            field,
            message,
        };
        let toml_path = dir.join("task.toml");
        let text = std::fs::read_to_string(&toml_path).map_err(|e| {
            err(
                &dir_name,
                "task.toml",
                None,
                if e.kind() == std::io::ErrorKind::NotFound {
                    "missing: every task needs a task.toml (an empty file is valid)".to_owned()
                } else {
                    format!("cannot read: {e}")
                },
            )
        })?;
        let config = parse_task_toml(&text)
            .map_err(|(field, message)| err(&dir_name, "task.toml", field, message))?;
        let name = config
            .task
            .as_ref()
            .map(|t| t.name.clone())
            .unwrap_or(dir_name);
        // Collect hooks run in the agent's sandbox; a compose sidecar cannot be reached here.
        let hooks = config
            .verifier
            .collect
            .iter()
            .enumerate()
            .map(|(i, h)| (format!("verifier.collect[{i}].service"), h))
            .chain(config.step_list().iter().enumerate().flat_map(|(s, step)| {
                step.verifier
                    .collect
                    .iter()
                    .enumerate()
                    .map(move |(i, h)| (format!("steps[{s}].verifier.collect[{i}].service"), h))
            }));
        for (field, hook) in hooks {
            if hook.service != "main" {
                return Err(err(
                    &name,
                    "task.toml",
                    Some(field),
                    format!(
                        "collect hooks in the service {:?} are not supported: only \"main\", the agent's sandbox, runs them",
                        hook.service
                    ),
                ));
            }
        }
        if config.environment.os != "linux" {
            return Err(err(
                &name,
                "task.toml",
                Some("environment.os".to_owned()),
                format!(
                    "only \"linux\" tasks can run here, found \"{}\"",
                    config.environment.os
                ),
            ));
        }
        if !dir.join("environment").is_dir() && config.environment.docker_image.is_none() {
            return Err(err(
                &name,
                "environment/",
                None,
                "missing: a task needs an environment/ directory or [environment].docker_image"
                    .to_owned(),
            ));
        }
        let read_instruction = |rel: &str, what: &str| {
            std::fs::read_to_string(dir.join(rel))
                .map(|t| strip_canary(&t))
                .map_err(|e| {
                    err(
                        &name,
                        rel,
                        None,
                        if e.kind() == std::io::ErrorKind::NotFound {
                            format!("missing: {what} needs an instruction.md")
                        } else {
                            format!("cannot read: {e}")
                        },
                    )
                })
        };
        let mut step_instructions = Vec::new();
        let instruction = if config.has_steps() {
            // Harbor's `_validate_tests`: each step has its dir and instruction, and a test
            // script of its own or the task's, unless its verifier image brings its tests.
            for step in config.step_list() {
                let rel = format!("steps/{}", step.name);
                step_instructions.push(read_instruction(
                    &format!("{rel}/instruction.md"),
                    &format!("step `{}`", step.name),
                )?);
                if !verification_disabled
                    && !verifier_image_brings_tests(&dir, &config, Some(step))
                    && !dir.join(&rel).join("tests/test.sh").is_file()
                    && !dir.join("tests/test.sh").is_file()
                {
                    return Err(err(
                        &name,
                        &format!("{rel}/tests/test.sh"),
                        None,
                        format!(
                            "missing: step `{}` is verified by {rel}/tests/test.sh, or by the task's tests/test.sh when it has none",
                            step.name
                        ),
                    ));
                }
            }
            String::new()
        } else {
            let text = read_instruction("instruction.md", "a single-step task")?;
            if !verification_disabled
                && !verifier_image_brings_tests(&dir, &config, None)
                && !dir.join("tests").join("test.sh").is_file()
            {
                return Err(err(
                    &name,
                    "tests/test.sh",
                    None,
                    "missing: the verifier runs tests/test.sh".to_owned(),
                ));
            }
            text
        };
        Ok(Self {
            name,
            dir,
            config,
            instruction,
            step_instructions,
            origin: None,
        })
    }

    /// `steps/<name>/`.
    pub fn step_dir(&self, step: &str) -> PathBuf {
        self.dir.join("steps").join(step)
    }

    /// A step's `instruction.md`, canary lines removed (read when the task was loaded).
    pub fn step_instruction(&self, index: usize) -> &str {
        self.step_instructions.get(index).map_or("", String::as_str)
    }

    /// Where and how a separate verifier runs, or `None` when it shares the agent's sandbox
    /// (Harbor's `resolve_verifier_environment_definition`).
    pub fn verifier_definition(&self, step: Option<&StepConfig>) -> Option<VerifierDefinition> {
        verifier_definition(&self.dir, &self.config, step)
    }

    /// Harbor's `task_checksum` ([`crate::dirhash`]): the same value Harbor writes for this task.
    pub fn checksum(&self) -> String {
        crate::dirhash::task_checksum(&self.dir).unwrap_or_default()
    }
}

/// A separate verifier's environment: its settings, and what its image is made from.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifierDefinition {
    /// The resolved `[verifier.environment]` (or a copy of `[environment]`), with the image
    /// that won.
    pub config: crate::config::EnvironmentConfig,
    /// The build context: `steps/<name>/tests/` or `tests/` when it has a Dockerfile (or the
    /// verifier environment names a `docker_image`), else `environment/`.
    pub dir: PathBuf,
    /// The image holds the tests already (`/tests`): they are not uploaded.
    pub bundled_tests: bool,
}

/// Harbor's image precedence for a separate verifier: the step's then the task's verifier
/// environment, each with its tests dir: a `docker_image` there, or a `Dockerfile` /
/// `docker-compose.yaml` in that tests dir, is an image that brings its own tests; otherwise
/// the agent's `environment/` (or its `docker_image`) with the tests uploaded.
fn verifier_definition(
    dir: &Path,
    config: &TaskConfig,
    step: Option<&StepConfig>,
) -> Option<VerifierDefinition> {
    let env = config.verifier_environment(step)?;
    let mut candidates = Vec::new();
    if let Some(s) = step {
        candidates.push((
            s.verifier.environment.as_ref(),
            dir.join("steps").join(&s.name).join("tests"),
        ));
    }
    candidates.push((config.verifier.environment.as_ref(), dir.join("tests")));
    for (declared, tests) in candidates {
        if let Some(image) = declared.and_then(|e| e.docker_image.clone()) {
            return Some(VerifierDefinition {
                config: crate::config::EnvironmentConfig {
                    docker_image: Some(image),
                    ..env
                },
                dir: tests,
                bundled_tests: true,
            });
        }
        if ["Dockerfile", "docker-compose.yaml"]
            .iter()
            .any(|f| tests.join(f).is_file())
        {
            return Some(VerifierDefinition {
                config: crate::config::EnvironmentConfig {
                    docker_image: None,
                    ..env
                },
                dir: tests,
                bundled_tests: true,
            });
        }
    }
    Some(VerifierDefinition {
        config: crate::config::EnvironmentConfig {
            docker_image: config.environment.docker_image.clone(),
            ..env
        },
        dir: dir.join("environment"),
        bundled_tests: false,
    })
}

fn verifier_image_brings_tests(dir: &Path, config: &TaskConfig, step: Option<&StepConfig>) -> bool {
    verifier_definition(dir, config, step).is_some_and(|d| d.bundled_tests)
}

/// Parses `task.toml`, returning `(field path, message)` on failure so the caller can name both.
pub fn parse_task_toml(text: &str) -> Result<TaskConfig, (Option<String>, String)> {
    let de = toml::Deserializer::parse(text).map_err(|e| (None, one_line(&e.to_string())))?;
    let config = serde_path_to_error::deserialize::<_, TaskConfig>(de).map_err(|e| {
        let path = e.path().to_string();
        let field = (path != "." && !path.is_empty()).then_some(path);
        let inner = e.into_inner();
        let message = one_line(&inner.to_string());
        (field, message)
    })?;
    config
        .validate()
        .map_err(|(field, message)| (Some(field), message))?;
    Ok(config)
}

/// toml's messages span several lines with a source excerpt; keep them on one line for tables
/// and summaries while still showing the line/column.
pub fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.chars().all(|c| c == '|' || c == '^' || c == ' '))
        // toml quotes the offending source line as `2 | key = value`; the position is enough.
        .filter(|l| {
            !l.split_once(" |")
                .is_some_and(|(n, _)| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Removes leading canary lines (`<!-- …canary… -->` or `# …canary…`, case-insensitive)
/// and the blank lines right after them (Harbor's `strip_canary`).
pub fn strip_canary(text: &str) -> String {
    let mut rest = text;
    let mut stripped = false;
    loop {
        let (line, after) = match rest.find('\n') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        let l = line.trim_end_matches('\r');
        let lower = l.to_ascii_lowercase();
        let is_canary = lower.contains("canary")
            && ((l.starts_with("<!--") && l.ends_with("-->")) || l.starts_with('#'));
        if is_canary || (stripped && l.trim().is_empty() && !rest.is_empty()) {
            stripped = true;
            rest = after;
            if rest.is_empty() {
                break;
            }
        } else {
            break;
        }
    }
    rest.to_owned()
}

/// A task dir that could not be loaded, kept so that the summary can list it.
#[derive(Debug, Clone)]
pub struct InvalidTask {
    pub dir: PathBuf,
    pub error: TaskError,
}

/// What `-p PATH` names: one task or a dataset of tasks.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// The dataset's name (the dir's basename), `None` for a single task (Harbor's `adhoc`).
    pub name: Option<String>,
    pub path: PathBuf,
    /// Valid tasks, sorted by directory name.
    pub tasks: Vec<Task>,
    /// Child dirs that are not valid tasks, with why. Harbor skips these silently; we report them.
    pub invalid: Vec<InvalidTask>,
}

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("{path}: no such directory")]
    NotFound { path: PathBuf },
    #[error("{path}: cannot list: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Dataset {
    /// A dir with `task.toml` is one task; otherwise its non-hidden child dirs are the tasks,
    /// sorted by name. A single task that does not load is reported as the one invalid task.
    pub fn load(path: &Path) -> Result<Self, DatasetError> {
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        if !path.is_dir() {
            return Err(DatasetError::NotFound { path });
        }
        if path.join("task.toml").is_file() {
            let (tasks, invalid) = match Task::load(&path, false) {
                Ok(t) => (vec![t], vec![]),
                Err(error) => (
                    vec![],
                    vec![InvalidTask {
                        dir: path.clone(),
                        error,
                    }],
                ),
            };
            return Ok(Self {
                name: None,
                path,
                tasks,
                invalid,
            });
        }
        let mut children: Vec<PathBuf> = std::fs::read_dir(&path)
            .map_err(|source| DatasetError::Io {
                path: path.clone(),
                source,
            })?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.is_dir()
                    && !p
                        .file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            })
            .collect();
        children.sort();
        // A materialized registry dataset says where each task came from.
        let origins: std::collections::BTreeMap<String, crate::registry::TaskOrigin> =
            std::fs::read_to_string(path.join(crate::registry::ORIGINS_FILE))
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or_default();
        let mut tasks = Vec::new();
        let mut invalid = Vec::new();
        for child in children {
            match Task::load(&child, false) {
                Ok(mut t) => {
                    t.origin = child
                        .file_name()
                        .and_then(|n| origins.get(&*n.to_string_lossy()))
                        .cloned();
                    tasks.push(t);
                }
                Err(error) => invalid.push(InvalidTask { dir: child, error }),
            }
        }
        Ok(Self {
            name: path.file_name().map(|n| n.to_string_lossy().into_owned()),
            path,
            tasks,
            invalid,
        })
    }
}

impl fmt::Display for InvalidTask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.error.field {
            Some(field) => write!(
                f,
                "{} ({}): field `{}`: {}",
                self.error.task, self.error.file, field, self.error.message
            ),
            None => write!(
                f,
                "{} ({}): {}",
                self.error.task, self.error.file, self.error.message
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn canary_lines_are_stripped() {
        let s =
            "<!-- BENCHMARK DATA canary GUID 123 -->\n# canary string\n\nDo the thing.\n\nMore.\n";
        assert_eq!(strip_canary(s), "Do the thing.\n\nMore.\n");
        assert_eq!(strip_canary("Plain.\n"), "Plain.\n");
        assert_eq!(strip_canary("# Title\nbody"), "# Title\nbody");
    }

    #[test]
    fn wrong_type_names_the_field() {
        let (field, msg) = parse_task_toml("[agent]\ntimeout_sec = \"soon\"\n").unwrap_err();
        assert_eq!(field.as_deref(), Some("agent.timeout_sec"));
        assert!(msg.contains("invalid type"), "{msg}");
    }

    #[test]
    fn features_that_do_not_run_are_refused_by_name() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("environment")).unwrap();
        std::fs::write(d.path().join("instruction.md"), "x").unwrap();
        std::fs::create_dir_all(d.path().join("tests")).unwrap();
        std::fs::write(d.path().join("tests/test.sh"), "true").unwrap();
        std::fs::write(
            d.path().join("task.toml"),
            "[[verifier.collect]]\ncommand = \"true\"\n[[verifier.collect]]\ncommand = \"true\"\nservice = \"db\"\n",
        )
        .unwrap();
        let e = Task::load(d.path(), false).unwrap_err();
        assert_eq!(
            e.field.as_deref(),
            Some("verifier.collect[1].service"),
            "{e}"
        );
        assert!(e.message.contains("not supported"), "{e}");
        std::fs::write(
            d.path().join("task.toml"),
            "[[verifier.collect]]\ncommand = \"true\"\n",
        )
        .unwrap();
        Task::load(d.path(), false).unwrap();
    }

    #[test]
    fn a_multi_step_task_loads_its_steps_and_names_what_is_missing() {
        let d = tempfile::tempdir().unwrap();
        let t = d.path().join("ms");
        std::fs::create_dir_all(t.join("environment")).unwrap();
        std::fs::write(
            t.join("task.toml"),
            "[[steps]]\nname = \"first\"\n[[steps]]\nname = \"second\"\n",
        )
        .unwrap();
        let e = Task::load(&t, false).unwrap_err();
        assert_eq!(e.file, "steps/first/instruction.md", "{e}");
        for s in ["first", "second"] {
            std::fs::create_dir_all(t.join("steps").join(s)).unwrap();
            std::fs::write(
                t.join("steps").join(s).join("instruction.md"),
                format!("<!-- canary -->\ndo {s}\n"),
            )
            .unwrap();
        }
        let e = Task::load(&t, false).unwrap_err();
        assert_eq!(e.file, "steps/first/tests/test.sh", "{e}");
        // A step without tests of its own falls back to the task's tests/test.sh.
        std::fs::create_dir_all(t.join("steps/first/tests")).unwrap();
        std::fs::write(t.join("steps/first/tests/test.sh"), "true").unwrap();
        assert_eq!(
            Task::load(&t, false).unwrap_err().file,
            "steps/second/tests/test.sh"
        );
        std::fs::create_dir_all(t.join("tests")).unwrap();
        std::fs::write(t.join("tests/test.sh"), "true").unwrap();
        let task = Task::load(&t, false).unwrap();
        assert_eq!(task.instruction, "");
        assert_eq!(task.step_instruction(0), "do first\n");
        assert_eq!(task.step_instruction(1), "do second\n");
        assert_eq!(
            task.verifier_definition(Some(&task.config.step_list()[0])),
            None
        );
    }

    #[test]
    fn a_separate_verifier_image_comes_from_the_step_then_the_task_then_the_environment() {
        let d = tempfile::tempdir().unwrap();
        let t = d.path().join("sv");
        std::fs::create_dir_all(t.join("environment")).unwrap();
        std::fs::write(t.join("instruction.md"), "x").unwrap();
        std::fs::write(
            t.join("task.toml"),
            "[environment]\ncpus = 1.5\n[verifier]\nenvironment_mode = \"separate\"\n",
        )
        .unwrap();
        // No tests/test.sh and no image of the verifier's own: the tests must be uploaded.
        assert_eq!(Task::load(&t, false).unwrap_err().file, "tests/test.sh");
        std::fs::create_dir_all(t.join("tests")).unwrap();
        std::fs::write(t.join("tests/test.sh"), "true").unwrap();
        let task = Task::load(&t, false).unwrap();
        let def = task.verifier_definition(None).unwrap();
        assert_eq!(
            (def.dir, def.bundled_tests, def.config.cpus),
            (t.join("environment"), false, Some(1.5))
        );
        // A Dockerfile in tests/ is the verifier's image, bringing its tests.
        std::fs::write(t.join("tests/Dockerfile"), "FROM x\n").unwrap();
        let def = Task::load(&t, false)
            .unwrap()
            .verifier_definition(None)
            .unwrap();
        assert_eq!((def.dir, def.bundled_tests), (t.join("tests"), true));
    }

    #[test]
    fn impossible_numbers_are_refused() {
        for (text, field) in [
            ("[agent]\ntimeout_sec = -1\n", "agent.timeout_sec"),
            ("[agent]\ntimeout_sec = inf\n", "agent.timeout_sec"),
            ("[verifier]\ntimeout_sec = 1e20\n", "verifier.timeout_sec"),
            ("[environment]\ncpus = 0\n", "environment.cpus"),
            (
                "[environment.healthcheck]\ncommand = \"true\"\ntimeout_sec = nan\n",
                "environment.healthcheck.timeout_sec",
            ),
        ] {
            let (f, msg) = parse_task_toml(text).unwrap_err();
            assert_eq!(f.as_deref(), Some(field), "{text}: {msg}");
        }
    }

    #[test]
    fn syntax_error_has_line_and_column() {
        let (field, msg) = parse_task_toml("[agent\ntimeout_sec = 1\n").unwrap_err();
        assert_eq!(field, None);
        assert!(msg.contains("line 1"), "{msg}");
    }

    #[test]
    fn dataset_lists_invalid_children() {
        let d = tempfile::tempdir().unwrap();
        let ok = d.path().join("b-ok");
        std::fs::create_dir_all(ok.join("environment")).unwrap();
        std::fs::create_dir_all(ok.join("tests")).unwrap();
        std::fs::write(ok.join("task.toml"), "").unwrap();
        std::fs::write(ok.join("instruction.md"), "hi\n").unwrap();
        std::fs::write(ok.join("tests/test.sh"), "").unwrap();
        let bad = d.path().join("a-bad");
        std::fs::create_dir_all(&bad).unwrap();
        std::fs::write(bad.join("task.toml"), "[verifier]\ntimeout_sec = []\n").unwrap();
        std::fs::create_dir_all(d.path().join(".hidden")).unwrap();
        let ds = Dataset::load(d.path()).unwrap();
        assert_eq!(ds.tasks.len(), 1);
        assert_eq!(ds.tasks[0].name, "b-ok");
        assert_eq!(ds.invalid.len(), 1);
        assert_eq!(ds.invalid[0].error.task, "a-bad");
        assert_eq!(
            ds.invalid[0].error.field.as_deref(),
            Some("verifier.timeout_sec")
        );
    }
}
