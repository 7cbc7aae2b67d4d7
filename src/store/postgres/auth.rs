//! API keys and signing secrets on PostgreSQL (SPEC §10; schema in
//! `migrations/postgres/0005_keys_and_secrets.sql`).
//!
//! Changes to one tenant's secrets (ensure, rotate) take a transaction-scoped advisory
//! lock on the tenant first, so that two instances or CLI runs doing it at once are
//! serialised and each sees the other's committed rows; the partial unique index
//! `signing_secrets_current` keeps one current secret per tenant regardless. Times the
//! CLI shows are written by the process, truncated to milliseconds as on SQLite.

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnection, PgRow};
use sqlx::{PgExecutor, Row};

use super::ms;
use crate::store::*;

pub(super) async fn insert_api_key(e: impl PgExecutor<'_>, k: &NewApiKey) -> StoreResult<bool> {
    let inserted = sqlx::query(
        "INSERT INTO api_keys (prefix, hash, tenant, admin, created_at)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT DO NOTHING",
    )
    .bind(&k.prefix)
    .bind(&k.hash)
    .bind(&k.tenant)
    .bind(k.admin)
    .bind(ms(k.created_at))
    .execute(e)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

fn key_row(r: &PgRow) -> StoreResult<ApiKeyRow> {
    Ok(ApiKeyRow {
        prefix: r.try_get("prefix")?,
        hash: r.try_get("hash")?,
        tenant: r.try_get("tenant")?,
        admin: r.try_get("admin")?,
        created_at: r.try_get("created_at")?,
        last_used_at: r.try_get("last_used_at")?,
        revoked_at: r.try_get("revoked_at")?,
    })
}

pub(super) async fn api_keys(e: impl PgExecutor<'_>) -> StoreResult<Vec<ApiKeyRow>> {
    sqlx::query(
        "SELECT prefix, hash, tenant, admin, created_at, last_used_at, revoked_at
         FROM api_keys ORDER BY created_at, prefix",
    )
    .fetch_all(e)
    .await?
    .iter()
    .map(key_row)
    .collect()
}

pub(super) async fn revoke_api_key(
    e: impl PgExecutor<'_>,
    prefix: &str,
    at: DateTime<Utc>,
) -> StoreResult<Revocation> {
    // One statement: the CTE sees the row as it was, the UPDATE touches it only if it was
    // not revoked yet.
    let row: Option<(bool,)> = sqlx::query_as(
        "WITH before AS (SELECT prefix, revoked_at IS NOT NULL AS was_revoked
                         FROM api_keys WHERE prefix = $1),
              revoked AS (UPDATE api_keys SET revoked_at = $2
                          WHERE prefix = $1 AND revoked_at IS NULL)
         SELECT was_revoked FROM before",
    )
    .bind(prefix)
    .bind(ms(at))
    .fetch_optional(e)
    .await?;
    Ok(match row {
        None => Revocation::Unknown,
        Some((true,)) => Revocation::AlreadyRevoked,
        Some((false,)) => Revocation::Revoked,
    })
}

pub(super) async fn record_key_uses(e: impl PgExecutor<'_>, uses: &[KeyUse]) -> StoreResult<()> {
    let prefixes: Vec<&str> = uses.iter().map(|u| u.prefix.as_str()).collect();
    let times: Vec<DateTime<Utc>> = uses.iter().map(|u| ms(u.at)).collect();
    sqlx::query(
        "UPDATE api_keys AS k SET last_used_at = u.at
         FROM unnest($1::text[], $2::timestamptz[]) AS u (prefix, at)
         WHERE k.prefix = u.prefix
           AND (k.last_used_at IS NULL OR k.last_used_at <= u.at - $3::bigint * interval '1 second')",
    )
    .bind(prefixes)
    .bind(times)
    .bind(KEY_USE_RESOLUTION.as_secs() as i64)
    .execute(e)
    .await?;
    Ok(())
}

/// Serialises changes to one tenant's secrets until the transaction ends.
async fn lock_tenant_secrets(c: &mut PgConnection, tenant: &str) -> StoreResult<()> {
    sqlx::query(
        "SELECT pg_advisory_xact_lock(hashtextextended('consuma.signing_secrets/' || $1, 0))",
    )
    .bind(tenant)
    .execute(&mut *c)
    .await?;
    Ok(())
}

async fn current_secret(c: &mut PgConnection, tenant: &str) -> StoreResult<Option<String>> {
    Ok(sqlx::query_scalar(
        "SELECT secret FROM signing_secrets WHERE tenant = $1 AND valid_until IS NULL",
    )
    .bind(tenant)
    .fetch_optional(&mut *c)
    .await?)
}

pub(super) async fn ensure_signing_secret(
    c: &mut PgConnection,
    tenant: String,
    candidate: String,
    at: DateTime<Utc>,
) -> StoreResult<String> {
    lock_tenant_secrets(c, &tenant).await?;
    if let Some(existing) = current_secret(c, &tenant).await? {
        return Ok(existing);
    }
    sqlx::query(
        "INSERT INTO signing_secrets (tenant, secret, created_at, valid_until)
         VALUES ($1, $2, $3, NULL)",
    )
    .bind(&tenant)
    .bind(&candidate)
    .bind(ms(at))
    .execute(&mut *c)
    .await?;
    Ok(candidate)
}

pub(super) async fn signing_secrets(
    e: impl PgExecutor<'_>,
    tenant: Option<&str>,
    at: DateTime<Utc>,
) -> StoreResult<Vec<SigningSecretRow>> {
    // The current secret first, then the others newest first: "current" is the row
    // without an end, whatever the clocks that wrote created_at said.
    let rows = sqlx::query(
        "SELECT tenant, secret, created_at, valid_until FROM signing_secrets
         WHERE ($1::text IS NULL OR tenant = $1) AND (valid_until IS NULL OR valid_until > $2)
         ORDER BY tenant, valid_until IS NULL DESC, created_at DESC, id DESC",
    )
    .bind(tenant)
    .bind(at)
    .fetch_all(e)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(SigningSecretRow {
                tenant: r.try_get("tenant")?,
                secret: r.try_get("secret")?,
                created_at: r.try_get("created_at")?,
                valid_until: r.try_get("valid_until")?,
            })
        })
        .collect()
}

pub(super) async fn rotate_signing_secret(
    c: &mut PgConnection,
    tenant: String,
    secret: String,
    at: DateTime<Utc>,
    old_valid_until: DateTime<Utc>,
) -> StoreResult<bool> {
    lock_tenant_secrets(c, &tenant).await?;
    if current_secret(c, &tenant).await?.is_none() {
        return Ok(false);
    }
    // Ends the current secret, and shortens older ones that would outlive it.
    sqlx::query(
        "UPDATE signing_secrets SET valid_until = $2
         WHERE tenant = $1 AND (valid_until IS NULL OR valid_until > $2)",
    )
    .bind(&tenant)
    .bind(ms(old_valid_until))
    .execute(&mut *c)
    .await?;
    sqlx::query(
        "INSERT INTO signing_secrets (tenant, secret, created_at, valid_until)
         VALUES ($1, $2, $3, NULL)",
    )
    .bind(&tenant)
    .bind(&secret)
    .bind(ms(at))
    .execute(&mut *c)
    .await?;
    Ok(true)
}
