//! The embedded SQLite store: the default, for one instance.
//!
//! SQLite has one writer at a time. Rather than let hundreds of tasks queue on its lock,
//! every write goes to one writer task that runs whatever has queued up meanwhile in one
//! transaction (group commit): one fsync (or, with `synchronous=NORMAL`, one WAL append)
//! for a whole batch. Each operation runs in a savepoint of its own, so one failing
//! operation does not undo the others, and its caller hears back only after the batch has
//! committed: an acknowledged request is on disk. Reads use a separate pool, which WAL
//! lets run beside the writer.
//!
//! Claiming is a write like any other: the single writer makes it exclusive, which is the
//! SQLite equivalent of PostgreSQL's `FOR UPDATE SKIP LOCKED`.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous as Sync,
};
use sqlx::{Connection, Row};
use tokio::sync::{Notify, mpsc, oneshot};
use uuid::Uuid;

use super::*;
use crate::config::SqliteSynchronous;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// Writes that may wait for the writer before callers are told to back off (503).
const WRITE_QUEUE: usize = 16_384;
/// Most operations committed in one transaction.
const MAX_BATCH: usize = 512;

type Completion = Box<dyn FnOnce(StoreResult<()>) + Send>;
/// One queued write: runs its statements, then says whether they succeeded and how to
/// tell its caller once the batch's commit is known.
type WriteOp =
    Box<dyn for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, (bool, Completion)> + Send>;

pub struct SqliteStore {
    reader: SqlitePool,
    writer: mpsc::Sender<WriteOp>,
    jobs: Arc<Notify>,
}

impl SqliteStore {
    /// Opens the database file (creating it and its folder), migrates it, and starts the
    /// writer task.
    pub async fn open(path: &Path, sync: SqliteSynchronous) -> StoreResult<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Unavailable(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let options = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match sync {
                SqliteSynchronous::Normal => Sync::Normal,
                SqliteSynchronous::Full => Sync::Full,
            })
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            .pragma("temp_store", "memory")
            .pragma("cache_size", "-32768");
        let mut conn = SqliteConnection::connect_with(&options).await?;
        MIGRATOR.run(&mut conn).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options.read_only(true))
            .await?;
        let (writer, rx) = mpsc::channel(WRITE_QUEUE);
        tokio::spawn(writer_loop(conn, rx));
        Ok(Self {
            reader,
            writer,
            jobs: Arc::new(Notify::new()),
        })
    }

    /// Queues `op` for the writer and waits until its batch has committed.
    async fn write<T, F>(&self, op: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, StoreResult<T>>
            + Send
            + 'static,
    {
        let (tx, rx) = oneshot::channel::<StoreResult<T>>();
        let boxed: WriteOp = Box::new(move |conn| {
            Box::pin(async move {
                let result = op(conn).await;
                let ok = result.is_ok();
                let done: Completion = Box::new(move |commit| {
                    let _ = tx.send(commit.and(result));
                });
                (ok, done)
            })
        });
        self.writer.try_send(boxed).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => StoreError::Overloaded,
            mpsc::error::TrySendError::Closed(_) => {
                StoreError::Unavailable("writer stopped".into())
            }
        })?;
        rx.await
            .map_err(|_| StoreError::Unavailable("writer stopped".into()))?
    }
}

/// The single writer: takes whatever is queued, runs it as one transaction, commits, and
/// only then answers each caller.
async fn writer_loop(mut conn: SqliteConnection, mut rx: mpsc::Receiver<WriteOp>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        if let Err(e) = sqlx::query("BEGIN IMMEDIATE").execute(&mut conn).await {
            // Dropping the operations tells their callers the database is unavailable.
            tracing::error!(error = %e, "cannot begin a write transaction");
            batch.clear();
            continue;
        }
        let mut completions = Vec::with_capacity(batch.len());
        for op in batch.drain(..) {
            let _ = sqlx::query("SAVEPOINT op").execute(&mut conn).await;
            let (ok, done) = op(&mut conn).await;
            if !ok {
                let _ = sqlx::query("ROLLBACK TO op").execute(&mut conn).await;
            }
            let _ = sqlx::query("RELEASE op").execute(&mut conn).await;
            completions.push(done);
        }
        let commit = sqlx::query("COMMIT").execute(&mut conn).await;
        if let Err(e) = &commit {
            tracing::error!(error = %e, "write transaction failed to commit");
            let _ = sqlx::query("ROLLBACK").execute(&mut conn).await;
        }
        for done in completions {
            done(match &commit {
                Ok(_) => Ok(()),
                Err(e) => Err(StoreError::Unavailable(format!("commit failed: {e}"))),
            });
        }
    }
}

fn ms(t: DateTime<Utc>) -> i64 {
    millis(t)
}

fn opt_time(row: &SqliteRow, col: &str) -> StoreResult<Option<DateTime<Utc>>> {
    row.try_get::<Option<i64>, _>(col)?
        .map(from_millis)
        .transpose()
}

fn summary_from_row(row: &SqliteRow) -> StoreResult<RequestSummary> {
    Ok(RequestSummary {
        id: parse_uuid(row.try_get("id")?)?,
        mode: parse_enum(row.try_get("mode")?, Mode::parse)?,
        status: parse_enum(row.try_get("status")?, RequestStatus::parse)?,
        created_at: from_millis(row.try_get("created_at")?)?,
        completed_at: opt_time(row, "completed_at")?,
        callback_status: row
            .try_get::<Option<&str>, _>("callback_status")?
            .map(|s| parse_enum(s, CallbackStatus::parse))
            .transpose()?,
    })
}

fn record_from_row(row: &SqliteRow) -> StoreResult<RequestRecord> {
    let s = summary_from_row(row)?;
    Ok(RequestRecord {
        id: s.id,
        mode: s.mode,
        status: s.status,
        created_at: s.created_at,
        completed_at: s.completed_at,
        callback_status: s.callback_status,
        input_data: row.try_get("input_data")?,
        output_data: row.try_get("output_data")?,
        error: row.try_get("error")?,
        callback_url: row.try_get("callback_url")?,
        callback_attempts: row.try_get::<i64, _>("callback_attempts")? as u32,
        callback_last_error: row.try_get("callback_last_error")?,
        callback_sent_at: opt_time(row, "callback_sent_at")?,
        trace_id: row.try_get("trace_id")?,
        attempts: Vec::new(),
    })
}

fn attempt_from_row(row: &SqliteRow) -> StoreResult<AttemptRecord> {
    Ok(AttemptRecord {
        attempt: row.try_get::<i64, _>("attempt")? as u32,
        started_at: from_millis(row.try_get("started_at")?)?,
        duration_ms: row.try_get("duration_ms")?,
        status_code: row
            .try_get::<Option<i64>, _>("status_code")?
            .map(|c| c as u16),
        error: row.try_get("error")?,
    })
}

async fn admit_op(
    c: &mut SqliteConnection,
    req: NewRequest,
    claim: Option<IdempotencyClaim>,
) -> StoreResult<Admission> {
    let now = ms(Utc::now());
    if let Some(claim) = &claim {
        let existing = sqlx::query(
            "SELECT fingerprint, response_status, response_body, held_until
             FROM idempotency_keys WHERE scope = ? AND key = ?",
        )
        .bind(claim.scope)
        .bind(&claim.key)
        .fetch_optional(&mut *c)
        .await?;
        if let Some(row) = existing {
            let fingerprint: String = row.try_get("fingerprint")?;
            let status: Option<i64> = row.try_get("response_status")?;
            let held_until: i64 = row.try_get("held_until")?;
            if fingerprint != claim.fingerprint {
                return Ok(Admission::KeyReused);
            }
            match status {
                Some(status) => {
                    let body: String = row
                        .try_get::<Option<String>, _>("response_body")?
                        .unwrap_or_default();
                    return Ok(Admission::Replay(StoredResponse {
                        status: status as u16,
                        body,
                    }));
                }
                None if held_until > now => return Ok(Admission::InFlight),
                // The first holder died mid-work: the key is free again.
                None => {
                    sqlx::query("DELETE FROM idempotency_keys WHERE scope = ? AND key = ?")
                        .bind(claim.scope)
                        .bind(&claim.key)
                        .execute(&mut *c)
                        .await?;
                }
            }
        }
    }
    let id = req.id.to_string();
    let callback_status = (req.mode == Mode::Async).then_some(CallbackStatus::Pending.as_str());
    let started_at = (req.status == RequestStatus::Processing).then_some(ms(req.created_at));
    sqlx::query(
        "INSERT INTO requests (id, mode, status, input_data, created_at, started_at, trace_id,
                               callback_url, callback_status)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&id)
    .bind(req.mode.as_str())
    .bind(req.status.as_str())
    .bind(&req.input_data)
    .bind(ms(req.created_at))
    .bind(started_at)
    .bind(&req.trace_id)
    .bind(&req.callback_url)
    .bind(callback_status)
    .execute(&mut *c)
    .await?;
    if req.mode == Mode::Async {
        sqlx::query("INSERT INTO jobs (request_id, run_at) VALUES (?, ?)")
            .bind(&id)
            .bind(ms(req.created_at))
            .execute(&mut *c)
            .await?;
    }
    if let Some(claim) = claim {
        let (status, body) = claim.response.map(|r| (r.status as i64, r.body)).unzip();
        sqlx::query(
            "INSERT INTO idempotency_keys
                 (scope, key, fingerprint, request_id, response_status, response_body, held_until, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(claim.scope)
        .bind(&claim.key)
        .bind(&claim.fingerprint)
        .bind(&id)
        .bind(status)
        .bind(body)
        .bind(ms(claim.held_until))
        .bind(now)
        .execute(&mut *c)
        .await?;
    }
    Ok(Admission::Admitted)
}

async fn store_work(c: &mut SqliteConnection, id: &str, done: &FinishedWork) -> StoreResult<()> {
    sqlx::query(
        "UPDATE requests SET status = ?, output_data = ?, error = ?, completed_at = ?,
                callback_body = COALESCE(?, callback_body)
         WHERE id = ?",
    )
    .bind(done.status.as_str())
    .bind(&done.output_data)
    .bind(&done.error)
    .bind(ms(done.completed_at))
    .bind(&done.callback_body)
    .bind(id)
    .execute(&mut *c)
    .await?;
    Ok(())
}

async fn finish_sync_op(
    c: &mut SqliteConnection,
    id: Uuid,
    done: FinishedWork,
    key: Option<(&'static str, String, Option<StoredResponse>)>,
) -> StoreResult<()> {
    store_work(c, &id.to_string(), &done).await?;
    match key {
        Some((scope, key, Some(resp))) => {
            sqlx::query(
                "UPDATE idempotency_keys SET response_status = ?, response_body = ?
                 WHERE scope = ? AND key = ?",
            )
            .bind(resp.status as i64)
            .bind(resp.body)
            .bind(scope)
            .bind(key)
            .execute(&mut *c)
            .await?;
        }
        Some((scope, key, None)) => {
            sqlx::query("DELETE FROM idempotency_keys WHERE scope = ? AND key = ?")
                .bind(scope)
                .bind(key)
                .execute(&mut *c)
                .await?;
        }
        None => {}
    }
    Ok(())
}

async fn claim_op(
    c: &mut SqliteConnection,
    limit: usize,
    lease_for: Duration,
) -> StoreResult<Vec<ClaimedJob>> {
    let now = ms(Utc::now());
    let until = now + lease_for.as_millis() as i64;
    let token = Uuid::new_v4();
    let token_text = token.to_string();
    let claimed = sqlx::query(
        "UPDATE jobs SET lease_token = ?1, lease_until = ?2
         WHERE request_id IN (
             SELECT request_id FROM jobs
             WHERE run_at <= ?3 AND (lease_until IS NULL OR lease_until <= ?3)
             ORDER BY run_at LIMIT ?4)
         RETURNING request_id",
    )
    .bind(&token_text)
    .bind(until)
    .bind(now)
    .bind(limit as i64)
    .fetch_all(&mut *c)
    .await?;
    if claimed.is_empty() {
        return Ok(Vec::new());
    }
    sqlx::query(
        "UPDATE requests SET status = 'processing', started_at = ?1
         WHERE status = 'pending' AND id IN (SELECT request_id FROM jobs WHERE lease_token = ?2)",
    )
    .bind(now)
    .bind(&token_text)
    .execute(&mut *c)
    .await?;
    let rows = sqlx::query(
        "SELECT r.id, r.input_data, r.callback_url, r.trace_id, r.created_at,
                r.callback_attempts, r.callback_body
         FROM jobs j JOIN requests r ON r.id = j.request_id
         WHERE j.lease_token = ?",
    )
    .bind(&token_text)
    .fetch_all(&mut *c)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(ClaimedJob {
                lease: Lease {
                    request_id: parse_uuid(row.try_get("id")?)?,
                    token,
                },
                input_data: row.try_get("input_data")?,
                callback_url: row
                    .try_get::<Option<String>, _>("callback_url")?
                    .unwrap_or_default(),
                trace_id: row.try_get("trace_id")?,
                created_at: from_millis(row.try_get("created_at")?)?,
                attempts_made: row.try_get::<i64, _>("callback_attempts")? as u32,
                callback_body: row.try_get("callback_body")?,
            })
        })
        .collect()
}

/// `true` when `lease` still holds its job (same token, not expired).
async fn lease_held(c: &mut SqliteConnection, lease: Lease) -> StoreResult<bool> {
    let row = sqlx::query(
        "SELECT 1 FROM jobs WHERE request_id = ? AND lease_token = ? AND lease_until > ?",
    )
    .bind(lease.request_id.to_string())
    .bind(lease.token.to_string())
    .bind(ms(Utc::now()))
    .fetch_optional(&mut *c)
    .await?;
    Ok(row.is_some())
}

async fn record_attempt_op(
    c: &mut SqliteConnection,
    lease: Lease,
    attempt: AttemptRecord,
    next: NextStep,
) -> StoreResult<bool> {
    if !lease_held(c, lease).await? {
        return Ok(false);
    }
    let id = lease.request_id.to_string();
    sqlx::query(
        "INSERT INTO attempts (request_id, attempt, started_at, duration_ms, status_code, error)
         VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(&id)
    .bind(attempt.attempt as i64)
    .bind(ms(attempt.started_at))
    .bind(attempt.duration_ms)
    .bind(attempt.status_code.map(i64::from))
    .bind(&attempt.error)
    .execute(&mut *c)
    .await?;
    let (callback_status, sent_at) = match next {
        NextStep::Delivered => (CallbackStatus::Sent, Some(ms(Utc::now()))),
        NextStep::RetryAt(_) => (CallbackStatus::Pending, None),
        NextStep::GiveUp => (CallbackStatus::Failed, None),
    };
    sqlx::query(
        "UPDATE requests SET callback_attempts = ?, callback_last_error = ?, callback_status = ?,
                callback_sent_at = ?
         WHERE id = ?",
    )
    .bind(attempt.attempt as i64)
    .bind(&attempt.error)
    .bind(callback_status.as_str())
    .bind(sent_at)
    .bind(&id)
    .execute(&mut *c)
    .await?;
    match next {
        NextStep::RetryAt(at) => {
            sqlx::query("UPDATE jobs SET run_at = ?, lease_token = NULL, lease_until = NULL WHERE request_id = ?")
                .bind(ms(at))
                .bind(&id)
                .execute(&mut *c)
                .await?;
        }
        NextStep::Delivered | NextStep::GiveUp => {
            sqlx::query("DELETE FROM jobs WHERE request_id = ?")
                .bind(&id)
                .execute(&mut *c)
                .await?;
        }
    }
    Ok(true)
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn ready(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1 FROM settings LIMIT 1")
            .fetch_optional(&self.reader)
            .await?;
        self.write(|c| {
            Box::pin(async move { Ok(sqlx::query("SELECT 1").execute(c).await.map(|_| ())?) })
        })
        .await
    }

    fn job_signal(&self) -> Arc<Notify> {
        self.jobs.clone()
    }

    async fn admit(
        &self,
        req: NewRequest,
        claim: Option<IdempotencyClaim>,
    ) -> StoreResult<Admission> {
        let is_async = req.mode == Mode::Async;
        let admission = self
            .write(move |c| Box::pin(admit_op(c, req, claim)))
            .await?;
        if is_async && admission == Admission::Admitted {
            self.jobs.notify_one();
        }
        Ok(admission)
    }

    async fn finish_sync(
        &self,
        id: Uuid,
        done: FinishedWork,
        key: Option<(&'static str, String, Option<StoredResponse>)>,
    ) -> StoreResult<()> {
        self.write(move |c| Box::pin(finish_sync_op(c, id, done, key)))
            .await
    }

    async fn get_request(&self, id: Uuid) -> StoreResult<Option<RequestRecord>> {
        let id = id.to_string();
        let Some(row) = sqlx::query("SELECT * FROM requests WHERE id = ?")
            .bind(&id)
            .fetch_optional(&self.reader)
            .await?
        else {
            return Ok(None);
        };
        let mut record = record_from_row(&row)?;
        let attempts = sqlx::query("SELECT * FROM attempts WHERE request_id = ? ORDER BY attempt")
            .bind(&id)
            .fetch_all(&self.reader)
            .await?;
        record.attempts = attempts
            .iter()
            .map(attempt_from_row)
            .collect::<StoreResult<_>>()?;
        Ok(Some(record))
    }

    async fn list_requests(&self, f: &ListFilter) -> StoreResult<Page> {
        // Each filter is `(? IS NULL OR col = ?)`, so one statement serves every combination.
        const WHERE: &str = "WHERE (?1 IS NULL OR mode = ?1) AND (?2 IS NULL OR status = ?2)
                               AND (?3 IS NULL OR callback_status = ?3)";
        let mode = f.mode.map(Mode::as_str);
        let status = f.status.map(RequestStatus::as_str);
        let cb = f.callback_status.map(CallbackStatus::as_str);
        let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM requests {WHERE}"
        )))
        .bind(mode)
        .bind(status)
        .bind(cb)
        .fetch_one(&self.reader)
        .await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT id, mode, status, created_at, completed_at, callback_status FROM requests {WHERE}
             ORDER BY created_at DESC, id DESC LIMIT ?4 OFFSET ?5"
        )))
        .bind(mode)
        .bind(status)
        .bind(cb)
        .bind(f.limit as i64)
        .bind(f.offset.min(i64::MAX as u64) as i64)
        .fetch_all(&self.reader)
        .await?;
        let requests = rows
            .iter()
            .map(summary_from_row)
            .collect::<StoreResult<_>>()?;
        Ok(Page {
            requests,
            total: total as u64,
        })
    }

    async fn claim_due_jobs(
        &self,
        limit: usize,
        lease_for: Duration,
    ) -> StoreResult<Vec<ClaimedJob>> {
        self.write(move |c| Box::pin(claim_op(c, limit, lease_for)))
            .await
    }

    async fn next_due_at(&self) -> StoreResult<Option<DateTime<Utc>>> {
        // An unleased job is due at run_at; a leased one when its lease expires.
        let next: Option<i64> = sqlx::query_scalar(
            "SELECT min(CASE WHEN lease_until IS NULL THEN run_at ELSE max(run_at, lease_until) END) FROM jobs",
        )
        .fetch_one(&self.reader)
        .await?;
        next.map(from_millis).transpose()
    }

    async fn renew_lease(&self, lease: Lease, lease_for: Duration) -> StoreResult<bool> {
        self.write(move |c| {
            Box::pin(async move {
                if !lease_held(c, lease).await? {
                    return Ok(false);
                }
                let until = ms(Utc::now()) + lease_for.as_millis() as i64;
                sqlx::query(
                    "UPDATE jobs SET lease_until = ? WHERE request_id = ? AND lease_token = ?",
                )
                .bind(until)
                .bind(lease.request_id.to_string())
                .bind(lease.token.to_string())
                .execute(c)
                .await?;
                Ok(true)
            })
        })
        .await
    }

    async fn record_work(&self, lease: Lease, done: &FinishedWork) -> StoreResult<bool> {
        let done = done.clone();
        self.write(move |c| {
            Box::pin(async move {
                if !lease_held(c, lease).await? {
                    return Ok(false);
                }
                store_work(c, &lease.request_id.to_string(), &done).await?;
                Ok(true)
            })
        })
        .await
    }

    async fn record_attempt(
        &self,
        lease: Lease,
        attempt: &AttemptRecord,
        next: &NextStep,
    ) -> StoreResult<bool> {
        let (attempt, next) = (attempt.clone(), next.clone());
        let recorded = self
            .write(move |c| Box::pin(record_attempt_op(c, lease, attempt, next)))
            .await?;
        Ok(recorded)
    }

    async fn release_lease(&self, lease: Lease) -> StoreResult<()> {
        self.write(move |c| {
            Box::pin(async move {
                sqlx::query("UPDATE jobs SET lease_token = NULL, lease_until = NULL WHERE request_id = ? AND lease_token = ?")
                    .bind(lease.request_id.to_string())
                    .bind(lease.token.to_string())
                    .execute(c)
                    .await?;
                Ok(())
            })
        })
        .await?;
        self.jobs.notify_one();
        Ok(())
    }

    async fn job_counts(&self) -> StoreResult<JobCounts> {
        let row = sqlx::query(
            "SELECT coalesce(sum(lease_until > ?1), 0) AS processing,
                    coalesce(sum(lease_until IS NULL OR lease_until <= ?1), 0) AS pending
             FROM jobs",
        )
        .bind(ms(Utc::now()))
        .fetch_one(&self.reader)
        .await?;
        Ok(JobCounts {
            pending: row.try_get::<i64, _>("pending")? as u64,
            processing: row.try_get::<i64, _>("processing")? as u64,
        })
    }

    async fn sweep(&self, keep_keys: Duration, abandon_sync: Duration) -> StoreResult<SweepStats> {
        let now = ms(Utc::now());
        let key_cutoff = now - keep_keys.as_millis() as i64;
        let sync_cutoff = now - abandon_sync.as_millis() as i64;
        self.write(move |c| {
            Box::pin(async move {
                let keys = sqlx::query("DELETE FROM idempotency_keys WHERE created_at < ?")
                    .bind(key_cutoff)
                    .execute(&mut *c)
                    .await?;
                let stale = sqlx::query(
                    "UPDATE requests SET status = 'failed', completed_at = ?,
                            error = 'interrupted: the service stopped before the work finished'
                     WHERE mode = 'sync' AND status = 'processing' AND started_at < ?",
                )
                .bind(now)
                .bind(sync_cutoff)
                .execute(&mut *c)
                .await?;
                Ok(SweepStats {
                    expired_keys: keys.rows_affected(),
                    abandoned_sync: stale.rows_affected(),
                })
            })
        })
        .await
    }

    async fn get_or_insert_setting(&self, name: &str, candidate: &str) -> StoreResult<String> {
        let (name, candidate) = (name.to_owned(), candidate.to_owned());
        self.write(move |c| {
            Box::pin(async move {
                sqlx::query("INSERT INTO settings (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING")
                    .bind(&name)
                    .bind(&candidate)
                    .execute(&mut *c)
                    .await?;
                Ok(sqlx::query_scalar("SELECT value FROM settings WHERE name = ?")
                    .bind(&name)
                    .fetch_one(&mut *c)
                    .await?)
            })
        })
        .await
    }
}
