//! Harness size, the measure behind the "equal score and simpler → keep" rule:
//!
//! `size = prompt_tokens + tool_count + script_lines + config_entries`, where
//! * `prompt_tokens` ≈ characters / 4 of every prompt the harness uses (system, instruction
//!   template, verification prompt when on, sub-agent prompts);
//! * `tool_count` = built-in tools switched on + custom tools + sub-agents;
//! * `script_lines` = non-empty lines of the custom tools' scripts;
//! * `config_entries` = leaf values in `harness.toml` and the tool manifests (each element of
//!   an array of scalars counts one).
//!
//! Every part grows with what the meta-agent adds, so removing a rule, a tool or a setting that
//! did not help always lowers the size.

use autoagent_agent::Harness;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HarnessSize {
    pub prompt_tokens: u64,
    pub tool_count: u64,
    pub script_lines: u64,
    pub config_entries: u64,
}

impl HarnessSize {
    pub fn total(&self) -> u64 {
        self.prompt_tokens + self.tool_count + self.script_lines + self.config_entries
    }
}

fn leaves(v: &toml::Value) -> u64 {
    match v {
        toml::Value::Table(t) => t.values().map(leaves).sum(),
        toml::Value::Array(a) => a
            .iter()
            .map(|x| {
                if x.is_table() || x.is_array() {
                    leaves(x)
                } else {
                    1
                }
            })
            .sum(),
        _ => 1,
    }
}

fn toml_leaves(path: &std::path::Path) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| t.parse::<toml::Table>().ok())
        .map(|t| leaves(&toml::Value::Table(t)))
        .unwrap_or(0)
}

pub fn measure(h: &Harness) -> HarnessSize {
    let mut chars = h.system_prompt.chars().count();
    chars += h
        .instruction_template
        .as_deref()
        .map(|t| t.chars().count())
        .unwrap_or(0);
    chars += h
        .verify_prompt
        .as_deref()
        .map(|t| t.chars().count())
        .unwrap_or(0);
    chars += h
        .subagent_prompts
        .values()
        .map(|p| p.chars().count())
        .sum::<usize>();
    let mut config_entries = toml_leaves(&h.dir.join("harness.toml"));
    let mut script_lines = 0;
    for (name, t) in &h.script_tools {
        config_entries += toml_leaves(&h.dir.join("tools").join(format!("{name}.toml")));
        script_lines += std::fs::read_to_string(h.dir.join("tools").join(&t.manifest.script))
            .map(|s| s.lines().filter(|l| !l.trim().is_empty()).count() as u64)
            .unwrap_or(0);
    }
    HarnessSize {
        prompt_tokens: chars.div_ceil(4) as u64,
        tool_count: (h.config.agent.tools.len() + h.script_tools.len() + h.config.subagents.len())
            as u64,
        script_lines,
        config_entries,
    }
}
