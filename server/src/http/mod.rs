//! The JSON HTTP API (`http_listen`, off by default): HTTP/1.1, plain or
//! TLS, in front of the same gRPC service code, so every limit, status
//! and message is the gRPC API's.
//!
//! Owns: the listener's accept loop and TLS handshake, reading a request
//! (the body bounded by `max_message_bytes`), the token check per route,
//! and writing the response. Does not own: the routes and the dispatch
//! (`routes`), the JSON mapping (`json`), the document (`openapi`), what
//! a request does (the services).

pub mod json;
pub mod openapi;
pub mod routes;

use crate::auth::Tokens;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use routes::{Matched, Services};
use std::sync::Arc;
use std::time::Duration;
use tokio_rustls::rustls;
use tonic::Code;

/// What every request on the listener shares.
pub struct Api {
    /// The gRPC services the routes call.
    pub services: Services,
    /// Bearer tokens (None: none asked for).
    pub tokens: Option<Arc<Tokens>>,
    /// The largest request body, bytes (`max_message_bytes`).
    pub max_body: usize,
    /// The OpenAPI document, rendered once.
    pub openapi: Bytes,
}

impl Api {
    /// The API over `services`.
    pub fn new(services: Services, tokens: Option<Arc<Tokens>>, max_body: usize) -> Api {
        Api {
            services,
            tokens,
            max_body,
            openapi: Bytes::from(serde_json::to_vec_pretty(&openapi::document()).expect("serialises")),
        }
    }

    fn draining(&self) -> bool {
        self.services.admin.0.draining.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Answer one request.
    pub async fn handle<B>(&self, req: Request<B>) -> Response<Full<Bytes>>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (parts, body) = req.into_parts();
        let path = parts.uri.path().to_string();
        match (parts.method.as_str(), path.as_str()) {
            ("GET", "/openapi.json") => return reply(StatusCode::OK, self.openapi.clone()),
            ("GET", "/v1/health") => {
                let (code, status) = if self.draining() {
                    (StatusCode::SERVICE_UNAVAILABLE, "NOT_SERVING")
                } else {
                    (StatusCode::OK, "SERVING")
                };
                return reply(code, Bytes::from(format!("{{\"status\":\"{status}\"}}")));
            }
            _ => {}
        }
        let (route, param) = match routes::find(parts.method.as_str(), &path) {
            Matched::Route(r, p) => (r, p),
            Matched::Method(allowed) => {
                let mut resp = error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    Code::Unimplemented,
                    &format!("{} {path}: this path takes {}", parts.method, allowed.join(", ")),
                );
                let allow = http::HeaderValue::from_str(&allowed.join(", ")).expect("method names are header-safe");
                resp.headers_mut().insert(http::header::ALLOW, allow);
                return resp;
            }
            Matched::None(p) => {
                return error(
                    StatusCode::NOT_FOUND,
                    Code::NotFound,
                    &format!("no route {p}; the routes are in /openapi.json"),
                )
            }
        };
        if let Some(t) = &self.tokens {
            let auth = parts.headers.get(http::header::AUTHORIZATION).map(|v| v.as_bytes());
            if let Err(s) = crate::auth::check(t, route.grpc, auth) {
                return status_reply(&s);
            }
        }
        let body = match Limited::new(body, self.max_body).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                crate::error::count_oversized();
                return error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    Code::ResourceExhausted,
                    &format!("request body is larger than max_message_bytes = {}", self.max_body),
                );
            }
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    Code::InvalidArgument,
                    &format!("reading the request body: {e}"),
                )
            }
        };
        let mut msg = match json::from_json(&json::message(route.request), &body) {
            Ok(m) => m,
            Err(e) => return error(StatusCode::BAD_REQUEST, Code::InvalidArgument, &e),
        };
        if let Err(e) = routes::fill_path(route, &mut msg, param) {
            return error(StatusCode::BAD_REQUEST, Code::InvalidArgument, &e);
        }
        let mut meta = tonic::metadata::MetadataMap::new();
        if let Some(ms) = parts.headers.get("x-timeout-ms") {
            match ms.to_str().ok().and_then(|s| s.trim().parse::<u64>().ok()) {
                Some(ms) => {
                    meta.insert(
                        "grpc-timeout",
                        format!("{ms}m").parse().expect("digits are a header value"),
                    );
                }
                None => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        Code::InvalidArgument,
                        "x-timeout-ms: expected a whole number of milliseconds",
                    )
                }
            }
        }
        match routes::call(&self.services, route, &msg, meta).await {
            Ok(json) => reply(StatusCode::OK, Bytes::from(json)),
            Err(s) => status_reply(&s),
        }
    }
}

/// A JSON response, ended with a newline (curl's output then ends its line).
fn reply(code: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let body = if body.ends_with(b"\n") {
        body
    } else {
        Bytes::from([&body[..], b"\n"].concat())
    };
    Response::builder()
        .status(code)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(body))
        .expect("a valid response")
}

fn error(code: StatusCode, grpc: Code, message: &str) -> Response<Full<Bytes>> {
    reply(code, Bytes::from(json::error_body(grpc, message)))
}

fn status_reply(s: &tonic::Status) -> Response<Full<Bytes>> {
    error(json::http_status(s.code()), s.code(), s.message())
}

/// The listener's TLS: this server's certificate and key, and with a CA,
/// client certificates asked for (required when `require_client_cert`).
/// ALPN offers HTTP/1.1 only. Errors name the key and the file.
pub fn tls_config(
    files: &quarry_proto::tls::TlsFiles<'_>,
    require_client_cert: bool,
) -> Result<rustls::ServerConfig, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = |key: &str, p: &std::path::Path| -> Result<Vec<CertificateDer<'static>>, String> {
        let c = CertificateDer::pem_file_iter(p)
            .and_then(|i| i.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("{key} {}: {e}", p.display()))?;
        if c.is_empty() {
            return Err(format!("{key} {}: no certificate", p.display()));
        }
        Ok(c)
    };
    let chain = certs("tls_cert", files.cert)?;
    let key = PrivateKeyDer::from_pem_file(files.key).map_err(|e| format!("tls_key {}: {e}", files.key.display()))?;
    // ring, as tonic's TLS uses (tls-ring): it builds with a C compiler
    // alone. rustls marks it deprecated for lacking post-quantum key
    // exchange, which aws-lc-rs has (and cmake to build).
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let builder = match files.ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in certs("tls_ca", ca)? {
                roots.add(c).map_err(|e| format!("tls_ca {}: {e}", ca.display()))?;
            }
            let v = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let v = if require_client_cert {
                v
            } else {
                v.allow_unauthenticated()
            };
            builder.with_client_cert_verifier(v.build().map_err(|e| format!("tls_ca {}: {e}", ca.display()))?)
        }
        None => builder.with_no_client_auth(),
    };
    let mut cfg = builder
        .with_single_cert(chain, key)
        .map_err(|e| format!("tls_cert/tls_key: {e}"))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// Serve the API on `listener` until `shutdown` changes; TLS when
/// `tls` is given. A handshake that fails or takes over 10 s drops the
/// connection (logged at debug).
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    api: Arc<Api>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    loop {
        let accept = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        let Ok((stream, peer)) = accept else { continue };
        let _ = stream.set_nodelay(true);
        let (api, acceptor) = (api.clone(), acceptor.clone());
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let api = api.clone();
                async move { Ok::<_, std::convert::Infallible>(api.handle(req).await) }
            });
            let http = hyper::server::conn::http1::Builder::new();
            match acceptor {
                None => {
                    let _ = http.serve_connection(hyper_util::rt::TokioIo::new(stream), svc).await;
                }
                Some(acc) => match tokio::time::timeout(Duration::from_secs(10), acc.accept(stream)).await {
                    Ok(Ok(s)) => {
                        let _ = http.serve_connection(hyper_util::rt::TokioIo::new(s), svc).await;
                    }
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "HTTP API: TLS handshake refused"),
                    Err(_) => tracing::debug!(%peer, "HTTP API: TLS handshake timed out"),
                },
            }
        });
    }
}
