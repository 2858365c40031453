//! Azure's built-in roles: the same GUIDs, names and permissions in every tenant
//! (protocols.md §4.4, from Azure's built-in roles reference).

use crate::{Permission, RoleDefinition};

pub const OWNER: &str = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635";
pub const CONTRIBUTOR: &str = "b24988ac-6180-42a0-ab88-20f7382dd24c";
pub const READER: &str = "acdd72a7-3385-48ef-bd42-f606fba81ae7";
pub const USER_ACCESS_ADMINISTRATOR: &str = "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9";
pub const RBAC_ADMINISTRATOR: &str = "f58310d9-a9f6-439a-9e8d-f62e7b41a168";
pub const VIRTUAL_MACHINE_CONTRIBUTOR: &str = "9980e02c-c2be-4d73-94e8-173b1dc7cf3c";
pub const MANAGED_IDENTITY_CONTRIBUTOR: &str = "e40ec5ca-96e0-45a2-b4ff-59039f2c2b59";
pub const MANAGED_IDENTITY_OPERATOR: &str = "f1a07417-d97a-45cb-824c-7a7467783830";

fn role(
    id: &str,
    name: &str,
    description: &str,
    actions: &[&str],
    not_actions: &[&str],
) -> RoleDefinition {
    RoleDefinition {
        id: id.to_string(),
        role_name: name.to_string(),
        description: description.to_string(),
        role_type: "BuiltInRole".to_string(),
        permissions: vec![Permission {
            actions: actions.iter().map(|action| action.to_string()).collect(),
            not_actions: not_actions
                .iter()
                .map(|action| action.to_string())
                .collect(),
            data_actions: Vec::new(),
            not_data_actions: Vec::new(),
        }],
        assignable_scopes: vec!["/".to_string()],
    }
}

/// Every built-in role openmi knows.
pub fn definitions() -> Vec<RoleDefinition> {
    vec![
        role(OWNER, "Owner", "Grants full access to manage all resources, including the ability to assign roles in Azure RBAC.", &["*"], &[]),
        role(
            CONTRIBUTOR,
            "Contributor",
            "Grants full access to manage all resources, but does not allow you to assign roles in Azure RBAC, manage assignments in Azure Blueprints, or share image galleries.",
            &["*"],
            &[
                "Microsoft.Authorization/*/Delete",
                "Microsoft.Authorization/*/Write",
                "Microsoft.Authorization/elevateAccess/Action",
                "Microsoft.Blueprint/blueprintAssignments/write",
                "Microsoft.Blueprint/blueprintAssignments/delete",
                "Microsoft.Compute/galleries/share/action",
                "Microsoft.Purview/consents/write",
                "Microsoft.Purview/consents/delete",
                "Microsoft.Resources/deploymentStacks/manageDenySetting/action",
                "Microsoft.Subscription/cancel/action",
                "Microsoft.Subscription/enable/action",
            ],
        ),
        role(READER, "Reader", "View all resources, but does not allow you to make any changes.", &["*/read"], &[]),
        role(
            USER_ACCESS_ADMINISTRATOR,
            "User Access Administrator",
            "Lets you manage user access to Azure resources.",
            &["*/read", "Microsoft.Authorization/*", "Microsoft.Support/*"],
            &[],
        ),
        role(
            RBAC_ADMINISTRATOR,
            "Role Based Access Control Administrator",
            "Manage access to Azure resources by assigning roles using Azure RBAC. This role does not allow you to manage access using other ways, such as Azure Policy.",
            &["Microsoft.Authorization/roleAssignments/write", "Microsoft.Authorization/roleAssignments/delete", "*/read", "Microsoft.Support/*"],
            &[],
        ),
        role(
            VIRTUAL_MACHINE_CONTRIBUTOR,
            "Virtual Machine Contributor",
            "Create and manage virtual machines, manage disks, install and run software, reset password of the root user of the virtual machine using VM extensions, and manage local user accounts using VM extensions. This role does not grant you management access to the virtual network or storage account the virtual machines are connected to. This role does not allow you to assign roles in Azure RBAC.",
            &[
                "Microsoft.Authorization/*/read",
                "Microsoft.Compute/availabilitySets/*",
                "Microsoft.Compute/locations/*",
                "Microsoft.Compute/virtualMachines/*",
                "Microsoft.Compute/virtualMachineScaleSets/*",
                "Microsoft.Compute/cloudServices/*",
                "Microsoft.Compute/disks/write",
                "Microsoft.Compute/disks/read",
                "Microsoft.Compute/disks/delete",
                "Microsoft.Compute/hostgroups/write",
                "Microsoft.Compute/hostgroups/hosts/write",
                "Microsoft.DevTestLab/schedules/*",
                "Microsoft.Insights/alertRules/*",
                "Microsoft.Network/applicationGateways/backendAddressPools/join/action",
                "Microsoft.Network/loadBalancers/backendAddressPools/join/action",
                "Microsoft.Network/loadBalancers/inboundNatPools/join/action",
                "Microsoft.Network/loadBalancers/inboundNatRules/join/action",
                "Microsoft.Network/loadBalancers/probes/join/action",
                "Microsoft.Network/loadBalancers/read",
                "Microsoft.Network/locations/*",
                "Microsoft.Network/networkInterfaces/*",
                "Microsoft.Network/networkSecurityGroups/join/action",
                "Microsoft.Network/networkSecurityGroups/read",
                "Microsoft.Network/publicIPAddresses/join/action",
                "Microsoft.Network/publicIPAddresses/read",
                "Microsoft.Network/virtualNetworks/read",
                "Microsoft.Network/virtualNetworks/subnets/join/action",
                "Microsoft.RecoveryServices/locations/*",
                "Microsoft.RecoveryServices/Vaults/backupFabrics/backupProtectionIntent/write",
                "Microsoft.RecoveryServices/Vaults/backupFabrics/protectionContainers/protectedItems/*/read",
                "Microsoft.RecoveryServices/Vaults/backupFabrics/protectionContainers/protectedItems/read",
                "Microsoft.RecoveryServices/Vaults/backupFabrics/protectionContainers/protectedItems/write",
                "Microsoft.RecoveryServices/Vaults/backupPolicies/read",
                "Microsoft.RecoveryServices/Vaults/backupPolicies/write",
                "Microsoft.RecoveryServices/Vaults/read",
                "Microsoft.RecoveryServices/Vaults/usages/read",
                "Microsoft.RecoveryServices/Vaults/write",
                "Microsoft.ResourceHealth/availabilityStatuses/read",
                "Microsoft.Resources/deployments/*",
                "Microsoft.Resources/subscriptions/resourceGroups/read",
                "Microsoft.SerialConsole/serialPorts/connect/action",
                "Microsoft.SqlVirtualMachine/*",
                "Microsoft.Storage/storageAccounts/listKeys/action",
                "Microsoft.Storage/storageAccounts/read",
                "Microsoft.Support/*",
            ],
            &[],
        ),
        role(
            MANAGED_IDENTITY_CONTRIBUTOR,
            "Managed Identity Contributor",
            "Create, Read, Update, and Delete User Assigned Identity",
            &[
                "Microsoft.ManagedIdentity/userAssignedIdentities/read",
                "Microsoft.ManagedIdentity/userAssignedIdentities/write",
                "Microsoft.ManagedIdentity/userAssignedIdentities/delete",
                "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials/read",
                "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials/write",
                "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials/delete",
                "Microsoft.ManagedIdentity/userAssignedIdentities/revokeTokens/action",
                "Microsoft.Authorization/*/read",
                "Microsoft.Insights/alertRules/*",
                "Microsoft.Resources/subscriptions/resourceGroups/read",
                "Microsoft.Resources/deployments/*",
                "Microsoft.Support/*",
            ],
            &[],
        ),
        role(
            MANAGED_IDENTITY_OPERATOR,
            "Managed Identity Operator",
            "Read and Assign User Assigned Identity",
            &[
                "Microsoft.ManagedIdentity/userAssignedIdentities/*/read",
                "Microsoft.ManagedIdentity/userAssignedIdentities/*/assign/action",
                "Microsoft.Authorization/*/read",
                "Microsoft.Insights/alertRules/*",
                "Microsoft.Resources/subscriptions/resourceGroups/read",
                "Microsoft.Resources/deployments/*",
                "Microsoft.Support/*",
            ],
            &[],
        ),
    ]
}
