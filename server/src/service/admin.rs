//! The Admin service: Stats, Compact, and the snapshot calls (their
//! work in `snapshots`).

use super::*;

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
            let (r, f) = live_ram(&e.live);
            ram += r;
            fresh += f;
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

    async fn create_snapshot(
        &self,
        req: Request<pb::CreateSnapshotRequest>,
    ) -> Result<Response<pb::SnapshotInfo>, Status> {
        self.0.answer(self.0.create_snapshot(req.into_inner()).await)
    }

    async fn verify_snapshot(
        &self,
        req: Request<pb::VerifySnapshotRequest>,
    ) -> Result<Response<pb::SnapshotInfo>, Status> {
        self.0.answer(self.0.verify_snapshot(req.into_inner()).await)
    }

    async fn restore_snapshot(
        &self,
        req: Request<pb::RestoreSnapshotRequest>,
    ) -> Result<Response<pb::Collection>, Status> {
        self.0.answer(self.0.restore_snapshot(req.into_inner()).await)
    }
}
