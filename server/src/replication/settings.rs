//! The `[replication]` table of quarryd's configuration.
//!
//! Owns: the keys, their defaults and range checks, and reading the
//! shared-secret token file. Does not own: what the settings do.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

/// This node's part in a pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// No replication (one node).
    #[default]
    None,
    /// Accepts writes and streams its log to the standby.
    Primary,
    /// Follows the primary's log; read-only until promoted.
    Standby,
}

/// When a primary acknowledges a write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Once it is durable on both nodes (no acknowledged write is lost by
    /// a failover).
    #[default]
    Sync,
    /// Once it is durable on the primary; writes are refused while the
    /// standby lags past `max_lag_bytes` or `max_lag_ms`.
    Async,
}

/// The `[replication]` table.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ReplicationSettings {
    /// "none" (default), "primary" or "standby".
    pub role: Role,
    /// The peer's replication listener, host:port (the standby dials the
    /// primary; the primary names its standby for `quarryctl status`).
    pub peer: Option<String>,
    /// Where this node serves the `Replication` service (its own listener:
    /// the public API cannot reach it).
    pub replication_listen: Option<SocketAddr>,
    /// A file holding the pair's shared secret (one line, at least 16
    /// bytes); both nodes use the same one.
    pub token_file: Option<PathBuf>,
    /// "sync" (default) or "async".
    pub mode: Mode,
    /// The primary's write lease, renewed by the standby's acks, ms.
    pub lease_ms: u64,
    /// Async: writes are refused while the standby lags more bytes than
    /// this.
    pub max_lag_bytes: u64,
    /// Async: writes are refused while the standby lags more than this, ms.
    pub max_lag_ms: u64,
    /// A standby within this many bytes of its primary's log is eligible
    /// for promotion (and, in sync mode, gates writes).
    pub eligible_lag_bytes: u64,
    /// Most time a write waits for the standby when the client set no
    /// shorter deadline, ms; then its outcome is unknown (DEADLINE_EXCEEDED
    /// with `quarry-outcome: unknown`).
    pub write_timeout_ms: u64,
    /// TLS on the replication link: this node's certificate chain (PEM),
    /// served on `replication_listen` and presented when it dials its
    /// peer. With `tls_key` and `tls_ca`; both nodes turn TLS on together.
    pub tls_cert: Option<PathBuf>,
    /// This node's private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// The CA that signed both nodes' certificates (PEM): the peer's
    /// server certificate must chain to it, and client certificates, when
    /// presented or required, too.
    pub tls_ca: Option<PathBuf>,
    /// The name the peer's certificate must carry (default: the host in
    /// `peer`, a DNS name or an IP address).
    pub tls_server_name: Option<String>,
    /// Refuse a TLS handshake without a client certificate chained to
    /// `tls_ca` (default false: the token authenticates, TLS encrypts and
    /// authenticates the server). quarryctl then needs `--tls-cert` and
    /// `--tls-key` too.
    pub tls_require_client_cert: bool,
}

impl Default for ReplicationSettings {
    fn default() -> Self {
        ReplicationSettings {
            role: Role::None,
            peer: None,
            replication_listen: None,
            token_file: None,
            mode: Mode::Sync,
            lease_ms: 2000,
            max_lag_bytes: 64 << 20,
            max_lag_ms: 5000,
            eligible_lag_bytes: 16 << 20,
            write_timeout_ms: 10_000,
            tls_cert: None,
            tls_key: None,
            tls_ca: None,
            tls_server_name: None,
            tls_require_client_cert: false,
        }
    }
}

impl ReplicationSettings {
    /// Check the table; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        let tls = [self.tls_cert.is_some(), self.tls_key.is_some(), self.tls_ca.is_some()];
        if tls.contains(&true) && tls.contains(&false) {
            return Err("replication.tls_cert, tls_key and tls_ca go together: set all three for TLS, or none".into());
        }
        if !self.tls() && (self.tls_require_client_cert || self.tls_server_name.is_some()) {
            return Err(
                "replication.tls_require_client_cert and tls_server_name need TLS on (tls_cert, tls_key, tls_ca)"
                    .into(),
            );
        }
        if self.role == Role::None {
            return Ok(());
        }
        let role = if self.role == Role::Primary {
            "primary"
        } else {
            "standby"
        };
        if self.token_file.is_none() {
            return Err(format!(
                "replication.token_file is required with role = \"{role}\" (the pair's shared secret)"
            ));
        }
        // Roles swap at a failover, so both nodes need both.
        if self.peer.is_none() {
            return Err(format!(
                "replication.peer is required with role = \"{role}\" (the other node's replication_listen: the standby dials it, the primary asks it whether it was failed over)"
            ));
        }
        if self.replication_listen.is_none() {
            return Err(format!(
                "replication.replication_listen is required with role = \"{role}\" (a standby serves promotion on it, a primary its log)"
            ));
        }
        if !(10..=600_000).contains(&self.write_timeout_ms) {
            return Err(format!(
                "replication.write_timeout_ms = {} is out of range 10..=600000",
                self.write_timeout_ms
            ));
        }
        if let Some(p) = &self.peer {
            if p.rsplit_once(':')
                .and_then(|(h, port)| (!h.is_empty()).then(|| port.parse::<u16>().ok()))
                .flatten()
                .is_none()
            {
                return Err(format!("replication.peer = {p:?} is not host:port"));
            }
        }
        if !(100..=60_000).contains(&self.lease_ms) {
            return Err(format!(
                "replication.lease_ms = {} is out of range 100..=60000",
                self.lease_ms
            ));
        }
        if !(1..=1 << 20).contains(&self.max_lag_ms) {
            return Err(format!(
                "replication.max_lag_ms = {} is out of range 1..=1048576",
                self.max_lag_ms
            ));
        }
        if self.max_lag_bytes < 1 << 20 {
            return Err(format!(
                "replication.max_lag_bytes = {} is below 1 MiB",
                self.max_lag_bytes
            ));
        }
        Ok(())
    }

    /// TLS is on for the replication link.
    pub fn tls(&self) -> bool {
        self.tls_cert.is_some()
    }

    /// This node's TLS files, when TLS is on.
    pub fn tls_files(&self) -> Option<quarry_proto::tls::TlsFiles<'_>> {
        Some(quarry_proto::tls::TlsFiles {
            table: "replication",
            cert: self.tls_cert.as_deref()?,
            key: self.tls_key.as_deref()?,
            ca: self.tls_ca.as_deref(),
        })
    }

    /// The configuration the node dials its peer with, when TLS is on;
    /// an unreadable or malformed file is refused here.
    pub fn client_tls(&self) -> Result<Option<tonic::transport::ClientTlsConfig>, String> {
        self.tls_files()
            .map(|f| f.client(self.tls_server_name.as_deref()))
            .transpose()
    }

    /// Read the token file: its first line, trimmed, at least 16 bytes.
    pub fn token(&self) -> Result<Option<String>, String> {
        let Some(path) = &self.token_file else { return Ok(None) };
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("replication.token_file {}: {e}", path.display()))?;
        let token = text.lines().next().unwrap_or("").trim().to_string();
        if token.len() < 16 {
            return Err(format!(
                "replication.token_file {}: the token is {} bytes; at least 16 are required",
                path.display(),
                token.len()
            ));
        }
        Ok(Some(token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(t: &str) -> Result<ReplicationSettings, String> {
        toml::from_str::<ReplicationSettings>(t).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_one_node_and_each_key_is_checked() {
        let d = ReplicationSettings::default();
        assert_eq!(d.role, Role::None);
        assert!(d.validate().is_ok());
        let s = parse("role = \"standby\"\npeer = \"10.0.0.1:7702\"\nreplication_listen = \"0.0.0.0:7702\"\ntoken_file = \"/t\"\nmode = \"async\"").unwrap();
        assert_eq!((s.role, s.mode), (Role::Standby, Mode::Async));
        assert!(s.validate().is_ok());
        for (t, want) in [
            ("role = \"primary\"", "token_file is required"),
            ("role = \"standby\"\ntoken_file = \"/t\"", "peer is required"),
            (
                "role = \"primary\"\ntoken_file = \"/t\"\npeer = \"h:1\"",
                "replication_listen is required",
            ),
            (
                "role = \"standby\"\ntoken_file = \"/t\"\npeer = \"nocolon\"\nreplication_listen = \"0.0.0.0:1\"",
                "not host:port",
            ),
            (
                "role = \"standby\"\ntoken_file = \"/t\"\npeer = \"h:1\"\nreplication_listen = \"0.0.0.0:1\"\nlease_ms = 5",
                "lease_ms = 5",
            ),
            (
                "role = \"standby\"\ntoken_file = \"/t\"\npeer = \"h:1\"\nreplication_listen = \"0.0.0.0:1\"\nwrite_timeout_ms = 1",
                "write_timeout_ms = 1",
            ),
            ("tls_cert = \"/c\"\ntls_key = \"/k\"", "go together"),
            ("tls_require_client_cert = true", "need TLS on"),
            ("tls_server_name = \"q\"", "need TLS on"),
        ] {
            let e = parse(t).unwrap().validate().unwrap_err();
            assert!(e.contains(want), "{t}: {e}");
        }
        assert!(parse("role = \"leader\"").unwrap_err().contains("unknown variant"));
        assert!(parse("lease = 5").unwrap_err().contains("unknown field"));
    }

    #[test]
    fn a_short_or_missing_token_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("token");
        let s = ReplicationSettings {
            token_file: Some(p.clone()),
            ..Default::default()
        };
        assert!(s.token().unwrap_err().contains("No such file"));
        std::fs::write(&p, "short\n").unwrap();
        assert!(s.token().unwrap_err().contains("at least 16"));
        std::fs::write(&p, "  0123456789abcdef0123  \nignored\n").unwrap();
        assert_eq!(s.token().unwrap().as_deref(), Some("0123456789abcdef0123"));
    }
}
