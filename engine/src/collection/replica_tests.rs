//! Replication at the collection level: a standby fed the primary's log
//! through `apply_replicated` answers as the primary does; the commit gate
//! holds writes invisible until it opens and a fenced gate leaves them
//! unapplied; a divergent tail is cut and the collection reopened; a cut
//! below the checkpoint asks for a snapshot.

use super::tests::{opts, vec_of};
use super::*;
use crate::storage::{RealFs, Vfs};
use crate::wal::Epoch;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

fn pair() -> (tempfile::TempDir, Collection, Collection) {
    let d = tempfile::tempdir().unwrap();
    let fs: Arc<dyn Vfs> = Arc::new(RealFs);
    let (p, _) = Collection::open(fs.clone(), &d.path().join("p"), opts()).unwrap();
    let (s, _) = Collection::open(fs, &d.path().join("s"), opts()).unwrap();
    (d, p, s)
}

/// Ship every record the standby lacks, in chunks of at most `chunk`.
fn ship(p: &Collection, s: &Collection, chunk: usize) -> usize {
    let from = s.wal().last_lsn() + 1;
    let mut cur = p.wal().cursor(from).unwrap();
    let mut n = 0;
    loop {
        let recs = p.wal().read(&mut cur, 1).unwrap();
        if recs.is_empty() {
            return n;
        }
        for c in recs.chunks(chunk) {
            let bodies: Vec<Vec<u8>> = c.iter().map(|r| r.1.clone()).collect();
            s.apply_replicated(c[0].0, &bodies).unwrap();
            n += c.len();
        }
    }
}

fn ids_near(c: &Collection, q: &[f32]) -> Vec<u64> {
    c.search(q, 10, 64, 4, &mut CollectionSearcher::default())
        .unwrap()
        .iter()
        .map(|h| h.id)
        .collect()
}

#[test]
fn a_standby_fed_the_log_answers_as_the_primary_does() {
    let (_d, p, s) = pair();
    for i in 0..150u64 {
        p.upsert(i, vec_of(i), format!("p{i}").into_bytes()).unwrap();
    }
    for i in (0..150u64).step_by(7) {
        p.delete(i).unwrap();
    }
    p.upsert(3, vec_of(1000), b"new".to_vec()).unwrap();
    p.begin_epoch(Epoch { term: 1, node: 5 }).unwrap();
    p.upsert(151, vec_of(151), vec![]).unwrap();
    assert_eq!(ship(&p, &s, 5), p.wal().last_lsn() as usize);
    assert_eq!(s.wal().last_lsn(), p.wal().last_lsn());
    assert_eq!(
        s.wal().epochs(),
        p.wal().epochs(),
        "the epoch record began the epoch on the standby"
    );
    assert_eq!(s.len(), p.len());
    for i in 0..160u64 {
        assert_eq!(s.get(i).unwrap(), p.get(i).unwrap(), "id {i}");
    }
    for q in 0..20u64 {
        assert_eq!(ids_near(&s, &vec_of(5000 + q)), ids_near(&p, &vec_of(5000 + q)));
    }
    // A flush on each side on its own keeps them equal, and a restart of
    // the standby keeps what it applied.
    p.flush(&mut |_, _, _| {}).unwrap();
    for i in 200..230u64 {
        p.upsert(i, vec_of(i), vec![]).unwrap();
    }
    ship(&p, &s, 64);
    s.flush(&mut |_, _, _| {}).unwrap();
    let dir = s.dir.clone();
    drop(s);
    let (s, _) = Collection::open(Arc::new(RealFs), &dir, opts()).unwrap();
    for i in 0..230u64 {
        assert_eq!(
            s.get(i).unwrap(),
            p.get(i).unwrap(),
            "id {i} after the standby's restart"
        );
    }
}

#[test]
fn replicated_records_are_checked_and_a_bad_batch_logs_nothing() {
    let (_d, p, s) = pair();
    p.upsert(1, vec_of(1), vec![]).unwrap();
    let good = Op::Upsert {
        id: 2,
        vector: vec_of(2),
        payload: vec![],
    }
    .encode();
    let e = s.apply_replicated(2, std::slice::from_ref(&good)).unwrap_err();
    assert!(
        matches!(e, CollectionError::Wal(WalError::Position { got: 2, next: 1 })),
        "{e}"
    );
    let short = Op::Upsert {
        id: 3,
        vector: vec![1.0; DIM_SHORT],
        payload: vec![],
    }
    .encode();
    let e = s.apply_replicated(1, &[good.clone(), short]).unwrap_err();
    assert!(e.to_string().contains("replicated record 2"), "{e}");
    let nan = Op::Upsert {
        id: 4,
        vector: vec![f32::NAN; opts().dim],
        payload: vec![],
    }
    .encode();
    assert!(s.apply_replicated(1, &[nan]).is_err());
    let missing = Op::AddSegment {
        name: "bulk-0000000009".into(),
    }
    .encode();
    let e = s.apply_replicated(1, &[missing]).unwrap_err();
    assert!(e.to_string().contains("have not arrived"), "{e}");
    assert_eq!((s.wal().last_lsn(), s.len()), (0, 0), "nothing logged or applied");
    s.apply_replicated(1, &[good]).unwrap();
    assert_eq!(s.len(), 1);
}

const DIM_SHORT: usize = 3;

/// A gate opened by hand, or fenced.
#[derive(Default)]
struct HandGate {
    open_to: Mutex<(Lsn, bool)>,
    cv: Condvar,
    waits: AtomicU64,
}

impl HandGate {
    fn open(&self, lsn: Lsn) {
        self.open_to.lock().unwrap().0 = lsn;
        self.cv.notify_all();
    }
    fn fence(&self) {
        self.open_to.lock().unwrap().1 = true;
        self.cv.notify_all();
    }
}

impl CommitGate for HandGate {
    fn wait(&self, lsn: Lsn, deadline: Option<std::time::Instant>) -> std::result::Result<(), GateError> {
        self.waits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut g = self.open_to.lock().unwrap();
        loop {
            if g.1 {
                return Err(GateError::Fenced {
                    epoch: Epoch { term: 9, node: 2 },
                    lsn,
                });
            }
            if g.0 >= lsn {
                return Ok(());
            }
            match deadline {
                None => g = self.cv.wait(g).unwrap(),
                Some(d) => {
                    let now = std::time::Instant::now();
                    if now >= d {
                        return Err(GateError::Timeout { lsn });
                    }
                    g = self.cv.wait_timeout(g, d - now).unwrap().0;
                }
            }
        }
    }
}

/// Until `n` writes have reached the gate (a panic after 10 s: a write
/// that never waits there did not pass it).
fn wait_for_waits(gate: &HandGate, n: u64) {
    let t = std::time::Instant::now();
    while gate.waits.load(std::sync::atomic::Ordering::Relaxed) < n {
        assert!(t.elapsed() < Duration::from_secs(10), "no write waited at the gate");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn a_write_is_invisible_until_the_gate_opens_and_a_fenced_one_never_applies() {
    let (_d, p, _s) = pair();
    p.upsert(1, vec_of(1), vec![]).unwrap();
    let gate = Arc::new(HandGate::default());
    p.set_gate(Some(gate.clone()));
    let p = Arc::new(p);
    let w = {
        let p = p.clone();
        std::thread::spawn(move || p.upsert(2, vec_of(2), vec![]))
    };
    wait_for_waits(&gate, 1);
    assert_eq!(p.wal().durable_lsn(), 2, "logged and durable locally");
    assert!(p.get(2).unwrap().is_none(), "not visible before the gate opens");
    assert_eq!(ids_near(&p, &vec_of(2)), vec![1]);
    gate.open(2);
    assert_eq!(w.join().unwrap().unwrap(), 2);
    assert!(p.get(2).unwrap().is_some());
    // Fenced: the write stays in the log, unapplied; later writes refused.
    let w = {
        let p = p.clone();
        std::thread::spawn(move || p.upsert(3, vec_of(3), vec![]))
    };
    wait_for_waits(&gate, 2);
    gate.fence();
    let e = w.join().unwrap().unwrap_err();
    assert!(
        matches!(e, CollectionError::Gate(GateError::Fenced { lsn: 3, .. })),
        "{e}"
    );
    assert!(p.get(3).unwrap().is_none());
    assert!(p.upsert(4, vec_of(4), vec![]).is_err(), "nothing more is applied");
    assert_eq!(p.wal().last_lsn(), 3);
    // Following the new primary: cut after 2 and reopen.
    let p = Arc::into_inner(p).unwrap();
    let (p, rep) = p.truncate_after(2).unwrap();
    assert_eq!(rep.records, 1);
    assert_eq!((p.wal().last_lsn(), p.len()), (2, 2));
    assert!(p.get(3).unwrap().is_none());
    p.upsert(5, vec_of(5), vec![]).unwrap();
    assert_eq!(p.wal().last_lsn(), 3);
}

#[test]
fn a_write_that_times_out_at_the_gate_is_applied_once_it_opens() {
    let (_d, p, _s) = pair();
    let gate = Arc::new(HandGate::default());
    p.set_gate(Some(gate.clone()));
    let soon = || Some(std::time::Instant::now() + Duration::from_millis(30));
    let one = vec![Op::Upsert {
        id: 1,
        vector: vec_of(1),
        payload: vec![],
    }];
    let e = p.write_until(one, soon()).unwrap_err();
    assert!(matches!(e, CollectionError::Gate(GateError::Timeout { lsn: 1 })), "{e}");
    assert!(e.to_string().contains("outcome is unknown"), "{e}");
    assert_eq!((p.wal().last_lsn(), p.applied_lsn()), (1, 0));
    assert!(p.get(1).unwrap().is_none(), "logged, not visible");
    // A timeout does not stop the collection: a second write also waits,
    // and times out too.
    assert!(p.write_until(vec![Op::Delete { id: 1 }], soon()).is_err());
    // The standby confirms LSN 1 (the replication layer applies through it).
    gate.open(1);
    assert_eq!(p.apply_through(1).unwrap(), 1);
    assert!(p.get(1).unwrap().is_some());
    // A later write that passes the gate applies everything before it.
    gate.open(3);
    assert_eq!(p.upsert(2, vec_of(2), vec![]).unwrap(), 3);
    assert!(
        p.get(1).unwrap().is_none(),
        "the delete at LSN 2 was applied on the way"
    );
    assert!(p.get(2).unwrap().is_some());
    assert_eq!(p.applied_lsn(), 3);
}

#[test]
fn only_a_node_that_applied_its_log_begins_an_epoch() {
    let (_d, p, _s) = pair();
    let gate = Arc::new(HandGate::default());
    p.set_gate(Some(gate.clone()));
    let soon = Some(std::time::Instant::now() + Duration::from_millis(10));
    assert!(p.write_until(vec![Op::Delete { id: 5 }], soon).is_err());
    let e = p.begin_epoch(Epoch { term: 1, node: 3 }).unwrap_err();
    assert!(e.to_string().contains("logged but not applied"), "{e}");
    assert!(p.wal().epochs().entries().is_empty(), "nothing recorded");
}

#[test]
fn a_cut_below_the_checkpoint_needs_a_snapshot() {
    let (_d, p, _s) = pair();
    for i in 0..50u64 {
        p.upsert(i, vec_of(i), vec![]).unwrap();
    }
    p.flush(&mut |_, _, _| {}).unwrap();
    p.upsert(60, vec_of(60), vec![]).unwrap();
    assert_eq!(p.checkpoint().unwrap(), 50);
    let e = p.truncate_after(49).err().expect("refused");
    assert!(
        matches!(
            e,
            CollectionError::NeedsSnapshot {
                lsn: 49,
                checkpoint: 50,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("needs a snapshot"), "{e}");
}

#[test]
fn a_sync_primary_reopens_with_unacknowledged_records_held_back() {
    let d = tempfile::tempdir().unwrap();
    let fs: Arc<dyn Vfs> = Arc::new(RealFs);
    let dir = d.path().join("p");
    let held = CollectionOptions {
        hold_unacked: true,
        ..opts()
    };
    let (p, _) = Collection::open(fs.clone(), &dir, held.clone()).unwrap();
    for i in 0..10u64 {
        p.upsert(i, vec_of(i), vec![]).unwrap(); // LSN i + 1
    }
    p.delete(2).unwrap(); // LSN 11
                          // The standby has everything up to LSN 6 (registering from 7 writes
                          // that to followers.bin at once).
    p.wal().register_follower("standby", 7).unwrap();
    drop(p);
    let (p, _) = Collection::open(fs.clone(), &dir, held.clone()).unwrap();
    assert_eq!((p.applied_lsn(), p.wal().last_lsn()), (6, 11));
    for i in 0..10u64 {
        assert_eq!(p.get(i).unwrap().is_some(), i < 6, "id {i}");
    }
    assert!(!ids_near(&p, &vec_of(8)).contains(&8), "not searchable either");
    // The standby confirms the rest.
    assert_eq!(p.apply_through(11).unwrap(), 11);
    assert!(p.get(8).unwrap().is_some() && p.get(2).unwrap().is_none());
    drop(p);
    // Without the setting, or with no follower, everything is applied.
    let (p, _) = Collection::open(fs.clone(), &dir, opts()).unwrap();
    assert_eq!(p.applied_lsn(), 11);
    p.wal().unregister_follower("standby").unwrap();
    drop(p);
    let (p, _) = Collection::open(fs, &dir, held).unwrap();
    assert_eq!(p.applied_lsn(), 11);
}
