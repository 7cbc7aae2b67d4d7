//! Kept counts on PostgreSQL (SPEC §12): each transaction adds its changes to one of
//! [`SHARDS`] rows per (tenant, state), picked at random, so that instances admitting at
//! once rarely wait for each other's row lock; reads add the shards up. Rows are written
//! in a fixed order, so two transactions never lock them in opposite orders.
//!
//! The instance's [`CountsMirror`] of the backlog is refreshed from the table every
//! [`REFRESH_EVERY`] (SPEC §9: the count may be up to 1 s stale) and moved on by this
//! instance's own commits in between.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use sqlx::postgres::{PgConnection, PgPool};
use sqlx::{PgExecutor, Row};
use tokio::task::AbortHandle;

use crate::store::StoreResult;
use crate::store::counts::{CountsMirror, Deltas};
use crate::store::model::backlog_states;

/// Rows one counter is spread over.
pub(super) const SHARDS: i16 = 64;
/// How often the backlog mirror is read back from the table.
const REFRESH_EVERY: Duration = Duration::from_millis(500);

/// A shard for this transaction's counter changes.
pub(super) fn shard() -> i16 {
    rand::random_range(0..SHARDS)
}

/// Adds a transaction's changes to the count rows and the per-minute callback figures, in
/// one statement (one round trip at the end of every writing transaction). Rows are
/// locked in one order by every writer: request_counts, then work_counts (each sorted),
/// then callback_minutes; each part reads the one before it in an InitPlan, which runs it
/// to its end first.
pub(super) async fn apply(c: &mut PgConnection, d: &Deltas) -> StoreResult<()> {
    let rows = d.count_rows();
    let works = d.work_rows();
    let minutes = d.minute_rows();
    if rows.is_empty() && works.is_empty() && minutes.is_empty() {
        return Ok(());
    }
    let tenants: Vec<&str> = rows.iter().map(|r| r.0).collect();
    let states: Vec<i16> = rows.iter().map(|r| r.1 as i16).collect();
    let ns: Vec<i64> = rows.iter().map(|r| r.2).collect();
    let work_tenants: Vec<&str> = works.iter().map(|w| w.0).collect();
    let work_names: Vec<&str> = works.iter().map(|w| w.1).collect();
    let work_states: Vec<i16> = works.iter().map(|w| w.2 as i16).collect();
    let work_ns: Vec<i64> = works.iter().map(|w| w.3).collect();
    let minute_tenants: Vec<&str> = minutes.iter().map(|m| m.0).collect();
    let at: Vec<i64> = minutes.iter().map(|m| m.1).collect();
    let delivered: Vec<i64> = minutes.iter().map(|m| m.2).collect();
    let failed: Vec<i64> = minutes.iter().map(|m| m.3).collect();
    sqlx::query(
        "WITH counted AS (
             INSERT INTO request_counts (tenant, state, shard, n)
             SELECT t, s, $1, n FROM unnest($2::text[], $3::smallint[], $4::bigint[]) AS u(t, s, n)
             ON CONFLICT (tenant, state, shard) DO UPDATE SET n = request_counts.n + excluded.n
             RETURNING 1
         ), work_counted AS (
             INSERT INTO work_counts (tenant, work, state, shard, n)
             SELECT t, w, s, $1, n
             FROM unnest($5::text[], $6::text[], $7::smallint[], $8::bigint[]) AS u(t, w, s, n)
             WHERE (SELECT count(*) FROM counted) >= 0
             ON CONFLICT (tenant, work, state, shard) DO UPDATE SET n = work_counts.n + excluded.n
             RETURNING 1
         )
         INSERT INTO callback_minutes (tenant, minute, shard, delivered, failed)
         SELECT t, m, $1, d, f
         FROM unnest($9::text[], $10::bigint[], $11::bigint[], $12::bigint[]) AS u(t, m, d, f)
         WHERE (SELECT count(*) FROM work_counted) >= 0
         ON CONFLICT (minute, tenant, shard) DO UPDATE
         SET delivered = callback_minutes.delivered + excluded.delivered,
             failed = callback_minutes.failed + excluded.failed",
    )
    .bind(shard())
    .bind(&tenants)
    .bind(&states)
    .bind(&ns)
    .bind(&work_tenants)
    .bind(&work_names)
    .bind(&work_states)
    .bind(&work_ns)
    .bind(&minute_tenants)
    .bind(&at)
    .bind(&delivered)
    .bind(&failed)
    .execute(&mut *c)
    .await?;
    Ok(())
}

/// The backlog's counts as stored (all shards added up).
pub(super) async fn load_backlog(e: impl PgExecutor<'_>) -> StoreResult<CountsMirror> {
    let states: Vec<i16> = backlog_states().iter().map(|s| *s as i16).collect();
    let rows = sqlx::query(
        "SELECT tenant, state, sum(n)::bigint AS n FROM request_counts
         WHERE state = ANY($1) GROUP BY tenant, state",
    )
    .bind(&states)
    .fetch_all(e)
    .await?;
    let rows = rows
        .iter()
        .map(|r| {
            Ok((
                r.try_get::<String, _>("tenant")?,
                i64::from(r.try_get::<i16, _>("state")?),
                r.try_get::<i64, _>("n")?,
            ))
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(CountsMirror::from_rows(rows))
}

/// Refreshes `mirror` from the table until dropped.
pub(super) struct Refresher(AbortHandle);

impl Drop for Refresher {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Refresher {
    pub fn spawn(pool: PgPool, mirror: Arc<RwLock<CountsMirror>>) -> Self {
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(REFRESH_EVERY);
            loop {
                tick.tick().await;
                match load_backlog(&pool).await {
                    Ok(fresh) => *mirror.write().expect("counts lock") = fresh,
                    Err(e) => tracing::debug!(error = %e, "could not refresh the backlog count"),
                }
            }
        });
        Self(task.abort_handle())
    }
}
