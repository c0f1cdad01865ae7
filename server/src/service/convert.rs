//! Wire ↔ engine conversions: metrics, stored types, RAM, collections,
//! operations and search answers as quarry.v1 messages.
//!
//! Owns: those mappings only. Does not own: validation (the services).

use super::*;

pub(super) fn metric_from_pb(m: i32) -> Result<Metric, ServiceError> {
    match pb::Metric::try_from(m) {
        Ok(pb::Metric::L2) => Ok(Metric::L2),
        Ok(pb::Metric::Ip) => Ok(Metric::Ip),
        Ok(pb::Metric::Cosine) => Ok(Metric::Cosine),
        _ => Err(ServiceError::InvalidArgument(format!(
            "metric = {m} is not one of METRIC_L2 (1), METRIC_IP (2), METRIC_COSINE (3)"
        ))),
    }
}

pub(super) fn metric_to_pb(m: Metric) -> pb::Metric {
    match m {
        Metric::L2 => pb::Metric::L2,
        Metric::Ip => pb::Metric::Ip,
        Metric::Cosine => pb::Metric::Cosine,
    }
}

pub(super) fn stored_from_pb(s: i32) -> Result<Option<StoredType>, ServiceError> {
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

pub(super) fn residency_from_pb(r: i32) -> Result<catalog::Residency, ServiceError> {
    match pb::Residency::try_from(r) {
        Ok(pb::Residency::Unspecified | pb::Residency::Disk) => Ok(catalog::Residency::Disk),
        Ok(pb::Residency::Ram) => Ok(catalog::Residency::Ram),
        Err(_) => Err(ServiceError::InvalidArgument(format!(
            "residency = {r} is not a Residency value"
        ))),
    }
}

pub(super) fn stored_to_pb(s: StoredType) -> pb::StoredVector {
    match s {
        StoredType::F32 => pb::StoredVector::F32,
        StoredType::F16 => pb::StoredVector::F16,
        StoredType::I8 => pb::StoredVector::I8,
    }
}

pub(super) fn ram_to_pb(r: &quarry_engine::index::RamUsage) -> pb::RamUsage {
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

/// RAM of a collection from one pass over it: (segment parts,
/// with ids, slots and payloads counted as `ids`; the fresh index).
pub(super) fn live_ram(l: &Live) -> (quarry_engine::index::RamUsage, u64) {
    let r = l.coll.ram();
    let mut u = r.segments;
    u.ids += r.ids;
    (u, r.fresh as u64)
}

pub(super) fn write_state(l: &Live) -> pb::WriteState {
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

pub(super) fn collection_to_pb(e: &Entry) -> pb::Collection {
    let m = e.meta.read().expect("lock").clone();
    let l = &e.live;
    let (ram, fresh) = live_ram(l);
    let mut ram_pb = ram_to_pb(&ram);
    ram_pb.fresh_index = fresh;
    ram_pb.total += fresh;
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
        vector_count: l.coll.len() as u64,
        operation_id: m.operation_id.clone(),
        error: m.error.clone(),
        ram: Some(ram_pb),
        disk_bytes: l.coll.disk_bytes(),
        mutable: true,
        writes: Some(write_state(l)),
        residency: match m.residency {
            catalog::Residency::Disk => pb::Residency::Disk,
            catalog::Residency::Ram => pb::Residency::Ram,
        } as i32,
    }
}

pub(super) fn operation_to_pb(o: &catalog::Operation) -> pb::Operation {
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
            OpState::Cancelled => pb::OperationState::Cancelled,
        } as i32,
        stage: o.stage.clone(),
        progress: o.progress,
        elapsed_seconds: elapsed,
        eta_seconds: eta,
        error: o.error.clone(),
        vector_count: o.vector_count,
    }
}

/// The answer for the wire; `handler_start` is when the handler had the
/// decoded request.
/// `distance` as a similarity, larger closer (see `Neighbor.score`).
pub(super) fn score(metric: quarry_engine::Metric, distance: f32) -> f32 {
    match metric {
        quarry_engine::Metric::Cosine => 1.0 - distance,
        quarry_engine::Metric::L2 | quarry_engine::Metric::Ip => -distance,
    }
}

/// The answer for the wire; `payloads` (one per neighbour) when the
/// request asked for them.
pub(super) fn outcome_to_pb(
    o: SearchOutcome,
    handler_start: Instant,
    metric: quarry_engine::Metric,
    payloads: Option<Vec<Option<std::sync::Arc<[u8]>>>>,
) -> pb::SearchResponse {
    pb::SearchResponse {
        neighbors: o
            .neighbors
            .iter()
            .enumerate()
            .map(|(i, n)| pb::Neighbor {
                id: n.id,
                distance: n.distance,
                payload: payloads
                    .as_ref()
                    .and_then(|p| p.get(i).cloned().flatten())
                    .map(|p| p.to_vec())
                    .unwrap_or_default(),
                score: score(metric, n.distance),
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
