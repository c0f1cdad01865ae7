//! Changes of role: a standby promoted (`quarryctl failover`), a primary
//! that learns it was failed over (demoted, to follow), and a collection
//! a primary takes into its epoch.
//!
//! Owns: [`promote`], [`demote`], [`adopt`]. The order of each is the
//! issue's and Patroni's: stop following, persist the new epoch and role
//! (`node.json`, atomically), write an epoch record in every WAL, then
//! accept writes; a demoted node fences its gates at once (waiting writes
//! get an outcome-unknown error) and reopens its collections holding back
//! what its standby never acknowledged, for the handshake to cut. Does
//! not own: eligibility (the primary grants it: `primary`), the lease
//! (`node`, `lease`).

use super::node::Replica;
use super::settings::Role;
use crate::catalog::Catalog;
use crate::error::ServiceError;
use crate::live::Live;
use quarry_engine::collection::Collection;
use quarry_engine::wal::Epoch;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a promotion did.
#[derive(Debug)]
pub struct Promoted {
    /// The new epoch.
    pub epoch: Epoch,
    /// Time spent waiting for the old primary's lease.
    pub lease_wait: Duration,
    /// One line for the operator.
    pub summary: String,
}

/// Promote this standby. `primary_down`: the operator asserts the old
/// primary is down (no lease wait); `accept_loss`: promote although this
/// node is not eligible; `peer_epoch`: the old primary's epoch, if it
/// answered.
pub fn promote(
    replica: &Replica,
    catalog: &Catalog,
    primary_down: bool,
    accept_loss: bool,
    peer_epoch: Option<Epoch>,
) -> Result<Promoted, ServiceError> {
    let id = replica.identity();
    if replica.role() == Role::Primary {
        return Err(ServiceError::FailedPrecondition(format!(
            "this node is already the primary (epoch {})",
            id.epoch()
        )));
    }
    if id.pair_id.is_empty() {
        return Err(ServiceError::FailedPrecondition(
            "this node belongs to no pair (it never joined a primary, or its data directory was wiped): it holds nothing to promote".into(),
        ));
    }
    if !id.eligible && !accept_loss {
        return Err(ServiceError::FailedPrecondition(
            "this standby is not eligible: it has not confirmed holding every write the primary acknowledged (catching up, never in sync, or the primary was degraded); --accept-loss promotes it anyway and loses those writes".into(),
        ));
    }
    replica.promoting.store(true, Ordering::SeqCst);
    let _unpromote = Unset(&replica.promoting);
    // The follower stops at its next message; its changes are whole.
    let _follow = replica.follow_lock.lock().expect("lock");
    // A concurrent failover command may have promoted it meanwhile.
    if replica.role() == Role::Primary {
        return Err(ServiceError::FailedPrecondition(format!(
            "this node was just promoted by another command (epoch {})",
            replica.identity().epoch()
        )));
    }
    let t = Instant::now();
    if !primary_down {
        let wait = replica.promotion_wait();
        if !wait.is_zero() {
            tracing::info!(
                wait_ms = wait.as_millis() as u64,
                "waiting for the old primary's lease to run out before taking writes"
            );
            std::thread::sleep(wait);
        }
    }
    let lease_wait = t.elapsed();
    let entries = catalog.list();
    let mut base = id.epoch().max(peer_epoch.unwrap_or(Epoch::ZERO));
    for e in &entries {
        base = base.max(e.live.coll.wal().epochs().current());
    }
    let epoch = base.next(id.node());
    replica.set_role(Role::Primary, epoch)?;
    let mut failed = Vec::new();
    for e in &entries {
        if let Err(err) = adopt(replica, &e.live) {
            failed.push(format!("{}: {err}", e.live.name));
        }
    }
    let summary = format!(
        "promoted to primary in epoch {epoch} ({} collections{}){}",
        entries.len(),
        if primary_down {
            ", the operator asserted the old primary is down".to_string()
        } else {
            format!(", after {} ms of lease wait", lease_wait.as_millis())
        },
        if failed.is_empty() {
            String::new()
        } else {
            format!(
                "; these refuse writes until the next write retries their epoch record: {}",
                failed.join("; ")
            )
        }
    );
    tracing::warn!(%epoch, accept_loss, primary_down, "{summary}");
    Ok(Promoted {
        epoch,
        lease_wait,
        summary,
    })
}

struct Unset<'a>(&'a std::sync::atomic::AtomicBool);

impl Drop for Unset<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// On a primary: bring collection `live` into this node's epoch (its log
/// applied whole, then an epoch record) and put its commit gate on it.
/// Done once per collection and role (promotion, or the first write to a
/// collection created since).
pub fn adopt(replica: &Replica, live: &Live) -> Result<(), ServiceError> {
    let _g = replica.adopt_lock.lock().expect("lock");
    if replica.role() != Role::Primary {
        return Err(ServiceError::FailedPrecondition(
            "this node is no longer the primary".into(),
        ));
    }
    if replica.adopted(live.key) {
        return Ok(());
    }
    let epoch = replica.identity().epoch();
    let coll = &live.coll;
    let cur = coll.wal().epochs().current();
    if cur > epoch {
        return Err(ServiceError::FailedPrecondition(format!(
            "collection {:?} holds epoch {cur}, newer than this node's {epoch}: another node was promoted; this one will follow",
            live.name
        )));
    }
    if cur < epoch {
        coll.apply_through(coll.wal().last_lsn())
            .map_err(crate::live::live_error)?;
        coll.begin_epoch(epoch).map_err(crate::live::live_error)?;
    }
    replica.install_gate(live);
    Ok(())
}

/// This primary learned of the newer epoch `e` (its standby's, or a
/// promoted peer's): fence every gate now, become a standby (persisted),
/// and reopen every collection on another thread, holding back what the
/// old standby never acknowledged, before the follower may use them.
pub fn demote(replica: &Arc<Replica>, catalog: &Arc<Catalog>, e: Epoch) {
    if replica.role() != Role::Primary {
        let _ = replica.learn_epoch(e);
        return;
    }
    tracing::warn!(epoch = %e, "another node is primary in a newer epoch: this node stops taking writes and follows it");
    replica.reopening.store(true, Ordering::SeqCst);
    replica.fence_gates(e);
    if let Err(err) = replica.set_role(Role::Standby, e) {
        // The role is changed in memory regardless: writes stay refused.
        tracing::error!(error = %err, "cannot record the demotion in node.json");
    }
    let (r, c) = (replica.clone(), catalog.clone());
    let spawned = std::thread::Builder::new().name("demote".into()).spawn(move || {
        let _follow = r.follow_lock.lock().expect("lock");
        reopen_all(&r, &c);
        r.reopening.store(false, Ordering::SeqCst);
    });
    if let Err(err) = spawned {
        tracing::error!(error = %err, "cannot start the demotion thread; restart quarryd to follow");
    }
}

/// Close and reopen every collection (searches in flight finish first).
pub fn reopen_all(replica: &Replica, catalog: &Catalog) {
    for entry in catalog.list() {
        let name = entry.live.name.clone();
        drop(entry);
        let r = catalog.take(&name).and_then(|(meta, coll)| {
            drop(coll);
            let (c, _) = Collection::open(catalog.vfs(), &catalog.live_dir(&name), catalog.options_of(&meta))
                .map_err(crate::live::live_error)?;
            catalog.put(meta, c);
            Ok(())
        });
        if let Err(e) = r {
            replica.set_problem(format!(
                "collection {name:?} could not be reopened after the demotion: {e}; restart quarryd"
            ));
        }
    }
}
