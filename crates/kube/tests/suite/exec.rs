//! Execs over the websocket subresource: exit codes, stderr, the output cap, both
//! subprotocols, failures, timeouts.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use autoagent_kube::exec::kill_script;
use autoagent_sandbox::{Backend, ExecRequest, SandboxError};
use pretty_assertions::assert_eq;

use super::fake::{Reply, V4, V5};
use super::support::{spec, world};

#[tokio::test]
async fn exit_codes_and_stderr_come_through_v5() {
    let w = world().await;
    w.fake
        .on_exec("exit 3", Reply::transcript("exec-v5-exit-3.json"));
    w.fake
        .on_exec("echo hello", Reply::transcript("exec-v5-hello.json"));
    let sb = w.backend.start(&spec("codes")).await.unwrap();

    let out = sb
        .exec(ExecRequest::new("echo out; echo err >&2; exit 3"))
        .await
        .unwrap();
    assert_eq!(
        (
            out.exit_code,
            out.stdout.as_str(),
            out.stderr.as_str(),
            out.timed_out,
            out.truncated
        ),
        (Some(3), "out\n", "err\n", false, false),
        "{}",
        w.fake.log()
    );
    let ok = sb.exec(ExecRequest::new("echo hello")).await.unwrap();
    assert_eq!(
        (ok.exit_code, ok.stdout.as_str(), ok.stderr.as_str()),
        (Some(0), "hello\n", "")
    );

    let execs = w.fake.execs();
    let first = &execs[0];
    let log = w.fake.log();
    let e = first.exec.as_ref().unwrap();
    assert_eq!(
        e.offered,
        format!("{V5}, {V4}"),
        "kube offers v5 first\n{log}"
    );
    assert_eq!(e.protocol, V5, "{log}");
    assert_eq!(
        first.path,
        format!("/api/v1/namespaces/autoagent-test/pods/{}/exec", sb.id())
    );
    assert_eq!(first.query_values("stdout"), ["true"], "{log}");
    assert_eq!(first.query_values("stderr"), ["true"], "{log}");
    assert_eq!(
        first.query_values("stdin"),
        Vec::<&str>::new(),
        "no stdin for a plain exec\n{log}"
    );
    assert_eq!(first.query_values("container"), ["main"], "{log}");
    let command = first.query_values("command");
    assert_eq!(&command[..2], ["sh", "-c"], "{log}");
    assert!(
        command[2].contains("bash -c 'echo out; echo err >&2; exit 3'"),
        "the request's command runs under bash -c\n{log}"
    );
    sb.destroy().await.unwrap();
}

#[tokio::test]
async fn a_v4_only_server_gives_the_same_answers() {
    let w = world().await;
    w.fake.speak(&[V4]);
    w.fake
        .on_exec("exit 3", Reply::transcript("exec-v4-exit-3.json"));
    let sb = w.backend.start(&spec("v4")).await.unwrap();
    let out = sb
        .exec(ExecRequest::new("echo out; echo err >&2; exit 3"))
        .await
        .unwrap();
    assert_eq!(
        (out.exit_code, out.stdout.as_str(), out.stderr.as_str()),
        (Some(3), "out\n", "err\n"),
        "{}",
        w.fake.log()
    );
    assert_eq!(w.fake.execs()[0].exec.as_ref().unwrap().protocol, V4);
    sb.destroy().await.unwrap();
}

#[tokio::test]
async fn user_env_and_cwd_are_applied_by_the_wrapper() {
    let w = world().await;
    let sb = w.backend.start(&spec("wrap")).await.unwrap();
    sb.exec(
        ExecRequest::new("make test")
            .cwd(Some("/src".into()))
            .env(BTreeMap::from([("MODE".into(), "fast run".into())]))
            .user(Some("agent".into())),
    )
    .await
    .unwrap();
    let execs = w.fake.execs();
    let script = execs[0].script();
    assert!(script.starts_with("cd /src || exit 1\n"), "{script}");
    assert!(
        script.contains("'MODE=fast run' bash -c 'make test'"),
        "{script}"
    );
    assert!(script.contains("runuser -u \"$u\" -- \"$@\""), "{script}");
    sb.destroy().await.unwrap();
}

#[tokio::test]
async fn output_beyond_the_limit_is_cut_and_flagged() {
    let w = world().await;
    let big = vec![b'x'; 200 * 1024];
    w.fake.on_exec("yes", Reply::exit(0, &big, b"warn\n"));
    let sb = w.backend.start(&spec("cap")).await.unwrap();
    let mut req = ExecRequest::new("yes x | head -c 204800");
    req.output_limit = Some(1000);
    let out = sb.exec(req).await.unwrap();
    assert_eq!(out.stdout.len(), 1000, "{}", w.fake.log());
    assert!(out.truncated);
    assert_eq!(out.stderr, "warn\n", "the cap is per stream");
    assert_eq!(
        out.exit_code,
        Some(0),
        "the rest was read, so the status arrived"
    );

    let full = sb.exec(ExecRequest::new("yes again")).await.unwrap();
    assert_eq!(
        full.stdout.len(),
        big.len(),
        "under the default limit nothing is cut"
    );
    assert!(!full.truncated);
    sb.destroy().await.unwrap();
}

#[tokio::test]
async fn a_status_that_is_no_exit_code_is_an_exec_error() {
    let w = world().await;
    w.fake
        .on_exec("anything", Reply::transcript("exec-internal-error.json"));
    let sb = w.backend.start(&spec("internal")).await.unwrap();
    let e = sb.exec(ExecRequest::new("anything")).await.unwrap_err();
    let text = e.to_string();
    assert!(
        matches!(e, SandboxError::Exec(_))
            && text.contains("InternalError")
            && text.contains("executable file not found"),
        "{e:?}\n{}",
        w.fake.log()
    );
    sb.destroy().await.unwrap();
}

#[tokio::test]
async fn a_timeout_returns_what_came_and_kills_the_command() {
    let w = world().await;
    w.fake.on_exec("sleep 100", Reply::hang(b"started\n"));
    let sb = w.backend.start(&spec("slow")).await.unwrap();
    let t0 = Instant::now();
    let out = sb
        .exec(ExecRequest::new("echo started; sleep 100").timeout(Some(Duration::from_millis(300))))
        .await
        .unwrap();
    let took = t0.elapsed();
    let log = w.fake.log();
    assert_eq!(
        (out.timed_out, out.exit_code, out.stdout.as_str()),
        (true, None, "started\n"),
        "{log}"
    );
    assert!(
        took < Duration::from_secs(5),
        "returned after {took:?}\n{log}"
    );

    let execs = w.fake.execs();
    assert_eq!(execs.len(), 2, "the command, then the kill\n{log}");
    let script = execs[0].script();
    let mark = script
        .split("AUTOAGENT_EXEC=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or_else(|| panic!("no mark in {script}"));
    assert_eq!(
        execs[1].script(),
        kill_script(mark),
        "the kill exec names the timed-out exec's mark\n{log}"
    );
    // The fake notices the hang-up once the backend drops the stream.
    let deadline = Instant::now() + Duration::from_secs(2);
    while !w.fake.execs()[0].exec.as_ref().unwrap().client_hung_up && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        w.fake.execs()[0].exec.as_ref().unwrap().client_hung_up,
        "the timed-out stream is closed\n{}",
        w.fake.log()
    );
    sb.destroy().await.unwrap();
}

#[tokio::test]
async fn exec_in_a_pod_that_is_gone_says_so_and_liveness_agrees() {
    let w = world().await;
    let sb = w.backend.start(&spec("gone")).await.unwrap();
    w.fake.vanish(sb.id());
    let e = sb.exec(ExecRequest::new("true")).await.unwrap_err();
    assert!(
        matches!(&e, SandboxError::Exec(m) if m.contains("not found")),
        "{e:?}\n{}",
        w.fake.log()
    );
    assert_eq!(sb.liveness().await, autoagent_sandbox::Liveness::Gone);
}

#[tokio::test]
async fn a_stream_cut_mid_exec_is_unreachable_not_a_hang() {
    let w = world().await;
    let Reply::Hang(frames) = Reply::hang(b"partial\n") else {
        unreachable!()
    };
    w.fake.on_exec("long job", Reply::Reset(frames));
    let sb = w.backend.start(&spec("reset")).await.unwrap();
    let got = tokio::time::timeout(
        Duration::from_secs(5),
        sb.exec(ExecRequest::new("long job")),
    )
    .await
    .unwrap_or_else(|_| panic!("the exec hangs on a cut stream\n{}", w.fake.log()));
    let e = got.unwrap_err();
    assert!(
        matches!(&e, SandboxError::Unreachable { message, .. } if message.contains("broke")),
        "{e:?}\n{}",
        w.fake.log()
    );
    sb.destroy().await.unwrap();
}
