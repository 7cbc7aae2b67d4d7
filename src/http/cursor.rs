//! The opaque `cursor` of GET /requests (SPEC §12 "Keyset pages"): the position after the
//! last record of a page, and the filters it was made for, so that a cursor cannot be
//! used with other filters.
//!
//! Form: base64url (no padding) of a small JSON object. Clients must not build or parse
//! it; only "the same filters, this cursor" is meaningful.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use chrono::DateTime;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::store::Keyset;

/// The filters a cursor is bound to, as the query gave them (`None` = not given).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filters {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct Body {
    /// `created_at` of the last record, in Unix milliseconds.
    t: i64,
    /// Its id.
    i: Uuid,
    /// The filters.
    f: Filters,
}

/// The cursor for the page after `last`, under `filters`.
pub fn encode(last: Keyset, filters: &Filters) -> String {
    let body = Body {
        t: last.created_at.timestamp_millis(),
        i: last.id,
        f: filters.clone(),
    };
    B64.encode(serde_json::to_vec(&body).expect("plain data serialises"))
}

/// Why a cursor cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CursorError {
    /// Not a cursor this API made.
    Malformed,
    /// Made for other filters.
    OtherFilters,
}

impl CursorError {
    pub fn message(&self) -> &'static str {
        match self {
            CursorError::Malformed => "is not a cursor returned by GET /requests",
            CursorError::OtherFilters => {
                "was returned for other filters; use it with the same tenant, mode, status, callback_status and work"
            }
        }
    }
}

/// The position a cursor stands for, if it was made for `filters`.
pub fn decode(cursor: &str, filters: &Filters) -> Result<Keyset, CursorError> {
    let bytes = B64.decode(cursor).map_err(|_| CursorError::Malformed)?;
    let body: Body = serde_json::from_slice(&bytes).map_err(|_| CursorError::Malformed)?;
    let created_at = DateTime::from_timestamp_millis(body.t).ok_or(CursorError::Malformed)?;
    if &body.f != filters {
        return Err(CursorError::OtherFilters);
    }
    Ok(Keyset {
        created_at,
        id: body.i,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyset() -> Keyset {
        Keyset {
            created_at: DateTime::from_timestamp_millis(1_764_000_000_123).unwrap(),
            id: Uuid::now_v7(),
        }
    }

    #[test]
    fn a_cursor_reads_back_under_the_same_filters() {
        let f = Filters {
            status: Some("failed".into()),
            ..Filters::default()
        };
        let k = keyset();
        assert_eq!(decode(&encode(k, &f), &f), Ok(k));
    }

    #[test]
    fn a_cursor_is_refused_under_other_filters_or_when_garbled() {
        let f = Filters::default();
        let other = Filters {
            mode: Some("sync".into()),
            ..Filters::default()
        };
        let c = encode(keyset(), &f);
        assert_eq!(decode(&c, &other), Err(CursorError::OtherFilters));
        assert_eq!(decode("not a cursor", &f), Err(CursorError::Malformed));
        assert_eq!(decode(&c[1..], &f), Err(CursorError::Malformed));
    }
}
