//! `consuma keys create|list|revoke` and `consuma secret [rotate]` (SPEC §6, §10).
//!
//! Each opens the database the way `serve` would (`--database-url`, then
//! `CONSUMA_DATABASE_URL`, then `DATABASE_URL`), does one thing and returns the exit
//! status: 0 done, 1 an unknown prefix or tenant (or a runtime failure), 2 bad arguments.
//! What a script may capture goes to stdout alone (a new key, a secret, the list); notes
//! go to stderr. A key is printed once, by `keys create`, and never again; nothing here
//! echoes a key or a secret in a message.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, SecondsFormat, Utc};

use crate::auth::keys::{ApiKey, DISPLAY_PREFIX_CHARS, TenantName, is_well_formed};
use crate::auth::secrets::overlap_end;
use crate::auth::{DEFAULT_TENANT, ensure_secret};
use crate::cli::{KeysAction, KeysArgs, RotateArgs, SecretAction, SecretArgs};
use crate::config::DatabaseUrl;
use crate::delivery::signing::SigningSecret;
use crate::store::{self, ApiKeyRow, NewApiKey, Revocation, Store};

/// Connections a command needs.
const COMMAND_CONNECTIONS: u32 = 2;
/// Fresh keys tried when a generated prefix is taken (one in 62^8 per existing key).
const CREATE_TRIES: usize = 5;

/// The database a command works on, or the exit status after saying why not: 2 for a
/// URL that does not parse, 1 for a SQLite file that does not exist.
async fn open(flag: Option<&str>) -> anyhow::Result<Result<Arc<dyn Store>, u8>> {
    let url = match DatabaseUrl::from_flag_or_env(flag) {
        Ok(url) => url,
        Err(e) => {
            eprintln!("consuma: error: {e}");
            return Ok(Err(2));
        }
    };
    if let DatabaseUrl::Sqlite(path) = &url
        && !path.exists()
    {
        // A command never creates a database: from another folder the default relative
        // URL would name a new, empty one, with a new `default` secret.
        let shown = std::path::absolute(path).unwrap_or_else(|_| path.clone());
        eprintln!(
            "consuma: error: no database at {}; start `consuma serve` once to create it, or point at an existing one with --database-url (or DATABASE_URL)",
            shown.display()
        );
        return Ok(Err(1));
    }
    let options = store::StoreOptions {
        pg_max_connections: COMMAND_CONNECTIONS,
        ..Default::default()
    };
    let store = store::connect(&url, options)
        .await
        .with_context(|| format!("cannot open the database {url}"))?;
    Ok(Ok(store))
}

/// `consuma keys …`.
pub async fn keys(args: KeysArgs) -> anyhow::Result<u8> {
    match args.action {
        KeysAction::Create { tenant, admin, db } => {
            let store = match open(db.database_url.as_deref()).await? {
                Ok(store) => store,
                Err(code) => return Ok(code),
            };
            create_key(store.as_ref(), &tenant, admin).await
        }
        KeysAction::List { db } => {
            let store = match open(db.database_url.as_deref()).await? {
                Ok(store) => store,
                Err(code) => return Ok(code),
            };
            print!("{}", key_table(&store.api_keys().await?));
            Ok(0)
        }
        KeysAction::Revoke { prefix, db } => {
            let store = match open(db.database_url.as_deref()).await? {
                Ok(store) => store,
                Err(code) => return Ok(code),
            };
            revoke_key(store.as_ref(), &prefix).await
        }
    }
}

async fn create_key(store: &dyn Store, tenant: &TenantName, admin: bool) -> anyhow::Result<u8> {
    // The tenant's first key gives it a secret; an existing one is kept.
    ensure_secret(store, tenant.as_str()).await?;
    for _ in 0..CREATE_TRIES {
        let key = ApiKey::generate();
        let row = NewApiKey {
            prefix: key.prefix().to_owned(),
            hash: key.hash().to_hex(),
            tenant: tenant.to_string(),
            admin,
            created_at: Utc::now(),
        };
        if store.insert_api_key(&row).await? {
            println!("{}", key.reveal());
            let role = if admin { " (admin)" } else { "" };
            eprintln!(
                "created {} for tenant {tenant}{role}; the key is shown only this once",
                row.prefix
            );
            return Ok(0);
        }
    }
    anyhow::bail!("could not find a free key prefix in {CREATE_TRIES} tries")
}

async fn revoke_key(store: &dyn Store, given: &str) -> anyhow::Result<u8> {
    // A whole key pasted by mistake is taken by its prefix, and never echoed.
    let prefix = match is_well_formed(given) {
        true => &given[..DISPLAY_PREFIX_CHARS],
        false => given,
    };
    let shown = match prefix.chars().count() <= DISPLAY_PREFIX_CHARS {
        true => prefix,
        false => "(the given prefix)",
    };
    match store.revoke_api_key(prefix, Utc::now()).await? {
        Revocation::Revoked => eprintln!("revoked {shown}"),
        Revocation::AlreadyRevoked => eprintln!("{shown} was already revoked"),
        Revocation::Unknown => {
            eprintln!(
                "consuma: error: no API key has the prefix {shown} (a prefix is csk_ and the next 8 characters; see `consuma keys list`)"
            );
            return Ok(1);
        }
    }
    Ok(0)
}

fn time(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(
        || "-".to_owned(),
        |t| t.to_rfc3339_opts(SecondsFormat::Secs, true),
    )
}

/// The table `keys list` prints: a header, then one line per key, oldest first.
fn key_table(rows: &[ApiKeyRow]) -> String {
    let header = [
        "PREFIX",
        "TENANT",
        "ADMIN",
        "CREATED",
        "LAST USED",
        "REVOKED",
    ]
    .map(String::from);
    let lines: Vec<[String; 6]> = std::iter::once(header)
        .chain(rows.iter().map(|k| {
            [
                k.prefix.clone(),
                k.tenant.clone(),
                if k.admin { "yes" } else { "no" }.to_owned(),
                time(Some(k.created_at)),
                time(k.last_used_at),
                time(k.revoked_at),
            ]
        }))
        .collect();
    let widths: Vec<usize> = (0..6)
        .map(|i| lines.iter().map(|l| l[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for line in &lines {
        let cells: Vec<String> = line
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// `consuma secret [--tenant NAME]` and `consuma secret rotate …`.
pub async fn secret(args: SecretArgs) -> anyhow::Result<u8> {
    if let Some(SecretAction::Rotate(rotate)) = args.action {
        return rotate_secret(rotate).await;
    }
    let tenant = args.tenant.as_str();
    if tenant == DEFAULT_TENANT
        && let Some(raw) = &args.signing_secret
    {
        if let Err(e) = SigningSecret::parse(raw) {
            eprintln!("consuma: error: --signing-secret: {e}");
            return Ok(2);
        }
        println!("{raw}");
        return Ok(0);
    }
    let store = match open(args.database_url.as_deref()).await? {
        Ok(store) => store,
        Err(code) => return Ok(code),
    };
    let current = if tenant == DEFAULT_TENANT {
        // Generated and stored exactly as a first start would.
        Some(ensure_secret(store.as_ref(), tenant).await?.to_whsec())
    } else {
        let valid = store.signing_secrets(Some(tenant), Utc::now()).await?;
        valid.into_iter().next().map(|row| row.secret)
    };
    match current {
        Some(secret) => {
            println!("{secret}");
            Ok(0)
        }
        None => {
            eprintln!("consuma: error: {}", unknown_tenant(tenant));
            Ok(1)
        }
    }
}

fn unknown_tenant(tenant: &str) -> String {
    format!(
        "unknown tenant {tenant}: it has no signing secret (creating its first key gives it one)"
    )
}

async fn rotate_secret(args: RotateArgs) -> anyhow::Result<u8> {
    let store = match open(args.database_url.as_deref()).await? {
        Ok(store) => store,
        Err(code) => return Ok(code),
    };
    let tenant = args.tenant.as_str();
    if tenant == DEFAULT_TENANT {
        // `default` always has a secret, even before the first start.
        ensure_secret(store.as_ref(), tenant).await?;
    }
    let new = SigningSecret::generate();
    let now = Utc::now();
    let until = overlap_end(now, Duration::from_secs(args.overlap_secs));
    if !store
        .rotate_signing_secret(tenant, &new.to_whsec(), now, until)
        .await?
    {
        eprintln!("consuma: error: {}", unknown_tenant(tenant));
        return Ok(1);
    }
    println!("{}", new.to_whsec());
    eprintln!(
        "rotated the signing secret of {tenant}; the previous ones stay valid until {}",
        until.to_rfc3339_opts(SecondsFormat::Secs, true)
    );
    if tenant == DEFAULT_TENANT && args.signing_secret.is_some() {
        eprintln!(
            "consuma: warning: --signing-secret (or CONSUMA_SIGNING_SECRET) is set: a server started with it signs default's callbacks with that secret alone, not with the rotated ones"
        );
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_table_aligns_columns_and_shows_dashes_for_never() {
        let at = DateTime::parse_from_rfc3339("2026-01-31T12:00:00.123Z")
            .unwrap()
            .with_timezone(&Utc);
        let rows = [
            ApiKeyRow {
                prefix: "csk_abcdefgh".into(),
                hash: "00".repeat(32),
                tenant: "acme".into(),
                admin: false,
                created_at: at,
                last_used_at: None,
                revoked_at: None,
            },
            ApiKeyRow {
                prefix: "csk_ABCDEFGH".into(),
                hash: "11".repeat(32),
                tenant: "operations".into(),
                admin: true,
                created_at: at,
                last_used_at: Some(at),
                revoked_at: Some(at),
            },
        ];
        let table = key_table(&rows);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines[0],
            "PREFIX        TENANT      ADMIN  CREATED               LAST USED             REVOKED"
        );
        assert_eq!(
            lines[1],
            "csk_abcdefgh  acme        no     2026-01-31T12:00:00Z  -                     -"
        );
        assert!(lines[2].ends_with("2026-01-31T12:00:00Z  2026-01-31T12:00:00Z"));
        assert!(!table.contains(&"00".repeat(32)), "never the hash either");
    }
}
