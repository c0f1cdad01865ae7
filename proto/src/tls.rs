//! TLS for Quarry's listeners and clients (quarryd, its peer, quarryctl):
//! PEM files read into tonic's rustls (ring) configurations, with errors
//! that name the configuration key or flag and the file.
//!
//! Owns: reading and checking certificate, key and CA files, and the
//! server and client configurations built from them. Does not own: which
//! listener or client uses them (the callers), or the token checks.

use std::path::{Path, PathBuf};
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

/// One node's TLS files, as a configuration table names them.
#[derive(Clone, Debug)]
pub struct TlsFiles<'a> {
    /// The table, for messages ("replication.tls_cert ..."); empty for
    /// the top level ("tls_cert ...").
    pub table: &'a str,
    /// This node's certificate chain (PEM).
    pub cert: &'a Path,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: &'a Path,
    /// The CA that signed the peers' certificates (PEM), if any.
    pub ca: Option<&'a Path>,
}

/// Read a PEM file that must hold a block of `kind` ("CERTIFICATE",
/// "PRIVATE KEY"); the message names the key and the file.
fn read_pem(label: &str, path: &Path, kind: &str) -> Result<Vec<u8>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{label} {}: {e}", path.display()))?;
    let text = String::from_utf8_lossy(&bytes);
    let found = text
        .lines()
        .any(|l| l.starts_with("-----BEGIN ") && l.trim_end().ends_with(&format!("{kind}-----")));
    if !found {
        return Err(format!(
            "{label} {}: no PEM block ending in \"{kind}\" (expected \"-----BEGIN ...{kind}-----\")",
            path.display()
        ));
    }
    Ok(bytes)
}

impl TlsFiles<'_> {
    /// `key` as the configuration names it: `table.key`, or `key` alone
    /// for the top-level table (`table` empty).
    fn key_name(&self, key: &str) -> String {
        if self.table.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.table)
        }
    }

    fn identity(&self) -> Result<Identity, String> {
        let cert = read_pem(&self.key_name("tls_cert"), self.cert, "CERTIFICATE")?;
        let key = read_pem(&self.key_name("tls_key"), self.key, "PRIVATE KEY")?;
        Ok(Identity::from_pem(cert, key))
    }

    fn ca(&self) -> Result<Option<Certificate>, String> {
        self.ca
            .map(|p| read_pem(&self.key_name("tls_ca"), p, "CERTIFICATE").map(Certificate::from_pem))
            .transpose()
    }

    /// The listener's configuration: this node's identity; with a CA,
    /// client certificates chained to it are asked for, and required when
    /// `require_client_cert`.
    pub fn server(&self, require_client_cert: bool) -> Result<ServerTlsConfig, String> {
        let mut c = ServerTlsConfig::new().identity(self.identity()?);
        if let Some(ca) = self.ca()? {
            c = c.client_ca_root(ca).client_auth_optional(!require_client_cert);
        } else if require_client_cert {
            return Err(format!(
                "{} needs {} (the CA client certificates must chain to)",
                self.key_name("tls_require_client_cert"),
                self.key_name("tls_ca")
            ));
        }
        // tonic parses the files only here: a bad certificate or key is
        // refused at start, not at the first connection.
        tonic::transport::Server::builder()
            .tls_config(c.clone())
            .map_err(|e| format!("{}/tls_key/tls_ca: {}", self.key_name("tls_cert"), error_chain(&e)))?;
        Ok(c)
    }

    /// A client's configuration: the server's certificate must chain to
    /// the CA (required: a client without one would trust nothing) and
    /// name `server_name` when given, else the host it dials; this node's
    /// identity is presented in case the server asks for it.
    pub fn client(&self, server_name: Option<&str>) -> Result<ClientTlsConfig, String> {
        let Some(ca) = self.ca()? else {
            return Err(format!(
                "{} is required with TLS (the CA the peer's certificate must chain to)",
                self.key_name("tls_ca")
            ));
        };
        let mut c = ClientTlsConfig::new()
            .ca_certificate(ca)
            .identity(self.identity()?)
            .assume_http2(true);
        if let Some(n) = server_name {
            c = c.domain_name(n);
        }
        check_client(&c, &format!("{}/tls_key/tls_ca", self.key_name("tls_cert")))?;
        Ok(c)
    }
}

/// Every cause of an error, outermost first, on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Let tonic parse a client configuration now, so a bad file is refused
/// before the first connection.
fn check_client(c: &ClientTlsConfig, label: &str) -> Result<(), String> {
    tonic::transport::Endpoint::from_static("https://localhost")
        .tls_config(c.clone())
        .map(|_| ())
        .map_err(|e| format!("{label}: {}", error_chain(&e)))
}

/// A client-only configuration (quarryctl): trust `ca`, present a client
/// certificate when both `cert` and `key` are given, check `server_name`
/// when given.
pub fn client_only(
    ca: &Path,
    identity: Option<(&PathBuf, &PathBuf)>,
    server_name: Option<&str>,
) -> Result<ClientTlsConfig, String> {
    let ca = read_pem("--tls-ca", ca, "CERTIFICATE")?;
    let mut c = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .assume_http2(true);
    if let Some((cert, key)) = identity {
        let cert = read_pem("--tls-cert", cert, "CERTIFICATE")?;
        let key = read_pem("--tls-key", key, "PRIVATE KEY")?;
        c = c.identity(Identity::from_pem(cert, key));
    }
    if let Some(n) = server_name {
        c = c.domain_name(n);
    }
    check_client(&c, "--tls-ca/--tls-cert/--tls-key")?;
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_wrong_files_name_the_key_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("c.pem");
        let key = dir.path().join("k.pem");
        let f = TlsFiles {
            table: "replication",
            cert: &cert,
            key: &key,
            ca: None,
        };
        let e = f.server(false).unwrap_err();
        assert!(e.starts_with("replication.tls_cert ") && e.contains("c.pem"), "{e}");
        std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").unwrap();
        std::fs::write(&key, "not a key\n").unwrap();
        let e = f.server(false).unwrap_err();
        assert!(e.contains("replication.tls_key") && e.contains("PRIVATE KEY"), "{e}");
        std::fs::write(&key, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").unwrap();
        // Well-formed PEM around bytes that are no key: refused at once.
        let e = f.server(false).unwrap_err();
        assert!(e.starts_with("replication.tls_cert/tls_key/tls_ca: "), "{e}");
        let e = f.server(true).unwrap_err();
        assert!(e.contains("tls_require_client_cert needs replication.tls_ca"), "{e}");
        let e = f.client(None).unwrap_err();
        assert!(e.contains("replication.tls_ca is required"), "{e}");
        let e = client_only(&key, None, None).unwrap_err();
        assert!(e.contains("--tls-ca ") && e.contains("CERTIFICATE"), "{e}");
    }
}
