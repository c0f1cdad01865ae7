//! Bearer tokens for the public gRPC API: the token file's format and
//! parser, the two roles, which methods each may call, and the tower layer
//! that checks every request before any service sees it.
//!
//! Owns: `api_token_file` (one `<role> <token>` per line) and the
//! UNAUTHENTICATED / PERMISSION_DENIED answers. Does not own: the
//! replication listener's token (`replication::settings`), TLS, or the
//! metrics endpoint (which stays open: it carries no data).

use std::sync::Arc;

/// What a token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Search, Get, list, describe, operations' status, stats.
    Read,
    /// Everything.
    Admin,
}

/// The tokens of `api_token_file`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tokens(Vec<(Role, Vec<u8>)>);

/// Shortest token accepted, bytes.
pub const MIN_TOKEN: usize = 16;

/// Parse a token file: one `<role> <token>` per line (role `read` or
/// `admin`; the token printable ASCII without spaces, at least
/// [`MIN_TOKEN`] bytes), blank lines and `#` comments ignored. Errors
/// name the line; a token is never echoed.
pub fn parse_tokens(text: &[u8]) -> Result<Tokens, String> {
    let text = std::str::from_utf8(text).map_err(|e| format!("not UTF-8: {e}"))?;
    let mut out: Vec<(Role, Vec<u8>)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let n = i + 1;
        let mut parts = line.split_whitespace();
        let (Some(role), Some(token), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(format!("line {n}: expected `<role> <token>`"));
        };
        let role = match role {
            "read" => Role::Read,
            "admin" => Role::Admin,
            other => return Err(format!("line {n}: role {other:?} is not read or admin")),
        };
        if token.len() < MIN_TOKEN || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!(
                "line {n}: a token is at least {MIN_TOKEN} printable ASCII characters without spaces"
            ));
        }
        if out.iter().any(|(_, t)| t == token.as_bytes()) {
            return Err(format!("line {n}: the same token appears twice"));
        }
        out.push((role, token.as_bytes().to_vec()));
    }
    if out.is_empty() {
        return Err("no tokens".into());
    }
    Ok(Tokens(out))
}

impl Tokens {
    /// The role of `token`, comparing every token in time independent of
    /// where they differ.
    pub fn role_of(&self, token: &[u8]) -> Option<Role> {
        let mut found = None;
        for (role, t) in &self.0 {
            let same = t.len() == token.len() && t.iter().zip(token).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
            if same {
                found = Some(*role);
            }
        }
        found
    }
}

/// What calling gRPC method `path` needs: `None` for the open services
/// (health, reflection).
pub fn needs(path: &str) -> Option<Role> {
    const OPEN: [&str; 3] = [
        "/grpc.health.v1.Health/",
        "/grpc.reflection.v1.ServerReflection/",
        "/grpc.reflection.v1alpha.ServerReflection/",
    ];
    const READ: [&str; 7] = [
        "/quarry.v1.Query/Search",
        "/quarry.v1.Query/SearchBatch",
        "/quarry.v1.Query/Get",
        "/quarry.v1.Collections/ListCollections",
        "/quarry.v1.Collections/DescribeCollection",
        "/quarry.v1.Collections/GetOperation",
        "/quarry.v1.Admin/Stats",
    ];
    if OPEN.iter().any(|p| path.starts_with(p)) {
        None
    } else if READ.contains(&path) {
        Some(Role::Read)
    } else {
        Some(Role::Admin)
    }
}

/// Why a request is refused, as a gRPC status (also the JSON API's
/// check, with the gRPC method its route calls).
pub fn check(tokens: &Tokens, path: &str, authorization: Option<&[u8]>) -> Result<(), tonic::Status> {
    let Some(need) = needs(path) else { return Ok(()) };
    let Some(token) = authorization.and_then(|h| h.strip_prefix(b"Bearer ")) else {
        return Err(tonic::Status::unauthenticated(
            "no bearer token: send `authorization: Bearer <token>` (a token from the server's api_token_file)",
        ));
    };
    match tokens.role_of(token) {
        None => Err(tonic::Status::unauthenticated(
            "the bearer token is not one of the server's",
        )),
        Some(Role::Read) if need == Role::Admin => Err(tonic::Status::permission_denied(format!(
            "{path} needs an admin token; this one is read-only"
        ))),
        Some(_) => Ok(()),
    }
}

/// The tower layer that answers every request without a good token for
/// its method, before it reaches a service.
/// With no tokens (no `api_token_file`) it lets everything through.
#[derive(Clone, Debug)]
pub struct AuthLayer(pub Option<Arc<Tokens>>);

impl<S> tower_layer::Layer<S> for AuthLayer {
    type Service = Auth<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Auth {
            inner,
            tokens: self.0.clone(),
        }
    }
}

/// See [`AuthLayer`].
#[derive(Clone, Debug)]
pub struct Auth<S> {
    inner: S,
    tokens: Option<Arc<Tokens>>,
}

impl<S, ReqB, B> tower_service::Service<http::Request<ReqB>> for Auth<S>
where
    S: tower_service::Service<http::Request<ReqB>, Response = http::Response<B>>,
    S::Future: Send + 'static,
    B: Default + Send + 'static,
{
    type Response = http::Response<B>;
    type Error = S::Error;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqB>) -> Self::Future {
        let Some(tokens) = &self.tokens else {
            return Box::pin(self.inner.call(req));
        };
        let auth = req.headers().get(http::header::AUTHORIZATION).map(|v| v.as_bytes());
        match check(tokens, req.uri().path(), auth) {
            Ok(()) => Box::pin(self.inner.call(req)),
            Err(status) => Box::pin(async move { Ok(status.into_http()) }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: &str = "read-token-0123456789";
    const A: &str = "admin-token-0123456789";

    #[test]
    fn the_file_parses_and_every_bad_line_is_named() {
        let t = parse_tokens(format!("# ops\n\nread {R}\n  admin {A}  \n").as_bytes()).unwrap();
        assert_eq!(t.role_of(R.as_bytes()), Some(Role::Read));
        assert_eq!(t.role_of(A.as_bytes()), Some(Role::Admin));
        assert_eq!(t.role_of(b"read-token-012345678"), None);
        for (text, says) in [
            (format!("read {R}\nwrite {A}\n"), "line 2: role \"write\""),
            ("admin short\n".to_string(), "line 1: a token is at least 16"),
            (format!("admin {A} extra\n"), "line 1: expected"),
            (format!("read {R}\nadmin {R}\n"), "line 2: the same token"),
            ("# nothing\n".to_string(), "no tokens"),
        ] {
            let e = parse_tokens(text.as_bytes()).unwrap_err();
            assert!(e.contains(says) && !e.contains(A) && !e.contains(R), "{text:?}: {e}");
        }
        assert!(parse_tokens(&[0xff, 0xfe]).unwrap_err().contains("UTF-8"));
    }

    #[test]
    fn reads_need_a_token_writes_need_admin_health_and_reflection_are_open() {
        let t = parse_tokens(format!("read {R}\nadmin {A}\n").as_bytes()).unwrap();
        let bearer = |s: &str| format!("Bearer {s}");
        let code =
            |path: &str, h: Option<String>| check(&t, path, h.as_deref().map(str::as_bytes)).map_err(|s| s.code());
        assert_eq!(code("/grpc.health.v1.Health/Check", None), Ok(()));
        assert_eq!(
            code("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", None),
            Ok(())
        );
        assert_eq!(code("/quarry.v1.Query/Search", None), Err(tonic::Code::Unauthenticated));
        assert_eq!(
            code("/quarry.v1.Query/Search", Some(R.into())),
            Err(tonic::Code::Unauthenticated)
        );
        assert_eq!(
            code("/quarry.v1.Query/Search", Some(bearer("wrong-token-0123456789"))),
            Err(tonic::Code::Unauthenticated)
        );
        assert_eq!(code("/quarry.v1.Query/Search", Some(bearer(R))), Ok(()));
        assert_eq!(
            code("/quarry.v1.Write/Upsert", Some(bearer(R))),
            Err(tonic::Code::PermissionDenied)
        );
        assert_eq!(
            code("/quarry.v1.Collections/DropCollection", Some(bearer(R))),
            Err(tonic::Code::PermissionDenied)
        );
        assert_eq!(code("/quarry.v1.Write/Upsert", Some(bearer(A))), Ok(()));
        assert_eq!(code("/quarry.v1.Query/Get", Some(bearer(A))), Ok(()));
        // An unknown method needs admin (fails closed).
        assert_eq!(
            code("/quarry.v1.Query/Nope", Some(bearer(R))),
            Err(tonic::Code::PermissionDenied)
        );
    }
}
