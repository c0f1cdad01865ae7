//! End-to-end: the JSON HTTP API against the real quarryd binary. The
//! same answers as gRPC (a write over HTTP is found over gRPC and back),
//! errors as JSON with the gRPC code and message and the mapped HTTP
//! status, the body limit, tokens, TLS, and the OpenAPI document served.

mod common;

use common::*;
use quarry_proto::v1 as pb;
use quarry_proto::v1::query_client::QueryClient;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;

/// The JSON API's address from quarryd's "listening" line.
fn http_addr(server: &Server) -> String {
    server
        .log
        .lock()
        .unwrap()
        .iter()
        .find_map(|l| {
            l.split_once(" http=")
                .map(|(_, r)| r.split_whitespace().next().unwrap().to_string())
        })
        .expect("quarryd logged its http address")
}

fn request_bytes(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nhost: q\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut b = req.into_bytes();
    b.extend_from_slice(body);
    b
}

/// (status, headers, body) of a raw HTTP/1.1 response.
fn parse_response(raw: &[u8]) -> (u16, String, Vec<u8>) {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a header end") + 4;
    let head = String::from_utf8_lossy(&raw[..end]).to_string();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head, raw[end..].to_vec())
}

/// One request over a fresh plain connection.
fn call(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String, Vec<u8>) {
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.write_all(&request_bytes(method, path, headers, body)).unwrap();
    let mut raw = Vec::new();
    c.read_to_end(&mut raw).unwrap();
    parse_response(&raw)
}

/// A JSON call: (status, body as JSON).
fn jcall(addr: &str, method: &str, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
    let body = if body.is_null() {
        Vec::new()
    } else {
        body.to_string().into_bytes()
    };
    let (status, head, b) = call(addr, method, path, &headers, &body);
    assert!(head.to_lowercase().contains("content-type: application/json"), "{head}");
    (
        status,
        serde_json::from_slice(&b).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&b))),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_json_api_answers_as_grpc_does_with_errors_as_json() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(
        &tmp.path().join("data"),
        &[],
        "http_listen = \"127.0.0.1:0\"\nmax_message_bytes = 65536\n",
    );
    let h = http_addr(&server);

    let (s, v) = jcall(&h, "GET", "/v1/health", None, Value::Null);
    assert_eq!((s, v), (200, json!({"status": "SERVING"})));
    let (s, v) = jcall(&h, "GET", "/v1/collections", None, Value::Null);
    assert_eq!((s, v), (200, json!({"collections": []})));
    let (s, v) = jcall(
        &h,
        "POST",
        "/v1/collections",
        None,
        json!({"name": "c", "dim": 4, "metric": "METRIC_L2"}),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["name"].clone(), v["dim"].clone(), v["state"].clone()),
        (json!("c"), json!(4), json!("COLLECTION_STATE_READY"))
    );
    let (s, v) = jcall(
        &h,
        "POST",
        "/v1/collections",
        None,
        json!({"name": "c", "dim": 4, "metric": "METRIC_L2"}),
    );
    assert_eq!((s, v["error"]["code"].clone()), (409, json!("ALREADY_EXISTS")), "{v}");

    // Writes over HTTP (payload as base64, an id as a string) are read
    // over gRPC, and the scores and payloads come back over HTTP.
    let (s, v) = jcall(
        &h,
        "POST",
        "/v1/collections/c/upsert",
        None,
        json!({"points": [{"id": 1, "vector": [1, 0, 0, 0], "payload": "aGk="}, {"id": "2", "vector": [0, 1, 0, 0]}]}),
    );
    assert_eq!((s, v["count"].clone()), (200, json!(2)), "{v}");
    let ch = server.channel().await;
    let hits = search_ids(&mut QueryClient::new(ch.clone()), "c", &[0.0, 1.0, 0.0, 0.0], 2, 10).await;
    assert_eq!(hits, vec![2, 1]);
    let (s, v) = jcall(
        &h,
        "POST",
        "/v1/collections/c/search",
        None,
        json!({"vector": [1, 0, 0, 0], "params": {"k": 2}, "with_payload": true}),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["neighbors"][0]["id"], 1);
    assert_eq!(v["neighbors"][0]["payload"], "aGk=");
    assert!(v["neighbors"][0]["score"].as_f64().unwrap() > v["neighbors"][1]["score"].as_f64().unwrap());
    let (s, v) = jcall(&h, "POST", "/v1/collections/c/get", None, json!({"ids": [2, 9]}));
    assert_eq!(s, 200);
    assert_eq!(v["missing_ids"], json!([9]));
    assert_eq!(v["records"][0]["vector"], json!([0.0, 1.0, 0.0, 0.0]));
    let (s, v) = jcall(
        &h,
        "POST",
        "/v1/collections/c/search_batch",
        None,
        json!({"vectors": [1, 0, 0, 0, 0, 1, 0, 0], "params": {"k": 1}}),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (
            v["results"][0]["neighbors"][0]["id"].clone(),
            v["results"][1]["neighbors"][0]["id"].clone()
        ),
        (json!(1), json!(2))
    );
    let (s, _) = jcall(&h, "POST", "/v1/collections/c/delete", None, json!({"ids": [1]}));
    assert_eq!(s, 200);
    let got = QueryClient::new(ch)
        .get(pb::GetRequest {
            collection: "c".into(),
            ids: vec![1],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.missing_ids, vec![1], "a delete over HTTP is seen over gRPC");

    // Errors: the gRPC status's code and message, the mapped HTTP status.
    for (method, path, body, status, code, says) in [
        (
            "POST",
            "/v1/collections/c/search",
            json!({"vector": [1, 0]}),
            400,
            "INVALID_ARGUMENT",
            "dimension 4",
        ),
        (
            "POST",
            "/v1/collections/c/search",
            json!({"vector": [1, 0, 0, "NaN"]}),
            400,
            "INVALID_ARGUMENT",
            "NaN",
        ),
        (
            "POST",
            "/v1/collections/c/search",
            json!({"vector": [1, 0, 0, 0], "params": {"k": 100000}}),
            400,
            "INVALID_ARGUMENT",
            "k",
        ),
        (
            "POST",
            "/v1/collections/nope/search",
            json!({"vector": [1]}),
            404,
            "NOT_FOUND",
            "nope",
        ),
        (
            "POST",
            "/v1/collections/c/search",
            json!({"vectr": [1]}),
            400,
            "INVALID_ARGUMENT",
            "vectr",
        ),
        (
            "POST",
            "/v1/collections/c/search",
            json!({"collection": "d", "vector": [1]}),
            400,
            "INVALID_ARGUMENT",
            "the path",
        ),
        (
            "GET",
            "/v1/operations/build-c-99",
            Value::Null,
            404,
            "NOT_FOUND",
            "build-c-99",
        ),
        (
            "PUT",
            "/v1/collections/c",
            Value::Null,
            405,
            "UNIMPLEMENTED",
            "GET, DELETE",
        ),
        ("GET", "/v2/anything", Value::Null, 404, "NOT_FOUND", "openapi.json"),
    ] {
        let (s, v) = jcall(&h, method, path, None, body);
        assert_eq!(s, status, "{method} {path}: {v}");
        assert_eq!(v["error"]["code"], code, "{method} {path}: {v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(says),
            "{method} {path}: {v}"
        );
    }
    // A body over max_message_bytes: 413, counted with gRPC's refusals.
    let big = json!({"points": [{"id": 3, "vector": vec![0.5f32; 20000]}]});
    let (s, v) = jcall(&h, "POST", "/v1/collections/c/upsert", None, big);
    assert_eq!(
        (s, v["error"]["code"].clone()),
        (413, json!("RESOURCE_EXHAUSTED")),
        "{v}"
    );
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("max_message_bytes = 65536"));
    assert!(scrape(&server).contains("quarry_refused_messages_total{reason=\"oversized\"} 1"));
    // The deadline header is checked.
    let (s, head, _) = call(&h, "GET", "/v1/stats", &[("x-timeout-ms", "soon")], b"");
    assert_eq!(s, 400, "{head}");

    // The document names every route.
    let (s, doc) = jcall(&h, "GET", "/openapi.json", None, Value::Null);
    assert_eq!(s, 200);
    for p in [
        "/v1/collections/{name}/search",
        "/v1/operations/{id}/cancel",
        "/v1/health",
    ] {
        assert!(doc["paths"].get(p).is_some(), "{p}");
    }
    let (s, v) = jcall(&h, "DELETE", "/v1/collections/c", None, Value::Null);
    assert_eq!((s, v), (200, json!({})));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_and_tls_guard_the_json_api_as_they_guard_grpc() {
    let tmp = tempfile::tempdir().unwrap();
    let certs = tmp.path().join("tls");
    let out = Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../ops/pair-certs.sh"))
        .arg(&certs)
        .arg("server=DNS:quarry.test,IP:127.0.0.1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let tokens = tmp.path().join("api.tokens");
    std::fs::write(&tokens, "read read-token-0123456789\nadmin admin-token-0123456789\n").unwrap();
    let server = Server::start(
        &tmp.path().join("data"),
        &[],
        &format!(
            "http_listen = \"127.0.0.1:0\"\napi_token_file = \"{}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
            tokens.display(),
            certs.join("server.crt").display(),
            certs.join("server.key").display()
        ),
    );
    let h = http_addr(&server);

    // A TLS client that trusts the CA.
    let mut roots = rustls::RootCertStore::empty();
    let ca = std::fs::read(certs.join("ca.crt")).unwrap();
    use rustls::pki_types::pem::PemObject;
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(&ca) {
        roots.add(c.unwrap()).unwrap();
    }
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let tls_call = |method: &'static str, path: &'static str, token: Option<&'static str>, body: &'static str| {
        let (connector, h) = (connector.clone(), h.clone());
        async move {
            let tcp = tokio::net::TcpStream::connect(&h).await.unwrap();
            let name = rustls::pki_types::ServerName::try_from("quarry.test").unwrap();
            let mut s = connector.connect(name, tcp).await.unwrap();
            let auth = token.map(|t| format!("Bearer {t}"));
            let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
            s.write_all(&request_bytes(method, path, &headers, body.as_bytes()))
                .await
                .unwrap();
            let mut raw = Vec::new();
            let _ = s.read_to_end(&mut raw).await;
            let (status, _, b) = parse_response(&raw);
            (status, serde_json::from_slice::<Value>(&b).unwrap())
        }
    };
    let (s, v) = tls_call("GET", "/v1/collections", None, "").await;
    assert_eq!((s, v["error"]["code"].clone()), (401, json!("UNAUTHENTICATED")), "{v}");
    let (s, v) = tls_call("GET", "/v1/collections", Some("read-token-0123456789"), "").await;
    assert_eq!(s, 200, "{v}");
    const CREATE: &str = r#"{"name":"c","dim":4,"metric":"METRIC_IP"}"#;
    for (token, status) in [("read-token-0123456789", 403), ("admin-token-0123456789", 200)] {
        let (s, v) = tls_call("POST", "/v1/collections", Some(token), CREATE).await;
        assert_eq!(s, status, "{v}");
        if s == 403 {
            assert_eq!(v["error"]["code"], "PERMISSION_DENIED", "{v}");
        }
    }
    let (s, v) = tls_call("GET", "/v1/health", None, "").await;
    assert_eq!((s, v), (200, json!({"status": "SERVING"})));

    // Plain HTTP to the TLS listener gets no HTTP answer.
    let mut c = std::net::TcpStream::connect(&h).unwrap();
    c.write_all(&request_bytes("GET", "/v1/health", &[], b"")).unwrap();
    let mut raw = Vec::new();
    let _ = c.read_to_end(&mut raw);
    assert!(!raw.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&raw));
}
