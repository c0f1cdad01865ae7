//! The service's gauges in Prometheus text: shards, queues, RAM by
//! collection and component, writes. Counters and histograms live in
//! `crate::metrics`; this adds what is read off the collections and shards
//! at scrape time.

use super::*;

impl AppState {
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
            let (r, fresh) = live_ram(&e.live);
            let fresh = fresh as usize;
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
        o.push_str(&collection_gauges(&self.catalog));
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
        if let Some(r) = &self.replica {
            o.push_str(&replication_gauges(r, &self.catalog));
        }
        o
    }
}

/// The pair's gauges and counters: role, epoch, lease, eligibility, lag
/// per collection, acks, snapshots, fenced messages.
fn replication_gauges(r: &crate::replication::node::Replica, catalog: &Catalog) -> String {
    use std::fmt::Write as _;
    let st = crate::replication::service::status(r, catalog);
    let mut o = String::new();
    let mut one = |name: &str, kind: &str, help: &str, v: String| {
        let _ = writeln!(o, "# HELP {name} {help}");
        let _ = writeln!(o, "# TYPE {name} {kind}");
        let _ = writeln!(o, "{name} {v}");
    };
    one(
        "quarry_replication_role",
        "gauge",
        "This node's role: 1 primary, 2 standby.",
        if st.role == "primary" { "1" } else { "2" }.into(),
    );
    one(
        "quarry_replication_epoch_term",
        "gauge",
        "The newest epoch's term this node knows.",
        st.epoch.map_or(0, |e| e.term).to_string(),
    );
    one(
        "quarry_replication_connected",
        "gauge",
        "1 while a standby follows this primary, or this standby follows its primary.",
        (st.connected as u8).to_string(),
    );
    one(
        "quarry_replication_eligible",
        "gauge",
        "Standby: 1 when it may be promoted without --accept-loss.",
        (st.eligible as u8).to_string(),
    );
    one(
        "quarry_replication_degraded",
        "gauge",
        "Primary: 1 while it acknowledges writes without its standby.",
        (st.degraded as u8).to_string(),
    );
    one(
        "quarry_replication_lease_left_seconds",
        "gauge",
        "Primary: time left on its write lease.",
        format!("{}", st.lease_left_ms as f64 / 1e3),
    );
    for (name, help, v) in [
        (
            "quarry_replication_acks_total",
            "Acks received (primary) or sent (standby).",
            st.acks,
        ),
        (
            "quarry_replication_snapshots_sent_total",
            "Snapshots sent to a standby.",
            st.snapshots_sent,
        ),
        (
            "quarry_replication_snapshots_received_total",
            "Snapshots installed from the primary.",
            st.snapshots_received,
        ),
        (
            "quarry_replication_fenced_total",
            "Messages refused or answered Fenced for a stale epoch.",
            st.fenced,
        ),
    ] {
        one(name, "counter", help, v.to_string());
    }
    let _ = writeln!(o, "# HELP quarry_replication_lag_records Records the peer lags by (primary: the standby's ack; standby: the primary's durable LSN).");
    let _ = writeln!(o, "# TYPE quarry_replication_lag_records gauge");
    for c in &st.collections {
        let lag = if st.role == "primary" {
            c.last_lsn.saturating_sub(c.peer_lsn)
        } else {
            c.peer_lsn.saturating_sub(c.durable_lsn)
        };
        let _ = writeln!(o, "quarry_replication_lag_records{{collection=\"{}\"}} {lag}", c.name);
    }
    let _ = writeln!(o, "# HELP quarry_replication_lag_bytes Primary: bytes of log the standby has not acknowledged (estimated for records not yet sent).");
    let _ = writeln!(o, "# TYPE quarry_replication_lag_bytes gauge");
    for c in &st.collections {
        let _ = writeln!(
            o,
            "quarry_replication_lag_bytes{{collection=\"{}\"}} {}",
            c.name, c.lag_bytes
        );
    }
    let _ = writeln!(
        o,
        "# HELP quarry_replication_lag_seconds How long the peer has been behind (0 when caught up)."
    );
    let _ = writeln!(o, "# TYPE quarry_replication_lag_seconds gauge");
    for c in &st.collections {
        let _ = writeln!(
            o,
            "quarry_replication_lag_seconds{{collection=\"{}\"}} {}",
            c.name, c.lag_seconds
        );
    }
    o
}

/// Per collection: its counters and latency (`CollectionStats`), the write
/// path's state, and the operations with their progress.
fn collection_gauges(catalog: &Catalog) -> String {
    use std::fmt::Write as _;
    let lives: Vec<(String, Arc<Live>)> = catalog
        .list()
        .into_iter()
        .map(|e| (e.meta.read().expect("lock").name.clone(), e.live.clone()))
        .collect();
    let mut per: [String; 5] = Default::default();
    for (name, live) in &lives {
        live.stats.render(name, &mut per);
    }
    let mut o = String::new();
    for ((name, kind, help), body) in crate::metrics::COLLECTION_METRICS.iter().zip(&per) {
        let _ = writeln!(o, "# HELP {name} {help}");
        let _ = writeln!(o, "# TYPE {name} {kind}");
        o.push_str(body);
    }
    let states: Vec<(String, pb::WriteState)> = lives.iter().map(|(n, l)| (n.clone(), write_state(l))).collect();
    for (metric, help, f) in [
        (
            "quarry_collection_fresh_vectors",
            "Vectors in the in-RAM fresh index, not yet flushed to a segment.",
            (|w: &pb::WriteState| w.fresh_vectors) as fn(&pb::WriteState) -> u64,
        ),
        ("quarry_collection_segments", "Disk segments.", |w| w.segments as u64),
        (
            "quarry_collection_wal_bytes",
            "Bytes of write-ahead log on disk.",
            |w| w.wal_bytes,
        ),
        ("quarry_collection_last_lsn", "The last LSN written to the log.", |w| {
            w.last_lsn
        }),
        (
            "quarry_collection_durable_lsn",
            "The last LSN durable in the log.",
            |w| w.durable_lsn,
        ),
        ("quarry_collection_flushing", "1 while a flush or merge runs.", |w| {
            w.flushing as u64
        }),
    ] {
        let _ = writeln!(o, "# HELP {metric} {help}");
        let _ = writeln!(o, "# TYPE {metric} gauge");
        for (name, w) in &states {
            let _ = writeln!(o, "{metric}{{collection=\"{name}\"}} {}", f(w));
        }
    }
    let ops = catalog.operations();
    let _ = writeln!(
        o,
        "# HELP quarry_operations Builds and compactions held, by state (the running ones and the last 1,000 ended)."
    );
    let _ = writeln!(o, "# TYPE quarry_operations gauge");
    for (state, label) in [
        (OpState::Running, "running"),
        (OpState::Done, "done"),
        (OpState::Failed, "failed"),
        (OpState::Cancelled, "cancelled"),
    ] {
        let n = ops.iter().filter(|x| x.state == state).count();
        let _ = writeln!(o, "quarry_operations{{state=\"{label}\"}} {n}");
    }
    let _ = writeln!(
        o,
        "# HELP quarry_operation_progress A running build's or compaction's progress, 0..=1."
    );
    let _ = writeln!(o, "# TYPE quarry_operation_progress gauge");
    for x in ops.iter().filter(|x| x.state == OpState::Running) {
        let _ = writeln!(
            o,
            "quarry_operation_progress{{id=\"{}\",collection=\"{}\",stage=\"{}\"}} {}",
            x.id, x.collection, x.stage, x.progress
        );
    }
    o
}
