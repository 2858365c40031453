//! The HTTPS client of the CLI: JSON requests to the server, errors shown as the server wrote them.
//!
//! The bearer token only ever goes to the server of the session: an absolute URL handed back by
//! the server (a `nextLink`, a polling `Location`) is followed only when it has that origin.

use anyhow::{anyhow, Context};
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// A client bound to one server.
pub struct Client {
    http: reqwest::Client,
    server: String,
}

/// A response read whole: status, headers and the body as JSON (`null` when empty, a JSON string
/// when it is not JSON).
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    text: String,
}

impl Reply {
    /// A header's value, if present and printable.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// The error this reply stands for, worded as the server wrote it: ARM and Graph send
    /// `{"error":{"code","message"}}`, printed `(code) message` as az does; Entra sends
    /// `{"error","error_description"}`. It is a [`ServerError`], so callers can test the code.
    pub fn error(&self) -> anyhow::Error {
        let (code, message) = match self.body.get("error") {
            Some(Value::Object(error)) => {
                let code = error
                    .get("code")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let message = error
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                (Some(code.clone()), format!("({code}) {message}"))
            }
            Some(Value::String(code)) => (
                Some(code.clone()),
                format!(
                    "({code}) {}",
                    self.body
                        .get("error_description")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                ),
            ),
            _ if self.text.is_empty() => (None, format!("HTTP {}", self.status)),
            _ => (None, format!("HTTP {}: {}", self.status, self.text)),
        };
        anyhow::Error::new(ServerError { code, message })
    }
}

/// A non-2xx reply as an error: its error code when the body had one, and the text printed for
/// it.
#[derive(Debug)]
pub struct ServerError {
    pub code: Option<String>,
    message: String,
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.message)
    }
}

impl std::error::Error for ServerError {}

/// The server's error code (`RoleAssignmentExists`, `PrincipalNotFound`, ...) if `error` is a
/// [`ServerError`] that carried one.
pub fn error_code(error: &anyhow::Error) -> Option<&str> {
    error
        .downcast_ref::<ServerError>()
        .and_then(|server| server.code.as_deref())
}

impl Client {
    /// A client trusting `ca_cert` (PEM) in addition to nothing else when given, else the system roots.
    pub fn new(server: &str, ca_cert: Option<&std::path::Path>) -> anyhow::Result<Client> {
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("openmi-cli/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = ca_cert {
            let pem = std::fs::read(path)
                .with_context(|| format!("cannot read CA certificate {}", path.display()))?;
            let certificate = reqwest::Certificate::from_pem(&pem)
                .with_context(|| format!("{} is not a PEM certificate", path.display()))?;
            builder = builder.tls_certs_only([certificate]);
        }
        Ok(Client {
            http: builder.build().context("cannot build the HTTPS client")?,
            server: server.trim_end_matches('/').to_string(),
        })
    }

    /// The full URL of `path_or_url`: a path on the server, or an absolute URL on the same server.
    fn url(&self, path_or_url: &str) -> anyhow::Result<String> {
        if path_or_url.starts_with('/') {
            return Ok(format!("{}{path_or_url}", self.server));
        }
        let same_origin = path_or_url
            .strip_prefix(&self.server)
            .is_some_and(|rest| rest.starts_with('/'));
        if same_origin {
            Ok(path_or_url.to_string())
        } else {
            Err(anyhow!(
                "the server sent a link to another origin ({path_or_url}); not following it"
            ))
        }
    }

    async fn read(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Reply> {
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.server))?;
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap_or_default();
        let body: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text.clone()))
        };
        Ok(Reply {
            status,
            headers,
            body,
            text,
        })
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let reply = self.read(request).await?;
        if reply.status.is_success() {
            Ok(reply.body)
        } else {
            Err(reply.error())
        }
    }

    /// Sends `method` to `path_or_url` with a bearer token and an optional JSON body; returns the
    /// reply whatever its status.
    pub async fn request(
        &self,
        method: Method,
        path_or_url: &str,
        token: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Reply> {
        let mut request = self
            .http
            .request(method, self.url(path_or_url)?)
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(body);
        }
        self.read(request).await
    }

    /// `request` with a body that is already JSON text (a template sent as the user wrote it,
    /// so the server's errors name the file's own lines and columns).
    pub async fn request_text(
        &self,
        method: Method,
        path_or_url: &str,
        token: &str,
        body: String,
    ) -> anyhow::Result<Reply> {
        let request = self
            .http
            .request(method, self.url(path_or_url)?)
            .bearer_auth(token)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        self.read(request).await
    }

    /// GET a JSON document with a bearer token.
    pub async fn get_json(&self, path: &str, token: &str) -> anyhow::Result<Value> {
        self.send(self.http.get(self.url(path)?).bearer_auth(token))
            .await
    }

    /// POST JSON with a bearer token.
    pub async fn post_json(&self, path: &str, token: &str, body: &Value) -> anyhow::Result<Value> {
        self.send(
            self.http
                .post(self.url(path)?)
                .bearer_auth(token)
                .json(body),
        )
        .await
    }

    /// POST a token request form (no bearer token).
    pub async fn post_form(&self, path: &str, form: &[(&str, &str)]) -> anyhow::Result<Value> {
        self.send(self.http.post(self.url(path)?).form(form)).await
    }
}
