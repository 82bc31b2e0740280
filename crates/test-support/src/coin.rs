//! Tasks whose success is a seeded coin with a known probability, and the scripted task and meta
//! models that play them (`fixtures/coin/`): the acceptance policies' end-to-end tests.
//!
//! Each task asks for `ok` in `/app/out.txt` and names its probability in its instruction
//! (`pass-probability=0.3`); the scripted task agent (`fixtures/coin/task-agent.toml`) writes it
//! on heads, where heads has that probability plus the harness's `boost=` (in its system
//! prompt). The meta scripts change the boost: experiment 1 is truly helpful (+0.5), 2 neutral
//! (one more line, the same boost), 3 harmful (-0.4).

use std::path::{Path, PathBuf};

/// The per-task pass probabilities of [`write_tasks`]' default set.
pub const PROBABILITIES: [f64; 6] = [0.0, 0.2, 0.3, 0.5, 0.5, 0.9];

/// The baseline system prompt: no boost.
pub const BASELINE_PROMPT: &str = "You are a terminal agent. Do the task.\n";

/// `fixtures/coin/`: `task-agent.toml` and `meta-{1,2,3}.toml`.
pub fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/coin")
        .canonicalize()
        .expect("fixtures/coin exists")
}

/// Writes one task per probability into `tasks_dir` (`coin-0` …), all sharing one image.
/// `series` goes into each instruction: the scripted coin's draws are counted per process and
/// per instruction, so tests that run in one process at once need series of their own to stay
/// reproducible.
pub fn write_tasks(tasks_dir: &Path, probabilities: &[f64], series: &str) {
    for (i, p) in probabilities.iter().enumerate() {
        let dir = tasks_dir.join(format!("coin-{i}"));
        for sub in ["environment", "tests"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        std::fs::write(
            dir.join("task.toml"),
            "[verifier]\ntimeout_sec = 60.0\n\n[agent]\ntimeout_sec = 60.0\n\n[environment]\nbuild_timeout_sec = 300.0\ncpus = 1\nmemory_mb = 512\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("instruction.md"),
            format!(
                "Write the word ok into /app/out.txt (task {i}, series {series}). pass-probability={p}\n"
            ),
        )
        .unwrap();
        std::fs::write(
            dir.join("environment/Dockerfile"),
            "FROM autoagent/debian:bookworm\nWORKDIR /app\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("tests/test.sh"),
            "#!/bin/bash\nif [ \"$(cat /app/out.txt 2>/dev/null)\" = ok ]; then echo 1 > /logs/verifier/reward.txt; else echo 0 > /logs/verifier/reward.txt; fi\n",
        )
        .unwrap();
    }
}

/// Sets the harness's system prompt file to the baseline's.
pub fn write_baseline_prompt(harness_dir: &Path) {
    std::fs::write(harness_dir.join("prompts/system.md"), BASELINE_PROMPT).unwrap();
}
