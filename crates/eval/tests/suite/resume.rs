//! Resuming a job: finished trials kept, unfinished ones rerun, a changed config refused.

use std::sync::Arc;

use autoagent_eval::OracleAgent;
use autoagent_eval::job::JobError;

use super::support::{config, dump, run};

#[tokio::test]
async fn resume_reruns_only_unfinished_trials() {
    let Some(docker) = autoagent_test_support::docker_backend().await else {
        return;
    };
    let docker = Arc::new(docker);
    let jobs = tempfile::tempdir().unwrap();
    let mut cfg = config(jobs.path(), "resume", "oracle");
    cfg.include = vec!["hello-file".into(), "partial-credit".into()];
    cfg.n_attempts = 2;
    let first = run(&cfg, docker.clone(), Arc::new(OracleAgent)).await;
    assert_eq!(first.trials.len(), 4, "{}", dump(&first.job_dir));

    // One trial "was killed": its result.json is gone; and a half-made trial dir exists.
    let victim = &first.trials[0];
    std::fs::remove_file(first.job_dir.join(&victim.trial_name).join("result.json")).unwrap();
    std::fs::create_dir_all(first.job_dir.join("hello-file__HALFMAD/agent")).unwrap();

    let second = run(&cfg, docker.clone(), Arc::new(OracleAgent)).await;
    let d = dump(&second.job_dir);
    assert_eq!(second.trials.len(), 4, "{d}");
    assert!(!second.job_dir.join("hello-file__HALFMAD").exists(), "{d}");
    assert!(!second.job_dir.join(&victim.trial_name).exists(), "{d}");
    let kept: Vec<_> = first.trials[1..].iter().map(|t| t.id.clone()).collect();
    for id in &kept {
        assert!(
            second.trials.iter().any(|t| &t.id == id),
            "finished trial {id} was rerun\n{d}"
        );
    }
    let rerun: Vec<_> = second
        .trials
        .iter()
        .filter(|t| !kept.contains(&t.id))
        .collect();
    assert_eq!(rerun.len(), 1, "{d}");
    assert_eq!(rerun[0].task_name, victim.task_name);
    assert_eq!(second.result.id, first.result.id, "the job keeps its id");
    assert_eq!(second.result.stats.n_completed_trials, 4);

    // Nothing left to do: a third run runs nothing.
    let third = run(&cfg, docker.clone(), Arc::new(OracleAgent)).await;
    let ids: Vec<_> = third.trials.iter().map(|t| t.id.clone()).collect();
    let ids2: Vec<_> = second.trials.iter().map(|t| t.id.clone()).collect();
    assert_eq!(ids, ids2);

    // Another config under the same job name is refused, naming what changed.
    cfg.n_attempts = 3;
    let err = autoagent_eval::run_job(
        &cfg,
        docker,
        Arc::new(OracleAgent),
        Arc::new(autoagent_eval::job::Silent),
        Default::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, JobError::ConfigMismatch { .. }));
    assert!(err.to_string().contains("n_attempts"), "{err}");
}
