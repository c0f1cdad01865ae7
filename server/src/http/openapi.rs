//! The JSON API's OpenAPI 3.0 document, generated from the route table
//! and the proto's descriptors, so it cannot drift from what is served.
//! Served at `/openapi.json`; `docs/openapi.json` is a copy a test keeps
//! equal.
//!
//! Owns: the document. Does not own: the routes (`routes`), the JSON
//! mapping (`json`).

use super::json::{message, POOL};
use super::routes::ROUTES;
use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// The schema of one field's value (one element, for a repeated one).
fn value_schema(f: &FieldDescriptor, out: &mut BTreeMap<String, Value>) -> Value {
    match f.kind() {
        Kind::Double | Kind::Float => json!({"type": "number"}),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            json!({"type": "integer", "format": "int32"})
        }
        Kind::Uint32 | Kind::Fixed32 => {
            json!({"type": "integer", "format": "int64", "minimum": 0, "maximum": u32::MAX})
        }
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => json!({"type": "integer", "format": "int64"}),
        Kind::Uint64 | Kind::Fixed64 => {
            json!({"type": "integer", "minimum": 0, "maximum": u64::MAX})
        }
        Kind::Bool => json!({"type": "boolean"}),
        Kind::String => json!({"type": "string"}),
        Kind::Bytes => json!({"type": "string", "format": "byte", "description": "base64"}),
        Kind::Enum(e) => {
            json!({"type": "string", "enum": e.values().map(|v| v.name().to_string()).collect::<Vec<_>>()})
        }
        Kind::Message(m) => {
            add_message(&m, out);
            json!({"$ref": format!("#/components/schemas/{}", m.name())})
        }
    }
}

/// Add `m` (and every message it holds) to the schemas.
fn add_message(m: &MessageDescriptor, out: &mut BTreeMap<String, Value>) {
    if out.contains_key(m.name()) {
        return;
    }
    // Claim the name first: messages may hold themselves.
    out.insert(m.name().to_string(), Value::Null);
    let mut props = Map::new();
    for f in m.fields() {
        let v = value_schema(&f, out);
        let v = if f.is_list() {
            json!({"type": "array", "items": v})
        } else if f.is_map() {
            json!({"type": "object", "additionalProperties": v})
        } else {
            v
        };
        props.insert(f.name().to_string(), v);
    }
    let doc = format!(
        "quarry.v1.{} (proto/quarry/v1/quarry.proto documents every field)",
        m.name()
    );
    out.insert(
        m.name().to_string(),
        json!({"type": "object", "description": doc, "properties": props, "additionalProperties": false}),
    );
}

/// A request body that works on the example collection `docs` (4-d).
fn example(grpc: &str) -> Option<Value> {
    Some(match grpc.rsplit('/').next()? {
        "CreateCollection" => json!({"name": "docs", "dim": 4, "metric": "METRIC_COSINE"}),
        "Upsert" => json!({"points": [{"id": 1, "vector": [0.1, 0.2, 0.3, 0.4], "payload": "eyJ0YWciOiJhIn0="}]}),
        "Delete" | "Get" => json!({"ids": [1, 2]}),
        "Search" => json!({"vector": [0.1, 0.2, 0.3, 0.4], "params": {"k": 10}, "with_payload": true}),
        "SearchBatch" => json!({"vectors": [0.1, 0.2, 0.3, 0.4, 0.4, 0.3, 0.2, 0.1], "params": {"k": 5}}),
        "BuildIndex" => json!({"source_path": "/var/lib/quarry/import/base.fbin", "first_id": 1000}),
        _ => return None,
    })
}

/// What a response names that other routes take (for clients and for
/// stateful testing): a collection's name, an operation's id.
fn links(response: &str) -> Option<Value> {
    let each = |field: &str, param: &str, ops: &[&str]| {
        let mut m = Map::new();
        for op in ops {
            m.insert(
                (*op).into(),
                json!({"operationId": op, "parameters": {param: format!("$response.body#/{field}")}}),
            );
        }
        Value::Object(m)
    };
    match response {
        "Collection" => Some(each(
            "name",
            "name",
            &[
                "DescribeCollection",
                "Upsert",
                "Search",
                "SearchBatch",
                "Get",
                "Delete",
                "BuildIndex",
                "Compact",
                "DropCollection",
            ],
        )),
        "Operation" => Some(each("id", "id", &["GetOperation", "CancelOperation"])),
        _ => None,
    }
}

fn error_response() -> Value {
    json!({
        "description": "An error: the gRPC status's code and message (the message names the field and the limit).",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    })
}

/// The whole document.
pub fn document() -> Value {
    let mut schemas = BTreeMap::new();
    let mut paths: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    for r in ROUTES {
        let req = message(r.request);
        let resp = message(r.response);
        add_message(&req, &mut schemas);
        add_message(&resp, &mut schemas);
        let mut op = Map::new();
        op.insert("summary".into(), json!(r.summary));
        op.insert(
            "description".into(),
            json!(format!(
                "Calls gRPC {}; the same validation, limits and statuses.",
                r.grpc
            )),
        );
        op.insert(
            "operationId".into(),
            json!(r.grpc.rsplit('/').next().expect("a method name")),
        );
        if let Some(field) = r.path_field {
            let name = &r.path[r.path.find('{').expect("a parameter") + 1..r.path.find('}').expect("a parameter")];
            op.insert(
                "parameters".into(),
                json!([{"name": name, "in": "path", "required": true, "schema": {"type": "string"},
                        "example": if name == "id" { "build-docs-1" } else { "docs" },
                        "description": format!("Fills the request's `{field}`.")}]),
            );
        }
        if r.method != "GET" && r.method != "DELETE" {
            let mut media = json!({"schema": {"$ref": format!("#/components/schemas/{}", req.name())}});
            if let Some(e) = example(r.grpc) {
                media["example"] = e;
            }
            op.insert(
                "requestBody".into(),
                json!({"required": false, "content": {"application/json": media}}),
            );
        }
        let mut ok = json!({"description": "OK", "content": {"application/json": {"schema":
            {"$ref": format!("#/components/schemas/{}", resp.name())}}}});
        if let Some(l) = links(r.response) {
            ok["links"] = l;
        }
        op.insert("responses".into(), json!({"200": ok, "default": error_response()}));
        paths
            .entry(r.path.to_string())
            .or_default()
            .insert(r.method.to_lowercase(), Value::Object(op));
    }
    paths.entry("/v1/health".into()).or_default().insert(
        "get".into(),
        json!({
            "summary": "SERVING, or NOT_SERVING (503) while draining. No token needed.",
            "operationId": "Health",
            "security": [],
            "responses": {
                "200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Health"}}}},
                "default": error_response(),
            }
        }),
    );
    schemas.insert(
        "Health".into(),
        json!({"type": "object", "required": ["status"], "additionalProperties": false,
               "properties": {"status": {"type": "string", "enum": ["SERVING", "NOT_SERVING"]}}}),
    );
    schemas.insert(
        "Error".into(),
        json!({"type": "object", "required": ["error"], "additionalProperties": false, "properties": {"error": {
            "type": "object", "required": ["code", "message"], "additionalProperties": false, "properties": {
                "code": {"type": "string", "enum": [
                    "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
                    "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
                    "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"]},
                "message": {"type": "string"}}}}}),
    );
    let _ = &*POOL;
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Quarry JSON API",
            "version": "v1",
            "description": "The gRPC API (quarry.v1) as JSON over HTTP/1.1: proto3's JSON mapping with the proto's field names; \
                64-bit integers are written as numbers and read as numbers or strings; enums by name; bytes as base64. \
                Errors are {\"error\": {\"code\", \"message\"}} with the HTTP status of the gRPC code. \
                With the server's api_token_file, send `Authorization: Bearer <token>`. \
                An `x-timeout-ms` header sets the request's deadline."
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}
        },
        "security": [{}, {"bearer": []}]
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn docs_openapi_json_is_the_served_document() {
        let served = serde_json::to_string_pretty(&super::document()).unwrap() + "\n";
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json");
        if std::env::var_os("QUARRY_WRITE_OPENAPI").is_some() {
            std::fs::write(path, &served).unwrap();
        }
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == served,
            "docs/openapi.json differs from the served document; regenerate it with \
             QUARRY_WRITE_OPENAPI=1 cargo test -p quarry-server --lib openapi"
        );
    }

    #[test]
    fn every_reference_resolves() {
        let doc = super::document();
        let text = doc.to_string();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for (i, _) in text.match_indices("#/components/schemas/") {
            let name: String = text[i + 21..].chars().take_while(|c| c.is_alphanumeric()).collect();
            assert!(schemas.contains_key(&name), "{name}");
        }
        assert!(schemas.values().all(|s| !s.is_null()));
    }
}
