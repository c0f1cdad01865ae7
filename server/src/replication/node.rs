//! This node's part in a running pair: its role now, its identity, the
//! write lease, the commit gates, lag, counters, and the rules that admit
//! or refuse a client's write.
//!
//! Owns: [`Replica`], shared by the public write path (`admit_write`,
//! `write_deadline`), the `Replication` service (`primary`), the standby's
//! follower (`standby`) and promotion (`promote`). Changes of role are
//! persisted in `node.json` before they take effect. Does not own: the
//! stream's messages or the WAL (`stream`, `link`, the engine), the
//! collections (`crate::catalog`).
//!
//! **The rules.** A standby refuses writes. A primary accepts a write
//! only while it belongs to a pair and, unless degraded, holds a lease
//! renewed by its standby's acks within `lease_ms` (measured from the
//! primary's own send time: `lease`). In sync mode each collection's gate
//! holds a write until the standby has it durably, except while the
//! standby catches up: it cleared its eligibility durably before its
//! Hello, so what it lacks cannot be lost by promoting it. In async mode
//! writes are refused while the standby lags past `max_lag_bytes` or
//! `max_lag_ms`.

use super::identity::NodeIdentity;
use super::lease::{Lease, PromotionWait};
use super::settings::{Mode, ReplicationSettings, Role};
use super::stream::SyncGate;
use crate::error::ServiceError;
use quarry_engine::storage::Vfs;
use quarry_engine::wal::{Epoch, Lsn};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Drift allowed between the two nodes' clock rates for a lease-based
/// promotion (the standby waits lease × (1 + this)).
pub const CLOCK_DRIFT: f64 = 0.1;

/// A bell the shipper sleeps on: rung by writes arriving at a gate and by
/// messages from the standby.
#[derive(Default)]
pub struct Doorbell {
    rung: Mutex<u64>,
    cv: Condvar,
}

impl Doorbell {
    /// Wake the sleeper.
    pub fn ring(&self) {
        *self.rung.lock().expect("lock") += 1;
        self.cv.notify_all();
    }

    /// Sleep until rung after `seen`, or `max`; returns the count now.
    pub fn wait(&self, seen: u64, max: Duration) -> u64 {
        let g = self.rung.lock().expect("lock");
        let g = self.cv.wait_timeout_while(g, max, |n| *n == seen).expect("lock").0;
        *g
    }

    /// The count now.
    pub fn count(&self) -> u64 {
        *self.rung.lock().expect("lock")
    }
}

/// One collection's lag as this node sees it.
#[derive(Clone, Debug, Default)]
pub struct Lag {
    /// Primary: the standby's acknowledged durable LSN; standby: the
    /// primary's durable LSN as last heard.
    pub peer_lsn: Lsn,
    /// Bytes sent and not yet acknowledged plus an estimate of those not
    /// yet sent (primary).
    pub bytes: u64,
    /// Since when the peer has been behind (None: caught up).
    pub behind_since: Option<Instant>,
}

/// Counters since start (metrics, `quarryctl status`).
#[derive(Default)]
pub struct Counters {
    /// Acks received (primary) or sent (standby).
    pub acks: AtomicU64,
    /// Snapshots sent (primary) / installed (standby).
    pub snapshots_sent: AtomicU64,
    /// Snapshots installed.
    pub snapshots_received: AtomicU64,
    /// Messages refused or answered `Fenced` for a stale epoch.
    pub fenced: AtomicU64,
    /// Divergent tails cut.
    pub cuts: AtomicU64,
}

/// This node in its pair.
pub struct Replica {
    /// The `[replication]` settings.
    pub settings: ReplicationSettings,
    /// The shared secret.
    pub token: String,
    /// How this node dials its peer's listener when TLS is on.
    pub tls: Option<tonic::transport::ClientTlsConfig>,
    fs: Arc<dyn Vfs>,
    data_dir: PathBuf,
    ident: Mutex<NodeIdentity>,
    role: Mutex<Role>,
    origin: Instant,
    lease: Mutex<Lease>,
    wait: Mutex<PromotionWait>,
    last_heard: Mutex<Option<Instant>>,
    gates: Mutex<BTreeMap<String, Arc<SyncGate>>>,
    /// Rung when there may be something to ship.
    pub bell: Arc<Doorbell>,
    /// Primary: a standby follows now.
    pub connected: AtomicBool,
    /// Standby: following its primary now.
    pub following: AtomicBool,
    /// The primary's current Follow session (a newer one supersedes it).
    pub session: AtomicU64,
    /// Primary: the gates gate on the standby now (it is caught up).
    pub in_sync: AtomicBool,
    /// Writes refused while a switchover drains.
    pub draining: AtomicBool,
    /// Per collection.
    pub lag: Mutex<BTreeMap<String, Lag>>,
    /// Counters.
    pub counters: Counters,
    /// Why this node cannot serve its role now ("" if it can).
    pub problem: Mutex<String>,
    /// Held by the standby's follower while it changes collections; a
    /// promotion takes it to stop the follower.
    pub follow_lock: Mutex<()>,
    /// Bumped by every change of role (the follower and shipper stop).
    pub role_gen: AtomicU64,
    /// A promotion is under way: the follower stops.
    pub promoting: AtomicBool,
    /// A demotion is reopening the collections: the follower waits.
    pub reopening: AtomicBool,
    /// Serializes taking a collection into this primary's epoch.
    pub adopt_lock: Mutex<()>,
    /// Collections (by `Live::key`) taken into this primary's epoch, with
    /// their gate on.
    adopted: Mutex<std::collections::HashSet<u64>>,
    /// Collections whose standby must be sent a snapshot at the next
    /// handshake (a segment it needs was folded away by a merge).
    pub force_snapshot: Mutex<std::collections::HashSet<String>>,
    /// Standby: per collection, snapshots installed since it last
    /// streamed a chunk (a long streak means it cannot converge).
    snapshot_streaks: Mutex<BTreeMap<String, u32>>,
}

impl Replica {
    /// This node at start: `node.json` read (or minted), its role the one
    /// it last took, else the config's (then persisted). A restarted
    /// standby counts its restart as the last time it heard its primary:
    /// it may have acknowledged just before it went down, so a lease-based
    /// promotion waits a whole lease from now.
    pub fn start(
        settings: ReplicationSettings,
        token: String,
        fs: Arc<dyn Vfs>,
        data_dir: PathBuf,
    ) -> Result<Arc<Replica>, ServiceError> {
        let tls = settings.client_tls().map_err(ServiceError::InvalidArgument)?;
        let (mut ident, minted) =
            NodeIdentity::load_or_mint(fs.as_ref(), &data_dir).map_err(|e| ServiceError::Internal(e.to_string()))?;
        let role = match ident.role.as_str() {
            "primary" => Role::Primary,
            "standby" => Role::Standby,
            _ => settings.role,
        };
        if ident.role.is_empty() || minted {
            ident.role = role_name(role).into();
            ident
                .save(fs.as_ref(), &data_dir)
                .map_err(|e| ServiceError::Internal(e.to_string()))?;
        }
        if role != settings.role {
            tracing::warn!(
                configured = role_name(settings.role),
                role = role_name(role),
                "starting in the role this node last took (node.json), not the configured one: a failover or switchover changed it"
            );
        }
        let origin = Instant::now();
        let mut wait = PromotionWait::new(settings.lease_ms, CLOCK_DRIFT);
        wait.heard(0);
        Ok(Arc::new(Replica {
            lease: Mutex::new(Lease::new(settings.lease_ms)),
            wait: Mutex::new(wait),
            settings,
            token,
            tls,
            fs,
            data_dir,
            ident: Mutex::new(ident),
            role: Mutex::new(role),
            origin,
            last_heard: Mutex::new(None),
            gates: Mutex::new(BTreeMap::new()),
            bell: Arc::new(Doorbell::default()),
            connected: AtomicBool::new(false),
            following: AtomicBool::new(false),
            session: AtomicU64::new(0),
            in_sync: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            lag: Mutex::new(BTreeMap::new()),
            counters: Counters::default(),
            problem: Mutex::new(String::new()),
            follow_lock: Mutex::new(()),
            role_gen: AtomicU64::new(0),
            promoting: AtomicBool::new(false),
            reopening: AtomicBool::new(false),
            adopt_lock: Mutex::new(()),
            adopted: Mutex::new(Default::default()),
            force_snapshot: Mutex::new(Default::default()),
            snapshot_streaks: Mutex::new(BTreeMap::new()),
        }))
    }

    /// Microseconds on this node's monotonic clock.
    pub fn now_us(&self) -> u64 {
        self.origin.elapsed().as_micros() as u64
    }

    /// The role now.
    pub fn role(&self) -> Role {
        *self.role.lock().expect("lock")
    }

    /// A copy of the identity.
    pub fn identity(&self) -> NodeIdentity {
        self.ident.lock().expect("lock").clone()
    }

    /// Change the identity durably (`node.json` written before the change
    /// counts).
    pub fn update_identity(&self, f: impl FnOnce(&mut NodeIdentity)) -> Result<NodeIdentity, ServiceError> {
        let mut g = self.ident.lock().expect("lock");
        let mut next = g.clone();
        f(&mut next);
        if next != *g {
            next.save(self.fs.as_ref(), &self.data_dir)
                .map_err(|e| ServiceError::Internal(e.to_string()))?;
            *g = next;
        }
        Ok(g.clone())
    }

    /// Take `role` (persisted first), with the epoch `epoch` if newer.
    pub fn set_role(&self, role: Role, epoch: Epoch) -> Result<(), ServiceError> {
        self.update_identity(|i| {
            i.role = role_name(role).into();
            if epoch > i.epoch() {
                i.set_epoch(epoch);
            }
            if role == Role::Primary {
                i.eligible = false;
            }
        })?;
        *self.role.lock().expect("lock") = role;
        self.problem.lock().expect("lock").clear();
        *self.lease.lock().expect("lock") = Lease::new(self.settings.lease_ms);
        self.in_sync.store(false, Ordering::SeqCst);
        self.role_gen.fetch_add(1, Ordering::SeqCst);
        self.bell.ring();
        Ok(())
    }

    /// Learn of a newer epoch (persisted) without changing role.
    pub fn learn_epoch(&self, e: Epoch) -> Result<(), ServiceError> {
        self.update_identity(|i| {
            if e > i.epoch() {
                i.set_epoch(e);
            }
        })
        .map(|_| ())
    }

    /// The commit gate of collection `name` (made on first use; gating
    /// when the standby is in sync).
    pub fn gate(&self, name: &str) -> Arc<SyncGate> {
        let mut g = self.gates.lock().expect("lock");
        g.entry(name.to_string())
            .or_insert_with(|| {
                let bell = self.bell.clone();
                Arc::new(SyncGate::with_waker(
                    0,
                    self.gating_wanted(),
                    Box::new(move || bell.ring()),
                ))
            })
            .clone()
    }

    /// Whether gates should hold writes for the standby now.
    fn gating_wanted(&self) -> bool {
        self.settings.mode == Mode::Sync
            && !self.ident.lock().expect("lock").degraded
            && self.in_sync.load(Ordering::SeqCst)
    }

    /// Re-derive every gate's mode (after in-sync, degrade or role change).
    pub fn regate(&self) {
        let on = self.gating_wanted();
        for g in self.gates.lock().expect("lock").values() {
            g.set_gating(on);
        }
    }

    /// Forget a collection's gate (dropped or replaced).
    pub fn forget_gate(&self, name: &str) {
        self.gates.lock().expect("lock").remove(name);
        self.lag.lock().expect("lock").remove(name);
    }

    /// Fence every gate: writes waiting now or later are refused; every
    /// collection must be adopted again by a later promotion.
    pub fn fence_gates(&self, e: Epoch) {
        let _a = self.adopt_lock.lock().expect("lock");
        self.adopted.lock().expect("lock").clear();
        for g in std::mem::take(&mut *self.gates.lock().expect("lock")).values() {
            g.fence(e);
        }
    }

    /// Whether collection `key` is in this primary's epoch with its gate.
    pub fn adopted(&self, key: u64) -> bool {
        self.adopted.lock().expect("lock").contains(&key)
    }

    /// Put collection `live`'s gate on it (with `adopt_lock` held).
    pub fn install_gate(&self, live: &crate::live::Live) {
        live.coll.set_gate(Some(self.gate(&live.name)));
        self.adopted.lock().expect("lock").insert(live.key);
    }

    /// The standby acknowledged something sent at `sent_at_us`.
    pub fn renew_lease(&self, sent_at_us: u64) {
        self.lease.lock().expect("lock").renew(sent_at_us);
    }

    /// Milliseconds left on the lease.
    pub fn lease_left_ms(&self) -> u64 {
        self.lease.lock().expect("lock").left_ms(self.now_us())
    }

    /// The standby heard from its primary.
    pub fn heard(&self) {
        self.wait.lock().expect("lock").heard(self.now_us());
        *self.last_heard.lock().expect("lock") = Some(Instant::now());
    }

    /// Milliseconds since the peer was last heard (None: never).
    pub fn last_heard_ms(&self) -> Option<u64> {
        self.last_heard
            .lock()
            .expect("lock")
            .map(|t| t.elapsed().as_millis() as u64)
    }

    /// How long a lease-based promotion must still wait.
    pub fn promotion_wait(&self) -> Duration {
        let at = self.wait.lock().expect("lock").writes_allowed_at_us();
        Duration::from_micros(at.saturating_sub(self.now_us()))
    }

    /// May a client write to collection `name` now? The message says why
    /// not and where to go instead.
    pub fn admit_write(&self, name: &str) -> Result<(), ServiceError> {
        let peer = self.settings.peer.as_deref().unwrap_or("its peer");
        if self.role() != Role::Primary {
            return Err(ServiceError::FailedPrecondition(format!(
                "this node is a standby (read-only); send writes to the primary (replication peer {peer}), or promote this node with quarryctl failover"
            )));
        }
        if self.draining.load(Ordering::SeqCst) {
            return Err(ServiceError::Unavailable(
                "a switchover is handing the primary role to the standby; retry at the new primary".into(),
            ));
        }
        let (degraded, paired) = {
            let id = self.ident.lock().expect("lock");
            (id.degraded, !id.pair_id.is_empty())
        };
        if degraded {
            return Ok(());
        }
        if !paired {
            return Err(ServiceError::Unavailable(format!(
                "this primary belongs to no pair yet: no standby has joined it (replication peer {peer}); writes are refused until one does, or until the operator runs quarryctl replication degrade; nothing was written"
            )));
        }
        if !self.lease.lock().expect("lock").valid(self.now_us()) {
            return Err(ServiceError::Unavailable(format!(
                "this primary holds no write lease: its standby ({peer}) has not acknowledged within lease_ms = {}; nothing was written (if the standby is gone for good, quarryctl replication degrade lets the primary acknowledge alone)",
                self.settings.lease_ms
            )));
        }
        if self.settings.mode == Mode::Async {
            if let Some(l) = self.lag.lock().expect("lock").get(name) {
                let secs = l.behind_since.map_or(0.0, |t| t.elapsed().as_secs_f64());
                if l.bytes > self.settings.max_lag_bytes || secs * 1e3 > self.settings.max_lag_ms as f64 {
                    return Err(ServiceError::Unavailable(format!(
                        "the standby lags {} bytes and {secs:.1} s on collection {name:?} (max_lag_bytes = {}, max_lag_ms = {}); nothing was written: retry with backoff",
                        l.bytes, self.settings.max_lag_bytes, self.settings.max_lag_ms
                    )));
                }
            }
        }
        Ok(())
    }

    /// Standby: a snapshot of `name` was installed; the streak of
    /// snapshots in a row (no chunk streamed between them) is returned. At
    /// [`SNAPSHOT_STREAK`] the node reports that the pair cannot converge
    /// (log, `quarryctl replication status`) instead of looping in silence.
    pub fn snapshot_installed(&self, name: &str) -> u32 {
        let n = {
            let mut s = self.snapshot_streaks.lock().expect("lock");
            let n = s.entry(name.to_string()).or_insert(0);
            *n += 1;
            *n
        };
        if n >= SNAPSHOT_STREAK {
            let why = format!(
                "collection {name:?} needed {n} {STREAK_WORDS}: the primary's log after each snapshot's checkpoint outgrew wal_retain_max_mb before this standby could stream it (writes outrun the transfer); raise wal_retain_max_mb on the primary or slow the writes"
            );
            tracing::error!("{why}");
            self.set_problem(why);
        }
        n
    }

    /// Standby: `name` streamed a chunk, so its streak ends, and the
    /// report with it once no collection is in one.
    pub fn streamed(&self, name: &str) {
        let mut s = self.snapshot_streaks.lock().expect("lock");
        if s.remove(name).is_some_and(|n| n >= SNAPSHOT_STREAK) && !s.values().any(|&n| n >= SNAPSHOT_STREAK) {
            drop(s);
            let mut p = self.problem.lock().expect("lock");
            if p.contains(STREAK_WORDS) {
                p.clear();
            }
        }
    }

    /// Some collection is in a reported snapshot streak (a new session
    /// keeps the report).
    pub fn stuck_in_snapshots(&self) -> bool {
        self.snapshot_streaks
            .lock()
            .expect("lock")
            .values()
            .any(|&n| n >= SNAPSHOT_STREAK)
    }

    /// Record why this node cannot serve its role ("" to clear).
    pub fn set_problem(&self, why: impl Into<String>) {
        let why = why.into();
        let mut g = self.problem.lock().expect("lock");
        if *g != why {
            if !why.is_empty() {
                tracing::warn!(problem = %why, "replication");
            }
            *g = why;
        }
    }
}

/// The config's and `node.json`'s name of a role.
pub fn role_name(r: Role) -> &'static str {
    match r {
        Role::None => "none",
        Role::Primary => "primary",
        Role::Standby => "standby",
    }
}

/// Snapshots of one collection in a row, with no chunk streamed between
/// them, after which a standby reports that it cannot converge.
pub const SNAPSHOT_STREAK: u32 = 3;
const STREAK_WORDS: &str = "snapshots in a row";

#[cfg(test)]
mod tests {
    use super::*;
    use quarry_engine::storage::RealFs;

    fn replica(dir: &std::path::Path, role: Role, mode: Mode) -> Arc<Replica> {
        let s = ReplicationSettings {
            role,
            mode,
            lease_ms: 200,
            max_lag_bytes: 1 << 20,
            max_lag_ms: 50,
            ..Default::default()
        };
        Replica::start(s, "t".repeat(16), Arc::new(RealFs), dir.to_path_buf()).unwrap()
    }

    fn code(r: Result<(), ServiceError>) -> String {
        match r {
            Ok(()) => "ok".into(),
            Err(e) => format!("{e:?}").split('(').next().unwrap().to_string(),
        }
    }

    #[test]
    fn a_snapshot_streak_is_reported_kept_across_sessions_and_cleared_by_streaming() {
        let d = tempfile::tempdir().unwrap();
        let r = replica(d.path(), Role::Standby, Mode::Sync);
        let problem = || r.problem.lock().unwrap().clone();
        assert_eq!((r.snapshot_installed("a"), r.snapshot_installed("a")), (1, 2));
        assert_eq!(problem(), "", "two in a row are not yet a loop");
        r.streamed("a");
        assert_eq!(r.snapshot_installed("a"), 1, "streaming ended the streak");
        r.snapshot_installed("a");
        r.snapshot_installed("b");
        assert_eq!(r.snapshot_installed("a"), 3);
        assert!(problem().contains("\"a\" needed 3 snapshots in a row"), "{}", problem());
        assert!(r.stuck_in_snapshots(), "the next session keeps the report");
        r.streamed("b");
        assert!(
            !problem().is_empty(),
            "another collection streaming does not end a's report"
        );
        r.streamed("a");
        assert_eq!(problem(), "");
        assert!(!r.stuck_in_snapshots());
        // Streaming never clears a problem of another kind.
        r.set_problem("the peer at x leads in the older epoch");
        r.streamed("a");
        assert_eq!(problem(), "the peer at x leads in the older epoch");
    }

    #[test]
    fn writes_are_admitted_only_by_a_paired_primary_with_its_lease() {
        let d = tempfile::tempdir().unwrap();
        let r = replica(d.path(), Role::Primary, Mode::Sync);
        assert_eq!(code(r.admit_write("c")), "Unavailable", "no pair yet");
        r.update_identity(|i| i.pair_id = NodeIdentity::mint_pair_id()).unwrap();
        let e = r.admit_write("c").unwrap_err().to_string();
        assert!(e.contains("no write lease"), "{e}");
        r.renew_lease(r.now_us());
        assert_eq!(code(r.admit_write("c")), "ok");
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(code(r.admit_write("c")), "Unavailable", "the lease ran out");
        r.update_identity(|i| i.degraded = true).unwrap();
        assert_eq!(code(r.admit_write("c")), "ok", "degraded: alone");
        r.draining.store(true, Ordering::SeqCst);
        assert_eq!(code(r.admit_write("c")), "Unavailable", "a switchover drains");
        r.draining.store(false, Ordering::SeqCst);
        r.set_role(Role::Standby, Epoch { term: 9, node: 3 }).unwrap();
        assert_eq!(code(r.admit_write("c")), "FailedPrecondition", "a standby");
        // The role and epoch are durable: a restart comes back as standby
        // whatever the config says.
        drop(r);
        let again = replica(d.path(), Role::Primary, Mode::Sync);
        assert_eq!(again.role(), Role::Standby);
        assert_eq!(again.identity().epoch(), Epoch { term: 9, node: 3 });
    }

    #[test]
    fn a_restarted_standby_waits_a_whole_lease_before_a_lease_based_promotion() {
        // It may have acknowledged just before it went down, so the old
        // primary may hold a lease from that ack: the wait counts from the
        // restart, as if it had heard the primary then.
        let d = tempfile::tempdir().unwrap();
        let r = replica(d.path(), Role::Standby, Mode::Sync);
        let w = r.promotion_wait();
        assert!(
            w > Duration::from_millis(100) && w <= Duration::from_millis(221),
            "lease 200 ms x 1.1 from start: {w:?}"
        );
        std::thread::sleep(Duration::from_millis(230));
        assert_eq!(r.promotion_wait(), Duration::ZERO);
        r.heard();
        assert!(
            r.promotion_wait() > Duration::from_millis(100),
            "each message restarts it"
        );
    }

    #[test]
    fn an_async_primary_refuses_writes_past_the_lag_bounds() {
        let d = tempfile::tempdir().unwrap();
        let r = replica(d.path(), Role::Primary, Mode::Async);
        r.update_identity(|i| i.pair_id = NodeIdentity::mint_pair_id()).unwrap();
        r.renew_lease(r.now_us());
        assert_eq!(code(r.admit_write("c")), "ok", "no lag known");
        r.lag.lock().unwrap().insert(
            "c".into(),
            Lag {
                peer_lsn: 5,
                bytes: 2 << 20,
                behind_since: None,
            },
        );
        let e = r.admit_write("c").unwrap_err().to_string();
        assert!(e.contains("max_lag_bytes"), "{e}");
        assert_eq!(code(r.admit_write("other")), "ok", "per collection");
        r.lag.lock().unwrap().insert(
            "c".into(),
            Lag {
                peer_lsn: 5,
                bytes: 10,
                behind_since: Some(Instant::now() - Duration::from_millis(100)),
            },
        );
        let e = r.admit_write("c").unwrap_err().to_string();
        assert!(e.contains("max_lag_ms"), "{e}");
    }

    #[test]
    fn gates_gate_only_when_in_sync_in_sync_mode_and_not_degraded() {
        use quarry_engine::collection::CommitGate;
        let d = tempfile::tempdir().unwrap();
        let r = replica(d.path(), Role::Primary, Mode::Sync);
        let g = r.gate("c");
        assert!(!g.gating(), "a session starts catching up");
        assert!(g.wait(10, Some(Instant::now())).is_ok());
        r.in_sync.store(true, Ordering::SeqCst);
        r.regate();
        assert!(g.gating());
        assert!(g.wait(10, Some(Instant::now())).is_err(), "waits for the standby");
        r.update_identity(|i| i.degraded = true).unwrap();
        r.regate();
        assert!(!g.gating());
        r.fence_gates(Epoch { term: 5, node: 1 });
        let e = g.wait(10, None).unwrap_err().to_string();
        assert!(e.contains("fenced"), "{e}");
    }
}
