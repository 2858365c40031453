#![allow(clippy::expect_used, clippy::panic)] // A conformance suite reports failures by panicking, as assert! does.
//! The store conformance suite: every backend must pass the same checks (SPIRE's pattern).
//!
//! `run` takes a freshly migrated, empty store. The crate's own tests call it for SQLite in a
//! temporary directory and for PostgreSQL in a schema of its own.

use openmi_model::directory::{
    ClientCredential, CredentialKind, RefreshGrant, RoleAssignment, Subscription, Tenant,
};
use openmi_model::{ClientId, ObjectId, Principal, PrincipalKind, SubscriptionId, TenantId};

use crate::{
    BootstrapRecord, NewServicePrincipal, ResourceChange, ResourceRecord, Store, StoreError,
    StoredSigningKey,
};

/// A bootstrap record with a user and one service principal holding a secret.
pub fn sample_bootstrap() -> BootstrapRecord {
    let tenant_id = TenantId::new_random();
    let user = Principal {
        object_id: ObjectId::new_random(),
        tenant_id,
        kind: PrincipalKind::User,
        client_id: None,
        display_name: "Admin".to_string(),
        user_principal_name: Some("Admin@openmi.local".to_string()),
        application_object_id: None,
        managed_by: None,
        created_at: 100,
    };
    let service_principal = Principal {
        object_id: ObjectId::new_random(),
        tenant_id,
        kind: PrincipalKind::ServicePrincipal,
        client_id: Some(ClientId::new_random()),
        display_name: "bootstrap".to_string(),
        user_principal_name: None,
        application_object_id: Some(ObjectId::new_random()),
        managed_by: None,
        created_at: 100,
    };
    BootstrapRecord {
        tenant: Tenant {
            id: tenant_id,
            display_name: "t".to_string(),
            default_domain: "openmi.local".to_string(),
            created_at: 100,
        },
        subscription: Subscription {
            id: SubscriptionId::new_random(),
            tenant_id,
            display_name: "s".to_string(),
            state: "Enabled".to_string(),
            created_at: 100,
        },
        credentials: vec![ClientCredential {
            key_id: uuid::Uuid::new_v4().to_string(),
            object_id: service_principal.object_id,
            display_name: "bootstrap".to_string(),
            kind: CredentialKind::Secret {
                hash: "abcd".to_string(),
                hint: "ab".to_string(),
            },
            start_at: 100,
            end_at: 200,
        }],
        role_assignments: vec![RoleAssignment {
            name: uuid::Uuid::new_v4().to_string(),
            scope: "/subscriptions/x".to_string(),
            role_definition_id: "/providers/Microsoft.Authorization/roleDefinitions/r".to_string(),
            principal_id: user.object_id,
            principal_type: "User".to_string(),
            created_at: 100,
            created_by: None,
            description: None,
            updated_at: 100,
            updated_by: None,
        }],
        principals: vec![
            (user, Some("$argon2id$hash".to_string())),
            (service_principal, None),
        ],
        signing_key: StoredSigningKey {
            kid: "kid-1".to_string(),
            created_at: 100,
            activate_at: 100,
            cert_der_b64: "AAAA".to_string(),
            private_key_sealed: "sealed".to_string(),
        },
        meta: vec![("format".to_string(), "1".to_string())],
    }
}

/// Runs every conformance check on `store`, which must be empty.
pub async fn run(store: &Store) -> Result<(), StoreError> {
    let record = sample_bootstrap();
    assert!(
        store.bootstrap(&record).await?,
        "first bootstrap must claim the store"
    );
    let mut second = sample_bootstrap();
    second.tenant.display_name = "other".to_string();
    assert!(
        !store.bootstrap(&second).await?,
        "second bootstrap must join, not write"
    );
    assert_eq!(store.tenants().await?, vec![record.tenant.clone()]);
    assert_eq!(
        store.subscriptions().await?,
        vec![record.subscription.clone()]
    );
    assert_eq!(store.meta("format").await?.as_deref(), Some("1"));
    assert_eq!(
        store.meta("bootstrap").await?,
        Some(record.tenant.id.to_string())
    );

    let (user, hash) = &record.principals[0];
    let (found, found_hash) = store
        .user_by_sign_in_name(record.tenant.id, "ADMIN@openmi.local")
        .await?
        .expect("user by case-insensitive name");
    assert_eq!(&found, user);
    assert_eq!(Some(found_hash), hash.clone());
    assert!(store
        .user_by_sign_in_name(TenantId::new_random(), "admin@openmi.local")
        .await?
        .is_none());

    let (service_principal, _) = &record.principals[1];
    let client_id = service_principal.client_id.expect("client id");
    assert_eq!(
        store
            .principal_by_client_id(record.tenant.id, client_id)
            .await?
            .as_ref(),
        Some(service_principal)
    );
    assert_eq!(
        store.principal(service_principal.object_id).await?.as_ref(),
        Some(service_principal)
    );
    assert_eq!(
        store.credentials(service_principal.object_id).await?,
        record.credentials
    );
    assert_eq!(
        store.role_assignments_of(user.object_id).await?,
        record.role_assignments
    );
    assert_eq!(
        store.signing_keys().await?,
        vec![record.signing_key.clone()]
    );

    // A new service principal with a certificate; a duplicate client id is refused whole.
    let mut new_principal = service_principal.clone();
    new_principal.object_id = ObjectId::new_random();
    new_principal.client_id = Some(ClientId::new_random());
    new_principal.application_object_id = Some(ObjectId::new_random());
    new_principal.display_name = "app two".to_string();
    let certificate = ClientCredential {
        key_id: uuid::Uuid::new_v4().to_string(),
        object_id: new_principal.object_id,
        display_name: "cert".to_string(),
        kind: CredentialKind::Certificate {
            cert_der: vec![1, 2, 3],
            thumbprint: "thumb".to_string(),
        },
        start_at: 1,
        end_at: 2,
    };
    store
        .create_service_principal(
            &NewServicePrincipal {
                principal: new_principal.clone(),
                credentials: vec![certificate.clone()],
            },
            None,
        )
        .await?;
    assert_eq!(
        store.credentials(new_principal.object_id).await?,
        vec![certificate.clone()]
    );
    assert_eq!(
        store
            .service_principals_by_display_name(record.tenant.id, "app two")
            .await?,
        vec![new_principal.clone()]
    );

    let mut duplicate = new_principal.clone();
    duplicate.object_id = ObjectId::new_random();
    duplicate.application_object_id = Some(ObjectId::new_random());
    let mut orphan_credential = certificate.clone();
    orphan_credential.key_id = uuid::Uuid::new_v4().to_string();
    orphan_credential.object_id = duplicate.object_id;
    let result = store
        .create_service_principal(
            &NewServicePrincipal {
                principal: duplicate.clone(),
                credentials: vec![orphan_credential],
            },
            None,
        )
        .await;
    assert!(
        matches!(result, Err(StoreError::AlreadyExists)),
        "duplicate client id: {result:?}"
    );
    assert!(
        store.principal(duplicate.object_id).await?.is_none(),
        "failed write left a principal behind"
    );
    assert!(
        store.credentials(duplicate.object_id).await?.is_empty(),
        "failed write left a credential behind"
    );

    // Credentials on an unknown principal are refused.
    let mut stray = certificate.clone();
    stray.key_id = uuid::Uuid::new_v4().to_string();
    stray.object_id = ObjectId::new_random();
    assert!(matches!(
        store.add_credential(&stray, None).await,
        Err(StoreError::NotFound)
    ));

    // Refresh grants expire.
    let grant = RefreshGrant {
        token_hash: "h1".to_string(),
        object_id: user.object_id,
        client_id: "c".to_string(),
        issued_at: 10,
        expires_at: 20,
    };
    store.insert_refresh_grant(&grant).await?;
    assert_eq!(store.refresh_grant("h1", 15).await?, Some(grant.clone()));
    assert_eq!(store.refresh_grant("h1", 21).await?, None);

    // Key rotation adds and prunes keys.
    let mut next_key = record.signing_key.clone();
    next_key.kid = "kid-2".to_string();
    next_key.activate_at = 150;
    store.add_signing_key(&next_key).await?;
    assert_eq!(store.signing_keys().await?.len(), 2);
    store.delete_signing_keys(&["kid-1".to_string()]).await?;
    assert_eq!(store.signing_keys().await?, vec![next_key]);

    resources(store, &record).await?;
    items(store).await?;
    audit(store).await?;
    authorization(store, &record).await
}

/// The audit log: a write's record commits with it or not at all; appended records; filters,
/// newest first, paging by position; pruning.
async fn audit(store: &Store) -> Result<(), StoreError> {
    use crate::{AuditFilter, AuditKind, AuditRecord};
    let event = |id: &str, at: i64, kind: AuditKind, operation: &str, group: &str| AuditRecord {
        id: id.to_string(),
        at,
        kind,
        operation: operation.to_string(),
        status: "Succeeded".to_string(),
        status_code: None,
        caller_id: Some("c1".to_string()),
        caller_name: Some("Someone@Example.com".to_string()),
        subscription_id: Some("s".to_string()),
        resource_group: Some(group.to_string()),
        resource_id: Some(format!(
            "/subscriptions/s/resourceGroups/{group}/providers/Microsoft.X/things/{id}"
        )),
        correlation_id: Some(format!("corr-{id}")),
        request_id: None,
        client_ip: Some("127.0.0.1".to_string()),
        details: "{}".to_string(),
    };
    // A change that commits carries its record; one that fails (a lost race) leaves neither.
    let written = record(
        "/subscriptions/s/resourceGroups/AuditG/providers/Microsoft.X/things/a1",
        "/subscriptions/s/resourcegroups/auditg",
        None,
        "microsoft.x/things",
    );
    store
        .apply(&ResourceChange {
            upserts: vec![written.clone()],
            audit: Some(Box::new(event(
                "a1",
                1_000,
                AuditKind::Administrative,
                "Microsoft.X/things/write",
                "AuditG",
            ))),
            ..Default::default()
        })
        .await?;
    let lost = store
        .apply(&ResourceChange {
            upserts: vec![written.clone()], // version 0 again: the row exists, so the change fails
            audit: Some(Box::new(event(
                "a2",
                2_000,
                AuditKind::Administrative,
                "Microsoft.X/things/write",
                "AuditG",
            ))),
            ..Default::default()
        })
        .await;
    assert!(
        matches!(lost, Err(StoreError::PreconditionFailed)),
        "{lost:?}"
    );
    store
        .append_audit(vec![
            event("s1", 3_000, AuditKind::SignIn, "client_credentials", "none"),
            AuditRecord {
                status: "Failed".to_string(),
                status_code: Some("AADSTS7000215".to_string()),
                ..event("s2", 4_000, AuditKind::SignIn, "client_credentials", "none")
            },
            event(
                "a3",
                5_000,
                AuditKind::Administrative,
                "Microsoft.Y/other/delete",
                "OtherG",
            ),
        ])
        .await?;
    let ids = |records: Vec<AuditRecord>| records.into_iter().map(|r| r.id).collect::<Vec<_>>();
    let administrative = AuditFilter {
        kinds: vec![AuditKind::Administrative],
        ..Default::default()
    };
    assert_eq!(
        ids(store.audit_page(&administrative, 10).await?),
        ["a3", "a1"]
    );
    let narrowed = |filter: AuditFilter| AuditFilter {
        kinds: vec![AuditKind::Administrative],
        ..filter
    };
    for (filter, expected) in [
        (
            AuditFilter {
                resource_group: Some("auditg".into()),
                ..Default::default()
            },
            vec!["a1"],
        ),
        (
            AuditFilter {
                correlation_id: Some("CORR-A3".into()),
                ..Default::default()
            },
            vec!["a3"],
        ),
        (
            AuditFilter {
                caller: Some("someone@example.com".into()),
                ..Default::default()
            },
            vec!["a3", "a1"],
        ),
        (
            AuditFilter {
                operation_prefix: Some("microsoft.y/".into()),
                ..Default::default()
            },
            vec!["a3"],
        ),
        (
            AuditFilter {
                resource_id: Some("/subscriptions/s/resourcegroups/auditg".into()),
                ..Default::default()
            },
            vec!["a1"],
        ),
        (
            AuditFilter {
                from: Some(1_001),
                ..Default::default()
            },
            vec!["a3"],
        ),
        (
            AuditFilter {
                to: Some(1_000),
                ..Default::default()
            },
            vec!["a1"],
        ),
        (
            AuditFilter {
                before: Some((5_000, "a3".into())),
                ..Default::default()
            },
            vec!["a1"],
        ),
        (
            AuditFilter {
                operations: vec!["Microsoft.X/things/write".into()],
                ..Default::default()
            },
            vec!["a1"],
        ),
    ] {
        assert_eq!(
            ids(store.audit_page(&narrowed(filter.clone()), 10).await?),
            expected,
            "{filter:?}"
        );
    }
    let failed = AuditFilter {
        kinds: vec![AuditKind::SignIn],
        status_code: Some("AADSTS7000215".into()),
        ..Default::default()
    };
    assert_eq!(ids(store.audit_page(&failed, 10).await?), ["s2"]);
    assert_eq!(store.audit_page(&AuditFilter::default(), 2).await?.len(), 2);
    assert_eq!(store.prune_audit(3_500).await?, 2, "a1 and s1 are older");
    assert_eq!(
        ids(store.audit_page(&AuditFilter::default(), 10).await?),
        ["a3", "s2"]
    );
    Ok(())
}

async fn authorization(store: &Store, bootstrap: &BootstrapRecord) -> Result<(), StoreError> {
    let before = store.rbac_version().await?;
    let mut assignment = bootstrap.role_assignments[0].clone();
    assignment.name = uuid::Uuid::new_v4().to_string();
    assignment.scope = "/subscriptions/x/resourceGroups/G".to_string();
    store.create_role_assignment(&assignment, None).await?;
    assert_eq!(
        store
            .role_assignment(&assignment.name.to_uppercase())
            .await?,
        Some(assignment.clone())
    );
    assert_eq!(store.role_assignments().await?.len(), 2);
    assert!(matches!(
        store.create_role_assignment(&assignment, None).await,
        Err(StoreError::AlreadyExists)
    ));
    assert!(store.delete_role_assignment(&assignment.name, None).await?);
    assert!(!store.delete_role_assignment(&assignment.name, None).await?);
    let definition = crate::StoredRoleDefinition {
        id: "d1".to_string(),
        role_name: "Custom".to_string(),
        body: "{}".to_string(),
        created_at: 1,
        updated_at: 1,
    };
    store.put_role_definition(&definition, None).await?;
    store
        .put_role_definition(
            &crate::StoredRoleDefinition {
                body: "{\"x\":1}".to_string(),
                updated_at: 2,
                ..definition.clone()
            },
            None,
        )
        .await?;
    assert_eq!(store.role_definitions().await?.len(), 1);
    // One definition by id or by name (case-insensitive, another's only), and pages by id.
    assert_eq!(
        store
            .role_definition("D1")
            .await?
            .map(|found| found.updated_at),
        Some(2)
    );
    assert!(store.role_definition("d2").await?.is_none());
    assert_eq!(
        store
            .role_definition_named("custom", "")
            .await?
            .map(|found| found.id),
        Some("d1".to_string())
    );
    assert!(store.role_definition_named("CUSTOM", "d1").await?.is_none());
    let second = crate::StoredRoleDefinition {
        id: "d0".to_string(),
        role_name: "Other".to_string(),
        ..definition.clone()
    };
    store.put_role_definition(&second, None).await?;
    let ids = |page: Vec<crate::StoredRoleDefinition>| {
        page.into_iter().map(|found| found.id).collect::<Vec<_>>()
    };
    assert_eq!(ids(store.role_definitions_page("", 1).await?), ["d0"]);
    assert_eq!(ids(store.role_definitions_page("d0", 5).await?), ["d1"]);
    assert!(store.role_definitions_page("d1", 5).await?.is_empty());
    assert!(store.delete_role_definition("d0", None).await?);
    assert!(store.delete_role_definition("D1", None).await?);
    assert_eq!(
        store.rbac_version().await?,
        before + 7,
        "every authorization change bumps the counter"
    );
    Ok(())
}

fn record(id: &str, group: &str, parent: Option<&str>, type_key: &str) -> ResourceRecord {
    ResourceRecord {
        key: id.to_lowercase(),
        id: id.to_string(),
        subscription_id: "s".to_string(),
        group_key: Some(group.to_lowercase()),
        parent_key: parent.map(str::to_lowercase),
        type_key: type_key.to_string(),
        name: id.rsplit('/').next().unwrap_or_default().to_string(),
        body: format!("{{\"id\":\"{id}\"}}"),
        version: 0,
        created_at: 1,
        updated_at: 1,
    }
}

/// Cosmos items: conditional writes, ETags, TTL, key-order paging, the change feed, cascades.
async fn items(store: &Store) -> Result<(), StoreError> {
    use crate::items::{ItemWrite, StoredItem};
    let container = "/subscriptions/s/resourcegroups/g/providers/microsoft.documentdb/databaseaccounts/a/sqldatabases/d/containers/c".to_string();
    let item = |pk: &str, id: &str, etag: &str, expires_at: Option<i64>| StoredItem {
        container_key: container.clone(),
        partition_key: pk.to_string(),
        id: id.to_string(),
        body: format!("{{\"id\":\"{id}\"}}"),
        etag: etag.to_string(),
        ts: 100,
        lsn: 0,
        expires_at,
    };
    let now = 100;
    let created = store
        .apply_items(vec![ItemWrite::Create {
            item: item("[\"a\"]", "1", "e1", None),
            now,
        }])
        .await?;
    assert!(created[0].created);
    assert!(matches!(
        store
            .apply_items(vec![ItemWrite::Create {
                item: item("[\"a\"]", "1", "e2", None),
                now
            }])
            .await,
        Err(StoreError::AlreadyExists)
    ));
    // The same id in another partition is another item.
    store
        .apply_items(vec![ItemWrite::Create {
            item: item("[\"b\"]", "1", "e3", None),
            now,
        }])
        .await?;
    assert!(matches!(
        store
            .apply_items(vec![ItemWrite::Replace {
                item: item("[\"a\"]", "1", "e4", None),
                if_match: Some("stale".into()),
                now
            }])
            .await,
        Err(StoreError::PreconditionFailed)
    ));
    let replaced = store
        .apply_items(vec![ItemWrite::Replace {
            item: item("[\"a\"]", "1", "e4", None),
            if_match: Some("e1".into()),
            now,
        }])
        .await?;
    assert!(replaced[0].lsn > created[0].lsn);
    assert_eq!(
        store
            .item(&container, "[\"a\"]", "1", now)
            .await?
            .map(|i| i.etag),
        Some("e4".to_string())
    );
    let upserted = store
        .apply_items(vec![ItemWrite::Upsert {
            item: item("[\"a\"]", "2", "e5", None),
            if_match: None,
            now,
        }])
        .await?;
    assert!(upserted[0].created);
    // An expired item reads as absent and may be created again.
    store
        .apply_items(vec![ItemWrite::Create {
            item: item("[\"a\"]", "3", "e6", Some(now)),
            now: now - 1,
        }])
        .await?;
    assert!(store.item(&container, "[\"a\"]", "3", now).await?.is_none());
    store
        .apply_items(vec![ItemWrite::Create {
            item: item("[\"a\"]", "3", "e7", None),
            now,
        }])
        .await?;

    let all = store.items(&container, None, None, 100, now).await?;
    let keys: Vec<(String, String)> = all
        .iter()
        .map(|i| (i.partition_key.clone(), i.id.clone()))
        .collect();
    assert_eq!(
        keys,
        vec![
            ("[\"a\"]".to_string(), "1".to_string()),
            ("[\"a\"]".to_string(), "2".to_string()),
            ("[\"a\"]".to_string(), "3".to_string()),
            ("[\"b\"]".to_string(), "1".to_string()),
        ]
    );
    let page = store
        .items(&container, None, Some(("[\"a\"]", "2")), 100, now)
        .await?;
    assert_eq!(page.len(), 2);
    let only_b = store
        .items(&container, Some(&["[\"b\"]".to_string()]), None, 100, now)
        .await?;
    assert_eq!(only_b.len(), 1);
    let changed = store
        .items_changed_since(&container, None, replaced[0].lsn - 1, 100, now)
        .await?;
    assert_eq!(
        changed.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(),
        vec!["1", "2", "3"]
    );
    assert!(store.items_lsn().await? >= upserted[0].lsn);

    store
        .apply_items(vec![ItemWrite::Delete {
            container_key: container.clone(),
            partition_key: "[\"b\"]".into(),
            id: "1".into(),
            if_match: None,
            now,
        }])
        .await?;
    assert!(matches!(
        store
            .apply_items(vec![ItemWrite::Delete {
                container_key: container.clone(),
                partition_key: "[\"b\"]".into(),
                id: "1".into(),
                if_match: None,
                now
            }])
            .await,
        Err(StoreError::NotFound)
    ));
    // A group commit's lists of writes: each all or nothing, each seeing the lists before it.
    let mut transaction = store.pool.begin().await?;
    let first = vec![ItemWrite::Create {
        item: item("[\"g\"]", "1", "e1", None),
        now,
    }];
    let failing = vec![
        ItemWrite::Upsert {
            item: item("[\"g\"]", "2", "e2", None),
            if_match: None,
            now,
        },
        ItemWrite::Create {
            item: item("[\"g\"]", "1", "e3", None),
            now,
        },
    ];
    let third = vec![
        ItemWrite::Replace {
            item: item("[\"g\"]", "1", "e4", None),
            if_match: Some("e1".into()),
            now,
        },
        ItemWrite::Delete {
            container_key: container.clone(),
            partition_key: "[\"g\"]".into(),
            id: "1".into(),
            if_match: Some("e4".into()),
            now,
        },
        ItemWrite::Create {
            item: item("[\"g\"]", "3", "e5", None),
            now,
        },
    ];
    let results =
        crate::items::apply_item_lists(&mut transaction, &[&first, &failing, &third]).await?;
    transaction.commit().await?;
    let first_lsn = results[0]
        .as_ref()
        .map(|o| o[0].lsn)
        .expect("the first list applies");
    assert!(
        matches!(results[1], Err(StoreError::AlreadyExists)),
        "{:?}",
        results[1]
    );
    let third_lsns: Vec<i64> = results[2]
        .as_ref()
        .expect("the third list applies")
        .iter()
        .map(|o| o.lsn)
        .collect();
    assert_eq!(
        third_lsns,
        vec![first_lsn + 1, first_lsn + 2, first_lsn + 3]
    );
    assert!(
        store.item(&container, "[\"g\"]", "1", now).await?.is_none(),
        "deleted in the third list"
    );
    assert!(
        store.item(&container, "[\"g\"]", "2", now).await?.is_none(),
        "the failed list wrote nothing"
    );
    assert_eq!(
        store
            .item(&container, "[\"g\"]", "3", now)
            .await?
            .map(|i| (i.etag, i.lsn)),
        Some(("e5".to_string(), first_lsn + 3))
    );
    assert_eq!(store.items_lsn().await?, first_lsn + 3);

    // Deleting the container's resource deletes its items.
    store
        .apply(&ResourceChange {
            deletes: vec![container.clone()],
            ..ResourceChange::default()
        })
        .await?;
    assert!(store
        .items(&container, None, None, 100, now)
        .await?
        .is_empty());
    Ok(())
}

async fn resources(store: &Store, bootstrap: &BootstrapRecord) -> Result<(), StoreError> {
    let group = "/subscriptions/s/resourceGroups/G1";
    let vm_id = format!("{group}/providers/Microsoft.Compute/virtualMachines/Vm1");
    let extension_id = format!("{vm_id}/extensions/ext");
    let other_group = "/subscriptions/s/resourceGroups/G2";
    let other_vm = format!("{other_group}/providers/Microsoft.Compute/virtualMachines/Vm2");
    let mut system_identity = bootstrap.principals[1].0.clone();
    system_identity.object_id = ObjectId::new_random();
    system_identity.client_id = Some(ClientId::new_random());
    system_identity.application_object_id = None;
    system_identity.kind = PrincipalKind::ManagedIdentity;
    system_identity.managed_by = Some(vm_id.clone());
    store
        .apply(&ResourceChange {
            upserts: vec![
                record(group, group, None, "microsoft.resources/resourcegroups"),
                record(&vm_id, group, None, "microsoft.compute/virtualmachines"),
                record(
                    &extension_id,
                    group,
                    Some(&vm_id),
                    "microsoft.compute/virtualmachines/extensions",
                ),
                record(
                    other_group,
                    other_group,
                    None,
                    "microsoft.resources/resourcegroups",
                ),
                record(
                    &other_vm,
                    other_group,
                    None,
                    "microsoft.compute/virtualmachines",
                ),
            ],
            new_principals: vec![system_identity.clone()],
            ..ResourceChange::default()
        })
        .await?;
    let stored = store
        .resource(&vm_id.to_uppercase().to_lowercase())
        .await?
        .expect("vm stored");
    assert_eq!((stored.version, stored.id.as_str()), (1, vm_id.as_str()));
    assert_eq!(
        store
            .resources_in_group(&group.to_lowercase(), None)
            .await?
            .len(),
        2
    );
    assert_eq!(
        store
            .resources_in_group(
                &group.to_lowercase(),
                Some("microsoft.compute/virtualmachines")
            )
            .await?
            .len(),
        1
    );
    assert_eq!(
        store
            .resources_of_type("S", "microsoft.compute/virtualmachines")
            .await?
            .len(),
        2
    );
    assert_eq!(
        store.resource_children(&vm_id.to_lowercase()).await?.len(),
        1
    );
    // The change feed names the batch's keys under its counter value.
    let version = store.resources_version().await?;
    let logged = store.resource_changes_since(version - 1, 100).await?;
    assert!(logged.iter().all(|(at, _)| *at == version), "{logged:?}");
    assert!(logged.iter().any(|(_, key)| *key == vm_id.to_lowercase()));
    assert!(logged
        .iter()
        .any(|(_, key)| *key == extension_id.to_lowercase()));
    assert!(store.resource_changes_since(version, 100).await?.is_empty());
    // Paged listings walk key order from a position, each shape with its own filter.
    use crate::Listing;
    let keys = |records: Vec<ResourceRecord>| {
        records
            .into_iter()
            .map(|record| record.key)
            .collect::<Vec<_>>()
    };
    let vms = Listing::OfType {
        subscription_id: "S".to_string(),
        type_key: "microsoft.compute/virtualmachines".to_string(),
    };
    let first = keys(store.resources_page(&vms, "", 1).await?);
    assert_eq!(first, vec![vm_id.to_lowercase()]);
    let second = keys(store.resources_page(&vms, &first[0], 5).await?);
    assert_eq!(second, vec![other_vm.to_lowercase()]);
    assert!(store.resources_page(&vms, &second[0], 5).await?.is_empty());
    let in_group = Listing::InGroup {
        group_key: group.to_lowercase(),
        type_key: None,
    };
    assert_eq!(
        keys(store.resources_page(&in_group, "", 10).await?),
        vec![vm_id.to_lowercase(), extension_id.to_lowercase()]
    );
    let children = Listing::Children {
        parent_key: vm_id.to_lowercase(),
        type_key: Some("microsoft.compute/virtualmachines/extensions".to_string()),
    };
    assert_eq!(
        keys(store.resources_page(&children, "", 10).await?),
        vec![extension_id.to_lowercase()]
    );
    let top_level = Listing::TopLevel {
        subscription_id: "s".to_string(),
        excluded_type_keys: vec!["microsoft.compute/virtualmachines/extensions".to_string()],
    };
    assert_eq!(
        keys(store.resources_page(&top_level, "", 10).await?),
        vec![vm_id.to_lowercase(), other_vm.to_lowercase()],
        "groups, children and excluded types are left out"
    );
    let without_vms = Listing::TopLevel {
        subscription_id: "s".to_string(),
        excluded_type_keys: vec!["microsoft.compute/virtualmachines".to_string()],
    };
    assert!(store.resources_page(&without_vms, "", 10).await?.is_empty());
    // A subscription's own records (no group), and descendants counted by type under a key.
    let at_subscription = "/subscriptions/s/providers/Microsoft.Resources/deployments/d1";
    store
        .apply(&ResourceChange {
            upserts: vec![ResourceRecord {
                group_key: None,
                ..record(at_subscription, "", None, "microsoft.resources/deployments")
            }],
            ..ResourceChange::default()
        })
        .await?;
    let deployments = Listing::AtSubscription {
        subscription_id: "S".to_string(),
        type_key: "microsoft.resources/deployments".to_string(),
    };
    assert_eq!(
        keys(store.resources_page(&deployments, "", 10).await?),
        vec![at_subscription.to_lowercase()]
    );
    let in_group_only = Listing::AtSubscription {
        subscription_id: "s".to_string(),
        type_key: "microsoft.compute/virtualmachines".to_string(),
    };
    assert!(store
        .resources_page(&in_group_only, "", 10)
        .await?
        .is_empty());
    let extensions = "microsoft.compute/virtualmachines/extensions";
    assert_eq!(
        store
            .resources_count_under("S", extensions, &format!("{}/", vm_id.to_lowercase()))
            .await?,
        1
    );
    assert_eq!(
        store
            .resources_count_under("s", extensions, &format!("{}/", other_vm.to_lowercase()))
            .await?,
        0
    );
    store
        .apply(&ResourceChange {
            deletes: vec![at_subscription.to_lowercase()],
            ..ResourceChange::default()
        })
        .await?;

    // Optimistic concurrency: a stale version or a second insert fails the whole change.
    let mut update = stored.clone();
    update.body = "{\"changed\":true}".to_string();
    store
        .apply(&ResourceChange {
            upserts: vec![update.clone()],
            ..ResourceChange::default()
        })
        .await?;
    let stale = store
        .apply(&ResourceChange {
            upserts: vec![update.clone()],
            ..ResourceChange::default()
        })
        .await;
    assert!(
        matches!(stale, Err(StoreError::PreconditionFailed)),
        "{stale:?}"
    );
    let duplicate = store
        .apply(&ResourceChange {
            upserts: vec![record(&vm_id, group, None, "x")],
            ..ResourceChange::default()
        })
        .await;
    assert!(
        matches!(duplicate, Err(StoreError::PreconditionFailed)),
        "{duplicate:?}"
    );
    assert_eq!(
        store
            .resource(&vm_id.to_lowercase())
            .await?
            .expect("vm")
            .version,
        2
    );

    // Deleting the group cascades to its resources, their children and their identities only.
    let deleted = store
        .apply(&ResourceChange {
            deletes: vec![group.to_lowercase()],
            ..ResourceChange::default()
        })
        .await?;
    assert_eq!(deleted.len(), 3);
    assert!(store
        .resource(&extension_id.to_lowercase())
        .await?
        .is_none());
    assert!(
        store.principal(system_identity.object_id).await?.is_none(),
        "the VM's identity must go with it"
    );
    assert!(store.resource(&other_vm.to_lowercase()).await?.is_some());
    Ok(())
}

#[cfg(test)]
mod tests {
    use sqlx::Connection;

    use super::*;

    #[tokio::test]
    async fn sqlite_passes_the_conformance_suite() {
        let directory = tempfile::tempdir().unwrap();
        let url = format!(
            "sqlite://{}?mode=rwc",
            directory.path().join("openmi.db").display()
        );
        let store = Store::open(&url).await.unwrap();
        run(&store).await.unwrap();
        store.close().await;
        // Reopening applies no migration twice.
        let store = Store::open(&url).await.unwrap();
        assert_eq!(store.tenants().await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn sqlite_refuses_a_newer_schema() {
        let directory = tempfile::tempdir().unwrap();
        let url = format!(
            "sqlite://{}?mode=rwc",
            directory.path().join("openmi.db").display()
        );
        let store = Store::open(&url).await.unwrap();
        sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES (999, 0)")
            .execute(&store.pool)
            .await
            .unwrap();
        store.close().await;
        assert!(matches!(
            Store::open(&url).await,
            Err(StoreError::NewerSchema { found: 999, .. })
        ));
    }

    /// Creates a fresh schema on the test PostgreSQL server and returns a URL bound to it.
    pub(crate) async fn postgres_schema_url() -> String {
        let base = std::env::var("OPENMI_TEST_PG_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string());
        let schema = format!("openmi_store_{}", uuid::Uuid::new_v4().simple());
        sqlx::any::install_default_drivers();
        let mut connection = sqlx::AnyConnection::connect(&base)
            .await
            .unwrap_or_else(|error| panic!("PostgreSQL at {base} is needed by the store tests (scripts/test starts it): {error}"));
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&mut connection)
            .await
            .unwrap();
        let separator = if base.contains('?') { '&' } else { '?' };
        format!("{base}{separator}options=-csearch_path%3D{schema}")
    }

    #[tokio::test]
    async fn postgres_passes_the_conformance_suite() {
        let url = postgres_schema_url().await;
        let store = Store::open(&url).await.unwrap();
        run(&store).await.unwrap();
        store.close().await;
        let store = Store::open(&url).await.unwrap();
        assert_eq!(store.tenants().await.unwrap().len(), 1);
    }
}
