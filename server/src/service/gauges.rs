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
