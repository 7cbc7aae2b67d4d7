//! Destinations as a resource on PostgreSQL (SPEC §14): the page, one, and a change of
//! its settings. Paused is `paused_since IS NOT NULL`; the claim and the dispatcher's
//! next due time skip paused destinations (`claim.rs`), on every instance.

use sqlx::Row;
use sqlx::postgres::{PgPool, PgRow};

use crate::store::*;

const COLUMNS: &str = "d.id, d.tenant, d.origin, d.blocked_until,
     coalesce(CASE WHEN d.blocked_until IS NOT NULL THEN d.blocked_reason END, d.last_error)
        AS last_error,
     d.paused_since IS NOT NULL AS paused, d.rate_limit_per_s,
     (SELECT count(*) FROM (SELECT 1 FROM jobs j WHERE j.destination_id = d.id LIMIT 10001) p)
        AS pending";

fn info(r: &PgRow) -> StoreResult<DestinationInfo> {
    Ok(DestinationInfo {
        row: r.try_get("id")?,
        tenant: r.try_get("tenant")?,
        origin: r.try_get("origin")?,
        blocked_until: r.try_get("blocked_until")?,
        last_error: r.try_get("last_error")?,
        paused: r.try_get("paused")?,
        rate_limit_per_s: r.try_get("rate_limit_per_s")?,
        pending: r.try_get::<i64, _>("pending")?.max(0) as u64,
    })
}

pub(super) async fn list(pool: &PgPool, q: &DestinationQuery) -> StoreResult<Vec<DestinationInfo>> {
    let (open, paused, limited) = q.state_flags();
    let (after_tenant, after_origin) = q.after_pair();
    let sql = format!(
        "SELECT {COLUMNS} FROM destinations d
         WHERE ($1::text IS NULL OR d.tenant = $1) AND (d.tenant, d.origin) > ($2, $3)
           AND (NOT $4 OR d.blocked_until IS NOT NULL)
           AND (NOT $5 OR d.paused_since IS NOT NULL)
           AND (NOT $6 OR d.rate_limit_per_s IS NOT NULL)
         ORDER BY d.tenant COLLATE \"C\", d.origin COLLATE \"C\" LIMIT $7"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(q.tenant())
        .bind(after_tenant)
        .bind(after_origin)
        .bind(open)
        .bind(paused)
        .bind(limited)
        .bind(i64::from(q.limit))
        .fetch_all(pool)
        .await?;
    rows.iter().map(info).collect()
}

pub(super) async fn find(
    pool: &PgPool,
    tenant: &str,
    origin: &str,
) -> StoreResult<Option<DestinationInfo>> {
    let sql = format!("SELECT {COLUMNS} FROM destinations d WHERE d.tenant = $1 AND d.origin = $2");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(tenant)
        .bind(origin)
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(info).transpose()
}

/// Applies `change`; a resume adds the pause's length to the paused total.
pub(super) async fn change(
    pool: &PgPool,
    tenant: &str,
    origin: &str,
    change: DestinationChange,
) -> StoreResult<Option<DestinationInfo>> {
    let (set_rate, rate) = match change.rate_limit_per_s {
        Some(r) => (true, r),
        None => (false, None),
    };
    sqlx::query(
        "UPDATE destinations SET
             paused_total_ms = paused_total_ms + CASE WHEN $3 = false AND paused_since IS NOT NULL
                 THEN greatest(0, (extract(epoch FROM now() - paused_since) * 1000)::bigint)
                 ELSE 0 END,
             paused_since = CASE WHEN $3 IS NULL THEN paused_since
                                 WHEN $3 THEN coalesce(paused_since, now()) ELSE NULL END,
             rate_limit_per_s = CASE WHEN $4 THEN $5 ELSE rate_limit_per_s END,
             rate_tat = CASE WHEN $4 THEN NULL ELSE rate_tat END
         WHERE tenant = $1 AND origin = $2",
    )
    .bind(tenant)
    .bind(origin)
    .bind(change.paused)
    .bind(set_rate)
    .bind(rate)
    .execute(pool)
    .await?;
    find(pool, tenant, origin).await
}
