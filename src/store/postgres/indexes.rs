//! Indexes built after the migrations, without blocking writes (SPEC §17: no migration
//! may lock the records table for long). A migration runs in a transaction, where
//! PostgreSQL cannot build an index concurrently; these are built here, on the migration
//! connection, one `CREATE INDEX CONCURRENTLY` each, while writes go on.
//!
//! Instances starting together take turns through a session advisory lock polled with
//! `pg_try_advisory_lock` (a blocked `pg_advisory_lock` would hold a snapshot that the
//! concurrent build waits for). A build that failed half-way leaves an invalid index,
//! which is dropped and built again.

use std::time::Duration;

use sqlx::postgres::PgConnection;

use crate::store::StoreResult;

/// The advisory lock key of these builds (any constant unlikely to clash).
const LOCK: i64 = 0x636f_6e73_756d_6109;

/// `(name, definition)`: the indexes of the `work=` filter of GET /requests (§13).
const INDEXES: [(&str, &str); 2] = [
    (
        "requests_by_work_state",
        "requests (work, state, created_at DESC, id DESC)",
    ),
    (
        "requests_by_tenant_work_state",
        "requests (tenant, work, state, created_at DESC, id DESC)",
    ),
];

/// Builds every index of [`INDEXES`] that is missing or invalid.
pub(super) async fn build(c: &mut PgConnection) -> StoreResult<()> {
    while !sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock($1)")
        .bind(LOCK)
        .fetch_one(&mut *c)
        .await?
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let built = build_all(c).await;
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(LOCK)
        .execute(&mut *c)
        .await?;
    built
}

async fn build_all(c: &mut PgConnection) -> StoreResult<()> {
    for (name, definition) in INDEXES {
        let valid: Option<bool> = sqlx::query_scalar(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass($1)",
        )
        .bind(name)
        .fetch_optional(&mut *c)
        .await?;
        match valid {
            Some(true) => continue,
            Some(false) => {
                tracing::warn!(
                    index = name,
                    "an index build was interrupted; building it again"
                );
                let drop = format!("DROP INDEX CONCURRENTLY IF EXISTS {name}");
                sqlx::raw_sql(sqlx::AssertSqlSafe(drop))
                    .execute(&mut *c)
                    .await?;
            }
            None => {}
        }
        // A fresh database says nothing (a start's stderr stays one line on errors).
        let records: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM requests)")
            .fetch_one(&mut *c)
            .await?;
        if records {
            tracing::info!(index = name, "building an index without blocking writes");
        }
        let create = format!("CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {definition}");
        sqlx::raw_sql(sqlx::AssertSqlSafe(create))
            .execute(&mut *c)
            .await?;
    }
    Ok(())
}
