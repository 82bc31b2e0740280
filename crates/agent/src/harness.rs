//! The harness format: `harness.toml` + `prompts/` + `tools/` (DESIGN §3), loaded and validated.
//!
//! Loading reports *every* problem at once, each with its file and field, because the
//! meta-agent edits this format and must be able to fix all of its mistakes in one go.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::tools::{builtin_names, is_builtin};

/// `harness.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HarnessToml {
    pub agent: AgentSection,
    #[serde(default)]
    pub verify: VerifySection,
    #[serde(default)]
    pub context: ContextSection,
    #[serde(default)]
    pub bash: BashSection,
    #[serde(default)]
    pub subagents: Vec<SubagentSection>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSection {
    /// `provider/model`; `--model` overrides it.
    #[serde(default)]
    pub model: Option<String>,
    /// Path of the system prompt, relative to the harness dir.
    pub system_prompt: String,
    /// A template for the first user message; `{instruction}` is replaced by the task's
    /// instruction. Without it the instruction is sent as is.
    #[serde(default)]
    pub instruction_template: Option<String>,
    #[serde(default = "default_max_turns")]
    pub max_turns: u32,
    /// Built-in tools to turn on. Custom tools in `tools/` and sub-agents are always offered.
    #[serde(default = "default_tools")]
    pub tools: Vec<String>,
    #[serde(default)]
    pub temperature: Option<f32>,
    #[serde(default)]
    pub max_tokens: Option<u32>,
    /// `minimal`, `low`, `medium` or `high`.
    #[serde(default)]
    pub reasoning_effort: Option<String>,
}

fn default_max_turns() -> u32 {
    30
}
fn default_tools() -> Vec<String> {
    vec!["bash".to_owned()]
}

/// Bonus turns after the agent says it is done, with their own prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifySection {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default = "default_verify_prompt")]
    pub prompt: String,
    #[serde(default = "default_bonus_turns")]
    pub bonus_turns: u32,
}

impl Default for VerifySection {
    fn default() -> Self {
        Self {
            enabled: false,
            prompt: default_verify_prompt(),
            bonus_turns: default_bonus_turns(),
        }
    }
}

fn default_verify_prompt() -> String {
    "prompts/verify.md".to_owned()
}
fn default_bonus_turns() -> u32 {
    5
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContextSection {
    /// Past this many characters a tool's output is written to a file in the sandbox and the
    /// model gets its head, its tail and the path (progressive disclosure).
    #[serde(default = "default_max_tool_output")]
    pub max_tool_output_chars: usize,
    /// Where spilled outputs go inside the sandbox.
    #[serde(default = "default_spill_dir")]
    pub spill_dir: String,
    /// Past this many prompt tokens, older turns are summarised (compaction).
    #[serde(default = "default_compact_at")]
    pub compact_at_tokens: u64,
    /// Assistant turns kept verbatim after a compaction.
    #[serde(default = "default_keep_recent")]
    pub keep_recent_turns: usize,
}

impl Default for ContextSection {
    fn default() -> Self {
        Self {
            max_tool_output_chars: default_max_tool_output(),
            spill_dir: default_spill_dir(),
            compact_at_tokens: default_compact_at(),
            keep_recent_turns: default_keep_recent(),
        }
    }
}

fn default_max_tool_output() -> usize {
    30_000
}
fn default_spill_dir() -> String {
    "/tmp/autoagent-tool-output".to_owned()
}
fn default_compact_at() -> u64 {
    150_000
}
fn default_keep_recent() -> usize {
    4
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BashSection {
    /// The default and the most a `bash` call may ask for.
    #[serde(default = "default_bash_timeout")]
    pub timeout_sec: f64,
}

impl Default for BashSection {
    fn default() -> Self {
        Self {
            timeout_sec: default_bash_timeout(),
        }
    }
}

fn default_bash_timeout() -> f64 {
    180.0
}

/// `[[subagents]]`: an agent exposed to its parent as a tool named after it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubagentSection {
    pub name: String,
    pub description: String,
    pub system_prompt: String,
    #[serde(default = "default_tools")]
    pub tools: Vec<String>,
    #[serde(default = "default_sub_turns")]
    pub max_turns: u32,
    /// Defaults to the main agent's model.
    #[serde(default)]
    pub model: Option<String>,
}

fn default_sub_turns() -> u32 {
    10
}

/// `tools/NAME.toml`: a script tool that runs inside the sandbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolManifest {
    pub description: String,
    /// The script, relative to `tools/`.
    pub script: String,
    /// The program that runs it (`python3`, `bash`, `node`…).
    #[serde(default = "default_interpreter")]
    pub interpreter: String,
    /// A JSON Schema of the arguments (an object schema).
    #[serde(default = "empty_object_schema")]
    pub parameters: Value,
    #[serde(default)]
    pub timeout_sec: Option<f64>,
}

fn default_interpreter() -> String {
    "bash".to_owned()
}
fn empty_object_schema() -> Value {
    serde_json::json!({"type": "object", "properties": {}})
}

/// One problem found while loading a harness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file, relative to the harness dir.
    pub file: String,
    /// The field inside it, when the problem is one field.
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.field {
            Some(field) => write!(f, "{}: `{field}`: {}", self.file, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// Every problem of a harness that does not load.
#[derive(Debug, Clone, thiserror::Error)]
pub struct HarnessError {
    pub dir: PathBuf,
    pub problems: Vec<Problem>,
}

impl fmt::Display for HarnessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "harness {} has {} problem(s):",
            self.dir.display(),
            self.problems.len()
        )?;
        for p in &self.problems {
            writeln!(f, "  {p}")?;
        }
        Ok(())
    }
}

/// A custom tool, loaded.
#[derive(Debug, Clone, PartialEq)]
pub struct ScriptTool {
    pub name: String,
    pub manifest: ToolManifest,
}

/// A loaded, valid harness: the config plus the text of every prompt.
#[derive(Debug, Clone)]
pub struct Harness {
    pub dir: PathBuf,
    pub config: HarnessToml,
    pub system_prompt: String,
    pub instruction_template: Option<String>,
    pub verify_prompt: Option<String>,
    /// Custom tools by name (from `tools/*.toml`).
    pub script_tools: BTreeMap<String, ScriptTool>,
    /// Sub-agent system prompts by sub-agent name.
    pub subagent_prompts: BTreeMap<String, String>,
}

impl Harness {
    /// Loads and validates `dir`, reporting every problem found.
    pub fn load(dir: &Path) -> Result<Self, HarnessError> {
        let mut problems = Vec::new();
        let fail = |problems: Vec<Problem>| HarnessError {
            dir: dir.to_path_buf(),
            problems,
        };
        let toml_path = dir.join("harness.toml");
        let text = match std::fs::read_to_string(&toml_path) {
            Ok(t) => t,
            Err(e) => {
                return Err(fail(vec![Problem {
                    file: "harness.toml".into(),
                    field: None,
                    message: format!("cannot read: {e}"),
                }]));
            }
        };
        let config: HarnessToml = match toml::Deserializer::parse(&text)
            .map_err(|e| (None, e.to_string()))
            .and_then(|de| {
                serde_path_to_error::deserialize(de).map_err(|e| {
                    let path = e.path().to_string();
                    (Some(path), e.into_inner().to_string())
                })
            }) {
            Ok(c) => c,
            Err((field, message)) => {
                return Err(fail(vec![Problem {
                    file: "harness.toml".into(),
                    field: field.filter(|f| f != "."),
                    message: autoagent_harbor::task::one_line(&message),
                }]));
            }
        };

        let read_prompt = |field: &str, rel: &str, problems: &mut Vec<Problem>| -> Option<String> {
            match read_inside(dir, rel) {
                Ok(text) => Some(text),
                Err(message) => {
                    problems.push(Problem {
                        file: "harness.toml".into(),
                        field: Some(field.to_owned()),
                        message,
                    });
                    None
                }
            }
        };
        let system_prompt = read_prompt(
            "agent.system_prompt",
            &config.agent.system_prompt,
            &mut problems,
        );
        let instruction_template = config
            .agent
            .instruction_template
            .as_ref()
            .and_then(|t| read_prompt("agent.instruction_template", t, &mut problems));
        if let Some(t) = &instruction_template
            && !t.contains("{instruction}")
        {
            problems.push(Problem {
                file: config
                    .agent
                    .instruction_template
                    .clone()
                    .unwrap_or_default(),
                field: None,
                message: "an instruction template must contain `{instruction}`".into(),
            });
        }
        let verify_prompt = if config.verify.enabled {
            read_prompt("verify.prompt", &config.verify.prompt, &mut problems)
        } else {
            None
        };
        if config.agent.max_turns == 0 {
            problems.push(Problem {
                file: "harness.toml".into(),
                field: Some("agent.max_turns".into()),
                message: "must be at least 1".into(),
            });
        }
        // `bash` clamps the model's timeout to [1, this] (`f64::clamp` panics below 1 or on NaN)
        // and `Duration::from_secs_f64` panics on infinity.
        if !timeout_in_range(config.bash.timeout_sec) {
            problems.push(Problem {
                file: "harness.toml".into(),
                field: Some("bash.timeout_sec".into()),
                message: format!("{TIMEOUT_RANGE}, found {}", config.bash.timeout_sec),
            });
        }
        if let Some(e) = &config.agent.reasoning_effort
            && !["minimal", "low", "medium", "high"].contains(&e.as_str())
        {
            problems.push(Problem {
                file: "harness.toml".into(),
                field: Some("agent.reasoning_effort".into()),
                message: format!("expected minimal, low, medium or high, found {e:?}"),
            });
        }

        // Custom tools.
        let mut script_tools = BTreeMap::new();
        let tools_dir = dir.join("tools");
        if tools_dir.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(&tools_dir)
                .map(|rd| rd.flatten().map(|e| e.path()).collect())
                .unwrap_or_default();
            entries.sort();
            for path in entries
                .into_iter()
                .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            {
                let name = path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let file = format!("tools/{name}.toml");
                if let Some(tool) = load_tool(&tools_dir, &path, &name, &file, &mut problems) {
                    script_tools.insert(name, tool);
                }
            }
        }

        // Sub-agents.
        let mut subagent_prompts = BTreeMap::new();
        let mut seen = BTreeSet::new();
        for (i, sub) in config.subagents.iter().enumerate() {
            let field = |f: &str| Some(format!("subagents[{i}].{f}"));
            if !valid_tool_name(&sub.name) {
                problems.push(Problem {
                    file: "harness.toml".into(),
                    field: field("name"),
                    message: format!(
                        "{:?} is not a valid tool name (letters, digits, _ and -)",
                        sub.name
                    ),
                });
            }
            if !seen.insert(sub.name.clone()) {
                problems.push(Problem {
                    file: "harness.toml".into(),
                    field: field("name"),
                    message: format!("sub-agent {:?} is defined twice", sub.name),
                });
            }
            if is_builtin(&sub.name) || script_tools.contains_key(&sub.name) {
                problems.push(Problem {
                    file: "harness.toml".into(),
                    field: field("name"),
                    message: format!("{:?} is already the name of a tool", sub.name),
                });
            }
            if sub.max_turns == 0 {
                problems.push(Problem {
                    file: "harness.toml".into(),
                    field: field("max_turns"),
                    message: "must be at least 1".into(),
                });
            }
            if let Some(p) = read_prompt(
                &format!("subagents[{i}].system_prompt"),
                &sub.system_prompt,
                &mut problems,
            ) {
                subagent_prompts.insert(sub.name.clone(), p);
            }
        }
        let known =
            |name: &str| is_builtin(name) || script_tools.contains_key(name) || seen.contains(name);
        for (i, t) in config.agent.tools.iter().enumerate() {
            if !known(t) {
                problems.push(Problem {
                    file: "harness.toml".into(),
                    field: Some(format!("agent.tools[{i}]")),
                    message: format!(
                        "unknown tool {t:?}; built-in tools are {}",
                        builtin_names().collect::<Vec<_>>().join(", ")
                    ),
                });
            }
        }
        for (i, sub) in config.subagents.iter().enumerate() {
            for (j, t) in sub.tools.iter().enumerate() {
                if !known(t) {
                    problems.push(Problem {
                        file: "harness.toml".into(),
                        field: Some(format!("subagents[{i}].tools[{j}]")),
                        message: format!("unknown tool {t:?}"),
                    });
                }
            }
        }
        // A sub-agent that can reach itself through its tools would recurse without end.
        for sub in &config.subagents {
            if let Some(path) = cycle_from(&config.subagents, &sub.name) {
                problems.push(Problem {
                    file: "harness.toml".into(),
                    field: Some("subagents".into()),
                    message: format!(
                        "sub-agent {:?} calls itself: {}",
                        sub.name,
                        path.join(" → ")
                    ),
                });
            }
        }

        if !problems.is_empty() {
            return Err(fail(problems));
        }
        let Some(system_prompt) = system_prompt else {
            return Err(fail(problems));
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            config,
            system_prompt,
            instruction_template,
            verify_prompt,
            script_tools,
            subagent_prompts,
        })
    }

    /// The first user message for an instruction.
    pub fn first_message(&self, instruction: &str) -> String {
        match &self.instruction_template {
            Some(t) => t.replace("{instruction}", instruction),
            None => instruction.to_owned(),
        }
    }

    pub fn subagent(&self, name: &str) -> Option<&SubagentSection> {
        self.config.subagents.iter().find(|s| s.name == name)
    }
}

/// A path from `start` back to itself through sub-agent tools, if any.
fn cycle_from(subs: &[SubagentSection], start: &str) -> Option<Vec<String>> {
    fn walk(
        subs: &[SubagentSection],
        current: &str,
        start: &str,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        let Some(sub) = subs.iter().find(|s| s.name == current) else {
            return false;
        };
        for t in &sub.tools {
            if t == start {
                path.push(t.clone());
                return true;
            }
            if subs.iter().any(|s| &s.name == t) && seen.insert(t.clone()) {
                path.push(t.clone());
                if walk(subs, t, start, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start.to_owned()];
    walk(subs, start, start, &mut path, &mut BTreeSet::new()).then_some(path)
}

const TIMEOUT_RANGE: &str = "must be between 1 and 86400 seconds";

fn timeout_in_range(t: f64) -> bool {
    (1.0..=86_400.0).contains(&t)
}

fn valid_tool_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Reads a file that must lie inside the harness dir.
fn read_inside(dir: &Path, rel: &str) -> Result<String, String> {
    let path = dir.join(rel);
    let root = dir
        .canonicalize()
        .map_err(|e| format!("cannot resolve the harness dir: {e}"))?;
    let real = path
        .canonicalize()
        .map_err(|_| format!("file {rel:?} does not exist"))?;
    if !real.starts_with(&root) {
        return Err(format!("{rel:?} is outside the harness dir"));
    }
    std::fs::read_to_string(&real).map_err(|e| format!("cannot read {rel:?}: {e}"))
}

fn load_tool(
    tools_dir: &Path,
    path: &Path,
    name: &str,
    file: &str,
    problems: &mut Vec<Problem>,
) -> Option<ScriptTool> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            problems.push(Problem {
                file: file.to_owned(),
                field: None,
                message: format!("cannot read: {e}"),
            });
            return None;
        }
    };
    let manifest: ToolManifest = match toml::Deserializer::parse(&text)
        .map_err(|e| (None, e.to_string()))
        .and_then(|de| {
            serde_path_to_error::deserialize(de)
                .map_err(|e| (Some(e.path().to_string()), e.into_inner().to_string()))
        }) {
        Ok(m) => m,
        Err((field, message)) => {
            problems.push(Problem {
                file: file.to_owned(),
                field: field.filter(|f| f != "."),
                message: autoagent_harbor::task::one_line(&message),
            });
            return None;
        }
    };
    let before = problems.len();
    if !valid_tool_name(name) {
        problems.push(Problem {
            file: file.to_owned(),
            field: None,
            message: format!("{name:?} is not a valid tool name (letters, digits, _ and -)"),
        });
    }
    if is_builtin(name) {
        problems.push(Problem {
            file: file.to_owned(),
            field: None,
            message: format!("{name:?} is the name of a built-in tool"),
        });
    }
    if read_inside(tools_dir, &manifest.script).is_err() {
        problems.push(Problem {
            file: file.to_owned(),
            field: Some("script".into()),
            message: format!("script {:?} does not exist in tools/", manifest.script),
        });
    }
    if let Some(t) = manifest.timeout_sec
        && !timeout_in_range(t)
    {
        problems.push(Problem {
            file: file.to_owned(),
            field: Some("timeout_sec".into()),
            message: format!("{TIMEOUT_RANGE}, found {t}"),
        });
    }
    if let Err(m) = check_schema(&manifest.parameters, "parameters") {
        problems.push(Problem {
            file: file.to_owned(),
            field: Some(m.0),
            message: m.1,
        });
    }
    (problems.len() == before).then(|| ScriptTool {
        name: name.to_owned(),
        manifest,
    })
}

const SCHEMA_TYPES: &[&str] = &[
    "object", "array", "string", "number", "integer", "boolean", "null",
];

/// Checks that `schema` is a usable JSON Schema for tool arguments: an object schema whose
/// `properties` are schemas, whose `required` names existing properties, and whose `type`s are
/// JSON Schema types. Returns `(field path, message)`.
pub fn check_schema(schema: &Value, at: &str) -> Result<(), (String, String)> {
    let Some(obj) = schema.as_object() else {
        return Err((
            at.to_owned(),
            "a JSON Schema must be an object (a TOML table)".into(),
        ));
    };
    if at == "parameters" && obj.get("type").and_then(Value::as_str) != Some("object") {
        return Err((
            format!("{at}.type"),
            "tool parameters must be `type = \"object\"`".into(),
        ));
    }
    if let Some(t) = obj.get("type") {
        let ok = match t {
            Value::String(s) => SCHEMA_TYPES.contains(&s.as_str()),
            Value::Array(a) => a
                .iter()
                .all(|v| v.as_str().is_some_and(|s| SCHEMA_TYPES.contains(&s))),
            _ => false,
        };
        if !ok {
            return Err((
                format!("{at}.type"),
                format!(
                    "{t} is not a JSON Schema type ({})",
                    SCHEMA_TYPES.join(", ")
                ),
            ));
        }
    }
    if let Some(props) = obj.get("properties") {
        let Some(props) = props.as_object() else {
            return Err((
                format!("{at}.properties"),
                "must be a table of schemas".into(),
            ));
        };
        for (k, v) in props {
            check_schema(v, &format!("{at}.properties.{k}"))?;
        }
    }
    if let Some(req) = obj.get("required") {
        let Some(req) = req.as_array() else {
            return Err((
                format!("{at}.required"),
                "must be a list of property names".into(),
            ));
        };
        let props = obj.get("properties").and_then(Value::as_object);
        for r in req {
            let Some(name) = r.as_str() else {
                return Err((
                    format!("{at}.required"),
                    format!("{r} is not a property name"),
                ));
            };
            if !props.is_some_and(|p| p.contains_key(name)) {
                return Err((
                    format!("{at}.required"),
                    format!("{name:?} is required but not in properties"),
                ));
            }
        }
    }
    if let Some(items) = obj.get("items") {
        check_schema(items, &format!("{at}.items"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn harness(files: &[(&str, &str)]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for (p, c) in files {
            let path = d.path().join(p);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, c).unwrap();
        }
        d
    }

    const OK: &str = "[agent]\nsystem_prompt = \"prompts/system.md\"\n";

    #[test]
    fn minimal_harness_loads_with_defaults() {
        let d = harness(&[
            ("harness.toml", OK),
            ("prompts/system.md", "You are helpful."),
        ]);
        let h = Harness::load(d.path()).unwrap();
        assert_eq!(h.config.agent.tools, ["bash"]);
        assert_eq!(h.config.agent.max_turns, 30);
        assert!(!h.config.verify.enabled);
        assert_eq!(h.config.context.max_tool_output_chars, 30_000);
        assert_eq!(h.first_message("do it"), "do it");
    }

    #[test]
    fn every_problem_is_reported_with_file_and_field() {
        let d = harness(&[
            (
                "harness.toml",
                "[agent]\nsystem_prompt = \"prompts/missing.md\"\ntools = [\"bash\", \"telepathy\"]\n\
                 [verify]\nenabled = true\n\
                 [[subagents]]\nname = \"loop\"\ndescription = \"d\"\nsystem_prompt = \"prompts/s.md\"\ntools = [\"other\"]\n\
                 [[subagents]]\nname = \"other\"\ndescription = \"d\"\nsystem_prompt = \"prompts/s.md\"\ntools = [\"loop\"]\n",
            ),
            ("prompts/s.md", "sub"),
            (
                "tools/t1.toml",
                "description = \"x\"\nscript = \"nope.py\"\n",
            ),
            (
                "tools/t2.toml",
                "description = \"x\"\nscript = \"t2.sh\"\n[parameters]\ntype = \"object\"\nrequired = [\"path\"]\n",
            ),
            ("tools/t2.sh", "echo"),
        ]);
        let err = Harness::load(d.path()).unwrap_err();
        let text = err.to_string();
        for needle in [
            "harness.toml: `agent.system_prompt`: file \"prompts/missing.md\" does not exist",
            "`verify.prompt`: file \"prompts/verify.md\" does not exist",
            "`agent.tools[1]`: unknown tool \"telepathy\"",
            "tools/t1.toml: `script`: script \"nope.py\" does not exist",
            "tools/t2.toml: `parameters.required`: \"path\" is required but not in properties",
            "sub-agent \"loop\" calls itself: loop → other → loop",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
    }

    #[test]
    fn toml_errors_have_line_and_column() {
        let d = harness(&[("harness.toml", "[agent\nsystem_prompt = 1\n")]);
        let text = Harness::load(d.path()).unwrap_err().to_string();
        assert!(text.contains("line 1"), "{text}");
        let d = harness(&[
            (
                "harness.toml",
                "[agent]\nsystem_prompt = \"p.md\"\nmax_turn = 3\n",
            ),
            ("p.md", "x"),
        ]);
        let text = Harness::load(d.path()).unwrap_err().to_string();
        assert!(text.contains("unknown field `max_turn`"), "{text}");
    }

    #[test]
    fn a_subagent_calling_itself_directly() {
        let d = harness(&[
            (
                "harness.toml",
                "[agent]\nsystem_prompt = \"s.md\"\n[[subagents]]\nname = \"me\"\ndescription = \"d\"\nsystem_prompt = \"s.md\"\ntools = [\"me\"]\n",
            ),
            ("s.md", "x"),
        ]);
        let text = Harness::load(d.path()).unwrap_err().to_string();
        assert!(
            text.contains("sub-agent \"me\" calls itself: me → me"),
            "{text}"
        );
    }

    #[test]
    fn prompts_outside_the_harness_are_refused() {
        let outer = tempfile::tempdir().unwrap();
        std::fs::write(outer.path().join("secret.md"), "x").unwrap();
        let inner = outer.path().join("h");
        std::fs::create_dir_all(&inner).unwrap();
        std::fs::write(
            inner.join("harness.toml"),
            "[agent]\nsystem_prompt = \"../secret.md\"\n",
        )
        .unwrap();
        let text = Harness::load(&inner).unwrap_err().to_string();
        assert!(text.contains("outside the harness dir"), "{text}");
    }

    #[test]
    fn schema_checks() {
        assert!(
            check_schema(
                &serde_json::json!({"type": "object", "properties": {"a": {"type": "strin"}}}),
                "parameters"
            )
            .is_err()
        );
        assert!(check_schema(&serde_json::json!({"type": "object", "properties": {"a": {"type": ["string", "null"]}}, "required": ["a"]}), "parameters").is_ok());
        assert!(check_schema(&serde_json::json!({"type": "array"}), "parameters").is_err());
    }
}
