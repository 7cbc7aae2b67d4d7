-- API keys and per-tenant signing secrets (SPEC §10), PostgreSQL dialect of
-- migrations/sqlite/0005 (same tables, same meaning). Times are timestamptz.

-- One row per API key ever created. The key itself is never stored: only the SHA-256
-- of the whole key (looked up by its unique index, never scanned) and a display prefix.
-- Rows are never deleted; revoking sets revoked_at, and any row at all (revoked or not)
-- means the service requires a key.
CREATE TABLE api_keys (
    prefix       text        PRIMARY KEY,     -- 'csk_' and the key's next 8 characters: shown, not secret
    hash         text        NOT NULL UNIQUE, -- lowercase hex SHA-256 of the whole key
    tenant       text        NOT NULL,
    admin        boolean     NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL,
    last_used_at timestamptz,                 -- written at most once a minute per key
    revoked_at   timestamptz
);

-- Callback signing secrets, several per tenant while a rotation overlaps. The current
-- (newest) one has no end; older ones stay valid until valid_until.
CREATE TABLE signing_secrets (
    id          bigserial   PRIMARY KEY,
    tenant      text        NOT NULL,
    secret      text        NOT NULL,         -- whsec_<base64>
    created_at  timestamptz NOT NULL,
    valid_until timestamptz                   -- NULL: the tenant's current secret
);

-- At most one current secret per tenant: "ensure" and "rotate" rely on it.
CREATE UNIQUE INDEX signing_secrets_current ON signing_secrets (tenant) WHERE valid_until IS NULL;
CREATE INDEX signing_secrets_by_tenant ON signing_secrets (tenant, created_at DESC, id DESC);

-- The secret used so far (0003's setting, generated at first start) becomes the tenant
-- `default`'s current secret, so receivers keep verifying. The setting row is left in
-- place for a downgrade; this version no longer reads it.
INSERT INTO signing_secrets (tenant, secret, created_at, valid_until)
SELECT 'default', value, date_trunc('milliseconds', now()), NULL
FROM settings WHERE name = 'callback_signing_secret';
