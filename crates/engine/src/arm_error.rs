//! ARM's words for engine failures: the HTTP status, code and message ARM answers for each
//! `EngineError`, in one table shared by the server's ARM envelope and the deployment engine,
//! which records each failed resource's error in the deployment's operations as ARM does.
//! Messages copy ARM's wording (research/protocols.md §4.5). The status is a plain number: the
//! engine knows no HTTP types.

use openmi_store::StoreError;

use crate::EngineError;

/// An ARM error: status, code, message, and (for `DeploymentFailed`) the inner errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArmFailure {
    pub status: u16,
    pub code: String,
    pub message: String,
    pub details: Vec<ArmFailure>,
}

impl ArmFailure {
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> ArmFailure {
        ArmFailure {
            status,
            code: code.to_string(),
            message: message.into(),
            details: Vec::new(),
        }
    }

    /// ARM's error object: `{"code","message"[,"details":[...]]}`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut error = serde_json::json!({"code": self.code, "message": self.message});
        if !self.details.is_empty() {
            error["details"] = self.details.iter().map(ArmFailure::to_json).collect();
        }
        error
    }
}

impl EngineError {
    /// Entra's error number (`AADSTS{n}`) for a failed token or sign-in request; the server's
    /// OAuth envelope and the sign-in log both use it.
    pub fn aadsts(&self) -> u32 {
        use EngineError as E;
        match self {
            E::TenantNotFound(_) => 90002,
            E::ApplicationNotFound { .. } => 700016,
            E::InvalidClientSecret => 7000215,
            E::ClientAuthenticationRequired(_) => 7000218,
            E::AssertionExpired => 700024,
            E::InvalidAssertion(_) | E::CertificateNotRegistered { .. } => 700027,
            E::InvalidUserCredentials => 50126,
            E::MissingParameter(_) => 900144,
            E::UnsupportedGrantType(_) => 70003,
            E::InvalidScope(_) => 1002012,
            E::ResourcePrincipalNotFound { .. } => 500011,
            E::InvalidRefreshToken => 9002313,
            E::OAuth { code, .. } => *code,
            E::BadRequest(_) => 90014,
            E::Store(StoreError::Unavailable(_) | StoreError::StorageFull(_)) => 90033,
            _ => 50000,
        }
    }

    /// ARM's status, code and message for this failure; `None` for internal failures, which
    /// the caller logs and answers with a generic message.
    pub fn arm(&self) -> Option<ArmFailure> {
        use EngineError as E;
        let failure = match self {
            E::InvalidAccessToken(_) => ArmFailure::new(401,
                "InvalidAuthenticationToken",
                "The access token is invalid.",
            ),
            E::ExpiredAccessToken { exp, now } => ArmFailure::new(401,
                "ExpiredAuthenticationToken",
                format!(
                    "The access token expiry UTC time '{}' is earlier than current UTC time '{}'.",
                    arm_time(*exp),
                    arm_time(*now)
                ),
            ),
            E::Forbidden => ArmFailure::new(403,
                "AuthorizationFailed",
                "The client does not have authorization to perform this action.",
            ),
            E::AuthorizationFailed { client, object_id, action, scope } => ArmFailure::new(403,
                "AuthorizationFailed",
                format!("The client '{client}' with object id '{object_id}' does not have authorization to perform action '{action}' over scope '{scope}' or the scope is invalid. If access was recently granted, please refresh your credentials."),
            ),
            E::LinkedAuthorizationFailed(linked) => ArmFailure::new(403,
                "LinkedAuthorizationFailed",
                format!("The client '{}' with object id '{}' has permission to perform action '{}' on scope '{}'; however, it does not have permission to perform action(s) '{}' on the linked scope(s) '{}' (respectively) or the linked scope(s) are invalid.", linked.client, linked.object_id, linked.action, linked.scope, linked.linked_action, linked.linked_scope),
            ),
            E::PrincipalNotFound { principal, tenant } => ArmFailure::new(400, "PrincipalNotFound", format!("Principal {} does not exist in the directory {tenant}. Check that you have the correct principal ID. If you are creating this principal and then immediately assigning a role, this error might be related to a replication delay.", principal.replace('-', "")),
            ),
            E::UnmatchedPrincipalType { principal, actual, given } => ArmFailure::new(400,
                "UnmatchedPrincipalType",
                format!("The PrincipalId '{principal}' has type '{actual}' , which is different from specified PrincipalType '{given}'."),
            ),
            E::RoleDefinitionHasAssignments(_) => ArmFailure::new(409, "RoleDefinitionHasAssignments", "There are existing role assignments referencing role."),
            E::RoleDefinitionNotFound(role) => ArmFailure::new(404, "RoleDefinitionDoesNotExist", format!("The specified role definition with ID '{role}' does not exist.")),
            E::BuiltInRoleReadOnly(role) => ArmFailure::new(400, "InvalidRoleDefinitionOperation", format!("The role definition '{role}' is a built-in role; built-in roles cannot be changed or deleted.")),
            E::RoleDefinitionDoesNotExist(role) => ArmFailure::new(400, "RoleDefinitionDoesNotExist", format!("The specified role definition with ID '{role}' does not exist.")),
            E::InvalidRoleAssignmentId(name) => ArmFailure::new(400, "InvalidRoleAssignmentId", format!("The role assignment ID '{name}' is not valid. The role assignment ID must be a GUID.")),
            E::RoleAssignmentNotFound(name) => ArmFailure::new(404, "RoleAssignmentNotFound", format!("The role assignment '{name}' is not found.")),
            E::RoleAssignmentExists(existing) => ArmFailure::new(409, "RoleAssignmentExists", format!("The role assignment already exists. The ID of the existing role assignment is {existing}.")),
            E::RoleDefinitionWithSameNameExists(_) => ArmFailure::new(409, "RoleDefinitionWithSameNameExists", "A custom role with the same name already exists in this directory. Use a different name."),
            E::SubscriptionNotFound(subscription) => ArmFailure::new(404, "SubscriptionNotFound", format!("The subscription '{subscription}' could not be found.")),
            E::ResourceGroupNotFound(group) => ArmFailure::new(404, "ResourceGroupNotFound", format!("Resource group '{group}' could not be found.")),
            E::ResourceNotFound { type_name, name, group } => ArmFailure::new(404,
                "ResourceNotFound",
                format!("The Resource '{type_name}/{name}' under resource group '{group}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix"),
            ),
            E::ParentResourceNotFound(parent) => ArmFailure::new(404,
                "ParentResourceNotFound",
                format!("Can not perform requested operation on nested resource. Parent resource '{parent}' not found."),
            ),
            E::InvalidName { code, message } => ArmFailure::new(400, code, message.clone()),
            E::InvalidRequestContent(message) => ArmFailure::new(400, "InvalidRequestContent", message.clone()),
            E::InvalidResourceGroupLocation { existing, requested, .. } => ArmFailure::new(409,
                "InvalidResourceGroupLocation",
                format!("Invalid resource group location '{requested}'. The Resource group already exists in location '{existing}'."),
            ),
            E::UserAssignedIdentityNotFound(id) => ArmFailure::new(400,
                "FailedIdentityOperation",
                format!("Identity operation failed: the user-assigned identity '{id}' was not found."),
            ),
            E::Conflict(message) => ArmFailure::new(409, "Conflict", message.clone()),
            E::NotFound => ArmFailure::new(404,
                "ResourceNotFound",
                "The resource was not found.",
            ),
            E::BadRequest(message) => {
                ArmFailure::new(400, "InvalidRequestContent", message.clone())
            }
            E::Store(StoreError::AlreadyExists) => ArmFailure::new(409,
                "Conflict",
                "The resource already exists.",
            ),
            // The database is down or unreachable: a fault to retry, not a request's; the server
            // adds `Retry-After`, which azure-core's and the Azure CLI's retry policies wait out.
            E::Store(StoreError::Unavailable(_)) => ArmFailure::new(503,
                "ServiceUnavailable",
                "The service is temporarily unavailable: its database cannot be reached. Please retry the request later.",
            ),
            E::Store(StoreError::StorageFull(_)) => ArmFailure::new(503,
                "ServiceUnavailable",
                "The service cannot store the request: its database's disk is full. Nothing of the request was kept; retry it once there is room.",
            ),
            E::InvalidResourceReference(message) => {
                ArmFailure::new(400, "InvalidResourceReference", message.clone())
            }
            E::Template { code, message } => ArmFailure::new(400, code, message.clone()),
            E::DeploymentNotFound(name) => ArmFailure::new(
                404,
                "DeploymentNotFound",
                format!("Deployment '{name}' could not be found."),
            ),
            E::DeploymentActive(name) => ArmFailure::new(
                409,
                "DeploymentActive",
                format!("The deployment '{name}' cannot be saved, because this would overwrite an existing deployment which is still active."),
            ),
            E::Arm(failure) => (**failure).clone(),
            _ => return None,
        };
        Some(failure)
    }
}

/// ARM's time format in token errors: `5/1/2024 10:11:12 AM`.
fn arm_time(epoch: i64) -> String {
    let format = time::format_description::parse_borrowed::<2>("[month padding:none]/[day padding:none]/[year] [hour repr:12 padding:none]:[minute]:[second] [period]")
        .unwrap_or_default();
    time::OffsetDateTime::from_unix_timestamp(epoch)
        .ok()
        .and_then(|time| time.format(&format).ok())
        .unwrap_or_default()
}
