//! Tests of what a standby needs from the log: appends at given LSNs, the
//! cut of a divergent tail (also under power loss), the epoch history and
//! its file, and `common_prefix` against a brute-force model.

use super::*;
use crate::storage::{CrashFs, Fault, RealFs, Vfs};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use std::collections::BTreeMap;
use std::sync::Arc;

fn small() -> WalOptions {
    WalOptions {
        segment_bytes: 1024,
        ..WalOptions::default()
    }
}

/// A body naming its LSN and the generation (how many cuts came before).
fn body(lsn: Lsn, gen: u64) -> Vec<u8> {
    let mut b = lsn.to_le_bytes().to_vec();
    b.extend_from_slice(&gen.to_le_bytes());
    b.extend((0..(lsn * 13 % 90) as usize).map(|i| (i as u64 ^ lsn ^ gen) as u8));
    b
}

fn gen_of(b: &[u8]) -> u64 {
    u64::from_le_bytes(b[8..16].try_into().unwrap())
}

fn read_all(w: &Wal) -> Vec<(Lsn, Vec<u8>)> {
    let mut c = w.cursor(w.first_lsn()).unwrap();
    let mut out = Vec::new();
    loop {
        let got = w.read(&mut c, 4096).unwrap();
        if got.is_empty() {
            return out;
        }
        out.extend(got);
    }
}

fn append_upto(w: &Wal, upto: Lsn, gen: u64) {
    while w.last_lsn() < upto {
        let n = w.last_lsn() + 1;
        w.append_at(n, &[&body(n, gen)]).unwrap();
    }
}

fn ep(term: u64, node: u64) -> Epoch {
    Epoch { term, node }
}

#[test]
fn append_at_takes_only_the_next_lsn_and_writes_nothing_otherwise() {
    let d = tempfile::tempdir().unwrap();
    let fs: Arc<dyn Vfs> = Arc::new(RealFs);
    let (w, _) = Wal::open(fs.clone(), d.path(), small(), 41).unwrap();
    let e = w.append_at(40, &[b"x"]).unwrap_err();
    assert!(matches!(e, WalError::Position { got: 40, next: 41 }), "{e}");
    assert_eq!(
        e.to_string(),
        "records from LSN 40 cannot be appended: the log's next LSN is 41"
    );
    assert!(matches!(
        w.append_at(42, &[b"x"]),
        Err(WalError::Position { got: 42, next: 41 })
    ));
    assert_eq!(w.last_lsn(), 40);
    w.append_at(41, &[b"a", b"b"]).unwrap();
    w.append_at(43, &[b"c"]).unwrap();
    let got = read_all(&w);
    assert_eq!(got, vec![(41, b"a".to_vec()), (42, b"b".to_vec()), (43, b"c".to_vec())]);
}

#[test]
fn a_cut_removes_the_tail_across_segments_and_the_log_goes_on_from_there() {
    let d = tempfile::tempdir().unwrap();
    let fs: Arc<dyn Vfs> = Arc::new(RealFs);
    let (w, _) = Wal::open(fs.clone(), d.path(), small(), 1).unwrap();
    append_upto(&w, 200, 0);
    let (segs_before, _) = w.size();
    assert!(segs_before > 5, "want several segments, got {segs_before}");
    w.register_follower("standby", 150).unwrap();
    w.ack_follower("standby", 180).unwrap();
    w.begin_epoch(ep(1, 7)).unwrap(); // begins at 201
    let rep = w.truncate_after(77).unwrap();
    assert_eq!(rep.records, 123);
    assert!(rep.segments_deleted > 0 && rep.segments_deleted < segs_before);
    assert_eq!(rep.epochs_forgotten, 1, "epoch 1 began at 201, after the cut");
    assert_eq!((w.last_lsn(), w.durable_lsn()), (77, 77));
    assert_eq!(w.followers()[0].acked, 77, "a follower past the cut is lowered to it");
    assert!(w.epochs().entries().is_empty());
    // The log goes on from 78 with new records, and a reopen sees them.
    append_upto(&w, 90, 1);
    drop(w);
    let (w, rep) = Wal::open(fs, d.path(), small(), 1).unwrap();
    assert!(rep.cut.is_none());
    let got = read_all(&w);
    assert_eq!(got.len(), 90);
    for (lsn, b) in got {
        assert_eq!(b, body(lsn, if lsn <= 77 { 0 } else { 1 }), "LSN {lsn}");
    }
    assert_eq!(w.followers()[0].acked, 77);
}

#[test]
fn a_cut_to_the_start_empties_the_log_and_below_it_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let fs: Arc<dyn Vfs> = Arc::new(RealFs);
    let (w, _) = Wal::open(fs.clone(), d.path(), small(), 10).unwrap();
    append_upto(&w, 100, 0);
    let e = w.truncate_after(7).unwrap_err();
    assert!(matches!(e, WalError::Gone { want: 8, oldest: 10 }), "{e}");
    assert_eq!(w.last_lsn(), 100, "a refused cut changes nothing");
    assert_eq!(
        w.truncate_after(100).unwrap(),
        TruncateReport::default(),
        "nothing after the end"
    );
    assert_eq!(w.truncate_after(9).unwrap().records, 91);
    assert_eq!(w.size().0, 1);
    append_upto(&w, 12, 1);
    drop(w);
    let (w, _) = Wal::open(fs, d.path(), small(), 1).unwrap();
    let got = read_all(&w);
    assert_eq!(got.iter().map(|r| r.0).collect::<Vec<_>>(), vec![10, 11, 12]);
    assert!(got.iter().all(|(l, b)| *b == body(*l, 1)));
}

#[test]
fn epochs_begin_in_order_persist_and_a_standby_records_them_once() {
    let d = tempfile::tempdir().unwrap();
    let fs: Arc<dyn Vfs> = Arc::new(RealFs);
    let (w, _) = Wal::open(fs.clone(), d.path(), small(), 1).unwrap();
    append_upto(&w, 5, 0);
    assert_eq!(w.begin_epoch(ep(1, 9)).unwrap(), 6);
    let e = w.begin_epoch(ep(1, 9)).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "epoch history: epoch {} is not newer than the log's current epoch {}",
            ep(1, 9),
            ep(1, 9)
        )
    );
    assert!(w.begin_epoch(ep(1, 3)).is_err(), "same term, smaller node: older");
    // An epoch with no records yet is replaced by the next one at the same LSN.
    assert_eq!(w.begin_epoch(ep(2, 3)).unwrap(), 6);
    assert_eq!(w.epochs().entries(), &[(ep(2, 3), 6)]);
    append_upto(&w, 8, 0);
    // A standby told of an epoch it has: nothing; a new one only at the next LSN.
    w.begin_epoch_at(ep(2, 3), 6).unwrap();
    let e = w.begin_epoch_at(ep(3, 1), 5).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "epoch history: epoch {} cannot begin at LSN 5: the log's next LSN is 9",
            ep(3, 1)
        )
    );
    w.begin_epoch_at(ep(3, 1), 9).unwrap();
    append_upto(&w, 12, 0);
    drop(w);
    let (w, _) = Wal::open(fs.clone(), d.path(), small(), 1).unwrap();
    let h = w.epochs();
    assert_eq!(h.entries(), &[(ep(2, 3), 6), (ep(3, 1), 9)]);
    assert_eq!(
        (h.epoch_of(5), h.epoch_of(6), h.epoch_of(12)),
        (Epoch::ZERO, ep(2, 3), ep(3, 1))
    );
    // A history entry past the log's end + 1 (a crash between a cut and
    // the history write) is dropped on open.
    let mut stale = h.clone();
    stale.begin(ep(9, 9), 40).unwrap();
    std::fs::write(d.path().join(EPOCHS_FILE), encode_epochs(&stale)).unwrap();
    drop(w);
    let (w, _) = Wal::open(fs, d.path(), small(), 1).unwrap();
    assert_eq!(w.epochs(), h);
}

#[test]
fn a_damaged_epoch_file_is_named_in_the_error() {
    let d = tempfile::tempdir().unwrap();
    let fs: Arc<dyn Vfs> = Arc::new(RealFs);
    let (w, _) = Wal::open(fs.clone(), d.path(), small(), 1).unwrap();
    w.begin_epoch(ep(1, 1)).unwrap();
    drop(w);
    let path = d.path().join(EPOCHS_FILE);
    let mut b = std::fs::read(&path).unwrap();
    b[14] ^= 1;
    std::fs::write(&path, &b).unwrap();
    let e = Wal::open(fs, d.path(), small(), 1).err().expect("refused");
    let msg = e.to_string();
    assert!(
        matches!(e, WalError::Corrupt { .. }) && msg.contains("epochs.bin") && msg.contains("checksum"),
        "{msg}"
    );
}

#[test]
fn the_epoch_file_is_laid_out_as_documented() {
    let h = EpochHistory::from_entries(vec![(ep(1, 0xabc), 5), (ep(3, 2), 90)]).unwrap();
    let b = encode_epochs(&h);
    assert_eq!(b.len(), 12 + 2 * 24 + 4);
    assert_eq!(&b[..4], b"QWEP");
    assert_eq!(u32::from_le_bytes(b[4..8].try_into().unwrap()), 1);
    assert_eq!(u32::from_le_bytes(b[8..12].try_into().unwrap()), 2);
    assert_eq!(u64::from_le_bytes(b[12..20].try_into().unwrap()), 1);
    assert_eq!(u64::from_le_bytes(b[20..28].try_into().unwrap()), 0xabc);
    assert_eq!(u64::from_le_bytes(b[28..36].try_into().unwrap()), 5);
    assert_eq!(u64::from_le_bytes(b[52..60].try_into().unwrap()), 90);
    assert_eq!(
        u32::from_le_bytes(b[60..64].try_into().unwrap()),
        crc32c::crc32c(&b[..60])
    );
    assert_eq!(decode_epochs(&b).unwrap(), h);
    // Out of order entries are refused even with a good checksum.
    let mut bad = b.clone();
    bad[12..60].rotate_left(24);
    let crc = crc32c::crc32c(&bad[..60]);
    bad[60..].copy_from_slice(&crc.to_le_bytes());
    assert!(decode_epochs(&bad).unwrap_err().1.contains("does not follow"));
    for cut in 0..b.len() {
        assert!(decode_epochs(&b[..cut]).is_err(), "a {cut}-byte prefix parsed");
    }
}

#[test]
fn end_of_answers_kip_101s_question() {
    let h = EpochHistory::from_entries(vec![(ep(1, 1), 5), (ep(3, 1), 20), (ep(5, 2), 40)]).unwrap();
    assert_eq!(h.end_of(ep(1, 1), 50), (ep(1, 1), 19));
    assert_eq!(
        h.end_of(ep(2, 9), 50),
        (ep(1, 1), 19),
        "unknown epoch: the largest below it"
    );
    assert_eq!(h.end_of(ep(5, 2), 50), (ep(5, 2), 50));
    assert_eq!(h.end_of(ep(9, 9), 50), (ep(5, 2), 50));
    assert_eq!(h.end_of(Epoch::ZERO, 50), (Epoch::ZERO, 4));
    assert_eq!(h.end_of(ep(3, 1), 30), (ep(3, 1), 30));
}

/// Two logs as the epoch of each record (index 0 = LSN 1).
fn history(log: &[Epoch], trailing: Option<Epoch>) -> EpochHistory {
    let mut entries = Vec::new();
    let mut cur = Epoch::ZERO;
    for (i, &e) in log.iter().enumerate() {
        if e != cur {
            entries.push((e, i as Lsn + 1));
            cur = e;
        }
    }
    if let Some(t) = trailing.filter(|&t| t > cur) {
        entries.push((t, log.len() as Lsn + 1));
    }
    EpochHistory::from_entries(entries).unwrap()
}

/// A shared prefix, then divergent tails: the side that keeps the
/// prefix's last epoch going is the only one with more records of it;
/// every later epoch belongs to one side (its own node id).
fn arb_pair() -> impl Strategy<Value = (Vec<Epoch>, Vec<Epoch>, Option<Epoch>, Option<Epoch>)> {
    (
        prop::collection::vec((0u64..3, 1usize..6), 0..5),
        any::<bool>(),
        0usize..5,
        prop::collection::vec(1usize..6, 0..4),
        prop::collection::vec(1usize..6, 0..4),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(prefix, leader_continues, more, f_runs, l_runs, ft, lt)| {
            let mut shared = Vec::new();
            let mut term = 0;
            for (step, n) in prefix {
                if step > 0 || term == 0 {
                    term += step.max(1);
                }
                shared.extend(std::iter::repeat_n(ep(term, 1), n));
            }
            let last = shared.last().copied();
            let (mut f, mut l) = (shared.clone(), shared);
            if let Some(e) = last {
                let side = if leader_continues { &mut l } else { &mut f };
                side.extend(std::iter::repeat_n(e, more));
            }
            for (runs, node, log) in [(&f_runs, 100, &mut f), (&l_runs, 200, &mut l)] {
                let mut t = term;
                for &n in runs {
                    t += 1 + n as u64 % 2;
                    log.extend(std::iter::repeat_n(ep(t, node), n));
                }
            }
            let trail = |log: &Vec<Epoch>, node, on: bool| on.then(|| ep(log.last().map_or(0, |e| e.term) + 9, node));
            let (ftr, ltr) = (trail(&f, 100, ft), trail(&l, 200, lt));
            (f, l, ftr, ltr)
        })
}

proptest! {
    #[test]
    fn common_prefix_matches_a_record_by_record_comparison((f, l, ft, lt) in arb_pair()) {
        let want = f.iter().zip(&l).take_while(|(a, b)| a == b).count() as Lsn;
        let got = common_prefix(&history(&f, ft), f.len() as Lsn, &history(&l, lt), l.len() as Lsn);
        prop_assert_eq!(got, want);
    }
}

/// Power-loss trials of cuts: random appends, epochs and cuts, a fault
/// and a crash at a random operation (sometimes inside a cut), torn
/// tails. After recovery the log is contiguous; every acknowledged record
/// no cut removed is there with its bytes; no record a finished cut
/// removed comes back; and the epoch history parses and ends by the log's
/// end + 1.
#[test]
fn power_loss_trials_of_cuts_keep_a_prefix_and_never_resurrect_the_cut_tail() {
    let trials = CrashFs::trials("QUARRY_WAL_CUT_TRIALS", 600);
    let d = tempfile::tempdir().unwrap();
    let (mut cuts_done, mut cuts_crashed) = (0, 0);
    for trial in 0..trials {
        let root = d.path().join(format!("t{}", trial % 4));
        let (cfs, fs) = CrashFs::fresh(&root);
        let dir = root.join("wal");
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(trial ^ 0xc07);
        let opts = WalOptions {
            segment_bytes: rng.random_range(300..2048),
            ..WalOptions::default()
        };
        // Acknowledged and still expected: LSN -> body.
        let mut acked: BTreeMap<Lsn, Vec<u8>> = BTreeMap::new();
        // Finished cuts: (after LSN, generation of the records it removed
        // at most).
        let mut finished: Vec<(Lsn, u64)> = Vec::new();
        let mut gen = 0u64;
        let mut term = 0u64;
        for life in 0..rng.random_range(1..=2) {
            let (w, _) = Wal::open(fs.clone(), &dir, opts.clone(), 1)
                .unwrap_or_else(|e| panic!("trial {trial} life {life}: {e}"));
            cfs.set_fault(Some(Fault::random(&mut rng, 0..80)));
            for _ in 0..rng.random_range(5..40) {
                let r = rng.random_range(0..10);
                if r < 7 {
                    let next = w.last_lsn() + 1;
                    let n = rng.random_range(1..4);
                    let bodies: Vec<Vec<u8>> = (0..n).map(|i| body(next + i, gen)).collect();
                    let refs: Vec<&[u8]> = bodies.iter().map(|b| b.as_slice()).collect();
                    match w.append_at(next, &refs) {
                        Ok(()) => {
                            for (i, b) in bodies.into_iter().enumerate() {
                                acked.insert(next + i as u64, b);
                            }
                        }
                        Err(_) => break,
                    }
                } else if r < 8 {
                    term += 1;
                    if w.begin_epoch(ep(term, 1)).is_err() {
                        break;
                    }
                } else {
                    let last = w.last_lsn();
                    let to = rng.random_range(w.first_lsn().saturating_sub(1)..=last);
                    // Whatever happens, records after `to` are no longer
                    // required; later ones get a new generation.
                    acked.retain(|&l, _| l <= to);
                    let res = w.truncate_after(to);
                    gen += 1;
                    match res {
                        Ok(_) => {
                            finished.push((to, gen - 1));
                            cuts_done += 1;
                        }
                        Err(_) => {
                            cuts_crashed += 1;
                            break;
                        }
                    }
                }
            }
            cfs.crash();
            drop(w);
            cfs.power_loss(trial * 5 + life, true).unwrap();
        }
        let (w, _) = Wal::open(fs.clone(), &dir, opts.clone(), 1)
            .unwrap_or_else(|e| panic!("trial {trial}: recovery failed: {e}"));
        let got = read_all(&w);
        for (i, (lsn, _)) in got.iter().enumerate() {
            assert_eq!(*lsn, w.first_lsn() + i as u64, "trial {trial}: contiguous");
        }
        let last = got.last().map_or(w.first_lsn() - 1, |r| r.0);
        let have: BTreeMap<Lsn, Vec<u8>> = got.into_iter().collect();
        for (l, b) in &acked {
            assert_eq!(
                have.get(l),
                Some(b),
                "trial {trial}: acknowledged LSN {l} lost or changed (log ends at {last})"
            );
        }
        for (l, b) in &have {
            let g = gen_of(b);
            for &(to, removed_gen) in &finished {
                assert!(
                    *l <= to || g > removed_gen,
                    "trial {trial}: LSN {l} of generation {g} came back after a finished cut after {to}"
                );
            }
        }
        let h = w.epochs();
        assert!(
            h.entries().iter().all(|&(_, f)| f <= last + 1),
            "trial {trial}: {h:?} past {last}"
        );
    }
    assert!(
        trials < 100 || (cuts_done > trials / 2 && cuts_crashed > 0),
        "trials too tame: {cuts_done} cuts finished, {cuts_crashed} failed"
    );
}
