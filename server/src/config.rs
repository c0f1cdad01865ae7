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

/// Every setting. Unknown keys are an error (a typo must not be ignored).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where collections live.
    pub data_dir: PathBuf,
    /// gRPC listen address.
    pub listen: SocketAddr,
    /// Prometheus metrics listen address (HTTP, GET /metrics).
    pub metrics_listen: SocketAddr,
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
    /// Threads for the network side (tonic/h2). 1 = a single-threaded
    /// runtime: every reply from a shard wakes the one thread that owns the
    /// connection, with no work-stealing hand-off between network threads
    /// (measured on the dev set: reply wake-up p50 9.5 against 17-23 us
    /// with 2 workers, the same saturation QPS). More threads only pay
    /// off when TLS or very many connections load the network side.
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
    pub io: String,
    /// Log filter (tracing env-filter syntax), overridden by RUST_LOG.
    pub log: String,
    /// Log format: "text" or "json".
    pub log_format: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: default_data_dir(),
            listen: "127.0.0.1:7700".parse().expect("literal"),
            metrics_listen: "127.0.0.1:7701".parse().expect("literal"),
            shards: 0,
            queue_depth: 256,
            inflight_per_shard: 32,
            shard_poll_us: 2000,
            net_threads: 1,
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
            io: "auto".into(),
            log: "info".into(),
            log_format: "text".into(),
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

    /// The reader backend.
    pub fn io_backend(&self) -> Result<quarry_engine::io::IoBackend, ConfigError> {
        self.io
            .parse()
            .map_err(|e: String| ConfigError::Invalid(format!("io: {e}")))
    }

    /// Check every range; the message names the key and the limit.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
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
        if !(1..=64).contains(&self.net_threads) {
            return bad(format!("net_threads = {} is out of range 1..=64", self.net_threads));
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
        if !matches!(self.log_format.as_str(), "text" | "json") {
            return bad(format!(
                "log_format = {:?}: expected \"text\" or \"json\"",
                self.log_format
            ));
        }
        self.io_backend()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let c = Config::from_toml("io = \"spdk\"").unwrap();
        assert!(c.validate().unwrap_err().to_string().contains("spdk"));
        let c = Config::from_toml("net_threads = 0").unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("net_threads = 0") && e.contains("1..=64"), "{e}");
        assert_eq!(Config::from_toml("net_threads = 4").unwrap().net_threads, 4);
    }
}
