//! The one scoping rule (SPEC §10, §16): whose records a request may read or act on.
//!
//! [`Scope`] is made once per request, by its extractor, from the caller (the
//! authentication layer's [`Caller`]) and the query's `tenant=`: an admin key sees every
//! tenant, or the one it names; any other key sees its own tenant, and naming another
//! tenant matches nothing (never a 403, so nothing tells a tenant which others exist). An
//! invalid name is a 422 on every route. Every scoped route takes a `Scope`; the store
//! takes what [`Scope::store`] or [`Scope::tenant`] make of it.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::error::{ApiError, FieldError};
use crate::auth::Caller;

/// What a `tenant=` must look like, for the 422.
pub const TENANT_MESSAGE: &str = "must be 1 to 64 characters of a-z, 0-9, _ and -";

/// Whose records a request sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every tenant's (an admin key without `tenant=`).
    All,
    /// One tenant's.
    Tenant(String),
    /// None at all (a non-admin key that named another tenant).
    Nothing,
}

impl Scope {
    /// The rule: `caller` naming `tenant` (or no tenant).
    pub fn of(caller: &Caller, tenant: Option<String>) -> Self {
        match (caller.admin, tenant) {
            (true, Some(t)) => Scope::Tenant(t),
            (true, None) => Scope::All,
            (false, Some(t)) if t != caller.tenant => Scope::Nothing,
            (false, _) => Scope::Tenant(caller.tenant.clone()),
        }
    }

    /// What both scopes see: a route with a second tenant filter (bulk redelivery's body)
    /// narrows the request's scope with it.
    pub fn and(self, other: Scope) -> Self {
        match (self, other) {
            (Scope::Nothing, _) | (_, Scope::Nothing) => Scope::Nothing,
            (Scope::All, other) | (other, Scope::All) => other,
            (Scope::Tenant(a), Scope::Tenant(b)) if a == b => Scope::Tenant(a),
            (Scope::Tenant(_), Scope::Tenant(_)) => Scope::Nothing,
        }
    }

    /// The store's form; `None` when nothing can match (no need to ask the store).
    pub fn store(&self) -> Option<crate::store::Scope> {
        match self {
            Scope::All => Some(crate::store::Scope::All),
            Scope::Tenant(t) => Some(crate::store::Scope::Tenant(t.clone())),
            Scope::Nothing => None,
        }
    }

    /// The form bulk redelivery takes: `Some(None)` every tenant, `Some(Some(t))` one,
    /// `None` nothing.
    pub fn tenant(&self) -> Option<Option<String>> {
        match self {
            Scope::All => Some(None),
            Scope::Tenant(t) => Some(Some(t.clone())),
            Scope::Nothing => None,
        }
    }
}

/// A `tenant` value, checked: `Err` holds the 422's entry.
pub fn check_tenant(field: &str, name: String) -> Result<String, FieldError> {
    match crate::auth::valid_tenant(&name) {
        true => Ok(name),
        false => Err(FieldError::new(field, TENANT_MESSAGE)),
    }
}

/// The query's `tenant` (its last value when repeated), if any.
fn query_tenant(query: Option<&str>) -> Option<String> {
    url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .filter(|(k, _)| k == "tenant")
        .last()
        .map(|(_, v)| v.into_owned())
}

impl<S: Send + Sync> FromRequestParts<S> for Scope {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        let tenant = query_tenant(parts.uri.query())
            .map(|t| check_tenant("tenant", t))
            .transpose()
            .map_err(|e| ApiError::InvalidQuery(vec![e]))?;
        Ok(Scope::of(&caller, tenant))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(tenant: &str, admin: bool) -> Caller {
        Caller {
            tenant: tenant.into(),
            admin,
            authenticated: true,
        }
    }

    #[test]
    fn tenants_see_their_own_and_admins_choose() {
        let a = caller("a", false);
        assert_eq!(Scope::of(&a, None), Scope::Tenant("a".into()));
        assert_eq!(Scope::of(&a, Some("a".into())), Scope::Tenant("a".into()));
        assert_eq!(Scope::of(&a, Some("b".into())), Scope::Nothing);
        let admin = caller("x", true);
        assert_eq!(Scope::of(&admin, None), Scope::All);
        assert_eq!(
            Scope::of(&admin, Some("b".into())),
            Scope::Tenant("b".into())
        );
    }

    #[test]
    fn narrowing_keeps_what_both_see() {
        let t = |n: &str| Scope::Tenant(n.into());
        assert_eq!(Scope::All.and(t("a")), t("a"));
        assert_eq!(t("a").and(Scope::All), t("a"));
        assert_eq!(t("a").and(t("a")), t("a"));
        assert_eq!(t("a").and(t("b")), Scope::Nothing);
        assert_eq!(Scope::Nothing.and(Scope::All), Scope::Nothing);
        assert_eq!(Scope::All.and(Scope::All), Scope::All);
    }

    #[test]
    fn the_last_tenant_of_a_query_counts() {
        assert_eq!(query_tenant(Some("tenant=a&tenant=b")), Some("b".into()));
        assert_eq!(query_tenant(Some("limit=5")), None);
        assert_eq!(query_tenant(None), None);
        assert!(check_tenant("tenant", "Bad!".into()).is_err());
        assert!(check_tenant("tenant", String::new()).is_err());
    }
}
