//! Smithy RPC v2 CBOR (`smithy-protocol: rpc-v2-cbor`), the protocol CloudWatch's model lists
//! first and that newer AWS SDKs choose (botocore, and so the CLI, prefer AWS JSON 1.0).
//!
//! The same documents as the JSON protocols, in CBOR: a request body is converted to the
//! JSON value it stands for (epoch-seconds timestamps arrive as tag 1, which is dropped) and
//! decoded by the same generated shapes and validation; a response or error is the JSON
//! answer converted back, with the members that are timestamps tagged 1.

use crate::ApiError;
use serde_json::{Map, Number, Value};

/// CBOR items nested deeper than this are refused (as [`crate::MAX_NESTING`] for JSON).
const MAX_DEPTH: usize = crate::MAX_NESTING;

/// The JSON value a CBOR request body stands for (an empty body is `{}`).
pub fn to_json(body: &[u8]) -> Result<Value, ApiError> {
    if body.is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    let item: ciborium::Value = ciborium::de::from_reader_with_recursion_limit(body, MAX_DEPTH)
        .map_err(|e| ApiError::serialization(format!("Malformed CBOR: {e}")))?;
    let v = convert_in(item)?;
    if !v.is_object() {
        return Err(ApiError::serialization(
            "Unexpected CBOR: the request body must be a map.",
        ));
    }
    Ok(v)
}

fn convert_in(item: ciborium::Value) -> Result<Value, ApiError> {
    Ok(match item {
        ciborium::Value::Integer(i) => {
            let i = i128::from(i);
            i64::try_from(i)
                .map(Number::from)
                .or_else(|_| u64::try_from(i).map(Number::from))
                .map(Value::Number)
                .map_err(|_| ApiError::serialization("Unexpected CBOR: integer out of range."))?
        }
        ciborium::Value::Float(f) => Number::from_f64(f)
            .map(Value::Number)
            .ok_or_else(|| ApiError::serialization("Unexpected CBOR: a non-finite number."))?,
        ciborium::Value::Text(s) => Value::String(s),
        ciborium::Value::Bool(b) => Value::Bool(b),
        ciborium::Value::Null => Value::Null,
        // Timestamps (tag 1) are epoch seconds, as the JSON protocols send them.
        ciborium::Value::Tag(_, inner) => convert_in(*inner)?,
        ciborium::Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(convert_in)
                .collect::<Result<_, _>>()?,
        ),
        ciborium::Value::Map(entries) => {
            let mut m = Map::new();
            for (k, v) in entries {
                let ciborium::Value::Text(k) = k else {
                    return Err(ApiError::serialization(
                        "Unexpected CBOR: map keys must be text.",
                    ));
                };
                m.insert(k, convert_in(v)?);
            }
            Value::Object(m)
        }
        ciborium::Value::Bytes(_) => {
            return Err(ApiError::serialization(
                "Unexpected CBOR: no member of this service is a blob.",
            ));
        }
        _ => return Err(ApiError::serialization("Unexpected CBOR item.")),
    })
}

/// A JSON answer as CBOR, with the members named in `timestamps` (and the elements of such
/// members that are lists) tagged 1 as Smithy timestamps.
pub fn from_json(value: &Value, timestamps: &[&str]) -> Vec<u8> {
    let item = convert_out(value, timestamps, false);
    let mut out = Vec::new();
    // Writing to a Vec cannot fail.
    let _ = ciborium::ser::into_writer(&item, &mut out);
    out
}

fn convert_out(value: &Value, timestamps: &[&str], timestamp: bool) -> ciborium::Value {
    let tagged = |v: ciborium::Value| {
        if timestamp {
            ciborium::Value::Tag(1, Box::new(v))
        } else {
            v
        }
    };
    match value {
        Value::Null => ciborium::Value::Null,
        Value::Bool(b) => ciborium::Value::Bool(*b),
        Value::Number(n) => tagged(match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => ciborium::Value::Integer(i.into()),
            (_, Some(u), _) => ciborium::Value::Integer(u.into()),
            (_, _, f) => ciborium::Value::Float(f.unwrap_or(0.0)),
        }),
        Value::String(s) => ciborium::Value::Text(s.clone()),
        Value::Array(items) => ciborium::Value::Array(
            items
                .iter()
                .map(|v| convert_out(v, timestamps, timestamp))
                .collect(),
        ),
        Value::Object(m) => ciborium::Value::Map(
            m.iter()
                .map(|(k, v)| {
                    (
                        ciborium::Value::Text(k.clone()),
                        convert_out(v, timestamps, timestamps.contains(&k.as_str())),
                    )
                })
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cbor(v: &ciborium::Value) -> Vec<u8> {
        let mut out = Vec::new();
        ciborium::ser::into_writer(v, &mut out).unwrap();
        out
    }

    #[test]
    fn requests_read_as_their_json() {
        use ciborium::Value as C;
        let body = cbor(&C::Map(vec![
            (C::Text("Namespace".into()), C::Text("AWS/ECS".into())),
            (
                C::Text("StartTime".into()),
                C::Tag(1, Box::new(C::Integer(1_700_000_000.into()))),
            ),
            (
                C::Text("EndTime".into()),
                C::Tag(1, Box::new(C::Float(1_700_000_060.5))),
            ),
            (
                C::Text("Statistics".into()),
                C::Array(vec![C::Text("Average".into())]),
            ),
        ]));
        assert_eq!(
            to_json(&body).unwrap(),
            json!({"Namespace": "AWS/ECS", "StartTime": 1_700_000_000, "EndTime": 1_700_000_060.5, "Statistics": ["Average"]})
        );
        assert_eq!(to_json(b"").unwrap(), json!({}));
    }

    #[test]
    fn hostile_requests_are_serialization_errors() {
        use ciborium::Value as C;
        let mut deep = C::Null;
        for _ in 0..100 {
            deep = C::Array(vec![deep]);
        }
        for bad in [
            vec![0xff],
            cbor(&C::Array(vec![])),
            cbor(&C::Map(vec![(C::Integer(1.into()), C::Null)])),
            cbor(&C::Map(vec![(C::Text("k".into()), C::Bytes(vec![1]))])),
            cbor(&C::Map(vec![(C::Text("k".into()), deep)])),
        ] {
            let e = to_json(&bad).unwrap_err();
            assert_eq!(e.code, "SerializationException", "{bad:?}");
        }
    }

    #[test]
    fn responses_tag_timestamps() {
        let v = json!({"Label": "CPUUtilization", "Datapoints": [{"Timestamp": 120.0, "Average": 50.0}],
            "MetricDataResults": [{"Timestamps": [60, 120], "Values": [1.5, 2]}]});
        let bytes = from_json(&v, &["Timestamp", "Timestamps"]);
        let item: ciborium::Value = ciborium::de::from_reader(&bytes[..]).unwrap();
        let text = format!("{item:?}");
        assert!(text.contains("Tag(1, Float(120.0))"), "{text}");
        assert!(text.contains("Tag(1, Integer(Integer(60)))"), "{text}");
        assert!(
            text.contains("Float(50.0)") && !text.contains("Tag(1, Float(50.0))"),
            "{text}"
        );
        // And back: the tags drop, the document is the same.
        assert_eq!(to_json(&bytes).unwrap(), v);
    }
}
