//! `autoagent view [WORKSPACE | JOBS_DIR]`: the live web dashboard of a run.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use autoagent_view::{DEFAULT_PORT, Server, ViewOptions};
use tokio_util::sync::CancellationToken;

#[derive(Debug, clap::Args)]
pub struct ViewArgs {
    /// A workspace (results.tsv, .autoagent/, harness/, jobs/) or a plain jobs dir.
    #[arg(default_value = ".")]
    pub path: PathBuf,
    /// The port to listen on (0 picks a free one).
    #[arg(long, default_value_t = DEFAULT_PORT)]
    pub port: u16,
    /// The address to listen on. Anything but loopback requires the token printed at start.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
}

pub async fn run(args: ViewArgs) -> anyhow::Result<ExitCode> {
    let server = Server::bind(&ViewOptions {
        root: args.path,
        host: args.host,
        port: args.port,
    })
    .await?;
    println!(
        "autoagent view: {} ({:?})",
        server.root().display(),
        server.kind
    );
    if server.token.is_some() {
        println!(
            "listening on {} beyond loopback: every request needs the token",
            server.addr
        );
    }
    println!("open {}", server.url());
    let cancel = CancellationToken::new();
    let stop = cancel.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        stop.cancel();
    });
    server.serve(cancel).await?;
    Ok(ExitCode::SUCCESS)
}
