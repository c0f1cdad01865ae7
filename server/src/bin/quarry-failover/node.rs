//! The two quarryd nodes of a run: their configuration files, their
//! processes (start, kill -9, SIGSTOP/SIGCONT) and the clients that reach
//! their public and replication listeners (with the pair's token, over TLS
//! with `--tls-dir`).

use anyhow::{Context, Result};
use quarry_proto::replication::v1 as rpb;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub(crate) const TOKEN: &str = "failover-harness-token-0123456789";

/// The harness's TLS to the replication listeners (`--tls-dir`).
pub(crate) static TLS: std::sync::OnceLock<tonic::transport::ClientTlsConfig> = std::sync::OnceLock::new();

pub(crate) struct Node {
    pub(crate) conf: PathBuf,
    pub(crate) log: PathBuf,
    pub(crate) public: String,
    pub(crate) repl: String,
    pub(crate) child: Option<Child>,
}

impl Node {
    pub(crate) fn start(&mut self, quarryd: &Path) -> Result<()> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log)?;
        let child = Command::new(quarryd)
            .arg("--config")
            .arg(&self.conf)
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", quarryd.display()))?;
        self.child = Some(child);
        Ok(())
    }

    pub(crate) fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Send `sig` ("STOP", "CONT") with kill(1).
    pub(crate) fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .arg(format!("-{sig}"))
                .arg(c.id().to_string())
                .status();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.signal("CONT");
        self.kill();
    }
}

/// `peer_repl`: the port this node dials for its peer's replication
/// listener (the peer's own, or a proxy's).
pub(crate) fn write_conf(
    dir: &Path,
    i: usize,
    (port, peer_repl): (u16, u16),
    lease_ms: u64,
    mode: &str,
    tls: Option<&Path>,
) -> Result<Node> {
    let d = dir.join(format!("node{i}"));
    std::fs::create_dir_all(&d)?;
    let token = dir.join("token");
    std::fs::write(&token, format!("{TOKEN}\n"))?;
    let conf = d.join("quarryd.toml");
    let role = if i == 0 { "primary" } else { "standby" };
    let mut text = format!(
        "data_dir = \"{}\"\nlisten = \"127.0.0.1:{port}\"\nmetrics_listen = \"127.0.0.1:{}\"\nshards = 1\nmemory_budget_mb = 512\nflush_at = 3000\nwrite_stall_at = 50000\n",
        d.join("data").display(),
        port + 1,
    );
    if mode != "single" {
        text += &format!(
            "\n[replication]\nrole = \"{role}\"\npeer = \"127.0.0.1:{}\"\nreplication_listen = \"127.0.0.1:{}\"\ntoken_file = \"{}\"\nlease_ms = {lease_ms}\nwrite_timeout_ms = 3000\nmode = \"{mode}\"\n",
            peer_repl,
            port + 2,
            token.display()
        );
        if let Some(t) = tls {
            text += &format!(
                "tls_cert = \"{}\"\ntls_key = \"{}\"\ntls_ca = \"{}\"\ntls_require_client_cert = true\n",
                t.join(format!("node{i}.crt")).display(),
                t.join(format!("node{i}.key")).display(),
                t.join("ca.crt").display()
            );
        }
    }
    std::fs::write(&conf, text)?;
    Ok(Node {
        conf,
        log: d.join("quarryd.log"),
        public: format!("http://127.0.0.1:{port}"),
        repl: format!("127.0.0.1:{}", port + 2),
        child: None,
    })
}

pub(crate) type ReplClient = rpb::replication_client::ReplicationClient<tonic::transport::Channel>;

pub(crate) async fn repl(addr: &str) -> Result<ReplClient> {
    let mut ep = tonic::transport::Endpoint::from_shared(format!(
        "{}://{addr}",
        if TLS.get().is_some() { "https" } else { "http" }
    ))?;
    if let Some(t) = TLS.get() {
        ep = ep.tls_config(t.clone())?;
    }
    let ch = ep.connect_timeout(Duration::from_millis(500)).connect().await?;
    Ok(rpb::replication_client::ReplicationClient::new(ch))
}

pub(crate) fn req<T>(m: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(m);
    r.metadata_mut().insert("x-quarry-token", TOKEN.parse().expect("ascii"));
    r
}

pub(crate) async fn peer(addr: &str) -> Option<rpb::PeerReply> {
    let mut c = repl(addr).await.ok()?;
    c.peer(req(rpb::PeerRequest {})).await.ok().map(|r| r.into_inner())
}

pub(crate) async fn public(addr: &str) -> Result<tonic::transport::Channel> {
    Ok(tonic::transport::Endpoint::from_shared(addr.to_string())?
        .connect_timeout(Duration::from_millis(500))
        .timeout(Duration::from_secs(5))
        .connect()
        .await?)
}
