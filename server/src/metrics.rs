//! Prometheus metrics: counters, an hdrhistogram of search latency, and
//! the HTTP endpoint that serves them.
//!
//! Owns: every metric's name and meaning, and `GET /metrics` (text format
//! 0.0.4) on `metrics_listen`. Does not own: what is measured (the shards
//! and the catalog report into it).
//!
//! Metrics:
//! - `quarry_queries_total` — searches answered (rate = QPS);
//! - `quarry_writes_total` — points upserted and ids deleted;
//! - `quarry_query_errors_total{code}` — requests refused, by gRPC code;
//! - `quarry_query_latency_microseconds` — histogram of time inside the
//!   shard plus the queue wait (buckets from an hdrhistogram), with
//!   `quarry_query_latency_quantile_microseconds{quantile}` beside it;
//! - `quarry_query_ios_total`, `quarry_query_cache_hits_total` — 4 KiB
//!   reads and cache hits (IOs per query = ios_total / queries_total; hit
//!   rate = hits / (hits + ios));
//! - `quarry_queries_expired_total` — dropped for a passed deadline;
//! - `quarry_shard_queue_depth{shard}`, `quarry_shard_in_flight{shard}`;
//! - `quarry_ram_bytes{collection,component}`, `quarry_memory_budget_bytes`,
//!   `quarry_process_resident_bytes`;
//! - per collection (`CollectionStats`): `quarry_collection_queries_total`,
//!   `quarry_collection_writes_total`, the histogram
//!   `quarry_collection_query_latency_microseconds`, and
//!   `quarry_collection_flush_seconds_total{kind}` /
//!   `quarry_collection_flushes_total{kind}` (kind flush or merge); the
//!   write path's gauges (`quarry_collection_fresh_vectors`,
//!   `_segments`, `_wal_bytes`, `_last_lsn`, `_durable_lsn`) are read at
//!   scrape time (`service::gauges`);
//! - `quarry_operations{state}`, `quarry_operation_progress{id,collection}`;
//! - `quarry_refused_messages_total{reason}` (oversized messages);
//! - `quarry_snapshots_total{op}` — snapshots created and restored
//!   (`op` = `create`, `restore`), successful ones;
//! - `quarry_build_info{version,commit}` (always 1).

use hdrhistogram::Histogram;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Process-wide metrics.
pub struct Metrics {
    /// Searches answered.
    pub queries: AtomicU64,
    /// 4 KiB reads.
    pub ios: AtomicU64,
    /// Cache hits.
    pub cache_hits: AtomicU64,
    /// Deadline drops.
    pub expired: AtomicU64,
    /// Points upserted and ids deleted (acknowledged).
    pub writes: AtomicU64,
    /// Snapshots written (CreateSnapshot).
    pub snapshots_created: AtomicU64,
    /// Collections restored from snapshots (RestoreSnapshot).
    pub snapshots_restored: AtomicU64,
    /// Errors by gRPC code name.
    errors: Mutex<std::collections::BTreeMap<&'static str, u64>>,
    /// Latency, microseconds (shard time + queue wait).
    latency: Mutex<Histogram<u64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            queries: AtomicU64::new(0),
            ios: AtomicU64::new(0),
            cache_hits: AtomicU64::new(0),
            expired: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            snapshots_created: AtomicU64::new(0),
            snapshots_restored: AtomicU64::new(0),
            errors: Mutex::new(Default::default()),
            latency: Mutex::new(Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid bounds")),
        }
    }
}

/// What one collection has served, kept on its `Live` (its lifetime is
/// the collection's in this process).
#[derive(Default)]
pub struct CollectionStats {
    /// Searches answered.
    pub queries: AtomicU64,
    /// Points upserted and ids deleted (acknowledged), bulk loads included.
    pub writes: AtomicU64,
    latency_le: [AtomicU64; BUCKETS_US.len()],
    latency_count: AtomicU64,
    latency_sum_us: AtomicU64,
    /// (count, microseconds) of flushes, then of merges.
    flush: [(AtomicU64, AtomicU64); 2],
}

impl CollectionStats {
    /// One answered search of `us` microseconds.
    pub fn record_query(&self, us: u64) {
        self.queries.fetch_add(1, Ordering::Relaxed);
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us.fetch_add(us, Ordering::Relaxed);
        if let Some(i) = BUCKETS_US.iter().position(|&b| us <= b) {
            self.latency_le[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A finished flush (`merge` false) or merge, in `seconds`.
    pub fn record_flush(&self, merge: bool, seconds: f64) {
        let (n, us) = &self.flush[merge as usize];
        n.fetch_add(1, Ordering::Relaxed);
        us.fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
    }

    /// This collection's lines for each per-collection metric, appended
    /// to `out[i]` in the order of [`COLLECTION_METRICS`].
    pub fn render(&self, name: &str, out: &mut [String; 5]) {
        let c = format!("collection=\"{name}\"");
        let _ = writeln!(
            out[0],
            "quarry_collection_queries_total{{{c}}} {}",
            self.queries.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out[1],
            "quarry_collection_writes_total{{{c}}} {}",
            self.writes.load(Ordering::Relaxed)
        );
        let mut cum = 0;
        for (b, n) in BUCKETS_US.iter().zip(&self.latency_le) {
            cum += n.load(Ordering::Relaxed);
            let _ = writeln!(
                out[2],
                "quarry_collection_query_latency_microseconds_bucket{{{c},le=\"{b}\"}} {cum}"
            );
        }
        let count = self.latency_count.load(Ordering::Relaxed);
        let _ = writeln!(
            out[2],
            "quarry_collection_query_latency_microseconds_bucket{{{c},le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out[2],
            "quarry_collection_query_latency_microseconds_sum{{{c}}} {}",
            self.latency_sum_us.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out[2],
            "quarry_collection_query_latency_microseconds_count{{{c}}} {count}"
        );
        for (kind, (n, us)) in ["flush", "merge"].iter().zip(&self.flush) {
            let _ = writeln!(
                out[3],
                "quarry_collection_flushes_total{{{c},kind=\"{kind}\"}} {}",
                n.load(Ordering::Relaxed)
            );
            let _ = writeln!(
                out[4],
                "quarry_collection_flush_seconds_total{{{c},kind=\"{kind}\"}} {}",
                us.load(Ordering::Relaxed) as f64 / 1e6
            );
        }
    }
}

/// (name, type, help) of the per-collection metrics, in render order.
pub const COLLECTION_METRICS: [(&str, &str, &str); 5] = [
    (
        "quarry_collection_queries_total",
        "counter",
        "Searches answered, by collection.",
    ),
    (
        "quarry_collection_writes_total",
        "counter",
        "Points upserted and ids deleted (acknowledged), by collection.",
    ),
    (
        "quarry_collection_query_latency_microseconds",
        "histogram",
        "Search latency inside the server (queue wait + shard), by collection.",
    ),
    (
        "quarry_collection_flushes_total",
        "counter",
        "Flushes and merges finished, by collection and kind.",
    ),
    (
        "quarry_collection_flush_seconds_total",
        "counter",
        "Seconds spent in finished flushes and merges (divide by flushes_total for the mean).",
    ),
];

/// Histogram bucket bounds, microseconds.
const BUCKETS_US: [u64; 16] = [
    100, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 7500, 10_000, 20_000, 50_000, 100_000, 1_000_000,
];

impl Metrics {
    /// Record an answered search of collection `c`.
    pub fn record_query(&self, s: &quarry_engine::search::QueryStats, queue_micros: f64, c: &CollectionStats) {
        self.queries.fetch_add(1, Ordering::Relaxed);
        self.ios.fetch_add(s.ios as u64, Ordering::Relaxed);
        self.cache_hits.fetch_add(s.cache_hits as u64, Ordering::Relaxed);
        let us = (s.micros + queue_micros).max(1.0) as u64;
        self.latency.lock().expect("lock").saturating_record(us);
        c.record_query(us);
    }

    /// Record a refused or failed request.
    pub fn record_error(&self, code: tonic::Code) {
        let name = code_name(code);
        *self.errors.lock().expect("lock").entry(name).or_insert(0) += 1;
    }

    /// (p50, p99, p99.9) latency in microseconds since start.
    pub fn latency_quantiles(&self) -> (f64, f64, f64) {
        let h = self.latency.lock().expect("lock");
        if h.is_empty() {
            return (0.0, 0.0, 0.0);
        }
        (
            h.value_at_quantile(0.5) as f64,
            h.value_at_quantile(0.99) as f64,
            h.value_at_quantile(0.999) as f64,
        )
    }

    /// Render the text exposition. `extra` appends gauges the caller owns
    /// (shards, RAM).
    pub fn render(&self, extra: &str) -> String {
        let mut o = String::new();
        let q = self.queries.load(Ordering::Relaxed);
        let _ = writeln!(o, "# HELP quarry_queries_total Searches answered.");
        let _ = writeln!(o, "# TYPE quarry_queries_total counter");
        let _ = writeln!(o, "quarry_queries_total {q}");
        let _ = writeln!(
            o,
            "# HELP quarry_writes_total Points upserted and ids deleted, acknowledged."
        );
        let _ = writeln!(o, "# TYPE quarry_writes_total counter");
        let _ = writeln!(o, "quarry_writes_total {}", self.writes.load(Ordering::Relaxed));
        let _ = writeln!(
            o,
            "# HELP quarry_snapshots_total Snapshots of a collection created, and collections restored from one."
        );
        let _ = writeln!(o, "# TYPE quarry_snapshots_total counter");
        for (op, n) in [
            ("create", &self.snapshots_created),
            ("restore", &self.snapshots_restored),
        ] {
            let _ = writeln!(o, "quarry_snapshots_total{{op=\"{op}\"}} {}", n.load(Ordering::Relaxed));
        }
        let _ = writeln!(
            o,
            "# HELP quarry_query_errors_total Requests refused or failed, by gRPC code."
        );
        let _ = writeln!(o, "# TYPE quarry_query_errors_total counter");
        for (code, n) in self.errors.lock().expect("lock").iter() {
            let _ = writeln!(o, "quarry_query_errors_total{{code=\"{code}\"}} {n}");
        }
        for (name, help, v) in [
            ("quarry_query_ios_total", "4 KiB sector reads by searches.", &self.ios),
            (
                "quarry_query_cache_hits_total",
                "Nodes served from the hot-node cache.",
                &self.cache_hits,
            ),
            (
                "quarry_queries_expired_total",
                "Searches dropped because their deadline had passed.",
                &self.expired,
            ),
        ] {
            let _ = writeln!(o, "# HELP {name} {help}");
            let _ = writeln!(o, "# TYPE {name} counter");
            let _ = writeln!(o, "{name} {}", v.load(Ordering::Relaxed));
        }
        let h = self.latency.lock().expect("lock");
        let _ = writeln!(
            o,
            "# HELP quarry_query_latency_microseconds Search latency inside the server (queue wait + shard)."
        );
        let _ = writeln!(o, "# TYPE quarry_query_latency_microseconds histogram");
        for b in BUCKETS_US {
            let n = h.count_between(0, b);
            let _ = writeln!(o, "quarry_query_latency_microseconds_bucket{{le=\"{b}\"}} {n}");
        }
        let _ = writeln!(o, "quarry_query_latency_microseconds_bucket{{le=\"+Inf\"}} {}", h.len());
        let sum: f64 = h
            .iter_recorded()
            .map(|v| v.value_iterated_to() as f64 * v.count_at_value() as f64)
            .sum();
        let _ = writeln!(o, "quarry_query_latency_microseconds_sum {sum}");
        let _ = writeln!(o, "quarry_query_latency_microseconds_count {}", h.len());
        let _ = writeln!(
            o,
            "# HELP quarry_query_latency_quantile_microseconds Latency quantiles since start."
        );
        let _ = writeln!(o, "# TYPE quarry_query_latency_quantile_microseconds gauge");
        for qn in [0.5, 0.9, 0.99, 0.999] {
            let v = if h.is_empty() { 0 } else { h.value_at_quantile(qn) };
            let _ = writeln!(o, "quarry_query_latency_quantile_microseconds{{quantile=\"{qn}\"}} {v}");
        }
        drop(h);
        let _ = writeln!(
            o,
            "# HELP quarry_refused_messages_total Requests refused before decoding, by reason (oversized: over max_message_bytes)."
        );
        let _ = writeln!(o, "# TYPE quarry_refused_messages_total counter");
        let _ = writeln!(
            o,
            "quarry_refused_messages_total{{reason=\"oversized\"}} {}",
            crate::error::oversized_refusals()
        );
        let _ = writeln!(
            o,
            "# HELP quarry_build_info The running quarryd's version and commit (always 1)."
        );
        let _ = writeln!(o, "# TYPE quarry_build_info gauge");
        let _ = writeln!(
            o,
            "quarry_build_info{{version=\"{}\",commit=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION"),
            env!("QUARRY_COMMIT")
        );
        o.push_str(extra);
        o
    }
}

/// The lower-case gRPC code name.
pub fn code_name(c: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match c {
        Ok => "ok",
        Cancelled => "cancelled",
        Unknown => "unknown",
        InvalidArgument => "invalid_argument",
        DeadlineExceeded => "deadline_exceeded",
        NotFound => "not_found",
        AlreadyExists => "already_exists",
        PermissionDenied => "permission_denied",
        ResourceExhausted => "resource_exhausted",
        FailedPrecondition => "failed_precondition",
        Aborted => "aborted",
        OutOfRange => "out_of_range",
        Unimplemented => "unimplemented",
        Internal => "internal",
        Unavailable => "unavailable",
        DataLoss => "data_loss",
        Unauthenticated => "unauthenticated",
    }
}

/// Serve `GET /metrics` on `listener` until `shutdown` resolves; `render`
/// produces the body.
pub async fn serve(
    listener: tokio::net::TcpListener,
    render: std::sync::Arc<dyn Fn() -> String + Send + Sync>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    use http_body_util::Full;
    use hyper::body::Bytes;
    use hyper::{Response, StatusCode};
    loop {
        let accept = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        let Ok((stream, _)) = accept else { continue };
        let render = render.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let render = render.clone();
                async move {
                    let resp = if req.uri().path() == "/metrics" {
                        Response::builder()
                            .header("content-type", "text/plain; version=0.0.4")
                            .body(Full::new(Bytes::from(render())))
                    } else {
                        Response::builder()
                            .status(StatusCode::NOT_FOUND)
                            .body(Full::new(Bytes::from_static(b"not found; try /metrics\n")))
                    };
                    Ok::<_, std::convert::Infallible>(resp.expect("valid response"))
                }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, svc)
                .await;
        });
    }
}
