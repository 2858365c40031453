//! `openmi vm ...`: virtual machines and their managed identities, as `az vm` shapes them.
//!
//! `create` PUTs the VM directly (az deploys a template; openmi has no network resources to
//! create, so the body names the NIC az's template would have made). Image aliases are az's
//! built-in ones (plus the retired `UbuntuLTS` the identity docs still use); `--assign-identity`
//! and `--identities` take identity ids, names in the VM's group, or `[system]`. With `--role R
//! --scope S` the new system-assigned identity is given the role: az puts a role assignment in
//! its template; openmi resolves the role before the VM PUT and PUTs the assignment right after
//! (principal type `ServicePrincipal`), and the output's `identity` gains `role` and `scope`.
//!
//! `vm identity assign` PATCHes only what it adds, and sets `type` from what the VM already has,
//! so an identity already assigned is never dropped (the PATCH merge rules of protocol notes §4.3).
//! `vm identity remove` follows az's `_remove_identities`. Both are pure functions here, tested
//! below.

use anyhow::anyhow;
use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};

use crate::arm::{self, Arm, ArmArgs};
use crate::identity::{flatten_properties, group_location, IDENTITY_TYPE};
use crate::output::{table_row, Outcome};
use crate::role;

/// The provider type of virtual machines.
const VM_TYPE: &str = "Microsoft.Compute/virtualMachines";
/// How az spells the system-assigned identity among identity ids.
const SYSTEM_IDENTITY: &str = "[system]";
/// az's default VM size.
const DEFAULT_SIZE: &str = "Standard_D2s_v5";
/// The image used when `--image` is absent.
const DEFAULT_IMAGE: &str = "Ubuntu2204";

/// `openmi vm ...`
#[derive(Debug, Args)]
pub struct VmCommand {
    #[command(flatten)]
    pub global: ArmArgs,
    #[command(subcommand)]
    pub action: VmAction,
}

/// The VM verbs.
#[derive(Debug, Subcommand)]
pub enum VmAction {
    /// Create a virtual machine, optionally with managed identities.
    Create(Box<VmCreateArgs>),
    /// Show a virtual machine.
    Show {
        #[command(flatten)]
        target: VmTarget,
        /// Add powerState and the (empty) network details, as az's --show-details does.
        #[arg(long, short = 'd')]
        show_details: bool,
    },
    /// List the virtual machines of a group, or of the subscription.
    List {
        /// Resource group; default: the whole subscription.
        #[arg(long, short = 'g')]
        resource_group: Option<String>,
        /// Add powerState and the (empty) network details, as az's --show-details does.
        #[arg(long, short = 'd')]
        show_details: bool,
    },
    /// Delete a virtual machine (its system-assigned identity goes with it).
    Delete {
        #[command(flatten)]
        target: VmTarget,
        /// Do not prompt for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
        /// Do not wait for the deletion to finish.
        #[arg(long)]
        no_wait: bool,
    },
    /// Manage the managed identities of a virtual machine.
    Identity {
        #[command(subcommand)]
        action: VmIdentityAction,
    },
    /// Print a one-time join token with which `openmi agent` enrols for a virtual machine.
    JoinToken(crate::vm_agent::JoinTokenArgs),
    /// Run a command "on" a virtual machine: start its agent on a loopback port (enrolling it if
    /// needed) and point the command's SDKs at it.
    Run(crate::vm_agent::RunArgs),
}

/// `-g RG -n NAME`, the VM a verb acts on.
#[derive(Debug, Args)]
pub struct VmTarget {
    /// Resource group.
    #[arg(long, short = 'g')]
    resource_group: String,
    /// Name of the virtual machine.
    #[arg(long, short = 'n')]
    name: String,
}

/// `openmi vm create`
#[derive(Debug, Args)]
pub struct VmCreateArgs {
    /// Resource group.
    #[arg(long, short = 'g')]
    resource_group: String,
    /// Name of the virtual machine.
    #[arg(long, short = 'n')]
    name: String,
    /// An alias (Ubuntu2204, Win2022Datacenter, ...), a URN publisher:offer:sku:version, or an
    /// image resource id.
    #[arg(long, default_value = DEFAULT_IMAGE)]
    image: String,
    /// Administrator user name; default: the local user name (root becomes azureuser).
    #[arg(long)]
    admin_username: Option<String>,
    /// Administrator password (required for Windows images; may start with `-`).
    #[arg(long, allow_hyphen_values = true)]
    admin_password: Option<String>,
    /// VM size.
    #[arg(long, default_value = DEFAULT_SIZE)]
    size: String,
    /// Location; default: the resource group's.
    #[arg(long, short = 'l')]
    location: Option<String>,
    #[arg(
        long,
        num_args = 0..,
        value_name = "ID|NAME|[system]",
        help = "Managed identities: ids, names in the group, or [system]; no value means system-assigned"
    )]
    assign_identity: Option<Vec<String>>,
    /// Role (name or id) to give the system-assigned identity at --scope; needs --scope.
    #[arg(long)]
    role: Option<String>,
    /// Scope of the role given to the system-assigned identity; needs --role.
    #[arg(long)]
    scope: Option<String>,
    /// Space-separated tags: key[=value].
    #[arg(long, num_args = 0..)]
    tags: Option<Vec<String>>,
    /// Computer name; default: the VM name.
    #[arg(long)]
    computer_name: Option<String>,
    /// Accepted for compatibility with az; openmi VMs take no SSH keys.
    #[arg(long)]
    generate_ssh_keys: bool,
}

/// `openmi vm identity ...`
#[derive(Debug, Subcommand)]
pub enum VmIdentityAction {
    /// Enable managed identities on a VM, keeping those it has.
    Assign {
        #[command(flatten)]
        target: VmTarget,
        #[arg(
            long,
            num_args = 0..,
            value_name = "ID|NAME|[system]",
            help = "Identities: ids, names in the group, or [system]; no value means system-assigned"
        )]
        identities: Option<Vec<String>>,
    },
    /// Remove managed identities from a VM.
    Remove {
        #[command(flatten)]
        target: VmTarget,
        #[arg(
            long,
            num_args = 0..,
            value_name = "ID|NAME|[system]",
            help = "Identities: ids, names in the group, or [system]; no value means system-assigned"
        )]
        identities: Option<Vec<String>>,
    },
    /// Show the managed identities of a VM.
    Show {
        #[command(flatten)]
        target: VmTarget,
    },
}

/// Runs a VM verb.
pub async fn run(command: VmCommand) -> anyhow::Result<Outcome> {
    if let VmAction::Delete { yes, .. } = &command.action {
        crate::confirm(*yes)?;
    }
    if let VmAction::Create(args) = &command.action {
        // Checked before any request, as az validates arguments first.
        resolve_image(&args.image)?;
        identity_role(
            args.assign_identity.as_deref(),
            args.role.as_deref(),
            args.scope.as_deref(),
        )?;
    }
    let arm = Arm::connect(command.global.subscription.as_deref()).await?;
    match command.action {
        VmAction::Create(args) => create(&arm, *args).await,
        VmAction::Show {
            target,
            show_details,
        } => {
            let path = vm_path(&arm, &target);
            let vm = get_vm(&arm, &path, show_details).await?;
            Ok(Outcome::with_table(vm_output(vm, show_details), vm_table))
        }
        VmAction::List {
            resource_group,
            show_details,
        } => {
            let scope = match &resource_group {
                Some(group) => arm.group_id(group),
                None => arm.subscription_path(),
            };
            let path = format!("{scope}/providers/{VM_TYPE}");
            let path = if show_details {
                format!("{path}?$expand=instanceView")
            } else {
                path
            };
            let vms = arm.list_at(&path, arm::API_VIRTUAL_MACHINES).await?;
            let vms = vms
                .into_iter()
                .map(|vm| vm_output(vm, show_details))
                .collect();
            Ok(Outcome::with_table(Value::Array(vms), vm_table))
        }
        VmAction::Delete {
            target, no_wait, ..
        } => {
            arm.delete(&vm_path(&arm, &target), arm::API_VIRTUAL_MACHINES, !no_wait)
                .await?;
            Ok(Outcome::nothing())
        }
        VmAction::Identity { action } => identity(&arm, action).await,
        VmAction::JoinToken(args) => crate::vm_agent::join_token(&arm, args).await,
        // `vm run` returns the command's exit code, so `crate::run` dispatches it before the
        // verbs that print an outcome.
        VmAction::Run(_) => Err(anyhow!("`vm run` cannot be run from here")),
    }
}

async fn create(arm: &Arm, args: VmCreateArgs) -> anyhow::Result<Outcome> {
    let image = resolve_image(&args.image)?;
    if image.os == Some(OperatingSystem::Windows) && args.admin_password.is_none() {
        return Err(anyhow!(
            "usage error: --admin-password is required for a Windows image"
        ));
    }
    let location = match args.location {
        Some(location) => location,
        None => group_location(arm, &args.resource_group).await?,
    };
    let admin_username = args.admin_username.unwrap_or_else(default_admin_username);
    let mut os_profile = json!({
        "computerName": args.computer_name.as_deref().unwrap_or(&args.name),
        "adminUsername": admin_username,
    });
    if let Some(password) = &args.admin_password {
        os_profile["adminPassword"] = json!(password);
    }
    if image.os == Some(OperatingSystem::Linux) {
        os_profile["linuxConfiguration"] =
            json!({"disablePasswordAuthentication": args.admin_password.is_none()});
    }
    let nic_id = format!(
        "{}/providers/Microsoft.Network/networkInterfaces/{}VMNic",
        arm.group_id(&args.resource_group),
        arm::segment(&args.name)
    );
    let mut body = json!({
        "location": location,
        "properties": {
            "hardwareProfile": {"vmSize": args.size},
            "storageProfile": {
                "imageReference": image.reference,
                "osDisk": {"createOption": "FromImage", "caching": "ReadWrite"},
            },
            "osProfile": os_profile,
            "networkProfile": {"networkInterfaces": [{"id": nic_id}]},
        },
    });
    if let Some(tags) = &args.tags {
        body["tags"] = arm::parse_tags(tags);
    }
    let selection = args
        .assign_identity
        .as_ref()
        .map(|values| IdentitySelection::parse(values, arm.subscription(), &args.resource_group));
    if let Some(selection) = &selection {
        body["identity"] = selection.create_block();
    }
    // The role is resolved before the VM exists, as az's validator does, so that an unknown role
    // creates nothing.
    let role_grant = match identity_role(
        args.assign_identity.as_deref(),
        args.role.as_deref(),
        args.scope.as_deref(),
    )? {
        Some(grant) => {
            let role_id = role::resolve_role_id(arm, &grant.role, &grant.scope).await?;
            Some((grant, role_id))
        }
        None => None,
    };
    let path = arm.resource_id(&args.resource_group, VM_TYPE, &args.name);
    arm.put(&path, arm::API_VIRTUAL_MACHINES, &body).await?;
    // Read back with the instance view, as az does, for the power state and the identities'
    // principal ids.
    let vm = get_vm(arm, &path, true).await?;
    let mut output = vm_create_output(&vm, &args.resource_group, selection.is_some());
    if let Some((grant, role_id)) = role_grant {
        let principal_id = vm
            .pointer("/identity/principalId")
            .and_then(Value::as_str)
            .filter(|principal| !principal.is_empty())
            .ok_or_else(|| {
                anyhow!(
                    "the VM was created but has no system-assigned identity to give the role to"
                )
            })?;
        assign_role_to_new_principal(arm, &grant.scope, &role_id, principal_id)
            .await
            .map_err(|error| {
                anyhow!("the VM was created, but giving its identity the role failed: {error}")
            })?;
        output["identity"]["role"] = json!(grant.role);
        output["identity"]["scope"] = json!(grant.scope_as_typed);
    }
    Ok(Outcome::with_table(output, vm_create_table))
}

/// The role to give a new VM's system-assigned identity (`--role R --scope S`).
#[derive(Debug, PartialEq)]
struct RoleGrant {
    /// The role as typed (a name or an id), printed as az prints it.
    role: String,
    /// The scope to use (a bare subscription id made a path).
    scope: String,
    /// The scope as typed, for the output.
    scope_as_typed: String,
}

/// az's `_validate_vm_vmss_msi` for create: `--role` and `--scope` go together, only with
/// `--assign-identity`, and only when the system identity is among those assigned.
fn identity_role(
    assign_identity: Option<&[String]>,
    role: Option<&str>,
    scope: Option<&str>,
) -> anyhow::Result<Option<RoleGrant>> {
    let Some(identities) = assign_identity else {
        if role.is_some() || scope.is_some() {
            return Err(anyhow!(
                "usage error: --assign-identity [--scope SCOPE] [--role ROLE]"
            ));
        }
        return Ok(None);
    };
    match (role, scope) {
        (None, None) => Ok(None),
        (Some(_), None) => Err(anyhow!(
            "usage error: please specify --scope when assigning a role to the managed identity"
        )),
        (None, Some(_)) => Err(anyhow!(
            "usage error: please specify both --role and --scope when assigning a role to the managed identity"
        )),
        (Some(role), Some(scope)) => {
            let with_system = identities.is_empty()
                || identities
                    .iter()
                    .any(|identity| identity.eq_ignore_ascii_case(SYSTEM_IDENTITY));
            if !with_system {
                return Err(anyhow!(
                    "usage error: '--scope'/'--role' is only applicable when assign system identity"
                ));
            }
            Ok(Some(RoleGrant {
                role: role.to_string(),
                scope: role::parse_scope(scope)?,
                scope_as_typed: scope.to_string(),
            }))
        }
    }
}

/// How many times the role assignment of a new identity is tried while the server does not know
/// the principal yet, and the pause between tries (az retries while the error says the principal
/// "does not exist in the directory"; openmi has no propagation delay, so this rarely waits).
const PRINCIPAL_RETRIES: u32 = 12;
const PRINCIPAL_RETRY_DELAY: std::time::Duration = std::time::Duration::from_secs(5);

/// PUTs the role assignment of a new system-assigned identity (principal type
/// `ServicePrincipal`), retrying while the principal is not found.
async fn assign_role_to_new_principal(
    arm: &Arm,
    scope: &str,
    role_id: &str,
    principal_id: &str,
) -> anyhow::Result<Value> {
    let mut attempt = 1;
    loop {
        let result = role::create_assignment(
            arm,
            scope,
            role_id,
            principal_id,
            Some("ServicePrincipal"),
            None,
            None,
        )
        .await;
        match result {
            Err(error) if attempt < PRINCIPAL_RETRIES && principal_not_found(&error) => {
                attempt += 1;
                tokio::time::sleep(PRINCIPAL_RETRY_DELAY).await;
            }
            other => return other,
        }
    }
}

fn principal_not_found(error: &anyhow::Error) -> bool {
    crate::client::error_code(error) == Some("PrincipalNotFound")
        || error
            .to_string()
            .contains(" does not exist in the directory ")
}

async fn identity(arm: &Arm, action: VmIdentityAction) -> anyhow::Result<Outcome> {
    match action {
        VmIdentityAction::Assign { target, identities } => {
            let path = vm_path(arm, &target);
            let vm = get_vm(arm, &path, false).await?;
            let selection = IdentitySelection::parse(
                identities.as_deref().unwrap_or_default(),
                arm.subscription(),
                &target.resource_group,
            );
            let identity_patch = selection.assign_patch(vm.get("identity"));
            let updated = arm
                .patch(
                    &path,
                    arm::API_VIRTUAL_MACHINES,
                    &json!({"identity": identity_patch}),
                )
                .await?;
            Ok(Outcome::value(identity_info(updated.get("identity"))))
        }
        VmIdentityAction::Remove { target, identities } => {
            let path = vm_path(arm, &target);
            let vm = get_vm(arm, &path, false).await?;
            let selection = IdentitySelection::parse(
                identities.as_deref().unwrap_or_default(),
                arm.subscription(),
                &target.resource_group,
            );
            let Some(identity_patch) = selection.remove_patch(vm.get("identity"), &target.name)?
            else {
                return Ok(Outcome::nothing());
            };
            let updated = arm
                .patch(
                    &path,
                    arm::API_VIRTUAL_MACHINES,
                    &json!({"identity": identity_patch}),
                )
                .await?;
            Ok(Outcome {
                value: updated.get("identity").cloned(),
                table: None,
            })
        }
        VmIdentityAction::Show { target } => {
            let vm = get_vm(arm, &vm_path(arm, &target), false).await?;
            Ok(Outcome {
                value: vm.get("identity").cloned(),
                table: None,
            })
        }
    }
}

fn vm_path(arm: &Arm, target: &VmTarget) -> String {
    arm.resource_id(&target.resource_group, VM_TYPE, &target.name)
}

async fn get_vm(arm: &Arm, path: &str, instance_view: bool) -> anyhow::Result<Value> {
    if instance_view {
        arm.get(
            &format!("{path}?$expand=instanceView"),
            arm::API_VIRTUAL_MACHINES,
        )
        .await
    } else {
        arm.get(path, arm::API_VIRTUAL_MACHINES).await
    }
}

/// The local user name, or `azureuser` for root or when unknown (az's default).
fn default_admin_username() -> String {
    match std::env::var("USER") {
        Ok(user) if !user.is_empty() && user != "root" => user,
        _ => "azureuser".to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// Images

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OperatingSystem {
    Linux,
    Windows,
}

/// An image reference and, when known, its operating system.
#[derive(Debug, PartialEq)]
struct Image {
    reference: Value,
    os: Option<OperatingSystem>,
}

/// az's built-in aliases (`azure/cli/command_modules/vm/_alias.py`), plus `UbuntuLTS`, which az
/// retired but the managed-identity docs still use.
const IMAGE_ALIASES: &[(&str, &str, OperatingSystem)] = &[
    (
        "CentOS85Gen2",
        "OpenLogic:CentOS:8_5-gen2:latest",
        OperatingSystem::Linux,
    ),
    (
        "Debian11",
        "Debian:debian-11:11-backports-gen2:latest",
        OperatingSystem::Linux,
    ),
    (
        "FlatcarLinuxFreeGen2",
        "kinvolk:flatcar-container-linux-free:stable-gen2:latest",
        OperatingSystem::Linux,
    ),
    (
        "OpenSuseLeap154Gen2",
        "SUSE:openSUSE-leap-15-4:gen2:latest",
        OperatingSystem::Linux,
    ),
    (
        "RHELRaw8LVMGen2",
        "RedHat:RHEL:8-lvm-gen2:latest",
        OperatingSystem::Linux,
    ),
    (
        "SuseSles15SP5",
        "SUSE:sles-15-sp5:gen2:latest",
        OperatingSystem::Linux,
    ),
    (
        "Ubuntu2204",
        "Canonical:0001-com-ubuntu-server-jammy:22_04-lts-gen2:latest",
        OperatingSystem::Linux,
    ),
    (
        "Ubuntu2404",
        "Canonical:ubuntu-24_04-lts:server:latest",
        OperatingSystem::Linux,
    ),
    (
        "UbuntuLTS",
        "Canonical:UbuntuServer:18.04-LTS:latest",
        OperatingSystem::Linux,
    ),
    (
        "Win2022Datacenter",
        "MicrosoftWindowsServer:WindowsServer:2022-datacenter-g2:latest",
        OperatingSystem::Windows,
    ),
    (
        "Win2022AzureEditionCore",
        "MicrosoftWindowsServer:WindowsServer:2022-datacenter-azure-edition-core:latest",
        OperatingSystem::Windows,
    ),
    (
        "Win2019Datacenter",
        "MicrosoftWindowsServer:WindowsServer:2019-datacenter-gensecond:latest",
        OperatingSystem::Windows,
    ),
    (
        "Win2016Datacenter",
        "MicrosoftWindowsServer:WindowsServer:2016-datacenter-gensecond:latest",
        OperatingSystem::Windows,
    ),
    (
        "Win2012R2Datacenter",
        "MicrosoftWindowsServer:WindowsServer:2012-r2-datacenter-gensecond:latest",
        OperatingSystem::Windows,
    ),
    (
        "Win2012Datacenter",
        "MicrosoftWindowsServer:WindowsServer:2012-datacenter-gensecond:latest",
        OperatingSystem::Windows,
    ),
];

/// An `--image` value: an alias (any casing), a URN `publisher:offer:sku:version`, or an image
/// resource id.
fn resolve_image(image: &str) -> anyhow::Result<Image> {
    if image.starts_with('/') {
        return Ok(Image {
            reference: json!({"id": image}),
            os: None,
        });
    }
    let (urn, os) = match IMAGE_ALIASES
        .iter()
        .find(|(alias, _, _)| alias.eq_ignore_ascii_case(image))
    {
        Some((_, urn, os)) => (*urn, Some(*os)),
        None => (image, None),
    };
    let parts: Vec<&str> = urn.split(':').collect();
    let [publisher, offer, sku, version] = parts.as_slice() else {
        let aliases: Vec<&str> = IMAGE_ALIASES.iter().map(|(alias, _, _)| *alias).collect();
        return Err(anyhow!(
            "Invalid image \"{image}\". Use a valid image URN, custom image id, or pick an image from {aliases:?}."
        ));
    };
    let os = os.or_else(|| {
        Some(if publisher.to_ascii_lowercase().contains("windows") {
            OperatingSystem::Windows
        } else {
            OperatingSystem::Linux
        })
    });
    Ok(Image {
        reference: json!({"publisher": publisher, "offer": offer, "sku": sku, "version": version}),
        os,
    })
}

// ---------------------------------------------------------------------------------------------
// Identity blocks

/// The identities named on the command line: the system one and user-assigned ids.
#[derive(Debug, PartialEq)]
struct IdentitySelection {
    system: bool,
    // Invariant: no two ids equal ignoring case.
    user_ids: Vec<String>,
}

/// Whether a VM identity `type` enables the system and the user-assigned identities.
fn parse_identity_type(identity: Option<&Value>) -> (bool, bool) {
    let kind = identity
        .and_then(|identity| identity.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("None");
    let has = |wanted: &str| {
        kind.split(',')
            .any(|part| part.trim().eq_ignore_ascii_case(wanted))
    };
    (has("SystemAssigned"), has("UserAssigned"))
}

/// ARM's `type` string for the pair (system, user-assigned).
fn identity_type(system: bool, user: bool) -> &'static str {
    match (system, user) {
        (true, true) => "SystemAssigned, UserAssigned",
        (true, false) => "SystemAssigned",
        (false, true) => "UserAssigned",
        (false, false) => "None",
    }
}

/// The keys of `identity.userAssignedIdentities`.
fn user_assigned_ids(identity: Option<&Value>) -> Vec<String> {
    identity
        .and_then(|identity| identity.get("userAssignedIdentities"))
        .and_then(Value::as_object)
        .map(|ids| ids.keys().cloned().collect())
        .unwrap_or_default()
}

impl IdentitySelection {
    /// Reads `--assign-identity`/`--identities` values: none means the system identity, `[system]`
    /// (any casing) too, a value starting with `/` is an identity id, anything else the name of an
    /// identity in `group`.
    fn parse(values: &[String], subscription: &str, group: &str) -> IdentitySelection {
        let mut selection = IdentitySelection {
            system: values.is_empty(),
            user_ids: Vec::new(),
        };
        for value in values {
            if value.eq_ignore_ascii_case(SYSTEM_IDENTITY) {
                selection.system = true;
                continue;
            }
            let id = if value.starts_with('/') {
                value.clone()
            } else {
                format!(
                    "/subscriptions/{}/resourceGroups/{}/providers/{IDENTITY_TYPE}/{}",
                    arm::segment(subscription),
                    arm::segment(group),
                    arm::segment(value)
                )
            };
            if !selection
                .user_ids
                .iter()
                .any(|known| known.eq_ignore_ascii_case(&id))
            {
                selection.user_ids.push(id);
            }
        }
        selection
    }

    /// The `identity` block of a new VM.
    fn create_block(&self) -> Value {
        let mut block = json!({"type": identity_type(self.system, !self.user_ids.is_empty())});
        if !self.user_ids.is_empty() {
            block["userAssignedIdentities"] = empty_entries(&self.user_ids);
        }
        block
    }

    /// The `identity` of a PATCH adding this selection to a VM whose identity is `current`:
    /// `type` keeps what the VM has, and only ids it lacks are sent, so nothing is dropped.
    fn assign_patch(&self, current: Option<&Value>) -> Value {
        let (has_system, has_user) = parse_identity_type(current);
        let existing = user_assigned_ids(current);
        let added: Vec<String> = self
            .user_ids
            .iter()
            .filter(|id| !existing.iter().any(|known| known.eq_ignore_ascii_case(id)))
            .cloned()
            .collect();
        let system = has_system || self.system;
        let user = (has_user && !existing.is_empty()) || !added.is_empty();
        let mut patch = json!({"type": identity_type(system, user)});
        if !added.is_empty() {
            patch["userAssignedIdentities"] = empty_entries(&added);
        }
        patch
    }

    /// The `identity` of a PATCH removing this selection from a VM whose identity is `current`,
    /// as az's `_remove_identities` builds it: removed ids are set to null, `type` loses
    /// `UserAssigned` when none is left and `SystemAssigned` when asked. `None` when the VM has
    /// no identity block (nothing to do). Naming an id the VM does not have is an error.
    fn remove_patch(
        &self,
        current: Option<&Value>,
        vm_name: &str,
    ) -> anyhow::Result<Option<Value>> {
        let Some(current) = current.filter(|identity| !identity.is_null()) else {
            return Ok(None);
        };
        let (mut system, mut user) = parse_identity_type(Some(current));
        let existing = user_assigned_ids(Some(current));
        let not_associated: Vec<&str> = self
            .user_ids
            .iter()
            .filter(|id| !existing.iter().any(|known| known.eq_ignore_ascii_case(id)))
            .map(String::as_str)
            .collect();
        if !not_associated.is_empty() {
            return Err(anyhow!(
                "'{}' are not associated with '{vm_name}'",
                not_associated.join(",")
            ));
        }
        let removed: Vec<String> = existing
            .iter()
            .filter(|known| {
                self.user_ids
                    .iter()
                    .any(|id| id.eq_ignore_ascii_case(known))
            })
            .cloned()
            .collect();
        if !self.user_ids.is_empty() && removed.len() == existing.len() {
            user = false;
        }
        if self.system {
            system = false;
        }
        let mut patch = json!({"type": identity_type(system, user)});
        if user && !removed.is_empty() {
            let entries: Map<String, Value> =
                removed.into_iter().map(|id| (id, Value::Null)).collect();
            patch["userAssignedIdentities"] = Value::Object(entries);
        }
        Ok(Some(patch))
    }
}

fn empty_entries(ids: &[String]) -> Value {
    Value::Object(ids.iter().map(|id| (id.clone(), json!({}))).collect())
}

/// az's `_construct_identity_info`: the system identity's principal id (or "") and the
/// user-assigned identities with their client and principal ids (or {}).
fn identity_info(identity: Option<&Value>) -> Value {
    let principal_id = identity
        .and_then(|identity| identity.get("principalId"))
        .filter(|principal| !principal.is_null())
        .cloned()
        .unwrap_or_else(|| json!(""));
    let user_assigned = identity
        .and_then(|identity| identity.get("userAssignedIdentities"))
        .filter(|ids| ids.is_object())
        .cloned()
        .unwrap_or_else(|| json!({}));
    json!({"systemAssignedIdentity": principal_id, "userAssignedIdentities": user_assigned})
}

// ---------------------------------------------------------------------------------------------
// Outputs

/// The power state az reads from the instance view ("VM running"), or "VM running" for a VM
/// provisioned without one (openmi VMs are always running).
fn power_state(vm: &Value) -> Value {
    let from_view = vm
        .pointer("/properties/instanceView/statuses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|status| {
            status
                .get("code")
                .and_then(Value::as_str)
                .is_some_and(|code| code.to_ascii_lowercase().starts_with("powerstate/"))
        })
        .and_then(|status| status.get("displayStatus"))
        .cloned();
    from_view.unwrap_or_else(|| json!("VM running"))
}

/// A VM as az prints it: `properties` flattened to the top level; with `--show-details`, also
/// the power state and network details (empty: openmi VMs have no network).
fn vm_output(vm: Value, show_details: bool) -> Value {
    let power = power_state(&vm);
    let mut output = flatten_properties(vm);
    if show_details {
        if let Some(object) = output.as_object_mut() {
            object.remove("instanceView");
            object.insert("powerState".to_string(), power);
            for key in ["publicIps", "fqdns", "privateIps", "macAddresses"] {
                object.insert(key.to_string(), json!(""));
            }
        }
    }
    output
}

/// az's `transform_vm_create_output`.
fn vm_create_output(vm: &Value, group: &str, with_identity: bool) -> Value {
    let zones = vm
        .get("zones")
        .and_then(Value::as_array)
        .and_then(|zones| zones.first())
        .cloned()
        .unwrap_or_else(|| json!(""));
    let mut output = json!({
        "id": vm.get("id").cloned().unwrap_or(Value::Null),
        "resourceGroup": group,
        "powerState": power_state(vm),
        "publicIpAddress": "",
        "fqdns": "",
        "privateIpAddress": "",
        "macAddress": "",
        "location": vm.get("location").cloned().unwrap_or(Value::Null),
        "zones": zones,
    });
    if with_identity {
        output["identity"] = identity_info(vm.get("identity"));
    }
    output
}

/// az's table for `vm create`: the transform's keys in its order.
fn vm_create_table(output: &Value) -> Vec<Vec<(String, Value)>> {
    vec![table_row(
        output,
        &[
            ("ResourceGroup", "/resourceGroup"),
            ("PowerState", "/powerState"),
            ("PublicIpAddress", "/publicIpAddress"),
            ("Fqdns", "/fqdns"),
            ("PrivateIpAddress", "/privateIpAddress"),
            ("MacAddress", "/macAddress"),
            ("Location", "/location"),
            ("Zones", "/zones"),
        ],
    )]
}

/// az's `transform_vm` (for `vm show` and, per item, `vm list`).
fn vm_table(output: &Value) -> Vec<Vec<(String, Value)>> {
    let row = |vm: &Value| {
        let mut row = table_row(
            vm,
            &[
                ("Name", "/name"),
                ("ResourceGroup", "/resourceGroup"),
                ("PowerState", "/powerState"),
                ("PublicIps", "/publicIps"),
                ("Fqdns", "/fqdns"),
                ("Location", "/location"),
            ],
        );
        if let Some(zones) = vm.get("zones") {
            let joined = zones
                .as_array()
                .map(|zones| {
                    zones
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            row.push(("Zones".to_string(), json!(joined)));
        }
        row
    };
    match output {
        Value::Array(vms) => vms.iter().map(row).collect(),
        vm => vec![row(vm)],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUB: &str = "00000000-0000-0000-0000-000000000001";

    fn uami(name: &str) -> String {
        format!("/subscriptions/{SUB}/resourceGroups/rg/providers/{IDENTITY_TYPE}/{name}")
    }

    fn selection(values: &[&str]) -> IdentitySelection {
        let values: Vec<String> = values.iter().map(|value| value.to_string()).collect();
        IdentitySelection::parse(&values, SUB, "rg")
    }

    #[test]
    fn selection_reads_system_names_and_ids() {
        assert_eq!(
            selection(&[]),
            IdentitySelection {
                system: true,
                user_ids: vec![]
            }
        );
        let id = uami("other");
        assert_eq!(
            selection(&["[System]", "id1", &id, &id.to_uppercase()]),
            IdentitySelection {
                system: true,
                user_ids: vec![uami("id1"), id.clone()]
            }
        );
        assert_eq!(
            selection(&["id1"]),
            IdentitySelection {
                system: false,
                user_ids: vec![uami("id1")]
            }
        );
    }

    #[test]
    fn create_block_names_the_type_and_the_ids() {
        assert_eq!(
            selection(&[]).create_block(),
            json!({"type": "SystemAssigned"})
        );
        assert_eq!(
            selection(&["a"]).create_block(),
            json!({"type": "UserAssigned", "userAssignedIdentities": {uami("a"): {}}})
        );
        assert_eq!(
            selection(&["[system]", "a"]).create_block(),
            json!({"type": "SystemAssigned, UserAssigned", "userAssignedIdentities": {uami("a"): {}}})
        );
    }

    #[test]
    fn assign_sends_only_additions_and_keeps_what_the_vm_has() {
        let current = json!({
            "type": "UserAssigned",
            "userAssignedIdentities": {uami("first"): {"principalId": "p", "clientId": "c"}}
        });
        // The system identity added: type keeps UserAssigned, no ids sent.
        assert_eq!(
            selection(&[]).assign_patch(Some(&current)),
            json!({"type": "SystemAssigned, UserAssigned"})
        );
        // A second identity: only it is sent; the first is matched ignoring case.
        assert_eq!(
            selection(&[&uami("FIRST"), "second"]).assign_patch(Some(&current)),
            json!({"type": "UserAssigned", "userAssignedIdentities": {uami("second"): {}}})
        );
        // A VM with the system identity only keeps it when a user identity arrives.
        assert_eq!(
            selection(&["a"])
                .assign_patch(Some(&json!({"type": "SystemAssigned", "principalId": "p"}))),
            json!({"type": "SystemAssigned, UserAssigned", "userAssignedIdentities": {uami("a"): {}}})
        );
        // No identity yet.
        assert_eq!(
            selection(&[]).assign_patch(None),
            json!({"type": "SystemAssigned"})
        );
        assert_eq!(
            selection(&[]).assign_patch(Some(&json!({"type": "None"}))),
            json!({"type": "SystemAssigned"})
        );
    }

    #[test]
    fn remove_follows_az() {
        let both = json!({
            "type": "SystemAssigned, UserAssigned",
            "principalId": "p",
            "userAssignedIdentities": {uami("a"): {}, uami("b"): {}}
        });
        // No value: the system identity goes, the user-assigned stay.
        assert_eq!(
            selection(&[]).remove_patch(Some(&both), "vm").unwrap(),
            Some(json!({"type": "UserAssigned"}))
        );
        // One of two user-assigned: set to null, type unchanged.
        assert_eq!(
            selection(&["A"]).remove_patch(Some(&both), "vm").unwrap(),
            Some(
                json!({"type": "SystemAssigned, UserAssigned", "userAssignedIdentities": {uami("a"): null}})
            )
        );
        // All user-assigned: type drops UserAssigned.
        assert_eq!(
            selection(&["a", "b"])
                .remove_patch(Some(&both), "vm")
                .unwrap(),
            Some(json!({"type": "SystemAssigned"}))
        );
        // Everything.
        assert_eq!(
            selection(&["[system]", "a", "b"])
                .remove_patch(Some(&both), "vm")
                .unwrap(),
            Some(json!({"type": "None"}))
        );
        // The system identity alone.
        assert_eq!(
            selection(&[])
                .remove_patch(
                    Some(&json!({"type": "SystemAssigned", "principalId": "p"})),
                    "vm"
                )
                .unwrap(),
            Some(json!({"type": "None"}))
        );
        // Not associated.
        let error = selection(&["c"])
            .remove_patch(Some(&both), "vm")
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("'{}' are not associated with 'vm'", uami("c"))
        );
        // No identity block: nothing to do.
        assert_eq!(selection(&[]).remove_patch(None, "vm").unwrap(), None);
    }

    #[test]
    fn identity_info_is_shaped_as_az_prints_it() {
        assert_eq!(
            identity_info(Some(
                &json!({"type": "SystemAssigned", "principalId": "p", "tenantId": "t"})
            )),
            json!({"systemAssignedIdentity": "p", "userAssignedIdentities": {}})
        );
        assert_eq!(
            identity_info(Some(&json!({"type": "UserAssigned",
                "userAssignedIdentities": {"/x": {"principalId": "p", "clientId": "c"}}}))),
            json!({"systemAssignedIdentity": "", "userAssignedIdentities": {"/x": {"principalId": "p", "clientId": "c"}}})
        );
    }

    #[test]
    fn role_and_scope_follow_az_rules() {
        let system: Vec<String> = vec![];
        let user_only = vec!["id1".to_string()];
        let both = vec!["id1".to_string(), "[System]".to_string()];
        assert_eq!(identity_role(None, None, None).unwrap(), None);
        assert_eq!(identity_role(Some(&system), None, None).unwrap(), None);
        assert_eq!(
            identity_role(None, Some("Reader"), Some(SUB))
                .unwrap_err()
                .to_string(),
            "usage error: --assign-identity [--scope SCOPE] [--role ROLE]"
        );
        assert!(identity_role(Some(&system), Some("Reader"), None)
            .unwrap_err()
            .to_string()
            .contains("please specify --scope"));
        assert!(identity_role(Some(&system), None, Some(SUB))
            .unwrap_err()
            .to_string()
            .contains("please specify both --role and --scope"));
        assert!(identity_role(Some(&user_only), Some("Reader"), Some(SUB))
            .unwrap_err()
            .to_string()
            .contains("only applicable when assign system identity"));
        assert_eq!(
            identity_role(Some(&both), Some("Reader"), Some(SUB)).unwrap(),
            Some(RoleGrant {
                role: "Reader".to_string(),
                scope: format!("/subscriptions/{SUB}"),
                scope_as_typed: SUB.to_string(),
            })
        );
        assert!(identity_role(Some(&system), Some("Reader"), Some("rg")).is_err());
    }

    #[test]
    fn images_resolve_aliases_urns_and_ids() {
        let image = resolve_image("win2016datacenter").unwrap();
        assert_eq!(
            image.reference,
            json!({"publisher": "MicrosoftWindowsServer", "offer": "WindowsServer",
                   "sku": "2016-datacenter-gensecond", "version": "latest"})
        );
        assert_eq!(image.os, Some(OperatingSystem::Windows));
        let image = resolve_image("UBUNTU2204").unwrap();
        assert_eq!(image.reference["offer"], "0001-com-ubuntu-server-jammy");
        assert_eq!(image.os, Some(OperatingSystem::Linux));
        let image = resolve_image("Canonical:UbuntuServer:18.04-LTS:18.04.202401010").unwrap();
        assert_eq!(image.reference["version"], "18.04.202401010");
        assert_eq!(
            resolve_image("/subscriptions/s/x").unwrap().reference,
            json!({"id": "/subscriptions/s/x"})
        );
        assert!(resolve_image("NoSuchImage").is_err());
    }

    #[test]
    fn create_output_has_az_keys() {
        let vm = json!({
            "id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm",
            "location": "westus",
            "identity": {"type": "SystemAssigned", "principalId": "p", "tenantId": "t"},
            "properties": {"instanceView": {"statuses": [
                {"code": "ProvisioningState/succeeded"},
                {"code": "PowerState/running", "displayStatus": "VM running"}
            ]}}
        });
        assert_eq!(
            vm_create_output(&vm, "rg", true),
            json!({
                "id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm",
                "resourceGroup": "rg", "powerState": "VM running", "publicIpAddress": "",
                "fqdns": "", "privateIpAddress": "", "macAddress": "", "location": "westus",
                "zones": "",
                "identity": {"systemAssignedIdentity": "p", "userAssignedIdentities": {}}
            })
        );
        assert!(vm_create_output(&vm, "rg", false).get("identity").is_none());
    }
}
