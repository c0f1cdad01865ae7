//! The JSON HTTP API's routes: one table, each route naming the gRPC
//! method it calls, its request and response messages, and the request
//! field its path parameter fills; matching a request line against it;
//! and the call into the same gRPC service code (so validation, limits,
//! statuses and messages are the gRPC API's own).
//!
//! Owns: the table (also the OpenAPI document's source), path matching,
//! the dispatch. Does not own: the JSON mapping (`json`), tokens
//! (`crate::auth`), the connection (`super`).

use super::json::{message, to_json, to_typed};
use crate::service::{AdminSvc, CollectionsSvc, QuerySvc, WriteSvc};
use prost_reflect::{DynamicMessage, ReflectMessage};
use tonic::metadata::MetadataMap;
use tonic::Status;

/// One route of the JSON API.
#[derive(Debug)]
pub struct Route {
    /// HTTP method.
    pub method: &'static str,
    /// Path template; `{x}` matches one path segment.
    pub path: &'static str,
    /// The gRPC method it calls (also what the token must allow).
    pub grpc: &'static str,
    /// Request message (`quarry.v1.<request>`), read from the body.
    pub request: &'static str,
    /// Response message.
    pub response: &'static str,
    /// The request field the path parameter fills.
    pub path_field: Option<&'static str>,
    /// One line for the OpenAPI document.
    pub summary: &'static str,
}

const fn r(
    method: &'static str,
    path: &'static str,
    grpc: &'static str,
    request: &'static str,
    response: &'static str,
    path_field: Option<&'static str>,
    summary: &'static str,
) -> Route {
    Route {
        method,
        path,
        grpc,
        request,
        response,
        path_field,
        summary,
    }
}

/// Every route but health and the OpenAPI document (served apart).
pub const ROUTES: &[Route] = &[
    r(
        "GET",
        "/v1/collections",
        "/quarry.v1.Collections/ListCollections",
        "ListCollectionsRequest",
        "ListCollectionsResponse",
        None,
        "List every collection.",
    ),
    r(
        "POST",
        "/v1/collections",
        "/quarry.v1.Collections/CreateCollection",
        "CreateCollectionRequest",
        "Collection",
        None,
        "Create an empty collection.",
    ),
    r(
        "GET",
        "/v1/collections/{name}",
        "/quarry.v1.Collections/DescribeCollection",
        "DescribeCollectionRequest",
        "Collection",
        Some("name"),
        "One collection in full.",
    ),
    r(
        "DELETE",
        "/v1/collections/{name}",
        "/quarry.v1.Collections/DropCollection",
        "DropCollectionRequest",
        "DropCollectionResponse",
        Some("name"),
        "Drop a collection and its files (a running build is cancelled first).",
    ),
    r(
        "POST",
        "/v1/collections/{name}/build",
        "/quarry.v1.Collections/BuildIndex",
        "BuildIndexRequest",
        "Operation",
        Some("collection"),
        "Bulk-load a vector file on the server's disk as a new segment; returns the operation.",
    ),
    r(
        "POST",
        "/v1/collections/{name}/compact",
        "/quarry.v1.Admin/Compact",
        "CompactRequest",
        "Operation",
        Some("collection"),
        "Merge the fresh index and the segments into one segment; returns the operation.",
    ),
    r(
        "POST",
        "/v1/collections/{name}/upsert",
        "/quarry.v1.Write/Upsert",
        "UpsertRequest",
        "WriteResponse",
        Some("collection"),
        "Insert or replace points; durable when answered.",
    ),
    r(
        "POST",
        "/v1/collections/{name}/delete",
        "/quarry.v1.Write/Delete",
        "DeleteRequest",
        "WriteResponse",
        Some("collection"),
        "Delete points by id (unknown ids are not an error).",
    ),
    r(
        "POST",
        "/v1/collections/{name}/get",
        "/quarry.v1.Query/Get",
        "GetRequest",
        "GetResponse",
        Some("collection"),
        "Points by id, and the ids that are missing.",
    ),
    r(
        "POST",
        "/v1/collections/{name}/search",
        "/quarry.v1.Query/Search",
        "SearchRequest",
        "SearchResponse",
        Some("collection"),
        "The k nearest neighbours of one vector.",
    ),
    r(
        "POST",
        "/v1/collections/{name}/search_batch",
        "/quarry.v1.Query/SearchBatch",
        "SearchBatchRequest",
        "SearchBatchResponse",
        Some("collection"),
        "The k nearest neighbours of each of several vectors.",
    ),
    r(
        "GET",
        "/v1/operations/{id}",
        "/quarry.v1.Collections/GetOperation",
        "GetOperationRequest",
        "Operation",
        Some("id"),
        "A build or compaction, as it stands or as it ended.",
    ),
    r(
        "POST",
        "/v1/operations/{id}/cancel",
        "/quarry.v1.Collections/CancelOperation",
        "CancelOperationRequest",
        "Operation",
        Some("id"),
        "Stop a running build or compaction.",
    ),
    r(
        "GET",
        "/v1/stats",
        "/quarry.v1.Admin/Stats",
        "StatsRequest",
        "StatsResponse",
        None,
        "Server-wide statistics.",
    ),
];

/// What a request line matched.
pub enum Matched<'a> {
    /// A route, and its path parameter (decoded).
    Route(&'static Route, Option<String>),
    /// The path exists, not with this method: the methods it takes.
    Method(Vec<&'static str>),
    /// No route has this path.
    None(&'a str),
}

/// `%XX` escapes decoded; `None` for a bad escape or bytes that are not
/// UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The path parameter if `path` fits `template`: `Some(None)` for a
/// template without one, `None` when it does not fit.
fn fit(template: &str, path: &str) -> Option<Option<String>> {
    let (mut t, mut p) = (template.split('/'), path.split('/'));
    let mut param = None;
    loop {
        match (t.next(), p.next()) {
            (None, None) => return Some(param),
            (Some(ts), Some(ps)) if ts.starts_with('{') => {
                if ps.is_empty() {
                    return None;
                }
                param = Some(percent_decode(ps)?);
            }
            (Some(ts), Some(ps)) if ts == ps => {}
            _ => return None,
        }
    }
}

/// Match a method and path against [`ROUTES`].
pub fn find<'a>(method: &str, path: &'a str) -> Matched<'a> {
    let mut methods = Vec::new();
    for route in ROUTES {
        if let Some(param) = fit(route.path, path) {
            if route.method == method {
                return Matched::Route(route, param);
            }
            methods.push(route.method);
        }
    }
    if methods.is_empty() {
        Matched::None(path)
    } else {
        Matched::Method(methods)
    }
}

/// The gRPC services the routes call.
#[derive(Clone)]
pub struct Services {
    /// Collections.
    pub collections: CollectionsSvc,
    /// Query.
    pub query: QuerySvc,
    /// Write.
    pub write: WriteSvc,
    /// Admin.
    pub admin: AdminSvc,
}

/// Fill the path parameter into the request, refusing a body that names
/// another value.
pub fn fill_path(route: &Route, m: &mut DynamicMessage, param: Option<String>) -> Result<(), String> {
    let (Some(field), Some(value)) = (route.path_field, param) else {
        return Ok(());
    };
    let f = m
        .descriptor()
        .get_field_by_name(field)
        .expect("the table names a field of its message");
    if m.has_field(&f) {
        let given = m.get_field(&f);
        if given.as_str() != Some(value.as_str()) {
            return Err(format!(
                "{field}: the body says {:?}, the path {value:?}; leave it out of the body",
                given.as_str().unwrap_or_default()
            ));
        }
    }
    m.set_field(&f, prost_reflect::Value::String(value));
    Ok(())
}

/// Call `route`'s gRPC method with `m`, the response as JSON.
pub async fn call(svc: &Services, route: &Route, m: &DynamicMessage, meta: MetadataMap) -> Result<Vec<u8>, Status> {
    use quarry_proto::v1::admin_server::Admin;
    use quarry_proto::v1::collections_server::Collections;
    use quarry_proto::v1::query_server::Query;
    use quarry_proto::v1::write_server::Write;
    macro_rules! unary {
        ($svc:expr, $trait:ident :: $method:ident) => {{
            let msg = to_typed(m).map_err(Status::invalid_argument)?;
            let req = tonic::Request::from_parts(meta, Default::default(), msg);
            let resp = $trait::$method(&$svc, req).await?.into_inner();
            Ok(to_json(&message(route.response), &resp))
        }};
    }
    match route.grpc {
        "/quarry.v1.Collections/ListCollections" => unary!(svc.collections, Collections::list_collections),
        "/quarry.v1.Collections/CreateCollection" => unary!(svc.collections, Collections::create_collection),
        "/quarry.v1.Collections/DescribeCollection" => unary!(svc.collections, Collections::describe_collection),
        "/quarry.v1.Collections/DropCollection" => unary!(svc.collections, Collections::drop_collection),
        "/quarry.v1.Collections/BuildIndex" => unary!(svc.collections, Collections::build_index),
        "/quarry.v1.Collections/GetOperation" => unary!(svc.collections, Collections::get_operation),
        "/quarry.v1.Collections/CancelOperation" => unary!(svc.collections, Collections::cancel_operation),
        "/quarry.v1.Admin/Compact" => unary!(svc.admin, Admin::compact),
        "/quarry.v1.Admin/Stats" => unary!(svc.admin, Admin::stats),
        "/quarry.v1.Write/Upsert" => unary!(svc.write, Write::upsert),
        "/quarry.v1.Write/Delete" => unary!(svc.write, Write::delete),
        "/quarry.v1.Query/Get" => unary!(svc.query, Query::get),
        "/quarry.v1.Query/Search" => unary!(svc.query, Query::search),
        "/quarry.v1.Query/SearchBatch" => unary!(svc.query, Query::search_batch),
        other => Err(Status::internal(format!("route to {other} has no dispatch"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_names_real_messages_fields_and_a_dispatched_method() {
        for r in ROUTES {
            let req = message(r.request);
            message(r.response);
            if let Some(f) = r.path_field {
                let field = req
                    .get_field_by_name(f)
                    .unwrap_or_else(|| panic!("{}: no field {f}", r.path));
                assert_eq!(field.kind(), prost_reflect::Kind::String, "{}", r.path);
                assert!(r.path.contains('{'), "{}", r.path);
            } else {
                assert!(!r.path.contains('{'), "{}", r.path);
            }
            // The gRPC method exists and takes these messages.
            let (service, method) = r.grpc[1..].split_once('/').unwrap();
            let s = super::super::json::POOL.get_service_by_name(service).unwrap();
            let m = s.methods().find(|m| m.name() == method).unwrap();
            assert_eq!(m.input().name(), r.request, "{}", r.grpc);
            assert_eq!(m.output().name(), r.response, "{}", r.grpc);
            // Reads are the routes a read token may call.
            let read = crate::auth::needs(r.grpc) == Some(crate::auth::Role::Read);
            assert_eq!(
                read,
                r.method == "GET" || r.grpc.contains("/quarry.v1.Query/"),
                "{}",
                r.grpc
            );
        }
    }

    #[test]
    fn paths_match_with_one_decoded_parameter_and_methods_are_listed() {
        let Matched::Route(r, p) = find("POST", "/v1/collections/my%2Dcol/search") else {
            panic!()
        };
        assert_eq!((r.grpc, p.as_deref()), ("/quarry.v1.Query/Search", Some("my-col")));
        let Matched::Route(r, p) = find("GET", "/v1/collections") else {
            panic!()
        };
        assert_eq!((r.grpc, p), ("/quarry.v1.Collections/ListCollections", None));
        let Matched::Method(m) = find("PUT", "/v1/collections/c") else {
            panic!()
        };
        assert_eq!(m, vec!["GET", "DELETE"]);
        for bad in [
            "/v1/collections/",
            "/v1/collections/c/x",
            "/v1/collections/%zz/search",
            "/v2/stats",
            "/",
        ] {
            assert!(matches!(find("POST", bad), Matched::None(_)), "{bad}");
        }
    }

    #[test]
    fn the_path_fills_the_field_and_a_body_that_disagrees_is_refused() {
        let route = ROUTES.iter().find(|r| r.grpc.ends_with("/Search")).unwrap();
        let d = message("SearchRequest");
        let mut m = super::super::json::from_json(&d, br#"{"vector": [1]}"#).unwrap();
        fill_path(route, &mut m, Some("c".into())).unwrap();
        let r: quarry_proto::v1::SearchRequest = to_typed(&m).unwrap();
        assert_eq!(r.collection, "c");
        let mut m = super::super::json::from_json(&d, br#"{"collection": "d"}"#).unwrap();
        let e = fill_path(route, &mut m, Some("c".into())).unwrap_err();
        assert!(e.contains("collection") && e.contains("\"d\""), "{e}");
    }
}
