//! The per-task flakiness model: a Beta posterior of each task's pass rate from every attempt
//! of every harness tree, and a class the policies (and the meta-agent) read.

use std::collections::BTreeMap;

use serde::Serialize;

use super::Tallies;
use super::stats::beta_cdf;

/// Below this pass rate a task is a stable fail, above [`HIGH`] a stable pass.
const LOW: f64 = 0.1;
const HIGH: f64 = 0.9;

/// What the attempts say about a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TaskClass {
    /// Almost never passes.
    StableFail,
    /// Almost always passes.
    StablePass,
    /// Passes sometimes: a single attempt says little, a disagreement may be noise.
    Flaky,
}

impl TaskClass {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::StableFail => "stable-fail",
            Self::StablePass => "stable-pass",
            Self::Flaky => "flaky",
        }
    }
}

/// One task's evidence and class.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TaskFlakiness {
    /// Passes and attempts over every tree.
    pub passes: u32,
    pub attempts: u32,
    /// Some single tree both passed and failed it: flaky for sure.
    pub mixed: bool,
    /// The posterior mean pass rate.
    pub mean: f64,
    /// Posterior probability of a pass rate in (0.1, 0.9).
    pub p_flaky: f64,
    pub class: TaskClass,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Evidence {
    passes: u32,
    attempts: u32,
    /// Trees that both passed and failed the task.
    mixed_trees: u32,
}

impl Evidence {
    fn judge(self, prior: f64) -> TaskFlakiness {
        let a = prior + f64::from(self.passes);
        let b = prior + f64::from(self.attempts - self.passes);
        let low = beta_cdf(LOW, a, b);
        let high = 1.0 - beta_cdf(HIGH, a, b);
        let mid = (1.0 - low - high).max(0.0);
        let class = if self.mixed_trees > 0 || (mid >= low && mid >= high) {
            TaskClass::Flaky
        } else if low > high {
            TaskClass::StableFail
        } else {
            TaskClass::StablePass
        };
        TaskFlakiness {
            passes: self.passes,
            attempts: self.attempts,
            mixed: self.mixed_trees > 0,
            mean: a / (a + b),
            p_flaky: mid,
            class,
        }
    }
}

/// Every attempt of every experiment, per task; a tree's tallies are replaced (not added) when
/// it is recorded again, so an incumbent topped up look by look is never counted twice.
#[derive(Debug, Clone, PartialEq)]
pub struct FlakinessModel {
    prior: f64,
    trees: BTreeMap<String, Tallies>,
    /// The evidence of each task and its judgement (kept current by `set_tree`).
    tasks: BTreeMap<String, (Evidence, TaskFlakiness)>,
    /// The judgement of a task never run.
    unseen: TaskFlakiness,
}

impl Default for FlakinessModel {
    fn default() -> Self {
        Self::new(0.3)
    }
}

impl FlakinessModel {
    /// An empty model with a Beta(`prior`, `prior`) prior per task.
    pub fn new(prior: f64) -> Self {
        Self {
            prior,
            trees: BTreeMap::new(),
            tasks: BTreeMap::new(),
            unseen: Evidence::default().judge(prior),
        }
    }

    /// Sets the tallies of the tree `tree` (a commit or tree hash) to `tallies`: all its
    /// attempts so far.
    pub fn set_tree(&mut self, tree: &str, tallies: &Tallies) {
        let mut touched: Vec<String> = Vec::new();
        if let Some(old) = self.trees.remove(tree) {
            for (task, t) in old.iter() {
                if let Some((e, _)) = self.tasks.get_mut(task) {
                    e.passes -= t.passes;
                    e.attempts -= t.attempts;
                    e.mixed_trees -= u32::from(t.mixed());
                    touched.push(task.to_owned());
                }
            }
        }
        for (task, t) in tallies.iter() {
            let unseen = self.unseen;
            let (e, _) = self
                .tasks
                .entry(task.to_owned())
                .or_insert((Evidence::default(), unseen));
            e.passes += t.passes;
            e.attempts += t.attempts;
            e.mixed_trees += u32::from(t.mixed());
            touched.push(task.to_owned());
        }
        for task in touched {
            if let Some((e, j)) = self.tasks.get_mut(&task) {
                *j = e.judge(self.prior);
            }
        }
        self.trees.insert(tree.to_owned(), tallies.clone());
    }

    /// Whether `task` is flaky.
    pub fn is_flaky(&self, task: &str) -> bool {
        self.task(task).class == TaskClass::Flaky
    }

    /// The evidence and class of `task` (the prior alone for a task never run: flaky, since
    /// nothing says otherwise).
    pub fn task(&self, task: &str) -> TaskFlakiness {
        self.tasks.get(task).map_or(self.unseen, |(_, j)| *j)
    }

    /// Every task seen, with its class (for the meta-agent's view).
    pub fn tasks(&self) -> impl Iterator<Item = (&str, TaskFlakiness)> {
        self.tasks.iter().map(|(t, (_, j))| (t.as_str(), *j))
    }
}
