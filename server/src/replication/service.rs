//! The `Replication` gRPC service on `replication_listen`, its token
//! check, and the client a node uses to reach its peer's.
//!
//! Owns: the service's handlers (Follow runs a session of `primary` on
//! its own thread; snapshots are held here between calls; Promote,
//! Degrade and Switchover call `promote`), the `x-quarry-token` check
//! (UNAUTHENTICATED before any message is read), [`connect_peer`]. Does
//! not own: what a session does (`primary`) or the follower (`standby`).

use super::node::{role_name, Replica};
use super::primary::{follower_name, run_session};
use super::promote::{demote, promote};
use super::settings::{Mode, Role};
use super::wire;
use crate::catalog::Catalog;
use crate::error::ServiceError;
use quarry_engine::collection::Snapshot;
use quarry_proto::replication::v1 as pb;
use quarry_proto::tls::error_chain;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::{Request, Response, Status};

/// The metadata key carrying the pair's shared secret.
pub const TOKEN_KEY: &str = "x-quarry-token";
/// Largest piece of a snapshot file per ReadSnapshot.
pub const MAX_PIECE: u32 = 4 << 20;
/// A snapshot no call touched for this long is let go.
const SNAPSHOT_IDLE: Duration = Duration::from_secs(120);

/// Compare without an early exit (the token's bytes do not leak through
/// the time a refusal takes).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The interceptor: a call without the pair's token is refused before
/// its messages are read.
#[derive(Clone)]
pub struct TokenCheck(pub Arc<str>);

impl tonic::service::Interceptor for TokenCheck {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        match req.metadata().get(TOKEN_KEY) {
            Some(v) if same(v.as_bytes(), self.0.as_bytes()) => Ok(req),
            Some(_) => Err(Status::unauthenticated(format!(
                "{TOKEN_KEY} does not match this pair's token (replication.token_file)"
            ))),
            None => Err(Status::unauthenticated(format!(
                "the Replication service needs the pair's token in {TOKEN_KEY}"
            ))),
        }
    }
}

/// Adds the token to a client's calls.
#[derive(Clone)]
pub struct TokenAdd(pub tonic::metadata::AsciiMetadataValue);

impl tonic::service::Interceptor for TokenAdd {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        req.metadata_mut().insert(TOKEN_KEY, self.0.clone());
        Ok(req)
    }
}

/// A client of a peer's Replication service.
pub type PeerClient = pb::replication_client::ReplicationClient<
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, TokenAdd>,
>;

/// Connect to this node's peer (`replication.peer`) with the pair's
/// token, over TLS when it is on.
pub async fn connect_peer(replica: &Replica, timeout: Duration) -> Result<PeerClient, String> {
    let addr = replica.settings.peer.as_deref().unwrap_or_default();
    let value = replica
        .token
        .parse::<tonic::metadata::AsciiMetadataValue>()
        .map_err(|_| "the token is not printable ASCII".to_string())?;
    let scheme = if replica.tls.is_some() { "https" } else { "http" };
    let mut ep =
        tonic::transport::Endpoint::from_shared(format!("{scheme}://{addr}")).map_err(|e| format!("{addr}: {e}"))?;
    if let Some(tls) = &replica.tls {
        ep = ep.tls_config(tls.clone()).map_err(|e| format!("{addr}: TLS: {e}"))?;
    }
    let ch = ep
        .connect_timeout(timeout)
        // A partition that drops packets silently is noticed within a
        // few seconds, not at TCP's minutes.
        .http2_keep_alive_interval(Duration::from_secs(1))
        .keep_alive_timeout(Duration::from_secs(2))
        .keep_alive_while_idle(true)
        .tcp_nodelay(true)
        .connect()
        .await
        .map_err(|e| format!("cannot reach the peer at {addr}: {}", error_chain(&e)))?;
    Ok(
        pb::replication_client::ReplicationClient::with_interceptor(ch, TokenAdd(value))
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20),
    )
}

struct Held {
    snap: Arc<Snapshot>,
    last: Instant,
}

/// The service.
#[derive(Clone)]
pub struct ReplicationSvc {
    /// This node.
    pub replica: Arc<Replica>,
    /// Its collections.
    pub catalog: Arc<Catalog>,
    snaps: Arc<Mutex<HashMap<u64, Held>>>,
    next_snap: Arc<AtomicU64>,
}

impl ReplicationSvc {
    /// The service over this node.
    pub fn new(replica: Arc<Replica>, catalog: Arc<Catalog>) -> ReplicationSvc {
        ReplicationSvc {
            replica,
            catalog,
            snaps: Default::default(),
            next_snap: Arc::new(AtomicU64::new(1)),
        }
    }

    fn reap(&self) {
        self.snaps
            .lock()
            .expect("lock")
            .retain(|_, h| h.last.elapsed() < SNAPSHOT_IDLE);
    }

    fn held(&self, id: u64) -> Result<Arc<Snapshot>, Status> {
        let mut g = self.snaps.lock().expect("lock");
        let h = g.get_mut(&id).ok_or_else(|| {
            Status::not_found(format!(
                "snapshot {id} is not held (ended, or idle for {SNAPSHOT_IDLE:?}); begin another"
            ))
        })?;
        h.last = Instant::now();
        Ok(h.snap.clone())
    }

    /// Collection `name` if it is still incarnation `incarnation`.
    fn entry(&self, name: &str, incarnation: u64) -> Result<Arc<crate::catalog::Entry>, Status> {
        let entry = self.catalog.get(name)?;
        let inc = entry.meta.read().expect("lock").incarnation;
        if inc != incarnation {
            return Err(Status::failed_precondition(format!(
                "collection {name:?} is incarnation {inc} now, not {incarnation}: reconnect for a new plan"
            )));
        }
        Ok(entry)
    }

    /// This node's status.
    pub fn status(&self) -> pb::PeerReply {
        status(&self.replica, &self.catalog)
    }
}

/// This node's status, as Peer answers it and `quarryctl status` shows it.
pub fn status(r: &Replica, catalog: &Catalog) -> pb::PeerReply {
    let id = r.identity();
    let lag = r.lag.lock().expect("lock").clone();
    let collections = catalog
        .list()
        .iter()
        .map(|e| {
            let wal = e.live.coll.wal();
            let l = lag.get(&e.live.name).cloned().unwrap_or_default();
            let (last, durable) = (wal.last_lsn(), wal.durable_lsn());
            let primary = r.role() == Role::Primary;
            pb::CollectionLag {
                name: e.live.name.clone(),
                incarnation: e.meta.read().expect("lock").incarnation,
                last_lsn: last,
                durable_lsn: durable,
                applied_lsn: e.live.coll.applied_lsn(),
                peer_lsn: l.peer_lsn,
                lag_bytes: if primary { l.bytes } else { 0 },
                lag_seconds: l.behind_since.map_or(0.0, |t| t.elapsed().as_secs_f64()),
            }
        })
        .collect();
    pb::PeerReply {
        pair_id: id.pair_id.clone(),
        node_id: id.node(),
        epoch: Some(wire::epoch_to(id.epoch())),
        role: role_name(r.role()).into(),
        eligible: id.eligible,
        lease_left_ms: r.lease_left_ms(),
        degraded: id.degraded,
        mode: match r.settings.mode {
            Mode::Sync => "sync",
            Mode::Async => "async",
        }
        .into(),
        collections,
        connected: match r.role() {
            Role::Primary => r.connected.load(Ordering::SeqCst),
            _ => r.following.load(Ordering::SeqCst),
        },
        last_heard_ms: r.last_heard_ms().unwrap_or(0),
        acks: r.counters.acks.load(Ordering::Relaxed),
        snapshots_sent: r.counters.snapshots_sent.load(Ordering::Relaxed),
        snapshots_received: r.counters.snapshots_received.load(Ordering::Relaxed),
        fenced: r.counters.fenced.load(Ordering::Relaxed),
        problem: r.problem.lock().expect("lock").clone(),
        peer: r.settings.peer.clone().unwrap_or_default(),
    }
}

/// A piece no larger than [`MAX_PIECE`].
fn check_piece(len: u32) -> Result<(), Status> {
    if len > MAX_PIECE {
        return Err(Status::invalid_argument(format!(
            "len = {len} is over the largest piece, {MAX_PIECE}"
        )));
    }
    Ok(())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ServiceError> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("task failed: {e}")))?
        .map_err(Status::from)
}

#[tonic::async_trait]
impl pb::replication_server::Replication for ReplicationSvc {
    type FollowStream = tokio_stream::wrappers::ReceiverStream<Result<pb::FromPrimary, Status>>;

    async fn follow(
        &self,
        req: Request<tonic::Streaming<pb::FromStandby>>,
    ) -> Result<Response<Self::FollowStream>, Status> {
        let mut inbound = req.into_inner();
        let (in_tx, in_rx) = std::sync::mpsc::channel();
        let (out_tx, out_rx) = tokio::sync::mpsc::channel(16);
        let bell = self.replica.bell.clone();
        tokio::spawn(async move {
            loop {
                match inbound.message().await {
                    Ok(Some(m)) => {
                        if in_tx.send(m).is_err() {
                            break;
                        }
                        bell.ring();
                    }
                    Ok(None) => break,
                    Err(s) => {
                        tracing::warn!(code = ?s.code(), error = %s.message(), "the standby's stream broke");
                        break;
                    }
                }
            }
            drop(in_tx);
            bell.ring();
        });
        let (replica, catalog) = (self.replica.clone(), self.catalog.clone());
        std::thread::Builder::new()
            .name("ship".into())
            .spawn(move || {
                let mut send = |m: pb::FromPrimary| out_tx.blocking_send(Ok(m)).is_ok();
                let demote = |e| demote(&replica, &catalog, e);
                match run_session(&replica, &catalog, in_rx, &mut send, &demote) {
                    Ok(why) => tracing::info!(reason = %why, "a Follow session ended"),
                    Err(why) => tracing::warn!(reason = %why, "a Follow session failed"),
                }
            })
            .map_err(|e| Status::internal(format!("cannot start a shipping thread: {e}")))?;
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(out_rx)))
    }

    async fn peer(&self, _req: Request<pb::PeerRequest>) -> Result<Response<pb::PeerReply>, Status> {
        Ok(Response::new(self.status()))
    }

    async fn begin_snapshot(
        &self,
        req: Request<pb::BeginSnapshotRequest>,
    ) -> Result<Response<pb::SnapshotInfo>, Status> {
        self.reap();
        let r = req.into_inner();
        if self.replica.role() != Role::Primary {
            return Err(Status::failed_precondition("this node is not the primary"));
        }
        let entry = self.entry(&r.collection, r.incarnation)?;
        let meta = self.catalog.meta_bytes(&r.collection)?;
        self.replica.force_snapshot.lock().expect("lock").remove(&r.collection);
        let follower = follower_name(r.node_id);
        let live = entry.live.clone();
        let snap = blocking(move || live.coll.snapshot(&follower).map_err(crate::live::live_error)).await?;
        let info = pb::SnapshotInfo {
            snapshot_id: self.next_snap.fetch_add(1, Ordering::SeqCst),
            checkpoint_lsn: snap.checkpoint,
            manifest: snap.manifest.clone(),
            epochs: snap.epochs.clone(),
            files: wire::files_to(&snap.files),
            meta,
        };
        tracing::info!(
            collection = %r.collection, checkpoint = snap.checkpoint, files = snap.files.len(),
            bytes = snap.bytes(), "sending a snapshot to the standby"
        );
        self.replica.counters.snapshots_sent.fetch_add(1, Ordering::Relaxed);
        self.snaps.lock().expect("lock").insert(
            info.snapshot_id,
            Held {
                snap: Arc::new(snap),
                last: Instant::now(),
            },
        );
        Ok(Response::new(info))
    }

    async fn read_snapshot(
        &self,
        req: Request<pb::ReadSnapshotRequest>,
    ) -> Result<Response<pb::SnapshotPiece>, Status> {
        let r = req.into_inner();
        check_piece(r.len)?;
        let snap = self.held(r.snapshot_id)?;
        let data = blocking(move || {
            snap.read(&r.path, r.offset, r.len as usize)
                .map_err(crate::live::live_error)
        })
        .await?;
        Ok(Response::new(pb::SnapshotPiece { data }))
    }

    async fn read_segment(&self, req: Request<pb::ReadSegmentRequest>) -> Result<Response<pb::SnapshotPiece>, Status> {
        let r = req.into_inner();
        check_piece(r.len)?;
        let entry = self.entry(&r.collection, r.incarnation)?;
        let live = entry.live.clone();
        let data = blocking(move || {
            live.coll
                .read_segment_file(&r.path, r.offset, r.len as usize)
                .map_err(crate::live::live_error)
        })
        .await?;
        Ok(Response::new(pb::SnapshotPiece { data }))
    }

    async fn end_snapshot(
        &self,
        req: Request<pb::EndSnapshotRequest>,
    ) -> Result<Response<pb::EndSnapshotReply>, Status> {
        self.snaps.lock().expect("lock").remove(&req.into_inner().snapshot_id);
        Ok(Response::new(pb::EndSnapshotReply {}))
    }

    async fn promote(&self, req: Request<pb::PromoteRequest>) -> Result<Response<pb::PromoteReply>, Status> {
        let r = req.into_inner();
        let (replica, catalog) = (self.replica.clone(), self.catalog.clone());
        let p = blocking(move || {
            let p = promote(&replica, &catalog, r.primary_down, r.accept_loss, None)?;
            if r.degraded {
                replica.update_identity(|i| i.degraded = true)?;
                replica.regate();
                tracing::warn!("degraded at promotion: writes are acknowledged without a standby until `quarryctl replication degrade --undo`");
            }
            Ok(p)
        })
        .await?;
        Ok(Response::new(pb::PromoteReply {
            epoch: Some(wire::epoch_to(p.epoch)),
            lease_wait_ms: p.lease_wait.as_millis() as u64,
            summary: p.summary,
        }))
    }

    async fn degrade(&self, req: Request<pb::DegradeRequest>) -> Result<Response<pb::DegradeReply>, Status> {
        let on = req.into_inner().degraded;
        if self.replica.role() != Role::Primary {
            return Err(Status::failed_precondition(
                "only the primary is degraded (this node is a standby)",
            ));
        }
        let id = self.replica.update_identity(|i| i.degraded = on)?;
        self.replica.regate();
        tracing::warn!(
            degraded = id.degraded,
            "{}",
            if on {
                "degraded by the operator: writes are acknowledged without the standby (a failover may lose them)"
            } else {
                "no longer degraded: writes wait for the standby again once it is in sync"
            }
        );
        Ok(Response::new(pb::DegradeReply { degraded: id.degraded }))
    }

    async fn switchover(&self, req: Request<pb::SwitchoverRequest>) -> Result<Response<pb::SwitchoverReply>, Status> {
        let r = req.into_inner();
        let timeout = Duration::from_millis(if r.timeout_ms == 0 { 10_000 } else { r.timeout_ms });
        super::switchover::run(&self.replica, &self.catalog, timeout)
            .await
            .map(Response::new)
            .map_err(Status::from)
    }
}
