//! `openmi agent`: the per-machine metadata service that hands a VM's managed-identity tokens to
//! unmodified SDKs (issue #6).
//!
//! The agent enrols once for one VM with a join token (its own EC P-256 key, kept in the state
//! directory), then serves plain HTTP on the machine: IMDS (`/metadata/...`), the App Service
//! protocol (`/msi/token`) and, while the VM has a `ManagedIdentityExtensionFor*` extension, the
//! deprecated extension endpoint (`/oauth2/token` on 127.0.0.1). Tokens come from the server
//! (`POST /openmi/agent/token`, docs/design/agent-protocol.md) and are cached per identity and
//! resource; a long poll on `/openmi/agent/watch` drops the tokens of identities that leave the VM.
//!
//! On a real host the agent listens where SDKs look without any configuration,
//! `169.254.169.254:80`: put the address on an interface first (`ip addr add 169.254.169.254/32
//! dev lo`, or a dummy interface) and run the agent as root or with `CAP_NET_BIND_SERVICE`; in a
//! container or network namespace, do the same inside it (`ip netns exec NS openmi agent ...`).
//! Elsewhere, `--listen 127.0.0.1:0` and `AZURE_POD_IDENTITY_AUTHORITY_HOST=http://127.0.0.1:PORT`
//! (what `openmi vm run` sets up).
//!
//! **Architecture invariant:** the agent links no server-side crate (engine, store, token signing)
//! and reaches the server only over HTTPS, proving itself with its own key. It never logs a token,
//! a join token or a query string.

mod app_service;
mod assertion;
mod cache;
mod enrolment;
mod extension;
mod http;
mod imds;
mod instance;
mod memo;
mod metrics;
mod server_client;
mod throttle;
mod tokens;
mod watch;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::server_client::ServerCallError;

/// How long open requests may run on after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How long the first instance document may take at start-up before the agent serves without it.
const STARTUP_INSTANCE_TIMEOUT: Duration = Duration::from_secs(10);

/// `openmi agent`: what the user gave; [`run`] resolves it.
#[derive(Debug, Clone, clap::Args)]
pub struct AgentArgs {
    /// The openmi server's URL (https://...); default: the one the agent enrolled with.
    #[arg(long, env = "OPENMI_SERVER")]
    pub server: Option<String>,
    /// One-time join token from `openmi vm join-token`; needed only for the first start.
    // base64url: it may start with `-`.
    #[arg(
        long,
        env = "OPENMI_JOIN_TOKEN",
        hide_env_values = true,
        allow_hyphen_values = true
    )]
    pub join_token: Option<String>,
    /// Directory holding the agent's key and enrolment (agent.key, agent.json; mode 0600).
    #[arg(long, env = "OPENMI_AGENT_STATE_DIR")]
    pub state_dir: PathBuf,
    /// Address to serve IMDS and /msi/token on (repeatable); port 0 picks a free port.
    #[arg(long = "listen", default_value = "169.254.169.254:80")]
    pub listen: Vec<SocketAddr>,
    /// CA certificate (PEM) to trust for the server; default: the one saved at enrolment.
    #[arg(long)]
    pub ca_cert: Option<PathBuf>,
    /// Token requests per second for the whole VM (all endpoints together); 0 means no limit.
    #[arg(long, default_value_t = 20)]
    pub rate_limit: u32,
    /// Token requests in flight at once for the whole VM; 0 means no limit.
    #[arg(long, default_value_t = 5)]
    pub max_concurrent: u32,
    /// The secret clients send as X-IDENTITY-HEADER to /msi/token; default: the one generated at
    /// enrolment.
    #[arg(
        long,
        env = "OPENMI_IDENTITY_HEADER",
        hide_env_values = true,
        allow_hyphen_values = true
    )]
    pub identity_header: Option<String>,
    /// Write the first listener's URL to this file once serving (for `openmi vm run`).
    #[arg(long)]
    pub ready_file: Option<PathBuf>,
    /// Stop when standard input reaches its end (used by `openmi vm run`, so that the agent never
    /// outlives the command that started it).
    #[arg(long, hide = true)]
    pub stop_when_stdin_closes: bool,
    /// Log format: text or json.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
}

/// Why the agent could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{0}")]
    Usage(String),
    #[error("cannot {action} {path}: {source}")]
    File {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is damaged ({reason}); remove the state directory and enrol again")]
    DamagedState { path: PathBuf, reason: String },
    #[error("the join token was refused: {0}")]
    JoinTokenRefused(String),
    #[error("enrolment failed: {0}")]
    Enrolment(ServerCallError),
    #[error("the server no longer knows this agent ({0}); its VM was deleted or the agent removed: enrol again with a new join token")]
    NotRegistered(String),
    #[error("cannot listen on {address}: {source}{hint}")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
        hint: &'static str,
    },
    #[error("cannot build the HTTPS client: {0}")]
    HttpClient(String),
    #[error("AG0001: cannot generate the agent key")]
    KeyGeneration,
}

impl AgentError {
    /// The process exit code for this error: 3 when the enrolment is gone (so `openmi vm run`
    /// knows to enrol again), 2 for usage errors, else 1.
    pub fn exit_code(&self) -> i32 {
        match self {
            AgentError::NotRegistered(_) => 3,
            AgentError::Usage(_) => 2,
            _ => 1,
        }
    }
}

/// Runs the agent until SIGTERM or Ctrl-C: enrols (first start) or loads its enrolment, binds
/// every `--listen` address, then serves.
pub async fn run(args: AgentArgs) -> Result<(), AgentError> {
    if args.listen.is_empty() {
        return Err(AgentError::Usage(
            "give at least one --listen address".into(),
        ));
    }
    let enrolled = enrolment::resolve(&args).await?;
    tracing::info!(
        agent_id = %enrolled.state.agent_id,
        vm = %enrolled.state.vm_resource_id,
        server = %enrolled.server,
        rate_limit = args.rate_limit,
        max_concurrent = args.max_concurrent,
        "agent starting"
    );
    let signer =
        assertion::AssertionSigner::new(enrolled.state.agent_id.clone(), enrolled.key_pair);
    let client =
        server_client::ServerClient::new(&enrolled.server, enrolled.ca_cert_pem.as_deref())?
            .with_signer(signer);
    let throttle = throttle::Throttle::new(args.rate_limit, args.max_concurrent);
    let tokens = Arc::new(tokens::TokenService::new(client, throttle));

    let identity_header = args
        .identity_header
        .clone()
        .unwrap_or_else(|| enrolled.state.identity_header.clone());
    let state = http::AppState {
        tokens: tokens.clone(),
        identity_header: Arc::from(identity_header),
        tenant_id: Arc::from(enrolled.state.tenant_id.as_str()),
    };

    let (shutdown_sender, shutdown) = tokio::sync::watch::channel(false);
    let mut listeners = Vec::new();
    for address in &args.listen {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .map_err(|source| AgentError::Bind {
                address: *address,
                hint: bind_hint(address, &source),
                source,
            })?;
        let bound = listener.local_addr().map_err(|source| AgentError::Bind {
            address: *address,
            hint: "",
            source,
        })?;
        listeners.push((listener, bound));
    }
    // Bound first, so that a busy address fails at once; served once the VM is known.
    match tokio::time::timeout(STARTUP_INSTANCE_TIMEOUT, tokens.client().instance()).await {
        Ok(Ok(document)) => {
            tokens.apply_instance(&document);
        }
        Ok(Err(ServerCallError::Unauthorized { description, .. })) => {
            return Err(AgentError::NotRegistered(description));
        }
        Ok(Err(error)) => {
            tracing::warn!(%error, "cannot read the instance document yet; serving without it");
        }
        Err(_) => tracing::warn!(
            "the server did not answer in time; serving without the instance document"
        ),
    }

    let first_url = listeners
        .first()
        .map(|(_, bound)| format!("http://{bound}"))
        .unwrap_or_default();
    let mut servers = Vec::new();
    for (listener, bound) in listeners {
        tracing::info!(address = %bound, "listening");
        println!("listening on http://{bound}");
        servers.push(tokio::spawn(http::serve(
            listener,
            http::Endpoint::imds(state.clone()),
            http::stopped(shutdown.clone()),
        )));
    }
    if let Some(path) = &args.ready_file {
        write_ready_file(path, &first_url)?;
    }

    let extensions = extension::ExtensionListener::new(
        http::Endpoint::extension(state.clone()),
        shutdown.clone(),
    );
    let watcher = tokio::spawn(watch::run(tokens.clone(), extensions));

    http::shutdown_signal(args.stop_when_stdin_closes).await;
    tracing::info!("shutting down");
    let _ = shutdown_sender.send(true);
    watcher.abort();
    let finished = async {
        for server in servers {
            let _ = server.await;
        }
    };
    if tokio::time::timeout(SHUTDOWN_GRACE, finished)
        .await
        .is_err()
    {
        tracing::warn!("open requests did not finish in time");
    }
    Ok(())
}

/// A hint for the usual reasons a bind fails on the IMDS address.
fn bind_hint(address: &SocketAddr, error: &std::io::Error) -> &'static str {
    if address.ip() == std::net::Ipv4Addr::new(169, 254, 169, 254) {
        match error.kind() {
            std::io::ErrorKind::AddrNotAvailable => {
                " (put 169.254.169.254 on an interface first, e.g. `ip addr add 169.254.169.254/32 dev lo`, or pass --listen 127.0.0.1:0)"
            }
            std::io::ErrorKind::PermissionDenied => {
                " (port 80 needs root or CAP_NET_BIND_SERVICE)"
            }
            _ => "",
        }
    } else {
        ""
    }
}

/// Writes `url` to `path` atomically (a temporary file renamed into place), so a reader never
/// sees half of it.
fn write_ready_file(path: &std::path::Path, url: &str) -> Result<(), AgentError> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    std::fs::write(&temporary, format!("{url}\n")).map_err(|source| AgentError::File {
        action: "write",
        path: temporary.clone(),
        source,
    })?;
    std::fs::rename(&temporary, path).map_err(|source| AgentError::File {
        action: "write",
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Command {
        #[command(flatten)]
        agent: AgentArgs,
    }

    #[test]
    fn secrets_may_start_with_a_hyphen() {
        let command = Command::try_parse_from([
            "agent",
            "--state-dir",
            "/s",
            "--join-token",
            "-Qc2drBJK",
            "--identity-header",
            "-x",
        ])
        .unwrap();
        assert_eq!(command.agent.join_token.as_deref(), Some("-Qc2drBJK"));
        assert_eq!(command.agent.identity_header.as_deref(), Some("-x"));
        assert_eq!(
            command.agent.listen,
            vec!["169.254.169.254:80".parse::<SocketAddr>().unwrap()]
        );
    }
}
