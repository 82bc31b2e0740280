//! `autoagent view` on a jobs dir: it prints the address, answers on it, and stops on SIGINT.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::process::{Command, Stdio};

use super::support::bin;

#[test]
fn view_prints_its_address_and_serves_the_tasks_of_a_jobs_dir() {
    let dir = tempfile::tempdir().unwrap();
    let trial = dir.path().join("job-1/hello__abc1234");
    std::fs::create_dir_all(&trial).unwrap();
    std::fs::write(
        trial.join("result.json"),
        r#"{"task_name": "hello", "verifier_result": {"rewards": {"reward": 1}}}"#,
    )
    .unwrap();
    let mut child = Command::new(bin())
        .args(["view", dir.path().to_str().unwrap(), "--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().expect("an `open` line").unwrap();
        if let Some(u) = line.strip_prefix("open ") {
            break u.to_owned();
        }
    };
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    assert!(addr.starts_with("127.0.0.1:"), "{url}");
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        s,
        "GET /api/tasks HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(r#""tasks":["hello"]"#), "{answer}");
    // SIGINT: the server stops and the command exits cleanly.
    let pid = i32::try_from(child.id()).unwrap();
    Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
}
