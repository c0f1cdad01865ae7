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
                    let found = open.coll.get(id).map_err(crate::live::live_error)?;
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
