//! `quarryctl failover`, `switchover` and `replication status|degrade`:
//! talk to a node's `Replication` service (its `replication_listen`), with
//! the pair's token.
//!
//! Owns: the command-line face of promotion, switchover, degrade and the
//! replication status. Each prints one line on success (or JSON with
//! `--json`) and exits non-zero with the server's one-line reason.

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use quarry_proto::replication::v1 as pb;
use std::time::Duration;

/// Where a node's replication service is, and the token.
#[derive(Args, Debug, Clone)]
pub struct ReplConn {
    /// The node's replication_listen address, host:port (or
    /// QUARRY_REPLICATION).
    #[arg(long, env = "QUARRY_REPLICATION")]
    pub server: String,
    /// The pair's token file (or QUARRY_TOKEN_FILE).
    #[arg(long, env = "QUARRY_TOKEN_FILE")]
    pub token_file: std::path::PathBuf,
    #[command(flatten)]
    pub tls: ReplTls,
    /// JSON output.
    #[arg(long)]
    pub json: bool,
}

/// TLS to a node's replication listener (when its `[replication]` turns
/// TLS on).
#[derive(Args, Debug, Clone, Default)]
pub struct ReplTls {
    /// The pair's CA (PEM): dial with TLS and check the node's certificate
    /// against it (or QUARRY_TLS_CA).
    #[arg(long, env = "QUARRY_TLS_CA")]
    pub tls_ca: Option<std::path::PathBuf>,
    /// A client certificate (PEM), for a node with
    /// tls_require_client_cert (or QUARRY_TLS_CERT); with --tls-key.
    #[arg(long, env = "QUARRY_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// The client certificate's key (PEM) (or QUARRY_TLS_KEY).
    #[arg(long, env = "QUARRY_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
    /// The name the node's certificate must carry (default: the host in
    /// --server).
    #[arg(long)]
    pub tls_server_name: Option<String>,
}

/// `quarryctl failover`.
#[derive(Args, Debug)]
pub struct FailoverArgs {
    #[command(flatten)]
    conn: ReplConn,
    /// Assert the old primary is down: take writes at once, without waiting
    /// for its lease to run out.
    #[arg(long)]
    primary_down: bool,
    /// Promote even if the standby is not eligible (writes the primary
    /// acknowledged may be lost).
    #[arg(long)]
    accept_loss: bool,
    /// Also degrade the new primary at once: it acknowledges writes
    /// before any standby follows it (as `replication degrade`).
    #[arg(long)]
    degraded: bool,
}

/// `quarryctl switchover`.
#[derive(Args, Debug)]
pub struct SwitchoverArgs {
    #[command(flatten)]
    conn: ReplConn,
    /// Longest drain, ms.
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
}

/// `quarryctl replication`.
#[derive(Args, Debug)]
pub struct ReplicationArgs {
    #[command(subcommand)]
    cmd: ReplicationCmd,
}

#[derive(Subcommand, Debug)]
enum ReplicationCmd {
    /// Role, epoch, peer, eligibility, lease and per-collection lag of one node.
    Status(ReplConn),
    /// Let a sync primary acknowledge writes without its standby (durable,
    /// logged); `--undo` returns to the configured mode.
    Degrade {
        #[command(flatten)]
        conn: ReplConn,
        /// Back to the configured mode.
        #[arg(long)]
        undo: bool,
    },
}

async fn client(c: &ReplConn) -> Result<pb::replication_client::ReplicationClient<tonic::transport::Channel>> {
    if c.tls.tls_ca.is_none() && (c.tls.tls_cert.is_some() || c.tls.tls_server_name.is_some()) {
        bail!("--tls-cert, --tls-key and --tls-server-name need --tls-ca (TLS is on only with the CA)");
    }
    let scheme = if c.tls.tls_ca.is_some() { "https" } else { "http" };
    let mut ep = tonic::transport::Endpoint::from_shared(format!("{scheme}://{}", c.server))
        .with_context(|| format!("bad --server {}", c.server))?;
    if let Some(ca) = &c.tls.tls_ca {
        let id = c.tls.tls_cert.as_ref().zip(c.tls.tls_key.as_ref());
        let tls =
            quarry_proto::tls::client_only(ca, id, c.tls.tls_server_name.as_deref()).map_err(|e| anyhow::anyhow!(e))?;
        ep = ep.tls_config(tls)?;
    }
    let ch = ep
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot reach the replication service at {}: {}",
                c.server,
                quarry_proto::tls::error_chain(&e)
            )
        })?;
    Ok(pb::replication_client::ReplicationClient::new(ch))
}

fn with_token<T>(c: &ReplConn, msg: T) -> Result<tonic::Request<T>> {
    let text =
        std::fs::read_to_string(&c.token_file).with_context(|| format!("--token-file {}", c.token_file.display()))?;
    let token = text.lines().next().unwrap_or("").trim().to_string();
    let mut r = tonic::Request::new(msg);
    r.metadata_mut().insert(
        "x-quarry-token",
        token.parse().context("the token is not printable ASCII")?,
    );
    Ok(r)
}

/// The server's answer, with the transport's causes (a TLS alert, an
/// HTTP/2 error) when the call never reached the service.
fn fail(s: tonic::Status) -> anyhow::Error {
    let mut m = format!("{:?}: {}", s.code(), s.message());
    let mut cur = std::error::Error::source(&s);
    while let Some(c) = cur {
        m.push_str(": ");
        m.push_str(&c.to_string());
        cur = c.source();
    }
    if s.message() == "transport error" {
        m.push_str(
            " (a listener with TLS needs --tls-ca, and --tls-cert with --tls-key if it requires client certificates)",
        );
    }
    anyhow::anyhow!(m)
}

fn epoch(e: Option<pb::Epoch>) -> String {
    e.map_or("-".into(), |e| format!("{}/{:016x}", e.term, e.node))
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

/// Print a command's answer: the JSON object with `--json`, else its
/// one-line summary.
fn answer(json: bool, obj: serde_json::Value, summary: &str) {
    if json {
        println!("{obj}");
    } else {
        println!("{summary}");
    }
}

/// `quarryctl failover`.
pub fn run_failover(a: FailoverArgs) -> Result<()> {
    runtime()?.block_on(async {
        let req = pb::PromoteRequest {
            primary_down: a.primary_down,
            accept_loss: a.accept_loss,
            degraded: a.degraded,
        };
        let r = client(&a.conn)
            .await?
            .promote(with_token(&a.conn, req)?)
            .await
            .map_err(fail)?
            .into_inner();
        answer(
            a.conn.json,
            serde_json::json!({"epoch": epoch(r.epoch), "lease_wait_ms": r.lease_wait_ms, "summary": r.summary}),
            &r.summary,
        );
        Ok(())
    })
}

/// `quarryctl switchover`.
pub fn run_switchover(a: SwitchoverArgs) -> Result<()> {
    runtime()?.block_on(async {
        let req = pb::SwitchoverRequest {
            timeout_ms: a.timeout_ms,
        };
        let r = client(&a.conn)
            .await?
            .switchover(with_token(&a.conn, req)?)
            .await
            .map_err(fail)?
            .into_inner();
        answer(
            a.conn.json,
            serde_json::json!({"epoch": epoch(r.epoch), "pause_ms": r.pause_ms, "summary": r.summary}),
            &r.summary,
        );
        Ok(())
    })
}

/// `quarryctl replication …`.
pub fn run_replication(a: ReplicationArgs) -> Result<()> {
    runtime()?.block_on(async {
        match a.cmd {
            ReplicationCmd::Status(c) => {
                let r = fetch_status(&c.server, &c.token_file, &c.tls).await?;
                print_status(&r, c.json);
            }
            ReplicationCmd::Degrade { conn, undo } => {
                let r = client(&conn)
                    .await?
                    .degrade(with_token(&conn, pb::DegradeRequest { degraded: !undo })?)
                    .await
                    .map_err(fail)?
                    .into_inner();
                println!(
                    "{}",
                    if r.degraded {
                        "degraded: the primary acknowledges writes without its standby (a failover may lose them) until `quarryctl replication degrade --undo`"
                    } else {
                        "not degraded: writes wait for the standby once it is in sync"
                    }
                );
            }
        }
        Ok(())
    })
}

/// A node's replication status (Peer) at `addr` with the token in
/// `token_file`, over TLS when `tls` names a CA.
pub async fn fetch_status(addr: &str, token_file: &std::path::Path, tls: &ReplTls) -> Result<pb::PeerReply> {
    let c = ReplConn {
        server: addr.to_string(),
        token_file: token_file.to_path_buf(),
        tls: tls.clone(),
        json: false,
    };
    Ok(client(&c)
        .await?
        .peer(with_token(&c, pb::PeerRequest {})?)
        .await
        .map_err(fail)?
        .into_inner())
}

/// Print a node's replication status.
pub fn print_status(r: &pb::PeerReply, json: bool) {
    if json {
        let colls: Vec<_> = r
            .collections
            .iter()
            .map(|c| {
                serde_json::json!({"name": c.name, "incarnation": c.incarnation, "last_lsn": c.last_lsn,
                    "durable_lsn": c.durable_lsn, "applied_lsn": c.applied_lsn, "peer_lsn": c.peer_lsn,
                    "lag_bytes": c.lag_bytes, "lag_seconds": c.lag_seconds})
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({"role": r.role, "epoch": epoch(r.epoch), "node_id": format!("{:016x}", r.node_id),
                "pair_id": r.pair_id, "peer": r.peer, "connected": r.connected, "eligible": r.eligible,
                "mode": r.mode, "degraded": r.degraded, "lease_left_ms": r.lease_left_ms,
                "last_heard_ms": r.last_heard_ms, "acks": r.acks, "snapshots_sent": r.snapshots_sent,
                "snapshots_received": r.snapshots_received, "fenced": r.fenced, "problem": r.problem,
                "collections": colls})
        );
        return;
    }
    println!(
        "{} node {:016x} in epoch {} of pair {}; {} mode{}; peer {} {}",
        r.role,
        r.node_id,
        epoch(r.epoch),
        if r.pair_id.is_empty() { "(none)" } else { &r.pair_id },
        r.mode,
        if r.degraded { " (degraded)" } else { "" },
        r.peer,
        if r.connected { "connected" } else { "not connected" }
    );
    if r.role == "primary" {
        println!("write lease: {} ms left", r.lease_left_ms);
    } else {
        println!(
            "eligible for promotion: {}; last heard from the primary {} ms ago",
            if r.eligible { "yes" } else { "no" },
            r.last_heard_ms
        );
    }
    println!(
        "acks {}, snapshots sent {}, received {}, fenced messages {}",
        r.acks, r.snapshots_sent, r.snapshots_received, r.fenced
    );
    if !r.problem.is_empty() {
        println!("problem: {}", r.problem);
    }
    println!(
        "{:<24} {:>10} {:>10} {:>10} {:>10} {:>12} {:>9}",
        "collection", "last", "durable", "applied", "peer", "lag bytes", "lag s"
    );
    for c in &r.collections {
        println!(
            "{:<24} {:>10} {:>10} {:>10} {:>10} {:>12} {:>9.1}",
            c.name, c.last_lsn, c.durable_lsn, c.applied_lsn, c.peer_lsn, c.lag_bytes, c.lag_seconds
        );
    }
}
