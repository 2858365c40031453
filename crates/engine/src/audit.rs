//! The audit trail, engine side: what a request is (its ids and address), what operation it
//! performs, and the records that say so.
//!
//! The server runs each request inside [`in_request`] and each mutating call inside
//! [`Engine::audited`]. A write made while an operation is open carries the operation's record
//! into its own transaction (`apply_change` and the directory and authorization writes ask
//! [`for_write`]), so the record is committed exactly when the write is; an operation that ends
//! without a committed write (refused, failed, or a write-less action such as `listKeys`) is
//! recorded through the [`AuditSink`] instead, as are sign-ins (tokens issued, failed sign-ins).
//! The sink gathers for 50 ms, then appends in one commit through the store's group-commit
//! writer, and never holds a request up: a kill -9 can lose the last 50 ms of sign-ins and
//! refusals, never a write's record (Entra's sign-in logs, too, arrive minutes after the event).
//!
//! Nothing secret enters a record: operation names, ids, codes and addresses only.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use openmi_store::{AuditFilter, AuditKind, AuditRecord, Store};
use serde_json::{Map, Value};

use crate::{Caller, Engine, EngineError};

/// Who sent a request and under which ids, as the server saw it.
#[derive(Debug, Clone, Default)]
pub struct RequestInfo {
    pub request_id: String,
    pub correlation_id: String,
    pub client_request_id: Option<String>,
    /// The peer's IP address.
    pub client_ip: Option<String>,
    pub method: String,
    /// The request's path (no query: a query may carry secrets).
    pub path: String,
}

tokio::task_local! {
    static REQUEST: RequestInfo;
    static OPERATION: Arc<OpenOperation>;
}

/// Runs `future` as part of the request `info` (for the records it leads to).
pub async fn in_request<F: Future>(info: RequestInfo, future: F) -> F::Output {
    REQUEST.scope(info, future).await
}

/// The request being served, if any.
pub fn current_request() -> Option<RequestInfo> {
    REQUEST.try_with(Clone::clone).ok()
}

/// An operation to record: what it does to what.
#[derive(Debug, Clone)]
pub struct AuditOperation {
    pub kind: AuditKind,
    /// ARM's operation name or Entra's activity name.
    pub operation: String,
    /// The ARM id or directory object it concerns.
    pub resource_id: Option<String>,
    pub subscription_id: Option<String>,
    pub resource_group: Option<String>,
    /// Kind-specific facts (strings only: the Activity Log's properties are strings).
    pub details: Map<String, Value>,
}

impl AuditOperation {
    /// An ARM operation (`{Namespace}/{type}/write|delete|action`) on `resource_id`.
    pub fn arm(operation: impl Into<String>, resource_id: &str) -> AuditOperation {
        let parsed = openmi_model::arm::ArmPath::parse(resource_id).ok();
        AuditOperation {
            kind: AuditKind::Administrative,
            operation: operation.into(),
            resource_id: Some(resource_id.to_string()),
            subscription_id: parsed.as_ref().map(|path| path.subscription.clone()),
            resource_group: parsed.and_then(|path| path.resource_group),
            details: Map::new(),
        }
    }

    /// The operation an ARM request performs, named as the Activity Log names it: a PUT or
    /// PATCH `{type}/write`, a DELETE `{type}/delete`, a POST to `.../{name}/{action}`
    /// `{type}/{action}/action` on `.../{name}`; resource groups are
    /// `Microsoft.Resources/subscriptions/resourceGroups/...`. `None` for reads.
    pub fn for_arm_request(method: &str, path: &str) -> Option<AuditOperation> {
        let verb = match method {
            "PUT" | "PATCH" => "write",
            "DELETE" => "delete",
            "POST" => "action",
            _ => return None,
        };
        let trimmed = path.trim_matches('/');
        let parsed = openmi_model::arm::ArmPath::parse(trimmed).ok();
        let Some(parsed) = parsed else {
            return Some(AuditOperation::arm(
                format!("Microsoft.Resources/{verb}"),
                &format!("/{trimmed}"),
            ));
        };
        let part = parsed.extension.as_ref().or(parsed.provider.as_ref());
        let (operation, target) = match (part, verb) {
            (Some(part), "action") => {
                // The action is the last segment (a type with no name in the parsed path).
                let action = part
                    .segments
                    .last()
                    .filter(|(_, name)| name.is_none())
                    .map(|(segment, _)| segment.clone());
                match action {
                    Some(action) => {
                        let mut owner = part.clone();
                        owner.segments.pop();
                        let base = if owner.segments.is_empty() {
                            owner.namespace.clone()
                        } else {
                            owner.type_name()
                        };
                        let target = trimmed
                            .rsplit_once('/')
                            .map(|(head, _)| format!("/{head}"))
                            .unwrap_or_else(|| format!("/{trimmed}"));
                        (format!("{base}/{action}/action"), target)
                    }
                    None => (format!("{}/action", part.type_name()), parsed.to_id()),
                }
            }
            (Some(part), verb) => (format!("{}/{verb}", part.type_name()), parsed.to_id()),
            (None, verb) if parsed.resource_group.is_some() => (
                format!("Microsoft.Resources/subscriptions/resourceGroups/{verb}"),
                parsed.to_id(),
            ),
            (None, verb) => (
                format!("Microsoft.Resources/subscriptions/{verb}"),
                parsed.to_id(),
            ),
        };
        Some(AuditOperation::arm(operation, &target))
    }

    /// A directory change named as Entra's audit log names it (`Add application`).
    pub fn directory(activity: &str, target: impl Into<String>) -> AuditOperation {
        AuditOperation {
            kind: AuditKind::Directory,
            operation: activity.to_string(),
            resource_id: Some(target.into()),
            subscription_id: None,
            resource_group: None,
            details: Map::new(),
        }
    }

    /// Adds a fact to the record.
    pub fn with(mut self, key: &str, value: impl Into<String>) -> AuditOperation {
        self.details
            .insert(key.to_string(), Value::String(value.into()));
        self
    }
}

/// The operation a task is performing, and whether a write has carried its record.
struct OpenOperation {
    record: std::sync::Mutex<AuditRecord>,
    written: AtomicBool,
}

impl OpenOperation {
    fn record(&self) -> AuditRecord {
        match self.record.lock() {
            Ok(record) => record.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

/// Names what the open operation created, once it is known (a new application's object id).
pub fn retarget(target: impl Into<String>) {
    let target = target.into();
    let _ = OPERATION.try_with(|open| {
        if let Ok(mut record) = open.record.lock() {
            record.resource_id = Some(target);
        }
    });
}

/// The record a write about to be committed should carry: the open operation's, unless a write
/// of the same operation has carried it already (one record per operation).
pub(crate) fn for_write() -> Option<AuditRecord> {
    OPERATION
        .try_with(|open| {
            (!open.written.load(Ordering::SeqCst)).then(|| AuditRecord {
                at: now_micros(),
                ..open.record()
            })
        })
        .ok()
        .flatten()
}

/// Notes that a write carrying the open operation's record committed.
pub(crate) fn written() {
    let _ = OPERATION.try_with(|open| open.written.store(true, Ordering::SeqCst));
}

/// Notes the write committed if it carried `record` and wrote (`wrote`: a delete of nothing
/// stores no record).
pub(crate) fn written_if(record: &Option<AuditRecord>, wrote: bool) {
    if record.is_some() && wrote {
        written();
    }
}

/// Microseconds since the epoch, from the system clock (records are ordered by it).
pub(crate) fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_micros() as i64)
        .unwrap_or_default()
}

/// A record skeleton carrying the current request's ids.
fn base_record(kind: AuditKind, operation: String) -> AuditRecord {
    let request = current_request();
    AuditRecord {
        id: uuid::Uuid::new_v4().to_string(),
        at: now_micros(),
        kind,
        operation,
        status: "Succeeded".to_string(),
        status_code: None,
        caller_id: None,
        caller_name: None,
        subscription_id: None,
        resource_group: None,
        resource_id: None,
        correlation_id: request
            .as_ref()
            .map(|request| request.correlation_id.clone()),
        request_id: request.as_ref().map(|request| request.request_id.clone()),
        client_ip: request
            .as_ref()
            .and_then(|request| request.client_ip.clone()),
        details: String::new(),
    }
}

fn details_text(mut details: Map<String, Value>) -> String {
    if let Some(request) = current_request() {
        details
            .entry("httpMethod")
            .or_insert(Value::String(request.method));
        details.entry("uri").or_insert(Value::String(request.path));
        if let Some(id) = request.client_request_id {
            details
                .entry("clientRequestId")
                .or_insert(Value::String(id));
        }
    }
    Value::Object(details).to_string()
}

/// What a sign-in was: the grant, the principal it was for, the client, the resource.
#[derive(Debug, Clone, Default)]
pub struct SignInEvent {
    /// `client_credentials`, `password`, `refresh_token`, `authorization_code`, `device_code`,
    /// `managed_identity`, `sign_in_page`.
    pub grant: &'static str,
    /// `interactiveUser`, `nonInteractiveUser`, `servicePrincipal` or `managedIdentity`.
    pub event_type: &'static str,
    /// The principal's object id, when known.
    pub principal_id: Option<String>,
    /// The user's sign-in name as typed, or the principal's name.
    pub principal_name: Option<String>,
    /// The client's application id.
    pub app_id: Option<String>,
    /// The resource (audience) asked for.
    pub resource: Option<String>,
    /// A managed identity's resource id (`xms_mirid`), and the VM whose agent asked.
    pub identity_resource_id: Option<String>,
    pub vm_id: Option<String>,
}

/// The batched appender of records that carry no write of their own.
#[derive(Debug)]
pub(crate) struct AuditSink {
    sender: Option<tokio::sync::mpsc::Sender<AuditRecord>>,
    /// Records dropped because the queue was full (the database unreachable for long).
    dropped: AtomicU64,
    /// Records appended.
    appended: Arc<AtomicU64>,
}

/// Records waiting to be appended, at most; beyond it new ones are dropped and counted.
const QUEUE: usize = 65_536;
/// Most records one append commits.
const BATCH: usize = 4_000;
/// How long the first record of an append waits for others.
const LINGER: Duration = Duration::from_millis(50);

impl AuditSink {
    /// A sink appending to `store` (`None`: auditing is off), pruning records older than
    /// `retention`.
    pub(crate) fn start(store: Option<Store>, retention: Duration) -> AuditSink {
        let appended = Arc::new(AtomicU64::new(0));
        let Some(store) = store else {
            return AuditSink {
                sender: None,
                dropped: AtomicU64::new(0),
                appended,
            };
        };
        let (sender, receiver) = tokio::sync::mpsc::channel(QUEUE);
        tokio::spawn(append_loop(store.clone(), receiver, appended.clone()));
        tokio::spawn(prune_loop(store, retention));
        AuditSink {
            sender: Some(sender),
            dropped: AtomicU64::new(0),
            appended,
        }
    }

    pub(crate) fn enabled(&self) -> bool {
        self.sender.is_some()
    }

    fn push(&self, record: AuditRecord) {
        if let Some(sender) = &self.sender {
            if sender.try_send(record).is_err() {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    pub(crate) fn appended(&self) -> u64 {
        self.appended.load(Ordering::Relaxed)
    }
}

/// Takes what is queued (up to `BATCH`) and appends it in one commit; a failed append is retried
/// with the same records until the database answers (the queue fills meanwhile, then drops).
async fn append_loop(
    store: Store,
    mut receiver: tokio::sync::mpsc::Receiver<AuditRecord>,
    appended: Arc<AtomicU64>,
) {
    while let Some(first) = receiver.recv().await {
        // Gather for a moment: a commit (an fsync on SQLite) per handful of tokens would cost
        // the token path a quarter of its rate (scripts/bench-audit).
        tokio::time::sleep(LINGER).await;
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match receiver.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let mut delay = Duration::from_millis(100);
        loop {
            let count = batch.len() as u64;
            match store.append_audit(batch.clone()).await {
                Ok(()) => {
                    appended.fetch_add(count, Ordering::Relaxed);
                    break;
                }
                Err(error) => {
                    tracing::warn!(error = %error, records = count, "audit records not appended yet; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

/// Deletes records past the retention, at start and hourly.
async fn prune_loop(store: Store, retention: Duration) {
    loop {
        let before = now_micros() - retention.as_micros() as i64;
        match store.prune_audit(before).await {
            Ok(0) => {}
            Ok(count) => tracing::info!(count, "audit records past their retention deleted"),
            Err(error) => tracing::warn!(error = %error, "audit retention not applied"),
        }
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
}

impl Engine {
    /// Runs `operation` as the audited operation `what` of `caller`: a write inside carries the
    /// record into its transaction; otherwise the outcome is appended when it ends (Failed with
    /// the error's code, or Succeeded for a write-less success).
    pub async fn audited<T, E, F>(
        &self,
        caller: Option<&Caller>,
        what: AuditOperation,
        operation: F,
    ) -> Result<T, E>
    where
        E: AuditFailure,
        F: Future<Output = Result<T, E>>,
    {
        if !self.inner.audit.enabled() {
            return operation.await;
        }
        let kind = what.kind;
        let mut record = base_record(kind, what.operation);
        record.resource_id = what.resource_id;
        record.subscription_id = what.subscription_id;
        record.resource_group = what.resource_group;
        if let Some(caller) = caller {
            record.caller_id = Some(caller.object_id.to_string());
            record.caller_name = Some(caller_name(caller));
        }
        let mut details = what.details;
        if let Some(caller) = caller {
            details.insert("appId".to_string(), Value::String(caller.client_id.clone()));
            details.insert(
                "principalType".to_string(),
                Value::String(
                    if caller.is_user {
                        "User"
                    } else {
                        "ServicePrincipal"
                    }
                    .to_string(),
                ),
            );
        }
        record.details = details_text(details);
        let open = Arc::new(OpenOperation {
            record: std::sync::Mutex::new(record),
            written: AtomicBool::new(false),
        });
        let result = OPERATION.scope(open.clone(), operation).await;
        if !open.written.load(Ordering::SeqCst) {
            let mut record = open.record();
            record.at = now_micros();
            if let Err(error) = &result {
                record.status = "Failed".to_string();
                record.status_code = Some(error.audit_code(kind));
            }
            self.inner.audit.push(record);
        }
        result
    }

    /// Records a sign-in: a token issued (`failure` None) or refused.
    pub(crate) fn audit_sign_in(&self, event: SignInEvent, failure: Option<&EngineError>) {
        if !self.inner.audit.enabled() {
            return;
        }
        let mut record = base_record(AuditKind::SignIn, event.grant.to_string());
        record.caller_id = event.principal_id;
        record.caller_name = event.principal_name;
        record.resource_id = event.resource;
        if let Some(error) = failure {
            record.status = "Failed".to_string();
            record.status_code = Some(format!("AADSTS{}", error.aadsts()));
        }
        let mut details = Map::new();
        details.insert(
            "signInEventType".to_string(),
            Value::String(event.event_type.to_string()),
        );
        if let Some(app_id) = event.app_id {
            details.insert("appId".to_string(), Value::String(app_id));
        }
        if let Some(mirid) = event.identity_resource_id {
            details.insert("identityResourceId".to_string(), Value::String(mirid));
        }
        if let Some(vm) = event.vm_id {
            details.insert("vmId".to_string(), Value::String(vm));
        }
        if let Some(error) = failure {
            details.insert(
                "failureReason".to_string(),
                Value::String(error.to_string()),
            );
        }
        record.details = Value::Object(details).to_string();
        self.inner.audit.push(record);
    }

    /// Audit records dropped because the append queue was full, and appended.
    pub fn audit_counts(&self) -> (u64, u64) {
        (self.inner.audit.dropped(), self.inner.audit.appended())
    }
}

/// A failure as the audit log records it: its code in the terms of the record's kind.
pub trait AuditFailure {
    fn audit_code(&self, kind: AuditKind) -> String;
}

impl AuditFailure for EngineError {
    fn audit_code(&self, kind: AuditKind) -> String {
        match kind {
            AuditKind::SignIn => format!("AADSTS{}", self.aadsts()),
            _ => self
                .arm()
                .map(|failure| failure.code)
                .unwrap_or_else(|| "InternalServerError".to_string()),
        }
    }
}

/// As the Activity Log's `caller` shows a principal: a user's sign-in name, else the object id.
fn caller_name(caller: &Caller) -> String {
    match (&caller.name, caller.is_user) {
        (Some(name), true) => name.clone(),
        _ => caller.object_id.to_string(),
    }
}

/// A page of audit records and where the next begins (`None`: nothing older matches).
#[derive(Debug, Clone)]
pub struct AuditPage {
    pub records: Vec<AuditRecord>,
    pub next: Option<(i64, String)>,
}

impl Engine {
    /// Audit records matching `filter`, newest first, that `caller` may read: Administrative
    /// events need `Microsoft.Insights/eventtypes/values/read` at the event's resource (Reader
    /// anywhere above it), as the Activity Log asks; sign-in and directory records need the
    /// directory's readers' right (an Owner, as directory writes do; Entra asks a reports
    /// role).
    pub async fn audit_events(
        &self,
        caller: &Caller,
        filter: &AuditFilter,
        limit: usize,
    ) -> Result<AuditPage, EngineError> {
        let limit = limit.clamp(1, 1000);
        // One more than asked tells whether a next page exists (no link to an empty page).
        let wanted = limit + 1;
        if filter
            .kinds
            .iter()
            .any(|kind| *kind != AuditKind::Administrative)
        {
            self.require_directory_writer(caller).await?;
        }
        let mut cursor = filter.clone();
        let mut records = Vec::new();
        loop {
            let page = self.store().audit_page(&cursor, wanted).await?;
            let full = page.len() == wanted;
            let last = page.last().map(|record| (record.at, record.id.clone()));
            for record in page {
                let readable = record.kind != AuditKind::Administrative || {
                    let scope = record.resource_id.clone().unwrap_or_else(|| {
                        format!(
                            "/subscriptions/{}",
                            record.subscription_id.as_deref().unwrap_or_default()
                        )
                    });
                    self.can(caller, "Microsoft.Insights/eventtypes/values/read", &scope)
                };
                if readable {
                    records.push(record);
                    if records.len() == wanted {
                        records.pop();
                        let next = records.last().map(|record| (record.at, record.id.clone()));
                        return Ok(AuditPage { records, next });
                    }
                }
            }
            match (full, last) {
                (true, Some(last)) => cursor.before = Some(last),
                _ => {
                    return Ok(AuditPage {
                        records,
                        next: None,
                    })
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::AuditOperation;

    fn named(method: &str, path: &str) -> Option<(String, String)> {
        AuditOperation::for_arm_request(method, path).map(|operation| {
            (
                operation.operation,
                operation.resource_id.unwrap_or_default(),
            )
        })
    }

    #[test]
    fn arm_requests_are_named_as_the_activity_log_names_them() {
        let group = "/subscriptions/s/resourceGroups/g";
        assert_eq!(named("GET", group), None);
        assert_eq!(
            named("PUT", group),
            Some((
                "Microsoft.Resources/subscriptions/resourceGroups/write".into(),
                group.into()
            ))
        );
        let identity =
            format!("{group}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/i");
        assert_eq!(
            named("DELETE", &identity).unwrap().0,
            "Microsoft.ManagedIdentity/userAssignedIdentities/delete"
        );
        let account = format!("{group}/providers/Microsoft.DocumentDB/databaseAccounts/a");
        assert_eq!(
            named("POST", &format!("{account}/listKeys")),
            Some((
                "Microsoft.DocumentDB/databaseAccounts/listKeys/action".into(),
                account.clone()
            ))
        );
        let assignment = format!("{group}/providers/Microsoft.Authorization/roleAssignments/r");
        assert_eq!(
            named("PUT", &assignment).unwrap().0,
            "Microsoft.Authorization/roleAssignments/write"
        );
        assert_eq!(
            named(
                "POST",
                "/subscriptions/s/providers/Microsoft.Compute/register"
            )
            .unwrap()
            .0,
            "Microsoft.Compute/register/action"
        );
        let extension =
            format!("{group}/providers/Microsoft.Compute/virtualMachines/v/extensions/e");
        assert_eq!(
            named("PATCH", &extension).unwrap().0,
            "Microsoft.Compute/virtualMachines/extensions/write"
        );
    }
}
