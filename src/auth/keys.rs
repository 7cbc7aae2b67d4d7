//! API keys and tenant names as values (SPEC §10): generating a key, recognising a
//! well-formed one, hashing it, and checking a tenant's name.
//!
//! A key is `csk_` followed by [`RANDOM_CHARS`] base62 characters from the thread-local
//! CSPRNG (rand's `ThreadRng`: ChaCha, seeded and reseeded from the operating system), about
//! 238 bits. The database keeps only its SHA-256 ([`KeyHash`]) and its display prefix
//! (`csk_` and the next 8 characters). A fast unsalted hash is right here: the key is
//! random and long, not a password, so there is nothing to guess from the hash, and it is
//! computed on every request.
//!
//! Invariant: an [`ApiKey`] never shows itself in `Debug`; [`ApiKey::reveal`] is the one
//! way to print it (once, by `consuma keys create`).

use rand::Rng;
use rand::distr::Alphanumeric;
use sha2::{Digest, Sha256};

/// What every key starts with.
pub const KEY_PREFIX: &str = "csk_";
/// Random base62 characters after [`KEY_PREFIX`] in a generated key.
pub const RANDOM_CHARS: usize = 40;
/// Random characters a presented key must have at least (SPEC §10: at least 32).
const MIN_RANDOM_CHARS: usize = 32;
/// Random characters a presented key may have at most: anything longer is not ours, and
/// is refused before hashing.
const MAX_RANDOM_CHARS: usize = 128;
/// Characters of the display prefix: `csk_` and the next 8.
pub const DISPLAY_PREFIX_CHARS: usize = KEY_PREFIX.len() + 8;

/// A whole API key. `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKey({}…)", self.prefix())
    }
}

impl ApiKey {
    /// A new random key.
    pub fn generate() -> Self {
        let random: String = rand::rng()
            .sample_iter(Alphanumeric)
            .take(RANDOM_CHARS)
            .map(char::from)
            .collect();
        Self(format!("{KEY_PREFIX}{random}"))
    }

    /// The key as text, to show the operator once.
    pub fn reveal(&self) -> &str {
        &self.0
    }

    /// `csk_` and the next 8 characters: what lists and logs may show.
    pub fn prefix(&self) -> &str {
        &self.0[..DISPLAY_PREFIX_CHARS]
    }

    pub fn hash(&self) -> KeyHash {
        KeyHash::of(&self.0)
    }
}

/// Whether `token` has the shape of a key: `csk_` and 32 to 128 base62 characters.
pub fn is_well_formed(token: &str) -> bool {
    token.strip_prefix(KEY_PREFIX).is_some_and(|random| {
        (MIN_RANDOM_CHARS..=MAX_RANDOM_CHARS).contains(&random.len())
            && random.bytes().all(|b| b.is_ascii_alphanumeric())
    })
}

/// The SHA-256 of a whole key: what the database keeps and the key ring looks up.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyHash(pub [u8; 32]);

impl std::fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyHash({})", self.to_hex())
    }
}

impl KeyHash {
    pub fn of(key: &str) -> Self {
        Self(Sha256::digest(key.as_bytes()).into())
    }

    /// Lowercase hex, as stored.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Reads the stored form back; `None` when it is not 64 hex digits.
    pub fn from_hex(s: &str) -> Option<Self> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(s, &mut bytes).ok()?;
        Some(Self(bytes))
    }
}

/// Longest tenant name.
const MAX_TENANT_CHARS: usize = 64;

/// A tenant's name: 1 to 64 characters of `[a-z0-9_-]` (SPEC §10).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TenantName(String);

impl TenantName {
    /// Checks `s`; the error is one line and names the rule.
    pub fn parse(s: &str) -> Result<Self, String> {
        let allowed =
            |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-';
        if s.is_empty() || s.len() > MAX_TENANT_CHARS || !s.bytes().all(allowed) {
            return Err(format!(
                "a tenant name is 1 to {MAX_TENANT_CHARS} characters of a-z, 0-9, _ and -"
            ));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for TenantName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_is_csk_and_40_base62_characters() {
        let key = ApiKey::generate();
        let text = key.reveal();
        assert!(text.starts_with("csk_"), "{text}");
        assert_eq!(text.len(), 4 + RANDOM_CHARS);
        assert!(text[4..].bytes().all(|b| b.is_ascii_alphanumeric()));
        assert!(is_well_formed(text));
        assert_eq!(key.prefix(), &text[..12]);
    }

    #[test]
    fn generated_keys_differ_and_use_the_whole_alphabet() {
        let keys: Vec<ApiKey> = (0..200).map(|_| ApiKey::generate()).collect();
        let distinct: std::collections::HashSet<&str> = keys.iter().map(|k| k.reveal()).collect();
        assert_eq!(distinct.len(), keys.len());
        let seen: std::collections::HashSet<u8> = keys
            .iter()
            .flat_map(|k| k.reveal()[4..].bytes().collect::<Vec<_>>())
            .collect();
        // 8,000 draws from 62 symbols: every one of them shows up.
        assert_eq!(seen.len(), 62);
    }

    #[test]
    fn well_formed_keys_are_csk_and_32_to_128_base62_characters() {
        let ok = [
            "csk_".to_owned() + &"a".repeat(32),
            "csk_".to_owned() + &"Z9".repeat(64),
        ];
        for token in &ok {
            assert!(is_well_formed(token), "{token}");
        }
        let bad = [
            String::new(),
            "csk_".into(),
            "csk_".to_owned() + &"a".repeat(31),
            "csk_".to_owned() + &"a".repeat(129),
            "CSK_".to_owned() + &"a".repeat(40),
            "sk_".to_owned() + &"a".repeat(40),
            "csk_".to_owned() + &"a".repeat(39) + "-",
            "csk_".to_owned() + &"a".repeat(39) + "é",
            "Bearer csk_".to_owned() + &"a".repeat(40),
        ];
        for token in &bad {
            assert!(!is_well_formed(token), "{token}");
        }
    }

    #[test]
    fn the_hash_is_the_sha256_of_the_whole_key_in_hex() {
        // sha256("abc"), FIPS 180-2 appendix B.1.
        let h = KeyHash::of("abc");
        assert_eq!(
            h.to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(KeyHash::from_hex(&h.to_hex()), Some(h));
        assert_eq!(KeyHash::from_hex("zz"), None);
        let key = ApiKey::generate();
        assert_eq!(key.hash(), KeyHash::of(key.reveal()));
    }

    #[test]
    fn debug_never_prints_the_key() {
        let key = ApiKey::generate();
        let shown = format!("{key:?}");
        assert!(!shown.contains(key.reveal()), "{shown}");
        assert!(shown.contains(key.prefix()));
    }

    #[test]
    fn tenant_names_are_1_to_64_of_lowercase_digits_underscore_and_dash() {
        for ok in ["default", "a", "team-1_b", &"x".repeat(64), "0", "-", "_"] {
            assert_eq!(TenantName::parse(ok).unwrap().as_str(), ok);
        }
        for bad in [
            "",
            "Acme",
            "a b",
            "a.b",
            "é",
            "a/b",
            &"x".repeat(65),
            "tenant\n",
        ] {
            let e = TenantName::parse(bad).unwrap_err();
            assert!(!e.contains('\n'), "{e}");
        }
    }
}
