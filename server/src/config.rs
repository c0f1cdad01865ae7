//! quarryd's configuration: a TOML file, overridden by command-line flags.
//!
//! Owns: every setting's name, default and range check. Does not own: how
//! the settings are used (each subsystem reads its own).
//!
//! With no file and no flags, quarryd runs with the defaults below: data in
//! `$STATE_DIRECTORY` (set by systemd's `StateDirectory=`) or
//! `~/.local/share/quarry`, gRPC on 127.0.0.1:7700, metrics on
//! 127.0.0.1:7701. `ops/quarryd.toml` lists every key with its default.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Why the configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("config file {path}: {message}")]
    Parse {
        /// File.
        path: PathBuf,
        /// What the parser said (names the key and line).
        message: String,
    },
    /// A value is out of range.
    #[error("config: {0}")]
    Invalid(String),
}

/// The `io` key: which sector reader searches use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IoSetting {
    /// io_uring, else pread (with a log line).
    Auto,
    /// io_uring only.
    #[serde(alias = "io_uring")]
    Uring,
    /// Positional reads, one at a time.
    Pread,
}

/// The `wal_sync` key: when an acknowledged write is durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WalSync {
    /// fsync before the OK.
    Always,
    /// fsync every `wal_sync_interval_ms`.
    Interval,
}

/// The `log_format` key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Every setting. Unknown keys, and values a key does not take, are an
/// error when the file is read (a typo must not be ignored, nor surface at
/// first use).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where collections live.
    pub data_dir: PathBuf,
    /// gRPC listen address.
    pub listen: SocketAddr,
    /// Prometheus metrics listen address (HTTP, GET /metrics).
    pub metrics_listen: SocketAddr,
    /// The JSON HTTP API's listen address (unset = off): the gRPC API as
    /// JSON over HTTP/1.1, with the same tokens, TLS, limits and errors.
    pub http_listen: Option<SocketAddr>,
    /// Also serve gRPC on this Unix-domain socket (unset = TCP only), for
    /// clients on the same host: it skips the TCP/IP stack on both sides
    /// (see ARCHITECTURE.md, "Unix-domain socket"). A stale
    /// socket file from an unclean exit is replaced; a path in use by a
    /// running server, or a file that is not a socket, is refused. The
    /// file is removed on exit.
    pub listen_unix: Option<PathBuf>,
    /// Bearer tokens for the gRPC API, one `<role> <token>` per line
    /// (`read`: search, get, list, describe, operation status, stats;
    /// `admin`: everything). Unset: no token is asked for, and `listen`
    /// must then be a loopback address unless `allow_unauthenticated`.
    pub api_token_file: Option<PathBuf>,
    /// Serve the API without tokens on a non-loopback `listen` (anyone
    /// who reaches the port can write and drop collections).
    pub allow_unauthenticated: bool,
    /// TLS on the public gRPC (and HTTP) listeners: this server's
    /// certificate chain (PEM). With `tls_key`; `tls_ca` is optional.
    pub tls_cert: Option<PathBuf>,
    /// Its private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// A CA for client certificates: with it, clients are asked for a
    /// certificate chained to it (optional unless
    /// `tls_require_client_cert`).
    pub tls_ca: Option<PathBuf>,
    /// Refuse clients without a certificate chained to `tls_ca`.
    pub tls_require_client_cert: bool,
    /// Search shards (pinned threads, one ring each); 0 = one per core.
    pub shards: usize,
    /// Requests waiting per shard before the service answers
    /// RESOURCE_EXHAUSTED.
    pub queue_depth: usize,
    /// Queries a shard works on at once (interleaved on its ring).
    pub inflight_per_shard: usize,
    /// Microseconds a shard keeps polling its rings and queue after its
    /// last progress before it sleeps. Polling avoids a vCPU wake-up per
    /// read completion and per request (tens of microseconds each on a
    /// VM) at the cost of a busy core while there is traffic; 0 = always
    /// sleep in the kernel (no CPU while waiting, higher latency).
    pub shard_poll_us: u64,
    /// Where the network side (tonic/h2) runs. 0 (the default) = on shard
    /// 0's own thread: the shard turns a single-threaded tokio runtime
    /// from its loop, so a request is read, searched (when it lands on
    /// shard 0) and answered without waking another thread, and while the
    /// shard polls, arriving requests need no wake-up at all. 1 = a
    /// separate single-threaded runtime (each request and each reply
    /// wakes it); N > 1 = a multi-threaded runtime with N workers, which
    /// only pays off when TLS or very many connections load the network
    /// side. See ARCHITECTURE.md for the measurements.
    pub net_threads: usize,
    /// RAM the open indexes (PQ codes, navigation tier, cache, id maps)
    /// plus running builds may use, MiB. Opening or building past it is
    /// refused.
    pub memory_budget_mb: u64,
    /// Seconds SIGTERM waits for in-flight requests before exiting.
    pub drain_timeout_secs: f64,
    /// Most queries in one SearchBatch, or ids in one Get.
    pub max_batch: usize,
    /// Largest gRPC message accepted, bytes.
    pub max_message_bytes: usize,
    /// Largest k a search may ask for.
    pub max_k: usize,
    /// Largest L a search may ask for.
    pub max_l: usize,
    /// L when the request leaves it 0 (raised to k if smaller).
    pub default_l: usize,
    /// W when the request leaves it 0.
    pub default_w: usize,
    /// Hot nodes cached in RAM per collection (0 = none); cached by BFS from
    /// the entry points when the collection opens.
    pub cache_nodes: usize,
    /// Threads for index builds (0 = all cores).
    pub build_threads: usize,
    /// Reader backend: "auto" (io_uring, else pread), "uring" or "pread".
    pub io: IoSetting,
    /// Log filter (tracing env-filter syntax), overridden by RUST_LOG.
    pub log: String,
    /// Log format: "text" or "json".
    pub log_format: LogFormat,
    /// Mutable collections: when an acknowledged write is durable.
    /// "always" (default): the WAL is fsynced before the OK (group
    /// commit), so an acknowledged write survives power loss. "interval":
    /// the OK comes once the record is in the page cache and a background
    /// thread fsyncs every `wal_sync_interval_ms`; a power cut or kernel
    /// crash can lose the writes acknowledged in the last interval (a
    /// killed quarryd loses nothing).
    pub wal_sync: WalSync,
    /// Milliseconds between background fsyncs under `wal_sync = "interval"`.
    pub wal_sync_interval_ms: u64,
    /// WAL segment file size, MiB (retention deletes whole segments).
    pub wal_segment_mb: u64,
    /// Most WAL kept for lagging followers (standbys), MiB. Records not yet
    /// merged into a segment are always kept; past this, segments kept
    /// only for followers are deleted and those followers dropped (they
    /// must re-sync from a snapshot).
    pub wal_retain_max_mb: u64,
    /// Vectors in a collection's in-RAM fresh index that start a
    /// background flush to a new disk segment.
    pub flush_at: usize,
    /// Fresh vectors at which writes are refused with RESOURCE_EXHAUSTED
    /// (unary) or held back (BulkUpsert) until the flush catches up; at
    /// least `flush_at`.
    pub write_stall_at: usize,
    /// Most disk segments a search of a collection visits; a flush
    /// that would pass it merges every segment into one instead.
    pub max_segments: usize,
    /// Segments of at most this many vectors are held whole in RAM (the
    /// node cache) so searching them reads nothing from disk; 0 = none.
    pub ram_segment_nodes: usize,
    /// Largest payload of one point, bytes.
    pub max_payload_bytes: usize,
    /// Unary write requests (Upsert/Delete) being applied at once beyond
    /// which more get RESOURCE_EXHAUSTED.
    pub max_inflight_writes: usize,
    /// The `[replication]` table (a warm standby; off by default).
    pub replication: crate::replication::settings::ReplicationSettings,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: default_data_dir(),
            listen: "127.0.0.1:7700".parse().expect("literal"),
            metrics_listen: "127.0.0.1:7701".parse().expect("literal"),
            listen_unix: None,
            http_listen: None,
            api_token_file: None,
            allow_unauthenticated: false,
            tls_cert: None,
            tls_key: None,
            tls_ca: None,
            tls_require_client_cert: false,
            shards: 0,
            queue_depth: 256,
            inflight_per_shard: 32,
            shard_poll_us: 2000,
            net_threads: 0,
            memory_budget_mb: 8192,
            drain_timeout_secs: 10.0,
            max_batch: 1024,
            max_message_bytes: 16 << 20,
            max_k: 1000,
            max_l: 10_000,
            default_l: 64,
            default_w: 8,
            cache_nodes: 0,
            build_threads: 0,
            io: IoSetting::Auto,
            log: "info".into(),
            log_format: LogFormat::Text,
            wal_sync: WalSync::Always,
            wal_sync_interval_ms: 10,
            wal_segment_mb: 64,
            wal_retain_max_mb: 16 << 10,
            flush_at: 50_000,
            write_stall_at: 200_000,
            max_segments: 4,
            ram_segment_nodes: 100_000,
            max_payload_bytes: 64 << 10,
            max_inflight_writes: 64,
            replication: Default::default(),
        }
    }
}

/// `$STATE_DIRECTORY` (systemd), else `~/.local/share/quarry`, else
/// `./quarry-data`.
pub fn default_data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("STATE_DIRECTORY") {
        // systemd may pass several, colon-separated; the first is ours.
        if let Some(first) = d.to_string_lossy().split(':').next() {
            return PathBuf::from(first);
        }
    }
    match std::env::var_os("HOME") {
        Some(h) => Path::new(&h).join(".local/share/quarry"),
        None => PathBuf::from("quarry-data"),
    }
}

impl Config {
    /// Read `path` (all keys optional).
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        Self::from_toml(&text).map_err(|message| ConfigError::Parse {
            path: path.into(),
            message,
        })
    }

    /// Parse TOML text.
    pub fn from_toml(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| e.to_string().trim_end().to_string())
    }

    /// Shards to run (resolving 0 to the core count).
    pub fn shard_count(&self) -> usize {
        if self.shards == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            self.shards
        }
    }

    /// The memory budget in bytes.
    pub fn memory_budget_bytes(&self) -> u64 {
        self.memory_budget_mb << 20
    }

    /// The WAL sync policy.
    pub fn wal_sync_policy(&self) -> quarry_engine::wal::SyncPolicy {
        use quarry_engine::wal::SyncPolicy;
        match self.wal_sync {
            WalSync::Always => SyncPolicy::Always,
            WalSync::Interval => SyncPolicy::Interval(std::time::Duration::from_millis(self.wal_sync_interval_ms)),
        }
    }

    /// The reader backend.
    pub fn io_backend(&self) -> quarry_engine::io::IoBackend {
        use quarry_engine::io::IoBackend;
        match self.io {
            IoSetting::Auto => IoBackend::Auto,
            IoSetting::Uring => IoBackend::Uring,
            IoSetting::Pread => IoBackend::Pread,
        }
    }

    /// The public listeners' TLS files, when TLS is on.
    pub fn tls_files(&self) -> Option<quarry_proto::tls::TlsFiles<'_>> {
        Some(quarry_proto::tls::TlsFiles {
            table: "",
            cert: self.tls_cert.as_deref()?,
            key: self.tls_key.as_deref()?,
            ca: self.tls_ca.as_deref(),
        })
    }

    /// Check every range; the message names the key and the limit.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        self.replication.validate().map_err(ConfigError::Invalid)?;
        let open = [("listen", Some(self.listen)), ("http_listen", self.http_listen)];
        for (key, addr) in open {
            let Some(addr) = addr else { continue };
            if self.api_token_file.is_none() && !addr.ip().is_loopback() && !self.allow_unauthenticated {
                return bad(format!(
                    "{key} = {addr} is not a loopback address and no api_token_file is set: anyone who can reach it could write and drop collections. Set api_token_file (see ops/quarryd.toml), or allow_unauthenticated = true to serve it open on purpose"
                ));
            }
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return bad("tls_cert and tls_key go together: set both for TLS, or neither".into());
        }
        if self.tls_cert.is_none() && (self.tls_ca.is_some() || self.tls_require_client_cert) {
            return bad("tls_ca and tls_require_client_cert need TLS on (tls_cert and tls_key)".into());
        }
        if self.tls_require_client_cert && self.tls_ca.is_none() {
            return bad("tls_require_client_cert needs tls_ca (the CA client certificates must chain to)".into());
        }
        if self.shards > 256 {
            return bad(format!("shards = {} is more than 256", self.shards));
        }
        if !(1..=1 << 20).contains(&self.queue_depth) {
            return bad(format!(
                "queue_depth = {} is out of range 1..=1048576",
                self.queue_depth
            ));
        }
        if self.shard_poll_us > 1_000_000 {
            return Err(ConfigError::Invalid(format!(
                "shard_poll_us = {} is out of range 0..=1000000",
                self.shard_poll_us
            )));
        }
        if !(1..=60_000).contains(&self.wal_sync_interval_ms) {
            return bad(format!(
                "wal_sync_interval_ms = {} is out of range 1..=60000",
                self.wal_sync_interval_ms
            ));
        }
        if !(1..=4096).contains(&self.wal_segment_mb) {
            return bad(format!(
                "wal_segment_mb = {} is out of range 1..=4096",
                self.wal_segment_mb
            ));
        }
        if self.wal_retain_max_mb < self.wal_segment_mb {
            return bad(format!(
                "wal_retain_max_mb = {} is below wal_segment_mb = {}",
                self.wal_retain_max_mb, self.wal_segment_mb
            ));
        }
        if !(100..=100_000_000).contains(&self.flush_at) {
            return bad(format!("flush_at = {} is out of range 100..=100000000", self.flush_at));
        }
        if self.write_stall_at < self.flush_at {
            return bad(format!(
                "write_stall_at = {} is below flush_at = {}",
                self.write_stall_at, self.flush_at
            ));
        }
        if !(1..=64).contains(&self.max_segments) {
            return bad(format!("max_segments = {} is out of range 1..=64", self.max_segments));
        }
        if self.ram_segment_nodes > 100_000_000 {
            return bad(format!(
                "ram_segment_nodes = {} is out of range 0..=100000000",
                self.ram_segment_nodes
            ));
        }
        if self.max_payload_bytes > 8 << 20 {
            return bad(format!(
                "max_payload_bytes = {} is over 8 MiB (8388608)",
                self.max_payload_bytes
            ));
        }
        if !(1..=100_000).contains(&self.max_inflight_writes) {
            return bad(format!(
                "max_inflight_writes = {} is out of range 1..=100000",
                self.max_inflight_writes
            ));
        }
        if self.net_threads > 64 {
            return bad(format!("net_threads = {} is out of range 0..=64", self.net_threads));
        }
        if !(1..=1024).contains(&self.inflight_per_shard) {
            return bad(format!(
                "inflight_per_shard = {} is out of range 1..=1024",
                self.inflight_per_shard
            ));
        }
        if self.memory_budget_mb == 0 {
            return bad("memory_budget_mb must be positive".into());
        }
        if !(self.drain_timeout_secs >= 0.0 && self.drain_timeout_secs <= 3600.0) {
            return bad(format!(
                "drain_timeout_secs = {} is out of range 0..=3600",
                self.drain_timeout_secs
            ));
        }
        if !(1..=1_000_000).contains(&self.max_batch) {
            return bad(format!("max_batch = {} is out of range 1..=1000000", self.max_batch));
        }
        if !(1024..=1 << 30).contains(&self.max_message_bytes) {
            return bad(format!(
                "max_message_bytes = {} is out of range 1024..=1073741824",
                self.max_message_bytes
            ));
        }
        if !(1..=10_000).contains(&self.max_k) {
            return bad(format!("max_k = {} is out of range 1..=10000", self.max_k));
        }
        if self.max_l < self.max_k || self.max_l > 10_000 {
            return bad(format!("max_l = {} must be in max_k..=10000", self.max_l));
        }
        if self.default_l == 0 || self.default_l > self.max_l {
            return bad(format!("default_l = {} must be in 1..=max_l", self.default_l));
        }
        if !(1..=64).contains(&self.default_w) {
            return bad(format!("default_w = {} is out of range 1..=64", self.default_w));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_files_parse_and_validate_and_name_each_other() {
        use crate::replication::settings::Role;
        let one = Config::from_toml(include_str!("../../ops/quarryd.toml")).unwrap();
        one.validate().unwrap();
        assert_eq!(one.replication.role, Role::None);
        let p = Config::from_toml(include_str!("../../ops/primary.toml")).unwrap();
        let s = Config::from_toml(include_str!("../../ops/standby.toml")).unwrap();
        p.validate().unwrap();
        s.validate().unwrap();
        assert_eq!((p.replication.role, s.replication.role), (Role::Primary, Role::Standby));
        assert_eq!(
            p.replication.peer,
            s.replication.replication_listen.map(|a| a.to_string())
        );
        assert_eq!(
            s.replication.peer,
            p.replication.replication_listen.map(|a| a.to_string())
        );
        assert_eq!(p.replication.token_file, s.replication.token_file);
    }

    #[test]
    fn an_open_public_listener_and_half_a_tls_setting_are_refused() {
        for (toml, says) in [
            ("listen = \"0.0.0.0:7700\"", "no api_token_file is set"),
            (
                "http_listen = \"10.0.0.1:7703\"",
                "http_listen = 10.0.0.1:7703 is not a loopback",
            ),
            ("tls_cert = \"/c\"", "tls_cert and tls_key go together"),
            ("tls_ca = \"/a\"", "need TLS on"),
            (
                "tls_cert = \"/c\"\ntls_key = \"/k\"\ntls_require_client_cert = true",
                "tls_require_client_cert needs tls_ca",
            ),
        ] {
            let e = Config::from_toml(toml).unwrap().validate().unwrap_err().to_string();
            assert!(e.contains(says), "{toml}: {e}");
        }
        for ok in [
            "listen = \"0.0.0.0:7700\"\napi_token_file = \"/t\"",
            "listen = \"0.0.0.0:7700\"\nallow_unauthenticated = true",
            "listen = \"[::1]:7700\"",
            "tls_cert = \"/c\"\ntls_key = \"/k\"\ntls_ca = \"/a\"\ntls_require_client_cert = true",
        ] {
            Config::from_toml(ok).unwrap().validate().unwrap();
        }
    }

    #[test]
    fn empty_file_gives_the_defaults() {
        let c = Config::from_toml("").unwrap();
        assert_eq!(c.listen.port(), 7700);
        assert_eq!(c.queue_depth, 256);
        c.validate().unwrap();
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let e = Config::from_toml("queue_dept = 3").unwrap_err();
        assert!(e.contains("queue_dept"), "{e}");
        let c = Config::from_toml("max_k = 0").unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("max_k = 0"), "{e}");
        // A value a key does not take is refused when the file is read,
        // naming the key and the values it takes.
        for (toml, key, takes) in [
            ("io = \"spdk\"", "io", "`auto`, `io_uring`, `uring`, `pread`"),
            ("wal_sync = \"sometimes\"", "wal_sync", "`always` or `interval`"),
            ("log_format = \"xml\"", "log_format", "`text` or `json`"),
        ] {
            let e = Config::from_toml(toml).unwrap_err();
            assert!(e.contains(key) && e.contains(takes), "{toml}: {e}");
        }
        let c = Config::from_toml("io = \"io_uring\"\nwal_sync = \"interval\"").unwrap();
        assert_eq!(c.io_backend(), quarry_engine::io::IoBackend::Uring);
        assert!(matches!(
            c.wal_sync_policy(),
            quarry_engine::wal::SyncPolicy::Interval(_)
        ));
        let c = Config::from_toml("net_threads = 65").unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("net_threads = 65") && e.contains("0..=64"), "{e}");
        assert_eq!(Config::from_toml("net_threads = 4").unwrap().net_threads, 4);
        assert_eq!(
            Config::default().net_threads,
            0,
            "the network side runs on shard 0 by default"
        );
        Config::from_toml("net_threads = 0").unwrap().validate().unwrap();
        for (toml, names) in [
            (
                "wal_retain_max_mb = 10",
                "wal_retain_max_mb = 10 is below wal_segment_mb = 64",
            ),
            (
                "ram_segment_nodes = 100000001",
                "ram_segment_nodes = 100000001 is out of range",
            ),
            (
                "flush_at = 5000\nwrite_stall_at = 10",
                "write_stall_at = 10 is below flush_at = 5000",
            ),
        ] {
            let e = Config::from_toml(toml).unwrap().validate().unwrap_err().to_string();
            assert!(e.contains(names), "{toml}: {e}");
        }
        let c = Config::from_toml("wal_retain_max_mb = 1024\nram_segment_nodes = 0").unwrap();
        assert!(c.validate().is_ok());
        assert_eq!((c.wal_retain_max_mb, c.ram_segment_nodes), (1024, 0));
    }
}
