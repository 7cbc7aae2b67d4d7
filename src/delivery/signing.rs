//! Standard Webhooks signing. PLACEHOLDER: replaced before merge.

/// The service's callback signing secret (`whsec_<base64>`).
#[derive(Clone)]
pub struct SigningSecret(Vec<u8>);

impl std::fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningSecret(redacted)")
    }
}

impl SigningSecret {
    pub fn parse(s: &str) -> Result<Self, String> {
        s.strip_prefix("whsec_")
            .map(|b| Self(b.as_bytes().to_vec()))
            .ok_or_else(|| "must start with whsec_".into())
    }
    pub fn generate() -> Self {
        Self(vec![0; 32])
    }
    pub fn to_whsec(&self) -> String {
        format!("whsec_{}", String::from_utf8_lossy(&self.0))
    }
}
