//! The Query service: Search, SearchBatch and Get.

use super::*;

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
            let o = st.search_one(open.clone(), r.vector, params, deadline).await?;
            let payloads = r.with_payload.then(|| payloads_of(&open, &o));
            Ok(outcome_to_pb(o, start, open.coll.options().metric, payloads))
        };
        match run.await {
            Ok(o) => Ok(Response::new(o)),
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
            // A batch may hold more queries than the shards queue at once
            // (max_batch against shards x queue_depth): it is submitted in
            // a window of half that room, so a batch neither fails on an
            // idle server nor fills every queue for the other clients.
            let window = (st.shards.len() * st.config.queue_depth / 2).max(1);
            let mut pending = std::collections::VecDeque::with_capacity(window.min(nq));
            let mut results = Vec::with_capacity(nq);
            let answer = |o: SearchOutcome| {
                let payloads = r.with_payload.then(|| payloads_of(&open, &o));
                outcome_to_pb(o, start, open.coll.options().metric, payloads)
            };
            for q in r.vectors.chunks_exact(d) {
                if pending.len() == window {
                    let rx: Waiting = pending.pop_front().expect("the window is full");
                    results.push(answer(wait(rx).await?));
                }
                pending.push_back(st.enqueue(open.clone(), q.to_vec(), params, deadline)?);
            }
            for rx in pending {
                results.push(answer(wait(rx).await?));
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
            tokio::task::spawn_blocking(move || {
                let mut records = Vec::with_capacity(r.ids.len());
                let mut missing_ids = Vec::new();
                for &id in &r.ids {
                    match open.coll.get(id).map_err(crate::live::live_error)? {
                        Some((vector, payload)) => records.push(pb::Record { id, vector, payload }),
                        None => missing_ids.push(id),
                    }
                }
                Ok(pb::GetResponse { records, missing_ids })
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

/// The payloads of a search's neighbours, from RAM.
fn payloads_of(open: &crate::live::Live, o: &crate::shard::SearchOutcome) -> Vec<Option<std::sync::Arc<[u8]>>> {
    let ids: Vec<u64> = o.neighbors.iter().map(|n| n.id).collect();
    open.coll.payloads(&ids)
}

/// A queued search's answer, to come.
type Waiting = tokio::sync::oneshot::Receiver<Result<SearchOutcome, ServiceError>>;

/// Wait for a queued search.
async fn wait(rx: Waiting) -> Result<SearchOutcome, ServiceError> {
    rx.await
        .map_err(|_| ServiceError::Unavailable("the shard stopped before answering".into()))?
}
