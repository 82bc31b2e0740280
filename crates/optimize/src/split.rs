//! The train / holdout split: stable across runs and machines (a hash of the task name), so a
//! resumed or repeated run sets the same tasks aside.

use std::collections::BTreeSet;

use sha2::{Digest, Sha256};

use crate::config::Holdout;

/// Where a task name falls in [0, 1).
fn position(task: &str) -> f64 {
    let h = Sha256::digest(format!("autoagent-holdout:{task}").as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&h[..8]);
    (u64::from_be_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

/// The holdout task names among `tasks`.
pub fn holdout(tasks: &[String], spec: &Holdout) -> BTreeSet<String> {
    match spec {
        Holdout::Fraction(f) => tasks.iter().filter(|t| position(t) < *f).cloned().collect(),
        Holdout::Tasks(names) => tasks
            .iter()
            .filter(|t| names.contains(t))
            .cloned()
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_split_is_stable_and_roughly_the_fraction() {
        let tasks: Vec<String> = (0..1000).map(|i| format!("task-{i}")).collect();
        let a = holdout(&tasks, &Holdout::Fraction(0.2));
        let b = holdout(&tasks, &Holdout::Fraction(0.2));
        assert_eq!(a, b);
        assert!((150..250).contains(&a.len()), "{}", a.len());
        assert!(holdout(&tasks, &Holdout::Fraction(0.0)).is_empty());
        let named = holdout(
            &tasks,
            &Holdout::Tasks(vec!["task-3".into(), "nope".into()]),
        );
        assert_eq!(named.into_iter().collect::<Vec<_>>(), ["task-3"]);
    }
}
