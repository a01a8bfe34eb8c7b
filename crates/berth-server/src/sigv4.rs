//! AWS Signature Version 4 (`AWS4-HMAC-SHA256`) verification of requests signed in the
//! `Authorization` header, as the AWS CLI and SDKs send them.
//!
//! Pure: no clock (the caller passes `now`), no I/O. The canonical request and the
//! string to sign are built exactly as AWS defines them (double-encoded, normalised path;
//! sorted, strictly encoded query; lower-cased, trimmed, space-collapsed headers joined by
//! `,` when repeated; the payload hash, or the `x-amz-content-sha256` header, which must
//! then match the body), and are checked against AWS's published SigV4 test suite in the
//! tests below. Signatures are compared in constant time (`hmac`'s `verify_slice`), and so
//! are session tokens (`subtle`).
//!
//! Refusals carry AWS's exception names and wording; see [`AuthError`].

use crate::credentials::{Credential, Credentials};
use berth_api::ApiError;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// The only algorithm Berth (and every AWS JSON service) accepts.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// How far the request's time may be from the server's, either way (AWS's window).
pub const MAX_SKEW_SECS: i64 = 15 * 60;

/// The longest piece of a caller's header Berth quotes back in an error message.
const MAX_ECHO: usize = 512;

/// A request as the verifier sees it.
#[derive(Debug, Clone, Copy)]
pub struct SignedRequest<'a> {
    /// `GET`, `POST`, ...
    pub method: &'a str,
    /// The path as it came on the wire (still percent-encoded), e.g. `/`.
    pub path: &'a str,
    /// The raw query string without the `?` (empty when there is none).
    pub query: &'a str,
    /// Every header in the order received; names in any case, repeated names allowed.
    pub headers: &'a [(&'a str, &'a [u8])],
    /// The body.
    pub body: &'a [u8],
}

impl SignedRequest<'_> {
    /// The first value of a header (names compared case-insensitively).
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }

    fn header_str(&self, name: &str) -> Option<&str> {
        self.header(name).and_then(|v| std::str::from_utf8(v).ok())
    }
}

/// A request whose signature checked out.
#[derive(Debug, Clone)]
pub struct Verified<'c> {
    /// The credential that signed it.
    pub credential: &'c Credential,
    /// The region in the credential scope.
    pub region: String,
    /// The service in the credential scope (`ecs`, `logs`, `application-autoscaling`).
    pub service: String,
}

/// Why a request is refused, each with AWS's exception name, status and wording.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header at all.
    #[error("Missing Authentication Token")]
    Missing,
    /// The `Authorization` header is malformed or a required part is missing.
    #[error("{0}")]
    Incomplete(String),
    /// Unknown access key, or a session token that does not belong to it.
    #[error("The security token included in the request is invalid.")]
    UnrecognizedClient,
    /// The signature is wrong, expired, or scoped to something else.
    #[error("{0}")]
    InvalidSignature(String),
}

/// AWS's text for a signature that does not match.
pub const SIGNATURE_MISMATCH: &str = "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.";

impl AuthError {
    /// The exception name.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Missing => "MissingAuthenticationTokenException",
            AuthError::Incomplete(_) => "IncompleteSignatureException",
            AuthError::UnrecognizedClient => "UnrecognizedClientException",
            AuthError::InvalidSignature(_) => "InvalidSignatureException",
        }
    }

    /// The HTTP status. AWS's common-errors table gives 403 for a missing token and 400
    /// for an incomplete signature; the JSON services (ECS, Logs, DynamoDB, ECR, ...)
    /// answer `UnrecognizedClientException` and `InvalidSignatureException` (also the
    /// "Signature expired" one) with 400. Clients go by `__type`, not by the status.
    pub fn status(&self) -> u16 {
        match self {
            AuthError::Missing => 403,
            AuthError::Incomplete(_)
            | AuthError::UnrecognizedClient
            | AuthError::InvalidSignature(_) => 400,
        }
    }

    fn mismatch() -> AuthError {
        AuthError::InvalidSignature(SIGNATURE_MISMATCH.into())
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> ApiError {
        ApiError {
            status: e.status(),
            code: e.code(),
            message: e.to_string(),
            extra: None,
        }
    }
}

/// The parts of an `Authorization: AWS4-HMAC-SHA256 ...` header.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Authorization<'a> {
    access_key_id: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    /// Lower-cased, sorted, de-duplicated.
    signed_headers: Vec<String>,
    signature: &'a str,
}

fn echo(s: &str) -> String {
    if s.len() <= MAX_ECHO {
        return s.to_string();
    }
    let mut end = MAX_ECHO;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// Parse the header; `has_date` says whether the request has an `X-Amz-Date` or `Date`
/// header (AWS reports its absence together with the header's missing parts).
fn parse_authorization(value: &str, has_date: bool) -> Result<Authorization<'_>, AuthError> {
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    if let Some(rest) = value
        .strip_prefix(ALGORITHM)
        .filter(|r| r.starts_with([' ', '\t']))
    {
        for part in rest.split(',') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let Some((k, v)) = part.split_once('=') else {
                return Err(AuthError::Incomplete(format!(
                    "'{}' not a valid key=value pair (missing equal-sign) in Authorization header: '{}'.",
                    echo(part),
                    echo(value)
                )));
            };
            match k.trim() {
                "Credential" => credential = Some(v.trim()),
                "SignedHeaders" => signed_headers = Some(v.trim()),
                "Signature" => signature = Some(v.trim()),
                _ => {}
            }
        }
    }
    let mut missing = String::new();
    for (name, present) in [
        ("Credential", credential.is_some()),
        ("Signature", signature.is_some()),
        ("SignedHeaders", signed_headers.is_some()),
    ] {
        if !present {
            missing.push_str(&format!(
                "Authorization header requires '{name}' parameter. "
            ));
        }
    }
    if !has_date {
        missing.push_str(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. ",
        );
    }
    let (Some(credential), Some(signed_headers), Some(signature), true) =
        (credential, signed_headers, signature, missing.is_empty())
    else {
        return Err(AuthError::Incomplete(format!(
            "{missing}Authorization={}",
            echo(value)
        )));
    };
    let parts: Vec<&str> = credential.split('/').collect();
    let [access_key_id, date, region, service, terminator] = parts[..] else {
        return Err(AuthError::Incomplete(format!(
            "Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, got '{}'",
            echo(credential)
        )));
    };
    if terminator != "aws4_request" {
        return Err(AuthError::Incomplete(format!(
            "Credential should be scoped with a valid terminator: 'aws4_request', not '{}'.",
            echo(terminator)
        )));
    }
    let mut names: Vec<String> = signed_headers
        .split(';')
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    if names.iter().any(String::is_empty) {
        return Err(AuthError::Incomplete(format!(
            "SignedHeaders '{}' has an empty header name. Authorization={}",
            echo(signed_headers),
            echo(value)
        )));
    }
    names.sort();
    names.dedup();
    if !names.iter().any(|n| n == "host") {
        return Err(AuthError::Incomplete(
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.".into(),
        ));
    }
    Ok(Authorization {
        access_key_id,
        date,
        region,
        service,
        signed_headers: names,
        signature,
    })
}

/// Verify `req` against `credentials` at `now` (seconds since the Unix epoch).
///
/// Checks, in AWS's order: an `Authorization` header exists; it is complete and well
/// formed and the request has a date; the access key is known (and the session token is
/// the one configured for it, if any); the scope's region is well formed and its date is
/// the request's; the request time is within [`MAX_SKEW_SECS`] of `now`; an
/// `x-amz-content-sha256` header matches the body; the signature matches. The caller
/// checks that the scope's service is the one the request is for ([`check_service`]).
pub fn verify<'c>(
    req: &SignedRequest<'_>,
    credentials: &'c Credentials,
    now: i64,
) -> Result<Verified<'c>, AuthError> {
    let Some(raw) = req.header("authorization") else {
        return Err(AuthError::Missing);
    };
    let value = String::from_utf8_lossy(raw);
    let amz_date = req.header("x-amz-date");
    let http_date = req.header("date");
    let auth = parse_authorization(&value, amz_date.is_some() || http_date.is_some())?;

    // The request time, as the string to sign spells it.
    let (request_time, stamp) = match (amz_date, http_date) {
        (Some(d), _) => {
            let d = String::from_utf8_lossy(d);
            let t = parse_amz_date(&d).ok_or_else(|| {
                AuthError::Incomplete(format!(
                    "Date must be in ISO-8601 'basic format'. Got '{}'. See http://en.wikipedia.org/wiki/ISO_8601",
                    echo(&d)
                ))
            })?;
            (t, d.into_owned())
        }
        (None, Some(d)) => {
            let d = String::from_utf8_lossy(d);
            let t = parse_http_date(&d).ok_or_else(|| {
                AuthError::Incomplete(format!(
                    "Date must be in RFC 1123 format (e.g. 'Sun, 30 Aug 2015 12:36:00 GMT'). Got '{}'.",
                    echo(&d)
                ))
            })?;
            (t, format_amz_date(t))
        }
        (None, None) => return Err(AuthError::Incomplete("Missing date".into())),
    };

    let credential = credentials
        .get(auth.access_key_id)
        .ok_or(AuthError::UnrecognizedClient)?;
    let token = req.header("x-amz-security-token");
    match (&credential.session_token, token) {
        (None, None) => {}
        (Some(expected), Some(given)) if bool::from(expected.as_bytes().ct_eq(given)) => {}
        _ => return Err(AuthError::UnrecognizedClient),
    }

    if !valid_region(auth.region) {
        return Err(AuthError::InvalidSignature(
            "Credential should be scoped to a valid region. "
                .trim_end()
                .into(),
        ));
    }
    if auth.date != &stamp[..8] {
        return Err(AuthError::InvalidSignature(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{}' != '{}', from '{}'.",
            echo(auth.date),
            &stamp[..8],
            stamp
        )));
    }
    if request_time < now - MAX_SKEW_SECS {
        return Err(AuthError::InvalidSignature(format!(
            "Signature expired: {stamp} is now earlier than {} ({} - 15 min.)",
            format_amz_date(now - MAX_SKEW_SECS),
            format_amz_date(now)
        )));
    }
    if request_time > now + MAX_SKEW_SECS {
        return Err(AuthError::InvalidSignature(format!(
            "Signature not yet current: {stamp} is still later than {} ({} + 15 min.)",
            format_amz_date(now + MAX_SKEW_SECS),
            format_amz_date(now)
        )));
    }

    let computed = hex::encode(Sha256::digest(req.body));
    let payload_hash = match req.header_str("x-amz-content-sha256") {
        Some(h) if h == computed => computed,
        Some(_) => {
            return Err(AuthError::InvalidSignature(
                "The provided 'x-amz-content-sha256' header does not match what was computed."
                    .into(),
            ));
        }
        None => computed,
    };

    let canonical = canonical_request(req, &auth.signed_headers, &payload_hash);
    let scope = format!(
        "{}/{}/{}/aws4_request",
        auth.date, auth.region, auth.service
    );
    let to_sign = string_to_sign(&stamp, &scope, &canonical);
    let Some(given) = decode_signature(auth.signature) else {
        return Err(AuthError::mismatch());
    };
    let key = signing_key(
        &credential.secret_access_key,
        auth.date,
        auth.region,
        auth.service,
    );
    let mut mac = hmac(&key);
    mac.update(to_sign.as_bytes());
    mac.verify_slice(&given)
        .map_err(|_| AuthError::mismatch())?;

    Ok(Verified {
        credential,
        region: auth.region.to_string(),
        service: auth.service.to_string(),
    })
}

/// Refuse a scope whose service is not the one the request is for.
/// `scope_service` is [`Verified::service`]; `signing_name` is the request's service's
/// (`berth_api::Service::signing_name`).
pub fn check_service(scope_service: &str, signing_name: &str) -> Result<(), AuthError> {
    if scope_service == signing_name {
        Ok(())
    } else {
        Err(AuthError::InvalidSignature(format!(
            "Credential should be scoped to correct service: '{signing_name}'."
        )))
    }
}

fn valid_region(region: &str) -> bool {
    !region.is_empty()
        && region.len() <= 32
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn decode_signature(s: &str) -> Option<Vec<u8>> {
    if s.len() != 64
        || !s
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    hex::decode(s).ok()
}

fn hmac(key: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    }
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = hmac(key);
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// `kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request")`.
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let k_date = hmac_sha256(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac_sha256(&k_date, region.as_bytes());
    let k_service = hmac_sha256(&k_region, service.as_bytes());
    hmac_sha256(&k_service, b"aws4_request")
}

/// `AWS4-HMAC-SHA256\n<time>\n<scope>\n<hex(sha256(canonical request))>`.
fn string_to_sign(stamp: &str, scope: &str, canonical: &[u8]) -> String {
    format!(
        "{ALGORITHM}\n{stamp}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical))
    )
}

/// The canonical request: method, canonical URI, canonical query, canonical headers,
/// signed headers and payload hash, one per line.
fn canonical_request(req: &SignedRequest<'_>, signed: &[String], payload_hash: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(req.method.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(canonical_uri(req.path).as_bytes());
    out.push(b'\n');
    out.extend_from_slice(canonical_query(req.query).as_bytes());
    out.push(b'\n');
    for name in signed {
        out.extend_from_slice(name.as_bytes());
        out.push(b':');
        let mut first = true;
        for (_, v) in req
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            if !first {
                out.push(b',');
            }
            first = false;
            trim_all(v, &mut out);
        }
        out.push(b'\n');
    }
    out.push(b'\n');
    out.extend_from_slice(signed.join(";").as_bytes());
    out.push(b'\n');
    out.extend_from_slice(payload_hash.as_bytes());
    out
}

/// Leading and trailing whitespace removed, runs of whitespace collapsed to one space.
fn trim_all(value: &[u8], out: &mut Vec<u8>) {
    let mut first = true;
    for word in value
        .split(|b| b.is_ascii_whitespace())
        .filter(|w| !w.is_empty())
    {
        if !first {
            out.push(b' ');
        }
        first = false;
        out.extend_from_slice(word);
    }
}

/// The path with `.`/`..` segments and repeated slashes removed, then URI-encoded
/// (every service but S3 encodes the already-encoded path a second time).
fn canonical_uri(path: &str) -> String {
    if path.is_empty() {
        return "/".into();
    }
    let mut segments: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut normalized = String::from("/");
    normalized.push_str(&segments.join("/"));
    let last = path.rsplit('/').next().unwrap_or_default();
    let trailing = path.ends_with('/') || last == "." || last == "..";
    if trailing && !segments.is_empty() {
        normalized.push('/');
    }
    uri_encode(normalized.as_bytes(), false)
}

/// Percent-decode (malformed escapes stay as they are), then strictly re-encode each
/// name and value, and sort by name, then value.
fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                uri_encode(&percent_decode(k), true),
                uri_encode(&percent_decode(v), true),
            )
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// RFC 3986 unreserved characters stay; everything else is `%XX` (upper-case hex).
/// `/` stays too unless `encode_slash`.
fn uri_encode(bytes: &[u8], encode_slash: bool) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        let keep = b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~')
            || (b == b'/' && !encode_slash);
        if keep {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn percent_decode(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hi = char::from(bytes[i + 1]).to_digit(16);
            let lo = char::from(bytes[i + 2]).to_digit(16);
            if let (Some(hi), Some(lo)) = (hi, lo) {
                out.push(u8::try_from(hi * 16 + lo).unwrap_or(0));
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

// ------------------------------------------------------------------------- dates

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

fn unix_time(y: i64, mo: i64, d: i64, h: i64, mi: i64, s: i64) -> Option<i64> {
    let valid = (1..=12).contains(&mo)
        && (1..=days_in_month(y, mo)).contains(&d)
        && (0..24).contains(&h)
        && (0..60).contains(&mi)
        && (0..60).contains(&s);
    valid.then(|| days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s)
}

fn digits(s: &str) -> Option<i64> {
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// `20150830T123600Z` → seconds since the epoch.
pub fn parse_amz_date(s: &str) -> Option<i64> {
    if s.len() != 16 || !s.is_ascii() || &s[8..9] != "T" || &s[15..] != "Z" {
        return None;
    }
    unix_time(
        digits(&s[0..4])?,
        digits(&s[4..6])?,
        digits(&s[6..8])?,
        digits(&s[9..11])?,
        digits(&s[11..13])?,
        digits(&s[13..15])?,
    )
}

/// `Sun, 30 Aug 2015 12:36:00 GMT` (RFC 1123 / IMF-fixdate) → seconds since the epoch.
pub fn parse_http_date(s: &str) -> Option<i64> {
    let parts: Vec<&str> = s.split_ascii_whitespace().collect();
    let [_weekday, day, month, year, time, "GMT"] = parts[..] else {
        return None;
    };
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| *m == month)?;
    let mut hms = time.split(':');
    let (h, mi, sec) = (hms.next()?, hms.next()?, hms.next()?);
    if hms.next().is_some() || year.len() != 4 || h.len() != 2 || mi.len() != 2 || sec.len() != 2 {
        return None;
    }
    unix_time(
        digits(year)?,
        i64::try_from(month).ok()? + 1,
        digits(day)?,
        digits(h)?,
        digits(mi)?,
        digits(sec)?,
    )
}

/// Seconds since the epoch → `20150830T123600Z`.
pub fn format_amz_date(t: i64) -> String {
    let (y, m, d) = civil_from_days(t.div_euclid(86_400));
    let s = t.rem_euclid(86_400);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        s / 3600,
        s % 3600 / 60,
        s % 60
    )
}

// ------------------------------------------------------------------------- signing

/// Sign `req` as an AWS SDK would (for clients of Berth written in Rust, and tests):
/// returns the `Authorization` header value for the given headers, which must include
/// `host` and `x-amz-date` (`stamp`). Every header in `req.headers` is signed.
pub fn authorization_header(
    req: &SignedRequest<'_>,
    access_key_id: &str,
    secret_access_key: &str,
    region: &str,
    service: &str,
    stamp: &str,
) -> String {
    let mut signed: Vec<String> = req
        .headers
        .iter()
        .map(|(n, _)| n.to_ascii_lowercase())
        .collect();
    signed.sort();
    signed.dedup();
    let payload_hash = hex::encode(Sha256::digest(req.body));
    let payload_hash = req
        .header_str("x-amz-content-sha256")
        .map_or(payload_hash, str::to_string);
    let date = stamp.get(..8).unwrap_or(stamp);
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let canonical = canonical_request(req, &signed, &payload_hash);
    let to_sign = string_to_sign(stamp, &scope, &canonical);
    let key = signing_key(secret_access_key, date, region, service);
    let signature = hex::encode(hmac_sha256(&key, to_sign.as_bytes()));
    format!(
        "{ALGORITHM} Credential={access_key_id}/{scope}, SignedHeaders={}, Signature={signature}",
        signed.join(";")
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::credentials::Credential;

    const AKID: &str = "AKIDEXAMPLE";
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    const STAMP: &str = "20150830T123600Z";
    const HOST: &str = "example.amazonaws.com";

    fn suite_credentials(token: Option<&str>) -> Credentials {
        Credentials::new(vec![Credential {
            access_key_id: AKID.into(),
            secret_access_key: SECRET.into(),
            session_token: token.map(str::to_string),
            principal: "example".into(),
            account_id: None,
        }])
        .unwrap()
    }

    fn now() -> i64 {
        parse_amz_date(STAMP).unwrap()
    }

    /// One vector of AWS's SigV4 test suite (credentials AKIDEXAMPLE, 20150830T123600Z,
    /// us-east-1, service `service`): the request as the suite's `.req` file has it and
    /// the signature its `.authz`/signed-request file publishes.
    struct Vector {
        name: &'static str,
        method: &'static str,
        path: &'static str,
        query: &'static str,
        /// Besides `Host` and `X-Amz-Date`, which every vector has.
        headers: &'static [(&'static str, &'static str)],
        body: &'static str,
        signed_headers: &'static str,
        signature: &'static str,
        /// hex(sha256(canonical request)) where the suite's string-to-sign publishes it.
        canonical_hash: Option<&'static str>,
    }

    const VECTORS: &[Vector] = &[
        Vector {
            name: "get-vanilla",
            method: "GET",
            path: "/",
            query: "",
            headers: &[],
            body: "",
            signed_headers: "host;x-amz-date",
            signature: "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
            canonical_hash: Some(
                "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63",
            ),
        },
        Vector {
            name: "post-vanilla",
            method: "POST",
            path: "/",
            query: "",
            headers: &[],
            body: "",
            signed_headers: "host;x-amz-date",
            signature: "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
            canonical_hash: Some(
                "553f88c9e4d10fc9e109e2aeb65f030801b70c2f6468faca261d401ae622fc87",
            ),
        },
        Vector {
            name: "get-vanilla-query-order-key-case",
            method: "GET",
            path: "/",
            query: "Param2=value2&Param1=value1",
            headers: &[],
            body: "",
            signed_headers: "host;x-amz-date",
            signature: "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
            canonical_hash: None,
        },
        Vector {
            name: "get-vanilla-query-unreserved",
            method: "GET",
            path: "/",
            query: "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz=-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
            headers: &[],
            body: "",
            signed_headers: "host;x-amz-date",
            signature: "9c3e54bfcdf0b19771a7f523ee5669cdf59bc7cc0884027167c21bb143a40197",
            canonical_hash: None,
        },
        Vector {
            name: "get-vanilla-utf8-query",
            method: "GET",
            path: "/",
            query: "\u{1234}=bar",
            headers: &[],
            body: "",
            signed_headers: "host;x-amz-date",
            signature: "2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04",
            canonical_hash: None,
        },
        Vector {
            name: "get-vanilla-empty-query-key",
            method: "GET",
            path: "/",
            query: "Param1=value1",
            headers: &[],
            body: "",
            signed_headers: "host;x-amz-date",
            signature: "a67d582fa61cc504c4bae71f336f98b97f1ea3c7a6bfe1b6e45aec72011b9aeb",
            canonical_hash: None,
        },
        Vector {
            name: "get-unreserved",
            method: "GET",
            path: "/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
            query: "",
            headers: &[],
            body: "",
            signed_headers: "host;x-amz-date",
            signature: "07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f",
            canonical_hash: None,
        },
        Vector {
            name: "get-utf8",
            method: "GET",
            path: "/\u{1234}",
            query: "",
            headers: &[],
            body: "",
            signed_headers: "host;x-amz-date",
            signature: "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85",
            canonical_hash: None,
        },
        Vector {
            name: "get-space (normalized)",
            method: "GET",
            path: "/example space/",
            query: "",
            headers: &[],
            body: "",
            signed_headers: "host;x-amz-date",
            signature: "652487583200325589f1fba4c7e578f72c47cb61beeca81406b39ddec1366741",
            canonical_hash: None,
        },
        Vector {
            name: "get-slashes (normalized)",
            method: "GET",
            path: "//example//",
            query: "",
            headers: &[],
            body: "",
            signed_headers: "host;x-amz-date",
            signature: "9a624bd73a37c9a373b5312afbebe7a714a789de108f0bdfe846570885f57e84",
            canonical_hash: None,
        },
        Vector {
            name: "get-header-value-trim",
            method: "GET",
            path: "/",
            query: "",
            headers: &[("My-Header1", " value1"), ("My-Header2", " \"a   b   c\"")],
            body: "",
            signed_headers: "host;my-header1;my-header2;x-amz-date",
            signature: "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736",
            canonical_hash: None,
        },
        Vector {
            name: "get-header-key-duplicate",
            method: "GET",
            path: "/",
            query: "",
            headers: &[
                ("My-Header1", "value2"),
                ("My-Header1", "value2"),
                ("My-Header1", "value1"),
            ],
            body: "",
            signed_headers: "host;my-header1;x-amz-date",
            signature: "c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea",
            canonical_hash: None,
        },
        Vector {
            name: "get-header-value-order",
            method: "GET",
            path: "/",
            query: "",
            headers: &[
                ("My-Header1", "value4"),
                ("My-Header1", "value1"),
                ("My-Header1", "value3"),
                ("My-Header1", "value2"),
            ],
            body: "",
            signed_headers: "host;my-header1;x-amz-date",
            signature: "08c7e5a9acfcfeb3ab6b2185e75ce8b1deb5e634ec47601a50643f830c755c01",
            canonical_hash: None,
        },
        Vector {
            name: "post-header-key-sort",
            method: "POST",
            path: "/",
            query: "",
            headers: &[("My-Header1", "value1")],
            body: "",
            signed_headers: "host;my-header1;x-amz-date",
            signature: "c5410059b04c1ee005303aed430f6e6645f61f4dc9e1461ec8f8916fdf18852c",
            canonical_hash: None,
        },
        Vector {
            name: "post-x-www-form-urlencoded",
            method: "POST",
            path: "/",
            query: "",
            headers: &[("Content-Type", "application/x-www-form-urlencoded")],
            body: "Param1=value1",
            signed_headers: "content-type;host;x-amz-date",
            signature: "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a",
            canonical_hash: Some(
                "42a5e5bb34198acb3e84da4f085bb7927f2bc277ca766e6d19c73c2154021281",
            ),
        },
        Vector {
            name: "post-x-www-form-urlencoded (with x-amz-content-sha256)",
            method: "POST",
            path: "/",
            query: "",
            headers: &[
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("Content-Length", "13"),
                (
                    "x-amz-content-sha256",
                    "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e",
                ),
            ],
            body: "Param1=value1",
            signed_headers: "content-length;content-type;host;x-amz-content-sha256;x-amz-date",
            signature: "d3875051da38690788ef43de4db0d8f280229d82040bfac253562e56c3f20e0b",
            canonical_hash: None,
        },
    ];

    /// The suite's request with its published `Authorization` header.
    fn suite_request(v: &Vector, extra: &[(&'static str, &'static str)]) -> Vec<(String, String)> {
        let mut h: Vec<(String, String)> = vec![("Host".into(), HOST.into())];
        h.extend(v.headers.iter().map(|(k, v)| ((*k).into(), (*v).into())));
        h.extend(extra.iter().map(|(k, v)| ((*k).into(), (*v).into())));
        h.push(("X-Amz-Date".into(), STAMP.into()));
        h.push((
            "Authorization".into(),
            format!(
                "AWS4-HMAC-SHA256 Credential={AKID}/20150830/us-east-1/service/aws4_request, SignedHeaders={}, Signature={}",
                v.signed_headers, v.signature
            ),
        ));
        h
    }

    fn with<R>(
        v: &Vector,
        headers: &[(String, String)],
        body: &[u8],
        f: impl FnOnce(&SignedRequest<'_>) -> R,
    ) -> R {
        let pairs: Vec<(&str, &[u8])> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_bytes()))
            .collect();
        let req = SignedRequest {
            method: v.method,
            path: v.path,
            query: v.query,
            headers: &pairs,
            body,
        };
        f(&req)
    }

    #[test]
    fn the_signing_key_matches_aws_documentation() {
        // AWS's "derive a signing key" example (iam, 20120215, us-east-1).
        let key = signing_key(SECRET, "20120215", "us-east-1", "iam");
        assert_eq!(
            hex::encode(key),
            "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"
        );
    }

    #[test]
    fn aws_test_suite_vectors_verify() {
        assert!(VECTORS.len() >= 8);
        let creds = suite_credentials(None);
        for v in VECTORS {
            let headers = suite_request(v, &[]);
            let result = with(v, &headers, v.body.as_bytes(), |req| {
                verify(req, &creds, now()).map(|ok| (ok.region, ok.service))
            });
            assert_eq!(
                result,
                Ok(("us-east-1".to_string(), "service".to_string())),
                "{}",
                v.name
            );
        }
    }

    #[test]
    fn aws_test_suite_vectors_sign_and_hash() {
        for v in VECTORS {
            let headers = suite_request(v, &[]);
            with(v, &headers, v.body.as_bytes(), |req| {
                let signed: Vec<String> = v.signed_headers.split(';').map(str::to_string).collect();
                let payload = hex::encode(Sha256::digest(v.body.as_bytes()));
                let canonical = canonical_request(req, &signed, &payload);
                if let Some(expected) = v.canonical_hash {
                    assert_eq!(
                        hex::encode(Sha256::digest(&canonical)),
                        expected,
                        "{}: canonical request\n{}",
                        v.name,
                        String::from_utf8_lossy(&canonical)
                    );
                }
                // Signing only the vector's headers reproduces the published header.
                let only: Vec<(&str, &[u8])> = req
                    .headers
                    .iter()
                    .filter(|(n, _)| !n.eq_ignore_ascii_case("authorization"))
                    .copied()
                    .collect();
                let unsigned = SignedRequest {
                    headers: &only,
                    ..*req
                };
                let authz =
                    authorization_header(&unsigned, AKID, SECRET, "us-east-1", "service", STAMP);
                assert!(
                    authz.ends_with(&format!(
                        "SignedHeaders={}, Signature={}",
                        v.signed_headers, v.signature
                    )),
                    "{}: {authz}",
                    v.name
                );
            });
        }
    }

    #[test]
    fn canonical_forms() {
        let v = &VECTORS[0];
        let headers = suite_request(v, &[]);
        with(v, &headers, b"", |req| {
            let c = canonical_request(
                req,
                &["host".into(), "x-amz-date".into()],
                &hex::encode(Sha256::digest(b"")),
            );
            assert_eq!(
                String::from_utf8(c).unwrap(),
                "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
            );
        });
        assert_eq!(canonical_uri("/example space/"), "/example%20space/");
        assert_eq!(canonical_uri("/a%20b"), "/a%2520b");
        assert_eq!(canonical_uri("/./a/../b/"), "/b/");
        assert_eq!(canonical_uri("/example/.."), "/");
        assert_eq!(canonical_uri(""), "/");
        assert_eq!(
            canonical_query("b=2&a=1&A=0&c&a%20b=x+y"),
            "A=0&a=1&a%20b=x%2By&b=2&c="
        );
        assert_eq!(canonical_query("k=%E1%88%B4"), "k=%E1%88%B4");
        assert_eq!(canonical_query("k=%zz%"), "k=%25zz%25");
        let mut out = Vec::new();
        trim_all(b"  a \t  b   c ", &mut out);
        assert_eq!(out, b"a b c");
    }

    #[test]
    fn session_tokens_are_required_when_configured() {
        // get-vanilla-with-session-token: the token is signed and sent.
        const TOKEN: &str = "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267";
        let v = Vector {
            name: "get-vanilla-with-session-token",
            method: "GET",
            path: "/",
            query: "",
            headers: &[("X-Amz-Security-Token", TOKEN)],
            body: "",
            signed_headers: "host;x-amz-date;x-amz-security-token",
            signature: "07ec1639c89043aa0e3e2de82b96708f198cceab042d4a97044c66dd9f74e7f8",
            canonical_hash: None,
        };
        let headers = suite_request(&v, &[]);
        let check = |creds: &Credentials, headers: &[(String, String)]| {
            with(&v, headers, b"", |req| {
                verify(req, creds, now()).map(|_| ())
            })
        };
        assert_eq!(check(&suite_credentials(Some(TOKEN)), &headers), Ok(()));
        assert_eq!(
            check(&suite_credentials(Some("another")), &headers),
            Err(AuthError::UnrecognizedClient)
        );
        assert_eq!(
            check(&suite_credentials(None), &headers),
            Err(AuthError::UnrecognizedClient),
            "a token the credential does not have"
        );
        let without: Vec<(String, String)> = suite_request(&VECTORS[0], &[]);
        let v0 = &VECTORS[0];
        let r = with(v0, &without, b"", |req| {
            verify(req, &suite_credentials(Some(TOKEN)), now()).map(|_| ())
        });
        assert_eq!(r, Err(AuthError::UnrecognizedClient), "token required");
    }

    fn refusal(headers: &[(String, String)], body: &[u8], now: i64) -> AuthError {
        with(&VECTORS[1], headers, body, |req| {
            verify(req, &suite_credentials(None), now).map(|_| ())
        })
        .unwrap_err()
    }

    fn replace(headers: &[(String, String)], name: &str, value: &str) -> Vec<(String, String)> {
        headers
            .iter()
            .map(|(k, v)| {
                if k.eq_ignore_ascii_case(name) {
                    (k.clone(), value.to_string())
                } else {
                    (k.clone(), v.clone())
                }
            })
            .collect()
    }

    #[test]
    fn refusals_carry_aws_codes_and_messages() {
        let good = suite_request(&VECTORS[1], &[]);
        let no_auth: Vec<_> = good
            .iter()
            .filter(|(k, _)| k != "Authorization")
            .cloned()
            .collect();
        let e = refusal(&no_auth, b"", now());
        assert_eq!(e, AuthError::Missing);
        let api: ApiError = e.into();
        assert_eq!(
            (api.status, api.code, api.message.as_str()),
            (
                403,
                "MissingAuthenticationTokenException",
                "Missing Authentication Token"
            )
        );

        let e = refusal(&replace(&good, "Authorization", "Bearer abc"), b"", now());
        assert_eq!(
            e,
            AuthError::Incomplete("Authorization header requires 'Credential' parameter. Authorization header requires 'Signature' parameter. Authorization header requires 'SignedHeaders' parameter. Authorization=Bearer abc".into())
        );
        assert_eq!(e.code(), "IncompleteSignatureException");
        assert_eq!(e.status(), 400);

        let e = refusal(
            &replace(
                &good,
                "Authorization",
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, Signature=00",
            ),
            b"",
            now(),
        );
        assert!(
            matches!(&e, AuthError::Incomplete(m) if m.starts_with("Authorization header requires 'SignedHeaders' parameter. Authorization=AWS4")),
            "{e:?}"
        );
        let e = refusal(
            &replace(
                &good,
                "Authorization",
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/aws4_request, SignedHeaders=host;x-amz-date, Signature=00",
            ),
            b"",
            now(),
        );
        assert_eq!(
            e,
            AuthError::Incomplete("Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, got 'AKIDEXAMPLE/20150830/us-east-1/aws4_request'".into())
        );
        let e = refusal(
            &replace(
                &good,
                "Authorization",
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request SignedHeaders=host;x-amz-date, Signature=00",
            ),
            b"",
            now(),
        );
        assert!(matches!(&e, AuthError::Incomplete(_)), "{e:?}");
        let e = refusal(
            &replace(
                &good,
                "Authorization",
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=x-amz-date, Signature=00",
            ),
            b"",
            now(),
        );
        assert!(
            matches!(&e, AuthError::Incomplete(m) if m.contains("'Host'")),
            "{e:?}"
        );
        let no_date: Vec<_> = good
            .iter()
            .filter(|(k, _)| k != "X-Amz-Date")
            .cloned()
            .collect();
        let e = refusal(&no_date, b"", now());
        assert!(
            matches!(&e, AuthError::Incomplete(m) if m.starts_with("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. Authorization=")),
            "{e:?}"
        );
        let e = refusal(&replace(&good, "X-Amz-Date", "2015-08-30"), b"", now());
        assert!(
            matches!(&e, AuthError::Incomplete(m) if m.contains("ISO-8601")),
            "{e:?}"
        );

        // Unknown key.
        let unknown = replace(
            &good,
            "Authorization",
            &good[2].1.replace("AKIDEXAMPLE", "AKIDUNKNOWN"),
        );
        let e = refusal(&unknown, b"", now());
        assert_eq!(e, AuthError::UnrecognizedClient);
        let api: ApiError = e.into();
        assert_eq!(api.code, "UnrecognizedClientException");
        assert_eq!(
            api.message,
            "The security token included in the request is invalid."
        );

        // Wrong secret (the signature of another request), tampered body, tampered header.
        let forged = replace(
            &good,
            "Authorization",
            &good[2]
                .1
                .replace(VECTORS[1].signature, VECTORS[0].signature),
        );
        assert_eq!(refusal(&forged, b"", now()), AuthError::mismatch());
        assert_eq!(refusal(&good, b"{}", now()), AuthError::mismatch());
        assert_eq!(
            refusal(&replace(&good, "Host", "evil.example.com"), b"", now()),
            AuthError::mismatch()
        );
        let short = replace(
            &good,
            "Authorization",
            &good[2].1.replace(VECTORS[1].signature, "abc"),
        );
        assert_eq!(refusal(&short, b"", now()), AuthError::mismatch());
        let api: ApiError = AuthError::mismatch().into();
        assert_eq!(api.code, "InvalidSignatureException");
        assert_eq!(api.message, SIGNATURE_MISMATCH);

        // A payload hash header that is not the body's.
        let mut hashed = good.clone();
        hashed.push((
            "x-amz-content-sha256".into(),
            hex::encode(Sha256::digest(b"other")),
        ));
        assert!(matches!(
            refusal(&hashed, b"", now()),
            AuthError::InvalidSignature(m) if m.contains("x-amz-content-sha256")
        ));

        // Scope date that is not the request's day; malformed region.
        let other_day = replace(
            &good,
            "Authorization",
            &good[2].1.replace("/20150830/", "/20150831/"),
        );
        assert_eq!(
            refusal(&other_day, b"", now()),
            AuthError::InvalidSignature("Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '20150831' != '20150830', from '20150830T123600Z'.".into())
        );
        let bad_region = replace(
            &good,
            "Authorization",
            &good[2].1.replace("/us-east-1/", "/US_EAST/"),
        );
        assert!(matches!(
            refusal(&bad_region, b"", now()),
            AuthError::InvalidSignature(m) if m.contains("valid region")
        ));
    }

    #[test]
    fn the_request_time_must_be_within_fifteen_minutes() {
        let good = suite_request(&VECTORS[1], &[]);
        let t = now();
        // AWS's own example of the wording.
        assert_eq!(
            refusal(&good, b"", t + 25 * 60),
            AuthError::InvalidSignature("Signature expired: 20150830T123600Z is now earlier than 20150830T124600Z (20150830T130100Z - 15 min.)".into())
        );
        assert_eq!(
            refusal(&good, b"", t - 16 * 60),
            AuthError::InvalidSignature("Signature not yet current: 20150830T123600Z is still later than 20150830T123500Z (20150830T122000Z + 15 min.)".into())
        );
        let creds = suite_credentials(None);
        for edge in [t - 15 * 60, t + 15 * 60] {
            let ok = with(&VECTORS[1], &good, b"", |req| {
                verify(req, &creds, edge).is_ok()
            });
            assert!(ok, "{edge}");
        }
    }

    #[test]
    fn the_service_must_match() {
        let creds = suite_credentials(None);
        let good = suite_request(&VECTORS[1], &[]);
        with(&VECTORS[1], &good, b"", |req| {
            let ok = verify(req, &creds, now()).unwrap();
            assert_eq!(check_service(&ok.service, "service"), Ok(()));
            assert_eq!(
                check_service(&ok.service, "ecs"),
                Err(AuthError::InvalidSignature(
                    "Credential should be scoped to correct service: 'ecs'.".into()
                ))
            );
        });
    }

    #[test]
    fn a_date_header_can_stand_in_for_x_amz_date() {
        let creds = suite_credentials(None);
        let v = &VECTORS[0];
        let headers: Vec<(String, String)> = vec![
            ("Host".into(), HOST.into()),
            ("Date".into(), "Sun, 30 Aug 2015 12:36:00 GMT".into()),
        ];
        let pairs: Vec<(&str, &[u8])> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_bytes()))
            .collect();
        let req = SignedRequest {
            method: v.method,
            path: v.path,
            query: v.query,
            headers: &pairs,
            body: b"",
        };
        let authz = authorization_header(&req, AKID, SECRET, "us-east-1", "service", STAMP);
        let mut all = headers.clone();
        all.push(("Authorization".into(), authz));
        let ok = with(v, &all, b"", |req| verify(req, &creds, now()).is_ok());
        assert!(ok);
    }

    #[test]
    fn dates_round_trip() {
        assert_eq!(parse_amz_date("19700101T000000Z"), Some(0));
        assert_eq!(parse_amz_date(STAMP), Some(1_440_938_160));
        assert_eq!(format_amz_date(1_440_938_160), STAMP);
        assert_eq!(
            parse_http_date("Sun, 30 Aug 2015 12:36:00 GMT"),
            Some(1_440_938_160)
        );
        assert_eq!(format_amz_date(951_782_400), "20000229T000000Z");
        for bad in [
            "20150830T123600",
            "20151330T123600Z",
            "20150230T123600Z",
            "20150830T246000Z",
            "2015083OT123600Z",
            "20150830t123600Z",
            "+0150830T123600Z",
            "2015-08-30T12:36",
        ] {
            assert_eq!(parse_amz_date(bad), None, "{bad}");
        }
        for t in [
            0,
            1,
            86_399,
            86_400,
            1_440_938_160,
            4_102_444_800,
            951_868_799,
        ] {
            assert_eq!(parse_amz_date(&format_amz_date(t)), Some(t));
        }
    }
}
