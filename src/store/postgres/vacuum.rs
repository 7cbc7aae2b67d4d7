//! Tables kept in shape on PostgreSQL: `VACUUM jobs` whenever its dead rows pile up, and
//! `ANALYZE` of the record tables whenever they have changed by more than their size at
//! the last analysis.
//!
//! Every async request leaves three dead versions of its job row (leased, moved to its
//! delivery, deleted) and, as none of those updates is HOT, as many dead entries in each
//! of the queue's indexes. Claims read those indexes from their oldest end, where the
//! dead entries are: marked dead after the first visit, they still stay on their pages
//! until a vacuum removes them, because new entries go to the other end of the index and
//! never make those pages split. Measured at 2,000 requests a second: after 30 s the
//! work-phase skip scan read 317 pages of dead entries to find none, 3.3 ms a claim, and
//! claims took a third of the database's time. Autovacuum visits a database at most once
//! a minute (`autovacuum_naptime`), which at that rate is 360,000 dead versions.
//!
//! So every instance looks at the table's dead-row count every [`CHECK_EVERY`] and, past
//! [`DEAD_ROWS`] (and more dead rows than live ones), vacuums it. The table holds only
//! unfinished jobs, so a vacuum reads little; `SKIP_LOCKED` makes it give way at once to
//! anything holding a conflicting lock (another instance's vacuum, a migration).
//!
//! The records' statements are prepared once per connection, and PostgreSQL keeps a
//! generic plan of each after five runs until the table's statistics change. A plan
//! made while `requests` was nearly empty joins by reading the whole table: measured on
//! a fresh database at 2,000 requests a second, every batch of outcomes then read all
//! 60,000 records (5,684 pages, 14 ms a statement), and deliveries fell 30 s behind.
//! Without an analysis (autovacuum's first visit is up to a minute away, or never when
//! it is off) nothing replaces that plan. An `ANALYZE` does, in every connection: so
//! `requests` and `attempts` are analysed once they hold twice the rows they held at
//! their last analysis ([`ANALYZE_FLOOR`] at least): a few times while they are young,
//! rarely once they are large. (Analysing whenever they had changed by their size made
//! it every 3–6 s at 2,000 requests a second, 100–500 ms of a core each time.)

use std::time::Duration;

use sqlx::postgres::PgPool;
use tokio::task::AbortHandle;

/// How often the dead-row count is read.
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// Dead job rows tolerated before a vacuum.
const DEAD_ROWS: i64 = 10_000;
/// Fewest rows for which a record table is analysed.
const ANALYZE_FLOOR: i64 = 1_000;
/// The record tables analysed here, with the statement that does it; the job queue's
/// plans read its indexes at any size.
const ANALYZED: [(&str, &str); 2] = [
    ("requests", "ANALYZE (SKIP_LOCKED) requests"),
    ("attempts", "ANALYZE (SKIP_LOCKED) attempts"),
];

/// The background task; stopped when dropped (with the store).
pub(super) struct Vacuumer(AbortHandle);

impl Drop for Vacuumer {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Vacuumer {
    pub fn spawn(pool: PgPool) -> Self {
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(CHECK_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = vacuum_if_due(&pool).await {
                    tracing::debug!(error = %e, "could not vacuum the job queue");
                }
                if let Err(e) = analyze_if_due(&pool).await {
                    tracing::debug!(error = %e, "could not analyse the record tables");
                }
            }
        });
        Self(task.abort_handle())
    }
}

async fn vacuum_if_due(pool: &PgPool) -> Result<(), sqlx::Error> {
    let (dead, live): (i64, i64) = sqlx::query_as(
        "SELECT n_dead_tup, n_live_tup FROM pg_stat_user_tables
         WHERE relid = 'jobs'::regclass",
    )
    .fetch_one(pool)
    .await?;
    if dead < DEAD_ROWS.max(live) {
        return Ok(());
    }
    quietly(pool, "VACUUM (SKIP_LOCKED, TRUNCATE false) jobs").await
}

/// Analyses each of [`ANALYZED`] that holds twice the rows it held when last analysed
/// (by anyone: autovacuum's analyses count), or never was and holds [`ANALYZE_FLOOR`].
async fn analyze_if_due(pool: &PgPool) -> Result<(), sqlx::Error> {
    let due: Vec<(String,)> = sqlx::query_as(
        "SELECT s.relname::text FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
         WHERE s.relid = ANY($1::text[]::regclass[])
           AND s.n_live_tup >= greatest($2, 2 * c.reltuples::bigint)",
    )
    .bind(ANALYZED.map(|(table, _)| table))
    .bind(ANALYZE_FLOOR)
    .fetch_all(pool)
    .await?;
    for (table, analyze) in ANALYZED {
        if due.iter().any(|(t,)| t == table) {
            quietly(pool, analyze).await?;
        }
    }
    Ok(())
}

/// Runs `statement` on a connection that hears of nothing short of an error: a vacuum or
/// an analysis that gives way to another session's lock is expected beside other
/// instances, and PostgreSQL would send a warning of it that every log would repeat.
async fn quietly(pool: &PgPool, statement: &'static str) -> Result<(), sqlx::Error> {
    let mut c = pool.acquire().await?;
    sqlx::query("SET client_min_messages = error")
        .execute(&mut *c)
        .await?;
    let done = sqlx::query(statement).execute(&mut *c).await;
    sqlx::query("RESET client_min_messages")
        .execute(&mut *c)
        .await?;
    done.map(drop)
}
