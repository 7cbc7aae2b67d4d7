//! The command line (SPEC §6, §10): `consuma [serve]`, `consuma load`, `consuma secret`,
//! `consuma keys`.
//!
//! Every flag of `serve` also reads `CONSUMA_<FLAG>` from the environment; the doc comment
//! of each field is its `--help` text ([`crate::config::ServeArgs`]). Values are only parsed
//! here; [`crate::config`] checks them and turns them into a typed [`Config`](crate::config::Config).

use clap::{Args, Parser, Subcommand};

use crate::auth::TenantName;
use crate::config::ServeArgs;

#[derive(Debug, Parser)]
#[command(
    name = "consuma",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// `consuma` with no subcommand serves, with these flags.
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service (the default).
    Serve(ServeArgs),
    /// Generate load against a running service and report latency and callbacks.
    Load(crate::load::LoadArgs),
    /// Print a tenant's callback signing secret receivers verify with, or rotate it.
    Secret(SecretArgs),
    /// Create, list and revoke API keys.
    Keys(KeysArgs),
}

#[derive(Debug, Clone, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct SecretArgs {
    #[command(subcommand)]
    pub action: Option<SecretAction>,

    /// Whose secret to print.
    #[arg(long, default_value = crate::auth::DEFAULT_TENANT, value_parser = parse_tenant)]
    pub tenant: TenantName,

    /// The database whose stored secret to print (as for `serve`).
    #[arg(long, env = "CONSUMA_DATABASE_URL", hide_env = true)]
    pub database_url: Option<String>,

    /// When set, this is the tenant `default`'s secret, and it is printed as it is.
    #[arg(long, env = "CONSUMA_SIGNING_SECRET", hide_env_values = true)]
    pub signing_secret: Option<String>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum SecretAction {
    /// Make a new secret the tenant's current one and print it; the older ones stay valid
    /// (callbacks carry a signature for each) until the overlap ends.
    Rotate(RotateArgs),
}

#[derive(Debug, Clone, Args)]
pub struct RotateArgs {
    /// The tenant whose secret to rotate.
    #[arg(long, value_parser = parse_tenant)]
    pub tenant: TenantName,

    /// Seconds the secrets replaced stay valid beside the new one.
    #[arg(long, default_value_t = 86_400, value_parser = clap::value_parser!(u64).range(0..=31_536_000))]
    pub overlap_secs: u64,

    /// The database (as for `serve`).
    #[arg(long, env = "CONSUMA_DATABASE_URL", hide_env = true)]
    pub database_url: Option<String>,

    /// Only read to warn: a server given it signs `default`'s callbacks with it alone.
    #[arg(long, env = "CONSUMA_SIGNING_SECRET", hide_env_values = true)]
    pub signing_secret: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct KeysArgs {
    #[command(subcommand)]
    pub action: KeysAction,
}

#[derive(Debug, Clone, Subcommand)]
pub enum KeysAction {
    /// Create a key; it is printed once, alone on stdout, and never shown again. The
    /// tenant's first key also gives it a signing secret.
    Create {
        /// The tenant the key's requests belong to: 1 to 64 of a-z, 0-9, _ and -.
        #[arg(long, value_parser = parse_tenant)]
        tenant: TenantName,
        /// The key sees every tenant's records.
        #[arg(long)]
        admin: bool,
        #[command(flatten)]
        db: DatabaseArg,
    },
    /// List every key: prefix, tenant, admin, created, last used, revoked (never a key).
    List {
        #[command(flatten)]
        db: DatabaseArg,
    },
    /// Revoke the key with this prefix (csk_ and 8 characters, as `keys list` shows).
    /// Exit status 0 also when it was revoked already, 1 when no key has this prefix.
    Revoke {
        prefix: String,
        #[command(flatten)]
        db: DatabaseArg,
    },
}

/// `--database-url`, for the commands that only open the database.
#[derive(Debug, Clone, Args)]
pub struct DatabaseArg {
    /// The database (as for `serve`).
    #[arg(long, env = "CONSUMA_DATABASE_URL", hide_env = true)]
    pub database_url: Option<String>,
}

fn parse_tenant(s: &str) -> Result<TenantName, String> {
    TenantName::parse(s)
}
