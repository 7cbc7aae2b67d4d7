//! Standard Webhooks signing of callbacks (SPEC §2 "The callback").
//!
//! The secret is `whsec_` followed by the standard base64 (with padding) of 24 to 64 key
//! bytes; a generated secret holds 32 random bytes. A signature is
//! `v1,<base64(HMAC-SHA256(key, "<msg_id>.<timestamp>.<body>"))>`, exactly what the public
//! Standard Webhooks libraries verify, and the `webhook-signature` header may carry several
//! such entries separated by spaces (key rotation).
//!
//! Invariants: the key never appears in `Debug` output or in an error message, and
//! [`SigningSecret::verify`] compares tags in constant time.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The prefix of every secret's text form.
const PREFIX: &str = "whsec_";
/// The only signature version we produce and accept.
const VERSION: &str = "v1";
/// Accepted key lengths in bytes (the reference secrets hold 24; we generate 32).
const KEY_BYTES: std::ops::RangeInclusive<usize> = 24..=64;
/// Length of a generated key in bytes.
const GENERATED_KEY_BYTES: usize = 32;

type HmacSha256 = Hmac<Sha256>;

/// The service's callback signing secret (`whsec_<base64>`).
///
/// `Debug` prints `SigningSecret(redacted)`; use [`SigningSecret::to_whsec`] to reveal it on
/// purpose (for `consuma secret` or for storage).
#[derive(Clone)]
pub struct SigningSecret(Vec<u8>);

impl std::fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningSecret(redacted)")
    }
}

impl SigningSecret {
    /// Parses `whsec_<base64>`; the error is one line and never repeats the input.
    pub fn parse(s: &str) -> Result<Self, String> {
        let encoded = s
            .strip_prefix(PREFIX)
            .ok_or_else(|| format!("a signing secret must start with {PREFIX}"))?;
        let key = BASE64
            .decode(encoded)
            .map_err(|_| format!("the part after {PREFIX} must be standard base64"))?;
        if !KEY_BYTES.contains(&key.len()) {
            return Err(format!(
                "a signing secret must hold {} to {} bytes, this one holds {}",
                KEY_BYTES.start(),
                KEY_BYTES.end(),
                key.len()
            ));
        }
        Ok(Self(key))
    }

    /// A new secret of 32 bytes from the thread-local CSPRNG.
    pub fn generate() -> Self {
        let key: [u8; GENERATED_KEY_BYTES] = rand::random();
        Self(key.to_vec())
    }

    /// The text form, `whsec_<base64>`, which [`SigningSecret::parse`] reads back.
    pub fn to_whsec(&self) -> String {
        format!("{PREFIX}{}", BASE64.encode(&self.0))
    }

    /// The `webhook-signature` value for one attempt: `v1,<base64 tag>`.
    pub fn sign(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        let tag = self.mac(msg_id, timestamp, body).finalize().into_bytes();
        format!("{VERSION},{}", BASE64.encode(tag))
    }

    /// The `webhook-signature` value signed by every secret of `secrets`, in their order,
    /// space-separated (`v1,<new> v1,<old>` during a rotation); empty for no secret.
    pub fn sign_all(secrets: &[Self], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        let signatures: Vec<String> = secrets
            .iter()
            .map(|s| s.sign(msg_id, timestamp, body))
            .collect();
        signatures.join(" ")
    }

    /// Whether any `v1,…` entry of a space-separated `webhook-signature` header matches.
    ///
    /// Entries of other versions and undecodable entries are skipped; each candidate is
    /// compared in constant time.
    pub fn verify(
        &self,
        msg_id: &str,
        timestamp: i64,
        body: &[u8],
        signature_header: &str,
    ) -> bool {
        let mac = self.mac(msg_id, timestamp, body);
        signature_header
            .split(' ')
            .filter_map(|entry| entry.split_once(','))
            .filter(|(version, _)| *version == VERSION)
            .filter_map(|(_, tag)| BASE64.decode(tag).ok())
            // `fold` rather than `any`: every candidate is checked, whatever matched first.
            .fold(false, |found, tag| {
                mac.clone().verify_slice(&tag).is_ok() | found
            })
    }

    /// The MAC state after absorbing `"<msg_id>.<timestamp>.<body>"`.
    fn mac(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC accepts keys of any length");
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Standard Webhooks reference vector (standard-webhooks/standard-webhooks,
    /// `libraries/javascript/src/webhook.test.ts`, "sign function works").
    const REF_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const REF_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const REF_TS: i64 = 1_614_265_330;
    const REF_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const REF_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn reference() -> SigningSecret {
        SigningSecret::parse(REF_SECRET).expect("the reference secret parses")
    }

    #[test]
    fn signing_reproduces_the_standard_webhooks_reference_vector() {
        assert_eq!(reference().sign(REF_ID, REF_TS, REF_BODY), REF_SIGNATURE);
    }

    #[test]
    fn signing_reproduces_the_reference_rust_library_vector() {
        // standard-webhooks/standard-webhooks, `libraries/rust/src/lib.rs`, `test_sign`.
        let secret = SigningSecret::parse("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        let body = br#"{"email":"test@example.com","username":"test_user"}"#;
        assert_eq!(
            secret.sign("msg_27UH4WbU6Z5A5EzD8u03UvzRbpk", 1_649_367_553, body),
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="
        );
    }

    #[test]
    fn signing_with_several_secrets_lists_one_signature_each_in_their_order() {
        let (new, old) = (SigningSecret::generate(), reference());
        let header = SigningSecret::sign_all(&[new.clone(), old.clone()], REF_ID, REF_TS, REF_BODY);
        let entries: Vec<&str> = header.split(' ').collect();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0], new.sign(REF_ID, REF_TS, REF_BODY));
        assert_eq!(entries[1], REF_SIGNATURE);
        assert!(new.verify(REF_ID, REF_TS, REF_BODY, &header));
        assert!(old.verify(REF_ID, REF_TS, REF_BODY, &header));
        assert!(SigningSecret::sign_all(&[], REF_ID, REF_TS, REF_BODY).is_empty());
    }

    #[test]
    fn verify_accepts_the_reference_signature() {
        assert!(reference().verify(REF_ID, REF_TS, REF_BODY, REF_SIGNATURE));
    }

    #[test]
    fn verify_accepts_a_match_among_several_signatures() {
        let header = format!(
            "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= v2,abc= not-a-signature \
             v1,%%% {REF_SIGNATURE} v1,9DfC1c3eeOrXB6w/5dIDydLNQaEyww5KalE5jLBZucE="
        );
        assert!(reference().verify(REF_ID, REF_TS, REF_BODY, &header));
    }

    #[test]
    fn verify_rejects_headers_without_a_matching_v1_entry() {
        let tag = REF_SIGNATURE.trim_start_matches("v1,");
        for header in [
            "",
            "v1,",
            "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
            &format!("v2,{tag}"),
            tag,
            &REF_SIGNATURE[..8],
        ] {
            assert!(
                !reference().verify(REF_ID, REF_TS, REF_BODY, header),
                "{header:?}"
            );
        }
    }

    #[test]
    fn verify_rejects_a_tampered_body_timestamp_or_id() {
        let s = reference();
        assert!(!s.verify(REF_ID, REF_TS, br#"{"test": 2432232315}"#, REF_SIGNATURE));
        assert!(!s.verify(REF_ID, REF_TS + 1, REF_BODY, REF_SIGNATURE));
        assert!(!s.verify(
            "msg_p5jXN8AQM9LWM0D4loKWxJeK",
            REF_TS,
            REF_BODY,
            REF_SIGNATURE
        ));
    }

    #[test]
    fn verify_rejects_a_signature_made_with_another_secret() {
        let other = SigningSecret::generate();
        let signature = other.sign(REF_ID, REF_TS, REF_BODY);
        assert!(!reference().verify(REF_ID, REF_TS, REF_BODY, &signature));
        assert!(other.verify(REF_ID, REF_TS, REF_BODY, &signature));
    }

    #[test]
    fn parse_rejects_malformed_secrets_with_a_one_line_reason() {
        let too_short = format!("whsec_{}", BASE64.encode([7u8; 23]));
        let too_long = format!("whsec_{}", BASE64.encode([7u8; 65]));
        for (input, reason) in [
            ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "must start with whsec_"),
            (
                "WHSEC_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                "must start with whsec_",
            ),
            ("", "must start with whsec_"),
            ("whsec_", "holds 0"),
            ("whsec_not base64!", "standard base64"),
            ("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS", "standard base64"),
            (too_short.as_str(), "holds 23"),
            (too_long.as_str(), "holds 65"),
        ] {
            let error = SigningSecret::parse(input).expect_err(input);
            assert!(error.contains(reason), "{input:?}: {error}");
            assert!(!error.contains('\n'), "{error}");
        }
    }

    #[test]
    fn parse_accepts_the_bounds_of_the_key_length() {
        for len in [24, 32, 64] {
            let text = format!("whsec_{}", BASE64.encode(vec![1u8; len]));
            assert_eq!(SigningSecret::parse(&text).unwrap().to_whsec(), text);
        }
    }

    #[test]
    fn a_generated_secret_holds_32_bytes_and_round_trips() {
        let secret = SigningSecret::generate();
        assert_eq!(secret.0.len(), 32);
        let again = SigningSecret::parse(&secret.to_whsec()).unwrap();
        assert_eq!(again.0, secret.0);
        assert_ne!(SigningSecret::generate().0, secret.0);
    }

    #[test]
    fn debug_never_prints_the_key() {
        let secret = reference();
        let shown = format!("{secret:?} {:?}", Some(&secret));
        assert!(!shown.contains("MfKQ9r8G"), "{shown}");
        assert!(shown.contains("redacted"));
    }
}
