//! Admission (SPEC §2, §3, §9, §10): the request, its job and its idempotency key in the
//! writer's transaction; and the end of a /sync request.

use rusqlite::{Connection, OptionalExtension, params};
use uuid::Uuid;

use super::current::{Current, ms, now_ms};
use super::writer::Batch;
use crate::store::*;

/// What a stored idempotency key says about a new admission with the same key.
fn existing_key(c: &Connection, claim: &IdempotencyClaim) -> StoreResult<Option<Admission>> {
    let Some(stored) = stored_key(c, claim)? else {
        return Ok(None);
    };
    let verdict = stored.verdict(claim);
    if verdict.is_none() {
        // Its first holder died mid-work: the key is free again.
        delete_key(c, claim)?;
    }
    Ok(verdict)
}

/// The verdict of a stored key, read only (a look-up before any slot is taken, §17).
pub(super) fn key_verdict(
    c: &Connection,
    claim: &IdempotencyClaim,
) -> StoreResult<Option<Admission>> {
    Ok(stored_key(c, claim)?.and_then(|stored| stored.verdict(claim)))
}

/// The committed claim on the key, if any.
fn stored_key(c: &Connection, claim: &IdempotencyClaim) -> StoreResult<Option<StoredKey>> {
    let row = c
        .prepare_cached(
            "SELECT fingerprint, response_status, response_body, held_until
             FROM idempotency_keys WHERE tenant = ?1 AND scope = ?2 AND key = ?3",
        )?
        .query_row(params![claim.tenant, claim.scope, claim.key], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Option<i64>>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })
        .optional()?;
    Ok(
        row.map(|(fingerprint, status, body, held_until)| StoredKey {
            fingerprint,
            response: status.map(|status| StoredResponse {
                status: status as u16,
                body: body.unwrap_or_default(),
            }),
            held: held_until > now_ms(),
        }),
    )
}

fn delete_key(c: &Connection, claim: &IdempotencyClaim) -> StoreResult<()> {
    c.prepare_cached("DELETE FROM idempotency_keys WHERE tenant = ?1 AND scope = ?2 AND key = ?3")?
        .execute(params![claim.tenant, claim.scope, claim.key])?;
    Ok(())
}

pub(super) fn admit(
    b: &mut Batch<'_>,
    req: NewRequest,
    claim: Option<IdempotencyClaim>,
    limits: AdmissionLimits,
) -> StoreResult<Admission> {
    let c = b.conn;
    if let Some(claim) = &claim
        && let Some(verdict) = existing_key(c, claim)?
    {
        return Ok(verdict);
    }
    let is_async = req.mode == Mode::Async;
    if is_async {
        let (all, mine) = b.backlog(&req.tenant);
        if let Some(refusal) = limits.refusal(all, mine) {
            return Ok(refusal);
        }
    }
    let id = req.id.to_string();
    let callback_status = is_async.then_some(CallbackStatus::Pending);
    let started_at = (req.status == RequestStatus::Processing).then_some(ms(req.created_at));
    c.prepare_cached(
        "INSERT INTO requests (id, tenant, mode, status, input_data, created_at, started_at,
                               trace_id, callback_url, callback_status, work, upstream_key)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?
    .execute(params![
        id,
        req.tenant,
        req.mode.as_str(),
        req.status.as_str(),
        req.input_data,
        ms(req.created_at),
        started_at,
        req.trace_id,
        req.callback_url,
        callback_status.map(CallbackStatus::as_str),
        req.work,
        req.upstream_key,
    ])?;
    b.deltas.added(
        &req.tenant,
        req.work.as_deref(),
        state_code(req.mode, req.status, callback_status),
    );
    if let (true, Some(origin)) = (is_async, &req.origin) {
        let destination = destination_id(c, &req.tenant, origin)?;
        c.prepare_cached(
            "INSERT INTO jobs (request_id, destination_id, phase, run_at) VALUES (?1, ?2, 0, ?3)",
        )?
        .execute(params![id, destination, ms(req.created_at)])?;
    }
    if let Some(claim) = claim {
        insert_key(c, &claim, &id)?;
    }
    Ok(Admission::Admitted)
}

fn insert_key(c: &Connection, claim: &IdempotencyClaim, request_id: &str) -> StoreResult<()> {
    let (status, body) = claim
        .response
        .as_ref()
        .map(|r| (r.status as i64, r.body.as_str()))
        .unzip();
    c.prepare_cached(
        "INSERT INTO idempotency_keys
             (tenant, scope, key, fingerprint, request_id, response_status, response_body,
              held_until, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        claim.tenant,
        claim.scope,
        claim.key,
        claim.fingerprint,
        request_id,
        status,
        body,
        ms(claim.held_until),
        now_ms()
    ])?;
    Ok(())
}

/// The id of the destination `(tenant, origin)`, created on first use: one lookup when it
/// exists (every admission but the first), an insert only when it does not. The writer is
/// the only one writing, so nothing can create it between the two.
pub(super) fn destination_id(c: &Connection, tenant: &str, origin: &str) -> StoreResult<i64> {
    let found = c
        .prepare_cached("SELECT id FROM destinations WHERE tenant = ?1 AND origin = ?2")?
        .query_row(params![tenant, origin], |r| r.get(0))
        .optional()?;
    match found {
        Some(id) => Ok(id),
        None => Ok(c
            .prepare_cached(
                "INSERT INTO destinations (tenant, origin) VALUES (?1, ?2) RETURNING id",
            )?
            .query_row(params![tenant, origin], |r| r.get(0))?),
    }
}

/// Stores the end of the work on a request (sync or async) and notes the state change.
pub(super) fn store_work(b: &mut Batch<'_>, id: &str, done: &FinishedWork) -> StoreResult<()> {
    let Some(before) = Current::read(b.conn, id)? else {
        return Ok(());
    };
    b.conn
        .prepare_cached(
            "UPDATE requests SET status = ?1, output_data = ?2, error = ?3, completed_at = ?4,
                                 work_attempts = ?6
             WHERE id = ?5",
        )?
        .execute(params![
            done.status.as_str(),
            done.output_data,
            done.error,
            ms(done.completed_at),
            id,
            done.work_attempts,
        ])?;
    before.moved_to(b, done.status, before.callback);
    Ok(())
}

pub(super) fn finish_sync(
    b: &mut Batch<'_>,
    id: Uuid,
    done: FinishedWork,
    key: Option<(IdempotencyClaim, Option<StoredResponse>)>,
) -> StoreResult<()> {
    store_work(b, &id.to_string(), &done)?;
    match key {
        Some((claim, Some(response))) => {
            b.conn
                .prepare_cached(
                    "UPDATE idempotency_keys SET response_status = ?1, response_body = ?2
                     WHERE tenant = ?3 AND scope = ?4 AND key = ?5",
                )?
                .execute(params![
                    response.status as i64,
                    response.body,
                    claim.tenant,
                    claim.scope,
                    claim.key
                ])?;
        }
        // Only successes are kept: the key is released for a retry.
        Some((claim, None)) => delete_key(b.conn, &claim)?,
        None => {}
    }
    Ok(())
}
