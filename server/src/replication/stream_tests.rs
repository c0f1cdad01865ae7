//! The log stream end to end without a network: sync writes from several
//! threads wait at the gate until the standby has them; a pump ships
//! chunks (sometimes twice, sometimes dropping the connection and
//! resuming from the standby's end) and feeds acks back; the primary never
//! shows a write the standby lacks; the two end equal. Then each refusal:
//! fenced, flipped CRC, gap, full window, gate fenced, closed, timed out.

use super::stream::*;
use quarry_engine::collection::{Collection, CollectionOptions, GateError, Op};
use quarry_engine::format::StoredType;
use quarry_engine::graph::BuildParams;
use quarry_engine::index::IndexBuildOptions;
use quarry_engine::io::IoBackend;
use quarry_engine::storage::{RealFs, Vfs};
use quarry_engine::wal::{Epoch, WalOptions};
use quarry_engine::Metric;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const DIM: usize = 8;

fn opts() -> CollectionOptions {
    let mut graph = BuildParams::new(16, 32);
    graph.threads = 1;
    let build = IndexBuildOptions {
        metric: Metric::L2,
        graph,
        pq_bytes: 4,
        stored: StoredType::F32,
        nav_sample: 0,
        rerank_file: false,
        opq: false,
        ram_budget: None,
        colocate: true,
    };
    CollectionOptions {
        dim: DIM,
        metric: Metric::L2,
        build,
        fresh_r: 16,
        fresh_l: 32,
        flush_at: 100_000,
        max_segments: 4,
        wal: WalOptions {
            segment_bytes: 8 << 10,
            ..WalOptions::default()
        },
        max_payload: 64,
        io: IoBackend::Pread,
        split_l: true,
        ram_segment_nodes: 0,
        cache_nodes: 0,
        hold_unacked: false,
    }
}

fn v(i: u64) -> Vec<f32> {
    (0..DIM).map(|d| ((i * 31 + d as u64) % 97) as f32 / 10.0).collect()
}

fn pair() -> (tempfile::TempDir, Arc<Collection>, Arc<Collection>) {
    let d = tempfile::tempdir().unwrap();
    let fs: Arc<dyn Vfs> = Arc::new(RealFs);
    let (p, _) = Collection::open(fs.clone(), &d.path().join("p"), opts()).unwrap();
    let (s, _) = Collection::open(fs, &d.path().join("s"), opts()).unwrap();
    (d, Arc::new(p), Arc::new(s))
}

const E1: Epoch = Epoch { term: 1, node: 7 };

#[test]
fn sync_writes_wait_for_the_standby_and_both_end_equal() {
    for seed in 0..4u64 {
        let (_d, p, s) = pair();
        let gate = Arc::new(SyncGate::new(0));
        p.set_gate(Some(gate.clone()));
        let stop = Arc::new(AtomicBool::new(false));
        // Writers: each write, once acknowledged, must already be on the
        // standby.
        let writers: Vec<_> = (0..3u64)
            .map(|t| {
                let (p, s) = (p.clone(), s.clone());
                std::thread::spawn(move || {
                    let mut acked = Vec::new();
                    for i in 0..60u64 {
                        let id = t * 1000 + i;
                        let ops = if i % 7 == 6 {
                            vec![Op::Delete { id: id - 3 }]
                        } else {
                            vec![Op::Upsert {
                                id,
                                vector: v(id),
                                payload: vec![t as u8],
                            }]
                        };
                        let lsn = p.write(ops).unwrap();
                        assert!(
                            s.wal().durable_lsn() >= lsn,
                            "LSN {lsn} acknowledged before the standby had it"
                        );
                        acked.push(lsn);
                    }
                    acked
                })
            })
            .collect();
        let pump = {
            let (p, s, gate, stop) = (p.clone(), s.clone(), gate.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
                let mut ship = Shipper::start(&p, "standby", 1, 4096).unwrap();
                let mut recv = Receiver::default();
                let (mut resends, mut reconnects) = (0, 0);
                let t0 = Instant::now();
                while !stop.load(Ordering::Acquire) || ship.acked < p.wal().last_lsn() {
                    assert!(t0.elapsed() < Duration::from_secs(60), "the stream stalled");
                    let Some(c) = ship.next_chunk(&p, E1, rng.random_range(64..2048), 0).unwrap() else {
                        std::thread::sleep(Duration::from_micros(200));
                        continue;
                    };
                    if rng.random_bool(0.05) {
                        // The connection drops with this chunk in flight:
                        // resume from the standby's end.
                        ship = Shipper::start(&p, "standby", s.wal().last_lsn() + 1, 4096).unwrap();
                        reconnects += 1;
                        continue;
                    }
                    let times = if rng.random_bool(0.1) { 2 } else { 1 };
                    resends += times - 1;
                    for _ in 0..times {
                        let Reply::Ack(a) = recv.on_chunk(&s, E1, &c).unwrap() else {
                            panic!("fenced")
                        };
                        let durable = ship.on_ack(&p, &a).unwrap();
                        gate.advance(durable);
                        p.apply_through(durable).unwrap();
                        assert!(
                            p.applied_lsn() <= s.wal().durable_lsn(),
                            "the primary shows a write the standby lacks"
                        );
                    }
                }
                (resends, reconnects, recv.duplicates)
            })
        };
        let acked: Vec<u64> = writers.into_iter().flat_map(|w| w.join().unwrap()).collect();
        stop.store(true, Ordering::Release);
        let (resends, reconnects, dups) = pump.join().unwrap();
        assert_eq!(acked.len(), 180);
        assert_eq!(s.wal().last_lsn(), p.wal().last_lsn());
        for t in 0..3u64 {
            for i in 0..60u64 {
                let id = t * 1000 + i;
                assert_eq!(s.get(id).unwrap(), p.get(id).unwrap(), "seed {seed}: id {id}");
            }
        }
        assert!(
            resends == 0 || dups > 0,
            "seed {seed}: resent chunks were not recognised"
        );
        let _ = reconnects;
    }
}

fn chunk_of(p: &Collection, from: u64) -> Chunk {
    let mut ship = Shipper::start(p, "x", from, 1 << 20).unwrap();
    ship.next_chunk(p, E1, 1 << 20, 5).unwrap().unwrap()
}

#[test]
fn a_chunk_is_refused_for_an_old_epoch_a_bad_crc_or_a_gap() {
    let (_d, p, s) = pair();
    for i in 0..5 {
        p.upsert(i, v(i), vec![]).unwrap();
    }
    let c = chunk_of(&p, 1);
    let mut r = Receiver::default();
    let newer = Epoch { term: 2, node: 1 };
    assert_eq!(r.on_chunk(&s, newer, &c).unwrap(), Reply::Fenced(newer));
    let mut bad = c.clone();
    bad.records[2][0] ^= 1;
    let e = r.on_chunk(&s, E1, &bad).unwrap_err();
    assert!(matches!(e, StreamError::Crc { lsn: 3, .. }), "{e}");
    let gap = chunk_of(&p, 3);
    assert!(matches!(
        r.on_chunk(&s, E1, &gap).unwrap_err(),
        StreamError::Gap { first: 3, last: 0 }
    ));
    assert_eq!(s.wal().last_lsn(), 0, "nothing applied");
    let Reply::Ack(a) = r.on_chunk(&s, E1, &c).unwrap() else {
        panic!()
    };
    assert_eq!((a.received, a.durable, a.applied, a.echo_sent_at_us), (5, 5, 5, 5));
    // The same chunk again is a no-op.
    let Reply::Ack(b) = r.on_chunk(&s, E1, &c).unwrap() else {
        panic!()
    };
    assert_eq!((b.durable, r.duplicates), (5, 5));
}

#[test]
fn the_window_holds_chunks_back_until_acks_free_it() {
    let (_d, p, s) = pair();
    for i in 0..40 {
        p.upsert(i, v(i), vec![]).unwrap();
    }
    let mut ship = Shipper::start(&p, "standby", 1, 200).unwrap();
    let mut sent = Vec::new();
    while let Some(c) = ship.next_chunk(&p, E1, 100, 0).unwrap() {
        sent.push(c);
    }
    assert!(
        ship.unacked_bytes() >= 200 && sent.last().unwrap().first_lsn < 40,
        "the window stopped it"
    );
    let mut r = Receiver::default();
    let mut last = None;
    for c in &sent {
        if let Reply::Ack(a) = r.on_chunk(&s, E1, c).unwrap() {
            last = Some(a);
        }
    }
    ship.on_ack(&p, &last.unwrap()).unwrap();
    assert_eq!(ship.unacked_bytes(), 0);
    assert!(
        ship.next_chunk(&p, E1, 100, 0).unwrap().is_some(),
        "more flows once acked"
    );
    assert_eq!(
        p.wal().followers()[0].acked,
        last.unwrap().durable,
        "the ack reached the registry"
    );
}

#[test]
fn the_gate_fences_closes_and_times_out() {
    let gate = SyncGate::new(4);
    use quarry_engine::collection::CommitGate;
    assert!(gate.wait(4, None).is_ok());
    let soon = Some(Instant::now() + Duration::from_millis(20));
    assert!(matches!(gate.wait(5, soon), Err(GateError::Timeout { lsn: 5 })));
    gate.advance(9);
    assert!(gate.wait(9, soon).is_ok());
    let g = Arc::new(gate);
    let waiter = {
        let g = g.clone();
        std::thread::spawn(move || g.wait(20, None))
    };
    std::thread::sleep(Duration::from_millis(20));
    g.fence(Epoch { term: 3, node: 2 });
    assert!(matches!(waiter.join().unwrap(), Err(GateError::Fenced { lsn: 20, .. })));
    let closed = SyncGate::new(0);
    closed.close("stopping");
    assert!(matches!(closed.wait(1, None), Err(GateError::Closed { .. })));
}
