//! The train / holdout split: stable across runs and machines (a hash of the task name), so a
//! resumed or repeated run sets the same tasks aside. Holdout membership is a property of the
//! types: the meta-agent's tools are built from [`TrainTasks`] alone, which has no holdout task
//! in it under any name.

use std::collections::{BTreeMap, BTreeSet};

use autoagent_harbor::Task;
use sha2::{Digest, Sha256};

use autoagent_settings::Holdout;

/// The train tasks by name: all that the meta-agent may know of the task set.
#[derive(Debug, Clone, Default)]
pub struct TrainTasks(BTreeMap<String, Task>);

impl TrainTasks {
    pub fn get(&self, name: &str) -> Option<&Task> {
        self.0.get(name)
    }
    pub fn contains(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }
    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.0.keys()
    }
    pub fn tasks(&self) -> impl Iterator<Item = &Task> {
        self.0.values()
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn name_set(&self) -> BTreeSet<String> {
        self.0.keys().cloned().collect()
    }
}

impl FromIterator<Task> for TrainTasks {
    fn from_iter<I: IntoIterator<Item = Task>>(iter: I) -> Self {
        Self(iter.into_iter().map(|t| (t.name.clone(), t)).collect())
    }
}

/// A dataset divided into the tasks the loop optimizes on and those it sets aside.
#[derive(Debug, Clone)]
pub struct TaskSplit {
    pub train: TrainTasks,
    pub holdout: BTreeSet<String>,
}

impl TaskSplit {
    pub fn new(tasks: &[Task], spec: &Holdout) -> Self {
        let names: Vec<String> = tasks.iter().map(|t| t.name.clone()).collect();
        let holdout = holdout(&names, spec);
        let train = tasks
            .iter()
            .filter(|t| !holdout.contains(&t.name))
            .cloned()
            .collect();
        Self { train, holdout }
    }
}

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
