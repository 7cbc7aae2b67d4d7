//! API keys and signing secrets on SQLite (SPEC §10; schema in
//! `migrations/sqlite/0005_keys_and_secrets.sql`).
//!
//! The writes run in the [writer](super::writer)'s batches like every other write, so an
//! expected outcome (a taken prefix, an unknown tenant) is an `Ok` answer, never an error
//! that would roll back the batch. A CLI process (`consuma keys create`) writing beside a
//! running server is serialised by SQLite's file lock (`BEGIN IMMEDIATE`), and the partial
//! unique index `signing_secrets_current` keeps one current secret per tenant whatever
//! happens.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::store::*;

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn opt_time(ms: Option<i64>) -> StoreResult<Option<DateTime<Utc>>> {
    ms.map(from_millis).transpose()
}

pub(super) fn insert_api_key(c: &Connection, k: &NewApiKey) -> StoreResult<bool> {
    let inserted = c
        .prepare_cached(
            "INSERT INTO api_keys (prefix, hash, tenant, admin, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT DO NOTHING",
        )?
        .execute(params![
            k.prefix,
            k.hash,
            k.tenant,
            k.admin,
            ms(k.created_at)
        ])?;
    Ok(inserted == 1)
}

fn key_row(r: &Row<'_>) -> StoreResult<ApiKeyRow> {
    Ok(ApiKeyRow {
        prefix: r.get("prefix")?,
        hash: r.get("hash")?,
        tenant: r.get("tenant")?,
        admin: r.get("admin")?,
        created_at: from_millis(r.get("created_at")?)?,
        last_used_at: opt_time(r.get("last_used_at")?)?,
        revoked_at: opt_time(r.get("revoked_at")?)?,
    })
}

pub(super) fn api_keys(c: &Connection) -> StoreResult<Vec<ApiKeyRow>> {
    let mut statement = c.prepare_cached(
        "SELECT prefix, hash, tenant, admin, created_at, last_used_at, revoked_at
         FROM api_keys ORDER BY created_at, prefix",
    )?;
    let mut rows = statement.query([])?;
    let mut keys = Vec::new();
    while let Some(row) = rows.next()? {
        keys.push(key_row(row)?);
    }
    Ok(keys)
}

pub(super) fn revoke_api_key(
    c: &Connection,
    prefix: &str,
    at: DateTime<Utc>,
) -> StoreResult<Revocation> {
    let revoked: Option<Option<i64>> = c
        .prepare_cached("SELECT revoked_at FROM api_keys WHERE prefix = ?1")?
        .query_row(params![prefix], |r| r.get(0))
        .optional()?;
    Ok(match revoked {
        None => Revocation::Unknown,
        Some(Some(_)) => Revocation::AlreadyRevoked,
        Some(None) => {
            c.prepare_cached("UPDATE api_keys SET revoked_at = ?2 WHERE prefix = ?1")?
                .execute(params![prefix, ms(at)])?;
            Revocation::Revoked
        }
    })
}

pub(super) fn record_key_uses(c: &Connection, uses: &[KeyUse]) -> StoreResult<()> {
    let resolution = KEY_USE_RESOLUTION.as_millis() as i64;
    let mut statement = c.prepare_cached(
        "UPDATE api_keys SET last_used_at = ?2
         WHERE prefix = ?1 AND (last_used_at IS NULL OR last_used_at <= ?2 - ?3)",
    )?;
    for u in uses {
        statement.execute(params![u.prefix, ms(u.at), resolution])?;
    }
    Ok(())
}

pub(super) fn ensure_signing_secret(
    c: &Connection,
    tenant: &str,
    candidate: &str,
    at: DateTime<Utc>,
) -> StoreResult<String> {
    c.prepare_cached(
        "INSERT INTO signing_secrets (tenant, secret, created_at, valid_until)
         VALUES (?1, ?2, ?3, NULL)
         ON CONFLICT (tenant) WHERE valid_until IS NULL DO NOTHING",
    )?
    .execute(params![tenant, candidate, ms(at)])?;
    Ok(c.prepare_cached(
        "SELECT secret FROM signing_secrets WHERE tenant = ?1 AND valid_until IS NULL",
    )?
    .query_row(params![tenant], |r| r.get(0))?)
}

pub(super) fn signing_secrets(
    c: &Connection,
    tenant: Option<&str>,
    at: DateTime<Utc>,
) -> StoreResult<Vec<SigningSecretRow>> {
    // The current secret first, then the others newest first: "current" is the row
    // without an end, whatever the clocks that wrote created_at said.
    let mut statement = c.prepare_cached(
        "SELECT tenant, secret, created_at, valid_until FROM signing_secrets
         WHERE (?1 IS NULL OR tenant = ?1) AND (valid_until IS NULL OR valid_until > ?2)
         ORDER BY tenant, valid_until IS NULL DESC, created_at DESC, id DESC",
    )?;
    let mut rows = statement.query(params![tenant, ms(at)])?;
    let mut secrets = Vec::new();
    while let Some(r) = rows.next()? {
        secrets.push(SigningSecretRow {
            tenant: r.get(0)?,
            secret: r.get(1)?,
            created_at: from_millis(r.get(2)?)?,
            valid_until: opt_time(r.get(3)?)?,
        });
    }
    Ok(secrets)
}

pub(super) fn rotate_signing_secret(
    c: &Connection,
    tenant: &str,
    secret: &str,
    at: DateTime<Utc>,
    old_valid_until: DateTime<Utc>,
) -> StoreResult<bool> {
    let known: bool = c
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM signing_secrets WHERE tenant = ?1 AND valid_until IS NULL)",
        )?
        .query_row(params![tenant], |r| r.get(0))?;
    if !known {
        return Ok(false);
    }
    // Ends the current secret, and shortens older ones that would outlive it.
    c.prepare_cached(
        "UPDATE signing_secrets SET valid_until = ?2
         WHERE tenant = ?1 AND (valid_until IS NULL OR valid_until > ?2)",
    )?
    .execute(params![tenant, ms(old_valid_until)])?;
    c.prepare_cached(
        "INSERT INTO signing_secrets (tenant, secret, created_at, valid_until)
         VALUES (?1, ?2, ?3, NULL)",
    )?
    .execute(params![tenant, secret, ms(at)])?;
    Ok(true)
}
