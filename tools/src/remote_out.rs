//! How quarryctl prints what quarryd answers: a short table by default,
//! one JSON object per line with `--json`, the same for every command.
//!
//! Owns: the printed forms of collections, operations, writes, records
//! and searches. Does not own: the requests (`cmd_remote`).

use quarry_proto::v1 as pb;

/// What an upsert run did.
pub(crate) struct Upserted<'a> {
    pub name: &'a str,
    pub count: u64,
    pub last_lsn: u64,
    pub t0: std::time::Instant,
    pub dim: usize,
    pub batch: usize,
    pub unary: bool,
}

pub(crate) fn print_upserted(u: &Upserted<'_>, json: bool) {
    let secs = u.t0.elapsed().as_secs_f64();
    let rate = u.count as f64 / secs;
    if !json {
        println!(
            "{}: {} vectors upserted in {secs:.1} s ({rate:.0}/s, {}{}), last LSN {}",
            u.name,
            u.count,
            if u.unary { "unary calls of " } else { "BulkUpsert, " },
            format_args!("{} per message", u.batch),
            u.last_lsn
        );
        return;
    }
    let mut j = serde_json::json!({"collection": u.name, "upserted": u.count, "last_lsn": u.last_lsn,
        "seconds": secs, "vectors_per_second": rate, "dim": u.dim, "batch": u.batch});
    if u.unary {
        j["unary"] = serde_json::json!(true);
    }
    println!("{j}");
}

/// One collection in full: aligned `key  value` lines, or one JSON object.
pub(crate) fn print_describe(c: &pb::Collection, json: bool) {
    print_object(&collection_json(c), json);
}

/// Any one result: aligned `key  value` lines (nested keys joined by
/// dots), or one JSON object.
pub(crate) fn print_object(v: &serde_json::Value, json: bool) {
    if json {
        println!("{v}");
        return;
    }
    let mut flat = Vec::new();
    flatten("", v, &mut flat);
    let w = flat.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, val) in flat {
        println!("{k:<w$}  {val}");
    }
}

fn flatten(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, String)>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, x, out);
            }
        }
        serde_json::Value::String(s) => {
            out.push((prefix.to_string(), if s.is_empty() { "-".into() } else { s.clone() }))
        }
        serde_json::Value::Null => out.push((prefix.to_string(), "-".into())),
        x => out.push((prefix.to_string(), x.to_string())),
    }
}

/// A Get's answer: one line per found record (id, dimension, payload),
/// then the missing ids; with `--json` one object per record (vector
/// included) and one listing the missing ids.
pub(crate) fn print_records(r: &pb::GetResponse, json: bool) {
    for rec in &r.records {
        if json {
            println!(
                "{}",
                serde_json::json!({"id": rec.id, "vector": rec.vector,
                    "payload": String::from_utf8_lossy(&rec.payload), "payload_bytes": rec.payload.len()})
            );
        } else {
            let head: Vec<String> = rec.vector.iter().take(4).map(|x| format!("{x:.4}")).collect();
            println!(
                "{:<20} {:>5}-d [{}{}]  payload {} B{}",
                rec.id,
                rec.vector.len(),
                head.join(", "),
                if rec.vector.len() > 4 { ", …" } else { "" },
                rec.payload.len(),
                if rec.payload.is_empty() {
                    String::new()
                } else {
                    format!(
                        " {:?}",
                        String::from_utf8_lossy(&rec.payload[..rec.payload.len().min(40)])
                    )
                }
            );
        }
    }
    if json {
        if !r.missing_ids.is_empty() {
            println!("{}", serde_json::json!({"missing_ids": r.missing_ids}));
        }
    } else if !r.missing_ids.is_empty() {
        let ids: Vec<String> = r.missing_ids.iter().map(u64::to_string).collect();
        println!("missing: {}", ids.join(", "));
    }
}

/// A write's acknowledgement.
pub(crate) fn print_write(name: &str, what: &str, r: &pb::WriteResponse, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::json!({"collection": name, what: r.count, "last_lsn": r.last_lsn})
        );
    } else {
        println!("{name}: {} {what}, last LSN {}", r.count, r.last_lsn);
    }
}

/// A search run's summary (`j` holds the figures).
pub(crate) fn print_search(j: &serde_json::Value, json: bool) {
    if json {
        println!("{j}");
        return;
    }
    let f = |k: &str| j[k].as_f64().unwrap_or(f64::NAN);
    println!(
        "{}: {} queries, k {}, L {}, W {}: {}p50 {:.0} µs, p99 {:.0} µs, {:.0} QPS from one client, {:.1} reads/query",
        j["collection"].as_str().unwrap_or("?"),
        j["queries"],
        j["k"],
        j["L"],
        j["W"],
        j["recall_at_k"]
            .as_f64()
            .map(|r| format!("recall@k {r:.4}, "))
            .unwrap_or_default(),
        f("lat_p50_us"),
        f("lat_p99_us"),
        f("qps_one_client"),
        f("mean_ios")
    );
}

fn state_name(s: i32) -> &'static str {
    match pb::CollectionState::try_from(s) {
        Ok(pb::CollectionState::Empty) => "empty",
        Ok(pb::CollectionState::Building) => "building",
        Ok(pb::CollectionState::Ready) => "ready",
        Ok(pb::CollectionState::Failed) => "failed",
        _ => "?",
    }
}

pub(crate) fn collection_json(c: &pb::Collection) -> serde_json::Value {
    let p = c.index_params.unwrap_or_default();
    let ram = c.ram.unwrap_or_default();
    serde_json::json!({
        "name": c.name, "dim": c.dim,
        "metric": pb::Metric::try_from(c.metric).map(|m| m.as_str_name()).unwrap_or("?"),
        "state": state_name(c.state), "vectors": c.vector_count,
        "R": p.max_degree, "L": p.build_list_size, "alpha": p.alpha.to_string().parse::<f64>().unwrap_or(f64::NAN), "pq_bytes": p.pq_bytes,
        "stored_vector": pb::StoredVector::try_from(c.stored_vector).map(|m| m.as_str_name()).unwrap_or("?"),
        "operation_id": c.operation_id, "error": c.error,
        "ram_bytes": {"pq_codes": ram.pq_codes, "pq_pivots": ram.pq_pivots, "nav_tier": ram.nav_tier,
                      "cache": ram.cache, "id_map": ram.id_map, "total": ram.total},
        "disk_bytes": c.disk_bytes,
        "residency": pb::Residency::try_from(c.residency).map(|m| m.as_str_name()).unwrap_or("?"),
        "mutable": c.mutable,
        "writes": c.writes.as_ref().map(|w| serde_json::json!({
            "fresh_vectors": w.fresh_vectors, "segments": w.segments, "last_lsn": w.last_lsn,
            "durable_lsn": w.durable_lsn, "wal_bytes": w.wal_bytes, "flushing": w.flushing,
            "flushes": w.flushes, "last_flush_error": w.last_flush_error})),
        "fresh_index_ram_bytes": ram.fresh_index,
    })
}

pub(crate) fn print_collection(c: &pb::Collection, json: bool) {
    if json {
        println!("{}", collection_json(c));
    } else {
        println!(
            "{:<24} {:>5}-d {:<14} {:<9} {:>12} vectors  RAM {:>8.1} MiB  disk {:>8.1} MiB{}",
            c.name,
            c.dim,
            pb::Metric::try_from(c.metric).map(|m| m.as_str_name()).unwrap_or("?"),
            state_name(c.state),
            c.vector_count,
            c.ram.as_ref().map_or(0, |r| r.total) as f64 / 1048576.0,
            c.disk_bytes as f64 / 1048576.0,
            if c.error.is_empty() {
                String::new()
            } else {
                format!("  error: {}", c.error)
            }
        );
    }
}

/// A snapshot as CreateSnapshot wrote it or VerifySnapshot checked it.
pub(crate) fn snapshot_json(i: &pb::SnapshotInfo) -> serde_json::Value {
    serde_json::json!({"dir": i.dir, "collection": i.collection, "lsn": i.lsn,
        "checkpoint_lsn": i.checkpoint_lsn, "files": i.files, "bytes": i.bytes,
        "linked_files": i.linked_files, "copied_files": i.copied_files, "seconds": i.seconds,
        "copy_reason": i.copy_reason, "leftovers_removed": i.leftovers_removed.join(", ")})
}

/// An operation as GetOperation answers it.
pub(crate) fn operation_json(o: &pb::Operation) -> serde_json::Value {
    let state = pb::OperationState::try_from(o.state)
        .map(|s| s.as_str_name().trim_start_matches("OPERATION_STATE_").to_lowercase())
        .unwrap_or_else(|_| o.state.to_string());
    serde_json::json!({"operation_id": o.id, "collection": o.collection, "state": state,
        "stage": o.stage, "progress": o.progress, "elapsed_seconds": o.elapsed_seconds,
        "eta_seconds": o.eta_seconds, "vectors": o.vector_count, "error": o.error})
}

pub(crate) fn print_operation(o: &pb::Operation, json: bool) {
    let v = operation_json(o);
    if json {
        println!("{v}");
        return;
    }
    println!(
        "{:<32} {:<10} {:<9} {:>5.1} %  {:>8.0} s  {} vectors{}",
        o.id,
        v["state"].as_str().unwrap_or("?"),
        o.stage,
        o.progress * 100.0,
        o.elapsed_seconds,
        o.vector_count,
        if o.error.is_empty() {
            String::new()
        } else {
            format!("  ({})", o.error)
        }
    );
}
