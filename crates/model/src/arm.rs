//! ARM resource paths: parsing `/subscriptions/...` URLs into what they address, canonical ids,
//! lower-case keys, and the naming rules ARM enforces.
//!
//! Path segments are matched case-insensitively, as ARM does; names keep the casing they were
//! created with. Known provider namespaces and types get Azure's canonical casing.

/// Types with behaviour of their own, in Azure's casing.
pub const RESOURCE_GROUP_TYPE: &str = "Microsoft.Resources/resourceGroups";
pub const USER_ASSIGNED_IDENTITY_TYPE: &str = "Microsoft.ManagedIdentity/userAssignedIdentities";
pub const VIRTUAL_MACHINE_TYPE: &str = "Microsoft.Compute/virtualMachines";
pub const VM_EXTENSION_TYPE: &str = "Microsoft.Compute/virtualMachines/extensions";

const KNOWN_NAMESPACES: &[&str] = &[
    "Microsoft.ManagedIdentity",
    "Microsoft.Compute",
    "Microsoft.Resources",
    "Microsoft.Authorization",
    "Microsoft.Network",
    "Microsoft.DocumentDB",
    "Microsoft.Storage",
];
const KNOWN_TYPES: &[&str] = &[
    "userAssignedIdentities",
    "virtualMachines",
    "extensions",
    "identities",
    "networkInterfaces",
    "virtualNetworks",
    "publicIPAddresses",
    "networkSecurityGroups",
    "deployments",
    "databaseAccounts",
    "sqlDatabases",
    "containers",
    "sqlRoleDefinitions",
    "sqlRoleAssignments",
];

fn canonical<'a>(text: &'a str, known: &[&'static str]) -> std::borrow::Cow<'a, str> {
    match known
        .iter()
        .find(|candidate| candidate.eq_ignore_ascii_case(text))
    {
        Some(found) => std::borrow::Cow::Borrowed(found),
        None => std::borrow::Cow::Borrowed(text),
    }
}

/// A provider part of a path: `providers/{namespace}/{type}/{name}[/{type}/{name}]...[/{type}]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderPart {
    pub namespace: String,
    /// `(type, name)` pairs; only the last may lack a name (a collection).
    pub segments: Vec<(String, Option<String>)>,
}

impl ProviderPart {
    /// `Namespace/type[/childType...]`.
    pub fn type_name(&self) -> String {
        let mut out = self.namespace.clone();
        for (segment_type, _) in &self.segments {
            out.push('/');
            out.push_str(segment_type);
        }
        out
    }

    /// Whether the last segment names a resource (not a collection).
    pub fn is_resource(&self) -> bool {
        self.segments.last().is_some_and(|(_, name)| name.is_some())
    }

    fn render(&self) -> String {
        let mut out = format!("/providers/{}", self.namespace);
        for (segment_type, name) in &self.segments {
            out.push('/');
            out.push_str(segment_type);
            if let Some(name) = name {
                out.push('/');
                out.push_str(name);
            }
        }
        out
    }
}

/// What an ARM path addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArmPath {
    /// The subscription segment as sent.
    pub subscription: String,
    pub resource_group: Option<String>,
    /// The resource (or collection) under the subscription or group.
    pub provider: Option<ProviderPart>,
    /// An extension resource under that scope (`{scope}/providers/Microsoft.X/...`).
    pub extension: Option<ProviderPart>,
}

/// Why a path is not an ARM path openmi understands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the path '{0}' is not a valid resource path")]
pub struct InvalidPath(pub String);

fn parse_provider(segments: &[&str], path: &str) -> Result<ProviderPart, InvalidPath> {
    let (namespace, rest) = segments
        .split_first()
        .ok_or_else(|| InvalidPath(path.to_string()))?;
    if rest.is_empty() {
        return Err(InvalidPath(path.to_string()));
    }
    let pairs = rest
        .chunks(2)
        .map(|chunk| {
            (
                canonical(chunk[0], KNOWN_TYPES).into_owned(),
                chunk.get(1).map(|name| name.to_string()),
            )
        })
        .collect();
    Ok(ProviderPart {
        namespace: canonical(namespace, KNOWN_NAMESPACES).into_owned(),
        segments: pairs,
    })
}

impl ArmPath {
    /// Parses `/subscriptions/{sub}[/resourceGroups/{rg}][/providers/...][/providers/...]`.
    /// `/subscriptions` alone and `/subscriptions/{sub}/resourcegroups` (the collection) are not
    /// resource paths and are routed before this.
    pub fn parse(path: &str) -> Result<ArmPath, InvalidPath> {
        let invalid = || InvalidPath(path.to_string());
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        if segments.iter().any(|segment| segment.is_empty())
            || segments.len() < 2
            || !segments[0].eq_ignore_ascii_case("subscriptions")
        {
            return Err(invalid());
        }
        let subscription = segments[1].to_string();
        let mut rest = &segments[2..];
        let mut resource_group = None;
        if rest
            .first()
            .is_some_and(|segment| segment.eq_ignore_ascii_case("resourceGroups"))
        {
            resource_group = Some(rest.get(1).ok_or_else(invalid)?.to_string());
            rest = &rest[2..];
        }
        let mut parts = Vec::new();
        while !rest.is_empty() {
            if !rest[0].eq_ignore_ascii_case("providers") {
                return Err(invalid());
            }
            let end = rest[1..]
                .iter()
                .position(|segment| segment.eq_ignore_ascii_case("providers"))
                .map(|index| index + 1)
                .unwrap_or(rest.len());
            // A name may itself be "providers" only in pathological cases; ARM forbids it too.
            parts.push(parse_provider(&rest[1..end], path)?);
            rest = &rest[end..];
        }
        if parts.len() > 2 || (parts.len() == 2 && !parts[0].is_resource()) {
            return Err(invalid());
        }
        let mut parts = parts.into_iter();
        Ok(ArmPath {
            subscription,
            resource_group,
            provider: parts.next(),
            extension: parts.next(),
        })
    }

    /// The canonical id of what the path addresses.
    pub fn to_id(&self) -> String {
        let mut out = format!("/subscriptions/{}", self.subscription);
        if let Some(group) = &self.resource_group {
            out.push_str("/resourceGroups/");
            out.push_str(group);
        }
        for part in self.provider.iter().chain(self.extension.iter()) {
            out.push_str(&part.render());
        }
        out
    }

    /// The id of the scope an extension resource hangs off (the path without its extension part).
    pub fn scope_id(&self) -> String {
        ArmPath {
            extension: None,
            ..self.clone()
        }
        .to_id()
    }

    /// The id of the resource group, if the path is inside one.
    pub fn group_id(&self) -> Option<String> {
        self.resource_group.as_ref().map(|group| {
            format!(
                "/subscriptions/{}/resourceGroups/{group}",
                self.subscription
            )
        })
    }

    /// The id of the parent resource of a child resource (`.../virtualMachines/vm` for an extension).
    pub fn parent_id(&self) -> Option<String> {
        let provider = self.provider.as_ref()?;
        if self.extension.is_some() || provider.segments.len() < 2 {
            return None;
        }
        let mut parent = self.clone();
        if let Some(part) = parent.provider.as_mut() {
            part.segments.pop();
        }
        Some(parent.to_id())
    }
}

/// The lookup key of an id: lower case, so ids match case-insensitively.
pub fn resource_key(id: &str) -> String {
    id.to_lowercase()
}

/// The error of a name that breaks a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameError {
    /// ARM's error code (`InvalidResourceGroup`, `InvalidResourceName`).
    pub code: &'static str,
    pub message: String,
}

/// Resource group names: 1-90 characters; letters (Unicode), digits, `-`, `_`, `.`, `(`, `)`; not
/// ending in `.` (resource-name-rules.md).
pub fn check_resource_group_name(name: &str) -> Result<(), NameError> {
    let invalid: String = name
        .chars()
        .filter(|c| !(c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '(' | ')')))
        .collect();
    let count = name.chars().count();
    if count == 0 || count > 90 || !invalid.is_empty() || name.ends_with('.') {
        return Err(NameError {
            code: "InvalidResourceGroup",
            message: format!(
                "The provided resource group name '{name}' has these invalid characters: '{invalid}'. The name can only be a letter, digit, '-', '.', '(', ')' or '_', must have 1 to 90 characters and cannot end with a period."
            ),
        });
    }
    Ok(())
}

/// User-assigned identity names: 3-128 characters of letters, digits, `-` and `_`, starting with a
/// letter or digit (Entra's managed-identity character limits).
pub fn check_identity_name(name: &str) -> Result<(), NameError> {
    let count = name.chars().count();
    let starts_well = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    let all_valid = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !(3..=128).contains(&count) || !starts_well || !all_valid {
        return Err(NameError {
            code: "InvalidResourceName",
            message: format!(
                "Resource name '{name}' is invalid. The name can contain only letters, numbers, hyphens and underscores, must start with a letter or number, and must be between 3 and 128 characters long."
            ),
        });
    }
    Ok(())
}

/// Generic resource names: 1-260 characters, none of `<>%&:\?/#*` and no control characters.
pub fn check_resource_name(name: &str) -> Result<(), NameError> {
    let count = name.chars().count();
    if count == 0
        || count > 260
        || name
            .chars()
            .any(|c| c.is_control() || "<>%&:\\?/#*".contains(c))
        || name.ends_with('.')
        || name.ends_with(' ')
    {
        return Err(NameError {
            code: "InvalidResourceName",
            message: format!("The resource name '{name}' is invalid."),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_paths_case_insensitively_into_canonical_ids() {
        let path = ArmPath::parse("/SUBSCRIPTIONS/s1/resourcegroups/Rg1/providers/microsoft.managedidentity/USERASSIGNEDIDENTITIES/Id1").unwrap();
        assert_eq!(path.to_id(), "/subscriptions/s1/resourceGroups/Rg1/providers/Microsoft.ManagedIdentity/userAssignedIdentities/Id1");
        assert!(path.provider.as_ref().unwrap().is_resource());
        assert_eq!(
            path.provider.unwrap().type_name(),
            USER_ASSIGNED_IDENTITY_TYPE
        );
    }

    #[test]
    fn parses_children_collections_and_extensions() {
        let child = ArmPath::parse("/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/virtualMachines/vm/extensions/ext").unwrap();
        assert_eq!(
            child.provider.as_ref().unwrap().type_name(),
            VM_EXTENSION_TYPE
        );
        assert_eq!(
            child.parent_id().unwrap(),
            "/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/virtualMachines/vm"
        );
        let collection = ArmPath::parse(
            "/subscriptions/s/providers/Microsoft.ManagedIdentity/userAssignedIdentities",
        )
        .unwrap();
        assert!(!collection.provider.unwrap().is_resource());
        let extension = ArmPath::parse("/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/virtualMachines/vm/providers/Microsoft.ManagedIdentity/identities/default").unwrap();
        assert_eq!(
            extension.scope_id(),
            "/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/virtualMachines/vm"
        );
        assert_eq!(
            extension.extension.unwrap().type_name(),
            "Microsoft.ManagedIdentity/identities"
        );
        assert!(ArmPath::parse("/subscriptions/s/resourceGroups/g/oops/x").is_err());
        assert!(ArmPath::parse("/subscriptions//resourceGroups/g").is_err());
        assert!(ArmPath::parse("/tenants").is_err());
    }

    #[test]
    fn name_rules() {
        assert!(check_resource_group_name("my-rg_(1).x").is_ok());
        assert!(check_resource_group_name("grüße").is_ok());
        assert_eq!(
            check_resource_group_name("bad.").unwrap_err().code,
            "InvalidResourceGroup"
        );
        assert!(check_resource_group_name(&"a".repeat(91)).is_err());
        assert!(check_resource_group_name("a b").is_err());
        assert!(check_identity_name("id1").is_ok());
        for bad in ["ab", "-bad", "bad.name", &"a".repeat(129)] {
            assert_eq!(
                check_identity_name(bad).unwrap_err().code,
                "InvalidResourceName",
                "{bad}"
            );
        }
    }
}
