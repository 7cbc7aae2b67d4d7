//! The `consuma` binary: parse the command line, run the subcommand, exit.
//! Exit status: 0 done, 1 runtime failure, 2 bad configuration.

use std::process::ExitCode;

use clap::Parser;
use consuma::cli::{Cli, Command};
use consuma::config::Config;

/// mimalloc instead of glibc's malloc: fewer cycles per request under many threads
/// (BENCHMARKS.md, "Part three, third stop"). The library leaves the choice to embedders.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(), // --help, --version
        Err(e) => return bad_config(first_line(&e.render().to_string())),
    };
    let result = match cli.command.unwrap_or(Command::Serve(cli.serve)) {
        Command::Serve(args) => match Config::from_args(args) {
            Ok(config) => consuma::app::serve(config).await,
            Err(e) => return bad_config(e),
        },
        Command::Load(args) => consuma::load::run(args).await.map(|code| code as u8),
        Command::Secret(args) => consuma::commands::secret(args).await,
        Command::Keys(args) => consuma::commands::keys(args).await,
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("consuma: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn bad_config(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("consuma: error: {e}");
    ExitCode::from(2)
}

/// Clap's message without its usage lines and the `error:` prefix: one line.
fn first_line(text: &str) -> String {
    let line = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("invalid arguments");
    line.trim_start_matches("error: ").to_owned()
}
