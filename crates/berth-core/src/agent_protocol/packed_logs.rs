//! A compact encoding of [`PutLogsRequest`], for agents talking HTTP to the server.
//!
//! JSON costs both sides most of their CPU on a log flood: the agent escapes every message
//! byte by byte, the server unescapes and validates it again. This encoding copies message
//! bytes as they are. It travels on a path of its own ([`PATH`]); a server that predates it
//! answers 404 there, and the agent goes back to JSON (`logs`) for good, so an old server
//! keeps working with a new agent, and an old agent (JSON only) with a new server.
//!
//! Layout (integers are LEB128 varints, `str` is `varint(len)` then UTF-8 bytes):
//!
//! ```text
//! VERSION(u8) str(container_instance_arn) str(instance_token) str(producer) varint(batches)
//! batch: u8(0: no region | 1: region) [str(region)] str(group) str(stream) varint(seq)
//!        varint(events), then per event: zigzag(timestamp_ms - previous) str(message)
//! ```
//!
//! (the first event's "previous" timestamp is 0). Nothing may follow the last batch.

use super::{LogBatch, LogLine, PutLogsRequest};
use crate::varint::{put as put_varint, unzigzag, zigzag};
use std::sync::Arc;

/// The path under `/_berth/agent/v1/` that takes this encoding.
pub const PATH: &str = "logs/packed";
/// Its `Content-Type`.
pub const CONTENT_TYPE: &str = "application/x-berth-packed-logs";
/// Format version: the first byte of a body. A decoder refuses other versions.
pub const VERSION: u8 = 1;

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// The body for `req`.
pub fn encode(req: &PutLogsRequest) -> Vec<u8> {
    let size: usize = 64
        + req.container_instance_arn.len()
        + req.instance_token.len()
        + req.producer.len()
        + req
            .batches
            .iter()
            .map(|b| {
                48 + b.group.len()
                    + b.stream.len()
                    + b.region.as_ref().map_or(0, String::len)
                    + b.events.iter().map(|e| e.message.len() + 8).sum::<usize>()
            })
            .sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.push(VERSION);
    put_str(&mut out, &req.container_instance_arn);
    put_str(&mut out, &req.instance_token);
    put_str(&mut out, &req.producer);
    put_varint(&mut out, req.batches.len() as u64);
    for b in &req.batches {
        match &b.region {
            None => out.push(0),
            Some(r) => {
                out.push(1);
                put_str(&mut out, r);
            }
        }
        put_str(&mut out, &b.group);
        put_str(&mut out, &b.stream);
        put_varint(&mut out, b.seq);
        put_varint(&mut out, b.events.len() as u64);
        let mut prev = 0i64;
        for e in b.events.iter() {
            put_varint(&mut out, zigzag(e.timestamp_ms.wrapping_sub(prev)));
            prev = e.timestamp_ms;
            put_str(&mut out, &e.message);
        }
    }
    out
}

struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, String> {
        let (&b, rest) = self
            .data
            .split_first()
            .ok_or_else(|| "packed logs: truncated".to_string())?;
        self.data = rest;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut at = 0;
        let v = crate::varint::get(self.data, &mut at)
            .ok_or_else(|| "packed logs: bad varint".to_string())?;
        self.data = &self.data[at..];
        Ok(v)
    }

    fn len(&mut self) -> Result<usize, String> {
        usize::try_from(self.varint()?).map_err(|_| "packed logs: bad length".to_string())
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], String> {
        if n > self.data.len() {
            return Err("packed logs: truncated".into());
        }
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        Ok(head)
    }

    fn str(&mut self) -> Result<String, String> {
        let n = self.len()?;
        let b = self.bytes(n)?;
        std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| "packed logs: a string is not UTF-8".to_string())
    }

    /// Room to reserve for `n` items of at least `min` bytes each: never more than what is
    /// left could hold, so a lying count cannot make a huge allocation.
    fn capacity(&self, n: usize, min: usize) -> usize {
        n.min(self.data.len() / min)
    }
}

/// The request in `data`, or why it is not one.
pub fn decode(data: &[u8]) -> Result<PutLogsRequest, String> {
    let mut r = Reader { data };
    let version = r.byte()?;
    if version != VERSION {
        return Err(format!(
            "packed logs: version {version} is not supported (this server speaks {VERSION})"
        ));
    }
    let container_instance_arn = r.str()?;
    let instance_token = r.str()?;
    let producer = r.str()?;
    let n = r.len()?;
    let mut batches = Vec::with_capacity(r.capacity(n, 6));
    for _ in 0..n {
        let region = match r.byte()? {
            0 => None,
            1 => Some(r.str()?),
            other => return Err(format!("packed logs: bad region flag {other}")),
        };
        let group = r.str()?;
        let stream = r.str()?;
        let seq = r.varint()?;
        let count = r.len()?;
        let mut events = Vec::with_capacity(r.capacity(count, 2));
        let mut prev = 0i64;
        for _ in 0..count {
            let timestamp_ms = prev.wrapping_add(unzigzag(r.varint()?));
            prev = timestamp_ms;
            events.push(LogLine {
                timestamp_ms,
                message: r.str()?,
            });
        }
        batches.push(LogBatch {
            region,
            group,
            stream,
            seq,
            events: Arc::new(events),
        });
    }
    if !r.data.is_empty() {
        return Err("packed logs: trailing bytes".into());
    }
    Ok(PutLogsRequest {
        container_instance_arn,
        instance_token,
        producer,
        batches,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> PutLogsRequest {
        PutLogsRequest {
            container_instance_arn: "arn:aws:ecs:us-east-1:000000000000:container-instance/x"
                .into(),
            instance_token: "tok".into(),
            producer: "agent-1-2".into(),
            batches: vec![
                LogBatch {
                    region: None,
                    group: "/ecs/app".into(),
                    stream: "p/app/abc".into(),
                    seq: 7,
                    events: Arc::new(vec![
                        LogLine {
                            timestamp_ms: 1_700_000_000_000,
                            message: "hello \"world\"\n\tπ".into(),
                        },
                        LogLine {
                            timestamp_ms: 1_699_999_999_999,
                            message: "earlier".into(),
                        },
                    ]),
                },
                LogBatch {
                    region: Some("eu-west-1".into()),
                    group: "g".into(),
                    stream: "s".into(),
                    seq: u64::MAX,
                    events: Arc::new(vec![]),
                },
            ],
        }
    }

    #[test]
    fn round_trips_and_is_smaller_than_json() {
        let req = sample();
        let body = encode(&req);
        assert_eq!(body[0], VERSION);
        assert_eq!(decode(&body).unwrap(), req);
        assert!(body.len() < serde_json::to_vec(&req).unwrap().len());
    }

    #[test]
    fn refuses_what_is_not_a_request() {
        let body = encode(&sample());
        assert!(decode(&[]).is_err());
        // Another version.
        let mut v2 = body.clone();
        v2[0] = VERSION + 1;
        assert!(decode(&v2).unwrap_err().contains("version"));
        // Every truncation, and trailing bytes.
        for cut in 0..body.len() {
            assert!(decode(&body[..cut]).is_err(), "cut at {cut}");
        }
        let mut long = body.clone();
        long.push(0);
        assert!(decode(&long).is_err());
        // A message that is not UTF-8.
        let mut req = sample();
        req.batches.truncate(1);
        let ok = encode(&req);
        let at = ok.windows(7).position(|w| w == b"earlier").unwrap();
        let mut bad = ok.clone();
        bad[at] = 0xff;
        assert!(decode(&bad).unwrap_err().contains("UTF-8"));
        // A count far beyond the body allocates nothing big and fails.
        let mut huge = vec![VERSION, 0, 0, 0];
        put_varint(&mut huge, u64::MAX >> 1);
        assert!(decode(&huge).is_err());
        // An overlong varint.
        let mut over = vec![VERSION];
        over.extend_from_slice(&[0xff; 11]);
        assert!(decode(&over).is_err());
    }

    proptest! {
        #[test]
        fn any_request_round_trips(
            arn in ".{0,40}",
            producer in ".{0,20}",
            batches in proptest::collection::vec(
                (
                    proptest::option::of("[a-z-]{1,12}"),
                    ".{0,20}",
                    ".{0,20}",
                    any::<u64>(),
                    proptest::collection::vec((any::<i64>(), ".{0,60}"), 0..20),
                ),
                0..5,
            ),
        ) {
            let req = PutLogsRequest {
                container_instance_arn: arn,
                instance_token: "t".into(),
                producer,
                batches: batches
                    .into_iter()
                    .map(|(region, group, stream, seq, events)| LogBatch {
                        region,
                        group,
                        stream,
                        seq,
                        events: Arc::new(
                            events
                                .into_iter()
                                .map(|(timestamp_ms, message)| LogLine { timestamp_ms, message })
                                .collect(),
                        ),
                    })
                    .collect(),
            };
            prop_assert_eq!(decode(&encode(&req)).unwrap(), req);
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&data);
        }
    }
}
