//! The primary's end of a Follow session, on its own thread: the
//! handshake, then shipping every streamed collection's log, taking acks,
//! renewing the lease, and deciding when the standby is in sync.
//!
//! Owns: one session's loop ([`run_session`]). Does not own: the pure
//! decisions it applies (`session`, `handshake`, `link`, `stream`), the
//! gRPC plumbing (`service`), demotion (`promote`).
//!
//! **In sync.** A session begins with every gate letting writes pass once
//! logged: the standby cleared its eligibility durably before its Hello,
//! so nothing it lacks can be lost by promoting it. Once no collection
//! needs a snapshot and every streamed collection has been sent to its
//! end with at most `eligible_lag_bytes` unacknowledged, the gates gate
//! (sync mode) from the log's last LSN at that moment; once the standby
//! has acknowledged those LSNs, heartbeats tell it that it is eligible.
//! The gates keep gating after the session ends: writes wait for the
//! standby and, past the lease, are refused.

use super::handshake::{check_pair, CollectionPlan, NodeReport, PairVerdict};
use super::link::PrimaryLink;
use super::node::Replica;
use super::session::{welcome, Refusal};
use super::settings::Mode;
use super::stream::Ack;
use super::wire;
use crate::catalog::{Catalog, Entry};
use quarry_engine::collection::Op;
use quarry_engine::wal::{Epoch, Lsn};
use quarry_proto::replication::v1 as pb;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver as StdReceiver, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bytes of records per chunk.
const CHUNK_BYTES: usize = 1 << 20;
/// Bytes sent and not acknowledged per collection (flow control: the
/// standby's apply backlog stays within this).
const WINDOW_BYTES: usize = 8 << 20;
/// Idle heartbeat period.
const HEARTBEAT: Duration = Duration::from_millis(100);

/// What a session ended with (logged by the caller).
pub type Outcome = Result<String, String>;

/// The follower name of a standby in a collection's log.
pub fn follower_name(node: u64) -> String {
    format!("standby-{node:016x}")
}

fn envelope(epoch: Epoch, msg: pb::from_primary::Msg) -> pb::FromPrimary {
    pb::FromPrimary {
        epoch: Some(wire::epoch_to(epoch)),
        msg: Some(msg),
    }
}

/// What this node says about itself in a handshake.
pub fn report(replica: &Replica, catalog: &Catalog) -> NodeReport {
    let id = replica.identity();
    NodeReport {
        pair_id: id.pair_id.clone(),
        node_id: id.node(),
        epoch: id.epoch(),
        has_data: catalog
            .list()
            .iter()
            .any(|e| e.live.coll.wal().last_lsn() > 0 || e.live.coll.segments() > 0),
    }
}

struct Streamed {
    entry: Arc<Entry>,
    incarnation: u64,
    /// Chunks sent and not yet acknowledged: (last LSN, when sent). The
    /// oldest one's age is the lag in seconds.
    sent: std::collections::VecDeque<(Lsn, Instant)>,
    link: PrimaryLink,
    /// Gating began with the log at this LSN (the standby is eligible once
    /// it has acknowledged it).
    gated_from: Option<Lsn>,
}

/// Run one Follow session. `inbound` carries the standby's messages
/// (closed when its stream ends); `send` delivers one message (false once
/// the standby is gone). `demote` is called when the standby proves a
/// newer primary exists.
pub fn run_session(
    replica: &Arc<Replica>,
    catalog: &Arc<Catalog>,
    inbound: StdReceiver<pb::FromStandby>,
    send: &mut dyn FnMut(pb::FromPrimary) -> bool,
    demote: &dyn Fn(Epoch),
) -> Outcome {
    let first = inbound
        .recv_timeout(Duration::from_secs(10))
        .map_err(|_| "no Hello within 10 s".to_string())?;
    let my_epoch = replica.identity().epoch();
    let Some(pb::from_standby::Msg::Hello(h)) = first.msg else {
        return Err("the first message was not a Hello".into());
    };
    let hello = wire::hello_from(h).map_err(|e| e.to_string())?;
    if replica.role() != super::settings::Role::Primary {
        let why = "this node is not the primary (it is a standby): follow the primary instead".to_string();
        send(envelope(
            my_epoch,
            pb::from_primary::Msg::Refused(pb::Refused { reason: why.clone() }),
        ));
        return Err(why);
    }
    let mut me = report(replica, catalog);
    match check_pair(&me, &hello.node) {
        PairVerdict::NewPair => {
            let pair = super::identity::NodeIdentity::mint_pair_id();
            let id = replica
                .update_identity(|i| i.pair_id = pair.clone())
                .map_err(|e| e.to_string())?;
            tracing::info!(pair_id = %id.pair_id, standby = hello.node.node_id, "formed a new pair");
            me.pair_id = id.pair_id;
        }
        PairVerdict::Fenced { epoch } => {
            replica.counters.fenced.fetch_add(1, Ordering::Relaxed);
            send(envelope(
                my_epoch,
                pb::from_primary::Msg::Fenced(pb::Fenced {
                    epoch: Some(wire::epoch_to(epoch)),
                }),
            ));
            demote(epoch);
            return Err(format!(
                "the standby knows the newer epoch {epoch}: this node was failed over; following"
            ));
        }
        PairVerdict::Refuse(why) => {
            replica.set_problem(why.clone());
            send(envelope(
                my_epoch,
                pb::from_primary::Msg::Refused(pb::Refused { reason: why.clone() }),
            ));
            return Err(why);
        }
        PairVerdict::Follow { .. } => {}
    }
    let sid = replica.session.fetch_add(1, Ordering::SeqCst) + 1;
    let role_gen = replica.role_gen.load(Ordering::SeqCst);
    let changes = catalog.changes();
    let entries = catalog.list();
    let names: Vec<(String, u64)> = entries
        .iter()
        .map(|e| (e.live.name.clone(), e.meta.read().expect("lock").incarnation))
        .collect();
    let colls: Vec<(&str, u64, &quarry_engine::collection::Collection)> = entries
        .iter()
        .zip(&names)
        .map(|(e, (n, inc))| (n.as_str(), *inc, &e.live.coll))
        .collect();
    let mut w = match welcome(&me, my_epoch, &colls, &hello) {
        Ok(w) => w,
        Err(Refusal::Fenced(e)) => {
            demote(e);
            return Err(format!("fenced by epoch {e}"));
        }
        Err(Refusal::Refused(why)) => {
            send(envelope(
                my_epoch,
                pb::from_primary::Msg::Refused(pb::Refused { reason: why.clone() }),
            ));
            return Err(why);
        }
    };
    for (name, _, plan) in w.plans.iter_mut() {
        if let Ok(m) = catalog.meta_bytes(name) {
            w.metas.insert(name.clone(), m);
        }
        if replica.force_snapshot.lock().expect("lock").contains(name.as_str())
            && !matches!(plan, CollectionPlan::Snapshot(_))
        {
            *plan = CollectionPlan::Snapshot(super::handshake::SnapshotReason::BehindRetention);
        }
    }
    // Sessions begin catching up: the standby cleared its eligibility.
    replica.in_sync.store(false, Ordering::SeqCst);
    replica.regate();
    let follower = follower_name(hello.node.node_id);
    let mut streamed: BTreeMap<String, Streamed> = BTreeMap::new();
    let mut snapshots = 0;
    for (entry, (name, _)) in entries.iter().zip(&names) {
        // A follower left by a standby this pair no longer has (a wiped
        // one came back as a new node) would hold the log forever.
        let wal = entry.live.coll.wal();
        for f in wal.followers() {
            if f.name.starts_with("standby-") && f.name != follower {
                tracing::info!(collection = %name, follower = %f.name, "forgetting an old standby's place in the log");
                let _ = wal.unregister_follower(&f.name);
            }
        }
        let plan = w.plans.iter().find(|p| &p.0 == name).map(|p| p.2);
        let from = match plan {
            Some(CollectionPlan::Stream { from }) => from,
            Some(CollectionPlan::Truncate { after }) => after + 1,
            Some(CollectionPlan::Snapshot(_)) | None => {
                snapshots += 1;
                continue;
            }
        };
        super::promote::adopt(replica, &entry.live).map_err(|e| format!("collection {name:?}: {e}"))?;
        let gate = replica.gate(name);
        let (link, _) =
            PrimaryLink::start(&entry.live.coll, gate, &follower, from, WINDOW_BYTES).map_err(|e| e.to_string())?;
        replica
            .lag
            .lock()
            .expect("lock")
            .entry(name.clone())
            .or_default()
            .peer_lsn = from - 1;
        streamed.insert(
            name.clone(),
            Streamed {
                entry: entry.clone(),
                incarnation: names.iter().find(|n| &n.0 == name).map_or(0, |n| n.1),
                sent: Default::default(),
                link,
                gated_from: None,
            },
        );
    }
    let plans = w.plans.clone();
    if !send(envelope(my_epoch, pb::from_primary::Msg::Welcome(wire::welcome_to(&w)))) {
        return Err("the standby went away before the Welcome".into());
    }
    tracing::info!(
        standby = format!("{:016x}", hello.node.node_id),
        plans = ?plans,
        "a standby follows"
    );
    replica.connected.store(true, Ordering::SeqCst);
    let r = stream(
        replica,
        catalog,
        &inbound,
        send,
        demote,
        &mut streamed,
        snapshots,
        sid,
        role_gen,
        changes,
    );
    // Only the newest session says whether a standby follows.
    if replica.session.load(Ordering::SeqCst) == sid {
        replica.connected.store(false, Ordering::SeqCst);
    }
    r
}

#[allow(clippy::too_many_arguments)]
fn stream(
    replica: &Arc<Replica>,
    catalog: &Arc<Catalog>,
    inbound: &StdReceiver<pb::FromStandby>,
    send: &mut dyn FnMut(pb::FromPrimary) -> bool,
    demote: &dyn Fn(Epoch),
    streamed: &mut BTreeMap<String, Streamed>,
    snapshots: usize,
    sid: u64,
    role_gen: u64,
    changes: u64,
) -> Outcome {
    let mut last_sent = Instant::now() - HEARTBEAT;
    let mut told_eligible = None;
    let mut seen = replica.bell.count();
    loop {
        if replica.session.load(Ordering::SeqCst) != sid {
            return Ok("a newer session from the standby replaced this one".into());
        }
        if replica.role_gen.load(Ordering::SeqCst) != role_gen {
            return Ok("this node's role changed".into());
        }
        if catalog.changes() != changes {
            return Ok("a collection was created, dropped or replaced: the standby reconnects to learn it".into());
        }
        let epoch = replica.identity().epoch();
        // Acks first: they free the window and renew the lease.
        loop {
            match inbound.try_recv() {
                Ok(m) => handle(replica, streamed, demote, epoch, m)?,
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return Ok("the standby closed the stream".into()),
            }
        }
        // Then records.
        let mut sent_any = false;
        for (name, s) in streamed.iter_mut() {
            let coll = &s.entry.live.coll;
            let now = replica.now_us();
            match s.link.next_chunk(coll, epoch, CHUNK_BYTES, now) {
                Ok(Some(c)) => {
                    // A bulk-loaded segment's files go first: the standby
                    // fetches and installs them before its record.
                    for body in c.records.iter().filter(|b| b.first() == Some(&3)) {
                        let Ok(Op::AddSegment { name: seg }) = Op::decode(body, coll.options().dim) else {
                            continue;
                        };
                        let files = match coll.segment_files(&seg) {
                            Ok(f) => f,
                            Err(e) => {
                                replica.force_snapshot.lock().expect("lock").insert(name.clone());
                                return Err(format!(
                                    "collection {name:?}: the standby needs segment {seg} ({e}); it is sent a snapshot instead"
                                ));
                            }
                        };
                        let m = pb::SegmentFiles {
                            collection: name.clone(),
                            incarnation: s.incarnation,
                            segment: seg,
                            files: wire::files_to(&files),
                        };
                        if !send(envelope(epoch, pb::from_primary::Msg::Segment(m))) {
                            return Ok("the standby went away".into());
                        }
                    }
                    if !send(envelope(epoch, pb::from_primary::Msg::Chunk(wire::chunk_to(name, &c)))) {
                        return Ok("the standby went away".into());
                    }
                    sent_any = true;
                    last_sent = Instant::now();
                    s.sent.push_back((c.first_lsn + c.records.len() as u64 - 1, last_sent));
                }
                Ok(None) => {}
                Err(e) => return Err(format!("collection {name:?}: {e}")),
            }
            let wal = coll.wal();
            let acked = s.link.acked();
            while s.sent.front().is_some_and(|&(last, _)| last <= acked) {
                s.sent.pop_front();
            }
            let unsent = wal.last_lsn().saturating_sub(s.link.next_lsn().saturating_sub(1));
            let mut lag = replica.lag.lock().expect("lock");
            let l = lag.entry(name.clone()).or_default();
            l.peer_lsn = s.link.acked();
            // Records not yet sent are counted at the mean size of those
            // in flight (256 bytes when none are).
            let unacked = s.link.unacked_bytes() as u64;
            let in_flight = s.link.next_lsn().saturating_sub(1).saturating_sub(s.link.acked());
            let mean = unacked.checked_div(in_flight).unwrap_or(256);
            l.bytes = unacked + unsent * mean;
            // Seconds behind: how long the oldest record the standby has
            // not acknowledged has been on its way (PostgreSQL's flush
            // lag); records logged and not yet sent count from now.
            l.behind_since = match s.sent.front() {
                Some(&(_, t)) => Some(t),
                None if unsent > 0 => Some(l.behind_since.unwrap_or_else(Instant::now)),
                None => None,
            };
        }
        // In sync?
        if !replica.in_sync.load(Ordering::SeqCst)
            && snapshots == 0
            && streamed.values().all(|s| {
                s.link.next_lsn() > s.entry.live.coll.wal().last_lsn()
                    && s.link.unacked_bytes() as u64 <= replica.settings.eligible_lag_bytes
            })
        {
            for s in streamed.values_mut() {
                s.gated_from = Some(s.entry.live.coll.wal().last_lsn());
            }
            replica.in_sync.store(true, Ordering::SeqCst);
            if replica.identity().degraded {
                // Safe at any time: it only makes acknowledgement stricter.
                replica
                    .update_identity(|i| i.degraded = false)
                    .map_err(|e| e.to_string())?;
                tracing::warn!("a standby is in sync again: no longer degraded");
            }
            replica.regate();
            tracing::info!(mode = ?replica.settings.mode, "the standby is in sync");
        }
        let eligible = replica.settings.mode == Mode::Sync
            && !replica.identity().degraded
            && replica.in_sync.load(Ordering::SeqCst)
            && snapshots == 0
            && streamed
                .values()
                .all(|s| s.gated_from.is_some_and(|g| s.link.acked() >= g));
        if last_sent.elapsed() >= HEARTBEAT || told_eligible != Some(eligible) {
            let primary_durable = streamed
                .iter()
                .map(|(n, s)| (n.clone(), s.entry.live.coll.wal().durable_lsn()))
                .collect();
            let hb = pb::Heartbeat {
                sent_at_us: replica.now_us(),
                eligible,
                primary_durable,
            };
            if !send(envelope(epoch, pb::from_primary::Msg::Heartbeat(hb))) {
                return Ok("the standby went away".into());
            }
            told_eligible = Some(eligible);
            last_sent = Instant::now();
        }
        if !sent_any {
            // Writes arriving at a gate and messages from the standby ring.
            seen = replica.bell.wait(seen, Duration::from_millis(20));
        }
    }
}

/// One message from the standby; `Err` ends the session with that outcome.
fn handle(
    replica: &Replica,
    streamed: &mut BTreeMap<String, Streamed>,
    demote: &dyn Fn(Epoch),
    epoch: Epoch,
    m: pb::FromStandby,
) -> Result<(), String> {
    let their = wire::epoch_from(m.epoch, "epoch").map_err(|e| e.to_string())?;
    if their > epoch {
        replica.counters.fenced.fetch_add(1, Ordering::Relaxed);
        demote(their);
        return Err(format!(
            "the standby is in the newer epoch {their}: this node was failed over; following"
        ));
    }
    match m.msg {
        Some(pb::from_standby::Msg::Ack(a)) => {
            let (name, ack) = wire::ack_from(a).map_err(|e| e.to_string())?;
            on_ack(replica, streamed, &name, &ack)
        }
        Some(pb::from_standby::Msg::Fenced(f)) => {
            let e = wire::epoch_from(f.epoch, "fenced.epoch").map_err(|e| e.to_string())?;
            replica.counters.fenced.fetch_add(1, Ordering::Relaxed);
            if e > epoch {
                demote(e);
            }
            Err(format!("the standby answered Fenced (epoch {e})"))
        }
        Some(pb::from_standby::Msg::Hello(_)) | None => {
            Err("the standby sent a second Hello or an empty message".into())
        }
    }
}

fn on_ack(replica: &Replica, streamed: &mut BTreeMap<String, Streamed>, name: &str, ack: &Ack) -> Result<(), String> {
    replica.counters.acks.fetch_add(1, Ordering::Relaxed);
    replica.renew_lease(ack.echo_sent_at_us);
    if name.is_empty() {
        return Ok(()); // a heartbeat's echo
    }
    let Some(s) = streamed.get_mut(name) else {
        return Err(format!(
            "an ack for collection {name:?}, which this session does not stream"
        ));
    };
    s.link
        .on_ack(&s.entry.live.coll, ack)
        .map_err(|e| format!("collection {name:?}: {e}"))?;
    Ok(())
}
