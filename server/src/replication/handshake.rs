//! The standby's handshake, as pure decisions over what both nodes
//! report: may these two nodes be primary and standby of one pair, and for
//! each collection, does the standby stream on, cut a divergent tail
//! first, or need a snapshot.
//!
//! Owns: [`check_pair`] and [`plan_collection`]. Does not own: the
//! messages that carry the reports (the stream), or carrying out a plan.
//!
//! The rules that keep a wiped or foreign node harmless: a node with no
//! pair never leads a standby that has one (it would tell it to cut or
//! replace its data); a standby with data of its own and no pair is never
//! overwritten; a standby that knows a newer epoch than the would-be
//! primary fences it.

use quarry_engine::wal::{common_prefix, Epoch, EpochHistory, Lsn};

/// What one node says about itself in the handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeReport {
    /// Its pair id ("" = none).
    pub pair_id: String,
    /// Its node id.
    pub node_id: u64,
    /// The newest epoch it knows of.
    pub epoch: Epoch,
    /// Whether any of its collections holds a record or a segment.
    pub has_data: bool,
}

/// Whether the would-be primary may lead this standby.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PairVerdict {
    /// Yes; the standby takes the pair id `adopt` when it has none.
    Follow {
        /// The pair id for a standby that had none.
        adopt: Option<String>,
    },
    /// Neither has a pair and the standby is empty: the primary mints a
    /// pair id (durably) and the standby adopts it.
    NewPair,
    /// The standby knows a newer epoch: the would-be primary is fenced
    /// and must follow, not lead.
    Fenced {
        /// The standby's epoch.
        epoch: Epoch,
    },
    /// Never: the reason, for both logs and `quarryctl status`.
    Refuse(String),
}

/// May `primary` lead `standby`?
pub fn check_pair(primary: &NodeReport, standby: &NodeReport) -> PairVerdict {
    if primary.node_id == standby.node_id {
        return PairVerdict::Refuse(format!(
            "both nodes have node id {:016x}: one data directory was copied from the other; give the standby an empty data directory",
            primary.node_id
        ));
    }
    let verdict = match (primary.pair_id.is_empty(), standby.pair_id.is_empty()) {
        (_, false) if primary.pair_id == standby.pair_id => PairVerdict::Follow { adopt: None },
        (true, false) => PairVerdict::Refuse(format!(
            "this primary belongs to no pair (a new or wiped data directory) and the standby belongs to pair {}; it will not lead that pair: promote the standby (quarryctl failover --primary-down) and re-join this node as its standby",
            standby.pair_id
        )),
        (false, false) => PairVerdict::Refuse(format!(
            "the standby belongs to pair {}, not to this primary's pair {}; point it at its own primary, or empty its data directory to join this pair",
            standby.pair_id, primary.pair_id
        )),
        (_, true) if standby.has_data => PairVerdict::Refuse(
            "the standby belongs to no pair but holds collections of its own; they would be replaced: empty its data directory to join".into(),
        ),
        (true, true) => PairVerdict::NewPair,
        (false, true) => PairVerdict::Follow {
            adopt: Some(primary.pair_id.clone()),
        },
    };
    // Within one pair, a standby that saw a newer epoch fences the
    // would-be primary (it was failed over while away).
    if matches!(verdict, PairVerdict::Follow { .. } | PairVerdict::NewPair) && standby.epoch > primary.epoch {
        return PairVerdict::Fenced { epoch: standby.epoch };
    }
    verdict
}

/// The primary's side of one collection.
#[derive(Clone, Copy, Debug)]
pub struct PrimaryLog<'a> {
    /// The collection's incarnation (a drop and recreate makes a new one).
    pub incarnation: u64,
    /// Its WAL's epoch history.
    pub history: &'a EpochHistory,
    /// Oldest LSN its WAL still holds.
    pub first_lsn: Lsn,
    /// Its WAL's last LSN.
    pub last_lsn: Lsn,
}

/// The standby's side of one collection.
#[derive(Clone, Copy, Debug)]
pub struct StandbyLog<'a> {
    /// Its incarnation.
    pub incarnation: u64,
    /// Its WAL's epoch history.
    pub history: &'a EpochHistory,
    /// Its WAL's last durable LSN.
    pub last_lsn: Lsn,
    /// Its manifest's checkpoint (records up to it are in segments).
    pub checkpoint: Lsn,
}

/// Why a standby's collection needs a snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotReason {
    /// The standby does not have it.
    Missing,
    /// The standby's is another incarnation (dropped and recreated).
    OtherIncarnation,
    /// Its divergent records are already inside its segments.
    DivergedPastCheckpoint,
    /// The records it needs next were deleted from the primary's WAL.
    BehindRetention,
}

/// What the standby does with one collection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CollectionPlan {
    /// Receive records from `from` on.
    Stream {
        /// The first LSN to send.
        from: Lsn,
    },
    /// Cut every record after `after` (divergent), then receive from
    /// `after + 1`.
    Truncate {
        /// The last LSN both logs share.
        after: Lsn,
    },
    /// Replace the collection from a snapshot.
    Snapshot(SnapshotReason),
}

/// The plan for one collection of the primary's.
pub fn plan_collection(primary: &PrimaryLog, standby: Option<&StandbyLog>) -> CollectionPlan {
    let Some(s) = standby else {
        return CollectionPlan::Snapshot(SnapshotReason::Missing);
    };
    if s.incarnation != primary.incarnation {
        return CollectionPlan::Snapshot(SnapshotReason::OtherIncarnation);
    }
    let common = common_prefix(s.history, s.last_lsn, primary.history, primary.last_lsn);
    if common < s.checkpoint {
        return CollectionPlan::Snapshot(SnapshotReason::DivergedPastCheckpoint);
    }
    if common + 1 < primary.first_lsn {
        return CollectionPlan::Snapshot(SnapshotReason::BehindRetention);
    }
    if common < s.last_lsn {
        CollectionPlan::Truncate { after: common }
    } else {
        CollectionPlan::Stream { from: common + 1 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(pair: &str, id: u64, term: u64, has_data: bool) -> NodeReport {
        NodeReport {
            pair_id: pair.into(),
            node_id: id,
            epoch: Epoch {
                term,
                node: if term == 0 { 0 } else { 1 },
            },
            has_data,
        }
    }

    #[test]
    fn pairs_follow_new_pairs_form_and_wiped_or_foreign_nodes_are_refused() {
        let p = "a".repeat(32);
        let q = "b".repeat(32);
        assert_eq!(
            check_pair(&node(&p, 1, 2, true), &node(&p, 2, 2, true)),
            PairVerdict::Follow { adopt: None }
        );
        assert_eq!(
            check_pair(&node(&p, 1, 2, true), &node("", 2, 0, false)),
            PairVerdict::Follow { adopt: Some(p.clone()) },
            "an empty standby joins"
        );
        assert_eq!(
            check_pair(&node("", 1, 0, true), &node("", 2, 0, false)),
            PairVerdict::NewPair
        );
        // A wiped primary facing its pair's standby: refused, whatever it holds.
        for data in [false, true] {
            let v = check_pair(&node("", 3, 0, data), &node(&p, 2, 2, true));
            assert!(
                matches!(&v, PairVerdict::Refuse(m) if m.contains("will not lead")),
                "{v:?}"
            );
        }
        let v = check_pair(&node(&p, 1, 2, true), &node(&q, 2, 2, true));
        assert!(
            matches!(&v, PairVerdict::Refuse(m) if m.contains("not to this primary's pair")),
            "{v:?}"
        );
        let v = check_pair(&node(&p, 1, 2, true), &node("", 2, 0, true));
        assert!(
            matches!(&v, PairVerdict::Refuse(m) if m.contains("collections of its own")),
            "{v:?}"
        );
        let v = check_pair(&node(&p, 1, 2, true), &node(&p, 1, 2, true));
        assert!(matches!(&v, PairVerdict::Refuse(m) if m.contains("copied")), "{v:?}");
        // A standby that saw a newer epoch fences the would-be primary.
        assert_eq!(
            check_pair(&node(&p, 1, 2, true), &node(&p, 2, 3, true)),
            PairVerdict::Fenced {
                epoch: Epoch { term: 3, node: 1 }
            }
        );
    }

    fn h(entries: &[(u64, u64, Lsn)]) -> EpochHistory {
        EpochHistory::from_entries(
            entries
                .iter()
                .map(|&(t, n, f)| (Epoch { term: t, node: n }, f))
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn each_collection_streams_cuts_or_needs_a_snapshot() {
        let lead = h(&[(1, 1, 1), (2, 2, 101)]);
        let primary = PrimaryLog {
            incarnation: 7,
            history: &lead,
            first_lsn: 50,
            last_lsn: 150,
        };
        let plan = |hist: &EpochHistory, last, checkpoint, inc| {
            plan_collection(
                &primary,
                Some(&StandbyLog {
                    incarnation: inc,
                    history: hist,
                    last_lsn: last,
                    checkpoint,
                }),
            )
        };
        let same = h(&[(1, 1, 1)]);
        assert_eq!(
            plan(&same, 80, 40, 7),
            CollectionPlan::Stream { from: 81 },
            "behind, same epoch"
        );
        assert_eq!(
            plan(&lead, 150, 40, 7),
            CollectionPlan::Stream { from: 151 },
            "caught up"
        );
        // The old primary: epoch 1 ran on to 120 there; the new leader's
        // epoch 2 began at 101.
        assert_eq!(plan(&same, 120, 90, 7), CollectionPlan::Truncate { after: 100 });
        assert_eq!(
            plan(&same, 120, 110, 7),
            CollectionPlan::Snapshot(SnapshotReason::DivergedPastCheckpoint)
        );
        // A divergent epoch of its own (a promotion the leader never saw).
        let own = h(&[(1, 1, 1), (2, 9, 95)]);
        assert_eq!(plan(&own, 130, 60, 7), CollectionPlan::Truncate { after: 94 });
        assert_eq!(
            plan(&same, 30, 10, 7),
            CollectionPlan::Snapshot(SnapshotReason::BehindRetention)
        );
        assert_eq!(
            plan(&same, 49, 10, 7),
            CollectionPlan::Stream { from: 50 },
            "exactly at retention"
        );
        assert_eq!(
            plan(&same, 80, 40, 8),
            CollectionPlan::Snapshot(SnapshotReason::OtherIncarnation)
        );
        assert_eq!(
            plan_collection(&primary, None),
            CollectionPlan::Snapshot(SnapshotReason::Missing)
        );
    }
}
