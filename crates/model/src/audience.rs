//! Resource identifiers (audiences) and how requested scopes map onto them.
//!
//! Entra accepts a resource under several spellings; the token's `aud` is the spelling that was
//! requested, while the lookup of the resource principal ignores trailing slashes and case.

/// A resource the token service knows, identified by any of its App ID URIs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audience {
    /// The identifier exactly as the client asked for it; becomes `aud`.
    pub requested: String,
}

/// Normalises a resource identifier for comparison: lower case, without trailing slashes.
///
/// The az CLI sends `https://host:port//.default` for a custom cloud whose resource id ends in `/`,
/// so the resource arrives as `https://host:port/`; every trailing slash is ignored when matching.
pub fn normalize_resource(resource: &str) -> String {
    resource.trim().trim_end_matches('/').to_ascii_lowercase()
}

/// Splits a v2 `scope` parameter into the resource identifier and whether it was a `/.default` scope.
///
/// `https://management.azure.com/.default` gives `https://management.azure.com`;
/// `https://127.0.0.1:8443//.default` gives `https://127.0.0.1:8443/` (only `/.default` is cut,
/// as azure-identity and the az CLI do). OIDC scopes (`openid`, `profile`, `offline_access`) are
/// not resources and are skipped.
pub fn resource_from_scopes(scope: &str) -> ScopeParse {
    let mut resources = Vec::new();
    let mut non_default = Vec::new();
    let mut offline_access = false;
    for item in scope.split_whitespace() {
        match item {
            "openid" | "profile" | "email" => {}
            "offline_access" => offline_access = true,
            _ => {
                if let Some(resource) = item.strip_suffix("/.default") {
                    resources.push(resource.to_string());
                } else {
                    non_default.push(item.to_string());
                }
            }
        }
    }
    ScopeParse {
        resources,
        non_default,
        offline_access,
    }
}

/// The parts of a v2 scope string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeParse {
    /// Resources named through `<resource>/.default`.
    pub resources: Vec<String>,
    /// Scopes that are neither OIDC scopes nor `/.default` scopes (e.g. `https://x/user_impersonation`).
    pub non_default: Vec<String>,
    /// Whether `offline_access` (a refresh token) was asked for.
    pub offline_access: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(scope: &str, resources: &[&str], non_default: &[&str], offline: bool) {
        let parsed = resource_from_scopes(scope);
        assert_eq!(parsed.resources, resources);
        assert_eq!(parsed.non_default, non_default);
        assert_eq!(parsed.offline_access, offline);
    }

    #[test]
    fn splits_scopes() {
        check(
            "https://management.azure.com/.default",
            &["https://management.azure.com"],
            &[],
            false,
        );
        check(
            "https://127.0.0.1:8443//.default",
            &["https://127.0.0.1:8443/"],
            &[],
            false,
        );
        check(
            "https://management.core.windows.net//.default offline_access openid profile",
            &["https://management.core.windows.net/"],
            &[],
            true,
        );
        check(
            "https://x/user_impersonation",
            &[],
            &["https://x/user_impersonation"],
            false,
        );
    }

    #[test]
    fn normalizes_trailing_slashes_and_case() {
        assert_eq!(
            normalize_resource("https://Management.Azure.com//"),
            "https://management.azure.com"
        );
        assert_eq!(
            normalize_resource("https://management.azure.com"),
            "https://management.azure.com"
        );
    }
}
