//! The HTTPS client of the CLI: JSON requests to the server, errors shown as the server wrote them.

use anyhow::{anyhow, Context};
use serde_json::Value;

/// A client bound to one server.
pub struct Client {
    http: reqwest::Client,
    server: String,
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

    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.server))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let body: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text.clone()))
        };
        if status.is_success() {
            return Ok(body);
        }
        // ARM and Graph: {"error":{"code","message"}}; Entra: {"error","error_description"}.
        let message = match body.get("error") {
            Some(Value::Object(error)) => format!(
                "({}) {}",
                error
                    .get("code")
                    .and_then(Value::as_str)
                    .unwrap_or_default(),
                error
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
            ),
            Some(Value::String(code)) => format!(
                "({code}) {}",
                body.get("error_description")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
            ),
            _ => format!("HTTP {status}: {text}"),
        };
        Err(anyhow!(message))
    }

    /// GET a JSON document with a bearer token.
    pub async fn get_json(&self, path: &str, token: &str) -> anyhow::Result<Value> {
        self.send(
            self.http
                .get(format!("{}{path}", self.server))
                .bearer_auth(token),
        )
        .await
    }

    /// POST JSON with a bearer token.
    pub async fn post_json(&self, path: &str, token: &str, body: &Value) -> anyhow::Result<Value> {
        self.send(
            self.http
                .post(format!("{}{path}", self.server))
                .bearer_auth(token)
                .json(body),
        )
        .await
    }

    /// POST a token request form (no bearer token).
    pub async fn post_form(&self, path: &str, form: &[(&str, &str)]) -> anyhow::Result<Value> {
        self.send(self.http.post(format!("{}{path}", self.server)).form(form))
            .await
    }
}
