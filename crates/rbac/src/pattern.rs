//! Action patterns: `*` matches any run of characters, comparison ignores case.
//!
//! Azure treats `Microsoft.ManagedIdentity/userAssignedIdentities/*/assign/action` as granting the
//! plain `.../userAssignedIdentities/assign/action` too (Managed Identity Operator relies on it), so
//! a `/*/` in a pattern may also stand for a single `/`.

/// A compiled action pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionPattern {
    pattern: Matcher,
    // The pattern with every `/*/` collapsed to `/`, when it has one.
    collapsed: Option<Matcher>,
}

/// One pattern (lower case) in the cheapest form that matches exactly as `glob` does: role
/// definitions are mostly `*`, `Namespace/*`, `*/read` and exact names, so a decision compares
/// prefixes and suffixes instead of backtracking.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Matcher {
    Any,
    Exact(String),
    /// One `*`: the text before and after it.
    Around(String, String),
    General(String),
}

impl Matcher {
    fn new(pattern: String) -> Matcher {
        match pattern.matches('*').count() {
            0 => Matcher::Exact(pattern),
            1 if pattern == "*" => Matcher::Any,
            1 => {
                let (before, after) = pattern.split_once('*').unwrap_or((&pattern, ""));
                Matcher::Around(before.to_string(), after.to_string())
            }
            _ => Matcher::General(pattern),
        }
    }

    fn matches(&self, action: &str) -> bool {
        match self {
            Matcher::Any => true,
            Matcher::Exact(exact) => exact == action,
            Matcher::Around(before, after) => {
                action.len() >= before.len() + after.len()
                    && action.starts_with(before.as_str())
                    && action.ends_with(after.as_str())
            }
            Matcher::General(pattern) => glob(pattern.as_bytes(), action.as_bytes()),
        }
    }
}

impl ActionPattern {
    /// Compiles a pattern as written in a role definition.
    pub fn new(pattern: &str) -> ActionPattern {
        let pattern = pattern.trim().to_ascii_lowercase();
        let collapsed = pattern
            .contains("/*/")
            .then(|| Matcher::new(pattern.replace("/*/", "/")));
        ActionPattern {
            pattern: Matcher::new(pattern),
            collapsed,
        }
    }

    /// Whether `action` (lower case) matches.
    pub fn matches(&self, action: &str) -> bool {
        self.pattern.matches(action)
            || self
                .collapsed
                .as_ref()
                .is_some_and(|collapsed| collapsed.matches(action))
    }
}

/// Wildcard match with `*` only (iterative, linear in practice).
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<usize> = None;
    let mut resume = 0;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some(p);
            p += 1;
            resume = t;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some(star_at) = star {
            p = star_at + 1;
            resume += 1;
            t = resume;
        } else {
            return false;
        }
    }
    while p < pattern.len() && pattern[p] == b'*' {
        p += 1;
    }
    p == pattern.len()
}

#[cfg(test)]
mod tests {
    use super::ActionPattern;

    fn check(pattern: &str, action: &str, expected: bool) {
        assert_eq!(
            ActionPattern::new(pattern).matches(&action.to_ascii_lowercase()),
            expected,
            "{pattern} ~ {action}"
        );
    }

    #[test]
    fn wildcards_match_as_azure_does() {
        check("*", "Microsoft.Compute/virtualMachines/write", true);
        check("*/read", "Microsoft.Compute/virtualMachines/read", true);
        check("*/read", "Microsoft.Compute/virtualMachines/write", false);
        check(
            "Microsoft.Compute/*",
            "Microsoft.Compute/virtualMachines/extensions/write",
            true,
        );
        check(
            "Microsoft.Compute/*",
            "Microsoft.ComputeX/virtualMachines/write",
            false,
        );
        check(
            "Microsoft.Authorization/*/Write",
            "Microsoft.Authorization/roleAssignments/write",
            true,
        );
        check(
            "Microsoft.ManagedIdentity/userAssignedIdentities/*/assign/action",
            "Microsoft.ManagedIdentity/userAssignedIdentities/assign/action",
            true,
        );
        check(
            "Microsoft.ManagedIdentity/userAssignedIdentities/*/assign/action",
            "Microsoft.ManagedIdentity/userAssignedIdentities/x/assign/action",
            true,
        );
        check(
            "Microsoft.ManagedIdentity/userAssignedIdentities/*/read",
            "Microsoft.ManagedIdentity/userAssignedIdentities/read",
            true,
        );
        check(
            "Microsoft.Compute/virtualMachines/read",
            "microsoft.compute/VIRTUALMACHINES/read",
            true,
        );
        check(
            "Microsoft.Compute/virtualMachines/read",
            "Microsoft.Compute/virtualMachines/readx",
            false,
        );
        check("Microsoft.Compute/*/read", "Microsoft.Compute/read", true);
        check("Microsoft.Compute/*/read", "Microsoft.Computex/read", false);
        check("Microsoft.Compute/*/read", "Microsoft.Compute/x/read", true);
        check("*/read", "/read", true);
        check("a*a", "a", false);
        check("*/*/read", "x/y/read", true);
        check("*/*/read", "read", false);
    }

    #[test]
    fn fast_forms_agree_with_the_general_glob() {
        let patterns = [
            "*", "a", "a*", "*a", "a*b", "a/*/b", "*/read", "ab*ba", "a**", "*a*", "", "*/*",
        ];
        let texts = [
            "", "a", "b", "ab", "aba", "abba", "a/b", "a//b", "a/x/b", "x/read", "read",
        ];
        for pattern in patterns {
            let matcher = super::Matcher::new(pattern.to_string());
            for text in texts {
                assert_eq!(
                    matcher.matches(text),
                    super::glob(pattern.as_bytes(), text.as_bytes()),
                    "{pattern} ~ {text}"
                );
            }
        }
    }
}
