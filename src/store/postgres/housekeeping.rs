//! Housekeeping on PostgreSQL (SPEC §12): every statement removes a bounded number of rows
//! (`LIMIT` in a sub-select, `SKIP LOCKED` so instances sweeping at once share the work).

use std::time::Duration;

use sqlx::postgres::{PgConnection, PgPool};
use sqlx::{PgExecutor, Row};
use uuid::Uuid;

use super::duration_ms;
use super::requests::transition;
use crate::store::counts::Deltas;
use crate::store::*;

/// Most rows one housekeeping statement touches.
const BATCH: i64 = 500;

pub(super) async fn sweep(
    c: &mut PgConnection,
    d: &mut Deltas,
    keep_keys: Duration,
    abandon_sync: Duration,
) -> StoreResult<SweepStats> {
    let keys = sqlx::query(
        "DELETE FROM idempotency_keys WHERE ctid IN (
             SELECT ctid FROM idempotency_keys
             WHERE created_at < now() - $1::bigint * interval '1 millisecond'
             LIMIT $2 FOR UPDATE SKIP LOCKED)",
    )
    .bind(duration_ms(keep_keys))
    .bind(BATCH)
    .execute(&mut *c)
    .await?;
    let abandoned: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM requests
         WHERE state = $1 AND started_at < now() - $2::bigint * interval '1 millisecond'
         LIMIT $3 FOR UPDATE SKIP LOCKED",
    )
    .bind(state_code(Mode::Sync, RequestStatus::Processing, None) as i16)
    .bind(duration_ms(abandon_sync))
    .bind(BATCH)
    .fetch_all(&mut *c)
    .await?;
    for id in &abandoned {
        transition(
            c,
            d,
            *id,
            "status = 'failed', completed_at = $2, error = $3",
            |q| q.bind(super::ms(chrono::Utc::now())).bind(INTERRUPTED),
        )
        .await?;
    }
    let minutes = sqlx::query(
        "DELETE FROM callback_minutes WHERE ctid IN (
             SELECT ctid FROM callback_minutes
             WHERE minute < (extract(epoch FROM now()) / 60)::bigint - 120
             LIMIT $1 FOR UPDATE SKIP LOCKED)",
    )
    .bind(BATCH)
    .execute(&mut *c)
    .await?;
    Ok(SweepStats {
        expired_keys: keys.rows_affected(),
        abandoned_sync: abandoned.len() as u64,
        old_minutes: minutes.rows_affected(),
        idle_destinations: 0,
    })
}

/// Deletes unused destinations, on its own: a job inserted meanwhile for one of them
/// makes this statement fail on the foreign key, and the admission that inserted it
/// wins; the next sweep tries again.
pub(super) async fn forget_idle_destinations(pool: &PgPool) -> u64 {
    let deleted = sqlx::query(
        "DELETE FROM destinations WHERE id IN (
             SELECT d.id FROM destinations d
             WHERE d.blocked_until IS NULL AND d.deliver_due_at IS NULL
               AND d.paused_since IS NULL AND d.rate_limit_per_s IS NULL
               AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.destination_id = d.id)
             LIMIT $1 FOR UPDATE SKIP LOCKED)",
    )
    .bind(BATCH)
    .execute(pool)
    .await;
    match deleted {
        Ok(r) => r.rows_affected(),
        Err(e) => {
            tracing::debug!(error = %e, "unused destinations not deleted this time");
            0
        }
    }
}

/// Deletes up to `limit` terminal records created before `cutoff` with their attempts
/// and idempotency keys.
pub(super) async fn prune(
    c: &mut PgConnection,
    d: &mut Deltas,
    cutoff: chrono::DateTime<chrono::Utc>,
    limit: usize,
) -> StoreResult<u64> {
    let terminal: Vec<i16> = terminal_states().iter().map(|s| *s as i16).collect();
    let victims = sqlx::query(
        "SELECT v.id, v.tenant, v.work, v.state FROM unnest($1::smallint[]) AS s(state)
         CROSS JOIN LATERAL (
             SELECT id, tenant, work, state FROM requests
             WHERE state = s.state AND created_at < $2
             ORDER BY created_at LIMIT $3 FOR UPDATE SKIP LOCKED) v
         LIMIT $3",
    )
    .bind(&terminal)
    .bind(cutoff)
    .bind(limit as i64)
    .fetch_all(&mut *c)
    .await?;
    let ids: Vec<Uuid> = victims
        .iter()
        .map(|r| r.try_get("id"))
        .collect::<Result<_, _>>()?;
    if ids.is_empty() {
        return Ok(0);
    }
    for statement in [
        "DELETE FROM attempts WHERE request_id = ANY($1)",
        "DELETE FROM idempotency_keys WHERE request_id = ANY($1)",
        "DELETE FROM requests WHERE id = ANY($1)",
    ] {
        sqlx::query(statement).bind(&ids).execute(&mut *c).await?;
    }
    for row in &victims {
        d.removed(
            row.try_get("tenant")?,
            row.try_get("work")?,
            i64::from(row.try_get::<i16, _>("state")?),
        );
    }
    Ok(ids.len() as u64)
}

/// A real write of a few bytes (SPEC §9 "Readiness").
pub(super) async fn heartbeat(c: &mut PgConnection) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO settings (name, value) VALUES ($1, now()::text)
         ON CONFLICT (name) DO UPDATE SET value = excluded.value",
    )
    .bind(HEARTBEAT_SETTING)
    .execute(&mut *c)
    .await?;
    Ok(())
}

/// Whether the schema is in place and the database accepts writes (not a standby, not
/// read-only).
pub(super) async fn writable(e: impl PgExecutor<'_>) -> StoreResult<bool> {
    Ok(sqlx::query_scalar(
        "SELECT NOT pg_is_in_recovery() AND current_setting('transaction_read_only') = 'off'
         FROM (SELECT count(*) FROM settings) AS schema_present",
    )
    .fetch_one(e)
    .await?)
}
