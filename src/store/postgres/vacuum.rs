//! Tables kept in shape on PostgreSQL: `VACUUM jobs` whenever its dead rows pile up, and
//! `ANALYZE` of the record tables whenever they have doubled since their last analysis.
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
//! So every instance reads the tables' statistics every [`CHECK_EVERY`] and, past
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

/// How often the tables' statistics are read.
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// Dead job rows tolerated before a vacuum.
const DEAD_ROWS: i64 = 10_000;
/// Fewest rows for which a record table is analysed.
const ANALYZE_FLOOR: i64 = 1_000;
const VACUUM_JOBS: &str = "VACUUM (SKIP_LOCKED, TRUNCATE false) jobs";
/// The record tables analysed here, with the statement that does it; the job queue's
/// plans read its indexes at any size.
const ANALYZED: [(&str, &str); 2] = [
    ("requests", "ANALYZE (SKIP_LOCKED) requests"),
    ("attempts", "ANALYZE (SKIP_LOCKED) attempts"),
];

/// What PostgreSQL's statistics say of one table.
#[derive(Debug, sqlx::FromRow)]
struct Table {
    name: String,
    live: i64,
    dead: i64,
    /// Rows at its last analysis or vacuum (by anyone: autovacuum's count); -1 if never.
    analysed_rows: i64,
}

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
                if let Err(e) = keep(&pool).await {
                    tracing::debug!(error = %e, "could not read the tables' statistics");
                }
            }
        });
        Self(task.abort_handle())
    }
}

/// Reads the statistics of `jobs` and the record tables in one statement, and runs
/// what they call for.
async fn keep(pool: &PgPool) -> Result<(), sqlx::Error> {
    let tables: Vec<Table> = sqlx::query_as(
        "SELECT s.relname::text AS name, s.n_live_tup AS live, s.n_dead_tup AS dead,
                c.reltuples::bigint AS analysed_rows
         FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
         WHERE s.relid = ANY($1::text[]::regclass[])",
    )
    .bind(["jobs", ANALYZED[0].0, ANALYZED[1].0])
    .fetch_all(pool)
    .await?;
    for statement in due(&tables) {
        if let Err(e) = quietly(pool, statement).await {
            tracing::debug!(error = %e, statement, "could not keep a table in shape");
        }
    }
    Ok(())
}

/// The statements `tables` call for: `VACUUM jobs` past [`DEAD_ROWS`] dead rows (and more
/// dead than live), and `ANALYZE` of each record table that holds twice the rows of its
/// last analysis, or never had one and holds [`ANALYZE_FLOOR`].
fn due(tables: &[Table]) -> Vec<&'static str> {
    let mut due = Vec::new();
    for t in tables {
        if t.name == "jobs" && t.dead >= DEAD_ROWS.max(t.live) {
            due.push(VACUUM_JOBS);
        }
        let analyze = ANALYZED.iter().find(|(name, _)| *name == t.name);
        if let Some((_, statement)) = analyze
            && t.live >= ANALYZE_FLOOR.max(2 * t.analysed_rows)
        {
            due.push(*statement);
        }
    }
    due
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
    let reset = sqlx::query("RESET client_min_messages")
        .execute(&mut *c)
        .await;
    if reset.is_err() {
        // Never back into the pool still deaf to warnings.
        c.close_on_drop();
    }
    reset?;
    done.map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(name: &str, live: i64, dead: i64, analysed_rows: i64) -> Table {
        Table {
            name: name.to_owned(),
            live,
            dead,
            analysed_rows,
        }
    }

    #[test]
    fn the_queue_is_vacuumed_past_its_dead_rows_and_records_analysed_as_they_double() {
        let cases = [
            // (table, what is due)
            (table("jobs", 500, 9_999, 0), vec![]),
            (table("jobs", 500, 10_000, 0), vec![VACUUM_JOBS]),
            (table("jobs", 20_000, 15_000, 0), vec![]),
            (table("jobs", 5_000_000, 0, -1), vec![]),
            (table("requests", 999, 0, -1), vec![]),
            (table("requests", 1_000, 0, -1), vec![ANALYZED[0].1]),
            (table("requests", 1_500, 90_000, 1_500), vec![]),
            (table("requests", 2_999, 0, 1_500), vec![]),
            (table("attempts", 3_000, 0, 1_500), vec![ANALYZED[1].1]),
        ];
        for (t, expected) in cases {
            assert_eq!(due(std::slice::from_ref(&t)), expected, "{t:?}");
        }
    }
}
