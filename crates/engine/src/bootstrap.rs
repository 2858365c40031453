//! First start: create the tenant, subscription, admin user, bootstrap service principal and the
//! first signing key; later starts (and other replicas on the same database) join what exists.

use std::sync::{Arc, RwLock};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::Argon2;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use openmi_model::directory::{
    ClientCredential, CredentialKind, RoleAssignment, Subscription, Tenant, OWNER_ROLE_ID,
};
use openmi_model::{ClientId, ObjectId, Principal, PrincipalKind, SubscriptionId, TenantId};
use openmi_store::{BootstrapRecord, Store};
use openmi_token::{Kek, KeyRing};

use crate::keys::{load_key_ring, new_stored_key};
use crate::{
    Clock, Engine, EngineConfig, EngineError, Inner, AZURE_CLI_CLIENT_ID,
    AZURE_POWERSHELL_CLIENT_ID,
};

/// The secrets of a fresh bootstrap; shown once and written to `bootstrap.json`, never stored in clear.
#[derive(Clone)]
pub struct BootstrapSecrets {
    pub admin_username: String,
    pub admin_password: String,
    pub client_id: ClientId,
    pub client_secret: String,
}

impl std::fmt::Debug for BootstrapSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BootstrapSecrets")
            .field("admin_username", &self.admin_username)
            .field("client_id", &self.client_id)
            .finish()
    }
}

/// What `Engine::start` found.
#[derive(Debug)]
pub struct BootstrapOutcome {
    pub tenant_id: TenantId,
    pub subscription_id: SubscriptionId,
    pub subscription_name: String,
    /// `Some` only when this start created the tenant.
    pub secrets: Option<BootstrapSecrets>,
}

/// A random secret of 256 bits, base64url (43 characters).
pub(crate) fn random_secret() -> Result<String, EngineError> {
    // A secret starting with `-` reads as an option to az (`-p -abc…`), so those are drawn again
    // (1 in 32 draws; Entra's generated secrets never start with one either).
    loop {
        let mut bytes = [0u8; 32];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| EngineError::Internal("EN0101 random generator failed".to_string()))?;
        let secret = URL_SAFE_NO_PAD.encode(bytes);
        if secret.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            return Ok(secret);
        }
    }
}

/// A random password of 24 characters from letters and digits (about 143 bits).
fn random_password() -> Result<String, EngineError> {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut bytes = [0u8; 24];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| EngineError::Internal("EN0102 random generator failed".to_string()))?;
    Ok(bytes
        .iter()
        .map(|byte| ALPHABET[*byte as usize % ALPHABET.len()] as char)
        .collect())
}

/// argon2id hash (PHC string) of a human password.
pub(crate) fn hash_password(password: &str) -> Result<String, EngineError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|_| EngineError::Internal("EN0103 password hashing failed".to_string()))
}

/// The credential row of a freshly generated client secret.
pub(crate) fn secret_credential(
    kek: &Kek,
    object_id: ObjectId,
    secret: &str,
    display_name: &str,
    now: i64,
    end_at: i64,
) -> ClientCredential {
    ClientCredential {
        key_id: uuid::Uuid::new_v4().to_string(),
        object_id,
        display_name: display_name.to_string(),
        kind: CredentialKind::Secret {
            hash: kek.hash_client_secret(secret),
            hint: secret.chars().take(3).collect(),
        },
        start_at: now,
        end_at,
    }
}

fn public_client(
    tenant_id: TenantId,
    client_id: &str,
    name: &str,
    now: i64,
) -> Result<(Principal, Option<String>), EngineError> {
    Ok((
        Principal {
            object_id: ObjectId::new_random(),
            tenant_id,
            kind: PrincipalKind::ServicePrincipal,
            client_id: Some(
                client_id.parse().map_err(|_| {
                    EngineError::Internal("EN0104 bad built-in client id".to_string())
                })?,
            ),
            display_name: name.to_string(),
            user_principal_name: None,
            application_object_id: None,
            managed_by: None,
            created_at: now,
        },
        None,
    ))
}

impl Engine {
    /// Opens the engine on `store`: bootstraps an empty database, or joins a bootstrapped one.
    ///
    /// Joining needs the same KEK the database was bootstrapped with; otherwise this fails with
    /// `EngineError::KekMismatch` before anything is written.
    pub async fn start(
        store: Store,
        kek: Kek,
        clock: Arc<dyn Clock>,
        config: EngineConfig,
    ) -> Result<(Engine, BootstrapOutcome), EngineError> {
        let now = clock.now();
        let mut secrets = None;
        if store.meta("bootstrap").await?.is_none() {
            let (record, fresh) = bootstrap_record(&kek, now)?;
            if store.bootstrap(&record).await? {
                secrets = Some(fresh);
            }
        }
        let tenant: Tenant = store
            .tenants()
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| EngineError::Internal("EN0105 no tenant".to_string()))?;
        let subscription: Subscription = store
            .subscriptions()
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| EngineError::Internal("EN0106 no subscription".to_string()))?;
        let ring = load_key_ring(&store, &kek, config.max_token_lifetime).await?;
        let audit = crate::audit::AuditSink::start(
            config.audit.then(|| store.clone()),
            config.audit_retention,
        );
        let engine = Engine {
            inner: Arc::new(Inner {
                store,
                kek,
                clock,
                config,
                key_ring: RwLock::new(Arc::new(ring)),
                tenant: tenant.clone(),
                clients: Default::default(),
                bearers: Default::default(),
                rbac: Default::default(),
                read_cache: Default::default(),
                agents: Default::default(),
                stats: Default::default(),
                lockout: Default::default(),
                audit,
                subscription_id: subscription.id.to_string(),
            }),
        };
        engine.refresh_rbac(true).await?;
        engine.ensure_first_party_clients().await?;
        let outcome = BootstrapOutcome {
            tenant_id: tenant.id,
            subscription_id: subscription.id,
            subscription_name: subscription.display_name,
            secrets,
        };
        Ok((engine, outcome))
    }

    /// Re-reads the signing keys from the store (another process may have rotated them).
    pub async fn reload_keys(&self) -> Result<(), EngineError> {
        let current = self.key_ring();
        let stored = self.inner.store.signing_keys().await?;
        let unchanged = stored.len() == current.keys().len()
            && stored.iter().all(|key| current.find(&key.kid).is_some());
        if !unchanged {
            let ring: KeyRing = load_key_ring(
                &self.inner.store,
                &self.inner.kek,
                self.inner.config.max_token_lifetime,
            )
            .await?;
            self.set_key_ring(ring);
        }
        Ok(())
    }
}

fn bootstrap_record(
    kek: &Kek,
    now: i64,
) -> Result<(BootstrapRecord, BootstrapSecrets), EngineError> {
    let tenant_id = TenantId::new_random();
    let default_domain = "openmi.local".to_string();
    let subscription = Subscription {
        id: SubscriptionId::new_random(),
        tenant_id,
        display_name: "openmi subscription".to_string(),
        state: "Enabled".to_string(),
        created_at: now,
    };
    let admin_username = format!("admin@{default_domain}");
    let admin_password = random_password()?;
    let admin = Principal {
        object_id: ObjectId::new_random(),
        tenant_id,
        kind: PrincipalKind::User,
        client_id: None,
        display_name: "openmi admin".to_string(),
        user_principal_name: Some(admin_username.clone()),
        application_object_id: None,
        managed_by: None,
        created_at: now,
    };
    let client_id = ClientId::new_random();
    let client_secret = random_secret()?;
    let bootstrap_sp = Principal {
        object_id: ObjectId::new_random(),
        tenant_id,
        kind: PrincipalKind::ServicePrincipal,
        client_id: Some(client_id),
        display_name: "openmi-bootstrap".to_string(),
        user_principal_name: None,
        application_object_id: Some(ObjectId::new_random()),
        managed_by: None,
        created_at: now,
    };
    let credential = secret_credential(
        kek,
        bootstrap_sp.object_id,
        &client_secret,
        "bootstrap",
        now,
        now + 10 * 365 * 86400,
    );
    let owner = |principal: &Principal| RoleAssignment {
        name: uuid::Uuid::new_v4().to_string(),
        scope: format!("/subscriptions/{}", subscription.id),
        role_definition_id: format!(
            "/subscriptions/{}/providers/Microsoft.Authorization/roleDefinitions/{OWNER_ROLE_ID}",
            subscription.id
        ),
        principal_id: principal.object_id,
        principal_type: if principal.kind == PrincipalKind::User {
            "User"
        } else {
            "ServicePrincipal"
        }
        .to_string(),
        created_at: now,
        created_by: None,
        description: None,
        updated_at: now,
        updated_by: None,
    };
    let role_assignments = vec![owner(&admin), owner(&bootstrap_sp)];
    let signing_key = new_stored_key(kek, now, now)?;
    let record = BootstrapRecord {
        tenant: Tenant {
            id: tenant_id,
            display_name: "openmi".to_string(),
            default_domain,
            created_at: now,
        },
        subscription,
        principals: vec![
            (admin, Some(hash_password(&admin_password)?)),
            (bootstrap_sp, None),
            public_client(tenant_id, AZURE_CLI_CLIENT_ID, "Microsoft Azure CLI", now)?,
            public_client(
                tenant_id,
                AZURE_POWERSHELL_CLIENT_ID,
                "Microsoft Azure PowerShell",
                now,
            )?,
        ],
        credentials: vec![credential],
        signing_key,
        role_assignments,
        meta: vec![("data_format".to_string(), "1".to_string())],
    };
    Ok((
        record,
        BootstrapSecrets {
            admin_username,
            admin_password,
            client_id,
            client_secret,
        },
    ))
}
