//! systemd integration: the notify protocol (READY=1, STOPPING=1, STATUS=)
//! and a watchdog that pings only while every shard answers.
//!
//! Owns: what quarryd tells systemd and when. Outside systemd (no
//! `NOTIFY_SOCKET`) every call is a no-op.
//!
//! The watchdog runs when systemd sets `WATCHDOG_USEC` (from
//! `WatchdogSec=`). Every half period it sends a ping through each shard's
//! queue; only if all of them answer within a quarter period does it send
//! `WATCHDOG=1`. A wedged shard therefore stops the pings, and systemd
//! restarts the service.

use crate::shard::Shards;
use sd_notify::NotifyState;
use std::sync::Arc;
use std::time::Duration;

/// READY=1 with a status line.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// STOPPING=1.
pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("draining")]);
}

fn send(states: &[NotifyState]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "systemd notification failed");
    }
}

/// The watchdog period systemd asked for, if any.
pub fn watchdog_period() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse::<u32>().ok() != Some(std::process::id()) {
            return None;
        }
    }
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// Ping systemd every `period / 2` while every shard answers.
pub async fn watchdog(shards: Arc<Shards>, period: Duration, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(period / 2);
    let mut healthy = true;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        if shards.ping_all(period / 4).await {
            if !healthy {
                tracing::info!("every shard answers again; watchdog pings resume");
                healthy = true;
            }
            send(&[NotifyState::Watchdog]);
        } else if healthy {
            tracing::error!("a shard did not answer its ping; withholding the watchdog ping");
            healthy = false;
        }
    }
}
