//! Destinations as a resource on SQLite (SPEC §14): the page, one, and a change of its
//! settings. Paused is `paused_since IS NOT NULL`; the claim and the dispatcher's next
//! due time skip paused destinations (`claim.rs`).

use rusqlite::{Connection, OptionalExtension, params};

use super::current::now_ms;
use crate::store::*;

const COLUMNS: &str = "d.id, d.tenant, d.origin, d.blocked_until,
     coalesce(CASE WHEN d.blocked_until IS NOT NULL THEN d.blocked_reason END, d.last_error),
     d.paused_since IS NOT NULL, d.rate_limit_per_s,
     (SELECT count(*) FROM (SELECT 1 FROM jobs j WHERE j.destination_id = d.id LIMIT 10001))";

fn info(r: &rusqlite::Row<'_>) -> rusqlite::Result<DestinationInfo> {
    Ok(DestinationInfo {
        row: r.get(0)?,
        tenant: r.get(1)?,
        origin: r.get(2)?,
        blocked_until: r
            .get::<_, Option<i64>>(3)?
            .and_then(chrono::DateTime::from_timestamp_millis),
        last_error: r.get(4)?,
        paused: r.get(5)?,
        rate_limit_per_s: r.get(6)?,
        pending: r.get::<_, i64>(7)?.max(0) as u64,
    })
}

pub(super) fn list(c: &Connection, q: &DestinationQuery) -> StoreResult<Vec<DestinationInfo>> {
    let (open, paused, limited) = q.state_flags();
    let (after_tenant, after_origin) = q.after_pair();
    let sql = format!(
        "SELECT {COLUMNS} FROM destinations d
         WHERE (?1 IS NULL OR d.tenant = ?1) AND (d.tenant, d.origin) > (?2, ?3)
           AND (?4 = 0 OR d.blocked_until IS NOT NULL)
           AND (?5 = 0 OR d.paused_since IS NOT NULL)
           AND (?6 = 0 OR d.rate_limit_per_s IS NOT NULL)
         ORDER BY d.tenant, d.origin LIMIT ?7"
    );
    let rows = c
        .prepare_cached(&sql)?
        .query_map(
            params![
                q.tenant(),
                after_tenant,
                after_origin,
                open,
                paused,
                limited,
                q.limit
            ],
            info,
        )?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Paused or rate-limited destinations.
pub(super) fn held(c: &Connection) -> StoreResult<Vec<i64>> {
    let ids = c
        .prepare_cached(
            "SELECT id FROM destinations WHERE paused_since IS NOT NULL OR rate_limit_per_s IS NOT NULL",
        )?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(ids)
}

pub(super) fn find(
    c: &Connection,
    tenant: &str,
    origin: &str,
) -> StoreResult<Option<DestinationInfo>> {
    let sql = format!("SELECT {COLUMNS} FROM destinations d WHERE d.tenant = ?1 AND d.origin = ?2");
    Ok(c.prepare_cached(&sql)?
        .query_row(params![tenant, origin], info)
        .optional()?)
}

/// Applies `change`; a resume adds the pause's length to the paused total and makes the
/// destination's waiting deliveries due at once.
pub(super) fn change(
    c: &Connection,
    tenant: &str,
    origin: &str,
    change: DestinationChange,
) -> StoreResult<Option<DestinationInfo>> {
    let now = now_ms();
    let (set_rate, rate) = match change.rate_limit_per_s {
        Some(r) => (true, r),
        None => (false, None),
    };
    c.prepare_cached(
        "UPDATE destinations SET
             paused_total_ms = paused_total_ms + CASE WHEN ?3 = 0 AND paused_since IS NOT NULL
                                                      THEN max(?6 - paused_since, 0) ELSE 0 END,
             paused_since = CASE WHEN ?3 IS NULL THEN paused_since
                                 WHEN ?3 = 1 THEN coalesce(paused_since, ?6) ELSE NULL END,
             rate_limit_per_s = CASE WHEN ?4 THEN ?5 ELSE rate_limit_per_s END,
             rate_tat = CASE WHEN ?4 THEN NULL ELSE rate_tat END
         WHERE tenant = ?1 AND origin = ?2",
    )?
    .execute(params![tenant, origin, change.paused, set_rate, rate, now])?;
    find(c, tenant, origin)
}
