//! The ATIF v1.8 validator every trajectory of the tests goes through: the JSON Schema
//! (`atif-v1.8.schema.json`, the published one) plus the cross-field rules of `atif.md` §3.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use serde_json::Value;

fn schema_validator() -> &'static jsonschema::Validator {
    static VALIDATOR: OnceLock<jsonschema::Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| {
        let schema: Value = serde_json::from_str(include_str!("atif-v1.8.schema.json"))
            .expect("the ATIF schema is JSON");
        jsonschema::validator_for(&schema).expect("the ATIF schema compiles")
    })
}

/// Every way `doc` breaks ATIF v1.8: the JSON Schema (field shapes, unknown keys) and the
/// cross-field rules of `atif.md` §3, plus what our writer promises on top (v1.8, ISO 8601
/// timestamps, `total_steps` equal to the steps, unique call ids within a step).
pub fn atif_problems(doc: &Value) -> Vec<String> {
    let mut problems: Vec<String> = schema_validator()
        .iter_errors(doc)
        .flat_map(|e| schema_messages(&e))
        .collect();
    let mut embedded = BTreeSet::new();
    let mut refs = Vec::new();
    check_trajectory(doc, "trajectory", &mut problems, &mut embedded, &mut refs);
    for (at, id) in refs {
        if !embedded.contains(&id) {
            problems.push(format!(
                "{at}: subagent_trajectory_ref {id:?} matches no embedded subagent trajectory"
            ));
        }
    }
    problems
}

/// Panics with every problem and the document when `doc` is not valid ATIF.
pub fn assert_valid_atif(doc: &Value) {
    let problems = atif_problems(doc);
    assert!(
        problems.is_empty(),
        "invalid ATIF trajectory:\n  {}\n{}",
        problems.join("\n  "),
        serde_json::to_string_pretty(doc).unwrap_or_default()
    );
}

/// A schema error, described by its innermost causes: for `anyOf` (every optional field is
/// `anyOf [T, null]`), the branch that got furthest into the document says what is wrong.
fn schema_messages(e: &jsonschema::ValidationError<'_>) -> Vec<String> {
    use jsonschema::error::ValidationErrorKind as Kind;
    if let Kind::AnyOf { context } | Kind::OneOfNotValid { context } = e.kind() {
        let depth = |branch: &Vec<jsonschema::ValidationError<'static>>| {
            branch
                .iter()
                .map(|b| b.instance_path().as_str().len())
                .max()
                .unwrap_or(0)
        };
        if let Some(best) = context.iter().max_by_key(|b| depth(b)) {
            let inner: Vec<String> = best.iter().flat_map(|b| schema_messages(b)).collect();
            if !inner.is_empty() {
                return inner;
            }
        }
    }
    vec![format!("schema: at {}: {e}", e.instance_path())]
}

const AGENT_ONLY: &[&str] = &[
    "model_name",
    "reasoning_effort",
    "reasoning_content",
    "tool_calls",
    "metrics",
];

fn present(v: &Value, key: &str) -> bool {
    v.get(key).is_some_and(|x| !x.is_null())
}

fn check_trajectory(
    t: &Value,
    at: &str,
    problems: &mut Vec<String>,
    embedded: &mut BTreeSet<String>,
    refs: &mut Vec<(String, String)>,
) {
    if t["schema_version"] != "ATIF-v1.8" {
        problems.push(format!(
            "{at}.schema_version: expected \"ATIF-v1.8\", found {}",
            t["schema_version"]
        ));
    }
    let Some(steps) = t["steps"].as_array() else {
        problems.push(format!("{at}.steps: missing"));
        return;
    };
    if steps.is_empty() {
        problems.push(format!("{at}.steps: empty"));
    }
    for (i, s) in steps.iter().enumerate() {
        let here = format!("{at}.steps[{i}]");
        // Rule 1: sequential ids from 1.
        if s["step_id"].as_u64() != Some(i as u64 + 1) {
            problems.push(format!(
                "{here}.step_id: expected {}, found {}",
                i + 1,
                s["step_id"]
            ));
        }
        // Rule 2: agent-only fields.
        if s["source"] != "agent" {
            for key in AGENT_ONLY {
                if present(s, key) {
                    problems.push(format!(
                        "{here}.{key}: only agent steps may have it (source {})",
                        s["source"]
                    ));
                }
            }
        } else if s["llm_call_count"] == 0 {
            // Rule 3.
            for key in ["metrics", "reasoning_content"] {
                if present(s, key) {
                    problems.push(format!("{here}.{key}: not allowed with llm_call_count 0"));
                }
            }
        }
        if let Some(ts) = s["timestamp"].as_str()
            && chrono::DateTime::parse_from_rfc3339(ts).is_err()
        {
            problems.push(format!("{here}.timestamp: {ts:?} is not ISO 8601"));
        }
        // Rule 4: observations answer this step's calls.
        let call_ids: Vec<&str> = s["tool_calls"]
            .as_array()
            .map(|calls| {
                calls
                    .iter()
                    .filter_map(|c| c["tool_call_id"].as_str())
                    .collect()
            })
            .unwrap_or_default();
        let unique: BTreeSet<&str> = call_ids.iter().copied().collect();
        if unique.len() != call_ids.len() {
            problems.push(format!(
                "{here}.tool_calls: duplicate tool_call_id in {call_ids:?}"
            ));
        }
        for (j, r) in s["observation"]["results"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            let rhere = format!("{here}.observation.results[{j}]");
            if let Some(id) = r["source_call_id"].as_str()
                && !unique.contains(id)
            {
                problems.push(format!(
                    "{rhere}.source_call_id: {id:?} is not a tool_call_id of this step ({call_ids:?})"
                ));
            }
            // Rule 6, and collect refs to resolve.
            for (k, rf) in r["subagent_trajectory_ref"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
            {
                let refhere = format!("{rhere}.subagent_trajectory_ref[{k}]");
                match rf["trajectory_id"].as_str() {
                    Some(id) => refs.push((refhere, id.to_owned())),
                    None if present(rf, "trajectory_path") => {}
                    None => problems.push(format!(
                        "{refhere}: needs a trajectory_id or a trajectory_path"
                    )),
                }
            }
        }
    }
    if let Some(total) = t["final_metrics"]["total_steps"].as_u64()
        && total != steps.len() as u64
        && !present(t, "notes")
    {
        problems.push(format!(
            "{at}.final_metrics.total_steps: {total} but {} steps (and no notes)",
            steps.len()
        ));
    }
    // Rule 5: embedded subagents have unique, non-null ids (checked over the whole tree, so
    // that every reference resolves to exactly one trajectory).
    for (i, sub) in t["subagent_trajectories"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let here = format!("{at}.subagent_trajectories[{i}]");
        match sub["trajectory_id"].as_str() {
            Some(id) => {
                if !embedded.insert(id.to_owned()) {
                    problems.push(format!("{here}.trajectory_id: {id:?} is not unique"));
                }
            }
            None => problems.push(format!("{here}.trajectory_id: missing or null")),
        }
        check_trajectory(sub, &here, problems, embedded, refs);
    }
}
