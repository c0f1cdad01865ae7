//! Replication to a warm standby (issue 19).
//!
//! Owns: the node's identity in a pair (`identity`: `node.json`), the
//! pure decisions of a standby's handshake (`handshake`: is this peer our
//! pair's, is it fenced, and per collection stream / cut / snapshot), the
//! `[replication]` settings (`settings`), one collection's log stream
//! without I/O (`stream`: chunks, acks, flow control, the sync gate), the
//! handshake's messages (`session`), what each end does with a plan and
//! with acks (`link`), their conversions to and from
//! `quarry.replication.v1` with every check of a peer's message (`wire`),
//! and the lease's arithmetic (`lease`). The simulation (`sim_tests`)
//! drives exactly these. On top of them, the running pair: this node's
//! role, lease, gates and write admission (`node`), the `Replication`
//! service and its token (`service`), the primary's Follow sessions
//! (`primary`), the standby's follower and the primary's watch on its peer
//! (`standby`), promotion and demotion (`promote`), and `switchover`.
//! Does not own: the WAL's cut and epoch history (`quarry_engine::wal`),
//! a collection's commit gate, replicated apply, snapshots and segment
//! files (`quarry_engine::collection`), which this layer drives.
//! ARCHITECTURE.md ("Failover") describes the flows.

pub mod handshake;
pub mod identity;
pub mod lease;
pub mod link;
pub mod node;
pub mod primary;
pub mod promote;
pub mod service;
pub mod session;
pub mod settings;
#[cfg(test)]
mod sim_tests;
pub mod standby;
pub mod stream;
#[cfg(test)]
mod stream_tests;
pub mod switchover;
pub mod wire;
