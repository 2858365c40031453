//! The VM as the agent sees it: the server's instance document (agent protocol §5) turned into
//! the identities on the VM (for cache keys and revocation), the IMDS instance metadata
//! (`/metadata/instance`, protocols.md §1.5) and the port of the VM-extension endpoint.
//!
//! Pure functions of the document; no I/O.

use std::collections::HashSet;

use serde_json::{json, Map, Value};

use crate::server_client::{InstanceDocument, Selector};

/// The port of the deprecated VM-extension endpoint when its settings name none (seed 004).
pub const DEFAULT_EXTENSION_PORT: u16 = 50342;
/// The extension types that turn on the VM-extension endpoint.
const EXTENSION_TYPES: [&str; 2] = [
    "ManagedIdentityExtensionForWindows",
    "ManagedIdentityExtensionForLinux",
];

/// A user-assigned identity on the VM; ids in lower case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserAssignedIdentity {
    pub resource_id: String,
    pub client_id: String,
    pub principal_id: String,
}

/// One version of the instance document, digested.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub version: i64,
    /// The VM's tenant (empty when the server did not say).
    pub tenant_id: String,
    /// The system-assigned identity's principal id (lower case), when enabled.
    pub system_principal: Option<String>,
    pub user_assigned: Vec<UserAssignedIdentity>,
    /// `{"compute": ..., "network": ...}` as IMDS serves it.
    pub metadata: Value,
    /// The VM-extension endpoint's port while the VM has that extension.
    pub extension_port: Option<u16>,
}

fn lower(value: Option<&Value>) -> String {
    value
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_ascii_lowercase()
}

impl Snapshot {
    pub fn from_document(document: &InstanceDocument) -> Snapshot {
        let identity = document.vm.get("identity");
        let identity_type = lower(identity.and_then(|identity| identity.get("type")));
        let system_principal = lower(identity.and_then(|identity| identity.get("principalId")));
        let system_enabled =
            identity_type.contains("systemassigned") && !system_principal.is_empty();
        let user_assigned = identity
            .and_then(|identity| identity.get("userAssignedIdentities"))
            .and_then(Value::as_object)
            .map(|identities| {
                identities
                    .iter()
                    .map(|(id, details)| UserAssignedIdentity {
                        resource_id: id.to_ascii_lowercase(),
                        client_id: lower(details.get("clientId")),
                        principal_id: lower(details.get("principalId")),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Snapshot {
            version: document.version,
            tenant_id: document.tenant_id.clone(),
            system_principal: system_enabled.then_some(system_principal),
            user_assigned,
            metadata: instance_metadata(document),
            extension_port: extension_port(&document.extensions),
        }
    }

    /// The principal ids of every identity on the VM.
    pub fn principals(&self) -> HashSet<String> {
        self.system_principal
            .iter()
            .cloned()
            .chain(
                self.user_assigned
                    .iter()
                    .filter(|identity| !identity.principal_id.is_empty())
                    .map(|identity| identity.principal_id.clone()),
            )
            .collect()
    }

    /// The principal id `selector` means on this VM, as IMDS selects (protocols.md §1.1): none
    /// given means the system identity, else the only user-assigned one. `None` when the
    /// document does not say (the server then decides: the system identity's client id is not in
    /// the VM document, and an ambiguous or unknown selector is the server's error to word).
    pub fn resolve(&self, selector: &Selector) -> Option<String> {
        match selector {
            Selector::Default => {
                self.system_principal
                    .clone()
                    .or_else(|| match self.user_assigned.as_slice() {
                        [only] if !only.principal_id.is_empty() => Some(only.principal_id.clone()),
                        _ => None,
                    })
            }
            Selector::ClientId(client_id) => self
                .user_assigned
                .iter()
                .find(|identity| identity.client_id.eq_ignore_ascii_case(client_id))
                .map(|identity| identity.principal_id.clone()),
            Selector::ObjectId(object_id) => {
                if self
                    .system_principal
                    .as_deref()
                    .is_some_and(|system| system.eq_ignore_ascii_case(object_id))
                {
                    return self.system_principal.clone();
                }
                self.user_assigned
                    .iter()
                    .find(|identity| identity.principal_id.eq_ignore_ascii_case(object_id))
                    .map(|identity| identity.principal_id.clone())
            }
            Selector::ResourceId(resource_id) => self
                .user_assigned
                .iter()
                .find(|identity| identity.resource_id.eq_ignore_ascii_case(resource_id))
                .map(|identity| identity.principal_id.clone()),
        }
        .filter(|principal| !principal.is_empty())
    }
}

/// The port of the VM-extension endpoint: from the first `ManagedIdentityExtensionFor*`
/// extension's `settings.port` (a number or a numeric string), 50342 when absent.
pub fn extension_port(extensions: &[Value]) -> Option<u16> {
    extensions.iter().find_map(|extension| {
        let properties = extension.get("properties")?;
        let extension_type = properties.get("type")?.as_str()?;
        if !EXTENSION_TYPES
            .iter()
            .any(|known| known.eq_ignore_ascii_case(extension_type))
        {
            return None;
        }
        let port = properties
            .get("settings")
            .and_then(|settings| settings.get("port"))
            .and_then(|port| match port {
                Value::Number(number) => number.as_u64(),
                Value::String(text) => text.trim().parse().ok(),
                _ => None,
            })
            .and_then(|port| u16::try_from(port).ok())
            .filter(|port| *port != 0);
        Some(port.unwrap_or(DEFAULT_EXTENSION_PORT))
    })
}

/// IMDS's `tags`: `k:v;k2:v2`.
pub fn tags_string(tags: Option<&Map<String, Value>>) -> String {
    tags.map(|tags| {
        tags.iter()
            .map(|(name, value)| format!("{name}:{}", as_text(value)))
            .collect::<Vec<_>>()
            .join(";")
    })
    .unwrap_or_default()
}

/// IMDS's `tagsList`: `[{"name","value"}]`.
fn tags_list(tags: Option<&Map<String, Value>>) -> Value {
    Value::Array(
        tags.map(|tags| {
            tags.iter()
                .map(|(name, value)| json!({"name": name, "value": as_text(value)}))
                .collect()
        })
        .unwrap_or_default(),
    )
}

/// A JSON primitive as IMDS writes it: a string; null is "".
fn as_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// `/metadata/instance`: `compute` from the VM document, `network` empty (openmi has no NICs).
pub fn instance_metadata(document: &InstanceDocument) -> Value {
    json!({
        "compute": compute(document),
        "network": {"interface": []},
    })
}

/// IMDS's `compute` block (protocols.md §1.5, spec 2021-02-01): every primitive a string, every
/// missing value "".
pub fn compute(document: &InstanceDocument) -> Value {
    let vm = &document.vm;
    let properties = vm.get("properties").cloned().unwrap_or(Value::Null);
    let text = |pointer: &str| as_text(properties.pointer(pointer).unwrap_or(&Value::Null));
    let image = properties
        .pointer("/storageProfile/imageReference")
        .cloned()
        .unwrap_or(Value::Null);
    let image_text = |field: &str| as_text(image.get(field).unwrap_or(&Value::Null));
    let os_type = match text("/storageProfile/osDisk/osType") {
        os_type if !os_type.is_empty() => os_type,
        _ if properties
            .pointer("/osProfile/windowsConfiguration")
            .is_some() =>
        {
            "Windows".to_string()
        }
        _ if properties
            .pointer("/osProfile/linuxConfiguration")
            .is_some() =>
        {
            "Linux".to_string()
        }
        _ => String::new(),
    };
    let tags = vm.get("tags").and_then(Value::as_object);
    let public_keys: Vec<Value> = properties
        .pointer("/osProfile/linuxConfiguration/ssh/publicKeys")
        .and_then(Value::as_array)
        .map(|keys| {
            keys.iter()
                .map(|key| {
                    json!({
                        "keyData": as_text(key.get("keyData").unwrap_or(&Value::Null)),
                        "path": as_text(key.get("path").unwrap_or(&Value::Null)),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let plan = vm.get("plan").cloned().unwrap_or(Value::Null);
    let plan_text = |field: &str| as_text(plan.get(field).unwrap_or(&Value::Null));
    let zone = vm
        .get("zones")
        .and_then(Value::as_array)
        .and_then(|zones| zones.first())
        .map(as_text)
        .unwrap_or_default();
    let subscription_id = if document.subscription_id.is_empty() {
        arm_segment(vm, "subscriptions")
    } else {
        document.subscription_id.clone()
    };
    let resource_group_name = if document.resource_group_name.is_empty() {
        arm_segment(vm, "resourcegroups")
    } else {
        document.resource_group_name.clone()
    };
    let data_disks: Vec<Value> = properties
        .pointer("/storageProfile/dataDisks")
        .and_then(Value::as_array)
        .map(|disks| disks.iter().map(stringify).collect())
        .unwrap_or_default();
    let compute = json!({
        "azEnvironment": "AzurePublicCloud",
        "customData": "",
        "evictionPolicy": text("/evictionPolicy"),
        "extendedLocation": {"type": "", "name": ""},
        "host": {"id": text("/host/id")},
        "hostGroup": {"id": text("/hostGroup/id")},
        "isHostCompatibilityLayerVm": "false",
        "licenseType": text("/licenseType"),
        "location": as_text(vm.get("location").unwrap_or(&Value::Null)),
        "name": as_text(vm.get("name").unwrap_or(&Value::Null)),
        "offer": image_text("offer"),
        "osProfile": {
            "adminUsername": text("/osProfile/adminUsername"),
            "computerName": text("/osProfile/computerName"),
            "disablePasswordAuthentication": text("/osProfile/linuxConfiguration/disablePasswordAuthentication"),
        },
        "osType": os_type,
        "placementGroupId": "",
        "plan": {"name": plan_text("name"), "product": plan_text("product"), "publisher": plan_text("publisher")},
        "platformFaultDomain": match text("/platformFaultDomain") { domain if domain.is_empty() => "0".to_string(), domain => domain },
        "platformUpdateDomain": "0",
        "priority": text("/priority"),
        "provider": "Microsoft.Compute",
        "publicKeys": public_keys,
        "publisher": image_text("publisher"),
        "resourceGroupName": resource_group_name,
        "resourceId": as_text(vm.get("id").unwrap_or(&Value::Null)),
        "securityProfile": {
            "secureBootEnabled": bool_text(properties.pointer("/securityProfile/uefiSettings/secureBootEnabled")),
            "virtualTpmEnabled": bool_text(properties.pointer("/securityProfile/uefiSettings/vTpmEnabled")),
        },
        "sku": image_text("sku"),
        "storageProfile": {
            "dataDisks": data_disks,
            "imageReference": {
                "id": image_text("id"),
                "offer": image_text("offer"),
                "publisher": image_text("publisher"),
                "sku": image_text("sku"),
                "version": image_text("version"),
            },
            "osDisk": {
                "caching": text("/storageProfile/osDisk/caching"),
                "createOption": text("/storageProfile/osDisk/createOption"),
                "diffDiskSettings": {"option": text("/storageProfile/osDisk/diffDiskSettings/option")},
                "diskSizeGB": text("/storageProfile/osDisk/diskSizeGB"),
                "encryptionSettings": {"enabled": bool_text(properties.pointer("/storageProfile/osDisk/encryptionSettings/enabled"))},
                "image": {"uri": text("/storageProfile/osDisk/image/uri")},
                "managedDisk": {
                    "id": text("/storageProfile/osDisk/managedDisk/id"),
                    "storageAccountType": text("/storageProfile/osDisk/managedDisk/storageAccountType"),
                },
                "name": text("/storageProfile/osDisk/name"),
                "osType": text("/storageProfile/osDisk/osType"),
                "vhd": {"uri": text("/storageProfile/osDisk/vhd/uri")},
                "writeAcceleratorEnabled": bool_text(properties.pointer("/storageProfile/osDisk/writeAcceleratorEnabled")),
            },
            "resourceDisk": {"size": ""},
        },
        "subscriptionId": subscription_id,
        "tags": tags_string(tags),
        "tagsList": tags_list(tags),
        "userData": text("/userData"),
        "version": image_text("version"),
        "virtualMachineScaleSet": {"id": text("/virtualMachineScaleSet/id")},
        "vmId": text("/vmId"),
        "vmScaleSetName": "",
        "vmSize": text("/hardwareProfile/vmSize"),
        "zone": zone,
    });
    stringify(&compute)
}

/// "true"/"false" for a boolean, "false" when absent.
fn bool_text(value: Option<&Value>) -> String {
    match value {
        Some(Value::Bool(flag)) => flag.to_string(),
        Some(Value::String(text)) => text.to_ascii_lowercase(),
        _ => "false".to_string(),
    }
}

/// The segment after `name` in the VM's id (`subscriptions`, `resourcegroups`), case-insensitive.
fn arm_segment(vm: &Value, name: &str) -> String {
    let id = vm.get("id").and_then(Value::as_str).unwrap_or_default();
    let mut segments = id.split('/');
    while let Some(segment) = segments.next() {
        if segment.eq_ignore_ascii_case(name) {
            return segments.next().unwrap_or_default().to_string();
        }
    }
    String::new()
}

/// The same JSON with every primitive a string (IMDS never sends numbers or booleans).
pub fn stringify(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, value)| (key.clone(), stringify(value)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(stringify).collect()),
        other => Value::String(as_text(other)),
    }
}

/// Route filtering: the node at `path` (segments after `/metadata/instance`, array items by
/// index), or `None` when there is none.
pub fn select<'a>(document: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('/')
        .filter(|segment| !segment.is_empty())
        .try_fold(document, |node, segment| match node {
            Value::Object(map) => map.get(segment),
            Value::Array(items) => segment
                .parse::<usize>()
                .ok()
                .and_then(|index| items.get(index)),
            _ => None,
        })
}

/// Whether `value` is a leaf (a primitive).
pub fn is_leaf(value: &Value) -> bool {
    !matches!(value, Value::Object(_) | Value::Array(_))
}

/// `format=text`: a leaf's value; for an object or array, its children one per line, inner
/// nodes with a trailing `/`.
pub fn render_text(value: &Value) -> String {
    let name = |key: String, child: &Value| {
        if is_leaf(child) {
            key
        } else {
            format!("{key}/")
        }
    };
    match value {
        Value::Object(map) => map
            .iter()
            .map(|(key, child)| name(key.clone(), child))
            .collect::<Vec<_>>()
            .join("\n"),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(index, child)| name(index.to_string(), child))
            .collect::<Vec<_>>()
            .join("\n"),
        leaf => as_text(leaf),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VM_ID: &str = "/subscriptions/0000-sub/resourceGroups/rg1/providers/Microsoft.Compute/virtualMachines/vm1";
    const UAMI_ID: &str = "/subscriptions/0000-sub/resourceGroups/rg1/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id1";

    fn document(vm: Value, extensions: Vec<Value>) -> InstanceDocument {
        InstanceDocument {
            version: 7,
            vm,
            extensions,
            tenant_id: "tid".into(),
            subscription_id: "0000-sub".into(),
            resource_group_name: "rg1".into(),
        }
    }

    fn vm() -> Value {
        json!({
            "id": VM_ID,
            "name": "vm1",
            "location": "westus",
            "tags": {"Department": "IT", "Environment": "Test"},
            "identity": {
                "type": "SystemAssigned, UserAssigned",
                "principalId": "SYS-P",
                "tenantId": "tid",
                "userAssignedIdentities": {UAMI_ID: {"principalId": "UA-P", "clientId": "UA-C"}},
            },
            "properties": {
                "vmId": "vm-guid",
                "hardwareProfile": {"vmSize": "Standard_D2s_v5"},
                "storageProfile": {
                    "imageReference": {"publisher": "Canonical", "offer": "0001-com-ubuntu-server-jammy", "sku": "22_04-lts-gen2", "version": "latest"},
                    "osDisk": {"createOption": "FromImage", "caching": "ReadWrite", "diskSizeGB": 30},
                },
                "osProfile": {"computerName": "vm1", "adminUsername": "azureuser", "linuxConfiguration": {"disablePasswordAuthentication": true}},
            },
        })
    }

    #[test]
    fn compute_has_imds_fields_as_strings() {
        let compute = compute(&document(vm(), vec![]));
        let expected = [
            ("/location", "westus"),
            ("/name", "vm1"),
            ("/resourceGroupName", "rg1"),
            ("/subscriptionId", "0000-sub"),
            ("/vmId", "vm-guid"),
            ("/resourceId", VM_ID),
            ("/vmSize", "Standard_D2s_v5"),
            ("/osType", "Linux"),
            ("/tags", "Department:IT;Environment:Test"),
            ("/tagsList/1/name", "Environment"),
            ("/azEnvironment", "AzurePublicCloud"),
            ("/offer", "0001-com-ubuntu-server-jammy"),
            ("/publisher", "Canonical"),
            ("/sku", "22_04-lts-gen2"),
            ("/version", "latest"),
            ("/osProfile/adminUsername", "azureuser"),
            ("/osProfile/computerName", "vm1"),
            ("/osProfile/disablePasswordAuthentication", "true"),
            ("/storageProfile/osDisk/diskSizeGB", "30"),
            ("/zone", ""),
            ("/userData", ""),
            ("/platformFaultDomain", "0"),
        ];
        for (pointer, value) in expected {
            assert_eq!(compute.pointer(pointer), Some(&json!(value)), "{pointer}");
        }
        fn all_strings(value: &Value) -> bool {
            match value {
                Value::Object(map) => map.values().all(all_strings),
                Value::Array(items) => items.iter().all(all_strings),
                Value::String(_) => true,
                _ => false,
            }
        }
        assert!(all_strings(&compute));
    }

    #[test]
    fn missing_values_are_empty_strings() {
        let compute = compute(&document(json!({"id": VM_ID, "name": "vm1"}), vec![]));
        assert_eq!(compute["location"], "");
        assert_eq!(compute["vmSize"], "");
        assert_eq!(compute["tags"], "");
        assert_eq!(compute["tagsList"], json!([]));
        assert_eq!(compute["osType"], "");
    }

    #[test]
    fn tags_string_joins_pairs() {
        let tags = json!({"a": "1", "b": "", "c": 3});
        assert_eq!(tags_string(tags.as_object()), "a:1;b:;c:3");
        assert_eq!(tags_string(None), "");
    }

    #[test]
    fn selectors_resolve_to_principals_as_imds_selects() {
        let snapshot = Snapshot::from_document(&document(vm(), vec![]));
        let check = |selector: Selector, expected: Option<&str>| {
            assert_eq!(
                snapshot.resolve(&selector).as_deref(),
                expected,
                "{selector:?}"
            );
        };
        check(Selector::Default, Some("sys-p"));
        check(Selector::ClientId("ua-c".into()), Some("ua-p"));
        check(Selector::ObjectId("UA-P".into()), Some("ua-p"));
        check(Selector::ObjectId("sys-p".into()), Some("sys-p"));
        check(Selector::ResourceId(UAMI_ID.to_uppercase()), Some("ua-p"));
        // The system identity's client id is not in the VM document: the server decides.
        check(Selector::ClientId("sys-client".into()), None);
        check(Selector::ClientId("unknown".into()), None);
        assert_eq!(
            snapshot.principals(),
            HashSet::from(["sys-p".to_string(), "ua-p".to_string()])
        );
    }

    #[test]
    fn default_selector_without_system_identity() {
        let mut vm = vm();
        vm["identity"]["type"] = json!("UserAssigned");
        let snapshot = Snapshot::from_document(&document(vm.clone(), vec![]));
        assert_eq!(
            snapshot.resolve(&Selector::Default).as_deref(),
            Some("ua-p")
        );
        assert_eq!(snapshot.principals(), HashSet::from(["ua-p".to_string()]));
        vm["identity"]["userAssignedIdentities"]["/other"] =
            json!({"principalId": "p2", "clientId": "c2"});
        let snapshot = Snapshot::from_document(&document(vm, vec![]));
        assert_eq!(snapshot.resolve(&Selector::Default), None, "ambiguous");
        let snapshot = Snapshot::from_document(&document(json!({"id": VM_ID}), vec![]));
        assert_eq!(snapshot.resolve(&Selector::Default), None);
        assert!(snapshot.principals().is_empty());
    }

    #[test]
    fn extension_port_comes_from_the_managed_identity_extension() {
        let extension = |extension_type: &str, settings: Value| json!({"name": "e", "properties": {"publisher": "Microsoft.ManagedIdentity", "type": extension_type, "settings": settings}});
        assert_eq!(extension_port(&[]), None);
        assert_eq!(
            extension_port(&[extension("CustomScript", json!({"port": 1}))]),
            None
        );
        assert_eq!(
            extension_port(&[extension(
                "ManagedIdentityExtensionForWindows",
                json!({"port": 50343})
            )]),
            Some(50343)
        );
        assert_eq!(
            extension_port(&[extension(
                "managedidentityextensionforlinux",
                json!({"port": "50344"})
            )]),
            Some(50344)
        );
        assert_eq!(
            extension_port(&[extension("ManagedIdentityExtensionForLinux", json!({}))]),
            Some(DEFAULT_EXTENSION_PORT)
        );
    }

    #[test]
    fn route_filtering_and_text_format() {
        let metadata = instance_metadata(&document(vm(), vec![]));
        assert_eq!(
            select(&metadata, "/compute/location"),
            Some(&json!("westus"))
        );
        assert_eq!(
            select(&metadata, "compute/tagsList/0/value"),
            Some(&json!("IT"))
        );
        assert_eq!(select(&metadata, "/compute/nothing"), None);
        assert_eq!(select(&metadata, "/compute/tagsList/9"), None);
        assert_eq!(select(&metadata, ""), Some(&metadata));
        assert_eq!(render_text(&json!("westus")), "westus");
        assert_eq!(render_text(&metadata), "compute/\nnetwork/");
        assert_eq!(
            render_text(&json!({"a": "1", "b": {"c": "2"}, "d": []})),
            "a\nb/\nd/"
        );
        assert_eq!(render_text(&json!([{"x": "1"}, "y"])), "0/\n1");
    }
}
