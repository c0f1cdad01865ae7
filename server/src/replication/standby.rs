//! The standby's follower: one thread that dials the primary, says what
//! it holds, carries out the plans (cut, snapshot, create, drop), then
//! applies the stream and acknowledges it, reconnecting whenever the
//! session ends. And the primary's watch on its peer: a primary that
//! finds its peer promoted in a newer epoch follows it.
//!
//! Owns: [`start`] (both loops, each on its own thread with a small
//! runtime for the network). Does not own: the decisions (`handshake`,
//! `session`, `link`, `stream`), promotion (`promote`).
//!
//! **Eligibility.** The follower clears this node's eligibility durably
//! before every Hello: the primary lets writes pass without it from the
//! Hello until it is in sync again, and a standby that might lack them
//! must not be promoted without `--accept-loss`. It records eligibility
//! again (durably) when a heartbeat says the primary gates on it and it
//! holds everything acknowledged.

use super::handshake::CollectionPlan;
use super::link::{follow_plan, install_from};
use super::node::Replica;
use super::primary::report;
use super::promote::demote;
use super::service::{connect_peer, PeerClient, MAX_PIECE};
use super::session::{collection_state, Hello};
use super::settings::Role;
use super::stream::{Receiver, Reply};
use super::wire;
use crate::catalog::{Catalog, CollectionMeta};
use crate::error::ServiceError;
use quarry_engine::collection::{install_segment, CollectionError};
use quarry_engine::wal::Epoch;
use quarry_proto::replication::v1 as pb;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Start the follower and the peer watch. They run until the process
/// ends; each acts only in its role.
pub fn start(replica: Arc<Replica>, catalog: Arc<Catalog>) -> std::io::Result<()> {
    let rt = Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("follow-net")
            .enable_all()
            .build()?,
    );
    let (r, c, t) = (replica.clone(), catalog.clone(), rt.clone());
    std::thread::Builder::new()
        .name("follow".into())
        .spawn(move || follow_forever(&r, &c, &t))?;
    std::thread::Builder::new()
        .name("peer-watch".into())
        .spawn(move || watch_peer(&replica, &catalog, &rt))?;
    Ok(())
}

fn follow_forever(replica: &Arc<Replica>, catalog: &Arc<Catalog>, rt: &tokio::runtime::Runtime) {
    let mut backoff = Duration::from_millis(100);
    loop {
        if replica.role() != Role::Standby
            || replica.promoting.load(Ordering::SeqCst)
            || replica.reopening.load(Ordering::SeqCst)
        {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        let t = Instant::now();
        let r = session(replica, catalog, rt);
        replica.following.store(false, Ordering::SeqCst);
        match r {
            Ok(why) => {
                tracing::info!(reason = %why, "left the primary's stream");
                backoff = Duration::from_millis(100);
            }
            Err(why) => {
                tracing::debug!(reason = %why, "the session with the primary failed");
                replica.set_problem(why);
                if t.elapsed() > Duration::from_secs(5) {
                    backoff = Duration::from_millis(100);
                }
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}

fn envelope(epoch: Epoch, msg: pb::from_standby::Msg) -> pb::FromStandby {
    pb::FromStandby {
        epoch: Some(wire::epoch_to(epoch)),
        msg: Some(msg),
    }
}

/// One session: Ok when it ended in an orderly way (reconnect at once).
fn session(replica: &Arc<Replica>, catalog: &Arc<Catalog>, rt: &tokio::runtime::Runtime) -> Result<String, String> {
    let peer = replica.settings.peer.clone().unwrap_or_default();
    let mut client = rt.block_on(connect_peer(replica, Duration::from_secs(2)))?;
    // Before the Hello: from it on, the primary may acknowledge writes
    // this node does not have.
    replica
        .update_identity(|i| i.eligible = false)
        .map_err(|e| e.to_string())?;
    let hello = {
        let _g = replica.follow_lock.lock().expect("lock");
        let mut collections = Vec::new();
        for e in catalog.list() {
            let inc = e.meta.read().expect("lock").incarnation;
            let st = collection_state(
                catalog.vfs().as_ref(),
                &catalog.live_dir(&e.live.name),
                &e.live.name,
                inc,
                &e.live.coll,
            )
            .map_err(|err| format!("collection {:?}: {err}", e.live.name))?;
            collections.push(st);
        }
        Hello {
            node: report(replica, catalog),
            collections,
        }
    };
    let my_epoch = hello.node.epoch;
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::FromStandby>(64);
    tx.try_send(envelope(my_epoch, pb::from_standby::Msg::Hello(wire::hello_to(&hello))))
        .map_err(|e| format!("queueing the Hello: {e}"))?;
    let mut inbound = rt
        .block_on(async {
            tokio::time::timeout(
                Duration::from_secs(10),
                client.follow(tokio_stream::wrappers::ReceiverStream::new(rx)),
            )
            .await
        })
        .map_err(|_| format!("the primary at {peer} did not answer Follow within 10 s"))?
        .map_err(|s| format!("the primary at {peer} refused Follow: {}", s.message()))?
        .into_inner();
    let next =
        |inbound: &mut tonic::Streaming<pb::FromPrimary>, wait: Duration| -> Result<Option<pb::FromPrimary>, String> {
            match rt.block_on(async { tokio::time::timeout(wait, inbound.message()).await }) {
                Err(_) => Ok(None),
                Ok(Ok(Some(m))) => Ok(Some(m)),
                Ok(Ok(None)) => Err("the primary closed the stream".into()),
                Ok(Err(s)) => Err(format!("the stream broke: {}", s.message())),
            }
        };
    let first = next(&mut inbound, Duration::from_secs(10))?.ok_or("no Welcome within 10 s")?;
    let their = wire::epoch_from(first.epoch, "epoch").map_err(|e| e.to_string())?;
    let w = match first.msg {
        Some(pb::from_primary::Msg::Welcome(w)) => wire::welcome_from(w, their).map_err(|e| e.to_string())?,
        Some(pb::from_primary::Msg::Refused(r)) => {
            return Err(format!("the primary refused this standby: {}", r.reason))
        }
        Some(pb::from_primary::Msg::Fenced(f)) => {
            let e = wire::epoch_from(f.epoch, "fenced.epoch").map_err(|e| e.to_string())?;
            replica.learn_epoch(e).map_err(|e| e.to_string())?;
            return Err(format!("fenced by epoch {e}"));
        }
        _ => return Err("the primary's first message was not a Welcome".into()),
    };
    if their < my_epoch {
        replica.counters.fenced.fetch_add(1, Ordering::Relaxed);
        let _ = tx.try_send(envelope(
            my_epoch,
            pb::from_standby::Msg::Fenced(pb::Fenced {
                epoch: Some(wire::epoch_to(my_epoch)),
            }),
        ));
        return Err(format!(
            "the peer at {peer} leads in the older epoch {their}: it was failed over"
        ));
    }
    replica.heard();
    replica
        .update_identity(|i| {
            if i.pair_id.is_empty() {
                i.pair_id = w.pair_id.clone();
            }
            if their > i.epoch() {
                i.set_epoch(their);
            }
        })
        .map_err(|e| e.to_string())?;
    if !replica.stuck_in_snapshots() {
        replica.set_problem("");
    }
    // Carry out the plans.
    let mut snapshots = Vec::new();
    {
        let _g = replica.follow_lock.lock().expect("lock");
        if replica.promoting.load(Ordering::SeqCst) {
            return Ok("a promotion began".into());
        }
        for name in &w.drop {
            catalog
                .drop_collection(name)
                .map_err(|e| format!("dropping {name:?}: {e}"))?;
            replica.forget_gate(name);
            tracing::info!(collection = %name, "dropped: the primary no longer has it");
        }
        for (name, inc, plan) in &w.plans {
            match plan {
                CollectionPlan::Snapshot(why) => snapshots.push((name.clone(), *inc, *why)),
                CollectionPlan::Stream { .. } => {
                    let e = catalog.get(name).map_err(|e| e.to_string())?;
                    e.live
                        .coll
                        .apply_through(e.live.coll.wal().last_lsn())
                        .map_err(|e| e.to_string())?;
                }
                CollectionPlan::Truncate { after } => {
                    let (meta, coll) = catalog.take(name).map_err(|e| e.to_string())?;
                    let (coll, _) = match follow_plan(coll, *plan) {
                        Ok(x) => x,
                        Err(e) => {
                            // The collection was consumed by a failed cut:
                            // reopen it as it is on disk.
                            let (c, _) = quarry_engine::collection::Collection::open(
                                catalog.vfs(),
                                &catalog.live_dir(name),
                                catalog.options_of(&meta),
                            )
                            .map_err(|e2| {
                                format!("collection {name:?}: the cut failed ({e}) and reopening failed: {e2}")
                            })?;
                            catalog.put(meta, c);
                            return Err(format!("collection {name:?}: cutting after {after}: {e}"));
                        }
                    };
                    catalog.put(meta, coll);
                    replica.counters.cuts.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(collection = %name, after, "cut a divergent tail (records this node had that the primary never acknowledged)");
                }
            }
        }
    }
    // A standby ships to no one: places a former primary kept in its logs
    // for its own standby would hold its WAL until the retention cap.
    for e in catalog.list() {
        let wal = e.live.coll.wal();
        for f in wal.followers() {
            if let Err(err) = wal.unregister_follower(&f.name) {
                tracing::warn!(collection = %e.live.name, follower = %f.name, error = %err, "cannot forget a follower");
            }
        }
    }
    if !snapshots.is_empty() {
        for (name, inc, why) in snapshots {
            tracing::info!(collection = %name, reason = ?why, "catching up from a snapshot");
            let meta = w.metas.get(&name).cloned().unwrap_or_default();
            install(replica, catalog, rt, &mut client, &name, inc, &meta)?;
            // Snapshot after snapshot with no stream between them: the
            // primary's log after each checkpoint outgrew its retention
            // during the transfer. Reported instead of looping in silence.
            replica.snapshot_installed(&name);
        }
        return Ok("snapshots installed; reconnecting to stream after them".into());
    }
    replica.following.store(true, Ordering::SeqCst);
    let mut receivers: HashMap<String, Receiver> = HashMap::new();
    let mut reported: HashMap<String, std::collections::VecDeque<(u64, Instant)>> = HashMap::new();
    // The primary sends at least a heartbeat every 100 ms: silence for a
    // lease means the path is gone (a partition that drops packets).
    let silence = Duration::from_millis(replica.settings.lease_ms);
    let mut last = Instant::now();
    loop {
        if replica.promoting.load(Ordering::SeqCst) || replica.role() != Role::Standby {
            return Ok("this node is being promoted".into());
        }
        let Some(m) = next(&mut inbound, Duration::from_millis(100))? else {
            if last.elapsed() > silence {
                return Err(format!(
                    "nothing from the primary for {} ms; reconnecting",
                    last.elapsed().as_millis()
                ));
            }
            continue;
        };
        last = Instant::now();
        let _g = replica.follow_lock.lock().expect("lock");
        if replica.promoting.load(Ordering::SeqCst) {
            return Ok("this node is being promoted".into());
        }
        replica.heard();
        let their = wire::epoch_from(m.epoch, "epoch").map_err(|e| e.to_string())?;
        let mine = replica.identity().epoch();
        let reply = match m.msg {
            Some(pb::from_primary::Msg::Chunk(c)) => {
                let (name, chunk) = wire::chunk_from(c, their).map_err(|e| e.to_string())?;
                let entry = catalog.get(&name).map_err(|e| e.to_string())?;
                let recv = receivers.entry(name.clone()).or_default();
                match recv.on_chunk(&entry.live.coll, mine, &chunk) {
                    Ok(Reply::Ack(a)) => {
                        replica.streamed(&name);
                        // The standby flushes and merges on its own.
                        catalog.kick_flush(&entry.live);
                        replica
                            .lag
                            .lock()
                            .expect("lock")
                            .entry(name.clone())
                            .or_default()
                            .peer_lsn = chunk.primary_durable;
                        replica.counters.acks.fetch_add(1, Ordering::Relaxed);
                        pb::from_standby::Msg::Ack(wire::ack_to(&name, &a))
                    }
                    Ok(Reply::Fenced(e)) => {
                        replica.counters.fenced.fetch_add(1, Ordering::Relaxed);
                        let _ = tx.try_send(envelope(
                            mine,
                            pb::from_standby::Msg::Fenced(pb::Fenced {
                                epoch: Some(wire::epoch_to(e)),
                            }),
                        ));
                        return Err(format!(
                            "a chunk of the older epoch {their}: its sender was failed over"
                        ));
                    }
                    Err(e) => {
                        if matches!(
                            &e,
                            super::stream::StreamError::Collection(CollectionError::Wal(
                                quarry_engine::wal::WalError::Poisoned(_)
                            ))
                        ) {
                            // The disk failed under it: nothing more is
                            // acknowledged until a restart recovers what is
                            // really durable.
                            replica.set_problem(format!(
                                "collection {name:?} stopped: {e}; restart quarryd to recover it"
                            ));
                        }
                        return Err(format!("collection {name:?}: {e}"));
                    }
                }
            }
            Some(pb::from_primary::Msg::Heartbeat(h)) => {
                // Seconds behind: the age of the oldest primary LSN a
                // heartbeat reported that this node does not hold yet.
                let mut lag = replica.lag.lock().expect("lock");
                for (n, d) in &h.primary_durable {
                    let l = lag.entry(n.clone()).or_default();
                    l.peer_lsn = *d;
                    let have = catalog.get(n).map(|e| e.live.coll.wal().durable_lsn()).unwrap_or(0);
                    let q = reported.entry(n.clone()).or_default();
                    if *d > have && q.back().is_none_or(|b: &(u64, Instant)| b.0 < *d) {
                        q.push_back((*d, Instant::now()));
                    }
                    while q.front().is_some_and(|f| f.0 <= have) {
                        q.pop_front();
                    }
                    l.behind_since = q.front().map(|f| f.1);
                }
                drop(lag);
                if h.eligible != replica.identity().eligible {
                    replica
                        .update_identity(|i| i.eligible = h.eligible)
                        .map_err(|e| e.to_string())?;
                    tracing::info!(eligible = h.eligible, "eligibility for promotion changed");
                }
                pb::from_standby::Msg::Ack(pb::Ack {
                    echo_sent_at_us: h.sent_at_us,
                    ..Default::default()
                })
            }
            Some(pb::from_primary::Msg::Fenced(f)) => {
                let e = wire::epoch_from(f.epoch, "fenced.epoch").map_err(|e| e.to_string())?;
                replica.learn_epoch(e).map_err(|e| e.to_string())?;
                return Err(format!("the primary answered Fenced (epoch {e})"));
            }
            Some(pb::from_primary::Msg::Segment(sf)) => {
                if their < mine {
                    return Err(format!("segment files in the older epoch {their}"));
                }
                receive_segment(catalog, rt, &mut client, sf)?;
                continue;
            }
            Some(pb::from_primary::Msg::Refused(r)) => return Err(format!("the primary refused: {}", r.reason)),
            Some(pb::from_primary::Msg::Welcome(_)) | None => {
                return Err("the primary sent a second Welcome or an empty message".into())
            }
        };
        if rt.block_on(tx.send(envelope(mine, reply))).is_err() {
            return Err("the stream to the primary closed".into());
        }
    }
}

/// Fetch and install a bulk-loaded segment's files before its record.
fn receive_segment(
    catalog: &Catalog,
    rt: &tokio::runtime::Runtime,
    client: &mut PeerClient,
    sf: pb::SegmentFiles,
) -> Result<(), String> {
    let files = wire::files_from(&sf.files);
    let (name, inc) = (sf.collection.clone(), sf.incarnation);
    let mut fetch = |path: &str, offset: u64, len: usize| {
        rt.block_on(client.read_segment(timed(
            pb::ReadSegmentRequest {
                collection: name.clone(),
                incarnation: inc,
                path: path.to_string(),
                offset,
                len: (len as u32).min(MAX_PIECE),
            },
            30,
        )))
        .map_err(|s| fetch_error(path, s))
        .map(|r| r.into_inner().data)
    };
    install_segment(
        catalog.vfs().as_ref(),
        &catalog.live_dir(&sf.collection),
        &sf.segment,
        &files,
        MAX_PIECE as usize,
        &mut fetch,
    )
    .map(|_| ())
    .map_err(|e| format!("collection {:?}: receiving segment {}: {e}", sf.collection, sf.segment))
}

/// A failed fetch of a piece of `path` from the primary.
fn fetch_error(path: &str, s: tonic::Status) -> CollectionError {
    CollectionError::Io {
        path: path.into(),
        op: "fetch from the primary",
        source: std::io::Error::other(s.message().to_string()),
    }
}

/// A request with a deadline of `secs`.
fn timed<T>(m: T, secs: u64) -> tonic::Request<T> {
    let mut r = tonic::Request::new(m);
    r.set_timeout(Duration::from_secs(secs));
    r
}

/// Take collection `name` from the primary's snapshot (creating it from
/// `meta` if this node lacks it).
#[allow(clippy::too_many_arguments)]
fn install(
    replica: &Replica,
    catalog: &Catalog,
    rt: &tokio::runtime::Runtime,
    client: &mut PeerClient,
    name: &str,
    incarnation: u64,
    meta: &[u8],
) -> Result<(), String> {
    let t = Instant::now();
    let info = rt
        .block_on(client.begin_snapshot(timed(
            pb::BeginSnapshotRequest {
                collection: name.to_string(),
                incarnation,
                node_id: replica.identity().node(),
            },
            60,
        )))
        .map_err(|s| {
            format!(
                "collection {name:?}: the primary could not begin a snapshot: {}",
                s.message()
            )
        })?
        .into_inner();
    let meta = CollectionMeta::from_peer(if meta.is_empty() { &info.meta } else { meta })
        .map_err(|e| format!("collection {name:?}: {e}"))?;
    if meta.name != name || meta.incarnation != incarnation {
        return Err(format!(
            "collection {name:?}: the primary's metadata names {:?} incarnation {}",
            meta.name, meta.incarnation
        ));
    }
    let files = wire::files_from(&info.files);
    let bytes: u64 = files.iter().map(|f| f.len).sum();
    let id = info.snapshot_id;
    let mut fetched = 0u64;
    let mut last_log = Instant::now();
    let r = {
        let _g = replica.follow_lock.lock().expect("lock");
        replica.forget_gate(name);
        catalog.install_replica(meta, |fs, dir, opts| {
            let mut fetch = |path: &str, offset: u64, len: usize| {
                let piece = rt
                    .block_on(client.read_snapshot(timed(
                        pb::ReadSnapshotRequest {
                            snapshot_id: id,
                            path: path.to_string(),
                            offset,
                            len: (len as u32).min(MAX_PIECE),
                        },
                        30,
                    )))
                    .map_err(|s| fetch_error(path, s))?
                    .into_inner()
                    .data;
                fetched += piece.len() as u64;
                if last_log.elapsed() > Duration::from_secs(5) {
                    tracing::info!(collection = name, fetched, of = bytes, "snapshot transfer");
                    last_log = Instant::now();
                }
                Ok(piece)
            };
            install_from(
                fs,
                dir,
                opts,
                info.checkpoint_lsn,
                &info.manifest,
                &info.epochs,
                &files,
                &mut fetch,
            )
            .map(|(c, _)| c)
            .map_err(|e| ServiceError::Internal(e.to_string()))
        })
    };
    let _ = rt.block_on(client.end_snapshot(pb::EndSnapshotRequest { snapshot_id: id }));
    r.map_err(|e| format!("collection {name:?}: installing the snapshot: {e}"))?;
    replica.counters.snapshots_received.fetch_add(1, Ordering::Relaxed);
    tracing::info!(
        collection = name,
        checkpoint = info.checkpoint_lsn,
        bytes,
        seconds = t.elapsed().as_secs_f64(),
        "installed a snapshot"
    );
    Ok(())
}

/// A primary asks its peer, twice a lease, whether it was promoted in a
/// newer epoch; if so it follows (a primary that restarted after a
/// failover, or one that was cut off and is back).
fn watch_peer(replica: &Arc<Replica>, catalog: &Arc<Catalog>, rt: &tokio::runtime::Runtime) {
    let period = Duration::from_millis((replica.settings.lease_ms / 2).max(100));
    let mut client: Option<PeerClient> = None;
    loop {
        std::thread::sleep(period);
        if replica.role() != Role::Primary {
            continue;
        }
        if client.is_none() {
            client = rt.block_on(connect_peer(replica, Duration::from_millis(500))).ok();
        }
        let Some(c) = client.as_mut() else { continue };
        let reply = rt.block_on(async { tokio::time::timeout(period, c.peer(pb::PeerRequest {})).await });
        let Ok(Ok(reply)) = reply else {
            client = None;
            continue;
        };
        let reply = reply.into_inner();
        let Ok(theirs) = wire::epoch_from(reply.epoch, "epoch") else {
            continue;
        };
        let mine = replica.identity().epoch();
        if reply.role == "primary" && theirs > mine && reply.pair_id == replica.identity().pair_id {
            demote(replica, catalog, theirs);
        } else if reply.role == "primary" && theirs > mine && replica.identity().pair_id.is_empty() {
            // This node's data directory was wiped: join the peer's pair
            // as a new standby.
            demote(replica, catalog, theirs);
        }
    }
}
