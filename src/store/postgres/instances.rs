//! Instances and their heartbeats (SPEC §16, §17 "Processing records"): a /sync record
//! names the instance running its work; each instance writes a heartbeat every few
//! seconds; housekeeping on any instance fails the /sync records still `processing` of
//! an instance whose heartbeat is older than [`STALE_AFTER`], since their work died with it.

use std::time::Duration;

use sqlx::postgres::{PgConnection, PgPool};
use uuid::Uuid;

use super::requests::transition;
use crate::store::counts::Deltas;
use crate::store::*;

/// How often an instance says it is alive.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);
/// An instance silent for this long is gone (SPEC §17: 30 s).
pub const STALE_AFTER: Duration = Duration::from_secs(30);
/// Most records one pass fails.
const BATCH: i64 = 500;

/// This instance: its id, and the task writing its heartbeat (stopped with the store).
pub(super) struct Instance {
    pub id: Uuid,
    heartbeat: tokio::task::JoinHandle<()>,
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.heartbeat.abort();
    }
}

impl Instance {
    /// Registers a new instance (its first heartbeat) and keeps its heartbeat going.
    pub async fn start(pool: PgPool) -> StoreResult<Self> {
        let id = Uuid::new_v4();
        beat(&pool, id).await?;
        let heartbeat = tokio::spawn(async move {
            let mut tick = tokio::time::interval(HEARTBEAT_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = beat(&pool, id).await {
                    tracing::warn!(error = %e, "could not write this instance's heartbeat");
                }
            }
        });
        Ok(Self { id, heartbeat })
    }
}

async fn beat(pool: &PgPool, id: Uuid) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO instances (id) VALUES ($1)
         ON CONFLICT (id) DO UPDATE SET heartbeat_at = now()",
    )
    .bind(id)
    .execute(pool)
    .await?;
    Ok(())
}

/// Fails up to [`BATCH`] /sync records still `processing` whose instance's heartbeat is
/// older than [`STALE_AFTER`] (or whose instance is unknown); returns how many.
pub(super) async fn fail_interrupted(c: &mut PgConnection, d: &mut Deltas) -> StoreResult<u64> {
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "SELECT r.id FROM requests r
         WHERE r.state = $1 AND r.instance_id IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM instances i
                           WHERE i.id = r.instance_id
                             AND i.heartbeat_at > now() - $2::bigint * interval '1 millisecond')
         LIMIT $3 FOR UPDATE OF r SKIP LOCKED",
    )
    .bind(state_code(Mode::Sync, RequestStatus::Processing, None) as i16)
    .bind(STALE_AFTER.as_millis() as i64)
    .bind(BATCH)
    .fetch_all(&mut *c)
    .await?;
    for id in &ids {
        transition(
            c,
            d,
            *id,
            "status = 'failed', completed_at = $2, error = $3",
            |q| q.bind(super::ms(chrono::Utc::now())).bind(INTERRUPTED),
        )
        .await?;
    }
    // Instances gone for a day have no records left to answer for.
    sqlx::query("DELETE FROM instances WHERE heartbeat_at < now() - interval '1 day'")
        .execute(&mut *c)
        .await?;
    Ok(ids.len() as u64)
}
