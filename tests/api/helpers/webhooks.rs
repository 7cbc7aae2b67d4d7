//! Standard Webhooks verification as a receiver would do it, written here from the
//! specification (not with the service's own signing code): HMAC-SHA256 over
//! "{webhook-id}.{webhook-timestamp}.{body}" with the base64-decoded `whsec_` secret,
//! compared with each space-separated `v1,<base64>` entry of `webhook-signature`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::receiver::Hit;

pub fn signature(secret: &str, id: &str, timestamp: &str, body: &[u8]) -> String {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").expect("whsec_ prefix"))
        .expect("base64 secret");
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&key).expect("any key length");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// `true` when the hit carries a valid signature by `secret`.
pub fn verifies(secret: &str, hit: &Hit) -> bool {
    let expected = signature(
        secret,
        hit.header("webhook-id"),
        hit.header("webhook-timestamp"),
        &hit.body,
    );
    hit.header("webhook-signature")
        .split(' ')
        .any(|s| s == expected)
}

#[test]
fn the_published_standard_webhooks_vector_verifies() {
    // From the Standard Webhooks specification's reference tests.
    let sig = signature(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        "1614265330",
        br#"{"test": 2432232314}"#,
    );
    assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
}
