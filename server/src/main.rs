//! `quarryd`: Quarry's gRPC server.
//!
//! ```text
//! quarryd [--config FILE] [--data-dir DIR] [--listen ADDR] [--metrics-listen ADDR] [--listen-unix PATH]
//!         [--role primary|standby --peer HOST:PORT --replication-listen ADDR --token-file F
//!          --replication-mode sync|async]
//! ```
//! With no arguments it serves on 127.0.0.1:7700 (metrics on :7701) from
//! `$STATE_DIRECTORY` or `~/.local/share/quarry`. Flags override the file.

use clap::Parser;
use quarry_server::Config;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(name = "quarryd", version, about = "Quarry: disk-first vector search over gRPC")]
struct Args {
    /// TOML configuration file (every key optional; see ops/quarryd.toml).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data directory (overrides data_dir).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// gRPC listen address (overrides listen).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Metrics listen address (overrides metrics_listen).
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
    /// Also serve gRPC on this Unix-domain socket (overrides listen_unix).
    #[arg(long)]
    listen_unix: Option<PathBuf>,
    /// Serve the JSON HTTP API on this address (overrides http_listen).
    #[arg(long)]
    http_listen: Option<SocketAddr>,
    /// Search shards, 0 = one per core (overrides shards).
    #[arg(long)]
    shards: Option<usize>,
    /// Memory budget in MiB (overrides memory_budget_mb).
    #[arg(long)]
    memory_budget_mb: Option<u64>,
    /// Drain timeout in seconds (overrides drain_timeout_secs).
    #[arg(long)]
    drain_timeout_secs: Option<f64>,
    /// This node's role in a pair at its first start: none, primary or
    /// standby (overrides [replication] role).
    #[arg(long)]
    role: Option<String>,
    /// The other node's replication listener, host:port (overrides
    /// [replication] peer).
    #[arg(long)]
    peer: Option<String>,
    /// This node's replication listener (overrides [replication]
    /// replication_listen).
    #[arg(long)]
    replication_listen: Option<SocketAddr>,
    /// The pair's token file (overrides [replication] token_file).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// sync or async (overrides [replication] mode).
    #[arg(long)]
    replication_mode: Option<String>,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let mut cfg = match &a.config {
        Some(p) => Config::from_file(p)?,
        None => Config::default(),
    };
    if let Some(v) = a.data_dir {
        cfg.data_dir = v;
    }
    if let Some(v) = a.listen {
        cfg.listen = v;
    }
    if let Some(v) = a.metrics_listen {
        cfg.metrics_listen = v;
    }
    if let Some(v) = a.http_listen {
        cfg.http_listen = Some(v);
    }
    if let Some(v) = a.listen_unix {
        cfg.listen_unix = Some(v);
    }
    if let Some(v) = a.shards {
        cfg.shards = v;
    }
    if let Some(v) = a.memory_budget_mb {
        cfg.memory_budget_mb = v;
    }
    if let Some(v) = a.drain_timeout_secs {
        cfg.drain_timeout_secs = v;
    }
    let r = &mut cfg.replication;
    if let Some(v) = a.role {
        r.role = toml::Value::String(v)
            .try_into()
            .map_err(|e| anyhow::anyhow!("--role: {e}"))?;
    }
    if let Some(v) = a.peer {
        r.peer = Some(v);
    }
    if let Some(v) = a.replication_listen {
        r.replication_listen = Some(v);
    }
    if let Some(v) = a.token_file {
        r.token_file = Some(v);
    }
    if let Some(v) = a.replication_mode {
        r.mode = toml::Value::String(v)
            .try_into()
            .map_err(|e| anyhow::anyhow!("--replication-mode: {e}"))?;
    }
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cfg.log));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if cfg.log_format == quarry_server::config::LogFormat::Json {
        fmt.json().init();
    } else {
        fmt.init();
    }
    cfg.validate()?;
    // This runtime runs the control side (signals, metrics, watchdog) and,
    // with `net_threads >= 1`, the gRPC server too; with the default
    // `net_threads = 0` the gRPC server runs on shard 0's thread.
    let rt = if cfg.net_threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .thread_name("net")
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cfg.net_threads)
            .thread_name("net")
            .enable_all()
            .build()?
    };
    rt.block_on(quarry_server::run(cfg))
}
