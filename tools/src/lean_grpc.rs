//! A lean gRPC client transport for quarry-bench: tonic's generated
//! clients and codec on top, the `h2` crate directly underneath, with
//! tonic's `Channel` (tower buffer, hyper's dispatch and body-pipe tasks)
//! taken out of the request path.
//!
//! What it changes on the wire and in the client's CPU, per unary call:
//! - **One write instead of two or three.** tonic's client streams every
//!   request body, even a unary one, and hyper sends it as HEADERS, then
//!   DATA, then an empty DATA frame with END_STREAM: HEADERS always in a
//!   write of its own, and the two DATA frames together for a small body
//!   (a health check) or apart for a search's 1.5 KB (strace, perf stat);
//!   tonic's server cannot start the handler before the last one arrives. Here the
//!   already-encoded body is collected and queued with its HEADERS, DATA
//!   marked END_STREAM, before the connection task runs, so both leave in
//!   one write (one TCP segment on loopback).
//! - **Two task hand-offs instead of about five:** the caller's task and
//!   the h2 connection task.
//!
//! Semantics kept from `Channel`: `http://host:port` and `unix:/path`
//! addresses, TCP_NODELAY, and a client-side deadline from the
//! `grpc-timeout` header (expiry is tonic's `TimeoutExpired`, which tonic
//! turns into CANCELLED, as with `Channel`). Not kept: reconnection, load
//! balancing, TLS, and client-streaming bodies, which would be held back
//! until the stream ends. `quarry-bench --stock-client` measures with
//! tonic's `Channel` instead.

use anyhow::{bail, Context as _, Result};
use bytes::Bytes;
use http::uri::{Authority, PathAndQuery, Scheme};
use http_body_util::BodyExt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tonic::body::Body;
use tonic::codegen::StdError;
use tower_service::Service;

/// One HTTP/2 connection to a gRPC server; clone it for more concurrent
/// callers (they share the connection, as `Channel` does).
#[derive(Clone, Debug)]
pub struct LeanChannel {
    send: h2::client::SendRequest<Bytes>,
    scheme: Scheme,
    authority: Authority,
}

impl LeanChannel {
    /// Connect to `http://host:port` or `unix:/path` and start the
    /// connection task on the current tokio runtime.
    pub async fn connect(server: &str) -> Result<Self> {
        if let Some(path) = server.strip_prefix("unix:") {
            let io = tokio::net::UnixStream::connect(path)
                .await
                .with_context(|| format!("cannot connect to {server}"))?;
            return Self::handshake(io, Authority::from_static("localhost")).await;
        }
        let uri: http::Uri = server.parse().with_context(|| format!("bad server address {server}"))?;
        if uri.scheme() != Some(&Scheme::HTTP) {
            bail!("{server}: only http:// and unix: addresses are supported");
        }
        let authority = uri
            .authority()
            .with_context(|| format!("{server} has no host:port"))?
            .clone();
        let port = authority.port_u16().unwrap_or(80);
        let io = tokio::net::TcpStream::connect((authority.host(), port))
            .await
            .with_context(|| format!("cannot connect to {server}"))?;
        io.set_nodelay(true)?;
        Self::handshake(io, authority).await
    }

    async fn handshake<T>(io: T, authority: Authority) -> Result<Self>
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (send, conn) = h2::client::handshake(io).await.context("HTTP/2 handshake")?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "HTTP/2 connection ended");
            }
        });
        Ok(Self {
            send,
            scheme: Scheme::HTTP,
            authority,
        })
    }
}

/// The `grpc-timeout` header's value ("<at most 8 digits><unit>", units
/// H M S m u n) as a duration; `None` if malformed.
pub fn parse_grpc_timeout(v: &str) -> Option<Duration> {
    let (digits, unit) = v.split_at(v.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

type ResponseFuture = Pin<Box<dyn Future<Output = Result<http::Response<Body>, StdError>> + Send>>;

impl Service<http::Request<Body>> for LeanChannel {
    type Response = http::Response<Body>;
    type Error = StdError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.send.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        // The handle poll_ready made ready takes the call; a fresh clone
        // stays for the next one.
        let fresh = self.send.clone();
        let mut send = std::mem::replace(&mut self.send, fresh);
        let (scheme, authority) = (self.scheme.clone(), self.authority.clone());
        Box::pin(async move {
            let (mut parts, body) = req.into_parts();
            // tonic's encoder body is ready at once for a unary call.
            let data: Bytes = body.collect().await?.to_bytes();
            let path = parts
                .uri
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/"));
            parts.uri = http::Uri::builder()
                .scheme(scheme)
                .authority(authority)
                .path_and_query(path)
                .build()?;
            let deadline = parts
                .headers
                .get("grpc-timeout")
                .and_then(|v| v.to_str().ok())
                .and_then(parse_grpc_timeout);
            let eos = data.is_empty();
            let (response, mut stream) = send.send_request(http::Request::from_parts(parts, ()), eos)?;
            if !eos {
                // Queued with the HEADERS; the connection task writes both.
                stream.send_data(data, true)?;
            }
            let response = match deadline {
                Some(d) => match tokio::time::timeout(d, response).await {
                    Ok(r) => r?,
                    Err(_) => return Err(tonic::TimeoutExpired(()).into()),
                },
                None => response.await?,
            };
            Ok(response.map(|recv| Body::new(RecvBody { recv, data_done: false })))
        })
    }
}

/// An h2 response stream as an HTTP body: DATA frames (their flow-control
/// capacity given back as they are read), then the trailers.
struct RecvBody {
    recv: h2::RecvStream,
    data_done: bool,
}

impl http_body::Body for RecvBody {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, h2::Error>>> {
        if !self.data_done {
            match ready!(self.recv.poll_data(cx)) {
                Some(Ok(b)) => {
                    // Only fails once the stream is gone, and then the
                    // next poll reports it.
                    let _ = self.recv.flow_control().release_capacity(b.len());
                    return Poll::Ready(Some(Ok(http_body::Frame::data(b))));
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => self.data_done = true,
            }
        }
        match ready!(self.recv.poll_trailers(cx)) {
            Ok(Some(t)) => Poll::Ready(Some(Ok(http_body::Frame::trailers(t)))),
            Ok(None) => Poll::Ready(None),
            Err(e) => Poll::Ready(Some(Err(e))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.recv.is_end_stream()
    }
}

/// The transport quarry-bench's clients use: the lean one by default,
/// tonic's `Channel` with `--stock-client`.
#[derive(Clone, Debug)]
pub enum Transport {
    /// [`LeanChannel`].
    Lean(LeanChannel),
    /// tonic's own.
    Stock(tonic::transport::Channel),
}

impl Transport {
    /// Connect to `server` (`http://host:port` or `unix:/path`).
    pub async fn connect(server: &str, stock: bool) -> Result<Self> {
        if stock {
            let ch = tonic::transport::Endpoint::from_shared(server.to_string())?
                .connect()
                .await
                .with_context(|| format!("cannot connect to {server}"))?;
            return Ok(Self::Stock(ch));
        }
        Ok(Self::Lean(LeanChannel::connect(server).await?))
    }
}

impl Service<http::Request<Body>> for Transport {
    type Response = http::Response<Body>;
    type Error = StdError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        match self {
            Self::Lean(c) => c.poll_ready(cx),
            Self::Stock(c) => c.poll_ready(cx).map_err(Into::into),
        }
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        match self {
            Self::Lean(c) => c.call(req),
            Self::Stock(c) => {
                let f = c.call(req);
                Box::pin(async move { f.await.map_err(Into::into) })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::{health_check_response::ServingStatus, HealthCheckRequest};

    #[test]
    fn grpc_timeout_values_parse_and_bad_ones_are_refused() {
        assert_eq!(parse_grpc_timeout("100m"), Some(Duration::from_millis(100)));
        assert_eq!(parse_grpc_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("3M"), Some(Duration::from_secs(180)));
        assert_eq!(parse_grpc_timeout("7u"), Some(Duration::from_micros(7)));
        assert_eq!(parse_grpc_timeout("9n"), Some(Duration::from_nanos(9)));
        for bad in ["", "m", "10", "10x", "-1m", "123456789m", "1.5S"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad:?}");
        }
    }

    /// A tonic server with the health service on a loopback port.
    async fn health_server() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (reporter, service) = tonic_health::server::health_reporter();
        reporter
            .set_service_status("", tonic_health::ServingStatus::Serving)
            .await;
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await
                .unwrap();
        });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn a_tonic_server_answers_over_the_lean_transport_and_keeps_answering() {
        let addr = health_server().await;
        let mut client = HealthClient::new(LeanChannel::connect(&addr).await.unwrap());
        for _ in 0..3 {
            let r = client.check(HealthCheckRequest::default()).await.unwrap();
            assert_eq!(r.into_inner().status, ServingStatus::Serving as i32);
        }
        // A status other than OK comes back as that status.
        let err = client
            .check(HealthCheckRequest {
                service: "no.such.Service".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
    }

    #[tokio::test]
    async fn a_unix_socket_address_works_too() {
        let dir = std::env::temp_dir().join(format!("quarry-lean-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("h.sock");
        let _ = std::fs::remove_file(&path);
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let (reporter, service) = tonic_health::server::health_reporter();
        reporter
            .set_service_status("", tonic_health::ServingStatus::Serving)
            .await;
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener)),
        );
        let chan = LeanChannel::connect(&format!("unix:{}", path.display())).await.unwrap();
        let r = HealthClient::new(chan)
            .check(HealthCheckRequest::default())
            .await
            .unwrap();
        assert_eq!(r.into_inner().status, ServingStatus::Serving as i32);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// An h2 server on a loopback port that reports, for each request,
    /// whether the stream had ended once its first DATA frame was read,
    /// and then never answers (`answer = false`) or answers OK.
    async fn h2_probe(answer: bool) -> (String, tokio::sync::mpsc::UnboundedReceiver<bool>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let (io, _) = listener.accept().await.unwrap();
            let mut conn = h2::server::handshake(io).await.unwrap();
            let mut held = Vec::new();
            while let Some(Ok((req, mut respond))) = conn.accept().await {
                let mut body = req.into_body();
                let _first = body.data().await;
                let _ = tx.send(body.is_end_stream());
                if answer {
                    let resp = http::Response::builder()
                        .header("content-type", "application/grpc")
                        .header("grpc-status", "0")
                        .body(())
                        .unwrap();
                    let _ = respond.send_response(resp, true);
                } else {
                    held.push(respond);
                }
            }
        });
        (format!("http://{addr}"), rx)
    }

    /// What the transport exists for: the request's one DATA frame carries
    /// END_STREAM, so the server can start at once; tonic's stock client
    /// sends END_STREAM in a later, empty frame.
    #[tokio::test]
    async fn the_request_body_ends_with_its_first_data_frame() {
        for (stock, want) in [(false, true), (true, false)] {
            let (addr, mut ended) = h2_probe(true).await;
            let mut client = HealthClient::new(Transport::connect(&addr, stock).await.unwrap());
            // The probe's answer has no message; only what it saw matters.
            let _ = client.check(HealthCheckRequest::default()).await;
            assert_eq!(ended.recv().await, Some(want), "stock client: {stock}");
        }
    }

    #[tokio::test]
    async fn a_deadline_ends_an_unanswered_call_as_cancelled() {
        let (addr, _seen) = h2_probe(false).await;
        let mut client = HealthClient::new(LeanChannel::connect(&addr).await.unwrap());
        let mut req = tonic::Request::new(HealthCheckRequest::default());
        req.set_timeout(Duration::from_millis(50));
        let t = std::time::Instant::now();
        let err = client.check(req).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Cancelled, "{err:?}");
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    }

    #[tokio::test]
    async fn bad_addresses_are_refused_with_the_address_named() {
        for bad in ["https://127.0.0.1:1", "127.0.0.1:7700", "http://"] {
            let err = LeanChannel::connect(bad).await.unwrap_err();
            assert!(format!("{err:#}").contains(bad), "{bad}: {err:#}");
        }
        let err = LeanChannel::connect("unix:/nonexistent/q.sock").await.unwrap_err();
        assert!(format!("{err:#}").contains("/nonexistent/q.sock"), "{err:#}");
    }
}
