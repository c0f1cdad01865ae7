//! Long-running operations (builds and compactions): their progress as
//! GetOperation reports it.
//!
//! Owns: [`Operation`], [`OpState`], the registry of operations by id
//! ([`Operations`]), recording each start and end in the journal
//! (`op_journal`), and the one mapping of a build's stages to a single
//! monotonic progress figure ([`Operation::report`]). Does not own: the
//! work itself (the catalog's builds, the flusher's compactions).

use crate::error::ServiceError;
use crate::op_journal::{self, Journal, Record};
use quarry_engine::cancel::CancelToken;
use quarry_engine::storage::Vfs;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Progress of an operation, shared with GetOperation.
#[derive(Clone, Debug)]
pub struct Operation {
    /// Id: `<kind>-<collection>-<n>`, `n` never handed out twice.
    pub id: String,
    /// The id's number.
    pub n: u64,
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
    /// Set by CancelOperation (or a drop); the work stops at its next
    /// check.
    pub cancel: CancelToken,
    /// Where its end is recorded (none for a registry kept in memory).
    journal: Option<Arc<Mutex<Journal>>>,
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
    /// Stopped by CancelOperation or a drop, nothing of it kept.
    Cancelled,
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

    /// The operation ended: `Ok(vectors)` or why it failed. The end is
    /// journaled; if that fails the operation still ends here, and after a
    /// restart it reads as interrupted.
    pub fn finish(&mut self, outcome: Result<u64, String>) {
        self.finished = Some(Instant::now());
        match outcome {
            Ok(n) => {
                self.state = OpState::Done;
                self.stage = "done".into();
                self.progress = 1.0;
                self.vector_count = n;
            }
            Err(e) if self.cancel.is_cancelled() => {
                self.state = OpState::Cancelled;
                self.error = e;
            }
            Err(e) => {
                self.state = OpState::Failed;
                self.error = e;
            }
        }
        if let Some(j) = &self.journal {
            let end = Record::End {
                v: op_journal::VERSION,
                id: self.id.clone(),
                state: state_name(self.state).into(),
                stage: self.stage.clone(),
                progress: self.progress,
                error: self.error.clone(),
                vector_count: self.vector_count,
                elapsed_seconds: self.started.elapsed().as_secs_f64(),
            };
            let mut j = j.lock().expect("lock");
            if let Err(e) = j.append(&end) {
                tracing::error!(operation = %self.id, path = %j.path().display(), error = %e, "cannot record the operation's end");
            }
        }
    }
}

fn state_name(s: OpState) -> &'static str {
    match s {
        OpState::Running => "running",
        OpState::Done => "done",
        OpState::Failed => "failed",
        OpState::Cancelled => "cancelled",
    }
}

/// Every operation of this run and the last [`op_journal::KEEP`] of
/// earlier ones, by id.
#[derive(Default)]
pub struct Operations {
    ops: Mutex<HashMap<String, Arc<Mutex<Operation>>>>,
    /// Id numbers of a registry kept in memory only (tests).
    next: AtomicU64,
    journal: Option<Arc<Mutex<Journal>>>,
}

impl Operations {
    /// The registry recorded in `dir`'s journal: earlier operations as
    /// they ended, and one that was running when the server stopped marked
    /// failed (and journaled so).
    pub fn open(fs: Arc<dyn Vfs>, dir: &Path) -> Result<Operations, ServiceError> {
        let (journal, entries) = Journal::open(fs, dir).map_err(|e| {
            ServiceError::Internal(format!(
                "operations journal {}: {e}",
                dir.join(op_journal::FILE).display()
            ))
        })?;
        let journal = Arc::new(Mutex::new(journal));
        let mut ops = HashMap::new();
        let now = Instant::now();
        for e in entries {
            let Record::Start {
                n,
                id,
                collection,
                stage,
                vector_count,
                ..
            } = e.start
            else {
                continue;
            };
            let mut op = Operation {
                id: id.clone(),
                n,
                collection,
                state: OpState::Running,
                stage,
                progress: 0.0,
                started: now,
                finished: None,
                error: String::new(),
                vector_count,
                cancel: CancelToken::default(),
                journal: Some(journal.clone()),
            };
            match e.end {
                Some(Record::End {
                    state,
                    stage,
                    progress,
                    error,
                    vector_count,
                    elapsed_seconds,
                    ..
                }) => {
                    op.started = now
                        .checked_sub(Duration::from_secs_f64(elapsed_seconds.clamp(0.0, 1e9)))
                        .unwrap_or(now);
                    op.finished = Some(now);
                    op.state = match state.as_str() {
                        "done" => OpState::Done,
                        "cancelled" => OpState::Cancelled,
                        _ => OpState::Failed,
                    };
                    op.stage = stage;
                    op.progress = progress;
                    op.error = error;
                    op.vector_count = vector_count;
                }
                _ => op.finish(Err("interrupted by a server restart".into())),
            }
            ops.insert(id, Arc::new(Mutex::new(op)));
        }
        Ok(Operations {
            ops: Mutex::new(ops),
            next: AtomicU64::new(0),
            journal: Some(journal),
        })
    }

    /// Register a new running operation `<kind>-<collection>-<n>`; with a
    /// journal, its start is durable before the id is returned.
    pub fn start(
        &self,
        kind: &str,
        collection: &str,
        stage: &str,
        vector_count: u64,
    ) -> Result<Arc<Mutex<Operation>>, ServiceError> {
        let n = match &self.journal {
            Some(j) => {
                let mut j = j.lock().expect("lock");
                let n = j.take();
                let id = format!("{kind}-{collection}-{n}");
                let rec = Record::Start {
                    v: op_journal::VERSION,
                    n,
                    id,
                    collection: collection.into(),
                    stage: stage.into(),
                    vector_count,
                    started_unix_ms: std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as u64),
                };
                j.append(&rec).map_err(|e| {
                    ServiceError::Unavailable(format!("cannot record the operation in {}: {e}", j.path().display()))
                })?;
                n
            }
            None => self.next.fetch_add(1, Ordering::Relaxed) + 1,
        };
        let id = format!("{kind}-{collection}-{n}");
        let op = Arc::new(Mutex::new(Operation {
            id: id.clone(),
            n,
            collection: collection.into(),
            state: OpState::Running,
            stage: stage.into(),
            progress: 0.0,
            started: Instant::now(),
            finished: None,
            error: String::new(),
            vector_count,
            cancel: CancelToken::default(),
            journal: self.journal.clone(),
        }));
        let mut ops = self.ops.lock().expect("lock");
        ops.insert(id, op.clone());
        // Past twice the kept count, the oldest finished ones go.
        if ops.len() > 2 * op_journal::KEEP {
            let mut done: Vec<(u64, String)> = ops
                .iter()
                .filter_map(|(id, o)| {
                    let o = o.lock().expect("lock");
                    (o.state != OpState::Running).then(|| (o.n, id.clone()))
                })
                .collect();
            done.sort_unstable();
            let extra = ops.len() - op_journal::KEEP;
            for (_, id) in done.into_iter().take(extra) {
                ops.remove(&id);
            }
        }
        Ok(op)
    }

    /// Ask operation `id` to stop; a snapshot of it (still RUNNING until
    /// the work reaches its next check, then CANCELLED).
    /// FAILED_PRECONDITION once it has ended.
    pub fn cancel(&self, id: &str) -> Result<Operation, ServiceError> {
        let op = self.handle(id)?;
        let g = op.lock().expect("lock");
        if g.state != OpState::Running {
            return Err(ServiceError::FailedPrecondition(format!(
                "operation {id:?} has already ended ({})",
                state_name(g.state)
            )));
        }
        g.cancel.cancel();
        Ok(g.clone())
    }

    /// Cancel operation `id` if it runs and wait up to `within` for it to
    /// stop. UNAVAILABLE if it is still running then.
    pub fn cancel_and_wait(&self, id: &str, within: Duration) -> Result<(), ServiceError> {
        let op = self.handle(id)?;
        op.lock().expect("lock").cancel.cancel();
        let t = Instant::now();
        while op.lock().expect("lock").state == OpState::Running {
            if t.elapsed() > within {
                return Err(ServiceError::Unavailable(format!(
                    "operation {id:?} was asked to stop but is still running after {within:?}; try again"
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    fn handle(&self, id: &str) -> Result<Arc<Mutex<Operation>>, ServiceError> {
        self.ops
            .lock()
            .expect("lock")
            .get(id)
            .cloned()
            .ok_or_else(|| ServiceError::NotFound(format!("operation {id:?} does not exist")))
    }

    /// A snapshot of every operation held (running ones and the kept
    /// finished ones), by id number.
    pub fn all(&self) -> Vec<Operation> {
        let mut v: Vec<Operation> = self
            .ops
            .lock()
            .expect("lock")
            .values()
            .map(|o| o.lock().expect("lock").clone())
            .collect();
        v.sort_by_key(|o| o.n);
        v
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
        let a = ops.start("build", "docs", "reading", 10).unwrap();
        let b = ops.start("build", "docs", "reading", 10).unwrap();
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

    #[test]
    fn ids_survive_a_restart_and_are_never_handed_out_again() {
        let dir = tempfile::tempdir().unwrap();
        let fs: Arc<dyn Vfs> = Arc::new(quarry_engine::storage::RealFs);
        let ops = Operations::open(fs.clone(), dir.path()).unwrap();
        let done = ops.start("build", "docs", "reading", 10).unwrap();
        done.lock().unwrap().report("graph", 5, 10);
        done.lock().unwrap().finish(Ok(10));
        let failed = ops.start("compact", "docs", "queued", 3).unwrap();
        failed.lock().unwrap().finish(Err("disk full".into()));
        let running = ops.start("build", "docs", "reading", 7).unwrap();
        let ids: Vec<String> = [&done, &failed, &running]
            .iter()
            .map(|o| o.lock().unwrap().id.clone())
            .collect();
        assert_eq!(ids, ["build-docs-1", "compact-docs-2", "build-docs-3"]);
        drop((ops, done, failed, running));
        let ops = Operations::open(fs.clone(), dir.path()).unwrap();
        let d = ops.get("build-docs-1").unwrap();
        assert_eq!(
            (d.state, d.progress, d.vector_count, d.stage.as_str()),
            (OpState::Done, 1.0, 10, "done")
        );
        let f = ops.get("compact-docs-2").unwrap();
        assert_eq!((f.state, f.error.as_str()), (OpState::Failed, "disk full"));
        let r = ops.get("build-docs-3").unwrap();
        assert_eq!(
            (r.state, r.error.as_str()),
            (OpState::Failed, "interrupted by a server restart")
        );
        let next = ops.start("build", "docs", "reading", 1).unwrap();
        assert_eq!(next.lock().unwrap().id, "build-docs-4");
        drop((ops, next));
        // The interrupted one stays failed, recorded once.
        let ops = Operations::open(fs, dir.path()).unwrap();
        assert_eq!(ops.get("build-docs-3").unwrap().state, OpState::Failed);
        assert_eq!(
            ops.get("build-docs-4").unwrap().error,
            "interrupted by a server restart"
        );
    }
}
