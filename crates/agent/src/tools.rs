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
use serde_json::{Value, json};

use crate::harness::{Harness, ScriptTool};

/// Where the harness's `tools/` folder is put in the sandbox, once per run.
pub const TOOLS_DIR: &str = "/tmp/autoagent-tools";

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
pub struct ToolContext<'a> {
    pub sandbox: &'a dyn Sandbox,
    /// The sandbox's working directory, for relative paths.
    pub workdir: &'a str,
    pub harness: &'a Harness,
}

impl ToolContext<'_> {
    fn resolve(&self, path: &str) -> String {
        if path.starts_with('/') {
            path.to_owned()
        } else {
            format!("{}/{}", self.workdir.trim_end_matches('/'), path)
        }
    }

    async fn exec(&self, command: String, timeout: Duration) -> Result<ExecOutput, ToolError> {
        Ok(self
            .sandbox
            .exec(ExecRequest::new(command).timeout(Some(timeout)))
            .await?)
    }
}

/// The spec the model sees for a built-in tool.
pub fn builtin_spec(name: &str) -> Option<ToolSpec> {
    let (description, parameters) = match name {
        "bash" => (
            "Run a shell command (bash -c) in the task environment and get its stdout, stderr and exit code. \
             Commands do not share state: use absolute paths or `cd DIR && …`.",
            json!({"type": "object", "properties": {
                "command": {"type": "string", "description": "The command line."},
                "timeout_sec": {"type": "number", "description": "Seconds before the command is killed (default and maximum set by the harness)."}
            }, "required": ["command"]}),
        ),
        "read_file" => (
            "Read a text file. Optionally a range of lines (1-based, inclusive).",
            json!({"type": "object", "properties": {
                "path": {"type": "string"},
                "start_line": {"type": "integer"},
                "end_line": {"type": "integer"}
            }, "required": ["path"]}),
        ),
        "write_file" => (
            "Write a file (creating its directories), replacing any content.",
            json!({"type": "object", "properties": {
                "path": {"type": "string"},
                "content": {"type": "string"}
            }, "required": ["path", "content"]}),
        ),
        "edit_file" => (
            "Replace an exact string in a file. `old_string` must occur exactly once unless `replace_all` is true.",
            json!({"type": "object", "properties": {
                "path": {"type": "string"},
                "old_string": {"type": "string"},
                "new_string": {"type": "string"},
                "replace_all": {"type": "boolean"}
            }, "required": ["path", "old_string", "new_string"]}),
        ),
        "list_dir" => (
            "List a directory (names, sizes, types).",
            json!({"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}),
        ),
        "finish" => (
            "Say that the task is done, with a short final answer or summary.",
            json!({"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}),
        ),
        _ => return None,
    };
    Some(ToolSpec {
        name: name.to_owned(),
        description: description.to_owned(),
        parameters,
    })
}

pub fn script_spec(tool: &ScriptTool) -> ToolSpec {
    ToolSpec {
        name: tool.name.clone(),
        description: tool.manifest.description.clone(),
        parameters: tool.manifest.parameters.clone(),
    }
}

fn str_arg<'a>(args: &'a Value, key: &str) -> Result<&'a str, ToolError> {
    args.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| ToolError::RespondToModel(format!("missing string argument `{key}`")))
}

/// Formats a command's result the way the model reads it best: output first, then the code.
pub fn format_exec(out: &ExecOutput) -> String {
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
pub async fn run_builtin(
    name: &str,
    args: &Value,
    ctx: &ToolContext<'_>,
) -> Result<ToolOutput, ToolError> {
    let quick = Duration::from_secs(60);
    match name {
        "bash" => {
            let command = str_arg(args, "command")?;
            let max = ctx.harness.config.bash.timeout_sec;
            let secs = args
                .get("timeout_sec")
                .and_then(Value::as_f64)
                .unwrap_or(max)
                .clamp(1.0, max);
            let out = ctx
                .exec(command.to_owned(), Duration::from_secs_f64(secs))
                .await?;
            let content = format_exec(&out);
            if out.timed_out {
                return Err(ToolError::RespondToModel(format!(
                    "{content}\nthe command was killed after {secs} s"
                )));
            }
            Ok(ToolOutput {
                content,
                is_error: out.exit_code != Some(0),
                finish: None,
            })
        }
        "read_file" => {
            let path = ctx.resolve(str_arg(args, "path")?);
            // Cut output would look like the whole file: say so, so the model reads parts.
            let text = read_whole(
                ctx,
                &path,
                "read_file",
                "read parts of it with bash (head, tail, sed -n, grep)",
            )
            .await?;
            let start = args.get("start_line").and_then(Value::as_u64);
            let end = args.get("end_line").and_then(Value::as_u64);
            if start.is_none() && end.is_none() {
                return Ok(ToolOutput::ok(text));
            }
            let from = start.unwrap_or(1).max(1) as usize;
            let to = end.map(|e| e as usize).unwrap_or(usize::MAX);
            let lines: Vec<&str> = text
                .lines()
                .skip(from - 1)
                .take(to.saturating_sub(from - 1))
                .collect();
            Ok(ToolOutput::ok(lines.join("\n")))
        }
        "write_file" => {
            let path = ctx.resolve(str_arg(args, "path")?);
            let content = str_arg(args, "content")?;
            ctx.sandbox
                .write_file(&path, content.as_bytes(), 0o644)
                .await?;
            Ok(ToolOutput::ok(format!(
                "wrote {} bytes to {path}",
                content.len()
            )))
        }
        "edit_file" => {
            let path = ctx.resolve(str_arg(args, "path")?);
            let old = str_arg(args, "old_string")?;
            let new = str_arg(args, "new_string")?;
            let all = args
                .get("replace_all")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            // Checked before the file is read: no round trip for a call that cannot succeed.
            if old.is_empty() {
                return Err(ToolError::RespondToModel(EMPTY_OLD_STRING.into()));
            }
            // A cut read would be written back cut: refuse rather than lose the rest.
            let text =
                read_whole(ctx, &path, "edit_file", "edit it with bash (sed, python…)").await?;
            let (updated, n) =
                replace_exact(&text, old, new, all, &path).map_err(ToolError::RespondToModel)?;
            // Written beside it and copied over, so the file keeps its mode and owner.
            let tmp = format!("{path}.autoagent-edit");
            ctx.sandbox
                .write_file(&tmp, updated.as_bytes(), 0o644)
                .await?;
            let mv = ctx
                .exec(
                    format!(
                        "cat -- {t} > {p} && rm -f -- {t}",
                        t = shell_quote(&tmp),
                        p = shell_quote(&path)
                    ),
                    quick,
                )
                .await?;
            if mv.exit_code != Some(0) {
                return Err(ToolError::RespondToModel(format!(
                    "cannot write {path}: {}",
                    mv.stderr.trim()
                )));
            }
            Ok(ToolOutput::ok(format!(
                "replaced {n} occurrence(s) in {path}"
            )))
        }
        "list_dir" => {
            let path = ctx.resolve(str_arg(args, "path")?);
            let out = ctx
                .exec(format!("ls -la -- {}", shell_quote(&path)), quick)
                .await?;
            if out.exit_code != Some(0) {
                return Err(ToolError::RespondToModel(format!(
                    "cannot list {path}: {}",
                    out.stderr.trim()
                )));
            }
            Ok(ToolOutput::ok(out.stdout))
        }
        other => Err(ToolError::RespondToModel(format!("unknown tool `{other}`"))),
    }
}

/// A whole text file from the sandbox, or what to tell the model: it is missing, or too large to
/// return whole (then `instead` says what to do).
async fn read_whole(
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

const EMPTY_OLD_STRING: &str = "`old_string` must not be empty";

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
pub async fn run_script(
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
pub async fn spill(
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
        for name in crate::harness::BUILTIN_TOOLS {
            let spec = builtin_spec(name).unwrap();
            crate::harness::check_schema(&spec.parameters, "parameters").unwrap();
        }
    }
}
