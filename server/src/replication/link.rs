//! One collection's replication link, both ends, without I/O: what the
//! primary does with a plan and with acks (`PrimaryLink`), and what the
//! standby does with a plan (`follow_plan`, `install_from`).
//!
//! Owns: the rules the simulation found (docs/decisions/
//! 2026-12-05-replication-design.md): the standby's durable LSN in its
//! Hello acknowledges; the gate opens and the primary applies as acks
//! arrive; a standby applies everything it holds once its plan is carried
//! out (an old primary reopened holding its unacknowledged records back,
//! now cut to the shared prefix). Does not own: the messages' transport,
//! the handshake's decisions (`handshake`, `session`), chunk handling
//! (`stream`).

use super::handshake::CollectionPlan;
use super::stream::{Ack, Chunk, Shipper, StreamError, SyncGate};
use quarry_engine::collection::{install_snapshot, Collection, CollectionOptions, FetchFn, SnapshotFile};
use quarry_engine::storage::Vfs;
use quarry_engine::wal::{Epoch, Lsn, WalError};
use std::path::Path;
use std::sync::Arc;

/// The primary's end of one collection's link to its standby.
pub struct PrimaryLink {
    ship: Shipper,
    gate: Arc<SyncGate>,
}

impl PrimaryLink {
    /// Start streaming from `from` (the plan's first LSN, after any cut or
    /// snapshot on the standby). Everything before it is durable on the
    /// standby and shared with this log, so it counts as acknowledged at
    /// once: the gate opens over it and it is applied (a restarted primary
    /// held those records back). Returns the link and the applied LSN.
    pub fn start(
        coll: &Collection,
        gate: Arc<SyncGate>,
        follower: &str,
        from: Lsn,
        window: usize,
    ) -> Result<(PrimaryLink, Lsn), StreamError> {
        let ship = Shipper::start(coll, follower, from, window)?;
        let link = PrimaryLink { ship, gate };
        let applied = link.standby_has(coll, from - 1)?;
        Ok((link, applied))
    }

    /// The next chunk to send, if any (see [`Shipper::next_chunk`]).
    pub fn next_chunk(
        &mut self,
        coll: &Collection,
        epoch: Epoch,
        max_bytes: usize,
        now_us: u64,
    ) -> Result<Option<Chunk>, StreamError> {
        self.ship.next_chunk(coll, epoch, max_bytes, now_us)
    }

    /// The standby's durable LSN as last acknowledged.
    pub fn acked(&self) -> Lsn {
        self.ship.acked
    }

    /// Bytes sent and not yet acknowledged.
    pub fn unacked_bytes(&self) -> usize {
        self.ship.unacked_bytes()
    }

    /// The next LSN to send.
    pub fn next_lsn(&self) -> Lsn {
        self.ship.next_lsn()
    }

    /// An ack arrived: the follower registry, the gate, the apply. A
    /// follower the retention cap dropped still counts for the gate (its
    /// records are durable there); its next chunk fails and it reconnects.
    /// Returns the applied LSN: every write up to it may be answered OK.
    pub fn on_ack(&mut self, coll: &Collection, ack: &Ack) -> Result<Lsn, StreamError> {
        let durable = match self.ship.on_ack(coll, ack) {
            Ok(d) => d,
            Err(StreamError::Wal(WalError::FollowerDropped { .. })) => ack.durable,
            Err(e) => return Err(e),
        };
        self.standby_has(coll, durable)
    }

    fn standby_has(&self, coll: &Collection, durable: Lsn) -> Result<Lsn, StreamError> {
        self.gate.advance(durable);
        Ok(coll.apply_through(durable)?)
    }
}

/// On the standby: carry out a stream or cut plan on `coll` (taken by
/// value: a cut reopens it), then apply everything it holds. Returns the
/// collection and the first LSN to receive. A snapshot plan is not handled
/// here ([`install_from`]); it is returned as an error.
pub fn follow_plan(coll: Collection, plan: CollectionPlan) -> Result<(Collection, Lsn), StreamError> {
    let (coll, from) = match plan {
        CollectionPlan::Stream { from } => (coll, from),
        CollectionPlan::Truncate { after } => {
            let (c, _) = coll.truncate_after(after)?;
            (c, after + 1)
        }
        CollectionPlan::Snapshot(why) => {
            return Err(StreamError::Malformed(format!(
                "a snapshot plan ({why:?}) is carried out by install_from"
            )))
        }
    };
    coll.apply_through(coll.wal().last_lsn())?;
    Ok((coll, from))
}

/// On the standby: replace the (closed) collection at `dir` with the
/// primary's snapshot and reopen it. Returns it and the first LSN to
/// receive (the snapshot's checkpoint + 1).
#[allow(clippy::too_many_arguments)]
pub fn install_from(
    fs: Arc<dyn Vfs>,
    dir: &Path,
    opts: CollectionOptions,
    checkpoint: Lsn,
    manifest: &[u8],
    epochs: &[u8],
    files: &[SnapshotFile],
    fetch: &mut FetchFn<'_>,
) -> Result<(Collection, Lsn), StreamError> {
    install_snapshot(fs.as_ref(), dir, manifest, epochs, files, 1 << 20, fetch)?;
    let (c, _) = Collection::open(fs, dir, opts)?;
    c.apply_through(c.wal().last_lsn())?;
    Ok((c, checkpoint + 1))
}
