//! The wire: AWS JSON 1.1 (1.0 for CloudWatch, and Smithy RPC v2 CBOR, see [`cbor`]) as the
//! AWS CLI and SDKs speak it.
//!
//! This crate owns the request and response shapes of ECS, CloudWatch Logs, Application
//! Auto Scaling, CloudWatch and Secrets Manager (generated from botocore's service models, so field names and enum values are
//! AWS's own), the validation AWS's front end applies before a handler sees a request, the
//! `X-Amz-Target` routing table, and the single mapping from Berth's errors to AWS exception
//! names and HTTP statuses.
//!
//! It knows nothing about HTTP servers, storage, clocks or containers: it turns bytes into
//! typed requests and errors into bytes, and nothing else.

pub mod cbor;
pub mod error;
pub mod generated;
pub mod shape;
pub mod target;

pub use error::{ApiError, AutoScalingError, EcsError, SecretsManagerError};
pub use generated::{application_autoscaling, cloudwatch, ecs, logs, secretsmanager};
pub use target::{Service, Target};

use serde::de::DeserializeOwned;
use shape::Validate;

/// Objects and arrays nested this deep (the body's own object is level 1) are refused
/// before parsing. No AWS request shape Berth serves nests deeper than about 8.
pub const MAX_NESTING: usize = 32;

/// The longest string (raw bytes between its quotes, escapes included) in an ECS or
/// Application Auto Scaling request: ECS caps a whole task definition at 64 KiB.
pub const MAX_STRING_BYTES: usize = 64 * 1024;

/// The longest string in a CloudWatch Logs request: a whole PutLogEvents batch may be
/// 1 MiB (an event's message up to 256 KiB, longer when escaped).
pub const MAX_LOGS_STRING_BYTES: usize = 1024 * 1024;

/// The longest string in a Secrets Manager request: a `SecretString` may be 64 KiB, and
/// escaping can make a character six bytes (`\u0001`) between the quotes.
pub const MAX_SECRET_STRING_BYTES: usize = 6 * 64 * 1024;

/// Refuse a body that nests objects or arrays [`MAX_NESTING`] deep or holds a string
/// longer than `max_string` bytes, in one pass over the bytes before anything is parsed
/// (so hostile input costs no more than reading it). Anything else malformed is left to
/// the parser.
fn check_limits(body: &[u8], max_string: usize) -> Result<(), ApiError> {
    let mut depth = 0usize;
    let mut string_start: Option<usize> = None;
    let mut escaped = false;
    for (i, &b) in body.iter().enumerate() {
        if let Some(start) = string_start {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                string_start = None;
                continue;
            }
            if i - start > max_string {
                return Err(ApiError::serialization(format!(
                    "Unexpected JSON: a string longer than {max_string} bytes."
                )));
            }
            continue;
        }
        match b {
            b'"' => string_start = Some(i),
            b'{' | b'[' => {
                depth += 1;
                if depth >= MAX_NESTING {
                    return Err(ApiError::serialization(format!(
                        "Unexpected JSON: objects and arrays nested {MAX_NESTING} or more levels deep."
                    )));
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Decode a request body into its input shape and apply the model's constraints.
///
/// An empty body is an empty object, as botocore sends `{}` for operations without members.
/// Syntax and type errors are `SerializationException`, and so are bodies beyond the
/// nesting and string limits ([`MAX_NESTING`], [`MAX_STRING_BYTES`]) and a JSON array
/// where a structure belongs, at any depth; constraint violations are the service's
/// validation exception with AWS's "N validation errors detected" message.
pub fn decode<T: DeserializeOwned + Validate>(
    service: Service,
    body: &[u8],
) -> Result<T, ApiError> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    // serde would read a structure from a JSON array (members by position); AWS JSON
    // protocols take an object and nothing else.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::serialization(
            "Unexpected JSON: the request body must be a JSON object.",
        ));
    }
    let max_string = match service {
        Service::Logs => MAX_LOGS_STRING_BYTES,
        Service::SecretsManager => MAX_SECRET_STRING_BYTES,
        Service::Ecs | Service::ApplicationAutoScaling | Service::CloudWatch => MAX_STRING_BYTES,
    };
    check_limits(body, max_string)?;
    let mut de = serde_json::Deserializer::from_slice(body);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let what = if inner.is_syntax() || inner.is_eof() {
            format!("Malformed JSON: {inner}")
        } else if path == "." || path.is_empty() {
            format!("Unexpected JSON: {inner}")
        } else {
            format!("Unexpected value at '{path}': {inner}")
        };
        ApiError::serialization(what)
    })?;
    de.end()
        .map_err(|e| ApiError::serialization(format!("Malformed JSON: {e}")))?;
    shape::validate(&value).map_err(|message| ApiError::validation(service, message))?;
    Ok(value)
}

/// Encode a response shape.
pub fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    // Serialising our own generated shapes cannot fail: keys are strings, floats are finite
    // timestamps, and there are no custom serialisers that error.
    serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_must_be_an_object() {
        let ok: Result<ecs::ListClustersRequest, _> = decode(Service::Ecs, b" {} ");
        assert!(ok.is_ok());
        let empty: Result<ecs::ListClustersRequest, _> = decode(Service::Ecs, b"");
        assert!(empty.is_ok());
        for bad in [&b"[]"[..], b"[1, \"x\"]", b"null", b"1", b"\"x\""] {
            let e = decode::<ecs::ListClustersRequest>(Service::Ecs, bad).unwrap_err();
            assert_eq!(e.code, "SerializationException", "{bad:?}");
        }
    }

    fn create_cluster(body: &str) -> Result<ecs::CreateClusterRequest, ApiError> {
        decode(Service::Ecs, body.as_bytes())
    }

    #[test]
    fn an_array_is_never_a_structure_at_any_depth() {
        for body in [
            r#"{"configuration": []}"#,
            r#"{"configuration": [{"logging": "DEFAULT"}]}"#,
            r#"{"configuration": {"executeCommandConfiguration": ["k", "DEFAULT"]}}"#,
            r#"{"settings": [[]]}"#,
            r#"{"tags": [["k", "v"]]}"#,
            r#"{"serviceConnectDefaults": ["ns"]}"#,
        ] {
            let e = create_cluster(body).unwrap_err();
            assert_eq!(e.code, "SerializationException", "{body}: {}", e.message);
            assert!(e.message.contains("JSON object"), "{body}: {}", e.message);
        }
        let e = create_cluster(r#"{"configuration": []}"#).unwrap_err();
        assert!(e.message.contains("'configuration'"), "{}", e.message);
        let ok = create_cluster(
            r#"{"clusterName": "a", "configuration": {"executeCommandConfiguration": {"logging": "DEFAULT"}}, "tags": [{"key": "k", "value": "v"}]}"#,
        )
        .unwrap();
        assert_eq!(ok.cluster_name.as_deref(), Some("a"));
        // Round trip through the forwarding Serialize impl.
        let again: ecs::CreateClusterRequest = decode(Service::Ecs, &encode(&ok)).unwrap();
        assert_eq!(again, ok);
    }

    #[test]
    fn nesting_and_string_limits() {
        let nested = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        // Inside a member the parser would otherwise reach: 31 levels in all is fine
        // for the limits (the shape then refuses it), 32 is refused up front.
        let ok_depth = format!(r#"{{"clusterName": {}}}"#, nested(30));
        let e = create_cluster(&ok_depth).unwrap_err();
        assert!(!e.message.contains("nested"), "{}", e.message);
        let too_deep = format!(r#"{{"clusterName": {}}}"#, nested(31));
        let e = create_cluster(&too_deep).unwrap_err();
        assert_eq!(e.code, "SerializationException");
        assert!(e.message.contains("nested 32"), "{}", e.message);
        let e = create_cluster(&format!("{}{}", "{\"a\":".repeat(100_000), "1")).unwrap_err();
        assert!(e.message.contains("nested"), "{}", e.message);
        // Brackets inside strings do not count; escaped quotes do not end a string.
        let brackets = format!(
            r#"{{"clusterName": "{}\"{}"}}"#,
            "[{".repeat(100),
            "]}".repeat(100)
        );
        let name = create_cluster(&brackets).unwrap().cluster_name.unwrap();
        assert_eq!(name.len(), 401, "{name}");

        let long = |n: usize| format!(r#"{{"clusterName": "{}"}}"#, "a".repeat(n));
        assert!(create_cluster(&long(MAX_STRING_BYTES)).is_ok());
        let e = create_cluster(&long(MAX_STRING_BYTES + 1)).unwrap_err();
        assert_eq!(e.code, "SerializationException");
        assert!(e.message.contains("string longer than"), "{}", e.message);
        // Keys are strings too.
        let e = create_cluster(&format!(r#"{{"{}": 1}}"#, "k".repeat(MAX_STRING_BYTES + 1)))
            .unwrap_err();
        assert!(e.message.contains("string longer than"), "{}", e.message);
        // Logs allows longer strings (a whole batch).
        let msg = format!(
            r#"{{"logGroupName": "g", "logStreamName": "s", "logEvents": [{{"timestamp": 1, "message": "{}"}}]}}"#,
            "m".repeat(200_000)
        );
        let put: Result<logs::PutLogEventsRequest, _> = decode(Service::Logs, msg.as_bytes());
        assert!(put.is_ok(), "{:?}", put.err());
        // An unterminated string is the parser's to report.
        let e = create_cluster(r#"{"clusterName": "abc"#).unwrap_err();
        assert!(e.message.contains("Malformed JSON"), "{}", e.message);
    }
}
