//! The JSON face of the API's messages: proto3's JSON mapping of every
//! `quarry.v1` message, through the same descriptors the gRPC reflection
//! serves, and gRPC statuses as HTTP codes with a JSON error body.
//!
//! Owns: request JSON → protobuf bytes (unknown fields refused),
//! protobuf bytes → response JSON (field names as in the proto, 64-bit
//! integers as JSON numbers, enums by name, every field present), the
//! status → HTTP code table and the error body. Does not own: routing
//! (`routes`), what a message means (the gRPC services).

use prost::Message;
use prost_reflect::{DescriptorPool, DeserializeOptions, DynamicMessage, MessageDescriptor, SerializeOptions};
use std::sync::LazyLock;
use tonic::Code;

/// Every `quarry.v1` message, from the descriptor set compiled into the
/// proto crate.
pub static POOL: LazyLock<DescriptorPool> = LazyLock::new(|| {
    DescriptorPool::decode(quarry_proto::v1::FILE_DESCRIPTOR_SET).expect("the compiled descriptor set decodes")
});

/// The descriptor of `quarry.v1.<name>`.
pub fn message(name: &str) -> MessageDescriptor {
    POOL.get_message_by_name(&format!("quarry.v1.{name}"))
        .unwrap_or_else(|| panic!("quarry.v1.{name} is in the descriptor set"))
}

/// How responses are written: the proto's field names, every field (a
/// zero is written, not left out), enums by name, 64-bit integers as
/// numbers (ids are below 2^53 in practice; requests take both forms).
fn serialize_options() -> SerializeOptions {
    SerializeOptions::new()
        .use_proto_field_name(true)
        .skip_default_fields(false)
        .stringify_64_bit_integers(false)
}

/// A request body as `msg`'s protobuf encoding; an empty body is the
/// empty message. The error names what is wrong and where.
pub fn from_json(msg: &MessageDescriptor, body: &[u8]) -> Result<DynamicMessage, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(DynamicMessage::new(msg.clone()));
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let m = DynamicMessage::deserialize_with_options(msg.clone(), &mut de, &DeserializeOptions::new())
        .map_err(|e| format!("request body is not a {} in JSON: {e}", msg.name()))?;
    de.end()
        .map_err(|e| format!("request body: trailing characters after the JSON object: {e}"))?;
    Ok(m)
}

/// Decode `T` from a dynamic message of the same type.
pub fn to_typed<T: Message + Default>(m: &DynamicMessage) -> Result<T, String> {
    T::decode(m.encode_to_vec().as_slice()).map_err(|e| format!("request body: {e}"))
}

/// A response message as JSON.
pub fn to_json<T: Message>(msg: &MessageDescriptor, value: &T) -> Vec<u8> {
    let m = DynamicMessage::decode(msg.clone(), value.encode_to_vec().as_slice())
        .expect("a message encoded by prost decodes with its own descriptor");
    let mut ser = serde_json::Serializer::new(Vec::new());
    m.serialize_with_options(&mut ser, &serialize_options())
        .expect("a message serialises to JSON");
    ser.into_inner()
}

/// The HTTP status for a gRPC code (as grpc-gateway maps them, except
/// RESOURCE_EXHAUSTED: 429, and 413 for an oversized body, said apart).
pub fn http_status(code: Code) -> http::StatusCode {
    use http::StatusCode as S;
    match code {
        Code::Ok => S::OK,
        Code::InvalidArgument | Code::OutOfRange => S::BAD_REQUEST,
        Code::FailedPrecondition => S::BAD_REQUEST,
        Code::Unauthenticated => S::UNAUTHORIZED,
        Code::PermissionDenied => S::FORBIDDEN,
        Code::NotFound => S::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => S::CONFLICT,
        Code::ResourceExhausted => S::TOO_MANY_REQUESTS,
        Code::Cancelled => S::from_u16(499).expect("499 is a valid code"),
        Code::Unimplemented => S::NOT_IMPLEMENTED,
        Code::Unavailable => S::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => S::GATEWAY_TIMEOUT,
        Code::Unknown | Code::Internal | Code::DataLoss => S::INTERNAL_SERVER_ERROR,
    }
}

/// The gRPC code's name as the proto and the docs write it
/// (`INVALID_ARGUMENT`).
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// The error body: `{"error": {"code": "INVALID_ARGUMENT", "message": …}}`;
/// the message is the gRPC status's, naming the field and the limit.
pub fn error_body(code: Code, message: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({"error": {"code": code_name(code), "message": message}}))
        .expect("a JSON value serialises")
}

#[cfg(test)]
mod tests {
    use super::*;
    use quarry_proto::v1 as pb;

    #[test]
    fn a_request_round_trips_and_bad_bodies_are_named() {
        let d = message("SearchRequest");
        let m = from_json(
            &d,
            br#"{"collection": "c", "vector": [1, 2.5], "params": {"k": 3}, "withPayload": true}"#,
        )
        .unwrap();
        let r: pb::SearchRequest = to_typed(&m).unwrap();
        assert_eq!(r.collection, "c");
        assert_eq!(r.vector, vec![1.0, 2.5]);
        assert_eq!(r.params.unwrap().k, 3);
        assert!(r.with_payload);
        let r: pb::SearchRequest = to_typed(&from_json(&d, b"  ").unwrap()).unwrap();
        assert_eq!(r, pb::SearchRequest::default());
        for (body, says) in [
            (&br#"{"vectr": [1]}"#[..], "vectr"),
            (br#"{"vector": "x"}"#, "SearchRequest"),
            (br#"{"collection": "c"} x"#, "trailing"),
            (br#"[1, 2]"#, "SearchRequest"),
        ] {
            let e = from_json(&d, body).unwrap_err();
            assert!(e.contains(says), "{}: {e}", String::from_utf8_lossy(body));
        }
        // 64-bit ids as numbers or as strings (the proto3 mapping).
        let g: pb::GetRequest =
            to_typed(&from_json(&message("GetRequest"), br#"{"ids": [1, "18446744073709551615"]}"#).unwrap()).unwrap();
        assert_eq!(g.ids, vec![1, u64::MAX]);
    }

    #[test]
    fn a_response_has_every_field_with_the_protos_names() {
        let r = pb::SearchResponse {
            neighbors: vec![pb::Neighbor {
                id: 7,
                distance: 0.5,
                payload: b"hi".to_vec(),
                score: -0.5,
            }],
            stats: None,
        };
        let v: serde_json::Value = serde_json::from_slice(&to_json(&message("SearchResponse"), &r)).unwrap();
        let n = &v["neighbors"][0];
        assert_eq!(n["id"], 7);
        assert_eq!(n["payload"], "aGk=");
        assert_eq!(n["score"], -0.5);
        let c = pb::Collection::default();
        let v: serde_json::Value = serde_json::from_slice(&to_json(&message("Collection"), &c)).unwrap();
        assert_eq!(v["vector_count"], 0);
        assert_eq!(v["metric"], "METRIC_UNSPECIFIED");
    }

    #[test]
    fn statuses_map_to_http_codes_with_a_named_error() {
        assert_eq!(http_status(Code::InvalidArgument), 400);
        assert_eq!(http_status(Code::NotFound), 404);
        assert_eq!(http_status(Code::AlreadyExists), 409);
        assert_eq!(http_status(Code::PermissionDenied), 403);
        assert_eq!(http_status(Code::Unauthenticated), 401);
        assert_eq!(http_status(Code::ResourceExhausted), 429);
        assert_eq!(http_status(Code::Unavailable), 503);
        let v: serde_json::Value = serde_json::from_slice(&error_body(Code::NotFound, "no \"c\"")).unwrap();
        assert_eq!(v["error"]["code"], "NOT_FOUND");
        assert_eq!(v["error"]["message"], "no \"c\"");
    }
}
