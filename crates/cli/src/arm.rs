//! A small ARM client for the verbs: GET/PUT/PATCH/DELETE of JSON at an ARM path with an
//! `api-version`, paging through `nextLink`, and waiting for long-running operations the way
//! azure-mgmt-core's `ARMPolling` does (protocol notes §4.6).
//!
//! It also builds the ARM paths and resource ids the verbs use, and resolves the subscription
//! (the session's, or `--subscription` by id or name).

use std::time::Duration;

use anyhow::anyhow;
use clap::Args;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::client::{Client, Reply};
use crate::output::OutputArgs;

/// api-version sent for resource groups (az 2.91 sends it).
pub const API_RESOURCE_GROUPS: &str = "2024-11-01";
/// api-version sent for user-assigned identities.
pub const API_IDENTITIES: &str = "2023-01-31";
/// api-version sent for virtual machines.
pub const API_VIRTUAL_MACHINES: &str = "2024-11-01";
/// api-version sent for role definitions and role assignments (Microsoft.Authorization).
pub const API_AUTHORIZATION: &str = "2022-04-01";
/// api-version sent for generic access to a resource by id.
pub const API_GENERIC: &str = "2022-09-01";
/// What az 2.91 sends for deployments.
pub const API_DEPLOYMENTS: &str = "2024-11-01";
/// api-version sent for the subscription list.
const API_SUBSCRIPTIONS: &str = "2022-12-01";

/// The longest a command waits for a long-running operation.
const POLL_DEADLINE: Duration = Duration::from_secs(600);
/// The delay between polls when the server sends no `Retry-After`.
const POLL_DEFAULT_DELAY: Duration = Duration::from_secs(1);
/// The longest delay honoured from a `Retry-After` header.
const POLL_MAX_DELAY: Duration = Duration::from_secs(30);

/// The options of every ARM verb: output, query and subscription, all global as in az.
#[derive(Debug, Clone, Args)]
pub struct ArmArgs {
    #[command(flatten)]
    pub output: OutputArgs,
    /// Name or id of the subscription; default: the one `openmi login` chose.
    #[arg(long, global = true, help_heading = "Global Arguments")]
    pub subscription: Option<String>,
}

/// A signed-in ARM client for one subscription.
pub struct Arm {
    client: Client,
    token: String,
    subscription: String,
}

impl Arm {
    /// Signs in from the saved session and picks the subscription: `--subscription` (an id, or a
    /// display name looked up in the subscription list) or the session's.
    pub async fn connect(subscription: Option<&str>) -> anyhow::Result<Arm> {
        let (session, client) = crate::signed_in().await?;
        let mut arm = Arm {
            client,
            token: session.access_token().to_string(),
            subscription: session.subscription_id.clone(),
        };
        match subscription {
            Some(wanted) => arm.subscription = arm.resolve_subscription(wanted).await?,
            None if arm.subscription.is_empty() => {
                return Err(anyhow!(
                    "the session has no subscription: run `openmi login` again"
                ))
            }
            None => {}
        }
        Ok(arm)
    }

    async fn resolve_subscription(&self, wanted: &str) -> anyhow::Result<String> {
        if uuid::Uuid::parse_str(wanted).is_ok() {
            return Ok(wanted.to_string());
        }
        let subscriptions = self
            .list(&format!("/subscriptions?api-version={API_SUBSCRIPTIONS}"))
            .await?;
        subscriptions
            .iter()
            .find(|subscription| {
                subscription
                    .get("displayName")
                    .and_then(Value::as_str)
                    .is_some_and(|name| name.eq_ignore_ascii_case(wanted))
            })
            .and_then(|subscription| subscription.get("subscriptionId"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| {
                anyhow!("Subscription '{wanted}' not found. Check the spelling and casing and try again.")
            })
    }

    /// The subscription id in use.
    pub fn subscription(&self) -> &str {
        &self.subscription
    }

    /// `/subscriptions/{sub}`.
    pub fn subscription_path(&self) -> String {
        format!("/subscriptions/{}", segment(&self.subscription))
    }

    /// A group's resource id, with ARM's `resourceGroups` casing.
    pub fn group_id(&self, group: &str) -> String {
        format!(
            "{}/resourceGroups/{}",
            self.subscription_path(),
            segment(group)
        )
    }

    /// A resource id in a group: `.../providers/{namespace}/{type}/{name}`, where `type` may hold
    /// a parent path (`virtualMachines/vm1/extensions`).
    pub fn resource_id(&self, group: &str, provider_type: &str, name: &str) -> String {
        format!(
            "{}/providers/{provider_type}/{}",
            self.group_id(group),
            segment(name)
        )
    }

    /// GET the JSON at `path`.
    pub async fn get(&self, path: &str, api_version: &str) -> anyhow::Result<Value> {
        let reply = self
            .call(Method::GET, &with_api_version(path, api_version), None)
            .await?;
        Ok(reply.body)
    }

    /// Whether `path` exists: HEAD, 2xx is true and 404 false.
    pub async fn exists(&self, path: &str, api_version: &str) -> anyhow::Result<bool> {
        let reply = self
            .client
            .request(
                Method::HEAD,
                &with_api_version(path, api_version),
                &self.token,
                None,
            )
            .await?;
        match reply.status {
            status if status.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(reply.error()),
        }
    }

    /// GET a Microsoft Graph path (`/v1.0/...`, no api-version) on the same server, with the
    /// same token (openmi's Graph accepts the ARM audience, as `ad sp create-for-rbac` relies on).
    pub async fn graph_get(&self, path: &str) -> anyhow::Result<Value> {
        Ok(self.call(Method::GET, path, None).await?.body)
    }

    /// POST JSON to a Microsoft Graph path on the same server.
    pub async fn graph_post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        Ok(self.call(Method::POST, path, Some(body)).await?.body)
    }

    /// Every item of a list, following `nextLink`.
    pub async fn list_at(&self, path: &str, api_version: &str) -> anyhow::Result<Vec<Value>> {
        self.list(&with_api_version(path, api_version)).await
    }

    async fn list(&self, first_page: &str) -> anyhow::Result<Vec<Value>> {
        let mut items = Vec::new();
        let mut next = Some(first_page.to_string());
        while let Some(page_url) = next.take() {
            let page = self.call(Method::GET, &page_url, None).await?.body;
            if let Some(values) = page.get("value").and_then(Value::as_array) {
                items.extend(values.iter().cloned());
            }
            next = page
                .get("nextLink")
                .and_then(Value::as_str)
                .filter(|link| !link.is_empty())
                .map(str::to_string);
        }
        Ok(items)
    }

    /// The first `max` items of a list that `keep` accepts, following ARM's `nextLink` or
    /// Graph's `@odata.nextLink` (`first_page` is a full path with its query); no page is read
    /// once `max` items are kept.
    pub async fn list_up_to(
        &self,
        first_page: &str,
        max: usize,
        keep: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Vec<Value>> {
        let mut items = Vec::new();
        let mut next = Some(first_page.to_string());
        while let Some(page_url) = next.take() {
            let page = self.call(Method::GET, &page_url, None).await?.body;
            for item in page
                .get("value")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if items.len() == max {
                    return Ok(items);
                }
                if keep(item) {
                    items.push(item.clone());
                }
            }
            if items.len() == max {
                break;
            }
            next = ["nextLink", "@odata.nextLink"]
                .iter()
                .find_map(|key| page.get(*key).and_then(Value::as_str))
                .filter(|link| !link.is_empty())
                .map(str::to_string);
        }
        Ok(items)
    }

    /// PUT `body` at `path`; returns the resource once the write has finished.
    pub async fn put(&self, path: &str, api_version: &str, body: &Value) -> anyhow::Result<Value> {
        let url = with_api_version(path, api_version);
        let reply = self.call(Method::PUT, &url, Some(body)).await?;
        self.finish_write(&url, reply).await
    }

    /// PUT a body given as JSON text; returns the resource once the write has finished.
    pub async fn put_text(
        &self,
        path: &str,
        api_version: &str,
        body: String,
    ) -> anyhow::Result<Value> {
        let url = with_api_version(path, api_version);
        let reply = self
            .client
            .request_text(Method::PUT, &url, &self.token, body)
            .await?;
        if !reply.status.is_success() {
            return Err(reply.error());
        }
        self.finish_write(&url, reply).await
    }

    /// PUT a body given as JSON text and return at once (`--no-wait`).
    pub async fn put_text_no_wait(
        &self,
        path: &str,
        api_version: &str,
        body: String,
    ) -> anyhow::Result<Value> {
        let url = with_api_version(path, api_version);
        let reply = self
            .client
            .request_text(Method::PUT, &url, &self.token, body)
            .await?;
        if !reply.status.is_success() {
            return Err(reply.error());
        }
        Ok(reply.body)
    }

    /// POST a body given as JSON text (`validate`, `whatIf`); waits for a long-running answer.
    pub async fn post_text(
        &self,
        path: &str,
        api_version: &str,
        body: String,
    ) -> anyhow::Result<Value> {
        let url = with_api_version(path, api_version);
        let reply = self
            .client
            .request_text(Method::POST, &url, &self.token, body)
            .await?;
        if !reply.status.is_success() {
            return Err(reply.error());
        }
        if let Some(final_body) = self.wait(&reply).await? {
            return Ok(final_body);
        }
        Ok(reply.body)
    }

    /// POST with no body; the answer's JSON.
    pub async fn post_empty(&self, path: &str, api_version: &str) -> anyhow::Result<Value> {
        let url = with_api_version(path, api_version);
        Ok(self
            .call(Method::POST, &url, Some(&Value::Object(Default::default())))
            .await?
            .body)
    }

    /// PATCH `body` at `path`; returns the resource once the write has finished.
    pub async fn patch(
        &self,
        path: &str,
        api_version: &str,
        body: &Value,
    ) -> anyhow::Result<Value> {
        let url = with_api_version(path, api_version);
        let reply = self.call(Method::PATCH, &url, Some(body)).await?;
        self.finish_write(&url, reply).await
    }

    /// DELETE `path`; with `wait`, until the operation has finished.
    pub async fn delete(&self, path: &str, api_version: &str, wait: bool) -> anyhow::Result<()> {
        let url = with_api_version(path, api_version);
        let reply = self.call(Method::DELETE, &url, None).await?;
        if wait {
            self.wait(&reply).await?;
        }
        Ok(())
    }

    /// Sends one request; a non-2xx reply is an error worded as the server wrote it.
    async fn call(
        &self,
        method: Method,
        path_or_url: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Reply> {
        let reply = self
            .client
            .request(method, path_or_url, &self.token, body)
            .await?;
        if reply.status.is_success() {
            Ok(reply)
        } else {
            Err(reply.error())
        }
    }

    /// After a PUT or PATCH: waits if the server started a long-running operation, then returns
    /// the resource (read again when the first reply did not carry it finished).
    async fn finish_write(&self, url: &str, reply: Reply) -> anyhow::Result<Value> {
        let started_operation = reply.header("azure-asyncoperation").is_some()
            || (reply.status == StatusCode::ACCEPTED && reply.header("location").is_some());
        if started_operation {
            if let Some(final_body) = self.wait(&reply).await? {
                if final_body.get("id").is_some() {
                    return Ok(final_body);
                }
            }
            return Ok(self.call(Method::GET, url, None).await?.body);
        }
        if reply.status == StatusCode::CREATED || reply.status == StatusCode::ACCEPTED {
            let state = reply
                .body
                .pointer("/properties/provisioningState")
                .and_then(Value::as_str)
                .unwrap_or("Succeeded");
            if !is_terminal(state) {
                return self.poll_provisioning_state(url).await;
            }
        }
        Ok(reply.body)
    }

    /// Waits for the operation a reply started (`Azure-AsyncOperation`, else `Location`); returns
    /// the last body read from a `Location` poll, if any. Failure of the operation is an error.
    async fn wait(&self, reply: &Reply) -> anyhow::Result<Option<Value>> {
        let started = std::time::Instant::now();
        let mut delay = retry_after(reply);
        if let Some(status_url) = reply.header("azure-asyncoperation").map(str::to_string) {
            loop {
                check_deadline(started)?;
                tokio::time::sleep(delay).await;
                let poll = self.call(Method::GET, &status_url, None).await?;
                let status = poll
                    .body
                    .get("status")
                    .and_then(Value::as_str)
                    .unwrap_or("InProgress");
                if status.eq_ignore_ascii_case("Succeeded") {
                    return Ok(None);
                }
                if is_terminal(status) {
                    return Err(operation_error(&poll.body, status));
                }
                delay = retry_after(&poll);
            }
        }
        if reply.status != StatusCode::ACCEPTED {
            return Ok(None);
        }
        let Some(location) = reply.header("location").map(str::to_string) else {
            return Ok(None);
        };
        loop {
            check_deadline(started)?;
            tokio::time::sleep(delay).await;
            let poll = self.call(Method::GET, &location, None).await?;
            if poll.status != StatusCode::ACCEPTED {
                return Ok(Some(poll.body));
            }
            delay = retry_after(&poll);
        }
    }

    /// Polls a resource until its `provisioningState` is terminal.
    async fn poll_provisioning_state(&self, url: &str) -> anyhow::Result<Value> {
        let started = std::time::Instant::now();
        loop {
            check_deadline(started)?;
            tokio::time::sleep(POLL_DEFAULT_DELAY).await;
            let resource = self.call(Method::GET, url, None).await?.body;
            let state = resource
                .pointer("/properties/provisioningState")
                .and_then(Value::as_str)
                .unwrap_or("Succeeded");
            if state.eq_ignore_ascii_case("Succeeded") {
                return Ok(resource);
            }
            if is_terminal(state) {
                return Err(anyhow!("the operation ended in state {state}"));
            }
        }
    }
}

fn is_terminal(state: &str) -> bool {
    ["Succeeded", "Failed", "Canceled"]
        .iter()
        .any(|terminal| state.eq_ignore_ascii_case(terminal))
}

fn check_deadline(started: std::time::Instant) -> anyhow::Result<()> {
    if started.elapsed() > POLL_DEADLINE {
        return Err(anyhow!(
            "the operation did not finish within {} seconds",
            POLL_DEADLINE.as_secs()
        ));
    }
    Ok(())
}

fn retry_after(reply: &Reply) -> Duration {
    reply
        .header("retry-after")
        .and_then(|seconds| seconds.trim().parse::<u64>().ok())
        .map_or(POLL_DEFAULT_DELAY, |seconds| {
            Duration::from_secs(seconds).min(POLL_MAX_DELAY)
        })
}

fn operation_error(body: &Value, status: &str) -> anyhow::Error {
    match body.get("error") {
        Some(error @ Value::Object(_)) => {
            // az prints the error and, for a failed deployment, each inner error under it.
            let line = |error: &Value| {
                format!(
                    "({}) {}",
                    error
                        .get("code")
                        .and_then(Value::as_str)
                        .unwrap_or_default(),
                    error
                        .get("message")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                )
            };
            let mut text = line(error);
            for detail in error
                .get("details")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                text.push('\n');
                text.push_str(&line(detail));
            }
            anyhow!(text)
        }
        _ => anyhow!("the operation ended in state {status}"),
    }
}

/// `path` with `api-version` appended to its query.
pub fn with_api_version(path: &str, api_version: &str) -> String {
    let separator = if path.contains('?') { '&' } else { '?' };
    format!("{path}{separator}api-version={api_version}")
}

/// One path segment, percent-encoded where a name could break the path or the query.
pub fn segment(name: &str) -> String {
    let mut encoded = String::with_capacity(name.len());
    for byte in name.bytes() {
        let keep = byte.is_ascii_alphanumeric() || b"-._~()!$&'*+,;=:@".contains(&byte);
        if keep {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// A query-string value, percent-encoded but for the unreserved characters (so an OData
/// `$filter` such as `roleName eq 'Reader'` survives any server's query parser).
pub fn query_value(value: &str) -> String {
    let mut encoded = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// `--tags k=v k2=v2` as az reads them: a JSON object, each value after the first `=` (empty when
/// there is none); a lone empty argument gives no tags.
pub fn parse_tags(tags: &[String]) -> Value {
    let mut object = serde_json::Map::new();
    for tag in tags.iter().filter(|tag| !tag.is_empty()) {
        let (key, value) = tag.split_once('=').unwrap_or((tag.as_str(), ""));
        object.insert(key.to_string(), Value::String(value.to_string()));
    }
    Value::Object(object)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Serves the replies `make_replies` writes for the server's URL, in order, one per
    /// connection, on a loopback port; returns the URL and a task giving the request lines read.
    async fn canned_server(
        make_replies: impl FnOnce(&str) -> Vec<String>,
    ) -> (String, tokio::task::JoinHandle<Vec<String>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let replies = make_replies(&url);
        let handle = tokio::spawn(async move {
            let mut request_lines = Vec::new();
            for reply in replies {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    socket.read_exact(&mut byte).await.unwrap();
                    head.push(byte[0]);
                }
                let head = String::from_utf8(head).unwrap();
                let length = head
                    .lines()
                    .filter_map(|line| {
                        let (name, value) = line.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse::<usize>().unwrap())
                    })
                    .next()
                    .unwrap_or(0);
                let mut body = vec![0u8; length];
                socket.read_exact(&mut body).await.unwrap();
                request_lines.push(head.lines().next().unwrap().to_string());
                socket.write_all(reply.as_bytes()).await.unwrap();
                socket.shutdown().await.unwrap();
            }
            request_lines
        });
        (url, handle)
    }

    fn reply(status: &str, headers: &[(&str, String)], body: &str) -> String {
        let mut text = format!(
            "HTTP/1.1 {status}\r\nconnection: close\r\ncontent-length: {}\r\n",
            body.len()
        );
        for (name, value) in headers {
            text.push_str(&format!("{name}: {value}\r\n"));
        }
        text.push_str("\r\n");
        text.push_str(body);
        text
    }

    fn arm_for(url: &str) -> Arm {
        Arm {
            client: Client::new(url, None).unwrap(),
            token: "token".to_string(),
            subscription: "s".to_string(),
        }
    }

    fn now() -> (&'static str, String) {
        ("retry-after", "0".to_string())
    }

    #[tokio::test]
    async fn put_waits_for_the_async_operation_then_reads_the_resource() {
        let (url, server) = canned_server(|url| {
            let status_url = format!("{url}/operations/1");
            vec![
                reply(
                    "201 Created",
                    &[("azure-asyncoperation", status_url), now()],
                    r#"{"properties":{"provisioningState":"Creating"}}"#,
                ),
                reply("200 OK", &[now()], r#"{"status":"InProgress"}"#),
                reply("200 OK", &[], r#"{"status":"Succeeded"}"#),
                reply(
                    "200 OK",
                    &[],
                    r#"{"id":"/x","properties":{"provisioningState":"Succeeded"}}"#,
                ),
            ]
        })
        .await;
        let resource = arm_for(&url).put("/x", "1", &json!({})).await.unwrap();
        assert_eq!(resource["id"], "/x");
        assert_eq!(
            server.await.unwrap(),
            [
                "PUT /x?api-version=1 HTTP/1.1",
                "GET /operations/1 HTTP/1.1",
                "GET /operations/1 HTTP/1.1",
                "GET /x?api-version=1 HTTP/1.1"
            ]
        );
    }

    #[tokio::test]
    async fn delete_follows_location_until_it_stops_answering_202() {
        let (url, server) = canned_server(|url| {
            vec![
                reply(
                    "202 Accepted",
                    &[("location", format!("{url}/operations/2")), now()],
                    "",
                ),
                reply("202 Accepted", &[now()], ""),
                reply("204 No Content", &[], ""),
            ]
        })
        .await;
        arm_for(&url).delete("/rg", "1", true).await.unwrap();
        assert_eq!(
            server.await.unwrap(),
            [
                "DELETE /rg?api-version=1 HTTP/1.1",
                "GET /operations/2 HTTP/1.1",
                "GET /operations/2 HTTP/1.1"
            ]
        );
    }

    #[tokio::test]
    async fn a_failed_operation_is_an_error_with_its_code() {
        let (url, _server) = canned_server(|url| {
            vec![
                reply(
                    "202 Accepted",
                    &[("azure-asyncoperation", format!("{url}/op")), now()],
                    "",
                ),
                reply(
                    "200 OK",
                    &[],
                    r#"{"status":"Failed","error":{"code":"Conflict","message":"no"}}"#,
                ),
            ]
        })
        .await;
        let error = arm_for(&url).delete("/rg", "1", true).await.unwrap_err();
        assert_eq!(error.to_string(), "(Conflict) no");
    }

    #[tokio::test]
    async fn links_to_another_origin_are_not_followed() {
        let (url, _server) = canned_server(|_| {
            vec![reply(
                "202 Accepted",
                &[
                    ("location", "http://elsewhere.invalid/op".to_string()),
                    now(),
                ],
                "",
            )]
        })
        .await;
        let error = arm_for(&url).delete("/rg", "1", true).await.unwrap_err();
        assert!(error.to_string().contains("another origin"), "{error}");
    }

    #[test]
    fn api_version_is_appended_to_the_query() {
        assert_eq!(with_api_version("/a", "1"), "/a?api-version=1");
        assert_eq!(
            with_api_version("/a?$expand=instanceView", "1"),
            "/a?$expand=instanceView&api-version=1"
        );
    }

    #[test]
    fn segments_encode_what_would_break_a_path() {
        assert_eq!(segment("my-rg_(1).x"), "my-rg_(1).x");
        assert_eq!(segment("a b/c?d#é"), "a%20b%2Fc%3Fd%23%C3%A9");
    }

    #[test]
    fn query_values_keep_only_unreserved_characters() {
        assert_eq!(
            query_value("roleName eq 'Reader+x'"),
            "roleName%20eq%20%27Reader%2Bx%27"
        );
        assert_eq!(query_value("atScope()"), "atScope%28%29");
    }

    #[test]
    fn tags_split_at_the_first_equals_sign() {
        let tags = ["a=b".to_string(), "c".to_string(), "d=e=f".to_string()];
        assert_eq!(parse_tags(&tags), json!({"a": "b", "c": "", "d": "e=f"}));
        assert_eq!(parse_tags(&[String::new()]), json!({}));
    }
}
