//! A work's input as the upstream receives it (SPEC §17): the request body's members in
//! their order with their values' exact text, `callback_url` removed for async.

use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

/// The members of a JSON object, in order, values as written.
struct Members(Vec<(String, Box<RawValue>)>);

impl<'de> serde::Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Members;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
                let mut out = Vec::new();
                while let Some(entry) = map.next_entry::<String, Box<RawValue>>()? {
                    out.push(entry);
                }
                Ok(Members(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// `body` (a JSON object) without its top-level `member`, everything else as written.
pub fn without_member(body: &[u8], member: &str) -> Result<String, String> {
    let Members(members) = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let mut out = String::with_capacity(body.len());
    out.push('{');
    for (key, value) in members.iter().filter(|(k, _)| k != member) {
        if out.len() > 1 {
            out.push(',');
        }
        out.push_str(&serde_json::to_string(key).expect("a string serialises"));
        out.push(':');
        out.push_str(value.get());
    }
    out.push('}');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_keep_their_order_and_exact_text() {
        let body = br#"{"z": 1.50, "callback_url": "https://x/", "a": {"b" : [1e2, "\u00e9"]}}"#;
        assert_eq!(
            without_member(body, "callback_url").unwrap(),
            r#"{"z":1.50,"a":{"b" : [1e2, "\u00e9"]}}"#
        );
        assert_eq!(
            without_member(br#"{"callback_url": 1}"#, "callback_url").unwrap(),
            "{}"
        );
        assert!(without_member(b"[1]", "callback_url").is_err());
    }
}
