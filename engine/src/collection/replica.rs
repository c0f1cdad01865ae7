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

use super::apply::Pending;
use super::op::Op;
use super::segment::{bulk_of, load_segment};
use super::{broken, Collection, CollectionError, Result, MANIFEST_FILE};
use crate::wal::{Epoch, Lsn, TruncateReport};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// Decides when a write that is durable in the local log may be applied
/// (made visible) and acknowledged.
pub trait CommitGate: Send + Sync {
    /// Block until the records up to `lsn` may be applied, or `deadline`
    /// passes ([`GateError::Timeout`]). [`GateError::Fenced`] and
    /// [`GateError::Closed`] mean they never may be on this node.
    fn wait(&self, lsn: Lsn, deadline: Option<Instant>) -> std::result::Result<(), GateError>;
}

/// Why a gate refused.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    /// A newer primary exists. The write is in this node's log but was
    /// never acknowledged: the new primary keeps it if its standby copy
    /// arrived before the promotion, else it is cut when this node follows.
    #[error("this node was fenced by epoch {epoch}: another node is primary; LSN {lsn} was logged here but not acknowledged: the new primary has it if it reached the standby before the promotion, else it is cut when this node follows; its outcome is unknown")]
    Fenced {
        /// The epoch that fenced it.
        epoch: Epoch,
        /// The write's last LSN.
        lsn: Lsn,
    },
    /// The deadline passed first. The write is logged and stays pending:
    /// it is applied once the gate opens, or cut if this node is fenced.
    #[error("the standby had not confirmed LSN {lsn} by the deadline; the write is logged here and will be applied once the standby has it, or cut if another node is promoted first: its outcome is unknown")]
    Timeout {
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

    /// Wait at the gate for the records up to `lsn`; a refusal (not a
    /// timeout) stops the collection applying anything more.
    pub(super) fn pass_gate(&self, lsn: Lsn, deadline: Option<Instant>) -> Result<()> {
        let gate = self.gate.read().expect("lock").clone();
        let Some(gate) = gate else { return Ok(()) };
        gate.wait(lsn, deadline).map_err(|e| {
            if !matches!(e, GateError::Timeout { .. }) {
                self.broken.store(true, Ordering::Release);
                self.applied_cv.notify_all();
            }
            CollectionError::Gate(e)
        })
    }

    /// Begin epoch `e` on a promoted node: record it in the log's epoch
    /// history and log an [`Op::Epoch`] as its first record. Only a node
    /// that has applied its whole log may (a standby being promoted), with
    /// no write in flight (a racing append is refused, and nothing is
    /// logged). The record changes no vector and is applied at once,
    /// without the gate, so a promotion does not wait for a standby.
    /// Returns its LSN.
    pub fn begin_epoch(&self, e: Epoch) -> Result<Lsn> {
        if self.broken.load(Ordering::Acquire) {
            return Err(broken());
        }
        let (applied, last) = (self.applied_lsn(), self.wal.last_lsn());
        if applied < last {
            return Err(CollectionError::InvalidArgument(format!(
                "cannot begin epoch {e}: records {}..={last} are logged but not applied; only a node that has applied its whole log may be promoted",
                applied + 1
            )));
        }
        let first = self.wal.begin_epoch(e)?;
        let body = Op::Epoch { epoch: e }.encode();
        self.log(
            std::slice::from_ref(&body),
            Some(first),
            std::iter::once(Pending::Op(Op::Epoch { epoch: e })),
        )?;
        self.apply_through(first)?;
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
        let mut items = Vec::with_capacity(bodies.len());
        for (i, b) in bodies.iter().enumerate() {
            let lsn = first + i as u64;
            let op = Op::decode(b, self.opts.dim).map_err(|why| {
                CollectionError::Corrupt(format!("{}: replicated record {lsn}: {why}", self.dir.display()))
            })?;
            let item = match op {
                Op::AddSegment { name } => {
                    if !self.fs.exists(&self.dir.join(&name)) {
                        return Err(CollectionError::Corrupt(format!(
                            "{}: replicated record {lsn} adds segment {name}, whose files have not arrived",
                            self.dir.display()
                        )));
                    }
                    let (seg, records) = load_segment(&self.fs, &self.dir, &name, &self.opts)?;
                    if let Some(b) = records.iter().filter_map(|r| bulk_of(r.0)).max() {
                        self.next_bulk.fetch_max(b + 1, Ordering::AcqRel);
                    }
                    Pending::Segment(Arc::new(seg), records)
                }
                Op::Upsert { id, ref vector, .. } => {
                    crate::vector::check_vector(self.opts.dim, vector).map_err(|error| CollectionError::Vector {
                        field: format!("replicated record {lsn}: vector for id {id}"),
                        error,
                    })?;
                    Pending::Op(op)
                }
                op => Pending::Op(op),
            };
            items.push(item);
        }
        // Log in runs that end before each epoch record, beginning the
        // epoch in the history just before its record is appended.
        let epochs: Vec<Option<Epoch>> = items
            .iter()
            .map(|it| match it {
                Pending::Op(Op::Epoch { epoch }) => Some(*epoch),
                _ => None,
            })
            .collect();
        let mut items = items.into_iter();
        let mut start = 0;
        while start < bodies.len() {
            if let Some(epoch) = epochs[start] {
                self.wal.begin_epoch_at(epoch, first + start as u64)?;
            }
            let end = epochs[start + 1..]
                .iter()
                .position(Option::is_some)
                .map_or(bodies.len(), |p| start + 1 + p);
            let run: Vec<Pending> = items.by_ref().take(end - start).collect();
            self.log(&bodies[start..end], Some(first + start as u64), run.into_iter())?;
            start = end;
        }
        let last = first + bodies.len() as u64 - 1;
        self.apply_through(last)?;
        Ok(last)
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
