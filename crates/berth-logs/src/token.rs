//! Paging tokens.
//!
//! Events are ordered by (timestamp, event id). A *boundary* `(ts, id)` sits between the
//! events at or before it and the events after it. GetLogEvents' tokens are CloudWatch-shaped
//! (`f/` or `b/` followed by 56 digits): the boundary's timestamp and id (each offset by 2^63
//! so negative values fit, 20 digits each) and the stream's id (16 digits), so a token is
//! refused by any other stream. Because a token is a position and not a page number, asking
//! again at the end returns the very same token, as CloudWatch does.

use crate::LogsError;

/// A position between events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Boundary {
    /// Timestamp part.
    pub(crate) ts: i64,
    /// Event-id part.
    pub(crate) id: i64,
}

/// Which way a GetLogEvents token pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    /// Events after the boundary, oldest first.
    Forward,
    /// Events at or before the boundary, newest page first.
    Backward,
}

const OFFSET: i128 = 1 << 63;

fn digits(v: i64) -> String {
    format!("{:020}", i128::from(v) + OFFSET)
}

fn undigits(s: &str) -> Option<i64> {
    if s.len() != 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let v: i128 = s.parse().ok()?;
    i64::try_from(v - OFFSET).ok()
}

fn stream_digits(stream_id: i64) -> String {
    format!("{:016}", stream_id.rem_euclid(10_000_000_000_000_000))
}

/// A GetLogEvents token.
pub(crate) fn encode_get(direction: Direction, b: Boundary, stream_id: i64) -> String {
    let d = match direction {
        Direction::Forward => 'f',
        Direction::Backward => 'b',
    };
    format!(
        "{d}/{}{}{}",
        digits(b.ts),
        digits(b.id),
        stream_digits(stream_id)
    )
}

fn invalid_token() -> LogsError {
    LogsError::invalid("The specified nextToken is invalid.")
}

/// Read a GetLogEvents token issued for `stream_id`.
pub(crate) fn decode_get(token: &str, stream_id: i64) -> Result<(Direction, Boundary), LogsError> {
    let (d, rest) = token.split_once('/').ok_or_else(invalid_token)?;
    let direction = match d {
        "f" => Direction::Forward,
        "b" => Direction::Backward,
        _ => return Err(invalid_token()),
    };
    if rest.len() != 56 || !rest.is_ascii() {
        return Err(invalid_token());
    }
    let ts = undigits(&rest[..20]).ok_or_else(invalid_token)?;
    let id = undigits(&rest[20..40]).ok_or_else(invalid_token)?;
    if rest[40..] != stream_digits(stream_id) {
        return Err(invalid_token());
    }
    Ok((direction, Boundary { ts, id }))
}

/// A FilterLogEvents token: the boundary after the last event examined, tied to the group.
pub(crate) fn encode_filter(b: Boundary, group_id: i64) -> String {
    format!(
        "{}{}{}",
        digits(b.ts),
        digits(b.id),
        stream_digits(group_id)
    )
}

/// Read a FilterLogEvents token issued for `group_id`.
pub(crate) fn decode_filter(token: &str, group_id: i64) -> Result<Boundary, LogsError> {
    if token.len() != 56 || !token.is_ascii() {
        return Err(invalid_token());
    }
    let ts = undigits(&token[..20]).ok_or_else(invalid_token)?;
    let id = undigits(&token[20..40]).ok_or_else(invalid_token)?;
    if token[40..] != stream_digits(group_id) {
        return Err(invalid_token());
    }
    Ok(Boundary { ts, id })
}

/// A token for name-ordered listings: hex of a versioned key.
pub(crate) fn encode_key(key: &str) -> String {
    format!("l1:{key}")
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Read a token made by [`encode_key`].
pub(crate) fn decode_key(token: &str) -> Result<String, LogsError> {
    if !token.len().is_multiple_of(2) || token.len() > 4096 || !token.is_ascii() {
        return Err(invalid_token());
    }
    let bytes: Option<Vec<u8>> = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&token[i..i + 2], 16).ok())
        .collect();
    let text = String::from_utf8(bytes.ok_or_else(invalid_token)?).map_err(|_| invalid_token())?;
    text.strip_prefix("l1:")
        .map(str::to_string)
        .ok_or_else(invalid_token)
}

/// The CloudWatch-shaped eventId of an event: 56 digits, unique and stable.
pub(crate) fn event_id(ts: i64, id: i64) -> String {
    format!("{}{:036}", digits(ts), id)
}

/// A 56-digit sequence token.
pub(crate) fn sequence_token(seq: i64) -> String {
    format!("{seq:056}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_belong_to_their_stream() {
        for b in [
            Boundary { ts: 0, id: 0 },
            Boundary {
                ts: -1,
                id: i64::MAX,
            },
            Boundary {
                ts: i64::MIN,
                id: i64::MIN,
            },
            Boundary {
                ts: 1_700_000_000_000,
                id: 42,
            },
        ] {
            for d in [Direction::Forward, Direction::Backward] {
                let t = encode_get(d, b, 7);
                assert_eq!(t.len(), 58, "{t}");
                assert_eq!(decode_get(&t, 7).unwrap(), (d, b));
                assert!(decode_get(&t, 8).is_err());
            }
            let t = encode_filter(b, 3);
            assert_eq!(decode_filter(&t, 3).unwrap(), b);
            assert!(decode_filter(&t, 4).is_err());
        }
        for bad in [
            "",
            "f/",
            "x/123",
            "f/abc",
            "b/00000000000000000000000000000000000000000000000000000000é",
        ] {
            assert!(decode_get(bad, 0).is_err(), "{bad}");
        }
        assert_eq!(decode_key(&encode_key("a/b")).unwrap(), "a/b");
        assert!(decode_key("zz").is_err());
        assert_eq!(event_id(1, 2).len(), 56);
    }
}
