//! Replication to a warm standby (issue 19, being built in layers).
//!
//! Owns: the node's identity in a pair (`identity`: `node.json`), the
//! pure decisions of a standby's handshake (`handshake`: is this peer our
//! pair's, is it fenced, and per collection stream / cut / snapshot), the
//! `[replication]` settings (`settings`), one collection's log stream
//! without I/O (`stream`: chunks, acks, flow control, the sync gate), the
//! handshake's messages (`session`), and what each end does with a plan
//! and with acks (`link`), and their conversions to and from
//! `quarry.replication.v1` with every check of a peer's message (`wire`).
//! The simulation (`sim_tests`) drives exactly these. Does not own: the WAL's cut
//! and epoch history (`quarry_engine::wal`) or a collection's commit gate
//! and replicated apply (`quarry_engine::collection`), which this layer
//! drives.
//!
//! The lease's arithmetic is `lease`. Not built yet: the `Replication`
//! gRPC service that carries all this, snapshot transfer over it,
//! promotion (`quarryctl failover`, `switchover`), status and metrics. ARCHITECTURE.md
//! ("Failover") says what is in place.

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
