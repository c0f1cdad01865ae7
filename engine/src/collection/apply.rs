//! Logged and applied: the two halves of a write.
//!
//! Owns: the records logged but not yet applied (the pending map),
//! [`Collection::write`] and [`Collection::write_until`],
//! [`Collection::apply_through`], and the one apply loop every path uses
//! (writes, bulk loads, a promotion's epoch record, a standby's records).
//! Does not own: the WAL (`crate::wal`), the commit gate's policy
//! (`replica.rs` and the server), recovery's replay (`recovery.rs`).
//!
//! A record is first appended to the WAL (under its lock, which numbers
//! it) and put in the pending map under its LSN; then it may wait at the
//! commit gate; then [`Collection::apply_through`] applies the pending
//! records strictly in LSN order up to a given LSN, waiting for a record
//! below it that another thread has logged but not yet put in the map. A
//! write whose wait at the gate times out stays pending and is applied by
//! the next `apply_through` that reaches it: the one of a later write, or
//! the replication layer's as the standby's acks arrive.

use super::op::Op;
use super::segment::Segment;
use super::{apply, apply_segment, broken, Collection, Result};
use crate::wal::{Lsn, WalError};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// A logged record waiting to be applied.
pub(super) enum Pending {
    /// An upsert, delete or epoch record.
    Op(Op),
    /// A bulk-loaded or replicated segment, opened, with its records.
    Segment(Arc<Segment>, Vec<(u64, u64, Vec<u8>)>),
}

/// What `Collection::applied` guards.
#[derive(Default)]
pub(super) struct Applier {
    /// Every record up to this LSN is applied.
    pub(super) applied: Lsn,
    /// Logged, not yet applied, by LSN.
    pub(super) pending: BTreeMap<Lsn, Pending>,
}

impl Collection {
    /// Apply a batch of writes atomically with respect to validation (all
    /// or none are logged). Returns the LSN of the last; once this returns
    /// every later search and get sees the batch.
    pub fn write(&self, ops: Vec<Op>) -> Result<Lsn> {
        self.write_until(ops, None)
    }

    /// [`Collection::write`], giving up the wait at the commit gate at
    /// `deadline`: then the error is [`super::GateError::Timeout`], and the
    /// batch, logged, is applied once the gate opens (or cut, if this node
    /// is fenced): its outcome is unknown to the caller.
    pub fn write_until(&self, ops: Vec<Op>, deadline: Option<Instant>) -> Result<Lsn> {
        if ops.is_empty() {
            return Ok(self.wal.last_lsn());
        }
        for op in &ops {
            self.validate(op)?;
        }
        let n = ops.len() as u64;
        let bodies: Vec<Vec<u8>> = ops.iter().map(Op::encode).collect();
        let first = self.log(&bodies, None, ops.into_iter().map(Pending::Op))?;
        let last = first + n - 1;
        self.pass_gate(last, deadline)?;
        self.apply_through(last)?;
        Ok(last)
    }

    /// Append `bodies` to the WAL (at LSN `at` when given) and put their
    /// `items` in the pending map. A poisoned log breaks the collection.
    /// Returns the first LSN.
    pub(super) fn log(&self, bodies: &[Vec<u8>], at: Option<Lsn>, items: impl Iterator<Item = Pending>) -> Result<Lsn> {
        if self.broken.load(Ordering::Acquire) {
            return Err(broken());
        }
        let refs: Vec<&[u8]> = bodies.iter().map(|b| b.as_slice()).collect();
        let appended = match at {
            Some(first) => self.wal.append_at(first, &refs).map(|_| first),
            None => self.wal.append(&refs),
        };
        let first = match appended {
            Ok(f) => f,
            Err(e) => {
                if matches!(e, WalError::Poisoned(_) | WalError::Truncated { .. }) {
                    self.broken.store(true, Ordering::Release);
                    self.applied_cv.notify_all();
                }
                return Err(e.into());
            }
        };
        let mut g = self.applied.lock().expect("lock");
        for (i, item) in items.enumerate() {
            g.pending.insert(first + i as u64, item);
        }
        drop(g);
        self.applied_cv.notify_all();
        Ok(first)
    }

    /// Apply every logged record up to `lsn` in LSN order (waiting for one
    /// still being logged by another thread); returns the applied LSN,
    /// which may be past `lsn`. Records not logged yet are not waited for
    /// past the WAL's last LSN.
    pub fn apply_through(&self, lsn: Lsn) -> Result<Lsn> {
        let lsn = lsn.min(self.wal.last_lsn());
        let mut g = self.applied.lock().expect("lock");
        let mut progressed = false;
        while g.applied < lsn {
            if self.broken.load(Ordering::Acquire) {
                if progressed {
                    self.applied_cv.notify_all();
                }
                return Err(broken());
            }
            let next = g.applied + 1;
            let Some(item) = g.pending.remove(&next) else {
                // Logged by a thread that has not put it in the map yet.
                g = self.applied_cv.wait(g).expect("lock");
                continue;
            };
            // Each insert is planned under the read lock (the graph search
            // and prunes: most of the cost) and committed under the write
            // lock (a copy), one record at a time, so searches are held up
            // for microseconds, not for the batch. Holding `applied` keeps
            // every other applier and the flush's freeze out, so a plan
            // stays valid until its commit.
            match item {
                Pending::Op(op) => {
                    let plan = match &op {
                        Op::Upsert { vector, .. } => Some(self.state.read().expect("lock").active.plan(vector)),
                        _ => None,
                    };
                    apply(&mut self.state.write().expect("lock"), next, op, plan);
                }
                Pending::Segment(seg, records) => {
                    apply_segment(&mut self.state.write().expect("lock"), seg, records);
                }
            }
            g.applied = next;
            progressed = true;
        }
        let applied = g.applied;
        drop(g);
        if progressed {
            self.applied_cv.notify_all();
        }
        Ok(applied)
    }

    /// Every record up to this LSN is applied (visible).
    pub fn applied_lsn(&self) -> Lsn {
        self.applied.lock().expect("lock").applied
    }
}
