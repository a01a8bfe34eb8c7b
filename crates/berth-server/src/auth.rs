//! Who is calling: every API request is verified with SigV4 against the configured
//! credentials, and the verified credential decides the request's account and principal.
//! The region comes from the credential scope.

use crate::credentials::Credentials;
use crate::sigv4::{self, SignedRequest};
use crate::{Config, now_ms};
use axum::http::request::Parts;
use berth_api::{ApiError, Service};
use berth_core::PartitionKey;

/// How API requests (`POST /`) are authenticated. There is no unauthenticated mode: a
/// development server accepts the public pair `test`/`test`, whose signatures are still
/// verified like any other key's.
#[derive(Debug, Clone)]
pub enum Auth {
    /// Every request must be signed (SigV4) with one of these keys.
    SigV4(Credentials),
}

/// The caller of one request.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    /// The account and region the request acts in.
    pub(crate) partition: PartitionKey,
    /// The principal recorded as `registeredBy`/`createdBy`.
    pub(crate) principal: String,
    /// The service of the verified credential scope.
    scope_service: String,
}

impl Caller {
    /// Refuse a signature scoped to another service than the one the request is for.
    pub(crate) fn check_service(&self, service: Service) -> Result<(), ApiError> {
        sigv4::check_service(&self.scope_service, service.signing_name()).map_err(Into::into)
    }
}

/// Verify the request and resolve its caller.
pub(crate) fn authenticate(
    config: &Config,
    parts: &Parts,
    body: &[u8],
) -> Result<Caller, ApiError> {
    let Auth::SigV4(credentials) = &config.auth;
    let headers: Vec<(&str, &[u8])> = parts
        .headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_bytes()))
        .collect();
    let request = SignedRequest {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query().unwrap_or(""),
        headers: &headers,
        body,
    };
    let verified = sigv4::verify(&request, credentials, now_ms().div_euclid(1000))?;
    let credential = verified.credential;
    Ok(Caller {
        partition: PartitionKey {
            account: credential
                .account_id
                .clone()
                .unwrap_or_else(|| config.account_id.clone()),
            region: verified.region,
        },
        principal: credential.principal.clone(),
        scope_service: verified.service,
    })
}
