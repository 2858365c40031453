//! Action patterns: `*` matches any run of characters, comparison ignores case.
//!
//! Azure treats `Microsoft.ManagedIdentity/userAssignedIdentities/*/assign/action` as granting the
//! plain `.../userAssignedIdentities/assign/action` too (Managed Identity Operator relies on it), so
//! a `/*/` in a pattern may also stand for a single `/`.

/// A compiled action pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionPattern {
    // Invariant: lower case.
    pattern: String,
    // The pattern with every `/*/` collapsed to `/`, when it has one.
    collapsed: Option<String>,
}

impl ActionPattern {
    /// Compiles a pattern as written in a role definition.
    pub fn new(pattern: &str) -> ActionPattern {
        let pattern = pattern.trim().to_ascii_lowercase();
        let collapsed = pattern.contains("/*/").then(|| pattern.replace("/*/", "/"));
        ActionPattern { pattern, collapsed }
    }

    /// Whether `action` (lower case) matches.
    pub fn matches(&self, action: &str) -> bool {
        glob(self.pattern.as_bytes(), action.as_bytes())
            || self
                .collapsed
                .as_ref()
                .is_some_and(|collapsed| glob(collapsed.as_bytes(), action.as_bytes()))
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
    }
}
