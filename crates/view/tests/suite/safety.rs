//! The server's rules on a plain jobs dir written by hand: names in URLs stay inside the folder
//! (`..`, absolute paths and symlinks refused), keys never appear, the controls take POST only,
//! and a server beyond loopback wants its token.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use serde_json::json;

use super::support::{get, request, serve};

const KEY: &str = "sk-proj-ViewTestKeyValue0123456789abcdef";

/// A jobs dir with one job of one trial whose trajectory quotes the key.
fn jobs_dir(root: &Path) {
    let trial = root.join("job-1/hello__abc1234");
    std::fs::create_dir_all(trial.join("agent")).unwrap();
    std::fs::create_dir_all(trial.join("verifier")).unwrap();
    std::fs::write(
        trial.join("result.json"),
        json!({"task_name": "hello", "trial_name": "hello__abc1234",
               "verifier_result": {"rewards": {"reward": 1.0}},
               "agent_result": {"cost_usd": 0.01, "n_input_tokens": 10, "n_output_tokens": 2}})
        .to_string(),
    )
    .unwrap();
    std::fs::write(
        trial.join("agent/trajectory.json"),
        json!({"schema_version": "ATIF-v1.8", "agent": {"name": "a", "version": "1"},
               "steps": [{"step_id": 1, "source": "user", "message": format!("my key is {KEY}")},
                         {"step_id": 2, "source": "agent", "message": "ok"}]})
        .to_string(),
    )
    .unwrap();
    std::fs::write(
        trial.join("verifier/test-stdout.txt"),
        format!("env: OPENAI_API_KEY={KEY}\n"),
    )
    .unwrap();
    // Outside the folder, and a link to it planted inside.
    let outside = root.parent().unwrap().join("outside");
    std::fs::create_dir_all(outside.join("t/agent")).unwrap();
    std::fs::write(
        outside.join("t/result.json"),
        r#"{"task_name":"secret-task"}"#,
    )
    .unwrap();
    std::os::unix::fs::symlink(&outside, root.join("linked-job")).unwrap();
    std::os::unix::fs::symlink(outside.join("t"), root.join("job-1/linked-trial")).unwrap();
    std::fs::write(root.join(".env"), format!("OPENAI_API_KEY={KEY}\n")).unwrap();
}

#[tokio::test]
async fn urls_stay_inside_keys_never_appear_and_controls_take_post_only() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("jobs");
    std::fs::create_dir_all(&root).unwrap();
    jobs_dir(&root);
    let s = serve(&root, IpAddr::V4(Ipv4Addr::LOCALHOST)).await;
    assert!(s.token.is_none(), "no token on loopback");

    let trial = get(s.addr, "/api/trial/job-1/hello__abc1234").await;
    assert_eq!(trial.status, 200, "{}", trial.body);
    assert!(
        trial.body.contains("my key is [REDACTED]"),
        "{}",
        trial.body
    );
    assert!(
        trial.body.contains("OPENAI_API_KEY=[REDACTED]"),
        "{}",
        trial.body
    );
    assert!(!trial.body.contains(KEY), "{}", trial.body);
    let tasks = get(s.addr, "/api/tasks").await;
    assert_eq!(tasks.status, 200);
    assert!(
        tasks.body.contains("hello__abc1234") && !tasks.body.contains("secret-task"),
        "{}",
        tasks.body
    );
    // A jobs dir has no run page: the tasks page is the start.
    assert_eq!(get(s.addr, "/").await.status, 303);

    for (path, status, why) in [
        ("/api/trial/job-1/..", 400, "`..`"),
        ("/api/trial/../outside", 400, ""),
        ("/api/file/../outside/t/result.json", 400, "`..`"),
        ("/api/file/job-1/../../outside/t/result.json", 400, "`..`"),
        ("/api/file//etc/passwd", 400, "absolute"),
        ("/api/file/%2e%2e/outside/t/result.json", 400, "`..`"),
        ("/api/file/linked-job/t/result.json", 400, "symlink"),
        ("/api/trial/job-1/linked-trial", 400, "symlink"),
        ("/api/job/linked-job", 400, "symlink"),
        ("/api/file/.env", 403, "not shown"),
        ("/api/file/job-1/nothing.txt", 404, ""),
    ] {
        let a = get(s.addr, path).await;
        assert_eq!(a.status, status, "{path}: {}", a.body);
        assert!(a.body.contains(why), "{path}: {}", a.body);
        assert!(
            !a.body.contains("secret-task") && !a.body.contains(KEY),
            "{path}: {}",
            a.body
        );
    }
    let file = get(
        s.addr,
        "/api/file/job-1/hello__abc1234/verifier/test-stdout.txt",
    )
    .await;
    assert_eq!(
        (file.status, file.body.as_str()),
        (200, "env: OPENAI_API_KEY=[REDACTED]\n")
    );

    // The controls: POST with a JSON body only, never from another origin.
    for path in ["/api/stop", "/api/steering"] {
        assert_eq!(get(s.addr, path).await.status, 405, "{path}");
        let form = request(
            s.addr,
            "POST",
            path,
            &[("Content-Type", "application/x-www-form-urlencoded")],
            "text=x",
        )
        .await;
        assert_eq!(form.status, 415, "{path}: {}", form.body);
        let foreign = request(
            s.addr,
            "POST",
            path,
            &[
                ("Content-Type", "application/json"),
                ("Origin", "http://evil.example"),
            ],
            "{}",
        )
        .await;
        assert_eq!(foreign.status, 403, "{path}: {}", foreign.body);
    }
    // A jobs dir has no run to stop.
    let stop = request(
        s.addr,
        "POST",
        "/api/stop",
        &[("Content-Type", "application/json")],
        "{}",
    )
    .await;
    assert_eq!(stop.status, 409, "{}", stop.body);
    assert!(!root.join("STOP").exists());
    // Another name for 127.0.0.1 (DNS rebinding) is refused.
    let rebound = request(
        s.addr,
        "GET",
        "/api/tasks",
        &[("Host", "attacker.example")],
        "",
    )
    .await;
    assert!(
        rebound.status == 403 || rebound.status == 400,
        "{}",
        rebound.status
    );
    s.stop().await;
}

#[tokio::test]
async fn beyond_loopback_every_request_needs_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("jobs");
    std::fs::create_dir_all(&root).unwrap();
    jobs_dir(&root);
    let s = serve(&root, IpAddr::V4(Ipv4Addr::UNSPECIFIED)).await;
    let token = s.token.clone().expect("a token beyond loopback");
    assert_eq!(token.len(), 32);
    assert_eq!(get(s.addr, "/api/tasks").await.status, 401);
    assert_eq!(get(s.addr, "/tasks").await.status, 401);
    assert_eq!(get(s.addr, "/api/tasks?token=wrong").await.status, 401);
    assert_eq!(
        get(s.addr, &format!("/api/tasks?token={token}"))
            .await
            .status,
        200
    );
    let cookie = format!("autoagent_view_token={token}");
    let a = request(s.addr, "GET", "/api/tasks", &[("Cookie", &cookie)], "").await;
    assert_eq!(a.status, 200);
    let bearer = format!("Bearer {token}");
    let a = request(
        s.addr,
        "GET",
        "/api/tasks",
        &[("Authorization", &bearer)],
        "",
    )
    .await;
    assert_eq!(a.status, 200);
    s.stop().await;
}
