//! Files in and out as tar streams through exec: `tar -x` reads the archive on stdin (ended
//! by v5's close frame), `tar -c` writes one on stdout.

use std::os::unix::fs::PermissionsExt;

use autoagent_sandbox::{Backend, SandboxError};
use pretty_assertions::assert_eq;

use super::support::{spec, world};

#[tokio::test]
async fn upload_write_and_download_round_trip() {
    let w = world().await;
    let sb = w.backend.start(&spec("files")).await.unwrap();
    let src = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(src.path().join("sub")).unwrap();
    std::fs::write(src.path().join("sub/a.txt"), "A").unwrap();
    std::fs::write(src.path().join("b.bin"), [0u8, 255, 1, 2]).unwrap();

    sb.upload(src.path(), "/tests")
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", w.fake.log()));
    sb.write_file("solve.sh", b"#!/bin/sh\necho solved\n", 0o755)
        .await
        .unwrap();

    let log = w.fake.log();
    let execs = w.fake.execs();
    assert_eq!(execs.len(), 2, "{log}");
    for e in &execs {
        assert_eq!(e.script(), "tar -x -o -f - -C /", "{log}");
        assert_eq!(e.query_values("stdin"), ["true"], "{log}");
        let seen = e.exec.as_ref().unwrap();
        assert!(seen.stdin_closed, "stdin ends with v5's close frame\n{log}");
        assert!(
            !seen.client_hung_up,
            "the status is awaited, not cut off\n{log}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(w.fake.fs().join("tests/sub/a.txt")).unwrap(),
        "A"
    );
    let solve = w.fake.fs().join("app/solve.sh");
    assert_eq!(
        std::fs::read_to_string(&solve).unwrap(),
        "#!/bin/sh\necho solved\n",
        "a relative path is under the workdir"
    );
    assert_eq!(
        std::fs::metadata(&solve).unwrap().permissions().mode() & 0o777,
        0o755
    );

    let back = tempfile::tempdir().unwrap();
    sb.download("/tests", back.path())
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", w.fake.log()));
    assert_eq!(
        std::fs::read_to_string(back.path().join("sub/a.txt")).unwrap(),
        "A"
    );
    assert_eq!(
        std::fs::read(back.path().join("b.bin")).unwrap(),
        [0u8, 255, 1, 2]
    );
    let one = back.path().join("copy.sh");
    sb.download("/app/solve.sh", &one).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(one).unwrap(),
        "#!/bin/sh\necho solved\n"
    );
    let downloads: Vec<String> = w.fake.execs()[2..]
        .iter()
        .map(|e| e.script().to_owned())
        .collect();
    assert_eq!(
        downloads,
        ["tar -c -f - -C / tests", "tar -c -f - -C /app solve.sh"],
        "{}",
        w.fake.log()
    );
    sb.destroy().await.unwrap();
}

#[tokio::test]
async fn downloading_a_missing_path_is_a_transfer_error_with_tars_words() {
    let w = world().await;
    let sb = w.backend.start(&spec("missing")).await.unwrap();
    let e = sb
        .download("/logs/verifier", tempfile::tempdir().unwrap().path())
        .await
        .unwrap_err();
    assert!(
        matches!(&e, SandboxError::Transfer(m) if m.contains("/logs/verifier") && m.contains("No such file")),
        "{e:?}\n{}",
        w.fake.log()
    );
    sb.destroy().await.unwrap();
}

#[tokio::test]
async fn an_upload_to_a_v4_only_server_fails_and_says_why() {
    let w = world().await;
    w.fake.speak(&[super::fake::V4]);
    let sb = w.backend.start(&spec("old")).await.unwrap();
    let e = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        sb.write_file("/x", b"x", 0o644),
    )
    .await
    .unwrap_or_else(|_| panic!("hangs\n{}", w.fake.log()))
    .unwrap_err();
    let log = w.fake.log();
    assert!(
        matches!(&e, SandboxError::Transfer(m) if m.contains("v4.channel.k8s.io") && m.contains("1.30")),
        "{e:?}\n{log}"
    );
    let seen = w.fake.execs()[0].exec.clone().unwrap();
    assert!(
        !seen.stdin_closed && seen.client_hung_up,
        "v4 has no close frame: kube closes the socket\n{log}"
    );
    sb.destroy().await.unwrap();
}
