//! A work's input schema (SPEC §13, §17): JSON Schema draft 2020-12 compiled once at
//! start by `jsonschema` with nothing fetched (`$ref` resolves inside the document only),
//! `format` asserted and `pattern` run by the linear-time `regex` engine. A violation is
//! reported at the JSON Pointer of the failing location (`""` for the root).

use std::sync::Arc;

use serde_json::Value;

/// The only `$schema` a works file may name.
pub const DRAFT_2020_12: &str = "https://json-schema.org/draft/2020-12/schema";
/// At most this many violations are reported for one body (§17).
pub const MAX_VIOLATIONS: usize = 50;

/// A compiled schema and the document it came from (for `GET /works` and OpenAPI).
#[derive(Clone)]
pub struct InputSchema {
    document: Arc<Value>,
    validator: Arc<jsonschema::Validator>,
}

/// One schema violation: where (a JSON Pointer into the input) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub pointer: String,
    pub message: String,
}

impl InputSchema {
    /// Compiles `document`, or says why it cannot serve as an input schema.
    pub fn compile(document: Value) -> Result<Self, String> {
        if let Some(declared) = document.get("$schema") {
            let declared = declared.as_str().unwrap_or_default();
            if declared.trim_end_matches('#') != DRAFT_2020_12 {
                return Err(format!("$schema must be {DRAFT_2020_12:?} (draft 2020-12)"));
            }
        }
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .offline()
            .should_validate_formats(true)
            .should_ignore_unknown_formats(false)
            .with_pattern_options(jsonschema::PatternOptions::regex())
            .build(&document)
            .map_err(|e| format!("invalid JSON Schema: {}", one_line(&e.to_string())))?;
        Ok(Self {
            document: Arc::new(document),
            validator: Arc::new(validator),
        })
    }

    /// The schema as written (converted to JSON).
    pub fn document(&self) -> &Value {
        &self.document
    }

    /// Every violation of `input`, at most [`MAX_VIOLATIONS`]; empty when it is valid.
    pub fn violations(&self, input: &Value) -> Vec<Violation> {
        self.validator
            .iter_errors(input)
            .take(MAX_VIOLATIONS)
            .map(|e| Violation {
                pointer: e.instance_path().to_string(),
                message: one_line(&e.to_string()),
            })
            .collect()
    }
}

impl std::fmt::Debug for InputSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("InputSchema").field(&self.document).finish()
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema(v: Value) -> Result<InputSchema, String> {
        InputSchema::compile(v)
    }

    #[test]
    fn violations_are_json_pointers() {
        let s = schema(json!({
            "type": "object",
            "required": ["items"],
            "properties": {"items": {"type": "array", "items": {
                "type": "object", "properties": {"size": {"type": "integer", "maximum": 10}}
            }}}
        }))
        .unwrap();
        let v = s.violations(&json!({"items": [{"size": 11}, {"size": "x"}]}));
        let pointers: Vec<&str> = v.iter().map(|v| v.pointer.as_str()).collect();
        assert_eq!(pointers, ["/items/0/size", "/items/1/size"]);
        let root = s.violations(&json!({}));
        assert_eq!(root[0].pointer, "");
        assert!(s.violations(&json!({"items": []})).is_empty());
    }

    #[test]
    fn at_most_fifty_violations() {
        let s = schema(json!({"type": "array", "items": {"type": "string"}})).unwrap();
        let many: Vec<u32> = (0..200).collect();
        assert_eq!(s.violations(&json!(many)).len(), MAX_VIOLATIONS);
    }

    #[test]
    fn format_is_asserted() {
        let s =
            schema(json!({"properties": {"when": {"type": "string", "format": "date"}}})).unwrap();
        assert_eq!(s.violations(&json!({"when": "yesterday"})).len(), 1);
        assert!(s.violations(&json!({"when": "2026-12-07"})).is_empty());
    }

    #[test]
    fn local_refs_resolve() {
        let s = schema(json!({
            "$defs": {"size": {"type": "integer"}},
            "properties": {"size": {"$ref": "#/$defs/size"}}
        }))
        .unwrap();
        assert_eq!(s.violations(&json!({"size": "big"}))[0].pointer, "/size");
    }

    #[test]
    fn refused_schemas() {
        let cases = [
            (
                json!({"$schema": "http://json-schema.org/draft-07/schema#"}),
                "$schema",
            ),
            (
                json!({"$ref": "https://example.com/s.json"}),
                "invalid JSON Schema",
            ),
            (json!({"$ref": "other.json"}), "invalid JSON Schema"),
            (json!({"type": "no-such-type"}), "invalid JSON Schema"),
            (
                json!({"type": "string", "pattern": "(a)\\1"}),
                "invalid JSON Schema",
            ),
            (
                json!({"type": "string", "pattern": "(?<=a)b"}),
                "invalid JSON Schema",
            ),
            (json!({"minimum": "three"}), "invalid JSON Schema"),
        ];
        for (doc, needle) in cases {
            let err = schema(doc.clone()).unwrap_err();
            assert!(err.contains(needle), "{doc}: {err}");
        }
        assert!(schema(json!({"$schema": DRAFT_2020_12, "type": "object"})).is_ok());
    }
}
