//! The replication messages on the wire: conversions between the
//! handshake's and the stream's types and `quarry.replication.v1`.
//!
//! Owns: every check of a message from the peer beyond prost's decoding
//! (missing fields, epoch histories that do not ascend, unknown snapshot
//! reasons), each failing with the field's name. Does not own: the
//! service or the stream's own checks (CRCs, positions: `stream`).

use super::handshake::{CollectionPlan, NodeReport, SnapshotReason};
use super::session::{CollectionState, Hello, Welcome};
use super::stream::{Ack, Chunk};
use quarry_engine::wal::{Epoch, EpochHistory};
use quarry_proto::replication::v1 as pb;

/// A message from the peer that is not acceptable.
#[derive(Debug, thiserror::Error)]
#[error("replication message: {0}")]
pub struct WireError(pub String);

fn bad<T>(m: impl Into<String>) -> Result<T, WireError> {
    Err(WireError(m.into()))
}

/// An epoch to the wire.
pub fn epoch_to(e: Epoch) -> pb::Epoch {
    pb::Epoch {
        term: e.term,
        node: e.node,
    }
}

/// An epoch from the wire (absent: refused, naming `field`).
pub fn epoch_from(e: Option<pb::Epoch>, field: &str) -> Result<Epoch, WireError> {
    match e {
        Some(e) => Ok(Epoch {
            term: e.term,
            node: e.node,
        }),
        None => bad(format!("{field} is missing")),
    }
}

fn history_to(h: &EpochHistory) -> Vec<pb::EpochEntry> {
    h.entries()
        .iter()
        .map(|&(e, first)| pb::EpochEntry {
            epoch: Some(epoch_to(e)),
            first_lsn: first,
        })
        .collect()
}

fn history_from(v: Vec<pb::EpochEntry>, field: &str) -> Result<EpochHistory, WireError> {
    let entries = v
        .into_iter()
        .enumerate()
        .map(|(i, x)| Ok((epoch_from(x.epoch, &format!("{field}[{i}].epoch"))?, x.first_lsn)))
        .collect::<Result<Vec<_>, WireError>>()?;
    EpochHistory::from_entries(entries).map_err(|why| WireError(format!("{field}: {why}")))
}

/// Snapshot or segment files to the wire.
pub fn files_to(files: &[quarry_engine::collection::SnapshotFile]) -> Vec<pb::SnapshotFile> {
    files
        .iter()
        .map(|f| pb::SnapshotFile {
            path: f.path.clone(),
            len: f.len,
            crc: f.crc,
        })
        .collect()
}

/// Snapshot or segment files from the wire (their paths are checked by
/// the install).
pub fn files_from(files: &[pb::SnapshotFile]) -> Vec<quarry_engine::collection::SnapshotFile> {
    files
        .iter()
        .map(|f| quarry_engine::collection::SnapshotFile {
            path: f.path.clone(),
            len: f.len,
            crc: f.crc,
        })
        .collect()
}

/// A Hello to the wire.
pub fn hello_to(h: &Hello) -> pb::Hello {
    pb::Hello {
        pair_id: h.node.pair_id.clone(),
        node_id: h.node.node_id,
        epoch: Some(epoch_to(h.node.epoch)),
        has_data: h.node.has_data,
        collections: h
            .collections
            .iter()
            .map(|c| pb::CollectionState {
                name: c.name.clone(),
                incarnation: c.incarnation,
                history: history_to(&c.history),
                durable_lsn: c.durable,
                checkpoint_lsn: c.checkpoint,
                needs_snapshot: c.needs_snapshot,
            })
            .collect(),
    }
}

/// A Hello from the wire.
pub fn hello_from(h: pb::Hello) -> Result<Hello, WireError> {
    let mut collections = Vec::with_capacity(h.collections.len());
    for (i, c) in h.collections.into_iter().enumerate() {
        if c.name.is_empty() {
            return bad(format!("hello.collections[{i}].name is empty"));
        }
        if collections.iter().any(|x: &CollectionState| x.name == c.name) {
            return bad(format!("hello.collections[{i}]: collection {:?} twice", c.name));
        }
        if c.needs_snapshot && c.durable_lsn != 0 {
            return bad(format!(
                "hello.collections[{i}]: a collection that needs a snapshot reports durable LSN {}",
                c.durable_lsn
            ));
        }
        collections.push(CollectionState {
            history: history_from(c.history, &format!("hello.collections[{i}].history"))?,
            name: c.name,
            incarnation: c.incarnation,
            durable: c.durable_lsn,
            checkpoint: c.checkpoint_lsn,
            needs_snapshot: c.needs_snapshot,
        });
    }
    Ok(Hello {
        node: NodeReport {
            pair_id: h.pair_id,
            node_id: h.node_id,
            epoch: epoch_from(h.epoch, "hello.epoch")?,
            has_data: h.has_data,
        },
        collections,
    })
}

fn reason_name(r: SnapshotReason) -> &'static str {
    match r {
        SnapshotReason::Missing => "missing",
        SnapshotReason::OtherIncarnation => "other_incarnation",
        SnapshotReason::DivergedPastCheckpoint => "diverged_past_checkpoint",
        SnapshotReason::BehindRetention => "behind_retention",
    }
}

/// A Welcome to the wire (its epoch goes in the envelope).
pub fn welcome_to(w: &Welcome) -> pb::Welcome {
    pb::Welcome {
        pair_id: w.pair_id.clone(),
        node_id: w.node_id,
        plans: w
            .plans
            .iter()
            .map(|(name, incarnation, plan)| pb::Plan {
                collection: name.clone(),
                incarnation: *incarnation,
                action: Some(match *plan {
                    CollectionPlan::Stream { from } => pb::plan::Action::StreamFrom(from),
                    CollectionPlan::Truncate { after } => pb::plan::Action::TruncateAfter(after),
                    CollectionPlan::Snapshot(r) => pb::plan::Action::Snapshot(reason_name(r).into()),
                }),
                meta: w.metas.get(name).cloned().unwrap_or_default(),
            })
            .collect(),
        drop: w.drop.clone(),
    }
}

/// A Welcome from the wire, with the envelope's epoch.
pub fn welcome_from(w: pb::Welcome, epoch: Epoch) -> Result<Welcome, WireError> {
    let mut plans = Vec::with_capacity(w.plans.len());
    let mut metas = std::collections::BTreeMap::new();
    for (i, p) in w.plans.into_iter().enumerate() {
        if !p.meta.is_empty() {
            metas.insert(p.collection.clone(), p.meta);
        }
        let plan = match p.action {
            Some(pb::plan::Action::StreamFrom(0)) => return bad(format!("welcome.plans[{i}].stream_from is 0")),
            Some(pb::plan::Action::StreamFrom(from)) => CollectionPlan::Stream { from },
            Some(pb::plan::Action::TruncateAfter(after)) => CollectionPlan::Truncate { after },
            Some(pb::plan::Action::Snapshot(r)) => CollectionPlan::Snapshot(
                [
                    SnapshotReason::Missing,
                    SnapshotReason::OtherIncarnation,
                    SnapshotReason::DivergedPastCheckpoint,
                    SnapshotReason::BehindRetention,
                ]
                .into_iter()
                .find(|x| reason_name(*x) == r)
                .ok_or_else(|| WireError(format!("welcome.plans[{i}].snapshot: unknown reason {r:?}")))?,
            ),
            None => return bad(format!("welcome.plans[{i}].action is missing")),
        };
        plans.push((p.collection, p.incarnation, plan));
    }
    Ok(Welcome {
        pair_id: w.pair_id,
        node_id: w.node_id,
        epoch,
        plans,
        drop: w.drop,
        metas,
    })
}

/// A chunk of collection `name` to the wire (its epoch goes in the
/// envelope).
pub fn chunk_to(name: &str, c: &Chunk) -> pb::Chunk {
    pb::Chunk {
        collection: name.to_string(),
        first_lsn: c.first_lsn,
        records: c.records.clone(),
        crcs: c.crcs.clone(),
        epochs: Vec::new(),
        sent_at_us: c.sent_at_us,
        primary_durable_lsn: c.primary_durable,
    }
}

/// A chunk from the wire with the envelope's epoch: its collection's name
/// and the chunk. Counts are checked here; CRCs and position by the
/// receiver.
pub fn chunk_from(c: pb::Chunk, epoch: Epoch) -> Result<(String, Chunk), WireError> {
    if c.first_lsn == 0 {
        return bad("chunk.first_lsn is 0");
    }
    if c.records.len() != c.crcs.len() {
        return bad(format!("chunk: {} records but {} crcs", c.records.len(), c.crcs.len()));
    }
    Ok((
        c.collection,
        Chunk {
            epoch,
            first_lsn: c.first_lsn,
            records: c.records,
            crcs: c.crcs,
            sent_at_us: c.sent_at_us,
            primary_durable: c.primary_durable_lsn,
        },
    ))
}

/// An ack of collection `name` to the wire.
pub fn ack_to(name: &str, a: &Ack) -> pb::Ack {
    pb::Ack {
        collection: name.to_string(),
        received_lsn: a.received,
        durable_lsn: a.durable,
        applied_lsn: a.applied,
        echo_sent_at_us: a.echo_sent_at_us,
    }
}

/// An ack from the wire: its collection's name and the ack. A standby
/// cannot have applied or made durable more than it received.
pub fn ack_from(a: pb::Ack) -> Result<(String, Ack), WireError> {
    if a.durable_lsn > a.received_lsn || a.applied_lsn > a.received_lsn {
        return bad(format!(
            "ack: durable {} or applied {} is past received {}",
            a.durable_lsn, a.applied_lsn, a.received_lsn
        ));
    }
    Ok((
        a.collection,
        Ack {
            received: a.received_lsn,
            durable: a.durable_lsn,
            applied: a.applied_lsn,
            echo_sent_at_us: a.echo_sent_at_us,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(term: u64, node: u64) -> Epoch {
        Epoch { term, node }
    }

    #[test]
    fn every_message_round_trips_through_its_bytes() {
        use prost::Message;
        let hello = Hello {
            node: NodeReport {
                pair_id: "ab".repeat(16),
                node_id: 9,
                epoch: e(3, 9),
                has_data: true,
            },
            collections: vec![CollectionState {
                name: "docs".into(),
                incarnation: 77,
                history: EpochHistory::from_entries(vec![(e(1, 2), 1), (e(3, 9), 40)]).unwrap(),
                durable: 55,
                checkpoint: 30,
                needs_snapshot: false,
            }],
        };
        let bytes = hello_to(&hello).encode_to_vec();
        assert_eq!(hello_from(pb::Hello::decode(&bytes[..]).unwrap()).unwrap(), hello);
        let w = Welcome {
            pair_id: "ab".repeat(16),
            node_id: 4,
            epoch: e(3, 9),
            plans: vec![
                ("a".into(), 1, CollectionPlan::Stream { from: 56 }),
                ("b".into(), 2, CollectionPlan::Truncate { after: 39 }),
                ("c".into(), 3, CollectionPlan::Snapshot(SnapshotReason::BehindRetention)),
            ],
            drop: vec!["old".into()],
            metas: [("c".to_string(), b"{}".to_vec())].into_iter().collect(),
        };
        let bytes = welcome_to(&w).encode_to_vec();
        assert_eq!(
            welcome_from(pb::Welcome::decode(&bytes[..]).unwrap(), e(3, 9)).unwrap(),
            w
        );
        let c = Chunk {
            epoch: e(3, 9),
            first_lsn: 56,
            records: vec![b"x".to_vec(), b"yz".to_vec()],
            crcs: vec![crc32c::crc32c(b"x"), crc32c::crc32c(b"yz")],
            sent_at_us: 123,
            primary_durable: 60,
        };
        let bytes = chunk_to("docs", &c).encode_to_vec();
        assert_eq!(
            chunk_from(pb::Chunk::decode(&bytes[..]).unwrap(), e(3, 9)).unwrap(),
            ("docs".into(), c)
        );
        let a = Ack {
            received: 57,
            durable: 57,
            applied: 56,
            echo_sent_at_us: 123,
        };
        let bytes = ack_to("docs", &a).encode_to_vec();
        assert_eq!(
            ack_from(pb::Ack::decode(&bytes[..]).unwrap()).unwrap(),
            ("docs".into(), a)
        );
    }

    #[test]
    fn bad_messages_are_refused_naming_the_field() {
        let mut h = hello_to(&Hello {
            node: NodeReport {
                pair_id: String::new(),
                node_id: 1,
                epoch: Epoch::ZERO,
                has_data: false,
            },
            collections: vec![],
        });
        h.epoch = None;
        assert!(hello_from(h.clone())
            .unwrap_err()
            .to_string()
            .contains("hello.epoch is missing"));
        h.epoch = Some(epoch_to(e(1, 1)));
        h.collections.push(pb::CollectionState {
            name: "c".into(),
            history: vec![
                pb::EpochEntry {
                    epoch: Some(epoch_to(e(2, 1))),
                    first_lsn: 9,
                },
                pb::EpochEntry {
                    epoch: Some(epoch_to(e(1, 1))),
                    first_lsn: 20,
                },
            ],
            ..Default::default()
        });
        let m = hello_from(h.clone()).unwrap_err().to_string();
        assert!(
            m.contains("hello.collections[0].history") && m.contains("does not follow"),
            "{m}"
        );
        h.collections[0].history.clear();
        h.collections.push(h.collections[0].clone());
        assert!(hello_from(h.clone()).unwrap_err().to_string().contains("twice"));
        h.collections.pop();
        h.collections[0].needs_snapshot = true;
        h.collections[0].durable_lsn = 5;
        assert!(hello_from(h).unwrap_err().to_string().contains("needs a snapshot"));
        let w = pb::Welcome {
            plans: vec![pb::Plan {
                collection: "c".into(),
                incarnation: 1,
                action: Some(pb::plan::Action::Snapshot("why".into())),
                meta: Vec::new(),
            }],
            ..Default::default()
        };
        assert!(welcome_from(w, e(1, 1))
            .unwrap_err()
            .to_string()
            .contains("unknown reason \"why\""));
        let w = pb::Welcome {
            plans: vec![pb::Plan::default()],
            ..Default::default()
        };
        assert!(welcome_from(w, e(1, 1))
            .unwrap_err()
            .to_string()
            .contains("action is missing"));
        let c = pb::Chunk {
            first_lsn: 3,
            records: vec![vec![1]],
            crcs: vec![],
            ..Default::default()
        };
        assert!(chunk_from(c, e(1, 1))
            .unwrap_err()
            .to_string()
            .contains("1 records but 0 crcs"));
        let a = pb::Ack {
            received_lsn: 3,
            durable_lsn: 4,
            ..Default::default()
        };
        assert!(ack_from(a).unwrap_err().to_string().contains("past received"));
    }
}
