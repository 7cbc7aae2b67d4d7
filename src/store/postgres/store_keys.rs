//! [`KeyStore`] on PostgreSQL: API keys and signing secrets (SPEC §10).

use super::*;

#[async_trait]
impl KeyStore for PgStore {
    async fn insert_api_key(&self, key: &NewApiKey) -> StoreResult<bool> {
        auth::insert_api_key(&self.pool, key)
            .await
            .map_err(classify)
    }

    async fn api_keys(&self) -> StoreResult<Vec<ApiKeyRow>> {
        auth::api_keys(&self.pool).await.map_err(classify)
    }

    async fn revoke_api_key(&self, prefix: &str, at: DateTime<Utc>) -> StoreResult<Revocation> {
        auth::revoke_api_key(&self.pool, prefix, at)
            .await
            .map_err(classify)
    }

    async fn record_key_uses(&self, uses: &[KeyUse]) -> StoreResult<()> {
        auth::record_key_uses(&self.pool, uses)
            .await
            .map_err(classify)
    }

    async fn ensure_signing_secret(
        &self,
        tenant: &str,
        candidate: &str,
        at: DateTime<Utc>,
    ) -> StoreResult<String> {
        let (tenant, candidate) = (tenant.to_owned(), candidate.to_owned());
        self.tx(move |c, _| Box::pin(auth::ensure_signing_secret(c, tenant, candidate, at)))
            .await
    }

    async fn signing_secrets(
        &self,
        tenant: Option<&str>,
        at: DateTime<Utc>,
    ) -> StoreResult<Vec<SigningSecretRow>> {
        auth::signing_secrets(&self.pool, tenant, at)
            .await
            .map_err(classify)
    }

    async fn rotate_signing_secret(
        &self,
        tenant: &str,
        secret: &str,
        at: DateTime<Utc>,
        old_valid_until: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let (tenant, secret) = (tenant.to_owned(), secret.to_owned());
        self.tx(move |c, _| {
            Box::pin(auth::rotate_signing_secret(
                c,
                tenant,
                secret,
                at,
                old_valid_until,
            ))
        })
        .await
    }
}
