//! quarryctl: Quarry's command-line tool — data sets (`gen`, `gt`, `lid`),
//! index builds (`build`), measured searches (`search`) and integrity
//! checks (`verify`); and, against a running quarryd over gRPC, `status`,
//! `collections` and `snapshot` (whose `verify` and `restore --data-dir`
//! work offline); against a pair's replication listeners, `failover`,
//! `switchover` and `replication`; and `plan`, the capacity model fed by
//! runs measured here.

mod cmd_build;
mod cmd_gen;
mod cmd_gt;
mod cmd_relayout;
mod cmd_remote;
mod cmd_replication;
mod cmd_search;
mod cmd_snapshot;
mod cmd_verify;
mod plan;
mod remote_out;
mod server_addr;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "quarryctl", version, about = "Quarry: disk-first vector search tools")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Generate a synthetic clustered data set (fbin) and print its LID.
    Gen(cmd_gen::GenArgs),
    /// Exact ground truth (ibin, top-100 by default).
    Gt(cmd_gt::GtArgs),
    /// Local intrinsic dimension (MLE, k=20) of a vector file.
    Lid(cmd_gen::LidArgs),
    /// Build a disk index from a vector file.
    Build(cmd_build::BuildArgs),
    /// Search an index: recall, latency, QPS, IOs, RAM.
    Search(cmd_search::SearchArgs),
    /// Check every checksum and the graph invariants.
    Verify(cmd_verify::VerifyArgs),
    /// Rewrite an index with another stored-vector type and/or neighbours
    /// co-located in sectors, reusing its graph (no rebuild).
    Relayout(cmd_relayout::RelayoutArgs),
    /// A running quarryd's status: shards, RAM, latency, collections.
    Status(cmd_remote::StatusArgs),
    /// Manage a running quarryd's collections: list, describe, create,
    /// build, upsert, get, delete, search, compact, drop, operation, cancel.
    Collections(cmd_remote::CollectionsArgs),
    /// Snapshots of a collection: create (through a running quarryd),
    /// verify (offline), restore (into a running quarryd, or offline into
    /// a stopped one's data directory).
    Snapshot(cmd_snapshot::SnapshotArgs),
    /// gRPC health check of a running quarryd (exit status 1 unless SERVING).
    Health(cmd_remote::HealthArgs),
    /// Promote a standby to primary (sent to the standby's replication_listen).
    Failover(cmd_replication::FailoverArgs),
    /// Hand the primary role to the standby with no loss (sent to the primary).
    Switchover(cmd_replication::SwitchoverArgs),
    /// A node's replication status, or degrade a sync primary.
    Replication(cmd_replication::ReplicationArgs),
    /// Capacity plan: RAM, SSD, IOs, CPU, QPS, latency and build for N x D
    /// vectors at a recall target, from costs measured on this machine.
    Plan(plan::PlanArgs),
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse_from(hoist_connection_flags(std::env::args_os().collect())).cmd {
        Cmd::Gen(a) => cmd_gen::run(a),
        Cmd::Gt(a) => cmd_gt::run(a),
        Cmd::Lid(a) => cmd_gen::run_lid(a),
        Cmd::Build(a) => cmd_build::run(a),
        Cmd::Search(a) => cmd_search::run(a),
        Cmd::Verify(a) => cmd_verify::run(a),
        Cmd::Relayout(a) => cmd_relayout::run(a),
        Cmd::Status(a) => cmd_remote::run_status(a),
        Cmd::Collections(a) => cmd_remote::run_collections(a),
        Cmd::Snapshot(a) => cmd_snapshot::run(a),
        Cmd::Health(a) => cmd_remote::run_health(a),
        Cmd::Failover(a) => cmd_replication::run_failover(a),
        Cmd::Switchover(a) => cmd_replication::run_switchover(a),
        Cmd::Replication(a) => cmd_replication::run_replication(a),
        Cmd::Plan(a) => plan::run(a),
    }
}

/// Let the connection flags come before the command too (`quarryctl
/// --server X collections list`): those given ahead of it move to just
/// after it, where the remote commands take them. Anything else ahead of
/// the command stops the move, and clap reports it as usual.
fn hoist_connection_flags(args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    const WITH_VALUE: [&str; 7] = [
        "--server",
        "--api-token-file",
        "--token",
        "--ca",
        "--client-cert",
        "--client-key",
        "--server-name",
    ];
    let mut moved = Vec::new();
    let mut i = 1;
    while let Some(a) = args.get(i).and_then(|a| a.to_str()) {
        let name = a.split_once('=').map_or(a, |(n, _)| n);
        if a == "--json" {
            moved.push(args[i].clone());
            i += 1;
        } else if WITH_VALUE.contains(&name) {
            let take = if a.contains('=') { 1 } else { 2 };
            moved.extend(args[i..(i + take).min(args.len())].iter().cloned());
            i += take;
        } else {
            break;
        }
    }
    if moved.is_empty() || i >= args.len() {
        return args;
    }
    let mut out = vec![args[0].clone(), args[i].clone()];
    out.extend(moved);
    out.extend(args[i + 1..].iter().cloned());
    out
}

#[cfg(test)]
mod tests {
    use super::hoist_connection_flags as hoist;
    use std::ffi::OsString;

    fn v(s: &str) -> Vec<OsString> {
        s.split_whitespace().map(OsString::from).collect()
    }

    #[test]
    fn connection_flags_before_the_command_move_after_it() {
        assert_eq!(
            hoist(v("q --server h:1 --json collections list")),
            v("q collections --server h:1 --json list")
        );
        assert_eq!(hoist(v("q --server=h:1 status")), v("q status --server=h:1"));
        assert_eq!(
            hoist(v("q --ca c.pem --token t snapshot create x")),
            v("q snapshot --ca c.pem --token t create x")
        );
        // Nothing to move, something else first, or no command: unchanged.
        for same in [
            "q collections --server h:1 list",
            "q --help",
            "q --verbose --server h:1 status",
            "q --server h:1",
        ] {
            assert_eq!(hoist(v(same)), v(same), "{same}");
        }
    }
}
