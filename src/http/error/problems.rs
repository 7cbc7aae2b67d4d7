//! The catalogue of problem types: every `/problems/<slug>` the service answers with,
//! and the human text `GET /problems/{slug}` serves for it (also listed in the README).
//! [`ApiError::slug`](super::ApiError::slug) and [`ApiError::status`](super::ApiError::status)
//! name a kind; this is where each kind is explained.

/// Every kind of problem: its slug (the last segment of `type`) and the human text served
/// at `/problems/<slug>`. `GET /problems/{slug}` documents exactly these slugs.
pub const PROBLEMS: &[(&str, &str)] = &[
    (
        "unauthorized",
        "401: an API key is required (the service holds at least one), and the request sent none, a malformed one, or one that is unknown or revoked. Send Authorization: Bearer <key>.",
    ),
    (
        "unsupported-media-type",
        "415: send the body with Content-Type: application/json.",
    ),
    (
        "payload-too-large",
        "413: the body is larger than the configured limit (default 256 KiB).",
    ),
    (
        "request-timeout",
        "408: the body did not arrive within the body timeout (default 30 s) counted from the end of the headers; the connection is closed. Send the whole body promptly.",
    ),
    (
        "malformed-body",
        "400: the body is not valid JSON, or is JSON but not an object.",
    ),
    (
        "validation-error",
        "422: a body field is missing, of the wrong type or out of range; `errors` lists each field.",
    ),
    (
        "invalid-query",
        "422: a query parameter is not acceptable; `errors` lists each parameter.",
    ),
    (
        "callback-refused",
        "400: callback_url is not an http(s) URL, or points at an address or name the callback policy refuses (loopback, private, link-local, metadata, ...).",
    ),
    (
        "invalid-idempotency-key",
        "400: Idempotency-Key must be 1 to 255 printable ASCII characters.",
    ),
    (
        "idempotency-key-reused",
        "422: the Idempotency-Key was already used with a different body.",
    ),
    (
        "idempotency-key-in-flight",
        "409: the first request with this Idempotency-Key has not finished; retry after Retry-After.",
    ),
    (
        "delivery-in-progress",
        "409: a delivery of this request's callback is pending or running; redeliver it once it has ended (sent or failed).",
    ),
    (
        "not-async",
        "422: the request is a sync request; it has no callback to redeliver.",
    ),
    (
        "not-found",
        "404: no such request id (or another tenant's), or no such route.",
    ),
    (
        "misdirected-request",
        "421: the instance is open (no API key exists) and the request's Host is a DNS name it does not answer: only IP addresses, localhost, *.localhost and the names of --allowed-host pass, so that a web page cannot reach it through a rebound DNS name. Start it with --allowed-host NAME, use an IP address, or create an API key.",
    ),
    ("missing-host", "400: the request has no Host header."),
    (
        "method-not-allowed",
        "405: the route does not accept this method; see the Allow header.",
    ),
    (
        "service-unavailable",
        "503: the database does not answer, the service is overloaded or shutting down; nothing was acknowledged. Retry after Retry-After.",
    ),
    (
        "overloaded",
        "503: the backlog of async requests whose callback is not yet delivered is at --max-pending-jobs; nothing was stored. Retry after Retry-After.",
    ),
    (
        "quota-exceeded",
        "429: this tenant's backlog of callbacks not yet delivered is at --max-pending-jobs-per-tenant (POST /async: retry after Retry-After), or a request was redelivered --max-redeliveries times; nothing was stored.",
    ),
    (
        "work-failed",
        "500: the work itself failed; the request is recorded with status failed.",
    ),
    (
        "internal-error",
        "500: an unexpected error; details are in the service log.",
    ),
];

/// The problem types of the work routes (SPEC §13, §17), answered by [`crate::http::works`]
/// from an upstream's outcome rather than from an [`ApiError`]; served with the others.
pub const WORK_PROBLEMS: &[(&str, &str)] = &[
    (
        "unknown-work",
        "404: no work of this name exists, the name is not a work name, or your tenant may not call it. GET /works lists the works you may call.",
    ),
    (
        "work-rejected",
        "422: the work's upstream refused the input (it answered a 4xx other than 408, 409, 425 and 429). `detail` quotes the start of its answer. The record says `failed`; retrying the same input fails the same way.",
    ),
    (
        "upstream-failed",
        "502: the work's upstream could not be reached, answered 5xx, 408, 409, 425 or 429, or answered a 2xx whose body is not JSON or is over the work's max_response_bytes. The record says `failed`.",
    ),
    (
        "upstream-timeout",
        "504: the work's upstream did not complete its answer within the work's timeout. The record says `failed`; a retry with the same Idempotency-Key reaches the upstream with the same idempotency-key header.",
    ),
    (
        "work-busy",
        "503: the work is at its max_in_flight on this instance and no slot freed within its timeout. Nothing was recorded; retry after Retry-After.",
    ),
];

/// The human text served at `/problems/<slug>`; `None` for an unknown slug.
pub fn problem_description(slug: &str) -> Option<&'static str> {
    PROBLEMS
        .iter()
        .chain(WORK_PROBLEMS)
        .find(|(known, _)| *known == slug)
        .map(|(_, text)| *text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::error::ApiError;

    /// One of each kind of [`ApiError`]; the `match` fails to compile when a kind is added.
    fn one_of_each() -> Vec<ApiError> {
        use ApiError::*;
        let all = vec![
            Unauthorized("x"),
            UnsupportedMediaType,
            PayloadTooLarge { limit: 1 },
            RequestTimeout(std::time::Duration::from_secs(1)),
            MalformedJson("x".into()),
            NotAnObject("null"),
            Validation(Vec::new()),
            InvalidQuery(Vec::new()),
            CallbackRefused("x".into()),
            InvalidIdempotencyKey("x"),
            IdempotencyKeyReused,
            IdempotencyKeyInFlight,
            DeliveryInProgress,
            NotAsync,
            NotFound("x".into()),
            Misdirected("x".into()),
            MissingHost,
            MethodNotAllowed("GET".into()),
            Unavailable("x"),
            Overloaded(1),
            QuotaExceeded(1),
            RedeliveryRefused("x".into()),
            WorkFailed {
                request_id: uuid::Uuid::nil(),
                error: "x".into(),
            },
            Internal(anyhow::anyhow!("x")),
        ];
        for e in &all {
            match e {
                Unauthorized(_)
                | UnsupportedMediaType
                | PayloadTooLarge { .. }
                | RequestTimeout(_)
                | MalformedJson(_)
                | NotAnObject(_)
                | Validation(_)
                | InvalidQuery(_)
                | CallbackRefused(_)
                | InvalidIdempotencyKey(_)
                | IdempotencyKeyReused
                | IdempotencyKeyInFlight
                | DeliveryInProgress
                | NotAsync
                | NotFound(_)
                | Misdirected(_)
                | MissingHost
                | MethodNotAllowed(_)
                | Unavailable(_)
                | Overloaded(_)
                | QuotaExceeded(_)
                | RedeliveryRefused(_)
                | WorkFailed { .. }
                | Internal(_) => {}
            }
        }
        all
    }

    #[test]
    fn every_problem_type_is_documented_and_every_documented_one_is_used() {
        let used: std::collections::BTreeSet<&str> =
            one_of_each().iter().map(ApiError::slug).collect();
        let documented: std::collections::BTreeSet<&str> =
            PROBLEMS.iter().map(|(slug, _)| *slug).collect();
        assert_eq!(used, documented);
        for (slug, text) in PROBLEMS {
            let status = one_of_each()
                .into_iter()
                .find(|e| e.slug() == *slug)
                .map(|e| e.status().as_u16())
                .unwrap();
            assert!(text.starts_with(&format!("{status}: ")), "{slug}: {text}");
        }
    }
}
