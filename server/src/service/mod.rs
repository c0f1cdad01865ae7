//! The gRPC services (quarry.v1 Collections, Query, Write, Admin):
//! request validation, limits, and the hand-off to the shards.
//!
//! Owns: turning wire messages into engine calls and engine results into
//! wire messages, and every limit check (dimension, NaN/Inf, k/L/W ranges,
//! batch sizes). Does not own: the search (`shard`), the collections
//! (`catalog`) or message-size limits (set on the tonic servers in
//! `lib.rs`). One file per service (the Admin service's snapshot calls
//! in `snapshots`); [`convert`] holds the proto conversions and
//! [`gauges`] the Prometheus text. Replication is served
//! on its own listener (`crate::replication::service`).

mod admin;
mod collections;
mod convert;
mod gauges;
mod query;
mod snapshots;
mod write;

pub use admin::AdminSvc;
pub use collections::CollectionsSvc;
pub use query::QuerySvc;
pub use write::WriteSvc;

use crate::catalog::{self, Catalog, Entry, OpState, State};
use crate::config::Config;
use crate::error::ServiceError;
use crate::live::Live;
use crate::metrics::Metrics;
use crate::shard::{SearchJob, SearchOutcome, Shards};
use convert::*;
use quarry_engine::collection::Op;
use quarry_engine::format::StoredType;
use quarry_engine::search::SearchParams;
use quarry_engine::Metric;
use quarry_proto::v1 as pb;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::{Request, Response, Status};

/// Everything a request handler needs.
pub struct AppState {
    /// Settings.
    pub config: Config,
    /// Collections.
    pub catalog: Arc<Catalog>,
    /// Search shards.
    pub shards: Arc<Shards>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Set on SIGTERM: new requests get UNAVAILABLE.
    pub draining: AtomicBool,
    /// Process start.
    pub started: Instant,
    /// Unary writes being applied (max_inflight_writes permits).
    pub write_permits: Arc<tokio::sync::Semaphore>,
    /// This node's part in a replicated pair (None: a single node).
    pub replica: Option<Arc<crate::replication::node::Replica>>,
}

/// The deadline a client set (the `grpc-timeout` header), if any.
pub fn deadline_of<T>(req: &Request<T>) -> Option<Instant> {
    let v = req.metadata().get("grpc-timeout")?.to_str().ok()?;
    let (num, unit) = v.split_at(v.len().checked_sub(1)?);
    let n: u64 = num.parse().ok()?;
    let d = match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    };
    Instant::now().checked_add(d)
}

impl AppState {
    fn check_open(&self) -> Result<(), ServiceError> {
        if self.draining.load(Ordering::SeqCst) {
            Err(ServiceError::Unavailable("the server is shutting down".into()))
        } else {
            Ok(())
        }
    }

    /// The collection `name` (every collection serves searches and takes
    /// writes) and its dimension.
    fn serving(&self, name: &str) -> Result<(Arc<Live>, u32), ServiceError> {
        let e = self.catalog.get(name)?;
        let dim = e.meta.read().expect("lock").dim;
        Ok((e.live.clone(), dim))
    }

    /// Resolve and check k, L, W.
    fn params(&self, p: Option<pb::SearchParams>) -> Result<SearchParams, ServiceError> {
        let p = p.unwrap_or_default();
        let c = &self.config;
        let k = if p.k == 0 { 10 } else { p.k as usize };
        if k > c.max_k {
            return Err(ServiceError::InvalidArgument(format!(
                "params.k = {k} is over the limit max_k = {}",
                c.max_k
            )));
        }
        let l = if p.l == 0 { c.default_l.max(k) } else { p.l as usize };
        if l < k || l > c.max_l {
            return Err(ServiceError::InvalidArgument(format!(
                "params.l = {l} must be in k..=max_l ({k}..={})",
                c.max_l
            )));
        }
        let w = if p.w == 0 { c.default_w } else { p.w as usize };
        if !(1..=64).contains(&w) {
            return Err(ServiceError::InvalidArgument(format!(
                "params.w = {w} is out of range 1..=64"
            )));
        }
        Ok(SearchParams::new(k, l, w))
    }

    /// The engine's one vector check; `field()` names the vector in the
    /// error (built only on failure), and the collection is named too.
    fn check_vector(field: impl Fn() -> String, v: &[f32], dim: u32, name: &str) -> Result<(), ServiceError> {
        quarry_engine::vector::check_vector(dim as usize, v)
            .map_err(|e| ServiceError::InvalidArgument(format!("{} (collection {name:?})", e.describe(&field()))))
    }

    /// Queue one search and wait for it.
    async fn search_one(
        &self,
        target: Arc<Live>,
        query: Vec<f32>,
        params: SearchParams,
        deadline: Option<Instant>,
    ) -> Result<SearchOutcome, ServiceError> {
        let rx = self.enqueue(target, query, params, deadline)?;
        rx.await
            .map_err(|_| ServiceError::Unavailable("the shard stopped before answering".into()))?
    }

    fn enqueue(
        &self,
        target: Arc<Live>,
        query: Vec<f32>,
        params: SearchParams,
        deadline: Option<Instant>,
    ) -> Result<tokio::sync::oneshot::Receiver<Result<SearchOutcome, ServiceError>>, ServiceError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.shards.submit(SearchJob {
            target,
            query,
            params,
            deadline,
            enqueued: Instant::now(),
            reply: tx,
        })?;
        Ok(rx)
    }

    /// A handler's result as its answer (a failure counted).
    fn answer<T>(&self, r: Result<T, ServiceError>) -> Result<Response<T>, Status> {
        r.map(Response::new).or_else(|e| self.fail(e))
    }

    fn fail<T>(&self, e: ServiceError) -> Result<T, Status> {
        let s: Status = e.into();
        self.metrics.record_error(s.code());
        Err(s)
    }
}
