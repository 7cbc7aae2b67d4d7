//! `${NAME}` in a string of the works file is replaced by the environment variable `NAME`
//! (SPEC §17); `$$` is a literal `$`. A missing variable, an unclosed `${` or an empty name
//! is an error the caller turns into a start error naming the table and key.

/// `raw` with every `${NAME}` replaced through `lookup` and every `$$` made `$`.
pub fn expand(raw: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(tail) = after.strip_prefix('{') {
            let end = tail.find('}').ok_or_else(|| {
                "`${` without a closing `}` (write `$$` for a literal `$`)".to_owned()
            })?;
            let name = &tail[..end];
            if !is_variable_name(name) {
                return Err(format!("`${{{name}}}` is not a variable name"));
            }
            let value =
                lookup(name).ok_or_else(|| format!("environment variable {name} is not set"))?;
            out.push_str(&value);
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "TOKEN" => Some("s3cret".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_anywhere_in_a_string() {
        let cases = [
            ("Bearer ${TOKEN}", "Bearer s3cret"),
            ("${TOKEN}-${TOKEN}", "s3cret-s3cret"),
            ("a$$b", "a$b"),
            ("$$${TOKEN}", "$s3cret"),
            ("price $5", "price $5"),
            ("${EMPTY}x", "x"),
            ("plain", "plain"),
        ];
        for (raw, want) in cases {
            assert_eq!(expand(raw, env).as_deref(), Ok(want), "{raw:?}");
        }
    }

    #[test]
    fn missing_unclosed_or_bad_names_are_errors() {
        for (raw, needle) in [
            ("${NOPE}", "NOPE is not set"),
            ("${TOKEN", "closing"),
            ("${}", "not a variable name"),
            ("${1A}", "not a variable name"),
        ] {
            let err = expand(raw, env).unwrap_err();
            assert!(err.contains(needle), "{raw:?}: {err}");
        }
    }
}
