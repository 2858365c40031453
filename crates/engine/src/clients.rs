//! Caches of the token hot paths: token clients (principal, credentials, parsed certificates)
//! and verified bearer tokens.
//!
//! The client-credentials grant is the hot path of the token service; reading the principal and
//! its credentials from the store on every request costs more than signing. Entries live for
//! `CLIENT_CACHE_TTL`, and local writes drop the entry at once, so a credential change reaches
//! this server immediately and other servers sharing the database within that TTL.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openmi_model::directory::{ClientCredential, CredentialKind};
use openmi_model::{ClientId, Principal};
use openmi_token::ExternalKey;

use crate::{Caller, Engine, EngineError};

/// How long a cached client stays valid.
pub(crate) const CLIENT_CACHE_TTL: Duration = Duration::from_secs(1);
/// Beyond this many entries the cache starts over (bounded memory under a flood of client ids).
const CLIENT_CACHE_CAPACITY: usize = 100_000;

/// A client as the token grants need it.
pub(crate) struct ClientEntry {
    pub(crate) principal: Principal,
    pub(crate) credentials: Vec<ClientCredential>,
    /// Parsed certificates of the certificate credentials (same order, certificates only).
    pub(crate) certificates: Vec<ExternalKey>,
}

/// The cache itself.
#[derive(Debug, Default)]
pub(crate) struct ClientCache {
    entries: Mutex<HashMap<ClientId, (Instant, Arc<ClientEntry>)>>,
}

impl std::fmt::Debug for ClientEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientEntry")
            .field("principal", &self.principal.object_id)
            .finish()
    }
}

impl ClientCache {
    pub(crate) fn len(&self) -> usize {
        self.entries
            .lock()
            .map(|entries| entries.len())
            .unwrap_or(0)
    }

    fn get(&self, client_id: ClientId) -> Option<Arc<ClientEntry>> {
        let entries = self.entries.lock().ok()?;
        let (loaded, entry) = entries.get(&client_id)?;
        (loaded.elapsed() < CLIENT_CACHE_TTL).then(|| entry.clone())
    }

    fn put(&self, client_id: ClientId, entry: Arc<ClientEntry>) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= CLIENT_CACHE_CAPACITY {
                entries.clear();
            }
            entries.insert(client_id, (Instant::now(), entry));
        }
    }

    /// Drops a client after a local write.
    pub(crate) fn forget(&self, client_id: Option<ClientId>) {
        if let (Some(client_id), Ok(mut entries)) = (client_id, self.entries.lock()) {
            entries.remove(&client_id);
        }
    }
}

impl Engine {
    /// The client `client_id` of `tenant`, from the cache or the store.
    pub(crate) async fn client_entry(
        &self,
        tenant: &openmi_model::directory::Tenant,
        client_id: &str,
    ) -> Result<Arc<ClientEntry>, EngineError> {
        let not_found = || EngineError::ApplicationNotFound {
            client_id: client_id.to_string(),
        };
        let parsed: ClientId = client_id.parse().map_err(|_| not_found())?;
        if let Some(entry) = self.inner.clients.get(parsed) {
            return Ok(entry);
        }
        let principal = self
            .store()
            .principal_by_client_id(tenant.id, parsed)
            .await?
            .ok_or_else(not_found)?;
        let credentials = self.store().credentials(principal.object_id).await?;
        let certificates = credentials
            .iter()
            .filter_map(|credential| match &credential.kind {
                CredentialKind::Certificate { cert_der, .. } => {
                    ExternalKey::from_certificate_der(cert_der).ok()
                }
                CredentialKind::Secret { .. } => None,
            })
            .collect();
        let entry = Arc::new(ClientEntry {
            principal,
            credentials,
            certificates,
        });
        self.inner.clients.put(parsed, entry.clone());
        Ok(entry)
    }
}

/// Bearer tokens that verified, with their caller and normalised audience, until they expire.
#[derive(Debug, Default)]
pub(crate) struct BearerCache {
    entries: Mutex<HashMap<String, (Caller, String)>>,
}

impl BearerCache {
    pub(crate) fn len(&self) -> usize {
        self.entries
            .lock()
            .map(|entries| entries.len())
            .unwrap_or(0)
    }

    pub(crate) fn get(&self, token: &str) -> Option<(Caller, String)> {
        self.entries.lock().ok()?.get(token).cloned()
    }

    pub(crate) fn put(&self, token: &str, verified: (Caller, String)) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= CLIENT_CACHE_CAPACITY {
                entries.clear();
            }
            entries.insert(token.to_string(), verified);
        }
    }
}

/// Verified agent assertions with their agent and expiry, and the (immutable) client ids of
/// principals: the agent token path then needs no signature check and no principal read per
/// request.
#[derive(Debug, Default)]
pub(crate) struct AgentCache {
    assertions: Mutex<HashMap<String, (crate::AgentCaller, i64)>>,
    client_ids: Mutex<HashMap<openmi_model::ObjectId, String>>,
    /// Per VM key: the record (as the read cache handed it out) and its parsed identities.
    vm_identities: Mutex<HashMap<String, VmIdentities>>,
}

type VmIdentities = (
    std::sync::Arc<openmi_store::ResourceRecord>,
    std::sync::Arc<Vec<crate::agent::VmIdentity>>,
);

impl AgentCache {
    /// Assertions and VMs' identities cached (for `/metrics`).
    pub(crate) fn sizes(&self) -> (usize, usize) {
        let assertions = self.assertions.lock().map(|entries| entries.len());
        let vm_identities = self.vm_identities.lock().map(|entries| entries.len());
        (assertions.unwrap_or(0), vm_identities.unwrap_or(0))
    }

    pub(crate) fn assertion(&self, assertion: &str, now: i64) -> Option<crate::AgentCaller> {
        let entries = self.assertions.lock().ok()?;
        let (agent, expires_at) = entries.get(assertion)?;
        (now <= *expires_at).then(|| agent.clone())
    }

    pub(crate) fn remember_assertion(
        &self,
        assertion: &str,
        agent: crate::AgentCaller,
        expires_at: i64,
    ) {
        if let Ok(mut entries) = self.assertions.lock() {
            if entries.len() >= CLIENT_CACHE_CAPACITY {
                entries.clear();
            }
            entries.insert(assertion.to_string(), (agent, expires_at));
        }
    }

    pub(crate) fn client_id(&self, object_id: openmi_model::ObjectId) -> Option<String> {
        self.client_ids.lock().ok()?.get(&object_id).cloned()
    }

    /// The identities parsed from `record`, if they were parsed from this very record.
    pub(crate) fn vm_identities(
        &self,
        vm_key: &str,
        record: &std::sync::Arc<openmi_store::ResourceRecord>,
    ) -> Option<std::sync::Arc<Vec<crate::agent::VmIdentity>>> {
        let entries = self.vm_identities.lock().ok()?;
        let (parsed_from, identities) = entries.get(vm_key)?;
        std::sync::Arc::ptr_eq(parsed_from, record).then(|| identities.clone())
    }

    pub(crate) fn remember_vm_identities(
        &self,
        vm_key: &str,
        record: std::sync::Arc<openmi_store::ResourceRecord>,
        identities: std::sync::Arc<Vec<crate::agent::VmIdentity>>,
    ) {
        if let Ok(mut entries) = self.vm_identities.lock() {
            if entries.len() >= CLIENT_CACHE_CAPACITY {
                entries.clear();
            }
            entries.insert(vm_key.to_string(), (record, identities));
        }
    }

    pub(crate) fn remember_client_id(&self, object_id: openmi_model::ObjectId, client_id: String) {
        if let Ok(mut entries) = self.client_ids.lock() {
            if entries.len() >= CLIENT_CACHE_CAPACITY {
                entries.clear();
            }
            entries.insert(object_id, client_id);
        }
    }
}
