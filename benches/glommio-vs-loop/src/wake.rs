//! Cross-thread wake-up round trip: a requester thread (standing in for
//! the service's tokio network side) hands a request to an idle, parked
//! shard thread on the other core and spins until the shard's reply
//! appears. Measured per request: time from just before the send to the
//! moment the requester sees the reply (p50/p99 over many iterations, with
//! a random busy pause between them so the shard really goes back to
//! sleep).
//!
//! Only the shard side differs between variants; the reply is always an
//! `AtomicU64` the shard stores and the requester spins on:
//!
//! * `quarry-parker`: a plain std thread; request = `flume` send + Quarry's
//!   `Waker::wake()` (eventfd write); the shard drains the channel with
//!   `try_recv` and sleeps in `Parker::park()` (io_uring READ of the eventfd).
//! * `glommio-flume`: the shard is a glommio executor task awaiting
//!   `flume::Receiver::recv_async()`; the requester is a plain std thread
//!   doing `flume::Sender::send`. The task's waker is glommio's, so the
//!   send goes through glommio's foreign-waker path (the waker is queued to
//!   the executor and its sleep eventfd is written if it is parked). flume
//!   is the channel glommio itself depends on.
//! * `glommio-shared-channel`: glommio's documented cross-executor channel
//!   (`channels::shared_channel`), which needs both ends inside glommio
//!   executors, so the requester is a second glommio executor pinned to
//!   the other core (its task busy-spins, as the std requester does).

use crate::reads::builder;
use crate::stats::{ns, spin_for, Rng, Summary};
use quarry_engine::io::Parker;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const STOP: u64 = u64::MAX;

/// Which shard implementation is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WakeVariant {
    QuarryParker,
    GlommioFlume,
    GlommioSharedChannel,
}

impl WakeVariant {
    pub fn label(self) -> &'static str {
        match self {
            WakeVariant::QuarryParker => "quarry-parker",
            WakeVariant::GlommioFlume => "glommio-flume",
            WakeVariant::GlommioSharedChannel => "glommio-shared-channel",
        }
    }
    pub fn parse(s: &str) -> Option<WakeVariant> {
        [
            WakeVariant::QuarryParker,
            WakeVariant::GlommioFlume,
            WakeVariant::GlommioSharedChannel,
        ]
        .into_iter()
        .find(|v| v.label() == s)
    }
}

/// Settings for one wake-up measurement.
#[derive(Clone, Debug)]
pub struct WakeCfg {
    /// Core of the shard.
    pub core: usize,
    /// Core of the requester.
    pub other_core: usize,
    pub iters: usize,
    pub warmup_iters: usize,
    pub pause_min_us: u64,
    pub pause_max_us: u64,
    pub io_memory: Option<usize>,
    pub seed: u64,
}

/// Result of one wake-up measurement.
#[derive(Clone, Debug)]
pub struct WakeStats {
    pub variant: WakeVariant,
    pub rtt: Summary,
    pub note: String,
}

/// Send request `i` and spin until the reply shows `i` (error after 2 s).
fn request_loop(cfg: &WakeCfg, mut send: impl FnMut(u64), reply: &AtomicU64) -> Result<Vec<u64>, String> {
    let mut rng = Rng::new(cfg.seed);
    let mut lat = Vec::with_capacity(cfg.iters);
    let total = (cfg.warmup_iters + cfg.iters) as u64;
    for i in 1..=total {
        spin_for(Duration::from_micros(rng.between(cfg.pause_min_us, cfg.pause_max_us)));
        let t0 = Instant::now();
        send(i);
        let mut spins = 0u32;
        while reply.load(Ordering::Acquire) != i {
            std::hint::spin_loop();
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(4096) && t0.elapsed() > Duration::from_secs(2) {
                return Err(format!("no reply to request {i} within 2 s"));
            }
        }
        let d = t0.elapsed();
        if i > cfg.warmup_iters as u64 {
            lat.push(ns(d));
        }
    }
    Ok(lat)
}

fn pin(core: usize) -> Result<(), String> {
    if quarry_engine::runtime::pin_to_core(core) {
        Ok(())
    } else {
        Err(format!("cannot pin to core {core}"))
    }
}

/// Run one measurement.
pub fn run(variant: WakeVariant, cfg: &WakeCfg) -> Result<WakeStats, String> {
    match variant {
        WakeVariant::QuarryParker => quarry(cfg),
        WakeVariant::GlommioFlume => glommio_flume(cfg),
        WakeVariant::GlommioSharedChannel => glommio_shared(cfg),
    }
}

fn quarry(cfg: &WakeCfg) -> Result<WakeStats, String> {
    let (tx, rx) = flume::unbounded::<u64>();
    let reply = Arc::new(AtomicU64::new(0));
    let parks = Arc::new(AtomicU64::new(0));
    let (wtx, wrx) = std::sync::mpsc::channel();
    let shard = {
        let (reply, parks, core) = (reply.clone(), parks.clone(), cfg.core);
        std::thread::Builder::new()
            .name("quarry-shard".into())
            .spawn(move || -> Result<(), String> {
                pin(core)?;
                let mut p = Parker::new().map_err(|e| format!("Parker::new: {e}"))?;
                let _ = wtx.send((p.waker(), p.uses_uring()));
                loop {
                    let mut got = false;
                    loop {
                        match rx.try_recv() {
                            Ok(STOP) | Err(flume::TryRecvError::Disconnected) => return Ok(()),
                            Ok(x) => {
                                reply.store(x, Ordering::Release);
                                got = true;
                            }
                            Err(flume::TryRecvError::Empty) => break,
                        }
                    }
                    if !got {
                        parks.fetch_add(1, Ordering::Relaxed);
                        p.park().map_err(|e| format!("park: {e}"))?;
                    }
                }
            })
            .map_err(|e| e.to_string())?
    };
    let Ok((waker, uring)) = wrx.recv() else {
        return Err(shard
            .join()
            .map_err(|_| "shard panicked".to_string())?
            .err()
            .unwrap_or_else(|| "shard exited early".into()));
    };
    let c = cfg.clone();
    let rep = reply.clone();
    let req = std::thread::Builder::new()
        .name("requester".into())
        .spawn(move || -> Result<Vec<u64>, String> {
            pin(c.other_core)?;
            let lat = request_loop(
                &c,
                |i| {
                    let _ = tx.send(i);
                    waker.wake();
                },
                &rep,
            );
            let _ = tx.send(STOP);
            waker.wake();
            lat
        })
        .map_err(|e| e.to_string())?;
    let lat = req.join().map_err(|_| "requester panicked".to_string())?;
    shard.join().map_err(|_| "shard panicked".to_string())??;
    let mut lat = lat?;
    let total = (cfg.warmup_iters + cfg.iters) as f64;
    Ok(WakeStats {
        variant: WakeVariant::QuarryParker,
        rtt: Summary::of(&mut lat),
        note: format!(
            "std shard thread, flume try_recv + Parker::park ({}); {:.2} parks per request",
            if uring {
                "io_uring eventfd READ"
            } else {
                "read(2) fallback"
            },
            parks.load(Ordering::Relaxed) as f64 / total
        ),
    })
}

fn glommio_flume(cfg: &WakeCfg) -> Result<WakeStats, String> {
    let (tx, rx) = flume::unbounded::<u64>();
    let reply = Arc::new(AtomicU64::new(0));
    let rep = reply.clone();
    let shard = builder(cfg.core, cfg.io_memory, None)
        .name("glommio-shard")
        .spawn(move || async move {
            while let Ok(x) = rx.recv_async().await {
                if x == STOP {
                    break;
                }
                rep.store(x, Ordering::Release);
            }
        })
        .map_err(|e| format!("glommio executor did not start: {e}"))?;
    let c = cfg.clone();
    let req = std::thread::Builder::new()
        .name("requester".into())
        .spawn(move || -> Result<Vec<u64>, String> {
            pin(c.other_core)?;
            let lat = request_loop(
                &c,
                |i| {
                    let _ = tx.send(i);
                },
                &reply,
            );
            let _ = tx.send(STOP);
            lat
        })
        .map_err(|e| e.to_string())?;
    let lat = req.join().map_err(|_| "requester panicked".to_string())?;
    shard.join().map_err(|e| format!("glommio shard failed: {e}"))?;
    let mut lat = lat?;
    Ok(WakeStats {
        variant: WakeVariant::GlommioFlume,
        rtt: Summary::of(&mut lat),
        note: "glommio executor task awaiting flume recv_async; std requester thread (foreign waker)".into(),
    })
}

fn glommio_shared(cfg: &WakeCfg) -> Result<WakeStats, String> {
    let (s, r) = glommio::channels::shared_channel::new_bounded::<u64>(64);
    let reply = Arc::new(AtomicU64::new(0));
    let rep = reply.clone();
    let shard = builder(cfg.core, cfg.io_memory, None)
        .name("glommio-shard")
        .spawn(move || async move {
            let r = r.connect().await;
            while let Some(x) = r.recv().await {
                if x == STOP {
                    break;
                }
                rep.store(x, Ordering::Release);
            }
        })
        .map_err(|e| format!("glommio executor did not start: {e}"))?;
    let c = cfg.clone();
    let req = builder(cfg.other_core, cfg.io_memory, None)
        .name("glommio-requester")
        .spawn(move || async move {
            let s = s.connect().await;
            let lat = request_loop(
                &c,
                |i| {
                    let _ = s.try_send(i);
                },
                &reply,
            );
            let _ = s.try_send(STOP);
            lat
        })
        .map_err(|e| format!("glommio executor did not start: {e}"))?;
    let lat = req.join().map_err(|e| format!("glommio requester failed: {e}"))?;
    shard.join().map_err(|e| format!("glommio shard failed: {e}"))?;
    let mut lat = lat?;
    Ok(WakeStats {
        variant: WakeVariant::GlommioSharedChannel,
        rtt: Summary::of(&mut lat),
        note: "glommio shared_channel; requester is a second glommio executor on the other core".into(),
    })
}
