//! `quarryctl snapshot …`: a collection's snapshot written by a running
//! quarryd (create), checked here (verify), and restored as a new
//! collection into a running quarryd or, with `--data-dir`, into the data
//! directory of a stopped one (restore).
//!
//! Owns: the command-line face of CreateSnapshot and RestoreSnapshot and
//! of the offline check and restore. Does not own: the snapshot's files
//! (the engine) or the offline restore's steps and the data directory's
//! lock (`quarry_server::catalog::snapshot`, `quarry_server::datadir`).

use crate::cmd_remote::{channel, runtime, status_err, Conn};
use crate::remote_out::{print_describe, print_object, snapshot_json};
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use quarry_proto::v1 as pb;
use quarry_proto::v1::admin_client::AdminClient;
use std::path::{Path, PathBuf};

/// `quarryctl snapshot`.
#[derive(Args, Debug)]
pub struct SnapshotArgs {
    #[command(flatten)]
    conn: Conn,
    #[command(subcommand)]
    cmd: SnapshotCmd,
}

#[derive(Subcommand, Debug)]
enum SnapshotCmd {
    /// Write a consistent snapshot of a collection into a new directory on
    /// the server's machine while it keeps serving (segment files are
    /// hard-linked on the data directory's file system: copy the snapshot
    /// off the machine to have a backup).
    Create {
        /// Collection name.
        collection: String,
        /// The new directory, an absolute path as the server sees it,
        /// outside its data directory.
        #[arg(long)]
        out: PathBuf,
    },
    /// Check a snapshot directory here: every file's length and crc32c,
    /// the log's copy covering exactly checkpoint + 1..=LSN.
    Verify {
        /// The snapshot directory.
        dir: PathBuf,
    },
    /// Create a collection from a snapshot: in the running server (the
    /// directory as the server sees it), or with --data-dir in a stopped
    /// server's data directory (refused while a quarryd holds it).
    Restore {
        /// The snapshot directory.
        dir: PathBuf,
        /// The new collection's name.
        #[arg(long)]
        collection: String,
        /// Restore offline into this data directory (quarryd stopped; run
        /// as the user quarryd runs as).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

/// The absolute form of `p` (the server needs absolute paths).
fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).with_context(|| format!("{}: cannot make it absolute", p.display()))
}

/// Run `quarryctl snapshot …`.
pub fn run(a: SnapshotArgs) -> Result<()> {
    let json = a.conn.json;
    match a.cmd {
        SnapshotCmd::Verify { dir } => {
            let t = std::time::Instant::now();
            let r = quarry_engine::collection::verify_backup(&quarry_engine::storage::RealFs, &dir)?;
            let mut v = serde_json::to_value(&r)?;
            v["seconds"] = serde_json::json!(t.elapsed().as_secs_f64());
            print_object(&v, json);
            Ok(())
        }
        SnapshotCmd::Restore {
            dir,
            collection,
            data_dir: Some(data),
        } => {
            let (meta, r) = quarry_server::catalog::snapshot::restore_offline(&data, &dir, &collection)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let mut v = serde_json::to_value(&r)?;
            v["collection"] = serde_json::json!(meta.name);
            print_object(&v, json);
            if !json {
                eprintln!("restored; quarryd opens collection {collection:?} at its next start");
            }
            Ok(())
        }
        SnapshotCmd::Restore {
            dir,
            collection,
            data_dir: None,
        } => runtime()?.block_on(async {
            let c = AdminClient::new(channel(&a.conn).await?)
                .restore_snapshot(pb::RestoreSnapshotRequest {
                    dir: absolute(&dir)?.display().to_string(),
                    collection,
                })
                .await
                .map_err(status_err)?
                .into_inner();
            print_describe(&c, json);
            Ok(())
        }),
        SnapshotCmd::Create { collection, out } => runtime()?.block_on(async {
            let i = AdminClient::new(channel(&a.conn).await?)
                .create_snapshot(pb::CreateSnapshotRequest {
                    collection,
                    out_dir: absolute(&out)?.display().to_string(),
                })
                .await
                .map_err(status_err)?
                .into_inner();
            print_object(&snapshot_json(&i), json);
            Ok(())
        }),
    }
}
