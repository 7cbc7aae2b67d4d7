//! Reading records (SPEC §2, §10, §12): one record with its attempts and delivery plan,
//! and pages of GET /requests.
//!
//! A page is one statement per filter set: each state the filters match (all 16 without
//! a filter) is a range of `requests_by_tenant_state` (or `requests_by_state` across
//! tenants), limited to the page's depth and written as a
//! parenthesised `SELECT … ORDER BY` arm so that the planner merges the ranges in order
//! (Merge Append) and stops after the page; only the page's rows are then read from the
//! table. The total comes from the kept counts in the same snapshot (REPEATABLE READ).

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgArguments, PgConnection, PgRow};
use sqlx::{Arguments, Row};
use uuid::Uuid;

use crate::store::*;

pub(super) async fn get(
    c: &mut PgConnection,
    id: Uuid,
    scope: &Scope,
) -> StoreResult<Option<RequestRecord>> {
    let Some(row) = sqlx::query("SELECT * FROM requests WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *c)
        .await?
    else {
        return Ok(None);
    };
    let mut record = record_from_row(&row)?;
    if !scope.sees(&record.tenant) {
        return Ok(None);
    }
    let attempts = sqlx::query(
        "SELECT * FROM (SELECT * FROM attempts WHERE request_id = $1 ORDER BY attempt DESC LIMIT $2) a
         ORDER BY attempt",
    )
    .bind(id)
    .bind(RECORD_ATTEMPTS as i64)
    .fetch_all(&mut *c)
    .await?;
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM attempts WHERE request_id = $1")
        .bind(id)
        .fetch_one(&mut *c)
        .await?;
    record.attempts_total = total as u64;
    record.attempts = attempts
        .iter()
        .map(attempt_from_row)
        .collect::<StoreResult<_>>()?;
    if record.callback_status == Some(CallbackStatus::Pending) {
        plan_of(c, id, &mut record).await?;
    }
    Ok(Some(record))
}

/// The next planned attempt of a pending callback, and why it waits when its
/// destination's circuit is open (SPEC §8 "What the record shows").
async fn plan_of(c: &mut PgConnection, id: Uuid, record: &mut RequestRecord) -> StoreResult<()> {
    let row = sqlx::query(
        "SELECT (j.lease_token IS NOT NULL AND j.run_at > now()) AS running,
                greatest(j.run_at, CASE WHEN d.blocked_until > now() THEN d.blocked_until END) AS next_at,
                CASE WHEN d.blocked_until > now() THEN d.blocked_reason END AS blocked_reason
         FROM jobs j LEFT JOIN destinations d ON d.id = j.destination_id
         WHERE j.request_id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *c)
    .await?;
    let Some(row) = row else { return Ok(()) };
    if row.try_get::<bool, _>("running")? {
        return Ok(());
    }
    let next: DateTime<Utc> = row.try_get("next_at")?;
    record.callback_next_attempt_at = Some(super::ms(next));
    if let Some(reason) = row.try_get::<Option<String>, _>("blocked_reason")? {
        record.callback_last_error = Some(format!("circuit open: {reason}"));
    }
    Ok(())
}

/// Numbered arguments of one list statement.
#[derive(Default)]
struct Args {
    args: PgArguments,
    n: usize,
}

impl Args {
    fn push<'q, T>(&mut self, v: T) -> String
    where
        T: sqlx::Encode<'q, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send + 'q,
    {
        self.args.add(v).expect("an encodable argument");
        self.n += 1;
        format!("${}", self.n)
    }
}

pub(super) async fn list(c: &mut PgConnection, f: ListFilter) -> StoreResult<Page> {
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *c)
        .await?;
    let states = f.states();
    let total = total(c, &f, f.is_filtered().then_some(&states)).await?;
    if f.is_filtered() && states.is_empty() {
        return Ok(Page {
            requests: Vec::new(),
            total,
            next: None,
        });
    }
    // The numbers are written into the statement (they are ours, not the caller's text):
    // with a parameter, PostgreSQL's generic plan could not see how few rows each arm
    // needs and would sort whole ranges instead of reading the index in order.
    let limit = u64::from(f.limit) + 1;
    let offset = match f.start {
        PageStart::Offset(n) => n,
        PageStart::After(_) => 0,
    };
    let mut args = Args::default();
    let works = f.work_values().unwrap_or_else(|| vec![Some("")]);
    let arms: Vec<String> = states
        .iter()
        .flat_map(|s| works.iter().map(move |w| (*s, *w)))
        .map(|(s, w)| arm(&mut args, &f, (s, w), limit + offset))
        .collect();
    let sql = format!(
        "SELECT r.id, r.tenant, r.mode, r.status, r.created_at, r.completed_at, r.callback_status,
                r.work
         FROM (SELECT id, created_at FROM ({}) u
               ORDER BY created_at DESC, id DESC LIMIT {limit} OFFSET {offset}) p
         JOIN requests r ON r.id = p.id
         ORDER BY p.created_at DESC, p.id DESC",
        arms.join(" UNION ALL ")
    );
    let rows = sqlx::query_with(sqlx::AssertSqlSafe(sql), args.args)
        .fetch_all(&mut *c)
        .await?;
    let requests = rows
        .iter()
        .map(summary_from_row)
        .collect::<StoreResult<Vec<_>>>()?;
    Ok(Page::of(requests, f.limit, total))
}

/// One ordered index range: the scope's records in one state (and with one value of
/// `work` when the filter names a work: `None` for `work IS NULL`), after the cursor, at
/// most `depth` of them (a page never needs more from one range).
fn arm(args: &mut Args, f: &ListFilter, range: (i64, Option<&str>), depth: u64) -> String {
    let (state, work) = range;
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
    conds.push(format!("state = {}", args.push(state as i16)));
    if let PageStart::After(k) = f.start {
        let at = args.push(super::ms(k.created_at));
        let id = args.push(k.id);
        conds.push(format!("(created_at, id) < ({at}, {id})"));
    }
    format!(
        "(SELECT id, created_at FROM requests WHERE {} ORDER BY created_at DESC, id DESC LIMIT {depth})",
        conds.join(" AND ")
    )
}

/// The number of records in scope (in the given states, of the filter's work), from the
/// kept counts.
async fn total(
    c: &mut PgConnection,
    f: &ListFilter,
    states: Option<&Vec<i64>>,
) -> StoreResult<u64> {
    let tenant = match &f.scope {
        Scope::Tenant(t) => Some(t.as_str()),
        Scope::All => None,
    };
    let states: Option<Vec<i16>> = states.map(|s| s.iter().map(|v| *v as i16).collect());
    let sql = match &f.work {
        Some(_) => {
            "SELECT coalesce(sum(n), 0)::bigint FROM work_counts
             WHERE ($1::text IS NULL OR tenant = $1) AND ($2::smallint[] IS NULL OR state = ANY($2))
               AND work = $3"
        }
        None => {
            "SELECT coalesce(sum(n), 0)::bigint FROM request_counts
             WHERE ($1::text IS NULL OR tenant = $1) AND ($2::smallint[] IS NULL OR state = ANY($2))"
        }
    };
    let mut query = sqlx::query_scalar(sql).bind(tenant).bind(states);
    if let Some(work) = &f.work {
        query = query.bind(work);
    }
    let n: i64 = query.fetch_one(&mut *c).await?;
    Ok(n.max(0) as u64)
}

fn summary_from_row(row: &PgRow) -> StoreResult<RequestSummary> {
    Ok(RequestSummary {
        id: row.try_get("id")?,
        tenant: row.try_get("tenant")?,
        mode: parse_enum(row.try_get("mode")?, Mode::parse)?,
        status: parse_enum(row.try_get("status")?, RequestStatus::parse)?,
        created_at: row.try_get("created_at")?,
        completed_at: row.try_get::<Option<DateTime<Utc>>, _>("completed_at")?,
        callback_status: row
            .try_get::<Option<&str>, _>("callback_status")?
            .map(|s| parse_enum(s, CallbackStatus::parse))
            .transpose()?,
        work: row.try_get("work")?,
    })
}

fn record_from_row(row: &PgRow) -> StoreResult<RequestRecord> {
    let s = summary_from_row(row)?;
    Ok(RequestRecord {
        id: s.id,
        tenant: s.tenant,
        mode: s.mode,
        status: s.status,
        created_at: s.created_at,
        completed_at: s.completed_at,
        callback_status: s.callback_status,
        input_data: row.try_get("input_data")?,
        output_data: row.try_get("output_data")?,
        error: row.try_get("error")?,
        callback_url: row.try_get("callback_url")?,
        callback_attempts: row.try_get::<i32, _>("callback_attempts")? as u32,
        callback_last_error: row.try_get("callback_last_error")?,
        callback_sent_at: row.try_get("callback_sent_at")?,
        callback_next_attempt_at: None,
        trace_id: row.try_get("trace_id")?,
        attempts: Vec::new(),
        work: s.work,
        work_attempts: row.try_get("work_attempts")?,
        attempts_total: 0,
    })
}

/// See `Store::attempts_after`.
pub(super) async fn attempts_after(
    c: &mut PgConnection,
    id: Uuid,
    scope: &Scope,
    after: u32,
    limit: usize,
) -> StoreResult<Option<Vec<AttemptRecord>>> {
    let tenant: Option<String> = sqlx::query_scalar("SELECT tenant FROM requests WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *c)
        .await?;
    if !tenant.is_some_and(|t| scope.sees(&t)) {
        return Ok(None);
    }
    let rows = sqlx::query(
        "SELECT * FROM attempts WHERE request_id = $1 AND attempt > $2 ORDER BY attempt LIMIT $3",
    )
    .bind(id)
    .bind(after as i32)
    .bind(limit as i64)
    .fetch_all(&mut *c)
    .await?;
    Ok(Some(
        rows.iter()
            .map(attempt_from_row)
            .collect::<StoreResult<_>>()?,
    ))
}

fn attempt_from_row(row: &PgRow) -> StoreResult<AttemptRecord> {
    Ok(AttemptRecord {
        attempt: row.try_get::<i32, _>("attempt")? as u32,
        started_at: row.try_get("started_at")?,
        duration_ms: row.try_get("duration_ms")?,
        status_code: row
            .try_get::<Option<i32>, _>("status_code")?
            .map(|c| c as u16),
        error: row.try_get("error")?,
        trigger: parse_enum(row.try_get("triggered_by")?, Trigger::parse)?,
    })
}
