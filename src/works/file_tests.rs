//! The works file's rules, one table row per mistake.

use super::*;

fn env(name: &str) -> Option<String> {
    match name {
        "PDF_TOKEN" => Some("s3cret".into()),
        "CRLF" => Some("a\r\nb".into()),
        _ => None,
    }
}

fn parse_text(text: &str) -> Result<Vec<WorkSpec>, WorksFileError> {
    parse(Path::new("/etc/consuma/works.toml"), text, env)
}

const GOOD: &str = r#"
[works.pdf-render]
kind = "http"
url = "http://127.0.0.1:9000/render"
timeout = "250ms"
max_in_flight = 8
max_attempts = 5
headers = { authorization = "Bearer ${PDF_TOKEN}", x-price = "$$5" }
max_response_bytes = 2048
tenants = ["acme", "beta"]

[works.pdf-render.input_schema]
type = "object"
required = ["doc"]
properties = { doc = { type = "string" } }

[works.echo]
kind = "http"
url = "https://echo.internal/"
"#;

#[test]
fn a_good_file_gives_checked_works_with_defaults() {
    let works = parse_text(GOOD).unwrap();
    assert_eq!(works.len(), 2);
    let echo = works.iter().find(|w| w.name == "echo").unwrap();
    assert_eq!(echo.timeout, Duration::from_secs(30));
    assert_eq!((echo.max_in_flight, echo.max_attempts), (64, 3));
    assert_eq!(echo.max_response_bytes, DEFAULT_RESPONSE_BYTES);
    assert!(echo.input_schema.is_none() && echo.tenants.is_none());
    let pdf = works.iter().find(|w| w.name == "pdf-render").unwrap();
    assert_eq!(pdf.timeout, Duration::from_millis(250));
    assert_eq!(
        (pdf.max_in_flight, pdf.max_attempts, pdf.max_response_bytes),
        (8, 5, 2048)
    );
    let header = |n: &str| pdf.headers.iter().find(|(h, _)| h == n).unwrap().1.clone();
    assert_eq!(header("authorization"), "Bearer s3cret");
    assert!(header("authorization").is_sensitive());
    assert_eq!(header("x-price"), "$5");
    assert_eq!(
        pdf.tenants.as_deref(),
        Some(&["acme".to_owned(), "beta".to_owned()][..])
    );
    let schema = pdf.input_schema.as_ref().unwrap();
    assert_eq!(schema.violations(&serde_json::json!({}))[0].pointer, "");
    let shown = format!("{pdf:?}");
    assert!(
        !shown.contains("s3cret") && !shown.contains("9000"),
        "{shown}"
    );
}

#[test]
fn an_empty_file_has_no_works() {
    assert!(parse_text("").unwrap().is_empty());
}

/// `(the [works.x] table's body, the expected message after the file name)`.
const BAD_TABLES: &[(&str, &str)] = &[
    ("url = \"http://a/\"", "[works.x] kind: is required"),
    (
        "kind = \"grpc\"\nurl = \"http://a/\"",
        "[works.x] kind: unknown kind",
    ),
    ("kind = \"http\"", "[works.x] url: is required"),
    (
        "kind = \"http\"\nurl = \"ftp://a/\"",
        "[works.x] url: must be an http:// or https:// URL",
    ),
    (
        "kind = \"http\"\nurl = \"not a url\"",
        "[works.x] url: not a URL",
    ),
    (
        "kind = \"http\"\nurl = \"http://a/\"\ncolour = 1",
        "[works.x] colour: unknown key",
    ),
    (
        "kind = \"http\"\nurl = \"http://a/\"\nmax_in_flight = \"8\"",
        "[works.x] max_in_flight: wrong type",
    ),
    (
        "kind = \"http\"\nurl = \"http://a/\"\nmax_in_flight = 0",
        "[works.x] max_in_flight: 0 is out of range",
    ),
    (
        "kind = \"http\"\nurl = \"http://a/\"\nmax_in_flight = 10001",
        "[works.x] max_in_flight: 10001 is out of range",
    ),
    (
        "kind = \"http\"\nurl = \"http://a/\"\nmax_attempts = 21",
        "[works.x] max_attempts: 21 is out of range",
    ),
    (
        "kind = \"http\"\nurl = \"http://a/\"\nmax_response_bytes = 16777217",
        "[works.x] max_response_bytes: 16777217 is out of range",
    ),
    (
        "kind = \"http\"\nurl = \"http://a/\"\nmax_response_bytes = 1.5",
        "[works.x] max_response_bytes: wrong type",
    ),
    (
        "kind = \"http\"\nurl = \"http://a/\"\nmax_in_flight = 128\nmax_response_bytes = 16777216",
        "[works.x] max_response_bytes: max_in_flight (128) × max_response_bytes (16777216) exceeds 1 GiB",
    ),
    (
        "kind = \"http\"\nurl = \"http://a/\"\ntimeout = \"0ms\"",
        "[works.x] timeout: \"0ms\" is out of range",
    ),
    (
        "kind = \"http\"\nurl = \"http://a/\"\ntimeout = \"16m\"",
        "[works.x] timeout: \"16m\" is out of range",
    ),
    (
        "kind = \"http\"\nurl = \"http://a/\"\ntimeout = \"30\"",
        "[works.x] timeout: \"30\": expected a whole number",
    ),
    (
        "kind = \"http\"\nurl = \"http://a/\"\ntimeout = 30",
        "[works.x] timeout: wrong type",
    ),
    (
        "kind = \"http\"\nurl = \"http://a/\"\ntimeout = 1979-05-27T07:32:00Z",
        "[works.x] timeout: TOML datetimes are not accepted",
    ),
    (
        "kind = \"http\"\nurl = \"http://a/\"\ninput_schema = { default = 1979-05-27 }",
        "[works.x] input_schema.default: TOML datetimes are not accepted",
    ),
    (
        "kind = \"http\"\nurl = \"http://a/\"\nheaders = { authorization = \"${NOPE}\" }",
        "[works.x] headers.authorization: environment variable NOPE is not set",
    ),
    (
        "kind = \"http\"\nurl = \"http://${NOPE}/\"",
        "[works.x] url: environment variable NOPE is not set",
    ),
    (
        "kind = \"http\"\nurl = \"http://a/\"\nheaders = { x-a = \"${CRLF}\" }",
        "[works.x] headers.x-a: the value holds CR or LF",
    ),
    (
        "kind = \"http\"\nurl = \"http://a/\"\nheaders = { \"bad name\" = \"1\" }",
        "[works.x] headers.bad name: not a valid header name",
    ),
    (
        "kind = \"http\"\nurl = \"http://a/\"\nheaders = { x-n = 1 }",
        "[works.x] headers: wrong type",
    ),
    (
        "kind = \"http\"\nurl = \"http://a/\"\ninput_schema = { type = \"nope\" }",
        "[works.x] input_schema: invalid JSON Schema",
    ),
    (
        "kind = \"http\"\nurl = \"http://a/\"\ninput_schema = { \"$schema\" = \"http://json-schema.org/draft-07/schema#\" }",
        "[works.x] input_schema: $schema must be",
    ),
    (
        "kind = \"http\"\nurl = \"http://a/\"\ninput_schema = { pattern = \"(a)\\\\1\" }",
        "[works.x] input_schema: invalid JSON Schema",
    ),
    (
        "kind = \"http\"\nurl = \"http://a/\"\ninput_schema = {}\ninput_schema_file = \"s.json\"",
        "[works.x] input_schema_file: give input_schema or input_schema_file, not both",
    ),
    (
        "kind = \"http\"\nurl = \"http://a/\"\ninput_schema_file = \"no-such.json\"",
        "[works.x] input_schema_file: cannot read /etc/consuma/no-such.json",
    ),
    (
        "kind = \"http\"\nurl = \"http://a/\"\ntenants = [\"Acme Corp\"]",
        "[works.x] tenants: \"Acme Corp\" is not a tenant name",
    ),
    (
        "kind = \"http\"\nurl = \"http://a/\"\ntenants = \"acme\"",
        "[works.x] tenants: wrong type",
    ),
];

#[test]
fn every_bad_table_names_file_table_and_key() {
    for (body, want) in BAD_TABLES {
        let err = parse_text(&format!("[works.x]\n{body}\n"))
            .unwrap_err()
            .to_string();
        let want = format!("--works /etc/consuma/works.toml: {want}");
        assert!(
            err.starts_with(&want),
            "{body:?}\n got: {err}\nwant: {want}"
        );
        assert!(!err.contains('\n'), "one line: {err:?}");
    }
}

#[test]
fn reserved_headers_are_refused() {
    for name in RESERVED_HEADERS {
        let text = format!(
            "[works.x]\nkind = \"http\"\nurl = \"http://a/\"\nheaders = {{ {name} = \"v\" }}\n"
        );
        let err = parse_text(&text).unwrap_err().to_string();
        assert!(
            err.contains(&format!("[works.x] headers.{name}: is set by the service")),
            "{err}"
        );
    }
}

#[test]
fn bad_names_and_shapes_are_refused() {
    let cases = [
        (
            "[works.Text]\nkind = \"http\"",
            "[works.Text] the name must match",
        ),
        (
            "[works.9x]\nkind = \"http\"",
            "[works.9x] the name must match",
        ),
        (
            "[works.text]\nkind = \"http\"\nurl = \"http://a/\"",
            "[works.text] `text` is the built-in work",
        ),
        ("[work.x]\nkind = \"http\"", "work: unknown key"),
        ("works = 1", "works: must be a table"),
        ("[works]\nx = 1", "[works.x] must be a table"),
        ("[works.x\nkind = \"http\"", "line 1, column"),
    ];
    for (text, want) in cases {
        let err = parse_text(text).unwrap_err().to_string();
        assert!(err.contains(want), "{text:?}\n got: {err}\nwant: {want}");
        assert!(!err.contains('\n'), "one line: {err:?}");
    }
    let long = format!(
        "[works.{}]\nkind = \"http\"\nurl = \"http://a/\"",
        "a".repeat(64)
    );
    assert!(
        parse_text(&long)
            .unwrap_err()
            .to_string()
            .contains("the name must match")
    );
    let ok = format!(
        "[works.{}]\nkind = \"http\"\nurl = \"http://a/\"",
        "a".repeat(63)
    );
    assert!(parse_text(&ok).is_ok());
}

#[test]
fn a_schema_file_is_read_beside_the_works_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("s.json"),
        r#"{"type": "object", "required": ["a"]}"#,
    )
    .unwrap();
    std::fs::write(dir.path().join("bad.json"), "{").unwrap();
    let path = dir.path().join("works.toml");
    let text = "[works.x]\nkind = \"http\"\nurl = \"http://a/\"\ninput_schema_file = \"s.json\"\n";
    let works = parse(&path, text, env).unwrap();
    assert_eq!(
        works[0]
            .input_schema
            .as_ref()
            .unwrap()
            .violations(&serde_json::json!({}))
            .len(),
        1
    );
    let bad = text.replace("s.json", "bad.json");
    let err = parse(&path, &bad, env).unwrap_err().to_string();
    assert!(
        err.contains("[works.x] input_schema_file:") && err.contains("is not JSON"),
        "{err}"
    );
}

#[test]
fn timeouts_follow_the_retention_grammar_plus_ms() {
    let ok = [
        ("1ms", 1),
        ("250ms", 250),
        ("30s", 30_000),
        ("15m", 900_000),
    ];
    for (s, ms) in ok {
        assert_eq!(parse_timeout(s), Ok(Duration::from_millis(ms)), "{s}");
    }
    for bad in [
        "",
        "ms",
        "-1s",
        "1.5s",
        "1 s",
        "1h",
        "1d",
        "10w",
        "99999999999999999999s",
    ] {
        assert!(parse_timeout(bad).is_err(), "{bad:?}");
    }
}
