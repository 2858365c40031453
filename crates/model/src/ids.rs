//! GUID newtypes for tenants, subscriptions, principals and applications.
//!
//! Every id that crosses a crate boundary is one of these, never a bare string or `Uuid`.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

/// The error for a string that is not a GUID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a valid GUID")]
pub struct InvalidGuid(pub String);

macro_rules! guid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Uuid);

        impl $name {
            /// A new random id.
            pub fn new_random() -> Self {
                Self(Uuid::new_v4())
            }

            /// Wraps an existing GUID.
            pub fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            /// The GUID inside.
            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl fmt::Display for $name {
            /// Lower-case hyphenated form, as Azure prints GUIDs.
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }

        impl FromStr for $name {
            type Err = InvalidGuid;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                parse_guid(text).map(Self)
            }
        }
    };
}

/// Parses a GUID in the hyphenated form, with or without braces, case-insensitively.
pub fn parse_guid(text: &str) -> Result<Uuid, InvalidGuid> {
    let trimmed = text.trim_start_matches('{').trim_end_matches('}');
    if trimmed.len() != 36 {
        return Err(InvalidGuid(text.to_string()));
    }
    Uuid::parse_str(trimmed).map_err(|_| InvalidGuid(text.to_string()))
}

guid_id!(
    /// A directory (tenant) id: the `tid` claim.
    TenantId
);
guid_id!(
    /// A subscription id.
    SubscriptionId
);
guid_id!(
    /// The object id of a user or service principal: the `oid` claim.
    ObjectId
);
guid_id!(
    /// The application (client) id of a service principal: the `appid`/`azp` claim.
    ClientId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_guids_case_insensitively_and_prints_lower_case() {
        let id: TenantId = "{0A1B2C3D-0000-4000-8000-00000000ABCD}".parse().unwrap();
        assert_eq!(id.to_string(), "0a1b2c3d-0000-4000-8000-00000000abcd");
    }

    #[test]
    fn rejects_non_guids() {
        for bad in [
            "",
            "common",
            "0a1b2c3d00004000800000000000abcd",
            "0a1b2c3d-0000-4000-8000-00000000abcz",
        ] {
            assert!(bad.parse::<TenantId>().is_err(), "{bad} accepted");
        }
    }
}
