//! Kept counts on SQLite (SPEC §12): read once at start, changed by the writer at the end
//! of every batch, in its transaction (one writer, so shard 0 is the only shard).

use rusqlite::{Connection, params};

use crate::store::StoreResult;
use crate::store::counts::{CountsMirror, Deltas};
use crate::store::model::backlog_states;

/// The committed record counts. The backlog's states are checked against the records
/// themselves (an index range, not a scan of the table) and repaired if they disagree,
/// so that the limits of SPEC §9 start from the truth.
pub(super) fn load(c: &Connection) -> StoreResult<CountsMirror> {
    repair_backlog(c)?;
    let mut stmt = c.prepare("SELECT tenant, state, n FROM request_counts")?;
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<Vec<(String, i64, i64)>, _>>()?;
    Ok(CountsMirror::from_rows(rows))
}

fn repair_backlog(c: &Connection) -> StoreResult<()> {
    for state in backlog_states() {
        let mut stmt =
            c.prepare("SELECT tenant, count(*) FROM requests WHERE state = ?1 GROUP BY tenant")?;
        let actual = stmt
            .query_map(params![state], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let kept: i64 = c.query_row(
            "SELECT coalesce(sum(n), 0) FROM request_counts WHERE state = ?1",
            params![state],
            |r| r.get(0),
        )?;
        if kept == actual.iter().map(|(_, n)| n).sum::<i64>() {
            continue;
        }
        tracing::warn!(
            state,
            kept,
            "kept counts disagreed with the records; repaired"
        );
        c.execute(
            "DELETE FROM request_counts WHERE state = ?1",
            params![state],
        )?;
        for (tenant, n) in actual {
            c.execute(
                "INSERT INTO request_counts (tenant, state, shard, n) VALUES (?1, ?2, 0, ?3)",
                params![tenant, state, n],
            )?;
        }
    }
    Ok(())
}

/// Adds a batch's changes to the count rows and the per-minute callback figures.
pub(super) fn apply(c: &Connection, d: &Deltas) -> StoreResult<()> {
    let mut counts = c.prepare_cached(
        "INSERT INTO request_counts (tenant, state, shard, n) VALUES (?1, ?2, 0, ?3)
         ON CONFLICT (tenant, state, shard) DO UPDATE SET n = n + excluded.n",
    )?;
    for (tenant, state, n) in d.count_rows() {
        counts.execute(params![tenant, state, n])?;
    }
    let mut works = c.prepare_cached(
        "INSERT INTO work_counts (tenant, work, state, shard, n) VALUES (?1, ?2, ?3, 0, ?4)
         ON CONFLICT (tenant, work, state, shard) DO UPDATE SET n = n + excluded.n",
    )?;
    for (tenant, work, state, n) in d.work_rows() {
        works.execute(params![tenant, work, state, n])?;
    }
    let mut minutes = c.prepare_cached(
        "INSERT INTO callback_minutes (tenant, minute, shard, delivered, failed)
         VALUES (?1, ?2, 0, ?3, ?4)
         ON CONFLICT (minute, tenant, shard) DO UPDATE
         SET delivered = delivered + excluded.delivered, failed = failed + excluded.failed",
    )?;
    for (tenant, minute, delivered, failed) in d.minute_rows() {
        minutes.execute(params![tenant, minute, delivered, failed])?;
    }
    Ok(())
}
