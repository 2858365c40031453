//! Who may do what on a Cosmos DB account's data plane (issue 17, research/protocols.md §5.2):
//! account keys (`type=master`, the HMAC the SDKs compute; refused when `disableLocalAuth` is
//! set) and Entra tokens (`type=aad`) checked against the account's `sqlRoleAssignments`, as
//! Cosmos evaluates them: an assignment at the account, a database or a container covers what is
//! below it, and its role's `dataActions` (with `*` wildcards) must name the action.
//!
//! An account's state (keys opened, assignments with their compiled actions) is cached by account
//! name and dropped with the read cache, so a new or revoked assignment applies to the next
//! request, on every server within a poll interval.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aws_lc_rs::hmac;
use base64::Engine as _;
use openmi_model::arm::resource_key;
use openmi_model::ObjectId;
use openmi_rbac::ActionPattern;
use serde_json::Value;

use crate::cosmos::{is_within, ACCOUNT_TYPE, ROLE_ASSIGNMENT_TYPE, ROLE_DEFINITION_TYPE};
use crate::{Engine, EngineError};

/// One data-plane role assignment, compiled.
#[derive(Debug)]
struct DataAssignment {
    principal: ObjectId,
    /// Lower-cased full scope (`{account id}[/dbs/{db}[/colls/{c}]]`).
    scope: String,
    actions: Vec<ActionPattern>,
}

/// What the data plane needs of an account.
#[derive(Debug)]
pub struct CosmosAccount {
    pub id: String,
    pub key: String,
    pub name: String,
    pub disable_local_auth: bool,
    /// Primary, secondary (read-write), then the two read-only keys, decoded.
    keys: Vec<(Vec<u8>, bool)>,
    assignments: Vec<DataAssignment>,
}

/// Who a data-plane request comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CosmosCaller {
    /// An account key; `read_only` for the two read-only keys.
    Key { read_only: bool },
    /// An Entra principal (its token's `oid`).
    Principal(ObjectId),
}

/// Cached account states by lower-cased name.
#[derive(Debug, Default)]
pub(crate) struct CosmosCache {
    accounts: Mutex<HashMap<String, Arc<CosmosAccount>>>,
    /// Containers as the data plane reads them, with the record `Arc` each was parsed from (the
    /// read cache hands out a new `Arc` when the record changes, so a match means the same version).
    pub(crate) containers: Mutex<HashMap<String, crate::cosmos_data::ParsedContainer>>,
}

impl CosmosCache {
    /// Accounts and containers cached (for `/metrics`).
    pub(crate) fn sizes(&self) -> (usize, usize) {
        let accounts = self.accounts.lock().map(|entries| entries.len());
        let containers = self.containers.lock().map(|entries| entries.len());
        (accounts.unwrap_or(0), containers.unwrap_or(0))
    }

    pub(crate) fn clear(&self) {
        if let Ok(mut accounts) = self.accounts.lock() {
            accounts.clear();
        }
        if let Ok(mut containers) = self.containers.lock() {
            containers.clear();
        }
    }
}

/// The string the SDKs sign with an account key (Cosmos "Access control on resources"):
/// `verb\nresourceType\nresourceLink\ndate\n\n`, verb, type and date lower-cased.
pub fn string_to_sign(verb: &str, resource_type: &str, resource_link: &str, date: &str) -> String {
    format!(
        "{}\n{}\n{}\n{}\n\n",
        verb.to_lowercase(),
        resource_type.to_lowercase(),
        resource_link,
        date.to_lowercase()
    )
}

/// A data-plane failure in Cosmos's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CosmosFailure {
    pub status: u16,
    pub substatus: u32,
    pub code: &'static str,
    pub message: String,
}

impl CosmosFailure {
    pub fn new(
        status: u16,
        substatus: u32,
        code: &'static str,
        message: impl Into<String>,
    ) -> CosmosFailure {
        CosmosFailure {
            status,
            substatus,
            code,
            message: message.into(),
        }
    }

    fn unauthorized(message: impl Into<String>) -> CosmosFailure {
        CosmosFailure::new(401, 0, "Unauthorized", message)
    }
}

impl Engine {
    /// Drops the cached state of every account (their keys or assignments changed).
    pub(crate) fn forget_cosmos_account(&self, _account_id: &str) {
        self.inner.read_cache.clear_cosmos();
    }

    /// The account named `name` (account names are unique in the subscription).
    pub async fn cosmos_account(&self, name: &str) -> Result<Arc<CosmosAccount>, CosmosFailure> {
        let lower = name.to_lowercase();
        if let Some(found) = self
            .inner
            .read_cache
            .cosmos()
            .accounts
            .lock()
            .ok()
            .and_then(|a| a.get(&lower).cloned())
        {
            return Ok(found);
        }
        let generation = self.inner.read_cache.generation();
        let loaded = Arc::new(self.load_cosmos_account(&lower).await?);
        if self.inner.read_cache.generation() == generation {
            if let Ok(mut accounts) = self.inner.read_cache.cosmos().accounts.lock() {
                accounts.insert(lower, loaded.clone());
            }
        }
        Ok(loaded)
    }

    async fn load_cosmos_account(&self, name: &str) -> Result<CosmosAccount, CosmosFailure> {
        let internal = |error: EngineError| {
            tracing::error!(error = %error, "cosmos account load failed");
            CosmosFailure::new(500, 0, "InternalServerError", "An internal error occurred.")
        };
        let record = self
            .store()
            .resources_of_type(&self.inner.subscription_id, &ACCOUNT_TYPE.to_lowercase())
            .await
            .map_err(|error| internal(error.into()))?
            .into_iter()
            .find(|record| record.name.eq_ignore_ascii_case(name))
            .ok_or_else(|| {
                CosmosFailure::new(
                    404,
                    0,
                    "NotFound",
                    format!("The database account '{name}' does not exist."),
                )
            })?;
        let document: Value = serde_json::from_str(&record.body)
            .map_err(|_| internal(EngineError::Internal("EN0605 damaged account".into())))?;
        let keys = self.cosmos_keys(&record.id).await.map_err(internal)?;
        let decoded = |field: &str| {
            base64::engine::general_purpose::STANDARD
                .decode(keys[field].as_str().unwrap_or_default())
                .unwrap_or_default()
        };
        let mut definitions: HashMap<String, Vec<ActionPattern>> = HashMap::new();
        let mut raw_assignments = Vec::new();
        for child in self
            .store()
            .resource_children(&record.key)
            .await
            .map_err(|error| internal(error.into()))?
        {
            let body: Value = serde_json::from_str(&child.body).unwrap_or_default();
            if child.type_key == ROLE_DEFINITION_TYPE.to_lowercase() {
                let actions = body
                    .pointer("/properties/permissions")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .flat_map(|permission| {
                        permission
                            .get("dataActions")
                            .and_then(Value::as_array)
                            .cloned()
                            .unwrap_or_default()
                    })
                    .filter_map(|action| action.as_str().map(ActionPattern::new))
                    .collect();
                definitions.insert(child.key.clone(), actions);
            } else if child.type_key == ROLE_ASSIGNMENT_TYPE.to_lowercase() {
                raw_assignments.push(body);
            }
        }
        let assignments = raw_assignments
            .iter()
            .filter_map(|body| {
                let principal = body
                    .pointer("/properties/principalId")?
                    .as_str()?
                    .parse()
                    .ok()?;
                let role = resource_key(body.pointer("/properties/roleDefinitionId")?.as_str()?);
                let scope = body.pointer("/properties/scope")?.as_str()?.to_lowercase();
                let actions = definitions.get(&role)?.to_vec();
                Some(DataAssignment {
                    principal,
                    scope,
                    actions,
                })
            })
            .collect();
        Ok(CosmosAccount {
            id: record.id.clone(),
            key: record.key.clone(),
            name: record.name.clone(),
            disable_local_auth: document
                .pointer("/properties/disableLocalAuth")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            keys: vec![
                (decoded("primaryMasterKey"), false),
                (decoded("secondaryMasterKey"), false),
                (decoded("primaryReadonlyMasterKey"), true),
                (decoded("secondaryReadonlyMasterKey"), true),
            ],
            assignments,
        })
    }

    /// Authenticates a data-plane request from its `Authorization` header (URL-encoded or not)
    /// and what it signs (verb, resource type, resource link, `x-ms-date`).
    pub fn cosmos_authenticate(
        &self,
        account: &CosmosAccount,
        authorization: &str,
        verb: &str,
        resource_type: &str,
        resource_link: &str,
        date: &str,
    ) -> Result<CosmosCaller, CosmosFailure> {
        let decoded = percent_decode(authorization);
        let mut kind = "";
        let mut signature = "";
        for part in decoded.split('&') {
            if let Some(value) = part.strip_prefix("type=") {
                kind = value;
            } else if let Some(value) = part.strip_prefix("sig=") {
                signature = value;
            }
        }
        match kind {
            "master" => {
                if account.disable_local_auth {
                    return Err(CosmosFailure::new(
                        401,
                        5407,
                        "Unauthorized",
                        "Local Authorization is disabled. Use an AAD token to authorize all requests.",
                    ));
                }
                let payload = string_to_sign(verb, resource_type, resource_link, date);
                for (key, read_only) in &account.keys {
                    let mac = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), payload.as_bytes());
                    let expected = base64::engine::general_purpose::STANDARD.encode(mac.as_ref());
                    if constant_time_eq(expected.as_bytes(), signature.as_bytes()) {
                        return Ok(CosmosCaller::Key { read_only: *read_only });
                    }
                }
                Err(CosmosFailure::unauthorized(format!(
                    "The input authorization token can't serve the request. The wrong key is being used or the expected payload is not built as per the protocol. For more info: https://aka.ms/cosmosdb-tsg-mac-token. Server used the following payload to sign: '{}'",
                    payload.replace('\n', "\\n")
                )))
            }
            "aad" => {
                let caller = self
                    .authenticate(signature, &|audience| self.accepts_cosmos_audience(audience))
                    .map_err(|error| CosmosFailure::unauthorized(format!("The input authorization token can't serve the request: {error}.")))?;
                Ok(CosmosCaller::Principal(caller.object_id))
            }
            "" => Err(CosmosFailure::unauthorized("Required Header authorization is missing. Ensure a valid Authorization token is passed.")),
            other => Err(CosmosFailure::unauthorized(format!("The authorization type '{other}' is not supported."))),
        }
    }

    /// Audiences a data-plane token may carry: Cosmos's own (`https://cosmos.azure.com`, any
    /// `https://{account}.documents.azure.com`) and the server's hosts without a port (the SDKs
    /// build the scope from the account URL's scheme and host only).
    ///
    /// An account's own endpoint (`{server}/cosmos/{account}`, what @azure/cosmos asks a scope
    /// for first: its `ClientContext` builds it from the whole endpoint URL) is accepted too, as
    /// Azure accepts `https://{account}.documents.azure.com`.
    pub(crate) fn accepts_cosmos_audience(&self, audience: &str) -> bool {
        let audience = audience.trim_end_matches('/').to_lowercase();
        let audience = match audience.rsplit_once("/cosmos/") {
            Some((server, account)) if !account.is_empty() && !account.contains('/') => {
                server.to_string()
            }
            _ => audience,
        };
        audience == "https://cosmos.azure.com"
            || (audience.starts_with("https://") && audience.ends_with(".documents.azure.com"))
            || self.config().own_resources.iter().any(|own| {
                let own = own.to_lowercase();
                let host_only = own
                    .rsplit_once(':')
                    .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
                    .map(|(host, _)| host.to_string())
                    .unwrap_or(own.clone());
                audience == own || audience == host_only
            })
    }

    /// Whether `caller` may perform data action `action` (`readMetadata`, `…/items/create`, …)
    /// on `resource` (`/`, `/dbs/db`, `/dbs/db/colls/c`). Keys may do everything, read-only keys
    /// only reads; principals what their assignments grant. The denial is Cosmos's 403/5301.
    pub fn cosmos_authorize(
        &self,
        account: &CosmosAccount,
        caller: &CosmosCaller,
        action: &str,
        resource: &str,
        writes: bool,
    ) -> Result<(), CosmosFailure> {
        let full_action = format!("Microsoft.DocumentDB/databaseAccounts/{action}");
        match caller {
            CosmosCaller::Key { read_only } => {
                if *read_only && writes {
                    Err(CosmosFailure::new(403, 0, "Forbidden", "Request is blocked because the read-only key cannot perform write operations."))
                } else {
                    Ok(())
                }
            }
            CosmosCaller::Principal(principal) => {
                let target = if resource == "/" {
                    account.id.to_lowercase()
                } else {
                    format!(
                        "{}{}",
                        account.id.to_lowercase(),
                        resource.trim_end_matches('/').to_lowercase()
                    )
                };
                if account.grants(*principal, &full_action, Some(&target)) {
                    Ok(())
                } else {
                    Err(CosmosFailure::new(
                        403,
                        5301,
                        "Forbidden",
                        format!("Request blocked by Auth {} : Request is blocked because principal [{principal}] does not have required RBAC permissions to perform action [{full_action}] on resource [{resource}]. Learn more: https://aka.ms/cosmos-native-rbac.", account.name),
                    ))
                }
            }
        }
    }
}

impl Engine {
    /// Whether `caller` holds data action `action` at some scope of the account (the account read
    /// of `GET /`); the denial names the account, as Cosmos's does.
    pub(crate) fn cosmos_authorize_somewhere(
        &self,
        account: &CosmosAccount,
        caller: &CosmosCaller,
        action: &str,
    ) -> Result<(), CosmosFailure> {
        match caller {
            CosmosCaller::Principal(principal)
                if account.grants(
                    *principal,
                    &format!("Microsoft.DocumentDB/databaseAccounts/{action}"),
                    None,
                ) =>
            {
                Ok(())
            }
            _ => self.cosmos_authorize(account, caller, action, "/", false),
        }
    }
}

impl CosmosAccount {
    /// Whether `principal` holds `action` (a full data action name) through an assignment whose
    /// scope contains `target` (a full scope, lower-case), or at any scope when `target` is `None`.
    fn grants(&self, principal: ObjectId, action: &str, target: Option<&str>) -> bool {
        let action = action.to_lowercase();
        self.assignments.iter().any(|assignment| {
            assignment.principal == principal
                && target.is_none_or(|target| is_within(target, &assignment.scope))
                && assignment
                    .actions
                    .iter()
                    .any(|pattern| pattern.matches(&action))
        })
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' && index + 2 < bytes.len() {
            if let Ok(value) = u8::from_str_radix(&text[index + 1..index + 3], 16) {
                out.push(value);
                index += 3;
                continue;
            }
        }
        out.push(bytes[index]);
        index += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signed_string_is_cosmoss() {
        assert_eq!(
            string_to_sign(
                "GET",
                "dbs",
                "dbs/ToDoList",
                "Thu, 27 Apr 2017 00:51:12 GMT"
            ),
            "get\ndbs\ndbs/ToDoList\nthu, 27 apr 2017 00:51:12 gmt\n\n"
        );
        assert_eq!(
            percent_decode("type%3Dmaster%26ver%3D1.0%26sig%3Dab%2Bc%3D"),
            "type=master&ver=1.0&sig=ab+c="
        );
        assert!(constant_time_eq(b"abc", b"abc") && !constant_time_eq(b"abc", b"abd"));
    }
}
