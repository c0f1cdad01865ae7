//! Where quarryctl finds quarryd: the `--server` value (or
//! `QUARRY_SERVER`) parsed into a TCP or Unix-socket target, and the gRPC
//! channel to it.
//!
//! Owns: the accepted address forms and the connection. Does not own: any
//! service's requests (the `cmd_*` modules).

use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};

/// What `--server` names.
#[derive(Debug, PartialEq, Eq)]
pub enum Target {
    /// A TCP address as an `http://` URI.
    Tcp(String),
    /// quarryd's Unix socket (`listen_unix`).
    Unix(PathBuf),
}

/// Accepts `host:port`, `http://host:port` and `unix:PATH` (also
/// `unix://PATH`).
pub fn parse(s: &str) -> Result<Target> {
    let s = s.trim();
    if let Some(p) = s.strip_prefix("unix://").or_else(|| s.strip_prefix("unix:")) {
        if p.is_empty() {
            bail!("--server {s:?}: unix: needs the socket's path, as in unix:/run/quarry/grpc.sock");
        }
        return Ok(Target::Unix(PathBuf::from(p)));
    }
    if let Some(rest) = s.strip_prefix("http://") {
        if rest.is_empty() {
            bail!("--server {s:?}: no host after http://");
        }
        return Ok(Target::Tcp(s.to_string()));
    }
    if let Some((scheme, _)) = s.split_once("://") {
        bail!("--server {s:?}: scheme {scheme:?} is not served; use host:port, http://host:port or unix:PATH");
    }
    match s.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(Target::Tcp(format!("http://{s}"))),
        _ => bail!("--server {s:?}: expected host:port (as in 127.0.0.1:7700), http://host:port or unix:PATH"),
    }
}

/// A channel to `server` (see [`parse`]), connected within 5 s.
pub async fn channel(server: &str) -> Result<Channel> {
    match parse(server)? {
        Target::Tcp(uri) => Endpoint::from_shared(uri)
            .with_context(|| format!("bad --server {server}"))?
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .with_context(|| format!("cannot connect to quarryd at {server}")),
        // tonic dials `unix:` URIs itself.
        Target::Unix(path) => Endpoint::from_shared(format!("unix:{}", path.display()))
            .with_context(|| format!("bad --server {server}"))?
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .with_context(|| format!("cannot connect to quarryd at unix socket {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_accepted_form_and_a_clear_refusal_of_the_rest() {
        assert_eq!(
            parse("127.0.0.1:7700").unwrap(),
            Target::Tcp("http://127.0.0.1:7700".into())
        );
        assert_eq!(parse("localhost:1").unwrap(), Target::Tcp("http://localhost:1".into()));
        assert_eq!(parse("[::1]:7700").unwrap(), Target::Tcp("http://[::1]:7700".into()));
        assert_eq!(parse(" http://h:7700 ").unwrap(), Target::Tcp("http://h:7700".into()));
        assert_eq!(parse("unix:/run/q.sock").unwrap(), Target::Unix("/run/q.sock".into()));
        assert_eq!(parse("unix:///run/q.sock").unwrap(), Target::Unix("/run/q.sock".into()));
        assert_eq!(parse("unix:rel.sock").unwrap(), Target::Unix("rel.sock".into()));
        for (bad, says) in [
            ("unix:", "socket's path"),
            ("http://", "no host"),
            ("ftp://h:1", "\"ftp\" is not served"),
            ("127.0.0.1", "expected host:port"),
            ("h:port", "expected host:port"),
            (":7700", "expected host:port"),
            ("", "expected host:port"),
        ] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad:?}: {e}");
        }
    }
}
