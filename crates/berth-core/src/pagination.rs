//! `maxResults` / `nextToken` paging over lists in a stable order.
//!
//! A token names the last item of the previous page, so a page stays correct when items are
//! added or removed between calls. Tokens are opaque to clients (hex of a versioned string);
//! anything that does not decode is refused with `InvalidParameterException`.

use berth_api::EcsError;

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
/// Returns the page and the token for the next one, if more remain.
pub fn page<T>(
    items: Vec<(String, T)>,
    token: Option<&str>,
    limit: usize,
) -> Result<(Vec<T>, Option<String>), EcsError> {
    page_ordered(items, token, limit, false)
}

/// Like [`page`], for items in ascending (`descending == false`) or descending key order.
pub fn page_ordered<T>(
    items: Vec<(String, T)>,
    token: Option<&str>,
    limit: usize,
    descending: bool,
) -> Result<(Vec<T>, Option<String>), EcsError> {
    let after = token.map(decode_token).transpose()?;
    let mut rest = items
        .into_iter()
        .filter(|(k, _)| {
            after
                .as_ref()
                .is_none_or(|a| if descending { k < a } else { k > a })
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
        (Some(_), Some(last)) => Some(encode_token(&last)),
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
}
