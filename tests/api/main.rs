//! The integration suite: one binary (matklad, "Delete Cargo Integration Tests").
//!
//! Every test starts the real `consuma` binary on port 0 with a temporary database and
//! talks HTTP to it; callback receivers are real HTTP servers on loopback. Tests written
//! with `both_backends!` run once on SQLite and once on PostgreSQL.

mod helpers;

mod adaptive;
mod auth;
mod backlog;
mod callbacks;
mod config;
mod conformance;
mod console;
mod destinations;
mod durability;
mod edge;
mod errors;
mod faults;
mod files;
mod first_hour;
mod host_rule;
mod idempotency;
mod interrupted;
mod isolation;
mod leases;
mod load;
mod load_gate;
mod load_report;
mod load_work;
mod ops;
mod origins;
mod paging;
mod postgres;
mod queue_vacuum;
mod rate_limit;
mod redelivery;
mod redelivery_limits;
mod requests;
mod scale_out;
mod schema;
mod scoping;
mod ssrf;
mod structure;
mod sync;
mod tenants;
mod works_async;
mod works_console;
mod works_file;
mod works_filter;
mod works_sync;
mod works_sync_order;
