-- API keys and per-tenant signing secrets (SPEC §10). Times are INTEGER milliseconds
-- since the Unix epoch (UTC), as in 0001.

-- One row per API key ever created. The key itself is never stored: only the SHA-256
-- of the whole key (looked up by its unique index, never scanned) and a display prefix.
-- Rows are never deleted; revoking sets revoked_at, and any row at all (revoked or not)
-- means the service requires a key.
CREATE TABLE api_keys (
    prefix       TEXT    PRIMARY KEY,   -- 'csk_' and the key's next 8 characters: shown, not secret
    hash         TEXT    NOT NULL UNIQUE, -- lowercase hex SHA-256 of the whole key
    tenant       TEXT    NOT NULL,
    admin        INTEGER NOT NULL DEFAULT 0 CHECK (admin IN (0, 1)),
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER,               -- written at most once a minute per key
    revoked_at   INTEGER
);

-- Callback signing secrets, several per tenant while a rotation overlaps. The current
-- (newest) one has no end; older ones stay valid until valid_until.
CREATE TABLE signing_secrets (
    id          INTEGER PRIMARY KEY,
    tenant      TEXT    NOT NULL,
    secret      TEXT    NOT NULL,       -- whsec_<base64>
    created_at  INTEGER NOT NULL,
    valid_until INTEGER                 -- NULL: the tenant's current secret
);

-- At most one current secret per tenant: "ensure" and "rotate" rely on it.
CREATE UNIQUE INDEX signing_secrets_current ON signing_secrets (tenant) WHERE valid_until IS NULL;
CREATE INDEX signing_secrets_by_tenant ON signing_secrets (tenant, created_at DESC, id DESC);

-- The secret used so far (0003's setting, generated at first start) becomes the tenant
-- `default`'s current secret, so receivers keep verifying. The setting row is left in
-- place for a downgrade; this version no longer reads it.
INSERT INTO signing_secrets (tenant, secret, created_at, valid_until)
SELECT 'default', value, CAST(strftime('%s', 'now') AS INTEGER) * 1000, NULL
FROM settings WHERE name = 'callback_signing_secret';
