//! The handshake's messages and the two sides' first steps, without I/O:
//! the standby describes what it holds (`Hello`), the primary answers with
//! a plan per collection (`Welcome`), built from the pure rules in
//! `handshake`.
//!
//! Owns: [`Hello`], [`CollectionState`], [`Welcome`],
//! [`collection_state`] and [`welcome`]. Does not own: carrying out a plan
//! (the standby's store: cut and reopen, install a snapshot) or the stream
//! that follows (`stream`).

use super::handshake::{check_pair, plan_collection, CollectionPlan, NodeReport, PairVerdict, PrimaryLog, StandbyLog};
use quarry_engine::collection::{needs_snapshot, Collection, CollectionError};
use quarry_engine::storage::Vfs;
use quarry_engine::wal::{Epoch, EpochHistory, Lsn};
use std::path::Path;

/// What a standby holds of one collection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CollectionState {
    /// Its name.
    pub name: String,
    /// Its incarnation.
    pub incarnation: u64,
    /// Its WAL's epoch history.
    pub history: EpochHistory,
    /// Its WAL's durable LSN (0 when it needs a snapshot: a cut-short
    /// install's state is never reported).
    pub durable: Lsn,
    /// Its manifest's checkpoint.
    pub checkpoint: Lsn,
    /// A snapshot install began and did not finish.
    pub needs_snapshot: bool,
}

/// The standby's first message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    /// Who it is.
    pub node: NodeReport,
    /// What it holds.
    pub collections: Vec<CollectionState>,
}

/// The primary's answer to a [`Hello`] it accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Welcome {
    /// The pair id the standby must hold (adopt it if it had none).
    pub pair_id: String,
    /// The primary's node id.
    pub node_id: u64,
    /// The primary's epoch.
    pub epoch: Epoch,
    /// Per primary collection: name, incarnation, what to do.
    pub plans: Vec<(String, u64, CollectionPlan)>,
    /// The standby's collections the primary does not have: dropped.
    pub drop: Vec<String>,
    /// Per collection, the primary's `collection.json` (a standby that
    /// lacks one creates it from this); filled by the server.
    pub metas: std::collections::BTreeMap<String, Vec<u8>>,
}

/// The answer when the primary does not accept the standby.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The standby knows a newer epoch: this would-be primary is fenced.
    Fenced(Epoch),
    /// Never (the reason).
    Refused(String),
}

/// Describe one collection for a [`Hello`].
pub fn collection_state(
    fs: &dyn Vfs,
    dir: &Path,
    name: &str,
    incarnation: u64,
    coll: &Collection,
) -> Result<CollectionState, CollectionError> {
    let marked = needs_snapshot(fs, dir);
    Ok(CollectionState {
        name: name.to_string(),
        incarnation,
        history: coll.wal().epochs(),
        durable: if marked { 0 } else { coll.wal().durable_lsn() },
        checkpoint: coll.checkpoint()?,
        needs_snapshot: marked,
    })
}

/// The primary's answer to `hello`: refused, fenced, or a plan for each of
/// its collections (`(name, incarnation, collection)`). `pair_id` is the
/// primary's (a new pair's is minted by the caller when `check_pair` says
/// so; pass it here already minted).
pub fn welcome(
    me: &NodeReport,
    epoch: Epoch,
    collections: &[(&str, u64, &Collection)],
    hello: &Hello,
) -> Result<Welcome, Refusal> {
    match check_pair(me, &hello.node) {
        PairVerdict::Fenced { epoch } => return Err(Refusal::Fenced(epoch)),
        PairVerdict::Refuse(why) => return Err(Refusal::Refused(why)),
        PairVerdict::Follow { .. } | PairVerdict::NewPair => {}
    }
    let mut plans = Vec::with_capacity(collections.len());
    for &(name, incarnation, coll) in collections {
        let wal = coll.wal();
        let history = wal.epochs();
        let theirs = hello.collections.iter().find(|c| c.name == name);
        let plan = match theirs {
            Some(c) if c.needs_snapshot => CollectionPlan::Snapshot(super::handshake::SnapshotReason::Missing),
            Some(c) => plan_collection(
                &PrimaryLog {
                    incarnation,
                    history: &history,
                    first_lsn: wal.first_lsn(),
                    last_lsn: wal.durable_lsn(),
                },
                Some(&StandbyLog {
                    incarnation: c.incarnation,
                    history: &c.history,
                    last_lsn: c.durable,
                    checkpoint: c.checkpoint,
                }),
            ),
            None => plan_collection(
                &PrimaryLog {
                    incarnation,
                    history: &history,
                    first_lsn: wal.first_lsn(),
                    last_lsn: wal.durable_lsn(),
                },
                None,
            ),
        };
        plans.push((name.to_string(), incarnation, plan));
    }
    let drop = hello
        .collections
        .iter()
        .filter(|c| !collections.iter().any(|p| p.0 == c.name))
        .map(|c| c.name.clone())
        .collect();
    Ok(Welcome {
        pair_id: me.pair_id.clone(),
        node_id: me.node_id,
        epoch,
        plans,
        drop,
        metas: Default::default(),
    })
}
