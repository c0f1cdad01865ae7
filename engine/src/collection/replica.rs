//! What replication adds to a collection's write path: the commit gate a
//! primary's writes pass before they become visible, the epoch record of a
//! promotion, a standby's apply of records numbered by its primary, and the
//! cut of a divergent tail.
//!
//! Owns: [`CommitGate`], [`Collection::set_gate`],
//! [`Collection::begin_epoch`], [`Collection::apply_replicated`],
//! [`Collection::truncate_after`]. Does not own: the stream, acks, leases
//! or who is primary (the server's replication), the log's own cut and
//! epoch history (`crate::wal`).
//!
//! **Visibility.** A write is logged (durable locally), then waits at the
//! gate, then is applied in LSN order, then acknowledged. A sync primary's
//! gate opens once the standby has the record durably, so nothing a
//! search, a get or a flush sees can be lost by a failover, and the
//! checkpoint of every flush (the applied LSN) is never past what the
//! standby holds: a divergent tail is never inside a segment, and cutting
//! it stays cheap. A gate that refuses (this node was fenced) leaves the
//! write in the log unapplied and stops the collection applying: it must
//! be cut and reopened ([`Collection::truncate_after`]).

use super::op::Op;
use super::segment::{bulk_of, load_segment};
use super::{apply, apply_segment, broken, Collection, CollectionError, Result, MANIFEST_FILE};
use crate::wal::{Epoch, Lsn, TruncateReport, WalError};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Decides when a write that is durable in the local log may be applied
/// (made visible) and acknowledged.
pub trait CommitGate: Send + Sync {
    /// Block until the records up to `lsn` may be applied. An error means
    /// they never may be on this node.
    fn wait(&self, lsn: Lsn) -> std::result::Result<(), GateError>;
}

/// Why a gate refused.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    /// A newer primary exists. The write is in this node's log but was
    /// never acknowledged; it will be cut when this node follows.
    #[error("this node was fenced by epoch {epoch}: another node is primary; LSN {lsn} was logged here but not acknowledged, and will be cut when this node follows the new primary")]
    Fenced {
        /// The epoch that fenced it.
        epoch: Epoch,
        /// The write's last LSN.
        lsn: Lsn,
    },
    /// The gate was shut (the server is stopping or the collection is
    /// being dropped); the write's outcome is unknown.
    #[error("replication stopped while LSN {lsn} waited for the standby: {why}; the write's outcome is unknown")]
    Closed {
        /// The write's last LSN.
        lsn: Lsn,
        /// Why.
        why: String,
    },
}

impl Collection {
    /// Set (or clear) the commit gate of later writes.
    pub fn set_gate(&self, gate: Option<Arc<dyn CommitGate>>) {
        *self.gate.write().expect("lock") = gate;
    }

    /// Wait at the gate for the records up to `lsn`; a refusal stops the
    /// collection applying anything more.
    pub(super) fn pass_gate(&self, lsn: Lsn) -> Result<()> {
        let gate = self.gate.read().expect("lock").clone();
        let Some(gate) = gate else { return Ok(()) };
        gate.wait(lsn).map_err(|e| {
            self.broken.store(true, Ordering::Release);
            self.applied_cv.notify_all();
            CollectionError::Gate(e)
        })
    }

    /// Begin epoch `e` on a promoted node: record it in the log's epoch
    /// history and log an [`Op::Epoch`] as its first record. Call it with
    /// no write in flight (a racing append is refused, and nothing is
    /// logged). The record changes no vector and is applied at once,
    /// without the gate, so a promotion does not wait for a standby.
    /// Returns its LSN.
    pub fn begin_epoch(&self, e: Epoch) -> Result<Lsn> {
        if self.broken.load(Ordering::Acquire) {
            return Err(broken());
        }
        let first = self.wal.begin_epoch(e)?;
        let body = Op::Epoch { epoch: e }.encode();
        self.wal.append_at(first, &[&body])?;
        let mut a = self.applied.lock().expect("lock");
        while *a + 1 != first {
            if self.broken.load(Ordering::Acquire) {
                return Err(broken());
            }
            a = self.applied_cv.wait(a).expect("lock");
        }
        *a = first;
        self.applied_cv.notify_all();
        Ok(first)
    }

    /// On a standby: log and apply records its primary numbered `first..`
    /// (`first` must be the log's next LSN). Each body is checked as the
    /// primary checked it (a bad one is [`CollectionError::Corrupt`] and
    /// nothing of the batch is logged); an epoch record also begins its
    /// epoch in the log's history; an added segment's directory must
    /// already be here (its files are shipped before its record). Applied
    /// at once: the standby's own durability is its gate. Returns the last
    /// LSN.
    pub fn apply_replicated(&self, first: Lsn, bodies: &[Vec<u8>]) -> Result<Lsn> {
        if bodies.is_empty() {
            return Ok(self.wal.last_lsn());
        }
        if self.broken.load(Ordering::Acquire) {
            return Err(broken());
        }
        let mut ops = Vec::with_capacity(bodies.len());
        for (i, b) in bodies.iter().enumerate() {
            let lsn = first + i as u64;
            let op = Op::decode(b, self.opts.dim).map_err(|why| {
                CollectionError::Corrupt(format!("{}: replicated record {lsn}: {why}", self.dir.display()))
            })?;
            match &op {
                Op::AddSegment { name } if !self.fs.exists(&self.dir.join(name)) => {
                    return Err(CollectionError::Corrupt(format!(
                        "{}: replicated record {lsn} adds segment {name}, whose files have not arrived",
                        self.dir.display()
                    )));
                }
                Op::Upsert { id, vector, .. } => {
                    crate::vector::check_vector(self.opts.dim, vector).map_err(|error| CollectionError::Vector {
                        field: format!("replicated record {lsn}: vector for id {id}"),
                        error,
                    })?;
                }
                _ => {}
            }
            ops.push(op);
        }
        // Log in runs that end before each epoch record, beginning the
        // epoch in the history just before its record is appended.
        let mut start = 0;
        while start < ops.len() {
            if let Op::Epoch { epoch } = &ops[start] {
                self.wal.begin_epoch_at(*epoch, first + start as u64)?;
            }
            let end = ops[start + 1..]
                .iter()
                .position(|o| matches!(o, Op::Epoch { .. }))
                .map_or(ops.len(), |p| start + 1 + p);
            let refs: Vec<&[u8]> = bodies[start..end].iter().map(|b| b.as_slice()).collect();
            if let Err(e) = self.wal.append_at(first + start as u64, &refs) {
                if matches!(e, WalError::Poisoned(_)) {
                    self.broken.store(true, Ordering::Release);
                    self.applied_cv.notify_all();
                }
                return Err(e.into());
            }
            start = end;
        }
        let mut a = self.applied.lock().expect("lock");
        while *a + 1 != first {
            if self.broken.load(Ordering::Acquire) {
                return Err(broken());
            }
            a = self.applied_cv.wait(a).expect("lock");
        }
        for (i, op) in ops.into_iter().enumerate() {
            let lsn = first + i as u64;
            match op {
                Op::AddSegment { name } => {
                    let (seg, records) = load_segment(&self.fs, &self.dir, &name, &self.opts)?;
                    if let Some(b) = records.iter().filter_map(|r| bulk_of(r.0)).max() {
                        self.next_bulk.fetch_max(b + 1, Ordering::AcqRel);
                    }
                    apply_segment(&mut self.state.write().expect("lock"), Arc::new(seg), records);
                }
                op => {
                    let plan = match &op {
                        Op::Upsert { vector, .. } => Some(self.state.read().expect("lock").active.plan(vector)),
                        _ => None,
                    };
                    apply(&mut self.state.write().expect("lock"), lsn, op, plan);
                }
            }
            *a = lsn;
        }
        self.applied_cv.notify_all();
        Ok(*a)
    }

    /// The manifest's checkpoint: every record up to it is in the segments.
    pub fn checkpoint(&self) -> Result<Lsn> {
        let mpath = self.dir.join(MANIFEST_FILE);
        if !self.fs.exists(&mpath) {
            return Ok(0);
        }
        let bytes = self.fs.read(&mpath).map_err(super::io_err(&mpath, "read"))?;
        let m = super::Manifest::decode(&bytes)
            .map_err(|e| CollectionError::Corrupt(format!("{}: {e}", mpath.display())))?;
        Ok(m.checkpoint_lsn)
    }

    /// Cut every record after `lsn` (a divergent tail, after a failover)
    /// and reopen the collection without them. Refused with
    /// [`CollectionError::NeedsSnapshot`] when the segments already hold
    /// records past `lsn` (the checkpoint is beyond it). Takes the
    /// collection by value: no search or write may hold it meanwhile.
    pub fn truncate_after(self, lsn: Lsn) -> Result<(Collection, TruncateReport)> {
        let checkpoint = self.checkpoint()?;
        if lsn < checkpoint {
            return Err(CollectionError::NeedsSnapshot {
                dir: self.dir.clone(),
                lsn,
                checkpoint,
            });
        }
        let report = self.wal.truncate_after(lsn)?;
        let (fs, dir, opts) = (self.fs.clone(), self.dir.clone(), self.opts.clone());
        drop(self);
        let (c, _) = Collection::open(fs, &dir, opts)?;
        Ok((c, report))
    }
}
