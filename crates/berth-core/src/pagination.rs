//! `maxResults` / `nextToken` paging over lists in a stable order.
//!
//! A token names the last item of the previous page, so a page stays correct when items are
//! added or removed between calls. The list operations work with plain tokens ([`page`]);
//! on the wire every token is sealed with the server's [`TokenKey`] (see [`TokenKey::seal`]):
//! opaque, bound to the operation and the caller's account and region, and authenticated,
//! so a forged, edited or transplanted token is refused with `InvalidParameterException`.

use berth_api::EcsError;
use hmac::{Hmac, Mac};
use sha2::Sha256;

const TOKEN_VERSION: &str = "b1:";

/// Make a token that resumes after `last_key`.
pub fn encode_token(last_key: &str) -> String {
    format!("{TOKEN_VERSION}{last_key}")
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Read a token made by [`encode_token`].
pub fn decode_token(token: &str) -> Result<String, EcsError> {
    let invalid = || EcsError::invalid("Invalid nextToken: the token is not one Berth issued.");
    if !token.len().is_multiple_of(2) || token.len() > 4096 {
        return Err(invalid());
    }
    let bytes: Option<Vec<u8>> = (0..token.len())
        .step_by(2)
        .map(|i| {
            token
                .get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect();
    let text = String::from_utf8(bytes.ok_or_else(invalid)?).map_err(|_| invalid())?;
    text.strip_prefix(TOKEN_VERSION)
        .map(str::to_string)
        .ok_or_else(invalid)
}

/// The secret that seals pagination tokens (HMAC-SHA256). A server generates one and keeps
/// it in its data directory, so that tokens survive a restart; the core never reads it
/// from anywhere itself.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenKey([u8; 32]);

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(<redacted>)")
    }
}

impl Default for TokenKey {
    /// A fixed, public key: for tests and tools. A server always sets its own.
    fn default() -> TokenKey {
        TokenKey([0; 32])
    }
}

/// The longest token accepted, before any decoding.
pub const MAX_TOKEN_CHARS: usize = 4096;
/// Bytes of the authentication tag in a sealed token.
const TAG_BYTES: usize = 16;
/// The sealed format's version byte.
const SEALED_VERSION: u8 = 1;

type HmacSha256 = Hmac<Sha256>;

fn mac(key: &[u8]) -> HmacSha256 {
    match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    }
}

impl TokenKey {
    /// A key from 32 secret bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> TokenKey {
        TokenKey(bytes)
    }

    fn subkey(&self, label: &[u8]) -> HmacSha256 {
        let mut m = mac(&self.0);
        m.update(label);
        mac(&m.finalize().into_bytes())
    }

    fn tag(&self, scope: &str, plain: &[u8]) -> HmacSha256 {
        let mut m = self.subkey(b"berth token tag");
        m.update(&u64::try_from(scope.len()).unwrap_or(u64::MAX).to_be_bytes());
        m.update(scope.as_bytes());
        m.update(plain);
        m
    }

    /// XOR `data` with the keystream of `tag` (HMAC-SHA256 in counter mode).
    fn apply_stream(&self, tag: &[u8], data: &mut [u8]) {
        let stream = self.subkey(b"berth token stream");
        for (i, chunk) in data.chunks_mut(32).enumerate() {
            let mut m = stream.clone();
            m.update(tag);
            m.update(&u64::try_from(i).unwrap_or(u64::MAX).to_be_bytes());
            let block = m.finalize().into_bytes();
            for (b, k) in chunk.iter_mut().zip(block.iter()) {
                *b ^= k;
            }
        }
    }

    /// Seal a plain token for `scope` (e.g. [`scope`]'s operation and partition): a
    /// deterministic authenticated encryption (SIV: the tag is an HMAC of scope and plain
    /// text, and seeds the keystream), hex-encoded. The same position always gives the same
    /// token, as AWS's do; nothing of the plain token shows.
    pub fn seal(&self, scope: &str, plain: &str) -> String {
        let tag = self.tag(scope, plain.as_bytes()).finalize().into_bytes();
        let tag = &tag[..TAG_BYTES];
        let mut body = plain.as_bytes().to_vec();
        self.apply_stream(tag, &mut body);
        let mut out = String::with_capacity(2 * (1 + TAG_BYTES + body.len()));
        for b in std::iter::once(SEALED_VERSION)
            .chain(tag.iter().copied())
            .chain(body)
        {
            out.push_str(&format!("{b:02x}"));
        }
        out
    }

    /// Open a token made by [`TokenKey::seal`] for the same `scope`. `None` for anything
    /// else: malformed, too long, edited, sealed with another key or for another scope.
    pub fn open(&self, scope: &str, token: &str) -> Option<String> {
        if token.len() > MAX_TOKEN_CHARS || !token.len().is_multiple_of(2) {
            return None;
        }
        let bytes = token
            .as_bytes()
            .chunks(2)
            .map(|pair| {
                let hex = |c: u8| match c {
                    b'0'..=b'9' => Some(c - b'0'),
                    b'a'..=b'f' => Some(c - b'a' + 10),
                    _ => None,
                };
                Some(hex(pair[0])? << 4 | hex(pair[1])?)
            })
            .collect::<Option<Vec<u8>>>()?;
        let (&version, rest) = bytes.split_first()?;
        if version != SEALED_VERSION || rest.len() < TAG_BYTES {
            return None;
        }
        let (tag, body) = rest.split_at(TAG_BYTES);
        let mut plain = body.to_vec();
        self.apply_stream(tag, &mut plain);
        // Constant time: `verify_truncated_left` compares the leading TAG_BYTES.
        self.tag(scope, &plain).verify_truncated_left(tag).ok()?;
        String::from_utf8(plain).ok()
    }

    /// Open a token from a request for `scope`; refusals are ECS's.
    pub fn open_ecs(&self, scope: &str, token: &str) -> Result<String, EcsError> {
        self.open(scope, token).ok_or_else(|| {
            EcsError::invalid(
                "Invalid nextToken: the token is not one Berth issued for this request.",
            )
        })
    }
}

/// The scope a token is bound to: the service, the operation, and the caller's account and
/// region, so that a token is good only for the listing that issued it.
pub fn scope(service: &str, operation: &str, partition: &crate::PartitionKey) -> String {
    format!(
        "{service}\n{operation}\n{}\n{}",
        partition.account, partition.region
    )
}

/// Check `maxResults` against ECS's 1..=100 and apply the default.
pub fn max_results(requested: Option<i32>, default: usize) -> Result<usize, EcsError> {
    match requested {
        None => Ok(default),
        Some(n) if (1..=100).contains(&n) => Ok(usize::try_from(n).unwrap_or(default)),
        Some(n) => Err(EcsError::invalid(format!(
            "maxResults must be between 1 and 100, got {n}."
        ))),
    }
}

/// One page of `items` (already in key order): those after the token's key, at most `limit`.
/// Returns the page and the token for the next one, if more remain. `items` is consumed only
/// as far as the page reaches (plus one), so a lazy iterator of borrowed keys costs nothing
/// for the items beyond the page.
pub fn page<K: AsRef<str>, T>(
    items: impl IntoIterator<Item = (K, T)>,
    token: Option<&str>,
    limit: usize,
) -> Result<(Vec<T>, Option<String>), EcsError> {
    page_ordered(items, token, limit, false)
}

/// Like [`page`], for items in ascending (`descending == false`) or descending key order.
pub fn page_ordered<K: AsRef<str>, T>(
    items: impl IntoIterator<Item = (K, T)>,
    token: Option<&str>,
    limit: usize,
    descending: bool,
) -> Result<(Vec<T>, Option<String>), EcsError> {
    let after = token.map(decode_token).transpose()?;
    let mut rest = items
        .into_iter()
        .filter(|(k, _)| {
            after.as_deref().is_none_or(|a| {
                if descending {
                    k.as_ref() < a
                } else {
                    k.as_ref() > a
                }
            })
        })
        .peekable();
    let mut out = Vec::new();
    let mut last = None;
    while out.len() < limit {
        match rest.next() {
            Some((k, v)) => {
                last = Some(k);
                out.push(v);
            }
            None => break,
        }
    }
    let next = match (rest.peek(), last) {
        (Some(_), Some(last)) => Some(encode_token(last.as_ref())),
        _ => None,
    };
    Ok((out, next))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn tokens_round_trip_and_refuse_forgeries() {
        assert_eq!(decode_token(&encode_token("a/b:3")).unwrap(), "a/b:3");
        for bad in ["", "zz", "abc", "00", &"61".repeat(3000)] {
            assert!(decode_token(bad).is_err(), "{bad}");
        }
    }

    fn key(n: u8) -> TokenKey {
        TokenKey::from_bytes([n; 32])
    }

    #[test]
    fn sealed_tokens_round_trip_and_hide_their_contents() {
        let k = key(7);
        for plain in [
            "",
            "a",
            &encode_token("arn:aws:ecs:us-east-1:1:cluster/x"),
            &"é".repeat(100),
        ] {
            let t = k.seal("ecs\nListClusters\n1\nus-east-1", plain);
            assert_eq!(
                k.open("ecs\nListClusters\n1\nus-east-1", &t).as_deref(),
                Some(plain)
            );
            assert_eq!(
                t,
                k.seal("ecs\nListClusters\n1\nus-east-1", plain),
                "deterministic"
            );
            if plain.len() > 3 {
                assert!(!t.contains(&encode_token(plain)[4..]), "{t}");
            }
        }
        let t = k.seal("s", "cluster/web");
        assert!(
            !t.contains(
                &"cluster/web"
                    .bytes()
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>()
            )
        );
    }

    #[test]
    fn sealed_tokens_refuse_forgeries() {
        let k = key(7);
        let t = k.seal("scope", "k042");
        assert_eq!(key(8).open("scope", &t), None, "another server's key");
        assert_eq!(k.open("other", &t), None, "another operation or partition");
        // Every single-character edit is refused.
        for i in 0..t.len() {
            for c in ['0', '5', 'a', 'f', 'F', 'z', '\u{e9}'] {
                let mut edited: Vec<char> = t.chars().collect();
                if edited[i] == c {
                    continue;
                }
                edited[i] = c;
                let edited: String = edited.into_iter().collect();
                assert_eq!(k.open("scope", &edited), None, "{edited}");
            }
        }
        for bad in [
            "",
            "0",
            "01",
            &t[..t.len() - 2],
            &format!("{t}00"),
            &"ab".repeat(3000),
            &encode_token("k042"),
        ] {
            assert_eq!(k.open("scope", bad), None, "{bad}");
        }
        assert!(k.open_ecs("scope", "nope").is_err());
    }

    proptest! {
        /// Any string is either refused or (only if it is the sealed token) opened.
        #[test]
        fn arbitrary_tokens_never_open(s in ".{0,200}", hexish in "[0-9a-f]{0,120}") {
            let k = key(1);
            prop_assert_eq!(k.open("scope", &s), None);
            prop_assert_eq!(k.open("scope", &hexish), None);
        }
    }

    #[test]
    fn max_results_bounds() {
        assert_eq!(max_results(None, 100).unwrap(), 100);
        assert_eq!(max_results(Some(1), 100).unwrap(), 1);
        assert!(max_results(Some(0), 100).is_err());
        assert!(max_results(Some(101), 100).is_err());
    }

    proptest! {
        /// Paging through any sorted list with any page size yields every item exactly once.
        #[test]
        fn pages_cover_everything_once(n in 0usize..60, limit in 1usize..12) {
            let items: Vec<(String, usize)> = (0..n).map(|i| (format!("k{i:03}"), i)).collect();
            let mut seen = Vec::new();
            let mut token = None;
            loop {
                let (page, next) = page(items.clone(), token.as_deref(), limit).unwrap();
                prop_assert!(page.len() <= limit);
                seen.extend(page);
                match next { Some(t) => token = Some(t), None => break }
            }
            prop_assert_eq!(seen, (0..n).collect::<Vec<_>>());
        }
    }

    #[test]
    fn a_page_reads_only_as_far_as_it_reaches() {
        let keys: Vec<String> = (0..1000).map(|i| format!("k{i:04}")).collect();
        let mut read = 0;
        let items = keys.iter().map(|k| {
            read += 1;
            (k.as_str(), k.len())
        });
        let (out, next) = page(items, None, 10).unwrap();
        assert_eq!(out.len(), 10);
        assert_eq!(next.as_deref().map(decode_token).unwrap().unwrap(), "k0009");
        assert_eq!(
            read, 11,
            "the page and one more, to know whether more remain"
        );
        let mut read = 0;
        let items = keys.iter().map(|k| {
            read += 1;
            (k.as_str(), k.clone())
        });
        let (out, next) = page(items, next.as_deref(), 10).unwrap();
        assert_eq!(out.first().map(String::as_str), Some("k0010"));
        assert_eq!(out.len(), 10);
        assert!(next.is_some());
        assert_eq!(read, 21);
    }
}
