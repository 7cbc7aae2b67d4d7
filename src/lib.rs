//! consuma: one unit of work offered inline (`POST /sync`) and as acknowledge-now,
//! call-back-later (`POST /async` → a signed webhook), with every request recorded.
//!
//! # Layout, in request order
//!
//! - [`cli`]: the subcommands; [`config`]: `serve`'s flags and `CONSUMA_*` variables,
//!   checked into a [`config::Config`]; [`commands`]: `consuma keys …`, `consuma secret …`.
//! - [`app`]: builds the application and runs it until [`shutdown`] says stop.
//! - [`auth`]: API keys and tenants: the key ring, the [`auth::Caller`] scoped routes
//!   take, each tenant's signing secrets.
//! - [`listen`]: the TCP listener, with room for bursts of connections.
//! - [`http`]: routes, extractors (the authentication layer turns a request into its
//!   caller, or a 401; the one [`http::scope::Scope`] every scoped route takes), the one
//!   error type; [`http::guard`]'s Host rule and headers at the edge; thin handlers; the
//!   HTTP/1.1 server (header and body timeouts, the connection cap). [`http::ui`] serves the operator
//!   console (the files in `ui/`), a browser client of those same routes.
//! - [`intake`]: a request's way in: admit (with [`idempotency`]), work or enqueue, answer.
//! - [`work`]: THE work, pure apart from its non-blocking delay, and its input as stored
//!   ([`work::StoredInput`]); shared by both styles.
//! - [`works`]: named works (SPEC §13): the works file, input schemas, the public
//!   [`works::Work`] trait (`text` and `http` implement it) and the registry.
//! - [`store`]: the [`store::Store`] trait as the sum of its roles (records, jobs,
//!   destinations, keys, housekeeping; `store/roles.rs`), and two backends that implement
//!   each role in a file of the same name (`sqlite/store_jobs.rs` ↔
//!   `postgres/store_jobs.rs`, …); SQLite (default) batches writes through one writer
//!   task, PostgreSQL groups admissions and the engine's records into batches
//!   (`postgres/batch.rs`).
//! - [`engine`]: the durable job engine: leases, retries as rows, wake-ups.
//! - [`delivery`]: one signed callback attempt; retry schedule and classification.
//! - [`ssrf`]: the callback policy, at submit time and at connect time.
//! - [`housekeeping`]: retention and bounded clean-up.
//! - [`telemetry`]: logs, trace context, metrics.
//! - [`load`]: `consuma load`, the load generator.
//!
//! Module imports form a DAG, no file is over 500 lines and no function over 80
//! (tests/api/structure.rs fails otherwise): `cli` sits above
//! `config`, the store's model knows origins, `http` knows callers, and the small shared
//! pieces (`http::request_id`, `store::sqlite::current`) are leaves.

/// Build and run the service.
pub mod app;
/// API keys, tenants and the caller of a request.
pub mod auth;
/// Flags of every subcommand.
pub mod cli;
/// `consuma keys …` and `consuma secret …`.
pub mod commands;
/// Checked configuration.
pub mod config;
/// Callback delivery.
pub mod delivery;
/// The job engine.
pub mod engine;
/// Retention and bounded maintenance.
pub mod housekeeping;
/// The HTTP API.
pub mod http;
/// Idempotency keys.
pub mod idempotency;
/// Admission of requests.
pub mod intake;
/// TCP listeners with a deep accept queue.
pub mod listen;
/// The load generator.
pub mod load;
/// SIGTERM/SIGINT → cancellation.
pub mod shutdown;
/// The callback policy (SSRF).
pub mod ssrf;
/// Persistence.
pub mod store;
/// Logs, traces, metrics.
pub mod telemetry;
/// The work function.
pub mod work;
/// Named works: the works file, input schemas, the `Work` trait.
pub mod works;
