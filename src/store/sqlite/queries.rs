//! The read queries, run on a read-only connection (see [`reads`](super::reads)).
//!
//! GET /requests (SPEC §12): one query shape per filter set, each served by an index
//! whose entries are (tenant?, state, created_at, id), so a page never reads more rows
//! than it skips and shows, plus one per state. The filters on mode, status and callback
//! status are a list of state codes (all 16 without a filter); each code is a range of
//! the index, and SQLite merges the ranges in
//! order (a compound `UNION ALL … ORDER BY` becomes a merge of ordered co-routines), so
//! the newest-first order costs no sort. The total comes from the kept counts, read in
//! the same transaction as the page.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Row, ToSql, params, params_from_iter};
use uuid::Uuid;

use crate::store::*;

fn opt_time(ms: Option<i64>) -> StoreResult<Option<DateTime<Utc>>> {
    ms.map(from_millis).transpose()
}

fn summary(r: &Row<'_>) -> StoreResult<RequestSummary> {
    Ok(RequestSummary {
        id: parse_uuid(&r.get::<_, String>("id")?)?,
        tenant: r.get("tenant")?,
        mode: parse_enum(&r.get::<_, String>("mode")?, Mode::parse)?,
        status: parse_enum(&r.get::<_, String>("status")?, RequestStatus::parse)?,
        created_at: from_millis(r.get("created_at")?)?,
        completed_at: opt_time(r.get("completed_at")?)?,
        callback_status: r
            .get::<_, Option<String>>("callback_status")?
            .map(|s| parse_enum(&s, CallbackStatus::parse))
            .transpose()?,
        work: r.get("work")?,
    })
}

fn record(r: &Row<'_>) -> StoreResult<RequestRecord> {
    let s = summary(r)?;
    Ok(RequestRecord {
        id: s.id,
        tenant: s.tenant,
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
        callback_next_attempt_at: None,
        trace_id: r.get("trace_id")?,
        attempts: Vec::new(),
        work: s.work,
        work_attempts: r.get("work_attempts")?,
        attempts_total: 0,
    })
}

fn attempt(r: &Row<'_>) -> StoreResult<AttemptRecord> {
    Ok(AttemptRecord {
        attempt: r.get::<_, i64>("attempt")? as u32,
        started_at: from_millis(r.get("started_at")?)?,
        duration_ms: r.get("duration_ms")?,
        status_code: r.get::<_, Option<i64>>("status_code")?.map(|c| c as u16),
        error: r.get("error")?,
        trigger: parse_enum(&r.get::<_, String>("triggered_by")?, Trigger::parse)?,
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

pub(super) fn get_request(
    c: &Connection,
    id: Uuid,
    scope: &Scope,
    now: i64,
) -> StoreResult<Option<RequestRecord>> {
    let tx = c.unchecked_transaction()?;
    let id = id.to_string();
    let mut stmt = tx.prepare_cached("SELECT * FROM requests WHERE id = ?1")?;
    let Some(mut found) = stmt.query(params![id])?.next()?.map(record).transpose()? else {
        return Ok(None);
    };
    if !scope.sees(&found.tenant) {
        return Ok(None);
    }
    let mut stmt = tx.prepare_cached(
        "SELECT * FROM (SELECT * FROM attempts WHERE request_id = ?1 ORDER BY attempt DESC LIMIT ?2)
         ORDER BY attempt",
    )?;
    found.attempts = collect(stmt.query(params![id, RECORD_ATTEMPTS as i64])?, attempt)?;
    found.attempts_total = tx
        .prepare_cached("SELECT count(*) FROM attempts WHERE request_id = ?1")?
        .query_row(params![id], |r| r.get::<_, i64>(0))? as u64;
    if found.callback_status == Some(CallbackStatus::Pending) {
        plan_of(&tx, &id, now, &mut found)?;
    }
    Ok(Some(found))
}

/// See `Store::attempts_after`.
pub(super) fn attempts_after(
    c: &Connection,
    id: Uuid,
    scope: &Scope,
    after: u32,
    limit: usize,
) -> StoreResult<Option<Vec<AttemptRecord>>> {
    let id = id.to_string();
    let tenant: Option<String> = c
        .prepare_cached("SELECT tenant FROM requests WHERE id = ?1")?
        .query_row(params![id], |r| r.get(0))
        .optional()?;
    if !tenant.is_some_and(|t| scope.sees(&t)) {
        return Ok(None);
    }
    let mut stmt = c.prepare_cached(
        "SELECT * FROM attempts WHERE request_id = ?1 AND attempt > ?2 ORDER BY attempt LIMIT ?3",
    )?;
    Ok(Some(collect(
        stmt.query(params![id, after, limit as i64])?,
        attempt,
    )?))
}

/// Fills in the next planned attempt of a pending callback, and why it waits when its
/// destination's circuit is open (SPEC §8 "What the record shows").
fn plan_of(c: &Connection, id: &str, now: i64, record: &mut RequestRecord) -> StoreResult<()> {
    let row = c
        .prepare_cached(
            "SELECT j.run_at, j.lease_token, d.blocked_until, d.blocked_reason
             FROM jobs j LEFT JOIN destinations d ON d.id = j.destination_id
             WHERE j.request_id = ?1",
        )?
        .query_row(params![id], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, Option<i64>>(2)?,
                r.get::<_, Option<String>>(3)?,
            ))
        })
        .optional()?;
    let Some((run_at, token, blocked_until, reason)) = row else {
        return Ok(());
    };
    let running = token.is_some() && run_at > now;
    if running {
        return Ok(());
    }
    let blocked = blocked_until.filter(|until| *until > now);
    record.callback_next_attempt_at = Some(from_millis(run_at.max(blocked.unwrap_or(0)))?);
    if let (Some(_), Some(reason)) = (blocked, reason) {
        record.callback_last_error = Some(format!("circuit open: {reason}"));
    }
    Ok(())
}

/// The arguments of one list statement, numbered in the order they are pushed.
#[derive(Default)]
struct Args(Vec<Box<dyn ToSql>>);

impl Args {
    fn push(&mut self, v: impl ToSql + 'static) -> String {
        self.0.push(Box::new(v));
        format!("?{}", self.0.len())
    }
}

pub(super) fn list_requests(c: &Connection, f: &ListFilter) -> StoreResult<Page> {
    let states = f.states();
    let tx = c.unchecked_transaction()?;
    let total = total(&tx, f, f.is_filtered().then_some(&states))?;
    if f.is_filtered() && states.is_empty() {
        return Ok(Page {
            requests: Vec::new(),
            total,
            next: None,
        });
    }
    let mut args = Args::default();
    let works = f.work_values().unwrap_or_else(|| vec![Some("")]);
    let arms: Vec<String> = states
        .iter()
        .flat_map(|s| works.iter().map(move |w| (*s, *w)))
        .map(|(s, w)| arm(&mut args, f, s, w))
        .collect();
    let limit = args.push(f.limit as i64 + 1);
    let offset = args.push(match f.start {
        PageStart::Offset(n) => n.min(i64::MAX as u64) as i64,
        PageStart::After(_) => 0,
    });
    let sql = format!(
        "SELECT r.id, r.tenant, r.mode, r.status, r.created_at, r.completed_at, r.callback_status,
                r.work
         FROM ({} ORDER BY created_at DESC, id DESC LIMIT {limit} OFFSET {offset}) p
         JOIN requests r ON r.id = p.id
         ORDER BY p.created_at DESC, p.id DESC",
        arms.join(" UNION ALL ")
    );
    let mut stmt = tx.prepare_cached(&sql)?;
    let requests = collect(stmt.query(params_from_iter(args.0.iter()))?, summary)?;
    Ok(Page::of(requests, f.limit, total))
}

/// One index range: the scope's records in one state (and with one value of `work` when
/// the filter names a work: `None` for `work IS NULL`), after the cursor.
fn arm(args: &mut Args, f: &ListFilter, state: i64, work: Option<&str>) -> String {
    let mut conds = Vec::new();
    if let Scope::Tenant(t) = &f.scope {
        conds.push(format!("tenant = {}", args.push(t.clone())));
    }
    if f.work.is_some() {
        conds.push(match work {
            Some(w) => format!("work = {}", args.push(w.to_owned())),
            None => "work IS NULL".to_owned(),
        });
    }
    conds.push(format!("state = {}", args.push(state)));
    if let PageStart::After(k) = f.start {
        let at = args.push(k.created_at.timestamp_millis());
        let id = args.push(k.id.to_string());
        conds.push(format!("(created_at, id) < ({at}, {id})"));
    }
    format!(
        "SELECT id, created_at FROM requests WHERE {}",
        conds.join(" AND ")
    )
}

/// The number of records in scope (in the given states, of the filter's work), from the
/// kept counts.
fn total(c: &Connection, f: &ListFilter, states: Option<&Vec<i64>>) -> StoreResult<u64> {
    let mut args = Args::default();
    let mut conds = Vec::new();
    if let Scope::Tenant(t) = &f.scope {
        conds.push(format!("tenant = {}", args.push(t.clone())));
    }
    let table = match &f.work {
        Some(work) => {
            conds.push(format!("work = {}", args.push(work.clone())));
            "work_counts"
        }
        None => "request_counts",
    };
    if let Some(states) = states {
        let list: Vec<String> = states.iter().map(|s| args.push(*s)).collect();
        conds.push(format!("state IN ({})", list.join(", ")));
    }
    let filter = match conds.is_empty() {
        true => String::new(),
        false => format!("WHERE {}", conds.join(" AND ")),
    };
    let n: i64 = c
        .prepare_cached(&format!("SELECT coalesce(sum(n), 0) FROM {table} {filter}"))?
        .query_row(params_from_iter(args.0.iter()), |r| r.get(0))?;
    Ok(n.max(0) as u64)
}

/// See `Store::waiting_deliveries`.
pub(super) fn waiting_deliveries(c: &Connection, destination: i64, until: i64) -> StoreResult<u64> {
    let n: i64 = c
        .prepare_cached(
            "SELECT count(*) FROM jobs
             WHERE phase = 1 AND destination_id = ?1 AND run_at < ?2 AND lease_token IS NULL",
        )?
        .query_row(params![destination, until], |r| r.get(0))?;
    Ok(n as u64)
}

/// Destinations whose circuit is open or being probed.
pub(super) fn circuits_open(c: &Connection, now: i64) -> StoreResult<u64> {
    let n: i64 = c
        .prepare_cached("SELECT count(*) FROM destinations WHERE blocked_until > ?1")?
        .query_row(params![now], |r| r.get(0))?;
    Ok(n as u64)
}

/// Jobs in their work phase by the work their request names (`Store::pending_works`).
pub(super) fn pending_works(c: &Connection) -> StoreResult<Vec<(String, u64)>> {
    let mut stmt = c.prepare_cached(
        "SELECT r.work, count(*) FROM jobs j JOIN requests r ON r.id = j.request_id
         WHERE j.phase = 0 AND r.work IS NOT NULL AND r.work <> 'text' GROUP BY r.work",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The database answers and is migrated.
pub(super) fn ping(c: &Connection) -> StoreResult<()> {
    c.prepare_cached("SELECT 1 FROM settings LIMIT 1")?
        .query_row([], |_| Ok(()))
        .optional()?;
    Ok(())
}
