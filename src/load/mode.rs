//! `--mode`: which endpoints a run loads.

use clap::ValueEnum;

use super::client::Kind;

/// Which endpoints a run loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    Sync,
    Async,
    Both,
}

impl Mode {
    /// The name used in the report.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Sync => "sync",
            Mode::Async => "async",
            Mode::Both => "both",
        }
    }

    /// Whether the run sends any /sync request.
    pub fn has_sync(self) -> bool {
        self != Mode::Async
    }

    /// Whether the run sends any /async request (and so needs the receiver).
    pub fn has_async(self) -> bool {
        self != Mode::Sync
    }

    /// The endpoint of request number `index`: `both` alternates, sync first.
    pub fn kind_of(self, index: u64) -> Kind {
        match self {
            Mode::Sync => Kind::Sync,
            Mode::Async => Kind::Async,
            Mode::Both if index.is_multiple_of(2) => Kind::Sync,
            Mode::Both => Kind::Async,
        }
    }
}
