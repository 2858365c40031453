//! The server side of the agent protocol (`docs/design/agent-protocol.md`): join tokens,
//! enrolment, agent authentication, managed-identity tokens for the identities a VM has *now*,
//! and the instance document the agent watches for changes.
//!
//! A managed identity's token is only ever minted here, for an authenticated agent whose VM holds
//! that identity at the moment of the request; managed identities have no other credential.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use openmi_model::arm::{resource_key, ArmPath, VIRTUAL_MACHINE_TYPE, VM_EXTENSION_TYPE};
use openmi_model::ObjectId;
use openmi_store::{AgentRecord, ResourceRecord, StoreError};
use openmi_token::jwt::{self, TokenFormat};
use openmi_token::AccessTokenClaims;
use serde_json::{json, Value};

use crate::{Caller, Engine, EngineError};

/// The audience of agent assertions.
pub const AGENT_AUDIENCE: &str = "openmi-agent";

/// A new join token, shown once.
#[derive(Clone)]
pub struct JoinToken {
    pub token: String,
    pub expires_at: i64,
    pub vm_resource_id: String,
}

impl std::fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinToken")
            .field("vm_resource_id", &self.vm_resource_id)
            .finish()
    }
}

/// An authenticated agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentCaller {
    pub agent_id: String,
    pub vm_key: String,
}

/// Which identity a token request asks for (at most one selector).
#[derive(Debug, Clone, Default)]
pub struct IdentitySelector {
    pub client_id: Option<String>,
    pub object_id: Option<String>,
    pub msi_res_id: Option<String>,
}

/// A managed-identity token and the identity it is for.
#[derive(Clone)]
pub struct ManagedIdentityToken {
    pub access_token: String,
    pub resource: String,
    pub expires_in: i64,
    pub expires_on: i64,
    pub not_before: i64,
    pub client_id: String,
    pub object_id: String,
    pub msi_res_id: String,
}

impl std::fmt::Debug for ManagedIdentityToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagedIdentityToken")
            .field("client_id", &self.client_id)
            .field("resource", &self.resource)
            .finish()
    }
}

/// One identity of a VM: (principal id, client id, `xms_mirid`).
#[derive(Debug)]
pub(crate) struct VmIdentity {
    principal_id: String,
    client_id: String,
    mirid: String,
    system: bool,
}

const MIN_JOIN_TOKEN_LIFETIME: i64 = 60;
const MAX_JOIN_TOKEN_LIFETIME: i64 = 86400;
/// Longest accepted lifetime of an agent assertion.
const MAX_ASSERTION_LIFETIME: i64 = 600;

impl Engine {
    /// `POST {vm id}/generateJoinToken`: a one-time token that enrols one agent for the VM.
    pub async fn generate_join_token(
        &self,
        caller: &Caller,
        vm: &ArmPath,
        expires_in: i64,
    ) -> Result<JoinToken, EngineError> {
        let vm_id = vm.to_id();
        self.authorize(caller, &format!("{VIRTUAL_MACHINE_TYPE}/write"), &vm_id)?;
        let document = self.resource_get(caller, vm).await?;
        if !document
            .get("type")
            .and_then(Value::as_str)
            .is_some_and(|kind| kind.eq_ignore_ascii_case(VIRTUAL_MACHINE_TYPE))
        {
            return Err(EngineError::InvalidRequestContent(
                "Join tokens are issued for virtual machines only.".to_string(),
            ));
        }
        if !(MIN_JOIN_TOKEN_LIFETIME..=MAX_JOIN_TOKEN_LIFETIME).contains(&expires_in) {
            return Err(EngineError::InvalidRequestContent(format!("expiresIn must be between {MIN_JOIN_TOKEN_LIFETIME} and {MAX_JOIN_TOKEN_LIFETIME} seconds.")));
        }
        let mut bytes = [0u8; 32];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| EngineError::Internal("EN0502 random generator failed".to_string()))?;
        let token = URL_SAFE_NO_PAD.encode(bytes);
        let now = self.now();
        let canonical = document
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or(&vm_id)
            .to_string();
        self.store()
            .insert_join_token(
                &self.inner.kek.hash_client_secret(&token),
                &resource_key(&canonical),
                now + expires_in,
                now,
                Some(caller.object_id.to_string()),
            )
            .await?;
        Ok(JoinToken {
            token,
            expires_at: now + expires_in,
            vm_resource_id: canonical,
        })
    }

    /// `POST /openmi/agent/enroll`: consumes the join token, registers the agent's public key.
    pub async fn enroll_agent(
        &self,
        join_token: &str,
        public_key_b64: &str,
    ) -> Result<(String, String), EngineError> {
        let der = STANDARD
            .decode(public_key_b64.trim())
            .map_err(|_| EngineError::BadRequest("publicKey must be base64 DER".to_string()))?;
        jwt::es256_public_key(&der).map_err(|_| {
            EngineError::BadRequest(
                "publicKey must be an EC P-256 SubjectPublicKeyInfo".to_string(),
            )
        })?;
        let agent = AgentRecord {
            agent_id: uuid::Uuid::new_v4().to_string(),
            vm_key: String::new(),
            public_key: STANDARD.encode(&der),
            created_at: self.now(),
        };
        let vm_key = match self
            .store()
            .enroll_agent(
                &self.inner.kek.hash_client_secret(join_token.trim()),
                self.now(),
                &agent,
            )
            .await
        {
            Ok(vm_key) => vm_key,
            Err(StoreError::NotFound) => return Err(EngineError::InvalidJoinToken),
            Err(other) => return Err(other.into()),
        };
        let vm = self
            .store()
            .resource(&vm_key)
            .await?
            .ok_or(EngineError::InvalidJoinToken)?;
        Ok((agent.agent_id, vm.id))
    }

    /// Authenticates an agent's ES256 assertion (`Authorization: Agent <jws>`).
    pub async fn authenticate_agent(&self, assertion: &str) -> Result<AgentCaller, EngineError> {
        if let Some(agent) = self.inner.agents.assertion(assertion, self.now()) {
            return Ok(agent);
        }
        let agent = self
            .verify_agent_assertion(assertion)
            .await
            .inspect_err(|error| {
                self.stats()
                    .count_failure(crate::GrantKind::ManagedIdentity, error);
                self.audit_sign_in(
                    crate::audit::SignInEvent {
                        grant: "managed_identity",
                        event_type: "managedIdentity",
                        ..Default::default()
                    },
                    Some(error),
                );
            })?;
        Ok(agent)
    }

    /// Verifies an assertion against the enrolled key and remembers it until it expires.
    async fn verify_agent_assertion(&self, assertion: &str) -> Result<AgentCaller, EngineError> {
        let unverified = jwt::decode_unverified(assertion)
            .map_err(|_| EngineError::InvalidAgent("the assertion is not a JWT".to_string()))?;
        let agent_id = unverified
            .header_str("kid")
            .unwrap_or_default()
            .to_lowercase();
        let agent = self.store().agent(&agent_id).await?.ok_or_else(|| {
            EngineError::InvalidAgent(
                "the agent is not enrolled (or its VM was deleted)".to_string(),
            )
        })?;
        let der = STANDARD
            .decode(&agent.public_key)
            .map_err(|_| EngineError::Internal("EN0503 stored agent key".to_string()))?;
        let key = jwt::es256_public_key(&der)
            .map_err(|_| EngineError::Internal("EN0504 stored agent key".to_string()))?;
        let now = self.now();
        let verified = unverified
            .verify_es256(&key, now, 300)
            .map_err(|error| EngineError::InvalidAgent(error.to_string()))?;
        let claim = |name: &str| {
            verified
                .claims
                .get(name)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_lowercase()
        };
        let iat = verified
            .claims
            .get("iat")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let exp = verified
            .claims
            .get("exp")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if claim("iss") != agent_id
            || claim("sub") != agent_id
            || claim("aud") != AGENT_AUDIENCE
            || exp - iat > MAX_ASSERTION_LIFETIME
            || iat > now + 300
        {
            return Err(EngineError::InvalidAgent(
                "the assertion's iss, sub, aud, iat or exp are not acceptable".to_string(),
            ));
        }
        let caller = AgentCaller {
            agent_id,
            vm_key: agent.vm_key,
        };
        // Entra-style skew: an assertion is accepted up to five minutes past its exp.
        self.inner
            .agents
            .remember_assertion(assertion, caller.clone(), exp + 300);
        Ok(caller)
    }

    /// The agent's VM record as it is now.
    async fn agent_vm_record(
        &self,
        agent: &AgentCaller,
    ) -> Result<std::sync::Arc<ResourceRecord>, EngineError> {
        self.cached_resource(&agent.vm_key)
            .await?
            .ok_or_else(|| EngineError::InvalidAgent("the agent's VM no longer exists".to_string()))
    }

    async fn agent_vm(
        &self,
        agent: &AgentCaller,
    ) -> Result<(std::sync::Arc<ResourceRecord>, Value), EngineError> {
        let record = self.agent_vm_record(agent).await?;
        let document = Self::parse_document(&record)?;
        Ok((record, document))
    }

    /// The identities of the agent's VM as it is now. Parsed once per version of the VM record:
    /// the read cache hands out the same `Arc` until the record changes, so a mint that finds
    /// its record in the agent cache reuses the parsed list.
    async fn agent_vm_identities(
        &self,
        agent: &AgentCaller,
    ) -> Result<std::sync::Arc<Vec<VmIdentity>>, EngineError> {
        let record = self.agent_vm_record(agent).await?;
        if let Some(identities) = self.inner.agents.vm_identities(&agent.vm_key, &record) {
            return Ok(identities);
        }
        let document = Self::parse_document(&record)?;
        let mut identities = self.vm_identities(&record.id, &document);
        // The system identity's client id lives on its principal.
        for identity in identities.iter_mut().filter(|identity| identity.system) {
            if let Ok(object_id) = identity.principal_id.parse::<ObjectId>() {
                if let Some(client_id) = self.inner.agents.client_id(object_id) {
                    identity.client_id = client_id;
                } else if let Some(principal) = self.store().principal(object_id).await? {
                    identity.client_id = principal
                        .client_id
                        .map(|id| id.to_string())
                        .unwrap_or_default();
                    self.inner
                        .agents
                        .remember_client_id(object_id, identity.client_id.clone());
                }
            }
        }
        let identities = std::sync::Arc::new(identities);
        self.inner
            .agents
            .remember_vm_identities(&agent.vm_key, record, identities.clone());
        Ok(identities)
    }

    fn vm_identities(&self, vm_id: &str, document: &Value) -> Vec<VmIdentity> {
        let mut identities = Vec::new();
        if let Some(principal) = document
            .pointer("/identity/principalId")
            .and_then(Value::as_str)
        {
            identities.push(VmIdentity {
                principal_id: principal.to_string(),
                client_id: String::new(),
                mirid: vm_id.to_string(),
                system: true,
            });
        }
        if let Some(map) = document
            .pointer("/identity/userAssignedIdentities")
            .and_then(Value::as_object)
        {
            for (id, value) in map {
                let field = |name: &str| {
                    value
                        .get(name)
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string()
                };
                identities.push(VmIdentity {
                    principal_id: field("principalId"),
                    client_id: field("clientId"),
                    mirid: id.clone(),
                    system: false,
                });
            }
        }
        identities
    }

    /// `POST /openmi/agent/token`: a token for an identity the agent's VM has now; recorded in
    /// the sign-in log either way.
    pub async fn agent_token(
        &self,
        agent: &AgentCaller,
        resource: &str,
        selector: &IdentitySelector,
        issuer_base: &str,
    ) -> Result<ManagedIdentityToken, EngineError> {
        let result = self
            .mint_agent_token(agent, resource, selector, issuer_base)
            .await;
        let mut event = crate::audit::SignInEvent {
            grant: "managed_identity",
            event_type: "managedIdentity",
            resource: Some(resource.to_string()),
            vm_id: Some(agent.vm_key.clone()),
            ..Default::default()
        };
        match &result {
            Ok(token) => {
                event.principal_id = Some(token.object_id.clone());
                event.app_id = Some(token.client_id.clone());
                event.identity_resource_id = Some(token.msi_res_id.clone());
                self.audit_sign_in(event, None);
            }
            Err(error) => {
                event.app_id = selector.client_id.clone();
                event.principal_id = selector.object_id.clone();
                event.identity_resource_id = selector.msi_res_id.clone();
                self.audit_sign_in(event, Some(error));
            }
        }
        result
    }

    async fn mint_agent_token(
        &self,
        agent: &AgentCaller,
        resource: &str,
        selector: &IdentitySelector,
        issuer_base: &str,
    ) -> Result<ManagedIdentityToken, EngineError> {
        let given = [
            &selector.client_id,
            &selector.object_id,
            &selector.msi_res_id,
        ]
        .iter()
        .filter(|value| value.is_some())
        .count();
        if given > 1 {
            return Err(EngineError::BadRequest(
                "Only one of client_id, object_id and msi_res_id may be given.".to_string(),
            ));
        }
        if resource.trim().is_empty() {
            return Err(EngineError::MissingParameter("resource"));
        }
        let identities = self.agent_vm_identities(agent).await?;
        let matches = |identity: &&VmIdentity| match (
            &selector.client_id,
            &selector.object_id,
            &selector.msi_res_id,
        ) {
            (Some(client_id), _, _) => identity.client_id.eq_ignore_ascii_case(client_id),
            (_, Some(object_id), _) => identity.principal_id.eq_ignore_ascii_case(object_id),
            (_, _, Some(resource_id)) => resource_key(&identity.mirid) == resource_key(resource_id),
            _ => true,
        };
        let candidates: Vec<&VmIdentity> = identities.iter().filter(matches).collect();
        let chosen = if given == 0 {
            match (
                identities.iter().find(|identity| identity.system),
                candidates.as_slice(),
            ) {
                (Some(system), _) => system,
                (None, [only]) => *only,
                (None, []) => return Err(EngineError::IdentityNotFound),
                (None, _) => return Err(EngineError::AmbiguousIdentity),
            }
        } else {
            candidates
                .first()
                .copied()
                .ok_or(EngineError::IdentityNotFound)?
        };
        if !self.is_known_resource(resource) {
            return Err(EngineError::ResourcePrincipalNotFound {
                resource: resource.to_string(),
                tenant: self.tenant().id.to_string(),
            });
        }
        let now = self.now();
        let lifetime = self.config().mi_token_lifetime;
        let tenant = self.tenant().id.to_string();
        let issuer = format!("{issuer_base}/{tenant}/");
        let claims = AccessTokenClaims {
            aud: resource.to_string(),
            iss: issuer.clone(),
            iat: now,
            nbf: now,
            exp: now + lifetime,
            acr: None,
            amr: None,
            appid: Some(chosen.client_id.clone()),
            appidacr: Some("2".to_string()),
            azp: None,
            azpacr: None,
            idp: Some(issuer),
            idtyp: "app".to_string(),
            name: None,
            oid: chosen.principal_id.clone(),
            preferred_username: None,
            scp: None,
            sub: chosen.principal_id.clone(),
            tid: tenant,
            unique_name: None,
            upn: None,
            uti: {
                let mut bytes = [0u8; 16];
                SystemRandom::new().fill(&mut bytes).map_err(|_| {
                    EngineError::Internal("EN0505 random generator failed".to_string())
                })?;
                URL_SAFE_NO_PAD.encode(bytes)
            },
            ver: "1.0".to_string(),
            xms_mirid: Some(chosen.mirid.clone()),
        };
        let access_token = jwt::encode(self.key_ring().active(now)?, TokenFormat::V1, &claims)?;
        self.stats().count_minted(crate::GrantKind::ManagedIdentity);
        Ok(ManagedIdentityToken {
            access_token,
            resource: resource.to_string(),
            expires_in: lifetime,
            expires_on: now + lifetime,
            not_before: now,
            client_id: chosen.client_id.clone(),
            object_id: chosen.principal_id.clone(),
            msi_res_id: chosen.mirid.clone(),
        })
    }

    /// `GET /openmi/agent/instance`: the VM, its extensions and a version that changes with either.
    pub async fn agent_instance(&self, agent: &AgentCaller) -> Result<Value, EngineError> {
        let (record, document) = self.agent_vm(agent).await?;
        let children = self.store().resource_children(&record.key).await?;
        let mut hasher = DefaultHasher::new();
        (record.version, &record.key).hash(&mut hasher);
        let mut extensions = Vec::new();
        for child in children
            .iter()
            .filter(|child| child.type_key == VM_EXTENSION_TYPE.to_lowercase())
        {
            (child.version, &child.key).hash(&mut hasher);
            extensions.push(Self::parse_document(child)?);
        }
        let group = ArmPath::parse(&record.id)
            .ok()
            .and_then(|path| path.resource_group)
            .unwrap_or_default();
        // Invariant: the version fits in 53 bits, so JSON clients read it exactly.
        let version = (hasher.finish() >> 11) as i64;
        Ok(json!({
            "version": version,
            "vm": document,
            "extensions": extensions,
            "tenantId": self.tenant().id.to_string(),
            "subscriptionId": self.inner.subscription_id,
            "resourceGroupName": group,
        }))
    }
}
