//! Where quarryctl finds quarryd: the `--server` value (or
//! `QUARRY_SERVER`) parsed into a TCP (plain or TLS) or Unix-socket
//! target, the gRPC channel to it, and the bearer token every request
//! carries.
//!
//! Owns: the accepted address forms, the connection and its TLS, the
//! `authorization` header. Does not own: any service's requests (the
//! `cmd_*` modules).

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

/// What `--server` names.
#[derive(Debug, PartialEq, Eq)]
pub enum Target {
    /// A TCP address as an `http://` URI.
    Tcp(String),
    /// A TCP address over TLS, as an `https://` URI.
    Tls(String),
    /// quarryd's Unix socket (`listen_unix`).
    Unix(PathBuf),
}

/// Accepts `host:port`, `http://host:port`, `https://host:port` and
/// `unix:PATH` (also `unix://PATH`).
pub fn parse(s: &str) -> Result<Target> {
    let s = s.trim();
    if let Some(p) = s.strip_prefix("unix://").or_else(|| s.strip_prefix("unix:")) {
        if p.is_empty() {
            bail!("--server {s:?}: unix: needs the socket's path, as in unix:/run/quarry/grpc.sock");
        }
        return Ok(Target::Unix(PathBuf::from(p)));
    }
    for (scheme, tls) in [("http://", false), ("https://", true)] {
        if let Some(rest) = s.strip_prefix(scheme) {
            if rest.is_empty() {
                bail!("--server {s:?}: no host after {scheme}");
            }
            return Ok(if tls {
                Target::Tls(s.to_string())
            } else {
                Target::Tcp(s.to_string())
            });
        }
    }
    if let Some((scheme, _)) = s.split_once("://") {
        bail!(
            "--server {s:?}: scheme {scheme:?} is not served; use host:port, http://host:port, https://host:port or unix:PATH"
        );
    }
    match s.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(Target::Tcp(format!("http://{s}"))),
        _ => bail!("--server {s:?}: expected host:port (as in 127.0.0.1:7700), http://host:port, https://host:port or unix:PATH"),
    }
}

/// How to reach the API besides the address: TLS files for `https://`,
/// and the bearer token.
#[derive(Clone, Debug, Default)]
pub struct Access {
    /// The CA the server's certificate must chain to (PEM).
    pub ca: Option<PathBuf>,
    /// A client certificate and its key (PEM), for a server that asks.
    pub identity: Option<(PathBuf, PathBuf)>,
    /// The name the server's certificate must carry, when not the host
    /// dialled.
    pub server_name: Option<String>,
    /// The bearer token (a token of the server's `api_token_file`).
    pub token: Option<String>,
}

impl Access {
    /// The `authorization` header's value, checked before any dial.
    pub fn bearer(&self) -> Result<Option<MetadataValue<Ascii>>> {
        self.token
            .as_deref()
            .map(|t| {
                format!("Bearer {}", t.trim())
                    .parse()
                    .context("the API token is not printable ASCII")
            })
            .transpose()
    }

    fn tls(&self, server: &str) -> Result<ClientTlsConfig> {
        let Some(ca) = &self.ca else {
            bail!("--server {server}: https:// needs --ca (or QUARRY_CA), the CA that signed the server's certificate");
        };
        let id = self.identity.as_ref().map(|(c, k)| (c, k));
        quarry_proto::tls::client_only(ca, id, self.server_name.as_deref()).map_err(anyhow::Error::msg)
    }
}

/// The first line of a token file, trimmed.
pub fn read_token(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path).with_context(|| format!("--api-token-file {}", path.display()))?;
    let t = text.lines().next().unwrap_or("").trim();
    if t.is_empty() {
        bail!("--api-token-file {}: the first line holds no token", path.display());
    }
    Ok(t.to_string())
}

/// A channel to `server` (see [`parse`]), connected within 5 s.
pub async fn channel(server: &str, access: &Access) -> Result<Channel> {
    let connect = |ep: Endpoint, what: String| async move {
        ep.connect_timeout(Duration::from_secs(5)).connect().await.map_err(|e| {
            anyhow::anyhow!(
                "cannot connect to quarryd at {what}: {}",
                quarry_proto::tls::error_chain(&e)
            )
        })
    };
    match parse(server)? {
        Target::Tcp(uri) => {
            if access.ca.is_some() || access.identity.is_some() {
                bail!("--server {server}: --ca/--client-cert are for https:// addresses");
            }
            connect(
                Endpoint::from_shared(uri).with_context(|| format!("bad --server {server}"))?,
                server.into(),
            )
            .await
        }
        Target::Tls(uri) => {
            let ep = Endpoint::from_shared(uri)
                .with_context(|| format!("bad --server {server}"))?
                .tls_config(access.tls(server)?)?;
            connect(ep, server.into()).await
        }
        // tonic dials `unix:` URIs itself.
        Target::Unix(path) => {
            let ep = Endpoint::from_shared(format!("unix:{}", path.display()))
                .with_context(|| format!("bad --server {server}"))?;
            connect(ep, format!("unix socket {}", path.display())).await
        }
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
        assert_eq!(parse("https://h:7700").unwrap(), Target::Tls("https://h:7700".into()));
        assert_eq!(parse("unix:/run/q.sock").unwrap(), Target::Unix("/run/q.sock".into()));
        assert_eq!(parse("unix:///run/q.sock").unwrap(), Target::Unix("/run/q.sock".into()));
        assert_eq!(parse("unix:rel.sock").unwrap(), Target::Unix("rel.sock".into()));
        for (bad, says) in [
            ("unix:", "socket's path"),
            ("http://", "no host"),
            ("https://", "no host after https://"),
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
