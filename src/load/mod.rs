//! `consuma load` (SPEC §7). PLACEHOLDER: replaced before merge.

/// Options of `consuma load`.
#[derive(Debug, Clone, clap::Args)]
pub struct LoadArgs {
    /// Base URL of the service under test.
    #[arg(long, default_value = "http://localhost:8000")]
    pub target: String,
}

/// Runs the load generator; returns the process exit code.
pub async fn run(args: LoadArgs) -> anyhow::Result<i32> {
    let _ = args;
    Ok(0)
}
