//! A cancelled bulk load or compaction stops, keeps nothing of itself and
//! leaves the collection as it was, and the next one runs.

use super::tests::{opts, vec_of};
use super::*;
use crate::cancel::CancelToken;
use crate::graph::BuildError;
use crate::index::IndexError;
use crate::storage::{RealFs, Vfs};
use std::sync::Arc;

fn cancelled(e: &CollectionError) -> bool {
    matches!(e, CollectionError::Index(IndexError::Build(BuildError::Cancelled)))
}

/// Every name in the collection's directory (not recursive), sorted.
fn names(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn a_cancelled_bulk_load_or_compaction_keeps_nothing_and_the_next_one_runs() {
    let d = tempfile::tempdir().unwrap();
    let fs: Arc<dyn Vfs> = Arc::new(RealFs);
    let (c, _) = Collection::open(fs.clone(), d.path(), opts()).unwrap();
    for id in 0..50u64 {
        c.upsert(id, vec_of(id), vec![]).unwrap();
    }
    let before = names(d.path());
    let ids: Vec<u64> = (1000..3000).collect();
    let data: Vec<f32> = ids.iter().flat_map(|&id| vec_of(id)).collect();
    // Cancelled from within, at each stage the build reports: it stops
    // there, and nothing it wrote is left.
    for at in ["pq", "graph", "nav"] {
        let token = CancelToken::new();
        let mut stages = Vec::new();
        let e = c
            .bulk_load_within(
                data.clone().into(),
                &ids,
                vec![],
                1,
                None,
                &token,
                &mut |stage, _, _| {
                    stages.push(stage.to_string());
                    if stage == at {
                        token.cancel();
                    }
                },
            )
            .unwrap_err();
        assert!(cancelled(&e), "{at}: {e}");
        assert!(
            !stages.iter().any(|s| s == "write"),
            "{at}: it wrote after the cancel: {stages:?}"
        );
        assert_eq!(names(d.path()), before, "{at}: files left behind");
        assert_eq!(c.len(), 50);
    }
    // The collection still answers and takes writes, and the next bulk
    // load runs.
    assert_eq!(c.get(7).unwrap().unwrap().0, vec_of(7));
    c.upsert(7, vec_of(77), vec![]).unwrap();
    let rep = c
        .bulk_load_within(
            data.clone().into(),
            &ids,
            vec![],
            1,
            None,
            &CancelToken::new(),
            &mut |_, _, _| {},
        )
        .unwrap();
    assert_eq!(rep.vectors, 2000);
    assert_eq!(c.len(), 2050);
    // A compaction cancelled mid-graph: the segments and every answer stay.
    let segments = names(d.path());
    let token = CancelToken::new();
    let e = c
        .compact(&token, &mut |stage, _, _| {
            if stage == "graph" {
                token.cancel();
            }
        })
        .unwrap_err();
    assert!(cancelled(&e), "{e}");
    assert_eq!(names(d.path()), segments, "a cancelled compaction left files");
    assert_eq!(c.len(), 2050);
    assert_eq!(c.get(7).unwrap().unwrap().0, vec_of(77));
    assert_eq!(c.get(2999).unwrap().unwrap().0, vec_of(2999));
    c.compact(&CancelToken::new(), &mut |_, _, _| {}).unwrap();
    assert_eq!(c.len(), 2050);
    drop(c);
    // And it all opens again.
    let (c, _) = Collection::open(fs, d.path(), opts()).unwrap();
    assert_eq!(c.len(), 2050);
    assert_eq!(c.get(7).unwrap().unwrap().0, vec_of(77));
}
