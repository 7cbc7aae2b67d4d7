//! The read queries, run on a read-only connection (see [`reads`](super::reads)).

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Row, params};
use uuid::Uuid;

use crate::store::*;

fn opt_time(ms: Option<i64>) -> StoreResult<Option<DateTime<Utc>>> {
    ms.map(from_millis).transpose()
}

fn summary(r: &Row<'_>) -> StoreResult<RequestSummary> {
    Ok(RequestSummary {
        id: parse_uuid(&r.get::<_, String>("id")?)?,
        mode: parse_enum(&r.get::<_, String>("mode")?, Mode::parse)?,
        status: parse_enum(&r.get::<_, String>("status")?, RequestStatus::parse)?,
        created_at: from_millis(r.get("created_at")?)?,
        completed_at: opt_time(r.get("completed_at")?)?,
        callback_status: r
            .get::<_, Option<String>>("callback_status")?
            .map(|s| parse_enum(&s, CallbackStatus::parse))
            .transpose()?,
    })
}

fn record(r: &Row<'_>) -> StoreResult<RequestRecord> {
    let s = summary(r)?;
    Ok(RequestRecord {
        id: s.id,
        mode: s.mode,
        status: s.status,
        created_at: s.created_at,
        completed_at: s.completed_at,
        callback_status: s.callback_status,
        input_data: r.get("input_data")?,
        output_data: r.get("output_data")?,
        error: r.get("error")?,
        callback_url: r.get("callback_url")?,
        callback_attempts: r.get::<_, i64>("callback_attempts")? as u32,
        callback_last_error: r.get("callback_last_error")?,
        callback_sent_at: opt_time(r.get("callback_sent_at")?)?,
        trace_id: r.get("trace_id")?,
        attempts: Vec::new(),
    })
}

fn attempt(r: &Row<'_>) -> StoreResult<AttemptRecord> {
    Ok(AttemptRecord {
        attempt: r.get::<_, i64>("attempt")? as u32,
        started_at: from_millis(r.get("started_at")?)?,
        duration_ms: r.get("duration_ms")?,
        status_code: r.get::<_, Option<i64>>("status_code")?.map(|c| c as u16),
        error: r.get("error")?,
    })
}

/// Collects rows through a fallible mapping.
fn collect<T>(
    mut rows: rusqlite::Rows<'_>,
    map: fn(&Row<'_>) -> StoreResult<T>,
) -> StoreResult<Vec<T>> {
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(map(row)?);
    }
    Ok(out)
}

pub(super) fn get_request(c: &Connection, id: Uuid) -> StoreResult<Option<RequestRecord>> {
    let id = id.to_string();
    let mut stmt = c.prepare_cached("SELECT * FROM requests WHERE id = ?1")?;
    let Some(mut found) = stmt.query(params![id])?.next()?.map(record).transpose()? else {
        return Ok(None);
    };
    let mut stmt =
        c.prepare_cached("SELECT * FROM attempts WHERE request_id = ?1 ORDER BY attempt")?;
    found.attempts = collect(stmt.query(params![id])?, attempt)?;
    Ok(Some(found))
}

/// Each filter is `(? IS NULL OR col = ?)`, so one statement serves every combination.
const FILTER: &str = "WHERE (?1 IS NULL OR mode = ?1) AND (?2 IS NULL OR status = ?2)
                        AND (?3 IS NULL OR callback_status = ?3)";

pub(super) fn list_requests(c: &Connection, f: &ListFilter) -> StoreResult<Page> {
    let (mode, status, callback_status) = (
        f.mode.map(Mode::as_str),
        f.status.map(RequestStatus::as_str),
        f.callback_status.map(CallbackStatus::as_str),
    );
    let total: i64 = c
        .prepare_cached(&format!("SELECT count(*) FROM requests {FILTER}"))?
        .query_row(params![mode, status, callback_status], |r| r.get(0))?;
    let mut stmt = c.prepare_cached(&format!(
        "SELECT id, mode, status, created_at, completed_at, callback_status FROM requests {FILTER}
         ORDER BY created_at DESC, id DESC LIMIT ?4 OFFSET ?5"
    ))?;
    let rows = stmt.query(params![
        mode,
        status,
        callback_status,
        f.limit as i64,
        f.offset.min(i64::MAX as u64) as i64
    ])?;
    Ok(Page {
        requests: collect(rows, summary)?,
        total: total as u64,
    })
}

/// An unleased job is due at `run_at`; a leased one when its lease expires.
pub(super) fn next_due_at(c: &Connection) -> StoreResult<Option<DateTime<Utc>>> {
    let next: Option<i64> = c
        .prepare_cached(
            "SELECT min(CASE WHEN lease_until IS NULL THEN run_at ELSE max(run_at, lease_until) END) FROM jobs",
        )?
        .query_row([], |r| r.get(0))?;
    opt_time(next)
}

pub(super) fn job_counts(c: &Connection, now_ms: i64) -> StoreResult<JobCounts> {
    let (processing, pending) = c
        .prepare_cached(
            "SELECT coalesce(sum(lease_until > ?1), 0), coalesce(sum(lease_until IS NULL OR lease_until <= ?1), 0)
             FROM jobs",
        )?
        .query_row(params![now_ms], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))?;
    Ok(JobCounts {
        pending: pending as u64,
        processing: processing as u64,
    })
}

/// The database answers and is migrated.
pub(super) fn ping(c: &Connection) -> StoreResult<()> {
    c.prepare_cached("SELECT 1 FROM settings LIMIT 1")?
        .query_row([], |_| Ok(()))
        .optional()?;
    Ok(())
}
