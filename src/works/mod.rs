//! Works (SPEC §13, §17 "Works"): named units of work the service performs behind
//! `/sync/{work}` and `/async/{work}`.
//!
//! - [`file`]: `--works FILE` (env `CONSUMA_WORKS`), parsed and checked at start into
//!   [`WorkSpec`]s; every mistake is one [`file::WorksFileError`] line (exit status 2).
//! - [`schema`]: an input schema (JSON Schema draft 2020-12, nothing fetched, `format`
//!   asserted, `pattern` run by a linear-time engine) and its violations as JSON Pointers.
//! - [`work`]: the public [`Work`] trait every work implements, built-in `text` and the
//!   operator's `http` works alike, and its [`WorkError`] (retryable or not).
//! - [`upstream`]: the `http` kind: one POST to the operator's service, judged per §13/§17.
//! - [`registry`]: the works an instance serves, and the [`WorksBuilder`] an embedder uses.

/// `${NAME}` expansion in strings of the works file.
mod env;
/// The works file.
pub mod file;
/// The upstream body of an async request.
pub mod input;
/// Works by name.
pub mod registry;
/// An async request's attempts.
pub mod run;
/// Input schemas.
pub mod schema;
/// The built-in `text` work behind the trait.
pub mod text;
/// The `http` kind.
pub mod upstream;
/// The `Work` trait.
pub mod work;

pub use file::{WorkSpec, WorksFileError};
pub use registry::{Registry, WorksBuilder};
pub use work::{Work, WorkCall, WorkError, WorkErrorKind};
