//! The query string of GET /requests, checked: the filters, the page size, and where
//! the page starts (an `offset`, or the position a `cursor` names). Every bad parameter
//! is reported, each in its own entry of one 422.

use std::collections::BTreeMap;

use super::MAX_OFFSET;
use crate::http::cursor::{self, Filters};
use crate::http::error::{ApiError, FieldError};
use crate::http::scope::Scope;
use crate::store::{
    CallbackStatus, Keyset, ListFilter, Mode, PageStart, RequestStatus, Scope as StoreScope,
};

/// A checked GET /requests query.
#[derive(Debug)]
pub(super) struct Listing {
    pub(super) filter: ListFilter,
    /// The filters as given, which a cursor is bound to.
    pub(super) filters: Filters,
    pub(super) offset: u64,
    /// The scope matches nothing (a non-admin key named another tenant).
    pub(super) nothing: bool,
}

/// Parses the query string within `scope`; every bad parameter gets its own entry (the
/// extractor of [`Scope`] has checked `tenant` already; it is checked again here so that
/// its entry joins the others). Unknown parameters are ignored; a repeated one counts
/// with its last value.
pub(super) fn parse_listing(
    query: &str,
    scope: &Scope,
    is_work: &dyn Fn(&str) -> bool,
) -> Result<Listing, ApiError> {
    let params: BTreeMap<String, String> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let mut errors = Vec::new();
    let given = ListingParams::parse(&params, &mut errors, is_work);
    let filters = given.filters();
    let after = parse_cursor(&params, &filters, &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::InvalidQuery(errors));
    }
    let offset = given.offset.unwrap_or(0);
    Ok(Listing {
        filter: ListFilter {
            scope: scope.store().unwrap_or(StoreScope::All),
            mode: given.mode,
            status: given.status,
            callback_status: given.callback_status,
            work: given.work,
            limit: given.limit.unwrap_or(50),
            start: match after {
                Some(k) => PageStart::After(k),
                None => PageStart::Offset(offset),
            },
        },
        filters,
        offset: if after.is_some() { 0 } else { offset },
        nothing: scope.store().is_none(),
    })
}

/// The parameters of a GET /requests query but `cursor`: each as given, or `None` when
/// absent or invalid.
struct ListingParams {
    mode: Option<Mode>,
    status: Option<RequestStatus>,
    callback_status: Option<CallbackStatus>,
    work: Option<String>,
    tenant: Option<String>,
    limit: Option<u32>,
    offset: Option<u64>,
}

impl ListingParams {
    /// Parses each parameter, noting an entry in `errors` for each bad one, in the order
    /// of the parameters here.
    fn parse(
        params: &BTreeMap<String, String>,
        errors: &mut Vec<FieldError>,
        is_work: &dyn Fn(&str) -> bool,
    ) -> Self {
        Self {
            mode: param(
                params,
                "mode",
                errors,
                Mode::parse,
                "must be one of: sync, async",
            ),
            status: param(
                params,
                "status",
                errors,
                RequestStatus::parse,
                "must be one of: pending, processing, completed, failed",
            ),
            callback_status: param(
                params,
                "callback_status",
                errors,
                CallbackStatus::parse,
                "must be one of: pending, sent, failed",
            ),
            work: param(
                params,
                "work",
                errors,
                |w| is_work(w).then(|| w.to_owned()),
                "must name a work: `text` or one of GET /works",
            ),
            tenant: param(
                params,
                "tenant",
                errors,
                |t| crate::auth::valid_tenant(t).then(|| t.to_owned()),
                crate::http::scope::TENANT_MESSAGE,
            ),
            limit: param(
                params,
                "limit",
                errors,
                |v| v.parse::<u32>().ok().filter(|n| (1..=100).contains(n)),
                "must be an integer from 1 to 100",
            ),
            offset: param(
                params,
                "offset",
                errors,
                |v| v.parse::<u64>().ok().filter(|n| *n <= MAX_OFFSET),
                "must be an integer from 0 to 10000; page deeper with cursor (the next_cursor of each page)",
            ),
        }
    }

    /// The filters as given, which a cursor is bound to.
    fn filters(&self) -> Filters {
        Filters {
            tenant: self.tenant.clone(),
            mode: self.mode.map(|m| m.as_str().to_owned()),
            status: self.status.map(|s| s.as_str().to_owned()),
            callback_status: self.callback_status.map(|c| c.as_str().to_owned()),
            work: self.work.clone(),
        }
    }
}

/// The position `cursor` names, bound to `filters`; `None` when absent or (with an error
/// noted) invalid or combined with `offset`.
fn parse_cursor(
    params: &BTreeMap<String, String>,
    filters: &Filters,
    errors: &mut Vec<FieldError>,
) -> Option<Keyset> {
    match (params.get("cursor"), params.contains_key("offset")) {
        (Some(_), true) => {
            errors.push(FieldError::new("cursor", "cannot be combined with offset"));
            None
        }
        (Some(c), false) => cursor::decode(c, filters)
            .map_err(|e| errors.push(FieldError::new("cursor", e.message())))
            .ok(),
        (None, _) => None,
    }
}

/// The parameter `name` parsed, or `None` when absent or (with an error noted) invalid.
fn param<T>(
    params: &BTreeMap<String, String>,
    name: &str,
    errors: &mut Vec<FieldError>,
    parse: impl Fn(&str) -> Option<T>,
    message: &str,
) -> Option<T> {
    let value = params.get(name)?;
    let parsed = parse(value);
    if parsed.is_none() {
        errors.push(FieldError::new(name, message));
    }
    parsed
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn parse(query: &str, scope: &Scope) -> Result<Listing, ApiError> {
        parse_listing(query, scope, &|w| w == "text" || w == "pdf")
    }

    #[test]
    fn a_work_filter_names_a_work() {
        let Err(ApiError::InvalidQuery(errors)) = parse("work=nope&mode=x", &Scope::All) else {
            panic!("expected a 422");
        };
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["mode", "work"]);
        let l = parse("work=pdf", &Scope::All).unwrap();
        assert_eq!(l.filter.work.as_deref(), Some("pdf"));
        assert_eq!(l.filters.work.as_deref(), Some("pdf"));
    }

    #[test]
    fn every_bad_parameter_is_reported_once() {
        let Err(ApiError::InvalidQuery(errors)) = parse(
            "limit=5&limit=500&mode=x&offset=-1&foo=bar&tenant=Bad!",
            &Scope::All,
        ) else {
            panic!("expected a 422");
        };
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["mode", "tenant", "limit", "offset"]);
    }

    #[test]
    fn defaults_apply_when_the_query_is_empty() {
        let l = parse("", &Scope::All).unwrap();
        assert_eq!((l.filter.limit, l.offset, l.filter.mode), (50, 0, None));
        assert_eq!(l.filter.start, PageStart::Offset(0));
    }

    #[test]
    fn offsets_beyond_ten_thousand_point_to_the_cursor() {
        let Err(ApiError::InvalidQuery(errors)) = parse("offset=10001", &Scope::All) else {
            panic!("expected a 422");
        };
        assert_eq!(errors[0].field, "offset");
        assert!(errors[0].message.contains("cursor"));
        assert!(parse("offset=10000", &Scope::All).is_ok());
    }

    #[test]
    fn a_cursor_must_come_alone_and_with_its_filters() {
        let Err(ApiError::InvalidQuery(errors)) = parse("cursor=abc&offset=0", &Scope::All) else {
            panic!("expected a 422");
        };
        assert_eq!(errors[0].field, "cursor");
        let last = crate::store::Keyset {
            created_at: chrono::Utc::now(),
            id: Uuid::now_v7(),
        };
        let c = cursor::encode(last, &Filters::default());
        assert!(parse(&format!("cursor={c}"), &Scope::All).is_ok());
        assert!(parse(&format!("cursor={c}&mode=sync"), &Scope::All).is_err());
    }
}
