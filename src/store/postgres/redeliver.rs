//! Redelivery and the per-minute chart on PostgreSQL (SPEC §11): the shapes of
//! `sqlite/redeliver.rs`. A new delivery takes its destination's delivery guard (shared,
//! see `claim.rs`) before it lowers the destination's due time, as every write that makes a
//! delivery due does.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::postgres::PgConnection;
use uuid::Uuid;

use super::duration_ms;
use super::requests::{destination_id, transition};
use crate::store::counts::Deltas;
use crate::store::*;

/// What a single redelivery needs besides the request: its expiry, its limits, and the
/// backlog `(all tenants, this tenant)` for a tenant.
pub(super) struct Again<'a> {
    pub expire_after: Duration,
    pub limits: RedeliveryLimits,
    pub backlog: &'a (dyn Fn(&str) -> (u64, u64) + Send + Sync),
}

/// See `Store::redeliver`.
pub(super) async fn redeliver(
    c: &mut PgConnection,
    d: &mut Deltas,
    id: Uuid,
    scope: &Scope,
    again: Again<'_>,
) -> StoreResult<Redelivery> {
    let expire_after = again.expire_after;
    let row = sqlx::query(
        "SELECT tenant, mode, callback_status, redeliveries FROM requests WHERE id = $1 FOR UPDATE",
    )
    .bind(id)
    .fetch_optional(&mut *c)
    .await?;
    let Some(row) = row else {
        return Ok(Redelivery::NotFound);
    };
    let tenant: String = row.try_get("tenant")?;
    if !scope.sees(&tenant) {
        return Ok(Redelivery::NotFound);
    }
    if row.try_get::<&str, _>("mode")? == Mode::Sync.as_str() {
        return Ok(Redelivery::NotAsync);
    }
    if row.try_get::<Option<&str>, _>("callback_status")? == Some("pending") {
        return Ok(Redelivery::InProgress);
    }
    let done: i32 = row.try_get("redeliveries")?;
    let (pending, tenant_pending) = (again.backlog)(&tenant);
    if let Some(refused) = again
        .limits
        .refusal(done.max(0) as u64, pending, tenant_pending)
    {
        return Ok(refused);
    }
    queue_again(c, d, id, expire_after).await?;
    Ok(Redelivery::Queued)
}

/// The new delivery of a terminal callback (the request row is locked by the caller).
async fn queue_again(
    c: &mut PgConnection,
    d: &mut Deltas,
    id: Uuid,
    expire_after: Duration,
) -> StoreResult<()> {
    transition(
        c,
        d,
        id,
        "callback_status = 'pending', redeliveries = r.redeliveries + 1",
        |q| q,
    )
    .await?;
    let row =
        sqlx::query("SELECT tenant, callback_url, callback_attempts FROM requests WHERE id = $1")
            .bind(id)
            .fetch_one(&mut *c)
            .await?;
    let tenant: String = row.try_get("tenant")?;
    let origin = row
        .try_get::<Option<String>, _>("callback_url")?
        .as_deref()
        .and_then(crate::store::origin_of_str)
        .unwrap_or_else(|| "unknown://invalid:0".to_owned());
    let destination = destination_id(c, &tenant, &origin).await?;
    super::guard::share_deliveries(c, &[destination]).await?;
    sqlx::query(
        "INSERT INTO jobs (request_id, destination_id, phase, run_at, expires_at, attempt_base, manual)
         VALUES ($1, $2, 1, now(), now() + $3::bigint * interval '1 millisecond', $4, true)",
    )
    .bind(id)
    .bind(destination)
    .bind(duration_ms(expire_after))
    .bind(row.try_get::<i32, _>("callback_attempts")?)
    .execute(&mut *c)
    .await?;
    sqlx::query(
        "UPDATE destinations SET deliver_due_at = greatest(now(), blocked_until)
         WHERE id = $1 AND (deliver_due_at IS NULL OR deliver_due_at > greatest(now(), blocked_until))",
    )
    .bind(destination)
    .execute(&mut *c)
    .await?;
    Ok(())
}

/// See `Store::bulk_redeliver`: failed state after failed state, oldest record first
/// (rows another instance is redelivering are skipped), until [`BULK_REDELIVERY_MOST`]
/// are queued or a limit stops it. The backlog is the kept counts' mirror plus what this
/// call queued.
pub(super) async fn bulk_redeliver(
    c: &mut PgConnection,
    d: &mut Deltas,
    tenant: Option<String>,
    since: DateTime<Utc>,
    again: Again<'_>,
) -> StoreResult<BulkRedelivery> {
    let mut done = BulkRedelivery::default();
    for state in failed_callback_states().into_iter().map(|s| s as i16) {
        let left = BULK_REDELIVERY_MOST - done.redelivered as usize;
        // One more than may be queued: whether any is left over.
        let rows = sqlx::query(
            "SELECT id, tenant FROM requests
             WHERE state = $1 AND created_at >= $2 AND created_at <= now()
               AND ($3::text IS NULL OR tenant = $3) AND redeliveries < $4
             ORDER BY created_at, id LIMIT $5 FOR UPDATE SKIP LOCKED",
        )
        .bind(state)
        .bind(since)
        .bind(&tenant)
        .bind(again.limits.max_redeliveries as i32)
        .bind(left as i64 + 1)
        .fetch_all(&mut *c)
        .await?;
        for row in &rows {
            let owner: String = row.try_get("tenant")?;
            let (all, mine) = (again.backlog)(&owner);
            let pending = (all as i64 + d.backlog_change(None)).max(0) as u64;
            let tenant_pending = (mine as i64 + d.backlog_change(Some(&owner))).max(0) as u64;
            if done.redelivered as usize >= BULK_REDELIVERY_MOST
                || again.limits.refusal(0, pending, tenant_pending).is_some()
            {
                done.more = true;
                return Ok(done);
            }
            queue_again(c, d, row.try_get("id")?, again.expire_after).await?;
            done.redelivered += 1;
        }
    }
    Ok(done)
}

/// See `Store::advance_bulk_redeliveries`; instances share the tasks (`SKIP LOCKED`).
pub(super) async fn advance_bulk(
    c: &mut PgConnection,
    d: &mut Deltas,
    batch: usize,
    expire_after: Duration,
) -> StoreResult<u64> {
    let Some(task) = sqlx::query(
        "SELECT id, tenant, since, until, after_state, after_created_at, after_id
         FROM bulk_redeliveries ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED",
    )
    .fetch_optional(&mut *c)
    .await?
    else {
        return Ok(0);
    };
    let task_id: i64 = task.try_get("id")?;
    let tenant: Option<String> = task.try_get("tenant")?;
    let since: DateTime<Utc> = task.try_get("since")?;
    let until: DateTime<Utc> = task.try_get("until")?;
    let after_state: i16 = task.try_get("after_state")?;
    let after_at: Option<DateTime<Utc>> = task.try_get("after_created_at")?;
    let after_id: Option<Uuid> = task.try_get("after_id")?;
    for state in failed_callback_states().into_iter().map(|s| s as i16) {
        if state < after_state {
            continue;
        }
        let from = match state == after_state {
            true => (after_at, after_id),
            false => (None, None),
        };
        let rows = sqlx::query(
            "SELECT id, created_at FROM requests
             WHERE state = $1 AND created_at >= $2 AND created_at <= $3
               AND ($4::text IS NULL OR tenant = $4)
               AND ($5::timestamptz IS NULL OR (created_at, id) > ($5, $6))
             ORDER BY created_at, id LIMIT $7 FOR UPDATE SKIP LOCKED",
        )
        .bind(state)
        .bind(since)
        .bind(until)
        .bind(&tenant)
        .bind(from.0)
        .bind(from.1.unwrap_or_default())
        .bind(batch as i64)
        .fetch_all(&mut *c)
        .await?;
        for row in &rows {
            queue_again(c, d, row.try_get("id")?, expire_after).await?;
        }
        if let Some(last) = rows.last() {
            sqlx::query(
                "UPDATE bulk_redeliveries SET after_state = $2, after_created_at = $3, after_id = $4
                 WHERE id = $1",
            )
            .bind(task_id)
            .bind(state)
            .bind(last.try_get::<DateTime<Utc>, _>("created_at")?)
            .bind(last.try_get::<Uuid, _>("id")?)
            .execute(&mut *c)
            .await?;
            return Ok(rows.len() as u64);
        }
    }
    sqlx::query("DELETE FROM bulk_redeliveries WHERE id = $1")
        .bind(task_id)
        .execute(&mut *c)
        .await?;
    Ok(0)
}

/// See `Store::callback_stats`.
pub(super) async fn callback_stats(
    c: &mut PgConnection,
    scope: &Scope,
    from_minute: i64,
) -> StoreResult<Vec<MinuteStats>> {
    let tenant = match scope {
        Scope::Tenant(t) => Some(t.as_str()),
        Scope::All => None,
    };
    let rows = sqlx::query(
        "SELECT minute, sum(delivered)::bigint AS delivered, sum(failed)::bigint AS failed
         FROM callback_minutes WHERE minute >= $1 AND ($2::text IS NULL OR tenant = $2)
         GROUP BY minute ORDER BY minute",
    )
    .bind(from_minute)
    .bind(tenant)
    .fetch_all(&mut *c)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(MinuteStats {
                minute: r.try_get("minute")?,
                delivered: r.try_get::<i64, _>("delivered")?.max(0) as u64,
                failed: r.try_get::<i64, _>("failed")?.max(0) as u64,
            })
        })
        .collect()
}
