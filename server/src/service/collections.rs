//! The Collections service: create, list, describe, drop, BuildIndex
//! (a bulk load as an operation) and GetOperation.

use super::*;

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
            let residency = residency_from_pb(r.residency)?;
            let p = r.index_params.unwrap_or_default();
            let params = catalog::IndexParams {
                max_degree: p.max_degree,
                build_list_size: p.build_list_size,
                alpha: p.alpha,
                pq_bytes: p.pq_bytes,
                opq: p.opq,
                nav_sample: p.nav_sample,
            };
            st.catalog.create(&r.name, r.dim, metric, params, stored, residency)?;
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
                r.first_id,
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

    async fn cancel_operation(
        &self,
        req: Request<pb::CancelOperationRequest>,
    ) -> Result<Response<pb::Operation>, Status> {
        let st = &self.0;
        if let Err(e) = st.check_open() {
            return st.fail(e);
        }
        match st.catalog.cancel_operation(&req.into_inner().id) {
            Ok(op) => Ok(Response::new(operation_to_pb(&op))),
            Err(e) => st.fail(e),
        }
    }
}
