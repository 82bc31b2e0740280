//! Tools the task agent can call: the built-ins and the harness's script tools. (Sub-agents are
//! tools too, dispatched by the loop in [`crate::runtime`], since they run the loop again.)
//!
//! A tool's failure is either shown to the model ([`ToolError::RespondToModel`], the usual
//! case: a bad argument, a missing file, a failing command) or ends the run
//! ([`ToolError::Fatal`]: the sandbox itself is gone).

use std::time::Duration;

use autoagent_harbor::text::{HeadTail, head_tail};
use autoagent_llm::ToolSpec;
use autoagent_sandbox::{ExecOutput, ExecRequest, Sandbox, SandboxError, shell_quote};
use serde_json::Value;

use crate::harness::{Harness, ScriptTool};

mod bash;
mod edit_file;
pub(crate) mod finish;
mod list_dir;
mod read_file;
mod write_file;

/// Where the harness's `tools/` folder is put in the sandbox, once per run.
pub(crate) const TOOLS_DIR: &str = "/tmp/autoagent-tools";

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// Goes back to the model as an error result; the run carries on.
    #[error("{0}")]
    RespondToModel(String),
    /// Ends the run: the environment is broken, not the model's call.
    #[error("{0}")]
    Fatal(#[from] SandboxError),
}

/// What a tool returns to the model.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolOutput {
    pub content: String,
    /// The call ran but failed (a non-zero exit): shown to the model as an error.
    pub is_error: bool,
    /// Set by a tool that ends the run (like `finish`): the run's final answer.
    pub finish: Option<String>,
}

impl ToolOutput {
    pub fn ok(content: impl Into<String>) -> Self {
        Self {
            content: content.into(),
            is_error: false,
            finish: None,
        }
    }
    pub fn error(content: impl Into<String>) -> Self {
        Self {
            content: content.into(),
            is_error: true,
            finish: None,
        }
    }
}

/// A tool that runs in this process rather than in the sandbox (the meta-agent's tools: the
/// ledger, trajectories, the harness files). Offered to the main agent next to its harness tools.
#[async_trait::async_trait]
pub trait HostTool: Send + Sync {
    fn spec(&self) -> ToolSpec;
    async fn call(&self, args: &Value) -> Result<ToolOutput, ToolError>;
}

/// What the tools need from the run.
pub(crate) struct ToolContext<'a> {
    pub(crate) sandbox: &'a dyn Sandbox,
    /// The sandbox's working directory, for relative paths.
    pub workdir: &'a str,
    pub harness: &'a Harness,
}

impl ToolContext<'_> {
    pub(crate) fn resolve(&self, path: &str) -> String {
        if path.starts_with('/') {
            path.to_owned()
        } else {
            format!("{}/{}", self.workdir.trim_end_matches('/'), path)
        }
    }

    pub(crate) async fn exec(
        &self,
        command: String,
        timeout: Duration,
    ) -> Result<ExecOutput, ToolError> {
        Ok(self
            .sandbox
            .exec(ExecRequest::new(command).timeout(Some(timeout)))
            .await?)
    }
}

/// A built-in tool: one file under `tools/`, its name written once there.
#[async_trait::async_trait]
pub(crate) trait Builtin: Send + Sync {
    /// What `harness.toml` lists and the model calls.
    fn name(&self) -> &'static str;
    fn description(&self) -> &'static str;
    /// The JSON Schema of the arguments.
    fn parameters(&self) -> Value;
    async fn call(&self, args: &Value, ctx: &ToolContext<'_>) -> Result<ToolOutput, ToolError>;
}

/// Every built-in tool, in the order the docs list them.
const BUILTINS: &[&dyn Builtin] = &[
    &bash::Bash,
    &read_file::ReadFile,
    &write_file::WriteFile,
    &edit_file::EditFile,
    &list_dir::ListDir,
    &finish::Finish,
];

fn builtin(name: &str) -> Option<&'static dyn Builtin> {
    BUILTINS.iter().copied().find(|t| t.name() == name)
}

/// The names of the built-in tools a harness can switch on.
pub(crate) fn builtin_names() -> impl Iterator<Item = &'static str> {
    BUILTINS.iter().map(|t| t.name())
}

pub(crate) fn is_builtin(name: &str) -> bool {
    builtin(name).is_some()
}

/// The spec the model sees for a built-in tool.
pub(crate) fn builtin_spec(name: &str) -> Option<ToolSpec> {
    let t = builtin(name)?;
    Some(ToolSpec {
        name: t.name().to_owned(),
        description: t.description().to_owned(),
        parameters: t.parameters(),
    })
}

pub(crate) fn script_spec(tool: &ScriptTool) -> ToolSpec {
    ToolSpec {
        name: tool.name.clone(),
        description: tool.manifest.description.clone(),
        parameters: tool.manifest.parameters.clone(),
    }
}

pub(crate) fn str_arg<'a>(args: &'a Value, key: &str) -> Result<&'a str, ToolError> {
    args.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| ToolError::RespondToModel(format!("missing string argument `{key}`")))
}

/// Formats a command's result the way the model reads it best: output first, then the code.
pub(crate) fn format_exec(out: &ExecOutput) -> String {
    let mut s = out.stdout.clone();
    if !out.stderr.is_empty() {
        if !s.is_empty() && !s.ends_with('\n') {
            s.push('\n');
        }
        s.push_str("[stderr]\n");
        s.push_str(&out.stderr);
    }
    if !s.is_empty() && !s.ends_with('\n') {
        s.push('\n');
    }
    if out.truncated {
        s.push_str("[output truncated]\n");
    }
    match out.exit_code {
        Some(code) => s.push_str(&format!("[exit code {code}]")),
        None => s.push_str("[killed: timed out]"),
    }
    s
}

/// Runs a built-in tool.
pub(crate) async fn run_builtin(
    name: &str,
    args: &Value,
    ctx: &ToolContext<'_>,
) -> Result<ToolOutput, ToolError> {
    match builtin(name) {
        Some(t) => t.call(args, ctx).await,
        None => Err(ToolError::RespondToModel(format!("unknown tool `{name}`"))),
    }
}

/// A whole text file from the sandbox, or what to tell the model: it is missing, or too large to
/// return whole (then `instead` says what to do).
pub(crate) async fn read_whole(
    ctx: &ToolContext<'_>,
    path: &str,
    tool: &str,
    instead: &str,
) -> Result<String, ToolError> {
    let out = ctx
        .exec(
            format!("cat -- {}", shell_quote(path)),
            Duration::from_secs(60),
        )
        .await?;
    if out.exit_code != Some(0) {
        return Err(ToolError::RespondToModel(format!(
            "cannot read {path}: {}",
            out.stderr.trim()
        )));
    }
    if out.truncated {
        return Err(ToolError::RespondToModel(format!(
            "{path} is larger than {tool} can read ({} bytes); {instead}",
            autoagent_sandbox::DEFAULT_OUTPUT_LIMIT
        )));
    }
    Ok(out.stdout)
}

pub(crate) const EMPTY_OLD_STRING: &str = "`old_string` must not be empty";

/// `edit_file`'s rule, shared by the task agent's and the meta-agent's tools: `old` must occur
/// exactly once unless `all`. Returns the new text and how many occurrences were replaced, or
/// what to tell the model.
pub fn replace_exact(
    text: &str,
    old: &str,
    new: &str,
    all: bool,
    path: &str,
) -> Result<(String, usize), String> {
    if old.is_empty() {
        return Err(EMPTY_OLD_STRING.into());
    }
    let n = text.matches(old).count();
    if n == 0 {
        return Err(format!("`old_string` was not found in {path}"));
    }
    if n > 1 && !all {
        return Err(format!(
            "`old_string` occurs {n} times in {path}: include more context to make it unique, or set replace_all"
        ));
    }
    Ok(if all {
        (text.replace(old, new), n)
    } else {
        (text.replacen(old, new, 1), 1)
    })
}

/// Runs a script tool: `INTERPRETER /tmp/autoagent-tools/SCRIPT` with the arguments as JSON on
/// stdin; stdout, stderr and the exit code go back to the model (non-zero is an error result).
pub(crate) async fn run_script(
    tool: &ScriptTool,
    args: &Value,
    ctx: &ToolContext<'_>,
) -> Result<ToolOutput, ToolError> {
    let json = serde_json::to_string(args).unwrap_or_else(|_| "{}".to_owned());
    // A here-document with a random terminator carries the JSON without a file round trip.
    let eof = format!("AUTOAGENT_ARGS_{}", uuid::Uuid::new_v4().simple());
    let command = format!(
        "{} {}/{} <<'{eof}'\n{json}\n{eof}",
        shell_quote(&tool.manifest.interpreter),
        TOOLS_DIR,
        shell_quote(&tool.manifest.script),
    );
    let secs = tool
        .manifest
        .timeout_sec
        .unwrap_or(ctx.harness.config.bash.timeout_sec);
    let out = ctx
        .exec(command, Duration::from_secs_f64(secs.max(1.0)))
        .await?;
    let content = format_exec(&out);
    if out.timed_out {
        return Err(ToolError::RespondToModel(format!(
            "{content}\ntool `{}` was killed after {secs} s",
            tool.name
        )));
    }
    Ok(ToolOutput {
        content,
        is_error: out.exit_code != Some(0),
        finish: None,
    })
}

/// Progressive disclosure: output longer than `limit` characters is written whole to a file in
/// the sandbox, and the model gets its head, its tail and the file's path.
pub(crate) async fn spill(
    content: String,
    limit: usize,
    path: &str,
    sandbox: &dyn Sandbox,
) -> Result<String, ToolError> {
    let Some(HeadTail {
        head,
        tail,
        omitted,
        total,
    }) = head_tail(&content, limit)
    else {
        return Ok(content);
    };
    sandbox.write_file(path, content.as_bytes(), 0o644).await?;
    Ok(format!(
        "{head}\n[... {omitted} characters omitted; the full output ({total} characters) is in {path}: read parts of it with tools such as head, tail, grep or sed ...]\n{tail}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_formatting() {
        let out = ExecOutput {
            exit_code: Some(2),
            stdout: "out".into(),
            stderr: "err\n".into(),
            timed_out: false,
            truncated: false,
        };
        assert_eq!(format_exec(&out), "out\n[stderr]\nerr\n[exit code 2]");
        let out = ExecOutput {
            exit_code: Some(0),
            ..ExecOutput::default()
        };
        assert_eq!(format_exec(&out), "[exit code 0]");
    }

    #[test]
    fn every_builtin_has_a_valid_spec() {
        for name in builtin_names() {
            let spec = builtin_spec(name).unwrap();
            crate::harness::check_schema(&spec.parameters, "parameters").unwrap();
        }
    }
}
