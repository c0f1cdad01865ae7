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
//!   `quarry_process_resident_bytes`.

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
            errors: Mutex::new(Default::default()),
            latency: Mutex::new(Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid bounds")),
        }
    }
}

/// Histogram bucket bounds, microseconds.
const BUCKETS_US: [u64; 16] = [
    100, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 7500, 10_000, 20_000, 50_000, 100_000, 1_000_000,
];

impl Metrics {
    /// Record an answered search.
    pub fn record_query(&self, s: &quarry_engine::search::QueryStats, queue_micros: f64) {
        self.queries.fetch_add(1, Ordering::Relaxed);
        self.ios.fetch_add(s.ios as u64, Ordering::Relaxed);
        self.cache_hits.fetch_add(s.cache_hits as u64, Ordering::Relaxed);
        let us = (s.micros + queue_micros).max(1.0) as u64;
        self.latency.lock().expect("lock").saturating_record(us);
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
