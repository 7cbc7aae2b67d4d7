//! Idempotency keys at admission (SPEC §2 "Idempotency"): whether this request may
//! take its key, or must replay, wait (409) or be refused (422).
//!
//! The INSERT comes first so that two admissions racing with one key serialise on the
//! primary key: the second waits until the first commits (or rolls back), then either
//! inserts or sees the committed row. Everything here runs in the admission's transaction,
//! so the key is taken together with the request it answers for.

use sqlx::Row;
use sqlx::postgres::PgConnection;
use uuid::Uuid;

use super::ms_from_now;
use crate::store::*;

/// Takes the key for `request_id`: `Admitted` when it is ours now, otherwise the verdict
/// the existing claim imposes (see [`Store::admit`]).
pub(super) async fn take(
    c: &mut PgConnection,
    claim: &IdempotencyClaim,
    request_id: Uuid,
) -> StoreResult<Admission> {
    // A row can vanish between our conflict and our read (released by a failed /sync, or
    // swept); then the key is free and one more INSERT settles it.
    for _ in 0..2 {
        if insert_key(c, claim, request_id).await? {
            return Ok(Admission::Admitted);
        }
        if let Some(existing) = existing(c, claim).await? {
            return decide(c, claim, request_id, existing).await;
        }
    }
    // Still undecided: someone keeps taking and releasing this key. Answer as for a
    // request in flight (409), which the client may retry.
    Ok(Admission::InFlight)
}

/// `true` when the key was free and is now ours.
async fn insert_key(
    c: &mut PgConnection,
    claim: &IdempotencyClaim,
    request_id: Uuid,
) -> StoreResult<bool> {
    let (status, body) = response_columns(claim);
    let inserted = sqlx::query(
        "INSERT INTO idempotency_keys
             (scope, key, fingerprint, request_id, response_status, response_body, held_until, created_at, tenant)
         VALUES ($1, $2, $3, $4, $5, $6, now() + $7::bigint * interval '1 millisecond', now(), $8)
         ON CONFLICT (tenant, scope, key) DO NOTHING",
    )
    .bind(claim.scope)
    .bind(&claim.key)
    .bind(&claim.fingerprint)
    .bind(request_id)
    .bind(status)
    .bind(body)
    .bind(ms_from_now(claim.held_until))
    .bind(&claim.tenant)
    .execute(&mut *c)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// The claim's response as the `response_status` and `response_body` columns.
fn response_columns(claim: &IdempotencyClaim) -> (Option<i32>, Option<&str>) {
    claim
        .response
        .as_ref()
        .map(|r| (i32::from(r.status), r.body.as_str()))
        .unzip()
}

/// Forgets a key whose first request did not succeed (only successes are kept).
pub(super) async fn release(c: &mut PgConnection, claim: &IdempotencyClaim) -> StoreResult<()> {
    sqlx::query("DELETE FROM idempotency_keys WHERE tenant = $1 AND scope = $2 AND key = $3")
        .bind(&claim.tenant)
        .bind(claim.scope)
        .bind(&claim.key)
        .execute(&mut *c)
        .await?;
    Ok(())
}

/// The committed claim on the key, if any.
pub(super) async fn existing(
    c: &mut PgConnection,
    claim: &IdempotencyClaim,
) -> StoreResult<Option<StoredKey>> {
    let row = sqlx::query(
        "SELECT fingerprint, response_status, response_body, held_until > now() AS held
         FROM idempotency_keys WHERE scope = $1 AND key = $2 AND tenant = $3",
    )
    .bind(claim.scope)
    .bind(&claim.key)
    .bind(&claim.tenant)
    .fetch_optional(&mut *c)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let status: Option<i32> = row.try_get("response_status")?;
    let body: Option<String> = row.try_get("response_body")?;
    Ok(Some(StoredKey {
        fingerprint: row.try_get("fingerprint")?,
        response: status.map(|s| StoredResponse {
            status: s as u16,
            body: body.unwrap_or_default(),
        }),
        held: row.try_get("held")?,
    }))
}

/// The verdict of a key that is taken ([`StoredKey::verdict`]).
async fn decide(
    c: &mut PgConnection,
    claim: &IdempotencyClaim,
    request_id: Uuid,
    existing: StoredKey,
) -> StoreResult<Admission> {
    if let Some(verdict) = existing.verdict(claim) {
        return Ok(verdict);
    }
    // The first holder died mid-work: take the key over. The conditions are checked again
    // under the row lock, so of two admissions taking over at once only one succeeds.
    match take_over_key(c, claim, request_id).await? {
        true => Ok(Admission::Admitted),
        false => Ok(Admission::InFlight),
    }
}

async fn take_over_key(
    c: &mut PgConnection,
    claim: &IdempotencyClaim,
    request_id: Uuid,
) -> StoreResult<bool> {
    let (status, body) = response_columns(claim);
    let taken = sqlx::query(
        "UPDATE idempotency_keys
         SET fingerprint = $3, request_id = $4, response_status = $5, response_body = $6,
             held_until = now() + $7::bigint * interval '1 millisecond', created_at = now()
         WHERE scope = $1 AND key = $2 AND tenant = $8
           AND response_status IS NULL AND held_until <= now()",
    )
    .bind(claim.scope)
    .bind(&claim.key)
    .bind(&claim.fingerprint)
    .bind(request_id)
    .bind(status)
    .bind(body)
    .bind(ms_from_now(claim.held_until))
    .bind(&claim.tenant)
    .execute(&mut *c)
    .await?;
    Ok(taken.rows_affected() == 1)
}
