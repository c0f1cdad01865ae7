//! The log stream of one collection, both ends, without I/O: what the
//! primary sends next and what an ack changes (`Shipper`), what the
//! standby does with a chunk (`Receiver`), and the sync commit gate the
//! primary's writes wait at (`SyncGate`).
//!
//! Owns: chunking WAL records with their CRCs, flow control (bytes sent
//! and not yet acknowledged), checking a chunk (epoch, CRC, position) and
//! applying it, acks, the gate's state. Does not own: the transport
//! (gRPC, or a test's queue), which collections are streamed (the
//! handshake), snapshots.
//!
//! A chunk carries the primary's epoch; a standby that knows a newer one
//! answers `Fenced` and applies nothing. Records already present (a resend
//! after a reconnect) are skipped; a gap is an error (the standby
//! reconnects and the handshake says where to resume). The standby acks
//! after applying: `received` = `durable` = `applied` = its log's last LSN
//! (its own apply is not gated), echoing the chunk's send time for the
//! primary's lease.

use quarry_engine::collection::{Collection, CollectionError, CommitGate, GateError};
use quarry_engine::wal::{Epoch, Lsn, WalCursor, WalError};
use std::sync::{Condvar, Mutex};
use std::time::Instant;

/// WAL records of one collection, contiguous from `first_lsn`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk {
    /// The primary's epoch when it sent this.
    pub epoch: Epoch,
    /// First record's LSN.
    pub first_lsn: Lsn,
    /// Record bodies.
    pub records: Vec<Vec<u8>>,
    /// crc32c of each body.
    pub crcs: Vec<u32>,
    /// The primary's clock when sent (µs, monotonic), echoed by the ack.
    pub sent_at_us: u64,
    /// The primary's durable LSN of this collection (for the standby's lag).
    pub primary_durable: Lsn,
}

/// The standby's answer to a chunk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Applied (or already there).
    Ack(Ack),
    /// The chunk's epoch is older than one the standby knows.
    Fenced(Epoch),
}

/// What the standby has of a collection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ack {
    /// Highest LSN received, durable, applied (equal on a standby: it
    /// applies what it logged at once).
    pub received: Lsn,
    /// Durable in its log.
    pub durable: Lsn,
    /// Applied (searchable there).
    pub applied: Lsn,
    /// The acknowledged chunk's `sent_at_us`.
    pub echo_sent_at_us: u64,
}

/// Why a chunk could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// A record's bytes do not match the CRC the primary sent.
    #[error("record {lsn}: crc32c {got:#010x}, the primary sent {want:#010x}; the chunk was refused")]
    Crc {
        /// The record.
        lsn: Lsn,
        /// Computed.
        got: u32,
        /// Sent.
        want: u32,
    },
    /// The chunk starts after the standby's next LSN.
    #[error("the chunk starts at LSN {first}, but the standby's log ends at {last}: records are missing; reconnect")]
    Gap {
        /// The chunk's first LSN.
        first: Lsn,
        /// The standby's last LSN.
        last: Lsn,
    },
    /// A chunk that is not well formed (counts differ).
    #[error("malformed chunk: {0}")]
    Malformed(String),
    /// The collection refused the records.
    #[error(transparent)]
    Collection(#[from] CollectionError),
    /// The primary's log could not be read.
    #[error(transparent)]
    Wal(#[from] WalError),
}

/// The standby's end of one collection's stream.
#[derive(Debug, Default)]
pub struct Receiver {
    /// Chunks applied.
    pub chunks: u64,
    /// Records skipped as already present (resends).
    pub duplicates: u64,
}

impl Receiver {
    /// Check and apply one chunk; `epoch` is the newest epoch the standby
    /// knows.
    pub fn on_chunk(&mut self, coll: &Collection, epoch: Epoch, c: &Chunk) -> Result<Reply, StreamError> {
        if c.epoch < epoch {
            return Ok(Reply::Fenced(epoch));
        }
        if c.records.len() != c.crcs.len() {
            return Err(StreamError::Malformed(format!(
                "{} records, {} crcs",
                c.records.len(),
                c.crcs.len()
            )));
        }
        for (i, (r, &want)) in c.records.iter().zip(&c.crcs).enumerate() {
            let got = crc32c::crc32c(r);
            if got != want {
                return Err(StreamError::Crc {
                    lsn: c.first_lsn + i as u64,
                    got,
                    want,
                });
            }
        }
        let last = coll.wal().last_lsn();
        if c.first_lsn > last + 1 {
            return Err(StreamError::Gap {
                first: c.first_lsn,
                last,
            });
        }
        let skip = (last + 1 - c.first_lsn) as usize;
        self.duplicates += skip.min(c.records.len()) as u64;
        if skip < c.records.len() {
            coll.apply_replicated(last + 1, &c.records[skip..])?;
        }
        self.chunks += 1;
        let wal = coll.wal();
        Ok(Reply::Ack(Ack {
            received: wal.last_lsn(),
            durable: wal.durable_lsn(),
            applied: coll.applied_lsn(),
            echo_sent_at_us: c.sent_at_us,
        }))
    }
}

/// The primary's end of one collection's stream to one standby.
pub struct Shipper {
    /// The follower's name in the WAL's registry.
    pub follower: String,
    cursor: WalCursor,
    /// Next LSN to send.
    next: Lsn,
    /// The standby's durable LSN, as last acknowledged.
    pub acked: Lsn,
    /// Sent and not yet acknowledged, bytes (flow control).
    in_flight: Vec<(Lsn, usize)>,
    /// Most bytes sent and not yet acknowledged.
    pub window: usize,
}

impl Shipper {
    /// Start shipping from `from` (the handshake's plan) to a follower
    /// registered in `coll`'s log under `follower` (registered here at
    /// `from` if it is not).
    pub fn start(coll: &Collection, follower: &str, from: Lsn, window: usize) -> Result<Shipper, StreamError> {
        let wal = coll.wal();
        if !wal.followers().iter().any(|f| f.name == follower) {
            wal.register_follower(follower, from)?;
        }
        Ok(Shipper {
            follower: follower.to_string(),
            cursor: wal.cursor(from)?,
            next: from,
            acked: from - 1,
            in_flight: Vec::new(),
            window,
        })
    }

    /// The next LSN to send.
    pub fn next_lsn(&self) -> Lsn {
        self.next
    }

    /// Bytes sent and not yet acknowledged.
    pub fn unacked_bytes(&self) -> usize {
        self.in_flight.iter().map(|x| x.1).sum()
    }

    /// The next chunk of at most about `max_bytes` of durable records, if
    /// any is durable and the window allows.
    pub fn next_chunk(
        &mut self,
        coll: &Collection,
        epoch: Epoch,
        max_bytes: usize,
        now_us: u64,
    ) -> Result<Option<Chunk>, StreamError> {
        let room = self.window.saturating_sub(self.unacked_bytes());
        if room == 0 {
            return Ok(None);
        }
        let wal = coll.wal();
        let recs = wal.read(&mut self.cursor, max_bytes.min(room).max(1))?;
        if recs.is_empty() {
            return Ok(None);
        }
        let first_lsn = recs[0].0;
        debug_assert_eq!(first_lsn, self.next);
        let bytes = recs.iter().map(|r| r.1.len()).sum();
        self.next = recs.last().expect("non-empty").0 + 1;
        self.in_flight.push((self.next - 1, bytes));
        let crcs = recs.iter().map(|r| crc32c::crc32c(&r.1)).collect();
        Ok(Some(Chunk {
            epoch,
            first_lsn,
            records: recs.into_iter().map(|r| r.1).collect(),
            crcs,
            sent_at_us: now_us,
            primary_durable: wal.durable_lsn(),
        }))
    }

    /// An ack arrived: record it in the WAL's registry (retention may let
    /// go of what it covers) and free the window. Returns the standby's
    /// durable LSN.
    pub fn on_ack(&mut self, coll: &Collection, ack: &Ack) -> Result<Lsn, StreamError> {
        if ack.durable > self.acked {
            coll.wal().ack_follower(&self.follower, ack.durable)?;
            self.acked = ack.durable;
        }
        self.in_flight.retain(|&(last, _)| last > self.acked);
        Ok(self.acked)
    }
}

#[derive(Debug)]
enum GateState {
    Open,
    Fenced(Epoch),
    Closed(String),
}

/// A sync primary's commit gate for one collection: a write passes once
/// the standby's durable LSN reaches it, or at once while the gate is not
/// gating (the standby is catching up and is not eligible, the primary was
/// degraded, or the mode is async).
pub struct SyncGate {
    st: Mutex<(Lsn, GateState)>,
    cv: Condvar,
    gating: std::sync::atomic::AtomicBool,
    waker: Option<Box<dyn Fn() + Send + Sync>>,
}

impl SyncGate {
    /// A gate that has seen the standby reach `durable`.
    pub fn new(durable: Lsn) -> SyncGate {
        SyncGate {
            st: Mutex::new((durable, GateState::Open)),
            cv: Condvar::new(),
            gating: std::sync::atomic::AtomicBool::new(true),
            waker: None,
        }
    }

    /// [`SyncGate::new`], calling `waker` whenever a write arrives at it
    /// (the shipper sleeps until then).
    pub fn with_waker(durable: Lsn, gating: bool, waker: Box<dyn Fn() + Send + Sync>) -> SyncGate {
        let g = SyncGate {
            waker: Some(waker),
            ..SyncGate::new(durable)
        };
        g.set_gating(gating);
        g
    }

    /// Gate writes on the standby (`true`), or let them pass once logged
    /// (`false`: the standby is not eligible, so nothing it lacks can be
    /// lost by promoting it). Waiters are re-checked.
    pub fn set_gating(&self, on: bool) {
        let _g = self.st.lock().expect("lock");
        self.gating.store(on, std::sync::atomic::Ordering::SeqCst);
        self.cv.notify_all();
    }

    /// Whether writes wait for the standby.
    pub fn gating(&self) -> bool {
        self.gating.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The standby is durable up to `lsn`.
    pub fn advance(&self, lsn: Lsn) {
        let mut g = self.st.lock().expect("lock");
        if lsn > g.0 {
            g.0 = lsn;
            self.cv.notify_all();
        }
    }

    /// A newer primary exists: every waiter, now and later, is refused.
    pub fn fence(&self, epoch: Epoch) {
        self.st.lock().expect("lock").1 = GateState::Fenced(epoch);
        self.cv.notify_all();
    }

    /// Shut (stopping): every waiter gets an outcome-unknown error.
    pub fn close(&self, why: &str) {
        self.st.lock().expect("lock").1 = GateState::Closed(why.to_string());
        self.cv.notify_all();
    }

    /// The standby's durable LSN as the gate knows it.
    pub fn durable(&self) -> Lsn {
        self.st.lock().expect("lock").0
    }
}

impl CommitGate for SyncGate {
    fn wait(&self, lsn: Lsn, deadline: Option<Instant>) -> Result<(), GateError> {
        if let Some(w) = &self.waker {
            w();
        }
        let mut g = self.st.lock().expect("lock");
        loop {
            match &g.1 {
                GateState::Fenced(e) => return Err(GateError::Fenced { epoch: *e, lsn }),
                GateState::Closed(why) => return Err(GateError::Closed { lsn, why: why.clone() }),
                GateState::Open if g.0 >= lsn || !self.gating() => return Ok(()),
                GateState::Open => {}
            }
            g = match deadline {
                None => self.cv.wait(g).expect("lock"),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Err(GateError::Timeout { lsn });
                    }
                    self.cv.wait_timeout(g, d - now).expect("lock").0
                }
            };
        }
    }
}
