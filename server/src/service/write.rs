//! The Write service: Upsert, Delete and BulkUpsert. A stream that begins
//! on an empty collection is buffered; each 256 MiB of vectors, and a
//! remainder of at least `flush_at` points, is bulk-loaded (a segment built
//! at batch speed); a smaller remainder goes through the write path.

use super::*;

impl AppState {
    /// The collection `name`, for a write.
    fn writable(&self, name: &str) -> Result<(Arc<Live>, u32), ServiceError> {
        self.check_open()?;
        if let Some(r) = &self.replica {
            r.admit_write(name)?;
            let (live, dim) = self.serving(name)?;
            crate::replication::promote::adopt(r, &live)?;
            return Ok((live, dim));
        }
        self.serving(name)
    }

    /// How long a write may wait for the standby: the client's deadline,
    /// else `[replication] write_timeout_ms`, whichever comes first (a
    /// single node has no gate: nothing waits).
    fn write_deadline(&self, client: Option<Instant>) -> Option<Instant> {
        let r = self.replica.as_ref()?;
        let ours = Instant::now() + Duration::from_millis(r.settings.write_timeout_ms);
        Some(client.map_or(ours, |c| c.min(ours)))
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
    async fn apply(&self, live: Arc<Live>, ops: Vec<Op>, deadline: Option<Instant>) -> Result<u64, ServiceError> {
        let l = live.clone();
        let deadline = self.write_deadline(deadline);
        let lsn = tokio::task::spawn_blocking(move || l.write(ops, deadline))
            .await
            .map_err(|e| ServiceError::Internal(format!("write task failed: {e}")))??;
        self.catalog.kick_flush(&live);
        Ok(lsn)
    }

    /// A unary write: refused at once when the collection is stalled or
    /// too many writes are in progress.
    async fn unary_write(
        &self,
        live: Arc<Live>,
        ops: Vec<Op>,
        deadline: Option<Instant>,
    ) -> Result<pb::WriteResponse, ServiceError> {
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
        let last_lsn = self.apply(live.clone(), ops, deadline).await?;
        self.count_writes(&live, count);
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
        let deadline = deadline_of(&req);
        let r = req.into_inner();
        let run = async {
            let (live, dim) = st.writable(&r.collection)?;
            let ops = st.upsert_ops(r, dim, 0)?;
            st.unary_write(live, ops, deadline).await
        };
        match run.await {
            Ok(o) => Ok(Response::new(o)),
            Err(e) => st.fail(e),
        }
    }

    async fn delete(&self, req: Request<pb::DeleteRequest>) -> Result<Response<pb::WriteResponse>, Status> {
        let st = &self.0;
        let deadline = deadline_of(&req);
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
            st.unary_write(live, ops, deadline).await
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
        let deadline = deadline_of(&req);
        let mut stream = req.into_inner();
        let mut count = 0u64;
        let mut last_lsn = 0u64;
        let mut name: Option<String> = None;
        // A stream that begins on an empty collection is bulk-loaded:
        // buffered and built into segments at batch speed.
        let mut bulk: Option<BulkBuffer> = None;
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
                let first_message = count == 0 && bulk.is_none();
                let ops = st.upsert_ops(msg, dim, bulk.as_ref().map_or(count, |b| b.received))?;
                if first_message && live.coll.is_empty() && live.coll.segments() == 0 {
                    bulk = Some(BulkBuffer::new(dim as usize));
                }
                if let Some(b) = bulk.as_mut() {
                    b.push(ops);
                    if b.full() {
                        let (n, lsn) = st.bulk_load(live.clone(), b.take()).await?;
                        count += n;
                        last_lsn = lsn;
                        st.count_writes(&live, n);
                    }
                    continue;
                }
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
                last_lsn = st.apply(live.clone(), ops, deadline).await?;
                count += k;
                st.count_writes(&live, k);
            }
            if name.is_none() {
                return Err(ServiceError::InvalidArgument("the stream held no messages".into()));
            }
            if let Some(mut b) = bulk.take() {
                if !b.is_empty() {
                    let (live, _) = st.writable(name.as_deref().expect("named"))?;
                    if b.len() >= live.coll.options().flush_at {
                        let (n, lsn) = st.bulk_load(live.clone(), b.take()).await?;
                        count += n;
                        last_lsn = lsn;
                        st.count_writes(&live, n);
                    } else {
                        // Fewer than a flush's worth: they would stay in the
                        // fresh index anyway, and inserting them there costs
                        // less than building a segment (measured:
                        // docs/decisions/2026-12-05-bulk-loads.md).
                        let (ids, data, payloads) = b.take();
                        let dim = live.coll.options().dim;
                        let ops: Vec<Op> = ids
                            .into_iter()
                            .zip(data.chunks_exact(dim))
                            .zip(payloads)
                            .map(|((id, v), payload)| Op::Upsert {
                                id,
                                vector: v.to_vec(),
                                payload,
                            })
                            .collect();
                        let n = ops.len() as u64;
                        for chunk in ops.chunks(1024) {
                            last_lsn = st.apply(live.clone(), chunk.to_vec(), deadline).await?;
                        }
                        count += n;
                        st.count_writes(&live, n);
                    }
                }
            }
            Ok(())
        };
        match run.await {
            Ok(()) => Ok(Response::new(pb::WriteResponse { count, last_lsn })),
            Err(e) => st.fail(e.append(&format!(" ({count} points of this stream were written before it)"))),
        }
    }
}

/// Points of a BulkUpsert stream held for a bulk load: each id once (a
/// later point of the same id replaces the earlier), in arrival order.
struct BulkBuffer {
    dim: usize,
    ids: Vec<u64>,
    data: Vec<f32>,
    payloads: Vec<Vec<u8>>,
    row: std::collections::HashMap<u64, usize>,
    /// Points received into this buffer and earlier ones.
    received: u64,
}

/// A bulk load runs once this many bytes of vectors are buffered (and at
/// the end of the stream).
const BULK_BUFFER_BYTES: usize = 256 << 20;

impl BulkBuffer {
    fn new(dim: usize) -> Self {
        BulkBuffer {
            dim,
            ids: Vec::new(),
            data: Vec::new(),
            payloads: Vec::new(),
            row: Default::default(),
            received: 0,
        }
    }

    fn push(&mut self, ops: Vec<Op>) {
        for op in ops {
            let Op::Upsert { id, vector, payload } = op else {
                continue;
            };
            self.received += 1;
            match self.row.get(&id) {
                Some(&r) => {
                    self.data[r * self.dim..(r + 1) * self.dim].copy_from_slice(&vector);
                    self.payloads[r] = payload;
                }
                None => {
                    self.row.insert(id, self.ids.len());
                    self.ids.push(id);
                    self.data.extend_from_slice(&vector);
                    self.payloads.push(payload);
                }
            }
        }
    }

    fn full(&self) -> bool {
        self.data.len() * 4 >= BULK_BUFFER_BYTES
    }

    fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    fn len(&self) -> usize {
        self.ids.len()
    }

    /// The buffered points, leaving the buffer empty.
    fn take(&mut self) -> (Vec<u64>, Vec<f32>, Vec<Vec<u8>>) {
        self.row.clear();
        (
            std::mem::take(&mut self.ids),
            std::mem::take(&mut self.data),
            std::mem::take(&mut self.payloads),
        )
    }
}

impl AppState {
    /// Bulk-load buffered stream points into `live` (one segment, built at
    /// batch speed), within a reservation of the memory budget: (points,
    /// LSN). Durable and visible when it returns.
    async fn bulk_load(
        &self,
        live: Arc<Live>,
        (ids, data, payloads): (Vec<u64>, Vec<f32>, Vec<Vec<u8>>),
    ) -> Result<(u64, u64), ServiceError> {
        let n = ids.len();
        let dim = live.coll.options().dim;
        let estimate = quarry_engine::index::MemoryEstimate::for_build(n, dim, &live.build);
        let reservation = self.catalog.reserve(
            estimate.total(),
            &format!(
                "bulk-loading {n} x {dim} streamed vectors into {:?} ({estimate})",
                live.name
            ),
        )?;
        let _permit = self
            .write_permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ServiceError::Unavailable("the server is shutting down".into()))?;
        // Its own thread at background priority (a pooled thread would
        // keep the lower priority if it could not be raised back).
        let l = live.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name(format!("bulk-{}", live.name))
            .spawn(move || {
                let _background = quarry_engine::runtime::BackgroundPriority::enter();
                let r = l.coll.bulk_load(data.into(), &ids, payloads, 0, &mut |_, _, _| {});
                drop(reservation);
                let _ = tx.send(r);
            })
            .map_err(|e| ServiceError::Internal(format!("cannot start a bulk load thread: {e}")))?;
        let rep = rx
            .await
            .map_err(|_| ServiceError::Internal("the bulk load thread ended without an answer".into()))?
            .map_err(crate::live::live_error)?;
        Ok((n as u64, rep.lsn))
    }
}

impl AppState {
    /// Count `n` acknowledged writes to `live`, server-wide and per collection.
    fn count_writes(&self, live: &Live, n: u64) {
        self.metrics.writes.fetch_add(n, Ordering::Relaxed);
        live.stats.writes.fetch_add(n, Ordering::Relaxed);
    }
}
