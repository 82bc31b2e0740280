//! A server on a folder, raw HTTP requests to it (paths sent exactly as written, `..` and all).

use std::io::{Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;

use autoagent_view::{Server, ViewOptions};
use tokio_util::sync::CancellationToken;

pub struct Running {
    pub addr: SocketAddr,
    pub base: String,
    pub token: Option<String>,
    pub cancel: CancellationToken,
    pub task: tokio::task::JoinHandle<()>,
}

impl Running {
    pub async fn stop(self) {
        self.cancel.cancel();
        let _ = self.task.await;
    }
}

pub async fn serve(root: &Path, host: IpAddr) -> Running {
    let server = Server::bind(&ViewOptions {
        root: root.to_owned(),
        host,
        port: 0,
    })
    .await
    .unwrap();
    let port = server.addr.port();
    let token = server.token.clone();
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    let task = tokio::spawn(async move {
        server.serve(c).await.unwrap();
    });
    Running {
        addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
        base: format!("http://127.0.0.1:{port}"),
        token,
        cancel,
        task,
    }
}

pub struct Answer {
    pub status: u16,
    pub body: String,
}

/// One HTTP/1.1 request on its own connection.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Answer {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: 127.0.0.1:{}\r\n", addr.port()));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(req.as_bytes()).unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap();
        let text = String::from_utf8_lossy(&out).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        Answer {
            status,
            body: body.to_owned(),
        }
    })
    .await
    .unwrap()
}

pub async fn get(addr: SocketAddr, path: &str) -> Answer {
    request(addr, "GET", path, &[], "").await
}
