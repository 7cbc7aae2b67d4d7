//! The attempts of a batch of records (see [`super`]): set-based forms of
//! `jobs::record_attempt`'s statements.

use std::collections::{BTreeMap, HashMap};

use chrono::Utc;
use sqlx::postgres::PgConnection;
use uuid::Uuid;

use super::{Outcome, count_moves};
use crate::store::counts::Deltas;
use crate::store::postgres::{jobs, ms, ms_from_now};
use crate::store::*;

/// `jobs::set_callback` and `jobs::insert_attempt` for many attempts.
pub(super) async fn store(
    c: &mut PgConnection,
    d: &mut Deltas,
    attempts: &[&Outcome],
) -> StoreResult<()> {
    if attempts.is_empty() {
        return Ok(());
    }
    let mut ids = Vec::new();
    let mut numbers = Vec::new();
    let mut statuses = Vec::new();
    let mut last_errors = Vec::new();
    let mut sent_at = Vec::new();
    let now = ms(Utc::now());
    for o in attempts {
        if let Outcome::Attempt {
            lease,
            attempt: a,
            next,
            ..
        } = o
        {
            ids.push(lease.request_id);
            numbers.push(a.attempt as i32);
            let (status, last_error) = match next {
                NextStep::Delivered => (CallbackStatus::Sent, None),
                NextStep::RetryAt(_) => (CallbackStatus::Pending, a.error.clone()),
                NextStep::GiveUp => (CallbackStatus::Failed, a.error.clone()),
                NextStep::Expired(why) => (CallbackStatus::Failed, Some(why.clone())),
            };
            statuses.push(status.as_str());
            last_errors.push(last_error);
            sent_at.push(matches!(next, NextStep::Delivered).then_some(now));
        }
    }
    let rows = sqlx::query(
        "UPDATE requests r
         SET callback_attempts = greatest(r.callback_attempts, old.attempts),
             callback_last_error = old.last_error, callback_status = old.status_new,
             callback_sent_at = coalesce(old.sent_at, r.callback_sent_at)
         FROM (SELECT o.id, o.state, u.attempts, u.last_error, u.status_new, u.sent_at
               FROM requests o
               JOIN unnest($1::uuid[], $2::int[], $3::text[], $4::text[], $5::timestamptz[])
                    AS u(id, attempts, last_error, status_new, sent_at)
                 ON o.id = u.id
               ORDER BY o.id FOR UPDATE OF o) old
         WHERE r.id = old.id
         RETURNING r.tenant, r.work, old.state AS before, r.state AS after",
    )
    .bind(&ids)
    .bind(&numbers)
    .bind(&last_errors)
    .bind(&statuses)
    .bind(&sent_at)
    .fetch_all(&mut *c)
    .await?;
    // After the update: the attempts' foreign keys then find the rows locked by us alone
    // (a key share taken first and upgraded by the update costs a multixact per row).
    insert_attempts(c, attempts).await?;
    count_moves(d, &rows)
}

/// `jobs::insert_attempt` for many attempts.
async fn insert_attempts(c: &mut PgConnection, attempts: &[&Outcome]) -> StoreResult<()> {
    let mut ids = Vec::new();
    let mut numbers = Vec::new();
    let mut started = Vec::new();
    let mut durations = Vec::new();
    let mut codes = Vec::new();
    let mut errors = Vec::new();
    let mut triggers = Vec::new();
    for o in attempts {
        if let Outcome::Attempt {
            lease, attempt: a, ..
        } = o
        {
            ids.push(lease.request_id);
            numbers.push(a.attempt as i32);
            started.push(ms(a.started_at));
            durations.push(a.duration_ms);
            codes.push(a.status_code.map(i32::from));
            errors.push(a.error.as_deref());
            triggers.push(a.trigger.as_str());
        }
    }
    sqlx::query(
        "INSERT INTO attempts (request_id, attempt, started_at, duration_ms, status_code, error, triggered_by)
         SELECT * FROM unnest($1::uuid[], $2::int[], $3::timestamptz[], $4::float8[], $5::int[],
                              $6::text[], $7::text[])",
    )
    .bind(&ids)
    .bind(&numbers)
    .bind(&started)
    .bind(&durations)
    .bind(&codes)
    .bind(&errors)
    .bind(&triggers)
    .execute(&mut *c)
    .await?;
    Ok(())
}

/// The last failed attempt's error of each destination in the batch, kept on it.
pub(super) async fn note_errors(
    c: &mut PgConnection,
    attempts: &[&Outcome],
    held: &HashMap<Uuid, Option<i64>>,
) -> StoreResult<()> {
    let mut last: BTreeMap<i64, String> = BTreeMap::new();
    for o in attempts {
        if let Outcome::Attempt {
            lease,
            attempt,
            next,
            ..
        } = o
            && let (Some(Some(dest)), Some(error)) = (held.get(&lease.request_id), &attempt.error)
            && !matches!(next, NextStep::Delivered)
        {
            last.insert(*dest, error.clone());
        }
    }
    if last.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = last.keys().copied().collect();
    let errors: Vec<String> = last.into_values().collect();
    jobs::note_errors(c, &ids, &errors).await
}

/// Each attempted job rescheduled (a retry) or deleted (its callback ended); the
/// destinations of retries, with their offsets from now (ms).
pub(super) async fn reschedule_or_end(
    c: &mut PgConnection,
    attempts: &[&Outcome],
    held: &HashMap<Uuid, Option<i64>>,
) -> StoreResult<Vec<(Option<i64>, i64)>> {
    let mut retry_ids = Vec::new();
    let mut retry_ms = Vec::new();
    let mut ended = Vec::new();
    let mut lowers = Vec::new();
    for o in attempts {
        if let Outcome::Attempt { lease, next, .. } = o {
            match next {
                NextStep::RetryAt(at) => {
                    retry_ids.push(lease.request_id);
                    retry_ms.push(ms_from_now(*at));
                    lowers.push((
                        held.get(&lease.request_id).copied().flatten(),
                        ms_from_now(*at),
                    ));
                }
                NextStep::Delivered | NextStep::GiveUp | NextStep::Expired(_) => {
                    ended.push(lease.request_id)
                }
            }
        }
    }
    if !retry_ids.is_empty() {
        // clock_timestamp(), as in `jobs::record_attempt`.
        sqlx::query(
            "UPDATE jobs SET run_at = clock_timestamp() + u.ms * interval '1 millisecond',
                             lease_token = NULL, manual = false
             FROM unnest($1::uuid[], $2::bigint[]) AS u(id, ms) WHERE jobs.request_id = u.id",
        )
        .bind(&retry_ids)
        .bind(&retry_ms)
        .execute(&mut *c)
        .await?;
    }
    if !ended.is_empty() {
        sqlx::query("DELETE FROM jobs WHERE request_id = ANY($1)")
            .bind(&ended)
            .execute(&mut *c)
            .await?;
    }
    Ok(lowers)
}
