//! A minimal SigV4 signer for the one request shape the bench sends (`POST /` with a JSON
//! body), as an AWS SDK signs it. Kept here rather than taken from `berth-server` so that
//! the bench stays an outside client of the binary it measures, and a second, independent
//! implementation of the signing that Berth verifies.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    };
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// `20150830T123600Z` for seconds since the Unix epoch.
pub(crate) fn amz_date(t: i64) -> String {
    // Howard Hinnant's days-to-civil.
    let z = t.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let s = t.rem_euclid(86_400);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        s / 3600,
        s % 3600 / 60,
        s % 60
    )
}

/// The signed request's headers besides the body.
pub(crate) struct Signed {
    /// `X-Amz-Date`.
    pub(crate) date: String,
    /// `Authorization`.
    pub(crate) authorization: String,
}

/// Sign `POST /` to `host` carrying `target` and `content_type` headers and `body`, with
/// `key`/`secret` for `region` and `service`, at `now` (seconds since the epoch).
#[allow(clippy::too_many_arguments)]
pub(crate) fn sign(
    host: &str,
    target: &str,
    content_type: &str,
    body: &[u8],
    (key, secret): (&str, &str),
    region: &str,
    service: &str,
    now: i64,
) -> Signed {
    let date = amz_date(now);
    let day = &date[..8];
    let signed_headers = "content-type;host;x-amz-date;x-amz-target";
    let canonical = format!(
        "POST\n/\n\ncontent-type:{content_type}\nhost:{host}\nx-amz-date:{date}\nx-amz-target:{target}\n\n{signed_headers}\n{}",
        hex::encode(Sha256::digest(body))
    );
    let scope = format!("{day}/{region}/{service}/aws4_request");
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let mut k = hmac(format!("AWS4{secret}").as_bytes(), day.as_bytes());
    for part in [region, service, "aws4_request"] {
        k = hmac(&k, part.as_bytes());
    }
    let signature = hex::encode(hmac(&k, to_sign.as_bytes()));
    Signed {
        authorization: format!(
            "AWS4-HMAC-SHA256 Credential={key}/{scope}, SignedHeaders={signed_headers}, Signature={signature}"
        ),
        date,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use berth_server::credentials::Credentials;
    use berth_server::sigv4::{SignedRequest, verify};

    #[test]
    fn dates_and_key_derivation_match_aws() {
        assert_eq!(amz_date(1_440_938_160), "20150830T123600Z");
        assert_eq!(amz_date(0), "19700101T000000Z");
        assert_eq!(amz_date(951_782_400), "20000229T000000Z");
        // The signing key of AWS's documentation example
        // (secret wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY, 20120215, us-east-1, iam).
        let mut k = hmac(b"AWS4wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", b"20120215");
        for part in ["us-east-1", "iam", "aws4_request"] {
            k = hmac(&k, part.as_bytes());
        }
        assert_eq!(
            hex::encode(k),
            "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"
        );
    }

    /// Berth's verifier (tested against AWS's vectors) accepts what this signer produces.
    #[test]
    fn berth_accepts_the_signature() {
        let mut creds = Credentials::new(vec![]).unwrap();
        creds.add_dev_pair();
        let now = 1_764_000_000;
        let (target, ct, body) = (
            "AmazonEC2ContainerServiceV20141113.ListClusters",
            "application/x-amz-json-1.1",
            br#"{"maxResults": 5}"#,
        );
        let s = sign(
            "127.0.0.1:7400",
            target,
            ct,
            body,
            ("test", "test"),
            "eu-west-1",
            "ecs",
            now,
        );
        let headers: Vec<(&str, &[u8])> = vec![
            ("Host", b"127.0.0.1:7400"),
            ("X-Amz-Target", target.as_bytes()),
            ("Content-Type", ct.as_bytes()),
            ("Content-Length", b"17"),
            ("X-Amz-Date", s.date.as_bytes()),
            ("Authorization", s.authorization.as_bytes()),
        ];
        let req = SignedRequest {
            method: "POST",
            path: "/",
            query: "",
            headers: &headers,
            body,
        };
        let v = verify(&req, &creds, now).unwrap();
        assert_eq!(
            (v.region.as_str(), v.service.as_str()),
            ("eu-west-1", "ecs")
        );
        let tampered = SignedRequest {
            body: br#"{"maxResults": 6}"#,
            ..req
        };
        assert!(verify(&tampered, &creds, now).is_err());
    }
}
