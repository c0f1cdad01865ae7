//! Long-running operations (builds and compactions): their progress as
//! GetOperation reports it.
//!
//! Owns: [`Operation`], [`OpState`], the registry of operations by id
//! ([`Operations`]), and the one mapping of a build's stages to a single
//! monotonic progress figure ([`Operation::report`]). Does not own: the
//! work itself (the catalog's builds, the flusher's compactions).

use crate::error::ServiceError;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Progress of an operation, shared with GetOperation.
#[derive(Clone, Debug)]
pub struct Operation {
    /// Id.
    pub id: String,
    /// Collection.
    pub collection: String,
    /// Running, done or failed.
    pub state: OpState,
    /// Stage name.
    pub stage: String,
    /// 0..=1.
    pub progress: f64,
    /// Start time.
    pub started: Instant,
    /// End time, once finished.
    pub finished: Option<Instant>,
    /// Failure.
    pub error: String,
    /// Vectors it works on.
    pub vector_count: u64,
}

/// Where an operation is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpState {
    /// Running.
    Running,
    /// Finished.
    Done,
    /// Failed.
    Failed,
}

impl Operation {
    /// A build stage's progress (`done` of `total` in `stage`, as the
    /// engine's progress callback reports it) as one monotonic figure: the
    /// stages weighted by their usual share of a build's time.
    pub fn report(&mut self, stage: &str, done: usize, total: usize) {
        // A partitioned build plans, trains PQ, assigns, builds shards and
        // merges where the one-pass build trains PQ and builds its graph.
        let (a, b) = match stage {
            "partition" => (0.0, 0.05),
            "pq" => (0.0, 0.1),
            "assign" => (0.1, 0.15),
            "graph" => (0.1, 0.85),
            "shards" => (0.15, 0.8),
            "merge" => (0.8, 0.85),
            "nav" => (0.85, 0.9),
            _ => (0.9, 0.99),
        };
        let f = if total > 0 { done as f64 / total as f64 } else { 0.0 };
        self.stage = stage.to_string();
        self.progress = self.progress.max(a + (b - a) * f);
    }

    /// The operation ended: `Ok(vectors)` or why it failed.
    pub fn finish(&mut self, outcome: Result<u64, String>) {
        self.finished = Some(Instant::now());
        match outcome {
            Ok(n) => {
                self.state = OpState::Done;
                self.stage = "done".into();
                self.progress = 1.0;
                self.vector_count = n;
            }
            Err(e) => {
                self.state = OpState::Failed;
                self.error = e;
            }
        }
    }
}

/// Every operation since start, by id.
#[derive(Default)]
pub struct Operations {
    ops: Mutex<HashMap<String, Arc<Mutex<Operation>>>>,
    next: AtomicU64,
}

impl Operations {
    /// Register a new running operation `<kind>-<collection>-<n>`.
    pub fn start(&self, kind: &str, collection: &str, stage: &str, vector_count: u64) -> Arc<Mutex<Operation>> {
        let id = format!("{kind}-{collection}-{}", self.next.fetch_add(1, Ordering::Relaxed) + 1);
        let op = Arc::new(Mutex::new(Operation {
            id: id.clone(),
            collection: collection.into(),
            state: OpState::Running,
            stage: stage.into(),
            progress: 0.0,
            started: Instant::now(),
            finished: None,
            error: String::new(),
            vector_count,
        }));
        self.ops.lock().expect("lock").insert(id, op.clone());
        op
    }

    /// A snapshot of operation `id`.
    pub fn get(&self, id: &str) -> Result<Operation, ServiceError> {
        self.ops
            .lock()
            .expect("lock")
            .get(id)
            .map(|o| o.lock().expect("lock").clone())
            .ok_or_else(|| ServiceError::NotFound(format!("operation {id:?} does not exist")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_is_monotonic_across_stages_and_ids_are_unique() {
        let ops = Operations::default();
        let a = ops.start("build", "docs", "reading", 10);
        let b = ops.start("build", "docs", "reading", 10);
        assert_ne!(a.lock().unwrap().id, b.lock().unwrap().id);
        let mut g = a.lock().unwrap();
        let mut last = 0.0;
        for (stage, done, total) in [
            ("pq", 5, 10),
            ("pq", 10, 10),
            ("graph", 1, 100),
            ("graph", 100, 100),
            ("nav", 0, 1),
            ("write", 1, 2),
        ] {
            g.report(stage, done, total);
            assert!(g.progress >= last && g.progress < 1.0, "{stage}: {}", g.progress);
            last = g.progress;
        }
        g.finish(Ok(7));
        assert_eq!((g.state, g.progress, g.vector_count), (OpState::Done, 1.0, 7));
        drop(g);
        // A partitioned build's stages move it forward too, the shards
        // taking most of the way.
        let mut g = b.lock().unwrap();
        let mut last = 0.0;
        for (stage, done, total) in [
            ("partition", 1, 1),
            ("pq", 10, 10),
            ("assign", 10, 10),
            ("shards", 1, 10),
            ("shards", 10, 10),
            ("merge", 5, 10),
            ("nav", 1, 1),
            ("write", 2, 2),
        ] {
            g.report(stage, done, total);
            assert!(g.progress > last && g.progress < 1.0, "{stage}: {}", g.progress);
            last = g.progress;
        }
        drop(g);
        let b_id = b.lock().unwrap().id.clone();
        assert_eq!(ops.get(&b_id).unwrap().state, OpState::Running);
        assert!(matches!(ops.get("nope"), Err(ServiceError::NotFound(_))));
    }
}
