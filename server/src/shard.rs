//! Search shards: one pinned thread per core, each with its own rings and
//! many queries in flight.
//!
//! Owns: the bounded queue between the network side (tokio) and each shard,
//! the shard loop, deadline checks, and per-shard counters. Does not own:
//! the search itself (`quarry_engine::search::Searcher`) or request
//! validation (`service`).
//!
//! The network side pushes a [`Job`] into a shard's bounded queue
//! ([`crossbeam_queue::ArrayQueue`]) and wakes the shard through its
//! eventfd ([`quarry_engine::io::Waker`]). If every queue is full the
//! request is refused at once with RESOURCE_EXHAUSTED: nothing queues
//! without bound. The shard admits jobs while it has fewer than
//! `inflight_per_shard` queries running, drops a job whose deadline has
//! passed without computing it, and drives all its searchers with
//! non-blocking polls, and keeps polling for `shard_poll_us` after its last
//! progress (waking a halted vCPU costs tens of microseconds on a VM). After
//! that, when exactly one ring has reads in flight it waits
//! on that ring (one `io_uring_enter` per completion, the in-process cost);
//! new jobs are admitted at the next completion. When idle, or when several
//! rings are busy, it parks in `io_uring_enter` on its parking ring
//! ([`quarry_engine::io::Parker`]); completions on its data rings and new
//! jobs both signal the same eventfd, so it wakes for either.
//!
//! With `net_threads = 0` shard 0 also hosts the network side: it turns a
//! current-thread tokio runtime (the gRPC server) once per loop iteration,
//! and instead of the two waits above it sleeps in that runtime's epoll,
//! where its eventfd is registered ([`crate::wake`]), so a connection with
//! data wakes it too.

use crate::error::ServiceError;
use crate::live::{live_error, Live};
use crate::metrics::Metrics;
use crate::wake::WakeFd;
use crossbeam_queue::ArrayQueue;
use quarry_engine::collection::{CollectionResult, CollectionSearcher};
use quarry_engine::io::{Parker, Waker};
use quarry_engine::search::{Neighbor, QueryStats, SearchParams};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// What a search returns.
#[derive(Debug)]
pub struct SearchOutcome {
    /// Nearest first.
    pub neighbors: Vec<Neighbor>,
    /// Engine statistics.
    pub stats: QueryStats,
    /// Time spent waiting in the shard's queue, microseconds.
    pub queue_micros: f64,
}

/// One search for a shard.
pub struct SearchJob {
    /// The collection to search (kept alive by this reference): its
    /// disk segments and fresh index, driven by the shard's
    /// `CollectionSearcher` for it, interleaved with every other query.
    pub target: Arc<Live>,
    /// The query (validated: right length, finite).
    pub query: Vec<f32>,
    /// Parameters (validated).
    pub params: SearchParams,
    /// Drop the job, uncomputed, if it starts after this.
    pub deadline: Option<Instant>,
    /// When it was queued.
    pub enqueued: Instant,
    /// Where the answer goes.
    pub reply: oneshot::Sender<Result<SearchOutcome, ServiceError>>,
}

/// Work for a shard.
pub enum Job {
    /// A search.
    Search(Box<SearchJob>),
    /// Liveness check (the watchdog): answered when the shard loop runs.
    Ping(oneshot::Sender<()>),
}

/// Counters one shard keeps (read by Stats and /metrics).
#[derive(Debug, Default)]
pub struct ShardCounters {
    /// Queries answered (ok or error).
    pub queries: AtomicU64,
    /// Queries dropped because their deadline had passed.
    pub expired: AtomicU64,
    /// Queries refused because the queue was full.
    pub rejected: AtomicU64,
    /// Queries being worked on now.
    pub in_flight: AtomicUsize,
}

struct Shard {
    queue: Arc<ArrayQueue<Job>>,
    waker: Waker,
    counters: Arc<ShardCounters>,
    thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// Every shard.
pub struct Shards {
    shards: Vec<Shard>,
    next: AtomicUsize,
    stop: Arc<AtomicBool>,
}

impl Shards {
    /// Start `n` shards, shard i pinned to core i mod cores. With
    /// `host_net`, shard 0 also runs a single-threaded tokio runtime for
    /// the network side, turned from its loop; its handle is returned so
    /// the caller can spawn the gRPC server onto it.
    pub fn start(
        n: usize,
        queue_depth: usize,
        inflight: usize,
        poll_window: Duration,
        metrics: Arc<Metrics>,
        host_net: bool,
    ) -> std::io::Result<(Shards, Option<tokio::runtime::Handle>)> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut shards = Vec::with_capacity(n);
        let mut net = None;
        for i in 0..n {
            let queue = Arc::new(ArrayQueue::new(queue_depth));
            let parker = Parker::new()?;
            let waker = parker.waker();
            let counters = Arc::new(ShardCounters::default());
            let (q, c, s, m) = (queue.clone(), counters.clone(), stop.clone(), metrics.clone());
            let rt = if host_net && i == 0 {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .thread_name("net-blocking")
                    // Blocking-pool threads (builds, WAL writes) would
                    // inherit shard 0's pin to one core.
                    .on_thread_start(|| {
                        quarry_engine::runtime::unpin();
                    })
                    .build()?;
                net = Some(rt.handle().clone());
                Some(rt)
            } else {
                None
            };
            let thread = std::thread::Builder::new()
                .name(format!("shard-{i}"))
                .spawn(move || shard_main(i, q, parker, c, s, inflight, poll_window, m, rt))?;
            shards.push(Shard {
                queue,
                waker,
                counters,
                thread: std::sync::Mutex::new(Some(thread)),
            });
        }
        Ok((
            Shards {
                shards,
                next: AtomicUsize::new(0),
                stop,
            },
            net,
        ))
    }

    /// Number of shards.
    pub fn len(&self) -> usize {
        self.shards.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.shards.is_empty()
    }

    /// Queue a search on the next shard with room (round robin). Every
    /// queue full: RESOURCE_EXHAUSTED, and the job is handed back dropped.
    pub fn submit(&self, job: SearchJob) -> Result<(), ServiceError> {
        let n = self.shards.len();
        // Round robin, not least-loaded: with polling shards, spreading even
        // light traffic keeps every shard's core awake (see
        // `shard_poll_us`); sending it all to one idle-looking shard let
        // the other vCPU halt, and the network threads woke there cold
        // (measured: +100 us per request).
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut job = Job::Search(Box::new(job));
        for k in 0..n {
            let sh = &self.shards[(start + k) % n];
            match sh.queue.push(job) {
                Ok(()) => {
                    sh.waker.wake();
                    return Ok(());
                }
                Err(back) => job = back,
            }
        }
        self.shards[start % n].counters.rejected.fetch_add(1, Ordering::Relaxed);
        Err(ServiceError::ResourceExhausted(format!(
            "every shard queue is full ({} shards x {} queued requests); retry with backoff",
            n,
            self.shards[0].queue.capacity()
        )))
    }

    /// True if every shard answers a ping within `timeout` (the watchdog's
    /// test of liveness).
    pub async fn ping_all(&self, timeout: Duration) -> bool {
        let mut waits = Vec::new();
        for sh in &self.shards {
            let (tx, rx) = oneshot::channel();
            // A full queue means the shard is busy, not dead: wait for it
            // with the same timeout by retrying until there is room.
            let deadline = Instant::now() + timeout;
            let mut job = Job::Ping(tx);
            loop {
                match sh.queue.push(job) {
                    Ok(()) => break,
                    Err(back) if Instant::now() < deadline => {
                        job = back;
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    Err(_) => return false,
                }
            }
            sh.waker.wake();
            waits.push(rx);
        }
        for rx in waits {
            if tokio::time::timeout(timeout, rx).await.map(|r| r.is_ok()) != Ok(true) {
                return false;
            }
        }
        true
    }

    /// Wake every shard to let go of collections taken out of service
    /// (without waiting for an answer; a full queue is skipped: that
    /// shard is turning anyway).
    pub fn nudge(&self) {
        for sh in &self.shards {
            let (tx, _rx) = oneshot::channel();
            if sh.queue.push(Job::Ping(tx)).is_ok() {
                sh.waker.wake();
            }
        }
    }

    /// Per-shard (counters, queue length).
    pub fn counters(&self) -> Vec<(Arc<ShardCounters>, usize)> {
        self.shards
            .iter()
            .map(|s| (s.counters.clone(), s.queue.len()))
            .collect()
    }

    /// Stop every shard after it has finished the jobs it holds, and join.
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::SeqCst);
        for sh in &self.shards {
            sh.waker.wake();
        }
        for sh in &self.shards {
            if let Some(t) = sh.thread.lock().expect("lock").take() {
                let _ = t.join();
            }
        }
    }
}

impl Drop for Shards {
    fn drop(&mut self) {
        self.shutdown();
    }
}

struct Pending {
    reply: oneshot::Sender<Result<SearchOutcome, ServiceError>>,
    queue_micros: f64,
    stats: Arc<crate::metrics::CollectionStats>,
}

/// A collection's searcher on this shard.
struct LiveLane {
    live: Arc<Live>,
    searcher: CollectionSearcher,
}

/// Hand one finished collection query to its caller.
fn reply_live(
    token: u64,
    r: CollectionResult,
    pending: &mut HashMap<u64, Pending>,
    counters: &ShardCounters,
    metrics: &Metrics,
) {
    let p = pending.remove(&token).expect("every token is pending");
    counters.queries.fetch_add(1, Ordering::Relaxed);
    let out = r
        .map(|(neighbors, stats)| {
            metrics.record_query(&stats, p.queue_micros, &p.stats);
            SearchOutcome {
                neighbors,
                stats,
                queue_micros: p.queue_micros,
            }
        })
        .map_err(live_error);
    let _ = p.reply.send(out);
}

/// Poll one collection searcher; returns how many queries finished.
fn drive_live(
    lane: &mut LiveLane,
    wait: bool,
    pending: &mut HashMap<u64, Pending>,
    counters: &ShardCounters,
    metrics: &Metrics,
) -> usize {
    let mut n = 0;
    let LiveLane { live, searcher } = lane;
    searcher.poll(&live.coll, wait, &mut |token, r| {
        n += 1;
        reply_live(token, r, pending, counters, metrics);
    });
    n
}

#[allow(clippy::too_many_arguments)]
fn shard_main(
    id: usize,
    queue: Arc<ArrayQueue<Job>>,
    mut parker: Parker,
    counters: Arc<ShardCounters>,
    stop: Arc<AtomicBool>,
    inflight_max: usize,
    poll_window: Duration,
    metrics: Arc<Metrics>,
    net: Option<tokio::runtime::Runtime>,
) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    quarry_engine::runtime::pin_to_core(id % cores);
    tracing::debug!(
        shard = id,
        parks_in_uring = parker.uses_uring(),
        hosts_network = net.is_some(),
        "shard started"
    );
    // The network side's runtime, when this shard hosts it: its eventfd is
    // registered with the runtime's epoll so that one sleep covers
    // requests from the network, jobs from other shards' handlers and read
    // completions alike.
    let net = match net {
        Some(rt) => {
            let fd = {
                let _in = rt.enter();
                WakeFd::register(&parker)
            };
            match fd {
                Ok(fd) => Some((rt, fd)),
                Err(e) => {
                    tracing::error!(shard = id, error = %e, "cannot register the shard's eventfd with the network runtime; the network side stops");
                    None
                }
            }
        }
        None => None,
    };
    let mut live_lanes: HashMap<u64, LiveLane> = HashMap::new();
    let mut pending: HashMap<u64, Pending> = HashMap::new();
    let mut next_token: u64 = 0;
    let mut active = 0usize;
    let mut last_gc = Instant::now();
    let mut last_progress = Instant::now();
    loop {
        if let Some((rt, _)) = &net {
            // One turn of the network runtime: tasks already woken run
            // (replies from this or another shard get written), epoll is
            // checked without sleeping, and newly readable connections are
            // read on the next turn.
            rt.block_on(tokio::task::yield_now());
        }
        let mut progress = false;
        // Admit new jobs while there is room.
        while active < inflight_max {
            let Some(job) = queue.pop() else { break };
            progress = true;
            let job = match job {
                Job::Ping(tx) => {
                    let _ = tx.send(());
                    // A ping also runs the lanes' collection next turn.
                    last_gc = Instant::now() - Duration::from_secs(2);
                    continue;
                }
                Job::Search(j) => j,
            };
            let now = Instant::now();
            let queue_micros = now.duration_since(job.enqueued).as_secs_f64() * 1e6;
            if job.deadline.is_some_and(|d| now >= d) {
                counters.expired.fetch_add(1, Ordering::Relaxed);
                metrics.expired.fetch_add(1, Ordering::Relaxed);
                let _ = job.reply.send(Err(ServiceError::DeadlineExceeded(format!(
                    "the deadline passed after {:.0} us in the queue; the query was not run",
                    queue_micros
                ))));
                continue;
            }
            let live = &job.target;
            let lane = live_lanes.entry(live.key).or_insert_with(|| {
                let mut searcher = CollectionSearcher::new(inflight_max * 8);
                searcher.notify_completions(parker.fd());
                LiveLane {
                    live: live.clone(),
                    searcher,
                }
            });
            let token = next_token;
            next_token += 1;
            match lane.searcher.start_query(&live.coll, token, &job.query, &job.params) {
                Ok(()) => {
                    active += 1;
                    pending.insert(
                        token,
                        Pending {
                            reply: job.reply,
                            queue_micros,
                            stats: live.stats.clone(),
                        },
                    );
                }
                Err(e) => {
                    counters.queries.fetch_add(1, Ordering::Relaxed);
                    let _ = job.reply.send(Err(live_error(e)));
                }
            }
        }
        // Drive every lane with work, counting the rings with reads in
        // flight (a collection has one per segment).
        let mut must_spin = false;
        let mut busy_rings = 0;
        for lane in live_lanes.values_mut() {
            if lane.searcher.active() == 0 {
                continue;
            }
            let n = drive_live(lane, false, &mut pending, &counters, &metrics);
            active -= n;
            progress |= n > 0;
            let busy = lane.searcher.busy_readers();
            busy_rings += busy;
            must_spin |= busy > 0 && !lane.searcher.notifies();
        }
        counters.in_flight.store(active, Ordering::Relaxed);
        // Forget lanes of indexes nobody else holds (dropped or rebuilt
        // collections), so their files and rings are released.
        if last_gc.elapsed() > Duration::from_secs(1) {
            // A lane lets go of an idle collection nobody else holds, or
            // one taken out of service (its holder waits for that).
            live_lanes.retain(|_, l| {
                l.searcher.active() > 0 || (Arc::strong_count(&l.live) > 1 && !l.live.retired.load(Ordering::SeqCst))
            });
            last_gc = Instant::now();
        }
        if stop.load(Ordering::SeqCst) && active == 0 && queue.is_empty() {
            break;
        }
        if progress {
            last_progress = Instant::now();
            continue;
        }
        if must_spin {
            // A ring that cannot signal the eventfd (its registration was
            // refused) has to be polled until its reads are done. Yield
            // between polls rather than spin bare: every read completion
            // runs as a softirq on the disk interrupt's CPU, and a thread
            // spinning there without entering the kernel roughly doubled
            // the other shard's read latency (ARCHITECTURE.md, "Every
            // read completes on CPU 1").
            last_progress = Instant::now();
            std::thread::yield_now();
            continue;
        }
        // While a flush, merge or bulk load keeps the cores busy, a yield
        // hands this core to it for a whole scheduler slice (milliseconds):
        // with reads in flight, wait for them instead (the kernel wakes the
        // shard ahead of the background threads, which run at nice 10).
        let contended = busy_rings > 0 && quarry_engine::runtime::background_running();
        if last_progress.elapsed() < poll_window && !contended {
            // Keep polling the rings and the queue rather than sleeping: on
            // a VM a halted vCPU costs tens of microseconds to wake. Yield
            // so the network threads sharing this core still run.
            std::thread::yield_now();
            continue;
        }
        if let Some((rt, fd)) = &net {
            // Sleep in the runtime's epoll until a connection has data, a
            // handler pushes a job, or a read completes (the last two
            // signal the eventfd). Handlers run meanwhile.
            if let Err(e) = rt.block_on(fd.wait(&parker)) {
                tracing::error!(shard = id, error = %e, "waiting on the eventfd failed; backing off");
                std::thread::sleep(Duration::from_millis(1));
            }
            continue;
        }
        if busy_rings == 1 && queue.is_empty() {
            // One ring has reads in flight: wait on it directly (one
            // io_uring_enter per completion, as in-process). A request that
            // arrives meanwhile is admitted at the next completion, at most
            // one read's latency later; the eventfd wake-up stays for the
            // idle case below.
            if let Some(lane) = live_lanes.values_mut().find(|l| l.searcher.busy_readers() > 0) {
                active -= drive_live(lane, true, &mut pending, &counters, &metrics);
            }
            continue;
        }
        // Idle, or several rings busy: sleep until a request or any
        // completion signals the eventfd.
        if let Err(e) = parker.park() {
            tracing::error!(shard = id, error = %e, "parking failed; backing off");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    if let Some((rt, fd)) = net {
        drop(fd);
        // Connections still open after the drain are cut; a build still
        // running on the blocking pool is abandoned (a restart marks it
        // FAILED), rather than holding up the exit.
        rt.shutdown_background();
    }
    tracing::debug!(shard = id, "shard stopped");
}
