//! Who is calling (SPEC §10): the [`Caller`] every scoped route takes as an argument.
//!
//! The caller is resolved once, by the authentication layer in front of the scoped
//! routes, and handed to handlers as a request extension; a handler that needs scoping
//! takes a `Caller` argument, so a route without it cannot read scoped data by accident.
//! With no API key in the database the service is open (SPEC §10 "When auth applies"):
//! every caller is the tenant `default`, with an administrator's view.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::http::error::ApiError;

/// The tenant every record belongs to while the service is open (no key exists).
pub const DEFAULT_TENANT: &str = "default";

/// The tenant of the key that made a request, and whether that key is an admin key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The tenant new requests are recorded under.
    pub tenant: String,
    /// Sees every tenant's records, and may filter them with `tenant=`.
    pub admin: bool,
    /// The caller showed a key (auth applies); `false` while the service is open.
    pub authenticated: bool,
}

impl Caller {
    /// The caller of an open service: tenant `default`, seeing everything (which is all
    /// `default`'s anyway).
    pub fn open() -> Self {
        Self {
            tenant: DEFAULT_TENANT.to_owned(),
            admin: true,
            authenticated: false,
        }
    }
}

impl Caller {
    /// The records this caller may read: an admin every tenant's, any other key its own.
    pub fn scope(&self) -> crate::store::Scope {
        match self.admin {
            true => crate::store::Scope::All,
            false => crate::store::Scope::Tenant(self.tenant.clone()),
        }
    }
}

/// A tenant name (SPEC §10): 1–64 characters of `[a-z0-9_-]`.
pub fn valid_tenant(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts.extensions.get::<Caller>().cloned().ok_or_else(|| {
            ApiError::Internal(anyhow::anyhow!(
                "no caller: the route is not behind the authentication layer"
            ))
        })
    }
}
