//! The signed-in session: who, against which server, and the current tokens.
//!
//! A service principal's secret is kept (as az keeps it) because client credentials have no
//! refresh token; a user's password is never kept, only the refresh token. The file is mode 0600.

use std::path::PathBuf;

use anyhow::{anyhow, Context};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::client::Client;

/// Seconds since the epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs() as i64)
        .unwrap_or(0)
}

/// Who signs in.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Identity {
    #[serde(rename_all = "camelCase")]
    User {
        tenant: String,
        username: String,
        refresh_token: String,
    },
    #[serde(rename_all = "camelCase")]
    ServicePrincipal {
        tenant: String,
        client_id: String,
        secret: String,
    },
}

/// The Azure CLI's public client id, under which users sign in.
const CLI_CLIENT_ID: &str = "04b07795-8ddb-461a-bbee-02f9e1bf7b46";

/// The stored session.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    pub server: String,
    pub ca_cert: Option<PathBuf>,
    pub identity: Identity,
    pub tenant_id: String,
    pub subscription_id: String,
    pub subscription_name: String,
    access_token: String,
    pub expires_on: i64,
}

fn config_dir() -> anyhow::Result<PathBuf> {
    if let Ok(dir) = std::env::var("OPENMI_CONFIG_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let home = std::env::var("HOME").map_err(|_| anyhow!("set OPENMI_CONFIG_DIR or HOME"))?;
    Ok(PathBuf::from(home).join(".openmi"))
}

impl Session {
    pub fn new(server: String, ca_cert: Option<PathBuf>, identity: Identity) -> Session {
        Session {
            server,
            ca_cert,
            identity,
            tenant_id: String::new(),
            subscription_id: String::new(),
            subscription_name: String::new(),
            access_token: String::new(),
            expires_on: 0,
        }
    }

    /// Reads the session of `openmi login`.
    pub fn load() -> anyhow::Result<Session> {
        let path = config_dir()?.join("session.json");
        let text = std::fs::read_to_string(&path)
            .map_err(|_| anyhow!("not signed in: run `openmi login` first"))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{} is damaged; run `openmi login` again", path.display()))
    }

    /// Writes the session (mode 0600).
    pub fn save(&self) -> anyhow::Result<()> {
        let dir = config_dir()?;
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let path = dir.join("session.json");
        let text = serde_json::to_vec_pretty(self)?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        use std::io::Write;
        let mut file = options
            .open(&path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        file.write_all(&text)
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(())
    }

    pub fn access_token(&self) -> &str {
        &self.access_token
    }

    /// Whether the token expires within five minutes.
    pub fn needs_refresh(&self) -> bool {
        self.expires_on - 300 <= now()
    }

    /// Gets a new access token: client credentials, password (first login) or refresh token.
    pub async fn acquire_token(&mut self, client: &Client) -> anyhow::Result<()> {
        let scope = format!("{}/.default", self.server);
        let response = match &self.identity {
            Identity::ServicePrincipal {
                tenant,
                client_id,
                secret,
            } => {
                let form = [
                    ("grant_type", "client_credentials"),
                    ("client_id", client_id.as_str()),
                    ("client_secret", secret.as_str()),
                    ("scope", scope.as_str()),
                ];
                client
                    .post_form(&format!("/{tenant}/oauth2/v2.0/token"), &form)
                    .await?
            }
            Identity::User {
                tenant,
                refresh_token,
                ..
            } if !refresh_token.is_empty() => {
                let form = [
                    ("grant_type", "refresh_token"),
                    ("client_id", CLI_CLIENT_ID),
                    ("refresh_token", refresh_token.as_str()),
                    ("scope", scope.as_str()),
                ];
                client
                    .post_form(&format!("/{tenant}/oauth2/v2.0/token"), &form)
                    .await?
            }
            Identity::User { .. } => {
                return Err(anyhow!("the session has expired: run `openmi login` again"))
            }
        };
        self.take_tokens(response)
    }

    /// First user login: password grant (ROPC) through the Azure CLI's public client.
    pub async fn login_user(&mut self, client: &Client, password: &str) -> anyhow::Result<()> {
        let Identity::User {
            tenant, username, ..
        } = &self.identity
        else {
            return Err(anyhow!("not a user session"));
        };
        let scope = format!("{}/.default offline_access openid profile", self.server);
        let form = [
            ("grant_type", "password"),
            ("client_id", CLI_CLIENT_ID),
            ("username", username.as_str()),
            ("password", password),
            ("scope", scope.as_str()),
        ];
        let response = client
            .post_form(&format!("/{tenant}/oauth2/v2.0/token"), &form)
            .await?;
        self.take_tokens(response)
    }

    fn take_tokens(&mut self, response: Value) -> anyhow::Result<()> {
        let access_token = response
            .get("access_token")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("the server returned no access token"))?;
        let expires_in = response
            .get("expires_in")
            .and_then(|value| {
                value
                    .as_i64()
                    .or_else(|| value.as_str().and_then(|text| text.parse().ok()))
            })
            .unwrap_or(0);
        let claims = access_token
            .split('.')
            .nth(1)
            .and_then(|part| URL_SAFE_NO_PAD.decode(part).ok())
            .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
            .ok_or_else(|| anyhow!("the server returned a malformed access token"))?;
        self.tenant_id = claims
            .get("tid")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        self.access_token = access_token.to_string();
        self.expires_on = now() + expires_in;
        if let (Identity::User { refresh_token, .. }, Some(new)) = (
            &mut self.identity,
            response.get("refresh_token").and_then(Value::as_str),
        ) {
            *refresh_token = new.to_string();
        }
        Ok(())
    }
}
