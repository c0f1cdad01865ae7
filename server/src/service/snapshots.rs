//! The Admin service's snapshot calls: CreateSnapshot, VerifySnapshot,
//! RestoreSnapshot.
//!
//! Owns: the rules for the paths a client names (absolute, no `..`; a
//! snapshot is never written inside the data directory; an existing
//! directory is never written over), the replication policy (a restore is
//! refused on a node of a pair), the conversion to `SnapshotInfo`, and the
//! snapshot counters. Does not own: the work (`catalog::snapshot`, the
//! engine's backup and restore).
//!
//! **Replication.** A snapshot may be taken on either node: on a standby
//! every applied record is durable and its primary's. A restore is
//! refused while replication is configured: the new collection's log
//! starts after the snapshot's checkpoint, and its arrival on the standby
//! (by the handshake's snapshot path) is not tested; a standby's catalog
//! is its primary's anyway. Restore on a lone node.

use super::*;
use crate::catalog::snapshot::{verify_snapshot, BackupInfo, BackupReport};
use std::path::{Component, Path, PathBuf};

/// `field`'s value as an absolute path without `..`.
fn absolute(field: &str, v: &str) -> Result<PathBuf, ServiceError> {
    let p = PathBuf::from(v);
    if v.is_empty() || !p.is_absolute() || p.components().any(|c| c == Component::ParentDir) {
        return Err(ServiceError::InvalidArgument(format!(
            "{field} {v:?} must be an absolute path on the server without \"..\""
        )));
    }
    Ok(p)
}

/// `p` with its existing ancestors resolved (symbolic links followed).
fn resolved(p: &Path) -> PathBuf {
    let mut tail = Vec::new();
    let mut at = p;
    loop {
        if let Ok(c) = at.canonicalize() {
            return tail.iter().rev().fold(c, |acc, n| acc.join(n));
        }
        match (at.parent(), at.file_name()) {
            (Some(parent), Some(name)) => {
                tail.push(name.to_os_string());
                at = parent;
            }
            _ => return p.to_path_buf(),
        }
    }
}

fn info_to_pb(i: &BackupInfo) -> pb::SnapshotInfo {
    pb::SnapshotInfo {
        dir: i.dir.display().to_string(),
        collection: i.collection.clone(),
        lsn: i.lsn,
        checkpoint_lsn: i.checkpoint_lsn,
        files: i.placed.files as u64,
        bytes: i.placed.bytes,
        linked_files: i.placed.linked_files as u64,
        copied_files: i.placed.copied_files as u64,
        seconds: i.seconds,
        copy_reason: i.placed.copy_reason.clone().unwrap_or_default(),
        leftovers_removed: i.leftovers_removed.iter().map(|p| p.display().to_string()).collect(),
        ..Default::default()
    }
}

fn report_to_pb(r: &BackupReport, seconds: f64) -> pb::SnapshotInfo {
    pb::SnapshotInfo {
        dir: r.dir.display().to_string(),
        collection: r.collection.clone(),
        lsn: r.lsn,
        checkpoint_lsn: r.checkpoint_lsn,
        files: r.files as u64,
        bytes: r.bytes,
        seconds,
        dim: r.dim,
        metric: r.metric.parse::<Metric>().map_or(0, |m| metric_to_pb(m) as i32),
        created_unix_ms: r.created_unix_ms,
        ..Default::default()
    }
}

/// Run `f` on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ServiceError> + Send + 'static,
) -> Result<T, ServiceError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(ServiceError::Internal(format!("the snapshot task failed: {e}"))))
}

impl AppState {
    /// CreateSnapshot.
    pub(super) async fn create_snapshot(
        self: &Arc<Self>,
        r: pb::CreateSnapshotRequest,
    ) -> Result<pb::SnapshotInfo, ServiceError> {
        self.check_open()?;
        let out = absolute("out_dir", &r.out_dir)?;
        self.catalog.get(&r.collection)?;
        let data = resolved(&self.config.data_dir);
        let at = resolved(&out);
        if at.starts_with(&data) || data.starts_with(&at) {
            return Err(ServiceError::InvalidArgument(format!(
                "out_dir {} is inside the data directory {} (or holds it): put snapshots elsewhere",
                out.display(),
                data.display()
            )));
        }
        if out.symlink_metadata().is_ok() {
            return Err(ServiceError::AlreadyExists(format!(
                "out_dir {} already exists; a snapshot is written only into a new directory",
                out.display()
            )));
        }
        if !out.parent().is_some_and(Path::is_dir) {
            return Err(ServiceError::NotFound(format!(
                "out_dir {}: its parent directory does not exist",
                out.display()
            )));
        }
        let st = self.clone();
        let name = r.collection.clone();
        let info = blocking(move || st.catalog.snapshot_collection(&name, &out)).await?;
        self.metrics.snapshots_created.fetch_add(1, Ordering::Relaxed);
        Ok(info_to_pb(&info))
    }

    /// VerifySnapshot.
    pub(super) async fn verify_snapshot(&self, r: pb::VerifySnapshotRequest) -> Result<pb::SnapshotInfo, ServiceError> {
        self.check_open()?;
        let dir = absolute("dir", &r.dir)?;
        let t = Instant::now();
        let report = blocking(move || verify_snapshot(&dir)).await?;
        Ok(report_to_pb(&report, t.elapsed().as_secs_f64()))
    }

    /// RestoreSnapshot.
    pub(super) async fn restore_snapshot(
        self: &Arc<Self>,
        r: pb::RestoreSnapshotRequest,
    ) -> Result<pb::Collection, ServiceError> {
        self.check_open()?;
        let dir = absolute("dir", &r.dir)?;
        catalog::check_name(&r.collection)?;
        if self.replica.is_some() {
            return Err(ServiceError::FailedPrecondition(format!(
                "collection {:?}: RestoreSnapshot is refused on a node of a replication pair (a restored collection is not known to reach the standby correctly); restore on a lone node",
                r.collection
            )));
        }
        if !dir.is_dir() {
            return Err(ServiceError::NotFound(format!(
                "dir {}: no such directory",
                dir.display()
            )));
        }
        let st = self.clone();
        let name = r.collection.clone();
        let entry = blocking(move || st.catalog.restore_collection(&dir, &name)).await?;
        self.metrics.snapshots_restored.fetch_add(1, Ordering::Relaxed);
        Ok(collection_to_pb(&entry))
    }
}
