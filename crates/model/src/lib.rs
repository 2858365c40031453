//! Domain types of openmi: id newtypes, principals and the pure rules around them.
//!
//! This crate performs no I/O, has no async code, never reads the system clock and does not know
//! the wire format (that is `openmi-proto`). Time arrives as `UnixTime` values from the caller.

pub mod arm;
pub mod audience;
pub mod directory;
pub mod ids;
pub mod jsonc;
pub mod principal;

pub use audience::Audience;
pub use ids::{ClientId, ObjectId, SubscriptionId, TenantId};
pub use principal::{Principal, PrincipalKind};

/// Seconds since the Unix epoch, as the JWT `iat`/`exp` claims count them.
pub type UnixTime = i64;

/// `time` as ARM and Graph print instants (RFC 3339, UTC), or "" for an impossible value.
pub fn rfc3339(time: UnixTime) -> String {
    ::time::OffsetDateTime::from_unix_timestamp(time)
        .ok()
        .and_then(|moment| {
            moment
                .format(&::time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}
