//! A planned switchover, run on the primary: stop taking writes, wait
//! until the standby holds every one, promote it, follow it.
//!
//! Owns: [`run`]. No acknowledged write is lost (the standby is promoted
//! only once it acknowledged the primary's last LSN of every collection),
//! and writes are refused (UNAVAILABLE, retry at the new primary) for at
//! most the drain plus the promotion; the reply says how long.

use super::node::Replica;
use super::promote::demote;
use super::service::connect_peer;
use super::settings::{Mode, Role};
use super::wire;
use crate::catalog::Catalog;
use crate::error::ServiceError;
use quarry_proto::replication::v1 as pb;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Hand the primary role to the standby within `timeout` (the drain).
pub async fn run(
    replica: &Arc<Replica>,
    catalog: &Arc<Catalog>,
    timeout: Duration,
) -> Result<pb::SwitchoverReply, ServiceError> {
    if replica.role() != Role::Primary {
        return Err(ServiceError::FailedPrecondition(
            "switchover is run on the primary; this node is a standby".into(),
        ));
    }
    if !replica.connected.load(Ordering::SeqCst) {
        return Err(ServiceError::FailedPrecondition(
            "no standby follows this primary now; a switchover needs one (quarryctl status)".into(),
        ));
    }
    if replica.settings.mode == Mode::Sync && !replica.in_sync.load(Ordering::SeqCst) {
        return Err(ServiceError::FailedPrecondition(
            "the standby is still catching up; retry once quarryctl status shows it in sync".into(),
        ));
    }
    let t0 = Instant::now();
    replica.draining.store(true, Ordering::SeqCst);
    let r = drain_and_promote(replica, catalog, timeout, t0).await;
    replica.draining.store(false, Ordering::SeqCst);
    r
}

async fn drain_and_promote(
    replica: &Arc<Replica>,
    catalog: &Arc<Catalog>,
    timeout: Duration,
    t0: Instant,
) -> Result<pb::SwitchoverReply, ServiceError> {
    // Writes already past the door finish; then every collection's last
    // LSN must be acknowledged, three looks in a row.
    let mut quiet = 0;
    while quiet < 3 {
        if t0.elapsed() > timeout {
            return Err(ServiceError::Unavailable(format!(
                "the standby did not acknowledge every write within {timeout:?}; the switchover was abandoned and this node is still the primary"
            )));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        let lag = replica.lag.lock().expect("lock").clone();
        let done = catalog.list().iter().all(|e| {
            let last = e.live.coll.wal().last_lsn();
            last == 0
                || (lag.get(&e.live.name).is_some_and(|l| l.peer_lsn >= last) && e.live.coll.applied_lsn() >= last)
        });
        quiet = if done { quiet + 1 } else { 0 };
    }
    let peer = replica.settings.peer.clone().unwrap_or_default();
    let mut client = connect_peer(replica, Duration::from_secs(2))
        .await
        .map_err(ServiceError::Unavailable)?;
    // It holds every write (checked above), so no loss is accepted here.
    let reply = client
        .promote(pb::PromoteRequest {
            primary_down: true,
            accept_loss: true,
            degraded: false,
        })
        .await
        .map_err(|s| ServiceError::Unavailable(format!("the standby refused the promotion: {}", s.message())))?
        .into_inner();
    let epoch = wire::epoch_from(reply.epoch, "promote.epoch").map_err(|e| ServiceError::Internal(e.to_string()))?;
    demote(replica, catalog, epoch);
    let pause = t0.elapsed();
    let summary = format!(
        "switched over: the standby {peer} is primary in epoch {epoch}; this node follows it; writes were refused for {} ms",
        pause.as_millis()
    );
    tracing::warn!("{summary}");
    Ok(pb::SwitchoverReply {
        epoch: Some(wire::epoch_to(epoch)),
        pause_ms: pause.as_millis() as u64,
        summary,
    })
}
