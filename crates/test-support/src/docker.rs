//! The switch for tests that need Docker (or another host facility): without it they skip
//! with a message, except under `AUTOAGENT_REQUIRE_DOCKER=1` (CI), where they fail.

use autoagent_sandbox::docker::{DockerBackend, DockerHost};

/// The variable that turns a skip into a failure.
pub const REQUIRE_DOCKER: &str = "AUTOAGENT_REQUIRE_DOCKER";

/// `available`, or a skip (returns false, says why) — or a panic when the environment
/// requires it.
pub fn require(available: bool, what: &str, why: &str) -> bool {
    if !available {
        assert!(
            std::env::var(REQUIRE_DOCKER).as_deref() != Ok("1"),
            "{REQUIRE_DOCKER}=1 but {what} is not available: {why}"
        );
        eprintln!(
            "skipping: {what} is not available ({why}); set {REQUIRE_DOCKER}=1 to fail instead"
        );
    }
    available
}

/// The Docker backend, or `None` (the test returns early) when no daemon answers.
pub async fn docker_backend() -> Option<DockerBackend> {
    match DockerBackend::connect().await {
        Ok(d) => Some(d),
        Err(e) => {
            require(false, "Docker", &e.to_string());
            None
        }
    }
}

/// The second daemon `scripts/second-dockerd.sh start` runs (`scripts/setup-machine.sh` starts
/// it), unless `AUTOAGENT_DOCKER_HOST2` names another.
pub const SECOND_DOCKER_HOST: &str = "unix:///run/autoagent-dockerd2.sock";

/// The variable that names the second daemon for the tests of the pool of Docker hosts.
pub const DOCKER_HOST2: &str = "AUTOAGENT_DOCKER_HOST2";

/// The second Docker daemon, connected, or `None` (the test returns early) when it does not
/// answer — a failure under `AUTOAGENT_REQUIRE_DOCKER=1`.
pub async fn second_docker_backend() -> Option<DockerBackend> {
    let url = std::env::var(DOCKER_HOST2).unwrap_or_else(|_| SECOND_DOCKER_HOST.to_owned());
    let host: DockerHost = match url.parse() {
        Ok(h) => h,
        Err(e) => {
            require(
                false,
                "a second Docker daemon",
                &format!("${DOCKER_HOST2}: {e}"),
            );
            return None;
        }
    };
    match DockerBackend::connect_to(&host).await {
        Ok(d) => Some(d),
        Err(e) => {
            require(
                false,
                "a second Docker daemon",
                &format!("{e} (start it with `bash scripts/second-dockerd.sh start`)"),
            );
            None
        }
    }
}

/// Whether the `docker` CLI reaches a daemon (for tests that run the `autoagent` binary).
pub fn docker_cli_or_skip() -> bool {
    let ok = std::process::Command::new("docker")
        .arg("info")
        .output()
        .is_ok_and(|o| o.status.success());
    require(ok, "Docker", "`docker info` fails")
}
