//! Engine tests on a temporary SQLite store with a fake clock: bootstrap, claims, grants, rotation.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use openmi_model::arm::ArmPath;
use openmi_model::ObjectId;
use openmi_store::Store;
use openmi_token::{jwt, Kek};
use serde_json::{json, Value};

use crate::{
    rotate_signing_key, BootstrapSecrets, ClientAuth, Clock, Engine, EngineConfig, EngineError,
    GrantRequest, ResourceRequest,
};

#[derive(Debug)]
struct FakeClock(AtomicI64);

impl Clock for FakeClock {
    fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

const START: i64 = 1_800_000_000;

struct Fixture {
    engine: Engine,
    secrets: BootstrapSecrets,
    clock: Arc<FakeClock>,
    url: String,
    kek_hex: String,
    _directory: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let directory = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        directory.path().join("openmi.db").display()
    );
    let (kek, kek_hex) = Kek::generate().unwrap();
    let clock = Arc::new(FakeClock(AtomicI64::new(START)));
    let config = EngineConfig {
        own_resources: vec!["https://127.0.0.1:8443".to_string()],
        ..EngineConfig::default()
    };
    let (engine, outcome) =
        Engine::start(Store::open(&url).await.unwrap(), kek, clock.clone(), config)
            .await
            .unwrap();
    Fixture {
        engine,
        secrets: outcome.secrets.unwrap(),
        clock,
        url,
        kek_hex,
        _directory: directory,
    }
}

fn client_credentials(fixture: &Fixture, secret: &str, scope: &str) -> GrantRequest {
    GrantRequest {
        tenant: fixture.engine.tenant().id.to_string(),
        grant_type: Some("client_credentials".to_string()),
        client_id: Some(fixture.secrets.client_id.to_string()),
        client_auth: ClientAuth::Secret(secret.to_string()),
        resource: ResourceRequest::V2Scope(Some(scope.to_string())),
        username: None,
        password: None,
        refresh_token: None,
        code: None,
        redirect_uri: None,
        code_verifier: None,
        device_code: None,
        client_info: false,
        issuer_base: "https://127.0.0.1:8443".to_string(),
    }
}

/// An ARM token for the bootstrap service principal (client credentials with its secret).
async fn arm_token(fixture: &Fixture) -> crate::IssuedTokens {
    fixture
        .engine
        .grant(client_credentials(
            fixture,
            &fixture.secrets.client_secret,
            "https://management.azure.com/.default",
        ))
        .await
        .unwrap()
}

fn claims_of(engine: &Engine, token: &str) -> serde_json::Map<String, Value> {
    jwt::decode_unverified(token)
        .unwrap()
        .verify_with_ring(&engine.key_ring(), engine.now(), 0)
        .unwrap()
        .claims
}

#[tokio::test]
async fn client_credentials_token_carries_entra_v1_claims() {
    let fixture = fixture().await;
    let issued = arm_token(&fixture).await;
    let claims = claims_of(&fixture.engine, &issued.access_token);
    let tenant = fixture.engine.tenant().id.to_string();
    let text = |name: &str| {
        claims
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(text("aud"), "https://management.azure.com");
    assert_eq!(text("iss"), format!("https://127.0.0.1:8443/{tenant}/"));
    assert_eq!(text("tid"), tenant);
    assert_eq!(text("appid"), fixture.secrets.client_id.to_string());
    assert_eq!(text("appidacr"), "1");
    assert_eq!(text("idtyp"), "app");
    assert_eq!(text("ver"), "1.0");
    assert_eq!(text("sub"), text("oid"));
    assert_eq!(text("uti").len(), 22);
    assert_eq!(claims.get("iat").and_then(Value::as_i64), Some(START));
    assert_eq!(
        claims.get("exp").and_then(Value::as_i64),
        Some(START + 3600)
    );
    assert_eq!(issued.expires_on, START + 3600);
}

#[tokio::test]
async fn wrong_secret_unknown_resource_and_bad_scope_fail_as_entra_does() {
    let fixture = fixture().await;
    let engine = &fixture.engine;
    let wrong = engine
        .grant(client_credentials(
            &fixture,
            "nope",
            "https://management.azure.com/.default",
        ))
        .await;
    assert!(
        matches!(wrong, Err(EngineError::InvalidClientSecret)),
        "{wrong:?}"
    );
    let secret = fixture.secrets.client_secret.clone();
    let unknown = engine
        .grant(client_credentials(
            &fixture,
            &secret,
            "https://unknown.example/.default",
        ))
        .await;
    assert!(
        matches!(unknown, Err(EngineError::ResourcePrincipalNotFound { .. })),
        "{unknown:?}"
    );
    let bad_scope = engine
        .grant(client_credentials(
            &fixture,
            &secret,
            "https://management.azure.com/user_impersonation",
        ))
        .await;
    assert!(
        matches!(bad_scope, Err(EngineError::InvalidScope(_))),
        "{bad_scope:?}"
    );
    let mut other_tenant =
        client_credentials(&fixture, &secret, "https://management.azure.com/.default");
    other_tenant.tenant = "00000000-0000-0000-0000-000000000001".to_string();
    assert!(matches!(
        engine.grant(other_tenant).await,
        Err(EngineError::TenantNotFound(_))
    ));
    // The az CLI's custom-cloud form: the server URL with a trailing slash, then `/.default`.
    let own = engine
        .grant(client_credentials(
            &fixture,
            &secret,
            "https://127.0.0.1:8443//.default",
        ))
        .await
        .unwrap();
    assert_eq!(
        claims_of(engine, &own.access_token)
            .get("aud")
            .and_then(Value::as_str),
        Some("https://127.0.0.1:8443/")
    );
}

#[tokio::test]
async fn password_and_refresh_grants_issue_user_tokens() {
    let fixture = fixture().await;
    let mut request = client_credentials(
        &fixture,
        "",
        "https://management.azure.com/.default offline_access openid",
    );
    request.grant_type = Some("password".to_string());
    request.client_id = Some(crate::AZURE_CLI_CLIENT_ID.to_string());
    request.client_auth = ClientAuth::None;
    request.username = Some(fixture.secrets.admin_username.to_uppercase());
    request.password = Some(fixture.secrets.admin_password.clone());
    let issued = fixture.engine.grant(request.clone()).await.unwrap();
    let claims = claims_of(&fixture.engine, &issued.access_token);
    assert_eq!(claims.get("idtyp").and_then(Value::as_str), Some("user"));
    assert_eq!(
        claims.get("upn").and_then(Value::as_str),
        Some(fixture.secrets.admin_username.as_str())
    );
    let refresh_token = issued.refresh_token.unwrap();

    let mut refresh = request.clone();
    refresh.grant_type = Some("refresh_token".to_string());
    refresh.username = None;
    refresh.password = None;
    refresh.refresh_token = Some(refresh_token.clone());
    assert!(fixture.engine.grant(refresh.clone()).await.is_ok());
    refresh.refresh_token = Some("garbage".to_string());
    assert!(matches!(
        fixture.engine.grant(refresh.clone()).await,
        Err(EngineError::InvalidRefreshToken)
    ));
    // Refresh tokens expire.
    fixture.clock.0.fetch_add(91 * 86400, Ordering::SeqCst);
    refresh.refresh_token = Some(refresh_token);
    assert!(matches!(
        fixture.engine.grant(refresh).await,
        Err(EngineError::InvalidRefreshToken)
    ));

    request.password = Some("wrong".to_string());
    assert!(matches!(
        fixture.engine.grant(request).await,
        Err(EngineError::InvalidUserCredentials)
    ));
}

#[tokio::test]
async fn rotation_keeps_old_tokens_valid_and_switches_after_the_delay() {
    let fixture = fixture().await;
    let before = arm_token(&fixture).await;
    let kek = Kek::from_hex(&fixture.kek_hex).unwrap();
    let new_kid = rotate_signing_key(fixture.engine.store(), &kek, START, 600, 86700)
        .await
        .unwrap();
    fixture.engine.reload_keys().await.unwrap();
    let kid_of = |token: &str| {
        jwt::decode_unverified(token)
            .unwrap()
            .header_str("kid")
            .unwrap()
            .to_string()
    };
    let still_old = arm_token(&fixture).await;
    assert_eq!(
        kid_of(&still_old.access_token),
        kid_of(&before.access_token),
        "signing must wait for the publish delay"
    );
    fixture.clock.0.fetch_add(600, Ordering::SeqCst);
    let after = arm_token(&fixture).await;
    assert_eq!(kid_of(&after.access_token), new_kid);
    claims_of(&fixture.engine, &before.access_token);
    let published: Vec<String> = fixture
        .engine
        .key_ring()
        .published(fixture.engine.now())
        .iter()
        .map(|key| key.kid.clone())
        .collect();
    assert_eq!(published.len(), 2);

    // Another KEK opens nothing and writes nothing.
    let (other, _) = Kek::generate().unwrap();
    assert!(matches!(
        rotate_signing_key(fixture.engine.store(), &other, START, 0, 86700).await,
        Err(EngineError::KekMismatch)
    ));
    assert_eq!(
        fixture.engine.store().signing_keys().await.unwrap().len(),
        2
    );
    let (_, rejoined) = (
        fixture.url.clone(),
        Engine::start(
            Store::open(&fixture.url).await.unwrap(),
            other,
            fixture.clock.clone(),
            EngineConfig::default(),
        )
        .await,
    );
    assert!(matches!(rejoined, Err(EngineError::KekMismatch)));
}

/// The bootstrap service principal, Owner of the subscription.
async fn admin_caller(fixture: &Fixture) -> crate::Caller {
    let principal = fixture
        .engine
        .store()
        .principal_by_client_id(fixture.engine.tenant().id, fixture.secrets.client_id)
        .await
        .unwrap()
        .unwrap();
    caller_for(fixture, principal.object_id)
}

fn caller_for(fixture: &Fixture, object_id: ObjectId) -> crate::Caller {
    crate::Caller {
        object_id,
        tenant_id: fixture.engine.tenant().id,
        client_id: String::new(),
        is_user: false,
        name: None,
        expires_at: START + 3600,
    }
}

fn path(text: &str) -> ArmPath {
    ArmPath::parse(text).unwrap()
}

#[tokio::test]
async fn vm_identity_block_follows_arm_merge_rules_and_owns_its_system_principal() {
    let fixture = fixture().await;
    let engine = &fixture.engine;
    let caller = admin_caller(&fixture).await;
    let subscription = engine.inner.subscription_id.clone();
    let group = format!("/subscriptions/{subscription}/resourceGroups/rg");
    engine
        .group_put(&caller, &subscription, "rg", &json!({"location": "westus"}))
        .await
        .unwrap();
    let mut identity_ids = Vec::new();
    for name in ["id1", "id2"] {
        let id =
            format!("{group}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}");
        engine
            .resource_put(&caller, &path(&id), &json!({"location": "westus"}))
            .await
            .unwrap();
        identity_ids.push(id);
    }
    let vm = path(&format!(
        "{group}/providers/Microsoft.Compute/virtualMachines/vm"
    ));
    let keys = |document: &Value| -> Vec<String> {
        document
            .pointer("/identity/userAssignedIdentities")
            .and_then(Value::as_object)
            .map(|map| map.keys().map(|key| key.to_lowercase()).collect())
            .unwrap_or_default()
    };
    let created = engine
        .resource_put(&caller, &vm, &json!({"location": "westus", "properties": {"osProfile": {"adminPassword": "secret"}}, "identity": {"type": "SystemAssigned, UserAssigned", "userAssignedIdentities": {identity_ids[0].to_uppercase(): {}}}}))
        .await
        .unwrap();
    let document = created.body().clone();
    assert!(
        document
            .pointer("/properties/osProfile/adminPassword")
            .is_none(),
        "secrets are never stored"
    );
    let system_principal: ObjectId = document
        .pointer("/identity/principalId")
        .and_then(Value::as_str)
        .unwrap()
        .parse()
        .unwrap();
    assert!(engine
        .store()
        .principal(system_principal)
        .await
        .unwrap()
        .is_some());
    assert_eq!(keys(&document), vec![identity_ids[0].to_lowercase()]);

    // PATCH with a new key adds; existing identities stay.
    let patched = engine.resource_patch(&caller, &vm, &json!({"identity": {"type": "SystemAssigned, UserAssigned", "userAssignedIdentities": {identity_ids[1].clone(): {}}}})).await.unwrap();
    assert_eq!(keys(&patched).len(), 2);
    // A key set to null removes that one (matched case-insensitively).
    let removed = engine.resource_patch(&caller, &vm, &json!({"identity": {"type": "SystemAssigned, UserAssigned", "userAssignedIdentities": {identity_ids[0].to_lowercase(): null}}})).await.unwrap();
    assert_eq!(keys(&removed), vec![identity_ids[1].to_lowercase()]);
    // A missing identity fails and changes nothing.
    let missing =
        format!("{group}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/nope");
    let failed = engine
        .resource_patch(
            &caller,
            &vm,
            &json!({"identity": {"type": "UserAssigned", "userAssignedIdentities": {missing: {}}}}),
        )
        .await;
    assert!(
        matches!(failed, Err(EngineError::UserAssignedIdentityNotFound(_))),
        "{failed:?}"
    );
    let unchanged = engine.resource_get(&caller, &vm).await.unwrap();
    assert_eq!(keys(&unchanged), vec![identity_ids[1].to_lowercase()]);
    assert!(
        engine
            .store()
            .principal(system_principal)
            .await
            .unwrap()
            .is_some(),
        "a failed write must not drop the system identity"
    );
    // SystemAssigned only drops every user-assigned identity; None drops the system principal.
    let system_only = engine
        .resource_patch(
            &caller,
            &vm,
            &json!({"identity": {"type": "SystemAssigned"}}),
        )
        .await
        .unwrap();
    assert!(keys(&system_only).is_empty());
    let none = engine
        .resource_patch(&caller, &vm, &json!({"identity": {"type": "None"}}))
        .await
        .unwrap();
    assert!(none.get("identity").is_none());
    assert!(engine
        .store()
        .principal(system_principal)
        .await
        .unwrap()
        .is_none());
    let again = engine
        .resource_patch(
            &caller,
            &vm,
            &json!({"identity": {"type": "SystemAssigned"}}),
        )
        .await
        .unwrap();
    let new_principal: ObjectId = again
        .pointer("/identity/principalId")
        .and_then(Value::as_str)
        .unwrap()
        .parse()
        .unwrap();
    assert_ne!(
        new_principal, system_principal,
        "re-enabling gives a new principal"
    );
    assert_eq!(
        again.pointer("/properties/vmId"),
        document.pointer("/properties/vmId"),
        "vmId is stable"
    );

    // Deleting the group takes the VM, its principal and the identities with it.
    assert!(engine
        .group_delete(&caller, &subscription, "RG")
        .await
        .unwrap());
    assert!(engine
        .store()
        .principal(new_principal)
        .await
        .unwrap()
        .is_none());
    assert!(matches!(
        engine.resource_get(&caller, &vm).await,
        Err(EngineError::ResourceGroupNotFound(_))
    ));
}

#[tokio::test]
async fn every_arm_operation_is_authorized_and_changes_apply_to_the_next_request() {
    let fixture = fixture().await;
    let engine = &fixture.engine;
    let owner = admin_caller(&fixture).await;
    let subscription = engine.inner.subscription_id.clone();
    let group = format!("/subscriptions/{subscription}/resourceGroups/rg");
    engine
        .group_put(&owner, &subscription, "rg", &json!({"location": "westus"}))
        .await
        .unwrap();
    engine
        .group_put(
            &owner,
            &subscription,
            "other",
            &json!({"location": "westus"}),
        )
        .await
        .unwrap();
    let identity =
        format!("{group}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id1");
    let identity_doc = engine
        .resource_put(&owner, &path(&identity), &json!({"location": "westus"}))
        .await
        .unwrap()
        .body()
        .clone();
    let worker: ObjectId = identity_doc
        .pointer("/properties/principalId")
        .and_then(Value::as_str)
        .unwrap()
        .parse()
        .unwrap();
    let worker_caller = caller_for(&fixture, worker);
    let assign = |role: &str, scope: &str| {
        let body = json!({"properties": {"roleDefinitionId": format!("/subscriptions/{subscription}/providers/Microsoft.Authorization/roleDefinitions/{role}"), "principalId": worker.to_string()}});
        (uuid::Uuid::new_v4().to_string(), scope.to_string(), body)
    };

    // No assignment: everything is denied, and lists are empty rather than failing.
    let denied = engine.group_get(&worker_caller, &subscription, "rg").await;
    assert!(
        matches!(denied, Err(EngineError::AuthorizationFailed { ref action, .. }) if action == "Microsoft.Resources/subscriptions/resourceGroups/read"),
        "{denied:?}"
    );
    assert!(engine
        .group_list(
            &worker_caller,
            &subscription,
            &crate::PageRequest::default()
        )
        .await
        .unwrap()
        .values
        .is_empty());

    // Reader on one group: reads it, not the other, writes nothing.
    let (name, scope, body) = assign(openmi_rbac::builtin::READER, &group);
    engine
        .role_assignment_put(&owner, &scope, &name, &body)
        .await
        .unwrap();
    assert!(
        engine
            .group_get(&worker_caller, &subscription, "rg")
            .await
            .is_ok(),
        "effective for the very next request"
    );
    assert!(engine
        .group_get(&worker_caller, &subscription, "other")
        .await
        .is_err());
    assert_eq!(
        engine
            .group_list(
                &worker_caller,
                &subscription,
                &crate::PageRequest::default()
            )
            .await
            .unwrap()
            .values
            .len(),
        1
    );
    assert!(engine
        .resource_get(&worker_caller, &path(&identity))
        .await
        .is_ok());
    let write = engine
        .resource_put(
            &worker_caller,
            &path(&format!(
                "{group}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id2"
            )),
            &json!({"location": "westus"}),
        )
        .await;
    assert!(
        matches!(write, Err(EngineError::AuthorizationFailed { .. })),
        "{write:?}"
    );
    // Only those who may write role assignments create them.
    let (other_name, other_scope, other_body) = assign(openmi_rbac::builtin::OWNER, &group);
    assert!(matches!(
        engine
            .role_assignment_put(&worker_caller, &other_scope, &other_name, &other_body)
            .await,
        Err(EngineError::AuthorizationFailed { .. })
    ));
    // Duplicates name the existing assignment.
    let duplicate = engine
        .role_assignment_put(&owner, &scope, &uuid::Uuid::new_v4().to_string(), &body)
        .await;
    assert!(
        matches!(duplicate, Err(EngineError::RoleAssignmentExists(ref existing)) if *existing == name.replace('-', "")),
        "{duplicate:?}"
    );

    // A VM Contributor cannot attach an identity without assign/action on it.
    let (name2, scope2, body2) = assign(openmi_rbac::builtin::VIRTUAL_MACHINE_CONTRIBUTOR, &group);
    engine
        .role_assignment_put(&owner, &scope2, &name2, &body2)
        .await
        .unwrap();
    let vm = path(&format!(
        "{group}/providers/Microsoft.Compute/virtualMachines/vm"
    ));
    engine
        .resource_put(
            &worker_caller,
            &vm,
            &json!({"location": "westus", "identity": {"type": "SystemAssigned"}}),
        )
        .await
        .unwrap();
    let attach = json!({"identity": {"type": "SystemAssigned, UserAssigned", "userAssignedIdentities": {identity.clone(): {}}}});
    let linked = engine.resource_patch(&worker_caller, &vm, &attach).await;
    assert!(
        matches!(linked, Err(EngineError::LinkedAuthorizationFailed(_))),
        "{linked:?}"
    );
    let (name3, scope3, body3) = assign(openmi_rbac::builtin::MANAGED_IDENTITY_OPERATOR, &identity);
    engine
        .role_assignment_put(&owner, &scope3, &name3, &body3)
        .await
        .unwrap();
    assert!(engine
        .resource_patch(&worker_caller, &vm, &attach)
        .await
        .is_ok());

    // Removing the assignment denies the very next request.
    engine
        .role_assignment_delete(&owner, &scope, &name)
        .await
        .unwrap();
    engine
        .role_assignment_delete(&owner, &scope2, &name2)
        .await
        .unwrap();
    assert!(engine
        .group_get(&worker_caller, &subscription, "rg")
        .await
        .is_err());
}

fn agent_assertion(key: &aws_lc_rs::signature::EcdsaKeyPair, agent_id: &str, now: i64) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    let header =
        URL_SAFE_NO_PAD.encode(json!({"alg": "ES256", "typ": "JWT", "kid": agent_id}).to_string());
    let claims = URL_SAFE_NO_PAD.encode(json!({"iss": agent_id, "sub": agent_id, "aud": crate::AGENT_AUDIENCE, "iat": now, "exp": now + 300}).to_string());
    let input = format!("{header}.{claims}");
    let signature = key
        .sign(&aws_lc_rs::rand::SystemRandom::new(), input.as_bytes())
        .unwrap();
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
}

#[tokio::test]
async fn agents_get_tokens_only_for_the_identities_their_vm_has_now() {
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    use base64::Engine as _;
    let fixture = fixture().await;
    let engine = &fixture.engine;
    let owner = admin_caller(&fixture).await;
    let subscription = engine.inner.subscription_id.clone();
    let group = format!("/subscriptions/{subscription}/resourceGroups/rg");
    engine
        .group_put(&owner, &subscription, "rg", &json!({"location": "westus"}))
        .await
        .unwrap();
    let identity =
        format!("{group}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id1");
    let identity_doc = engine
        .resource_put(&owner, &path(&identity), &json!({"location": "westus"}))
        .await
        .unwrap()
        .body()
        .clone();
    let client_id = identity_doc
        .pointer("/properties/clientId")
        .and_then(Value::as_str)
        .unwrap()
        .to_string();
    let vm = path(&format!(
        "{group}/providers/Microsoft.Compute/virtualMachines/vm"
    ));
    engine
        .resource_put(&owner, &vm, &json!({"location": "westus", "identity": {"type": "SystemAssigned, UserAssigned", "userAssignedIdentities": {identity.clone(): {}}}}))
        .await
        .unwrap();
    let other_vm = path(&format!(
        "{group}/providers/Microsoft.Compute/virtualMachines/other"
    ));
    engine
        .resource_put(
            &owner,
            &other_vm,
            &json!({"location": "westus", "identity": {"type": "SystemAssigned"}}),
        )
        .await
        .unwrap();

    let owner_ref = &owner;
    let enroll = |vm: ArmPath| async move {
        let join = engine
            .generate_join_token(owner_ref, &vm, 600)
            .await
            .unwrap();
        let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let spki = base64::engine::general_purpose::STANDARD
            .encode(key.public_key().as_der().unwrap().as_ref());
        let (agent_id, _) = engine.enroll_agent(&join.token, &spki).await.unwrap();
        assert!(
            matches!(
                engine.enroll_agent(&join.token, &spki).await,
                Err(EngineError::InvalidJoinToken)
            ),
            "join tokens are single-use"
        );
        let caller = engine
            .authenticate_agent(&agent_assertion(&key, &agent_id, START))
            .await
            .unwrap();
        (caller, key, agent_id)
    };
    let (agent, key, agent_id) = enroll(vm.clone()).await;
    let (other_agent, ..) = enroll(other_vm.clone()).await;
    let by_client = crate::IdentitySelector {
        client_id: Some(client_id.clone()),
        ..Default::default()
    };
    let token = engine
        .agent_token(
            &agent,
            "https://management.azure.com",
            &by_client,
            "https://127.0.0.1:8443",
        )
        .await
        .unwrap();
    let claims = claims_of(engine, &token.access_token);
    assert_eq!(
        claims.get("appid").and_then(Value::as_str),
        Some(client_id.as_str())
    );
    assert_eq!(
        claims.get("xms_mirid").and_then(Value::as_str),
        Some(identity.as_str())
    );
    assert_eq!(claims.get("appidacr").and_then(Value::as_str), Some("2"));
    assert_eq!(token.expires_in, 86400);
    let system = engine
        .agent_token(
            &agent,
            "https://management.azure.com",
            &Default::default(),
            "https://127.0.0.1:8443",
        )
        .await
        .unwrap();
    assert_eq!(
        claims_of(engine, &system.access_token)
            .get("xms_mirid")
            .and_then(Value::as_str),
        Some(vm.to_id().as_str()),
        "no selector: the system identity"
    );
    // Another VM's agent cannot get this identity.
    assert!(matches!(
        engine
            .agent_token(
                &other_agent,
                "https://management.azure.com",
                &by_client,
                "https://x"
            )
            .await,
        Err(EngineError::IdentityNotFound)
    ));
    // Removed from the VM: no more tokens.
    engine.resource_patch(&owner, &vm, &json!({"identity": {"type": "SystemAssigned, UserAssigned", "userAssignedIdentities": {identity.clone(): null}}})).await.unwrap();
    assert!(matches!(
        engine
            .agent_token(
                &agent,
                "https://management.azure.com",
                &by_client,
                "https://x"
            )
            .await,
        Err(EngineError::IdentityNotFound)
    ));
    // A forged assertion fails; the VM deleted, the agent is gone.
    let stranger = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    assert!(matches!(
        engine
            .authenticate_agent(&agent_assertion(&stranger, &agent_id, START))
            .await,
        Err(EngineError::InvalidAgent(_))
    ));
    engine.resource_delete(&owner, &vm).await.unwrap();
    assert!(matches!(
        engine
            .authenticate_agent(&agent_assertion(&key, &agent_id, START))
            .await,
        Err(EngineError::InvalidAgent(_))
    ));
}

fn authorize_request(fixture: &Fixture, challenge: &str) -> crate::AuthorizeRequest {
    crate::AuthorizeRequest {
        tenant: fixture.engine.tenant().id.to_string(),
        client_id: Some(crate::AZURE_CLI_CLIENT_ID.to_string()),
        redirect_uri: Some("http://localhost:8400".to_string()),
        response_type: Some("code".to_string()),
        scope: Some("https://management.azure.com/.default openid offline_access".to_string()),
        state: Some("s1".to_string()),
        nonce: Some("n1".to_string()),
        code_challenge: Some(challenge.to_string()),
        code_challenge_method: Some("S256".to_string()),
        ..Default::default()
    }
}

fn code_redemption(fixture: &Fixture, code: &str, verifier: &str) -> GrantRequest {
    let mut request = client_credentials(fixture, "", "https://management.azure.com/.default");
    request.grant_type = Some("authorization_code".to_string());
    request.client_id = Some(crate::AZURE_CLI_CLIENT_ID.to_string());
    request.client_auth = ClientAuth::None;
    request.code = Some(code.to_string());
    request.redirect_uri = Some("http://localhost:8400".to_string());
    request.code_verifier = Some(verifier.to_string());
    request
}

#[tokio::test]
async fn authorization_code_with_pkce_is_redeemed_once() {
    let fixture = fixture().await;
    // RFC 7636 appendix B.
    let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    let request = authorize_request(&fixture, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
    let base = "https://127.0.0.1:8443";
    let target = fixture
        .engine
        .authorize_target(&request, base)
        .await
        .unwrap();
    assert_eq!(target.response_mode, "query");
    fixture
        .engine
        .authorize_parameters(&request, crate::OAuthVersion::V2)
        .unwrap();
    assert!(matches!(
        fixture
            .engine
            .sign_in("common", &fixture.secrets.admin_username, "wrong")
            .await,
        Err(EngineError::InvalidUserCredentials)
    ));
    let new = fixture
        .engine
        .sign_in(
            "common",
            &fixture.secrets.admin_username,
            &fixture.secrets.admin_password,
        )
        .await
        .unwrap();
    let session = fixture.engine.session(&new.cookie).await.unwrap().unwrap();
    let code = fixture
        .engine
        .issue_code(&request, crate::OAuthVersion::V2, &target, &session)
        .await
        .unwrap();

    // A wrong verifier fails and uses the code up, as a stolen code must not be retried.
    let wrong = fixture
        .engine
        .grant(code_redemption(&fixture, &code, "not-the-verifier"))
        .await;
    assert!(
        matches!(wrong, Err(EngineError::OAuth { code: 501481, .. })),
        "{wrong:?}"
    );
    let code = fixture
        .engine
        .issue_code(&request, crate::OAuthVersion::V2, &target, &session)
        .await
        .unwrap();
    let issued = fixture
        .engine
        .grant(code_redemption(&fixture, &code, verifier))
        .await
        .unwrap();
    let id_claims = claims_of(&fixture.engine, issued.id_token.as_deref().unwrap());
    assert_eq!(id_claims.get("nonce").and_then(Value::as_str), Some("n1"));
    let claims = claims_of(&fixture.engine, &issued.access_token);
    assert_eq!(claims.get("oid"), id_claims.get("oid"));
    let again = fixture
        .engine
        .grant(code_redemption(&fixture, &code, verifier))
        .await;
    assert!(
        matches!(again, Err(EngineError::OAuth { code: 70008, .. })),
        "{again:?}"
    );

    // Codes expire after ten minutes; sessions end at sign-out.
    let code = fixture
        .engine
        .issue_code(&request, crate::OAuthVersion::V2, &target, &session)
        .await
        .unwrap();
    fixture.clock.0.fetch_add(601, Ordering::SeqCst);
    let late = fixture
        .engine
        .grant(code_redemption(&fixture, &code, verifier))
        .await;
    assert!(
        matches!(late, Err(EngineError::OAuth { code: 70008, .. })),
        "{late:?}"
    );
    fixture.engine.sign_out(&new.cookie).await.unwrap();
    assert!(fixture.engine.session(&new.cookie).await.unwrap().is_none());
}

#[tokio::test]
async fn authorize_refuses_unregistered_redirects_and_unknown_clients() {
    let fixture = fixture().await;
    let base = "https://127.0.0.1:8443";
    let mut request = authorize_request(&fixture, "x");
    request.redirect_uri = Some("https://evil.example/cb".to_string());
    let refused = fixture.engine.authorize_target(&request, base).await;
    assert!(
        matches!(refused, Err(EngineError::OAuth { code: 50011, .. })),
        "{refused:?}"
    );
    request.client_id = Some("6b5a1a4e-0000-4000-8000-000000000000".to_string());
    assert!(matches!(
        fixture.engine.authorize_target(&request, base).await,
        Err(EngineError::ApplicationNotFound { .. })
    ));
    // The portal's client exists from the start and accepts only the server's own page.
    request.client_id = Some(crate::PORTAL_CLIENT_ID.to_string());
    request.redirect_uri = Some(format!("{base}/portal/"));
    assert!(fixture
        .engine
        .authorize_target(&request, base)
        .await
        .is_ok());
    request.code_challenge = None;
    request.code_challenge_method = None;
    let no_pkce = fixture
        .engine
        .authorize_parameters(&request, crate::OAuthVersion::V2);
    assert!(matches!(
        no_pkce,
        Err(EngineError::OAuth { code: 9002325, .. })
    ));
}

#[tokio::test]
async fn device_code_is_pending_until_approved_then_redeemed_once() {
    let fixture = fixture().await;
    let issued = fixture
        .engine
        .start_device_code(
            "common",
            Some(crate::AZURE_CLI_CLIENT_ID.to_string()),
            ResourceRequest::V2Scope(Some("https://management.azure.com/.default".to_string())),
            "https://127.0.0.1:8443",
        )
        .await
        .unwrap();
    assert_eq!(
        issued.verification_uri,
        "https://127.0.0.1:8443/devicelogin"
    );
    let mut poll = code_redemption(&fixture, "", "");
    poll.grant_type = Some("urn:ietf:params:oauth:grant-type:device_code".to_string());
    poll.code = None;
    poll.redirect_uri = None;
    poll.device_code = Some(issued.device_code.clone());
    let pending = fixture.engine.grant(poll.clone()).await;
    assert!(matches!(
        pending,
        Err(EngineError::OAuth {
            error: "authorization_pending",
            ..
        })
    ));
    let admin = fixture
        .engine
        .user_named(&fixture.secrets.admin_username)
        .await
        .unwrap()
        .unwrap();
    let typed = issued.user_code.to_lowercase();
    fixture
        .engine
        .settle_device_code(&typed, &admin, true)
        .await
        .unwrap();
    assert!(fixture.engine.device_code_pending(&typed).await.is_err());
    let issued_tokens = fixture.engine.grant(poll.clone()).await.unwrap();
    let claims = claims_of(&fixture.engine, &issued_tokens.access_token);
    assert_eq!(
        claims.get("oid").and_then(Value::as_str),
        Some(admin.object_id.to_string().as_str())
    );
    assert!(fixture.engine.grant(poll).await.is_err());
}

#[tokio::test]
async fn role_definitions_page_built_in_and_custom_roles_merged_by_id() {
    let fixture = fixture().await;
    let engine = &fixture.engine;
    let owner = admin_caller(&fixture).await;
    let subscription = format!("/subscriptions/{}", engine.subscription_id());
    let mut custom = Vec::new();
    for i in 0..23 {
        let id = uuid::Uuid::new_v4().to_string();
        let body = json!({"properties": {"roleName": format!("Paged {i}"), "assignableScopes": [subscription], "permissions": [{"actions": ["*/read"]}]}});
        engine
            .role_definition_put(&owner, &subscription, &id, &body)
            .await
            .unwrap();
        custom.push(id);
    }
    let mut expected: Vec<String> = openmi_rbac::builtin::definitions()
        .into_iter()
        .map(|definition| definition.id)
        .chain(custom.iter().cloned())
        .collect();
    expected.sort();
    let (owner, subscription) = (&owner, subscription.as_str());
    let walk = |size: usize, filter: Option<&'static str>| async move {
        let mut names = Vec::new();
        let mut page = crate::PageRequest {
            after: String::new(),
            size,
        };
        let mut pages = 0;
        loop {
            let found = engine
                .role_definition_list(owner, subscription, filter, &page)
                .await
                .unwrap();
            assert!(found.values.len() <= size);
            pages += 1;
            names.extend(
                found
                    .values
                    .iter()
                    .map(|value| value["name"].as_str().unwrap().to_string()),
            );
            match found.next {
                Some(after) => page.after = after,
                None => return (names, pages),
            }
        }
    };
    for size in [1, 3, 8, 31, 1000] {
        let (names, pages) = walk(size, None).await;
        assert_eq!(names, expected, "page size {size}: each role once, by id");
        assert_eq!(pages, expected.len().div_ceil(size), "page size {size}");
    }
    let mut custom_sorted = custom.clone();
    custom_sorted.sort();
    let (names, _) = walk(4, Some("type eq 'CustomRole'")).await;
    assert_eq!(names, custom_sorted, "a filter pages over what it keeps");
    let (names, pages) = walk(4, Some("roleName eq 'paged 7'")).await;
    assert_eq!((names, pages), (vec![custom[7].clone()], 1));
    let (names, _) = walk(4, Some("roleName eq 'Reader'")).await;
    assert_eq!(names, vec![openmi_rbac::builtin::READER.to_string()]);
}
