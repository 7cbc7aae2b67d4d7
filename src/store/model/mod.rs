//! The records the store keeps and the values that cross the [`Store`](super::Store) trait.
//!
//! Input and output are carried as JSON text (SPEC §3: stored as JSON so that NUL and any
//! other character survive on both backends). Times are UTC; the store decides how to keep
//! them.
//!
//! - [`requests`]: admitting, recording, idempotency and listing requests;
//! - [`jobs`]: the engine's leases, claims, attempts and destinations; redelivery;
//! - [`states`]: a request's state as one small integer, for the kept counts and indexes.

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
        #[serde(rename_all = "lowercase")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn parse(s: &str) -> Option<Self> {
                match s { $($text => Some($name::$variant),)+ _ => None }
            }
        }
    };
}

string_enum!(
    /// How the request was submitted.
    Mode { Sync = "sync", Async = "async" }
);
string_enum!(
    /// `pending → processing → completed | failed`.
    RequestStatus { Pending = "pending", Processing = "processing", Completed = "completed", Failed = "failed" }
);
string_enum!(
    /// Async only: `pending → sent | failed`.
    CallbackStatus { Pending = "pending", Sent = "sent", Failed = "failed" }
);

mod jobs;
mod requests;
mod states;

pub use jobs::*;
pub use requests::*;
pub use states::*;
