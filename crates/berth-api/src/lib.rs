//! The wire: AWS JSON 1.1 as the AWS CLI and SDKs speak it.
//!
//! This crate owns the request and response shapes of ECS, CloudWatch Logs and Application
//! Auto Scaling (generated from botocore's service models, so field names and enum values are
//! AWS's own), the validation AWS's front end applies before a handler sees a request, the
//! `X-Amz-Target` routing table, and the single mapping from Berth's errors to AWS exception
//! names and HTTP statuses.
//!
//! It knows nothing about HTTP servers, storage, clocks or containers: it turns bytes into
//! typed requests and errors into bytes, and nothing else.

pub mod error;
pub mod generated;
pub mod shape;
pub mod target;

pub use error::{ApiError, EcsError};
pub use generated::{application_autoscaling, ecs, logs};
pub use target::{Service, Target};

use serde::de::DeserializeOwned;
use shape::Validate;

/// Decode a request body into its input shape and apply the model's constraints.
///
/// An empty body is an empty object, as botocore sends `{}` for operations without members.
/// Syntax and type errors are `SerializationException`; constraint violations are the
/// service's validation exception with AWS's "N validation errors detected" message.
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
}
