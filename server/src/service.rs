//! The gRPC services (quarry.v1 Collections, Query, Admin): request
//! validation, limits, and the hand-off to the shards.
//!
//! Owns: turning wire messages into engine calls and engine results into
//! wire messages, and every limit check (dimension, NaN/Inf, k/L/W ranges,
//! batch sizes, collection state). Does not own: the search (`shard`), the
//! collections (`catalog`) or message-size limits (set on the tonic
//! servers in `lib.rs`).

use crate::catalog::{self, Catalog, Entry, OpState, State};
use crate::config::Config;
use crate::error::ServiceError;
use crate::live::Live;
use crate::metrics::Metrics;
use crate::shard::{SearchJob, SearchOutcome, Shards, Target};
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

fn metric_from_pb(m: i32) -> Result<Metric, ServiceError> {
    match pb::Metric::try_from(m) {
        Ok(pb::Metric::L2) => Ok(Metric::L2),
        Ok(pb::Metric::Ip) => Ok(Metric::Ip),
        Ok(pb::Metric::Cosine) => Ok(Metric::Cosine),
        _ => Err(ServiceError::InvalidArgument(format!(
            "metric = {m} is not one of METRIC_L2 (1), METRIC_IP (2), METRIC_COSINE (3)"
        ))),
    }
}

fn metric_to_pb(m: Metric) -> pb::Metric {
    match m {
        Metric::L2 => pb::Metric::L2,
        Metric::Ip => pb::Metric::Ip,
        Metric::Cosine => pb::Metric::Cosine,
    }
}

fn stored_from_pb(s: i32) -> Result<Option<StoredType>, ServiceError> {
    match pb::StoredVector::try_from(s) {
        Ok(pb::StoredVector::Unspecified) => Ok(None),
        Ok(pb::StoredVector::F32) => Ok(Some(StoredType::F32)),
        Ok(pb::StoredVector::F16) => Ok(Some(StoredType::F16)),
        Ok(pb::StoredVector::I8) => Ok(Some(StoredType::I8)),
        Err(_) => Err(ServiceError::InvalidArgument(format!(
            "stored_vector = {s} is not a StoredVector value"
        ))),
    }
}

fn stored_to_pb(s: StoredType) -> pb::StoredVector {
    match s {
        StoredType::F32 => pb::StoredVector::F32,
        StoredType::F16 => pb::StoredVector::F16,
        StoredType::I8 => pb::StoredVector::I8,
    }
}

fn ram_to_pb(r: &quarry_engine::index::RamUsage) -> pb::RamUsage {
    pb::RamUsage {
        pq_codes: r.pq_codes as u64,
        pq_pivots: r.pq_pivots as u64,
        nav_tier: r.nav as u64,
        cache: r.cache as u64,
        id_map: r.ids as u64,
        total: r.total(),
        fresh_index: 0,
    }
}

/// RAM of a mutable collection from one pass over it: (segment parts,
/// with ids, slots and payloads counted as `ids`; the fresh index).
fn live_ram(l: &Live) -> (quarry_engine::index::RamUsage, u64) {
    let r = l.coll.ram();
    let mut u = r.segments;
    u.ids += r.ids;
    (u, r.fresh as u64)
}

fn write_state(l: &Live) -> pb::WriteState {
    let wal = l.coll.wal();
    pb::WriteState {
        fresh_vectors: l.coll.fresh_len() as u64,
        segments: l.coll.segments() as u32,
        last_lsn: wal.last_lsn(),
        durable_lsn: wal.durable_lsn(),
        wal_bytes: wal.size().1,
        flushing: l.coll.flushing(),
        flushes: l.flushes.load(Ordering::Relaxed),
        last_flush_error: l.last_flush_error.lock().expect("lock").clone(),
    }
}

fn collection_to_pb(e: &Entry) -> pb::Collection {
    let m = e.meta.read().expect("lock").clone();
    let open = e.open.read().expect("lock").clone();
    if let Some(l) = &e.live {
        let mut c = collection_pb(&m, None);
        let (ram, fresh) = live_ram(l);
        let mut ram_pb = ram_to_pb(&ram);
        ram_pb.fresh_index = fresh;
        ram_pb.total += fresh;
        c.ram = Some(ram_pb);
        c.vector_count = l.coll.len() as u64;
        c.writes = Some(write_state(l));
        return c;
    }
    collection_pb(&m, open.as_deref())
}

fn collection_pb(m: &catalog::CollectionMeta, open: Option<&catalog::OpenIndex>) -> pb::Collection {
    pb::Collection {
        name: m.name.clone(),
        dim: m.dim,
        metric: metric_to_pb(m.metric()) as i32,
        index_params: Some(pb::IndexParams {
            max_degree: m.params.max_degree,
            build_list_size: m.params.build_list_size,
            alpha: m.params.alpha,
            pq_bytes: m.params.pq_bytes,
            opq: m.params.opq,
            nav_sample: m.params.nav_sample,
        }),
        stored_vector: stored_to_pb(m.stored()) as i32,
        state: match m.state {
            State::Empty => pb::CollectionState::Empty,
            State::Building => pb::CollectionState::Building,
            State::Ready => pb::CollectionState::Ready,
            State::Failed => pb::CollectionState::Failed,
        } as i32,
        vector_count: m.vector_count,
        operation_id: m.operation_id.clone(),
        error: m.error.clone(),
        ram: open.map(|o| ram_to_pb(&o.ram())),
        disk_bytes: open.map_or(0, |o| o.disk_bytes),
        mutable: m.mutable,
        writes: None,
    }
}

fn operation_to_pb(o: &catalog::Operation) -> pb::Operation {
    let elapsed = o
        .finished
        .unwrap_or_else(Instant::now)
        .duration_since(o.started)
        .as_secs_f64();
    let eta = if o.state == OpState::Running && o.progress > 0.02 {
        elapsed * (1.0 - o.progress) / o.progress
    } else {
        0.0
    };
    pb::Operation {
        id: o.id.clone(),
        collection: o.collection.clone(),
        state: match o.state {
            OpState::Running => pb::OperationState::Running,
            OpState::Done => pb::OperationState::Done,
            OpState::Failed => pb::OperationState::Failed,
        } as i32,
        stage: o.stage.clone(),
        progress: o.progress,
        elapsed_seconds: elapsed,
        eta_seconds: eta,
        error: o.error.clone(),
        vector_count: o.vector_count,
    }
}

impl AppState {
    fn check_open(&self) -> Result<(), ServiceError> {
        if self.draining.load(Ordering::SeqCst) {
            Err(ServiceError::Unavailable("the server is shutting down".into()))
        } else {
            Ok(())
        }
    }

    /// What serves searches of `name`, or why nothing does.
    fn serving(&self, name: &str) -> Result<(Target, u32), ServiceError> {
        let e = self.catalog.get(name)?;
        let dim = e.meta.read().expect("lock").dim;
        if let Some(l) = &e.live {
            return Ok((Target::Live(l.clone()), dim));
        }
        if let Some(open) = e.open.read().expect("lock").clone() {
            return Ok((Target::Disk(open), dim));
        }
        let m = e.meta.read().expect("lock");
        Err(ServiceError::FailedPrecondition(match m.state {
            State::Building => format!(
                "collection {name:?} is still building (operation {}); search it once GetOperation reports DONE",
                m.operation_id
            ),
            State::Failed => format!("collection {name:?} has no index: the last build failed: {}", m.error),
            _ => format!("collection {name:?} has no index yet; start one with BuildIndex"),
        }))
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
        target: Target,
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
        target: Target,
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

    fn fail<T>(&self, e: ServiceError) -> Result<T, Status> {
        let s: Status = e.into();
        self.metrics.record_error(s.code());
        Err(s)
    }
}

/// The answer for the wire; `handler_start` is when the handler had the
/// decoded request.
fn outcome_to_pb(o: SearchOutcome, handler_start: Instant) -> pb::SearchResponse {
    pb::SearchResponse {
        neighbors: o
            .neighbors
            .iter()
            .map(|n| pb::Neighbor {
                id: n.id,
                distance: n.distance,
            })
            .collect(),
        stats: Some(pb::QueryStats {
            ios: o.stats.ios,
            hops: o.stats.hops,
            cache_hits: o.stats.cache_hits,
            shard_micros: o.stats.micros,
            queue_micros: o.queue_micros,
            handler_micros: handler_start.elapsed().as_secs_f64() * 1e6,
            read_wait_micros: o.stats.read_wait_micros,
            reads_waited: o.stats.reads_waited,
        }),
    }
}

/// The Query service.
#[derive(Clone)]
pub struct QuerySvc(pub Arc<AppState>);

#[tonic::async_trait]
impl pb::query_server::Query for QuerySvc {
    async fn search(&self, req: Request<pb::SearchRequest>) -> Result<Response<pb::SearchResponse>, Status> {
        let start = Instant::now();
        let st = &self.0;
        let deadline = deadline_of(&req);
        let r = req.into_inner();
        let run = async {
            st.check_open()?;
            let (open, dim) = st.serving(&r.collection)?;
            AppState::check_vector(|| "vector".into(), &r.vector, dim, &r.collection)?;
            let params = st.params(r.params)?;
            st.search_one(open, r.vector, params, deadline).await
        };
        match run.await {
            Ok(o) => Ok(Response::new(outcome_to_pb(o, start))),
            Err(e) => st.fail(e),
        }
    }

    async fn search_batch(
        &self,
        req: Request<pb::SearchBatchRequest>,
    ) -> Result<Response<pb::SearchBatchResponse>, Status> {
        let start = Instant::now();
        let st = &self.0;
        let deadline = deadline_of(&req);
        let r = req.into_inner();
        let run = async {
            st.check_open()?;
            let (open, dim) = st.serving(&r.collection)?;
            let d = dim as usize;
            if r.vectors.is_empty() || !r.vectors.len().is_multiple_of(d) {
                return Err(ServiceError::InvalidArgument(format!(
                    "vectors has {} values; it must hold one or more whole queries of dimension {dim}",
                    r.vectors.len()
                )));
            }
            let nq = r.vectors.len() / d;
            if nq > st.config.max_batch {
                return Err(ServiceError::ResourceExhausted(format!(
                    "the batch has {nq} queries; the limit is max_batch = {}",
                    st.config.max_batch
                )));
            }
            for (i, q) in r.vectors.chunks_exact(d).enumerate() {
                AppState::check_vector(|| format!("vectors (query {i})"), q, dim, &r.collection)?;
            }
            let params = st.params(r.params)?;
            let mut waits = Vec::with_capacity(nq);
            for q in r.vectors.chunks_exact(d) {
                waits.push(st.enqueue(open.clone(), q.to_vec(), params, deadline)?);
            }
            let mut results = Vec::with_capacity(nq);
            for rx in waits {
                let o = rx
                    .await
                    .map_err(|_| ServiceError::Unavailable("the shard stopped before answering".into()))??;
                results.push(outcome_to_pb(o, start));
            }
            Ok(pb::SearchBatchResponse { results })
        };
        match run.await {
            Ok(o) => Ok(Response::new(o)),
            Err(e) => st.fail(e),
        }
    }

    async fn get(&self, req: Request<pb::GetRequest>) -> Result<Response<pb::GetResponse>, Status> {
        let st = &self.0;
        let r = req.into_inner();
        let run = async {
            st.check_open()?;
            let (open, _) = st.serving(&r.collection)?;
            if r.ids.len() > st.config.max_batch {
                return Err(ServiceError::ResourceExhausted(format!(
                    "ids has {} entries; the limit is max_batch = {}",
                    r.ids.len(),
                    st.config.max_batch
                )));
            }
            let name = r.collection.clone();
            tokio::task::spawn_blocking(move || {
                let mut records = Vec::with_capacity(r.ids.len());
                for &id in &r.ids {
                    let found = match &open {
                        Target::Disk(o) => o.get(id)?.map(|vector| (vector, Vec::new())),
                        Target::Live(l) => l.coll.get(id).map_err(crate::live::live_error)?,
                    };
                    match found {
                        Some((vector, payload)) => records.push(pb::Record { id, vector, payload }),
                        None => return Err(ServiceError::NotFound(format!("id {id} is not in collection {name:?}"))),
                    }
                }
                Ok(pb::GetResponse { records })
            })
            .await
            .map_err(|e| ServiceError::Internal(format!("get task failed: {e}")))?
        };
        match run.await {
            Ok(o) => Ok(Response::new(o)),
            Err(e) => st.fail(e),
        }
    }
}

/// The Collections service.
#[derive(Clone)]
pub struct CollectionsSvc(pub Arc<AppState>);

#[tonic::async_trait]
impl pb::collections_server::Collections for CollectionsSvc {
    async fn create_collection(
        &self,
        req: Request<pb::CreateCollectionRequest>,
    ) -> Result<Response<pb::Collection>, Status> {
        let st = &self.0;
        let r = req.into_inner();
        let run = || -> Result<pb::Collection, ServiceError> {
            st.check_open()?;
            let metric = metric_from_pb(r.metric)?;
            let stored = stored_from_pb(r.stored_vector)?;
            let p = r.index_params.unwrap_or_default();
            let params = catalog::IndexParams {
                max_degree: p.max_degree,
                build_list_size: p.build_list_size,
                alpha: p.alpha,
                pq_bytes: p.pq_bytes,
                opq: p.opq,
                nav_sample: p.nav_sample,
            };
            st.catalog.create(&r.name, r.dim, metric, params, stored, r.mutable)?;
            Ok(collection_to_pb(&*st.catalog.get(&r.name)?))
        };
        match run() {
            Ok(c) => Ok(Response::new(c)),
            Err(e) => st.fail(e),
        }
    }

    async fn list_collections(
        &self,
        _req: Request<pb::ListCollectionsRequest>,
    ) -> Result<Response<pb::ListCollectionsResponse>, Status> {
        let collections = self.0.catalog.list().iter().map(|e| collection_to_pb(e)).collect();
        Ok(Response::new(pb::ListCollectionsResponse { collections }))
    }

    async fn describe_collection(
        &self,
        req: Request<pb::DescribeCollectionRequest>,
    ) -> Result<Response<pb::Collection>, Status> {
        let st = &self.0;
        match st.catalog.get(&req.into_inner().name) {
            Ok(e) => Ok(Response::new(collection_to_pb(&e))),
            Err(e) => st.fail(e),
        }
    }

    async fn drop_collection(
        &self,
        req: Request<pb::DropCollectionRequest>,
    ) -> Result<Response<pb::DropCollectionResponse>, Status> {
        let st = &self.0;
        let name = req.into_inner().name;
        let cat = st.catalog.clone();
        let res = tokio::task::spawn_blocking(move || cat.drop_collection(&name))
            .await
            .map_err(|e| ServiceError::Internal(format!("drop task failed: {e}")));
        match res.and_then(|r| r) {
            Ok(()) => Ok(Response::new(pb::DropCollectionResponse {})),
            Err(e) => st.fail(e),
        }
    }

    async fn build_index(&self, req: Request<pb::BuildIndexRequest>) -> Result<Response<pb::Operation>, Status> {
        let st = &self.0;
        let r = req.into_inner();
        if let Err(e) = st.check_open() {
            return st.fail(e);
        }
        if r.source_path.is_empty() {
            return st.fail(ServiceError::InvalidArgument("source_path is empty".into()));
        }
        let cat = st.catalog.clone();
        let res = tokio::task::spawn_blocking(move || {
            let ids = (!r.ids_path.is_empty()).then(|| std::path::PathBuf::from(&r.ids_path));
            cat.start_build(
                &r.collection,
                std::path::Path::new(&r.source_path),
                ids.as_deref(),
                r.threads as usize,
            )
        })
        .await
        .map_err(|e| ServiceError::Internal(format!("build task failed: {e}")));
        match res.and_then(|r| r) {
            Ok(op) => Ok(Response::new(operation_to_pb(&op))),
            Err(e) => st.fail(e),
        }
    }

    async fn get_operation(&self, req: Request<pb::GetOperationRequest>) -> Result<Response<pb::Operation>, Status> {
        let st = &self.0;
        match st.catalog.operation(&req.into_inner().id) {
            Ok(op) => Ok(Response::new(operation_to_pb(&op))),
            Err(e) => st.fail(e),
        }
    }
}

impl AppState {
    /// The mutable collection `name`, or why it cannot take writes.
    fn writable(&self, name: &str) -> Result<(Arc<Live>, u32), ServiceError> {
        self.check_open()?;
        let e = self.catalog.get(name)?;
        match &e.live {
            Some(l) => Ok((l.clone(), e.meta.read().expect("lock").dim)),
            None => Err(ServiceError::FailedPrecondition(format!(
                "collection {name:?} is read-only (built from a file); writes need a collection created with mutable = true"
            ))),
        }
    }

    /// Check a batch of points whole and turn it into operations.
    fn upsert_ops(&self, r: pb::UpsertRequest, dim: u32, first: u64) -> Result<Vec<Op>, ServiceError> {
        let c = &self.config;
        if r.points.is_empty() {
            return Err(ServiceError::InvalidArgument("points is empty".into()));
        }
        if r.points.len() > c.max_batch {
            return Err(ServiceError::ResourceExhausted(format!(
                "points has {} entries; the limit is max_batch = {}",
                r.points.len(),
                c.max_batch
            )));
        }
        let mut ops = Vec::with_capacity(r.points.len());
        for (i, p) in r.points.into_iter().enumerate() {
            let n = first + i as u64;
            AppState::check_vector(
                || format!("points[{n}].vector (id {})", p.id),
                &p.vector,
                dim,
                &r.collection,
            )?;
            if p.payload.len() > c.max_payload_bytes {
                return Err(ServiceError::InvalidArgument(format!(
                    "points[{n}].payload (id {}) is {} bytes; the limit is max_payload_bytes = {}",
                    p.id,
                    p.payload.len(),
                    c.max_payload_bytes
                )));
            }
            ops.push(Op::Upsert {
                id: p.id,
                vector: p.vector,
                payload: p.payload,
            });
        }
        Ok(ops)
    }

    /// Apply `ops` on a blocking thread, then queue a flush if one is due.
    async fn apply(&self, live: Arc<Live>, ops: Vec<Op>) -> Result<u64, ServiceError> {
        let l = live.clone();
        let lsn = tokio::task::spawn_blocking(move || l.write(ops))
            .await
            .map_err(|e| ServiceError::Internal(format!("write task failed: {e}")))??;
        self.catalog.kick_flush(&live);
        Ok(lsn)
    }

    /// A unary write: refused at once when the collection is stalled or
    /// too many writes are in progress.
    async fn unary_write(&self, live: Arc<Live>, ops: Vec<Op>) -> Result<pb::WriteResponse, ServiceError> {
        if let Some(why) = live.stalled() {
            self.catalog.kick_flush(&live);
            return Err(ServiceError::ResourceExhausted(why));
        }
        let Ok(_permit) = self.write_permits.clone().try_acquire_owned() else {
            return Err(ServiceError::ResourceExhausted(format!(
                "{} writes are already in progress (max_inflight_writes); retry with backoff",
                self.config.max_inflight_writes
            )));
        };
        let count = ops.len() as u64;
        let last_lsn = self.apply(live, ops).await?;
        self.metrics.writes.fetch_add(count, Ordering::Relaxed);
        Ok(pb::WriteResponse { count, last_lsn })
    }
}

/// The Write service.
#[derive(Clone)]
pub struct WriteSvc(pub Arc<AppState>);

#[tonic::async_trait]
impl pb::write_server::Write for WriteSvc {
    async fn upsert(&self, req: Request<pb::UpsertRequest>) -> Result<Response<pb::WriteResponse>, Status> {
        let st = &self.0;
        let r = req.into_inner();
        let run = async {
            let (live, dim) = st.writable(&r.collection)?;
            let ops = st.upsert_ops(r, dim, 0)?;
            st.unary_write(live, ops).await
        };
        match run.await {
            Ok(o) => Ok(Response::new(o)),
            Err(e) => st.fail(e),
        }
    }

    async fn delete(&self, req: Request<pb::DeleteRequest>) -> Result<Response<pb::WriteResponse>, Status> {
        let st = &self.0;
        let r = req.into_inner();
        let run = async {
            let (live, _) = st.writable(&r.collection)?;
            if r.ids.is_empty() {
                return Err(ServiceError::InvalidArgument("ids is empty".into()));
            }
            if r.ids.len() > st.config.max_batch {
                return Err(ServiceError::ResourceExhausted(format!(
                    "ids has {} entries; the limit is max_batch = {}",
                    r.ids.len(),
                    st.config.max_batch
                )));
            }
            let ops = r.ids.into_iter().map(|id| Op::Delete { id }).collect();
            st.unary_write(live, ops).await
        };
        match run.await {
            Ok(o) => Ok(Response::new(o)),
            Err(e) => st.fail(e),
        }
    }

    async fn bulk_upsert(
        &self,
        req: Request<tonic::Streaming<pb::UpsertRequest>>,
    ) -> Result<Response<pb::WriteResponse>, Status> {
        let st = &self.0;
        let mut stream = req.into_inner();
        let mut count = 0u64;
        let mut last_lsn = 0u64;
        let mut name: Option<String> = None;
        let run = async {
            // One message at a time: the next is not read until this one
            // is durable and applied, so HTTP/2 flow control slows a fast
            // client to the server's pace. A stall (flush behind) waits
            // here instead of failing the stream.
            while let Some(msg) = stream
                .message()
                .await
                .map_err(|s| ServiceError::InvalidArgument(format!("reading the stream: {}", s.message())))?
            {
                let n = name.get_or_insert_with(|| msg.collection.clone());
                if *n != msg.collection {
                    return Err(ServiceError::InvalidArgument(format!(
                        "message {} of the stream names collection {:?}; the stream began with {n:?}",
                        count, msg.collection
                    )));
                }
                let (live, dim) = st.writable(&msg.collection)?;
                let ops = st.upsert_ops(msg, dim, count)?;
                let mut waited = Duration::ZERO;
                while let Some(why) = live.stalled() {
                    st.catalog.kick_flush(&live);
                    st.check_open()?;
                    if waited > Duration::from_secs(600) {
                        return Err(ServiceError::ResourceExhausted(format!("{why} (waited {waited:?})")));
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    waited += Duration::from_millis(20);
                }
                let _permit = st
                    .write_permits
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| ServiceError::Unavailable("the server is shutting down".into()))?;
                let k = ops.len() as u64;
                last_lsn = st.apply(live, ops).await?;
                count += k;
                st.metrics.writes.fetch_add(k, Ordering::Relaxed);
            }
            if name.is_none() {
                return Err(ServiceError::InvalidArgument("the stream held no messages".into()));
            }
            Ok(())
        };
        match run.await {
            Ok(()) => Ok(Response::new(pb::WriteResponse { count, last_lsn })),
            Err(e) => st.fail(e.append(&format!(" ({count} points of this stream were written before it)"))),
        }
    }
}

/// The Admin service.
#[derive(Clone)]
pub struct AdminSvc(pub Arc<AppState>);

impl AppState {
    /// Build the Stats answer.
    pub fn stats(&self) -> pb::StatsResponse {
        let shards = self
            .shards
            .counters()
            .iter()
            .enumerate()
            .map(|(i, (c, qlen))| pb::ShardStats {
                shard: i as u32,
                queries: c.queries.load(Ordering::Relaxed),
                queue_depth: *qlen as u32,
                in_flight: c.in_flight.load(Ordering::Relaxed) as u32,
                expired: c.expired.load(Ordering::Relaxed),
                rejected: c.rejected.load(Ordering::Relaxed),
            })
            .collect();
        let entries = self.catalog.list();
        let mut ram = quarry_engine::index::RamUsage::default();
        let mut fresh = 0u64;
        for e in &entries {
            if let Some(o) = e.open.read().expect("lock").as_ref() {
                ram += o.ram();
            }
            if let Some(l) = &e.live {
                let (r, f) = live_ram(l);
                ram += r;
                fresh += f;
            }
        }
        let (p50, p99, p999) = self.metrics.latency_quantiles();
        let q = self.metrics.queries.load(Ordering::Relaxed);
        let ios = self.metrics.ios.load(Ordering::Relaxed);
        let hits = self.metrics.cache_hits.load(Ordering::Relaxed);
        pb::StatsResponse {
            version: env!("CARGO_PKG_VERSION").into(),
            uptime_seconds: self.started.elapsed().as_secs_f64(),
            shards,
            collections: entries.iter().map(|e| collection_to_pb(e)).collect(),
            ram: Some({
                let mut r = ram_to_pb(&ram);
                r.fresh_index = fresh;
                r.total += fresh;
                r
            }),
            memory_budget_bytes: self.catalog.budget(),
            rss_bytes: quarry_engine::runtime::rss_bytes(),
            latency_p50_us: p50,
            latency_p99_us: p99,
            latency_p999_us: p999,
            mean_ios: if q > 0 { ios as f64 / q as f64 } else { 0.0 },
            cache_hit_rate: if hits + ios > 0 {
                hits as f64 / (hits + ios) as f64
            } else {
                0.0
            },
        }
    }

    /// Gauges for /metrics that live outside [`Metrics`].
    pub fn render_gauges(&self) -> String {
        use std::fmt::Write as _;
        let mut o = String::new();
        let _ = writeln!(
            o,
            "# HELP quarry_shard_queue_depth Requests waiting in a shard's queue."
        );
        let _ = writeln!(o, "# TYPE quarry_shard_queue_depth gauge");
        let counters = self.shards.counters();
        for (i, (_, q)) in counters.iter().enumerate() {
            let _ = writeln!(o, "quarry_shard_queue_depth{{shard=\"{i}\"}} {q}");
        }
        let _ = writeln!(o, "# HELP quarry_shard_in_flight Queries a shard is working on.");
        let _ = writeln!(o, "# TYPE quarry_shard_in_flight gauge");
        for (i, (c, _)) in counters.iter().enumerate() {
            let _ = writeln!(
                o,
                "quarry_shard_in_flight{{shard=\"{i}\"}} {}",
                c.in_flight.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            o,
            "# HELP quarry_shard_rejected_total Requests refused because every queue was full."
        );
        let _ = writeln!(o, "# TYPE quarry_shard_rejected_total counter");
        for (i, (c, _)) in counters.iter().enumerate() {
            let _ = writeln!(
                o,
                "quarry_shard_rejected_total{{shard=\"{i}\"}} {}",
                c.rejected.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(o, "# HELP quarry_ram_bytes RAM held by an open index, by component.");
        let _ = writeln!(o, "# TYPE quarry_ram_bytes gauge");
        for e in self.catalog.list() {
            let name = e.meta.read().expect("lock").name.clone();
            let (r, fresh) = match (&e.live, e.open.read().expect("lock").as_ref()) {
                (Some(l), _) => {
                    let (r, f) = live_ram(l);
                    (r, f as usize)
                }
                (None, Some(open)) => (open.ram(), 0),
                (None, None) => continue,
            };
            {
                for (comp, v) in [
                    ("pq_codes", r.pq_codes),
                    ("pq_pivots", r.pq_pivots),
                    ("nav_tier", r.nav),
                    ("cache", r.cache),
                    ("id_map", r.ids),
                    ("fresh_index", fresh),
                ] {
                    let _ = writeln!(o, "quarry_ram_bytes{{collection=\"{name}\",component=\"{comp}\"}} {v}");
                }
            }
        }
        let _ = writeln!(o, "# HELP quarry_memory_budget_bytes The configured memory budget.");
        let _ = writeln!(o, "# TYPE quarry_memory_budget_bytes gauge");
        let _ = writeln!(o, "quarry_memory_budget_bytes {}", self.catalog.budget());
        let _ = writeln!(o, "# HELP quarry_process_resident_bytes Resident set size of quarryd.");
        let _ = writeln!(o, "# TYPE quarry_process_resident_bytes gauge");
        let _ = writeln!(
            o,
            "quarry_process_resident_bytes {}",
            quarry_engine::runtime::rss_bytes()
        );
        o
    }
}

#[tonic::async_trait]
impl pb::admin_server::Admin for AdminSvc {
    async fn stats(&self, _req: Request<pb::StatsRequest>) -> Result<Response<pb::StatsResponse>, Status> {
        Ok(Response::new(self.0.stats()))
    }

    async fn compact(&self, req: Request<pb::CompactRequest>) -> Result<Response<pb::Operation>, Status> {
        let st = &self.0;
        let r = req.into_inner();
        match st.check_open().and_then(|_| st.catalog.start_compact(&r.collection)) {
            Ok(op) => Ok(Response::new(operation_to_pb(&op))),
            Err(e) => st.fail(e),
        }
    }
}
