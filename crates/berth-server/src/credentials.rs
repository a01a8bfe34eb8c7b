//! The keys Berth accepts: read from a file in the AWS shared-credentials format that
//! users already have (`~/.aws/credentials`), plus the well-known development pair.
//!
//! ```ini
//! [alice]                       # the principal: arn:aws:iam::<account>:user/alice
//! aws_access_key_id = AKIAALICE0000000001
//! aws_secret_access_key = ...
//! account_id = 111111111111     # optional: the account of alice's resources
//! aws_session_token = ...       # optional: then every request must carry it
//! ```
//!
//! The format is parsed by hand (it is a handful of rules, the same as botocore's
//! `configparser` reading of it for these keys), which keeps secrets out of any general
//! configuration machinery and gives errors with line numbers.

use std::collections::BTreeMap;
use std::fmt;

/// The access key of the development pair (`test` / `test`).
pub const DEV_ACCESS_KEY_ID: &str = "test";
/// The secret of the development pair.
pub const DEV_SECRET_ACCESS_KEY: &str = "test";

/// One accepted key.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    /// The access key id (`AKIA...`).
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: String,
    /// A session token that must accompany every request signed with this key.
    pub session_token: Option<String>,
    /// Who signs with it: `root`, or an IAM user name (the file's section name).
    pub principal: String,
    /// The account its requests act in (None: the server's default account).
    pub account_id: Option<String>,
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .field("principal", &self.principal)
            .field("account_id", &self.account_id)
            .finish()
    }
}

impl Credential {
    /// The development pair: `test` / `test`, acting as `root` of the server's account.
    pub fn dev_pair() -> Credential {
        Credential {
            access_key_id: DEV_ACCESS_KEY_ID.into(),
            secret_access_key: DEV_SECRET_ACCESS_KEY.into(),
            session_token: None,
            principal: "root".into(),
            account_id: None,
        }
    }

    /// Whether this is the publicly known development pair.
    pub fn is_dev_pair(&self) -> bool {
        self.access_key_id == DEV_ACCESS_KEY_ID && self.secret_access_key == DEV_SECRET_ACCESS_KEY
    }
}

/// Every accepted key, by access key id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    by_key: BTreeMap<String, Credential>,
}

/// Why a credentials file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    /// A line that is not a section, a `key = value` pair, a comment or blank.
    #[error("line {line}: {message}")]
    Syntax {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A section that is incomplete or has an invalid value.
    #[error("[{section}]: {message}")]
    Section {
        /// The section name.
        section: String,
        /// What is wrong.
        message: String,
    },
    /// The same access key appears twice.
    #[error("access key {0} appears in more than one section")]
    DuplicateKey(String),
    /// Nothing usable.
    #[error("no credentials (a section with aws_access_key_id and aws_secret_access_key)")]
    Empty,
}

impl Credentials {
    /// A set of keys; refuses the same access key twice.
    pub fn new(list: Vec<Credential>) -> Result<Credentials, CredentialsError> {
        let mut by_key = BTreeMap::new();
        for c in list {
            let key = c.access_key_id.clone();
            if by_key.insert(key.clone(), c).is_some() {
                return Err(CredentialsError::DuplicateKey(key));
            }
        }
        Ok(Credentials { by_key })
    }

    /// The credential with this access key id.
    pub fn get(&self, access_key_id: &str) -> Option<&Credential> {
        self.by_key.get(access_key_id)
    }

    /// Add the development pair unless its access key is already taken.
    pub fn add_dev_pair(&mut self) {
        self.by_key
            .entry(DEV_ACCESS_KEY_ID.into())
            .or_insert_with(Credential::dev_pair);
    }

    /// How many keys.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// Whether every key is the development pair (so anyone can sign).
    pub fn only_dev_pair(&self) -> bool {
        self.by_key.values().all(Credential::is_dev_pair)
    }

    /// Every credential, by access key id.
    pub fn iter(&self) -> impl Iterator<Item = &Credential> {
        self.by_key.values()
    }

    /// Parse a shared-credentials file. Sections with neither `aws_access_key_id` nor
    /// `aws_secret_access_key` (profiles that assume roles, use SSO, ...) are skipped and
    /// their names returned; anything else malformed is an error.
    pub fn parse(text: &str) -> Result<(Credentials, Vec<String>), CredentialsError> {
        let mut sections: Vec<(String, BTreeMap<String, String>)> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let syntax = |message: &str| CredentialsError::Syntax {
                line,
                message: message.into(),
            };
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
                continue;
            }
            if raw.starts_with([' ', '\t']) {
                return Err(syntax(
                    "indented line: continuation lines and nested values are not supported here",
                ));
            }
            if let Some(rest) = trimmed.strip_prefix('[') {
                let name = rest
                    .strip_suffix(']')
                    .ok_or_else(|| syntax("a section header must end with ']'"))?
                    .trim();
                if name.is_empty() {
                    return Err(syntax("empty section name"));
                }
                if sections.iter().any(|(n, _)| n == name) {
                    return Err(syntax(&format!("section [{name}] appears twice")));
                }
                sections.push((name.to_string(), BTreeMap::new()));
                continue;
            }
            let (key, value) = trimmed
                .split_once('=')
                .ok_or_else(|| syntax("expected `name = value`, a [section], or a comment"))?;
            let key = key.trim().to_ascii_lowercase();
            let value = value.trim().to_string();
            let Some((_, map)) = sections.last_mut() else {
                return Err(syntax("a value before the first [section]"));
            };
            if map.insert(key.clone(), value).is_some() {
                return Err(syntax(&format!("{key} appears twice in this section")));
            }
        }
        let mut list = Vec::new();
        let mut skipped = Vec::new();
        for (name, mut map) in sections {
            let section_error = |message: String| CredentialsError::Section {
                section: name.clone(),
                message,
            };
            let id = map.remove("aws_access_key_id").filter(|v| !v.is_empty());
            let secret = map
                .remove("aws_secret_access_key")
                .filter(|v| !v.is_empty());
            let (id, secret) = match (id, secret) {
                (Some(id), Some(secret)) => (id, secret),
                (None, None) => {
                    skipped.push(name);
                    continue;
                }
                (None, Some(_)) => {
                    return Err(section_error("aws_access_key_id is missing".into()));
                }
                (Some(_), None) => {
                    return Err(section_error("aws_secret_access_key is missing".into()));
                }
            };
            if !valid_access_key_id(&id) {
                return Err(section_error(format!(
                    "aws_access_key_id {id:?} must be letters, digits and _+=.@- only"
                )));
            }
            if !valid_principal(&name) {
                return Err(section_error(
                    "the section name is the principal (an IAM user name): 1 to 64 of letters, digits and +=,.@_-".into(),
                ));
            }
            let account_id = map.remove("account_id").filter(|v| !v.is_empty());
            if let Some(a) = &account_id
                && !(a.len() == 12 && a.bytes().all(|b| b.is_ascii_digit()))
            {
                return Err(section_error(format!("account_id {a:?} must be 12 digits")));
            }
            list.push(Credential {
                access_key_id: id,
                secret_access_key: secret,
                session_token: map.remove("aws_session_token").filter(|v| !v.is_empty()),
                principal: name,
                account_id,
            });
        }
        if list.is_empty() {
            return Err(CredentialsError::Empty);
        }
        Ok((Credentials::new(list)?, skipped))
    }
}

fn valid_access_key_id(id: &str) -> bool {
    id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+=.@-".contains(&b))
}

fn valid_principal(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_the_shared_credentials_format() {
        let text = "\
# comment
; another
[alice]
aws_access_key_id = AKIAALICE
aws_secret_access_key=wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY
account_id = 111111111111

[bob]
AWS_ACCESS_KEY_ID = AKIABOB
aws_secret_access_key = s3cr3t
aws_session_token = FQoGZXIvYXdzEPT//////////wEaDE==
region = eu-west-1

[sso-profile]
sso_start_url = https://example.com/start
";
        let (creds, skipped) = Credentials::parse(text).unwrap();
        assert_eq!(skipped, vec!["sso-profile".to_string()]);
        assert_eq!(creds.len(), 2);
        let alice = creds.get("AKIAALICE").unwrap();
        assert_eq!(alice.principal, "alice");
        assert_eq!(
            alice.secret_access_key,
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
        );
        assert_eq!(alice.account_id.as_deref(), Some("111111111111"));
        assert_eq!(alice.session_token, None);
        let bob = creds.get("AKIABOB").unwrap();
        assert_eq!(
            bob.session_token.as_deref(),
            Some("FQoGZXIvYXdzEPT//////////wEaDE==")
        );
        assert_eq!(bob.account_id, None);
        assert!(!creds.only_dev_pair());
        assert!(!format!("{bob:?}").contains("s3cr3t"), "{bob:?}");
        assert!(!format!("{bob:?}").contains("FQoG"), "{bob:?}");
    }

    #[test]
    fn refuses_malformed_files() {
        let cases = [
            ("", "no credentials"),
            ("aws_access_key_id = A\n", "line 1"),
            ("[a\naws_access_key_id = A\n", "line 1"),
            ("[a]\njunk\n", "line 2"),
            (
                "[a]\naws_access_key_id = A\n",
                "aws_secret_access_key is missing",
            ),
            (
                "[a]\naws_secret_access_key = A\n",
                "aws_access_key_id is missing",
            ),
            (
                "[a]\naws_access_key_id = A\naws_secret_access_key = s\n[b]\naws_access_key_id = A\naws_secret_access_key = t\n",
                "more than one section",
            ),
            ("[a]\n[a]\n", "twice"),
            (
                "[a]\naws_access_key_id = A\naws_access_key_id = B\n",
                "twice",
            ),
            (
                "[a]\naws_access_key_id = A/B\naws_secret_access_key = s\n",
                "letters",
            ),
            (
                "[a b]\naws_access_key_id = A\naws_secret_access_key = s\n",
                "principal",
            ),
            (
                "[a]\naws_access_key_id = A\naws_secret_access_key = s\naccount_id = 12\n",
                "12 digits",
            ),
            ("[a]\n  nested = 1\n", "indented"),
        ];
        for (text, expected) in cases {
            let e = Credentials::parse(text).unwrap_err().to_string();
            assert!(e.contains(expected), "{text:?}: {e}");
        }
    }

    #[test]
    fn the_dev_pair() {
        let mut creds = Credentials::default();
        assert!(creds.is_empty());
        creds.add_dev_pair();
        assert!(creds.only_dev_pair());
        let dev = creds.get("test").unwrap();
        assert_eq!(dev.principal, "root");
        assert!(dev.is_dev_pair());
        let (mut file, _) =
            Credentials::parse("[ci]\naws_access_key_id = test\naws_secret_access_key = test\n")
                .unwrap();
        assert!(file.only_dev_pair(), "the pair under any name is public");
        file.add_dev_pair();
        assert_eq!(file.get("test").unwrap().principal, "ci", "kept as given");
    }
}
