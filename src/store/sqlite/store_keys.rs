//! [`KeyStore`] on SQLite: API keys and signing secrets (SPEC §10).

use super::*;

#[async_trait]
impl KeyStore for SqliteStore {
    async fn insert_api_key(&self, key: &NewApiKey) -> StoreResult<bool> {
        let key = key.clone();
        self.writer
            .write(move |b| auth::insert_api_key(b.conn, &key))
            .await
    }

    async fn api_keys(&self) -> StoreResult<Vec<ApiKeyRow>> {
        self.readers.read(auth::api_keys).await
    }

    async fn revoke_api_key(&self, prefix: &str, at: DateTime<Utc>) -> StoreResult<Revocation> {
        let prefix = prefix.to_owned();
        self.writer
            .write(move |b| auth::revoke_api_key(b.conn, &prefix, at))
            .await
    }

    async fn record_key_uses(&self, uses: &[KeyUse]) -> StoreResult<()> {
        let uses = uses.to_vec();
        self.writer
            .write(move |b| auth::record_key_uses(b.conn, &uses))
            .await
    }

    async fn ensure_signing_secret(
        &self,
        tenant: &str,
        candidate: &str,
        at: DateTime<Utc>,
    ) -> StoreResult<String> {
        let (tenant, candidate) = (tenant.to_owned(), candidate.to_owned());
        self.writer
            .write(move |b| auth::ensure_signing_secret(b.conn, &tenant, &candidate, at))
            .await
    }

    async fn signing_secrets(
        &self,
        tenant: Option<&str>,
        at: DateTime<Utc>,
    ) -> StoreResult<Vec<SigningSecretRow>> {
        let tenant = tenant.map(str::to_owned);
        self.readers
            .read(move |c| auth::signing_secrets(c, tenant.as_deref(), at))
            .await
    }

    async fn rotate_signing_secret(
        &self,
        tenant: &str,
        secret: &str,
        at: DateTime<Utc>,
        old_valid_until: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let (tenant, secret) = (tenant.to_owned(), secret.to_owned());
        self.writer
            .write(move |b| {
                auth::rotate_signing_secret(b.conn, &tenant, &secret, at, old_valid_until)
            })
            .await
    }
}
