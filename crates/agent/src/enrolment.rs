//! Enrolment and the state directory: the agent's key (`agent.key`, PKCS#8 PEM) and what the
//! server said at enrolment (`agent.json`), both mode 0600 in a 0700 directory.
//!
//! The first start with a join token generates the key, registers its public key
//! (`POST /openmi/agent/enroll`, agent protocol §2) and saves both files; later starts load them
//! and need no token. The key is written before the token is spent, so a disk that refuses the
//! write costs no token. This module must never print or log the join token or the key.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::server_client::{ServerCallError, ServerClient};
use crate::{AgentArgs, AgentError};

const STATE_FILE: &str = "agent.json";
const KEY_FILE: &str = "agent.key";
const LOCK_FILE: &str = "agent.lock";
/// How long an agent waits for another one enrolling in the same state directory.
const LOCK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
const PEM_LABEL: &str = "PRIVATE KEY";

/// `agent.json`: the enrolment, as the server answered it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnrolmentState {
    pub server: String,
    pub agent_id: String,
    pub vm_resource_id: String,
    pub tenant_id: String,
    pub subscription_id: String,
    /// The CA certificate (PEM text) trusted for the server at enrolment, if one was given.
    #[serde(default)]
    pub ca_cert: Option<String>,
    /// The secret workloads send as `X-IDENTITY-HEADER` (App Service protocol).
    pub identity_header: String,
}

/// Everything the agent needs from its state directory and arguments to talk to the server.
pub struct Enrolled {
    pub state: EnrolmentState,
    pub key_pair: EcdsaKeyPair,
    /// The server to use now: `--server` or the enrolment's.
    pub server: String,
    /// The CA to trust now: `--ca-cert` or the enrolment's.
    pub ca_cert_pem: Option<String>,
}

/// Loads the enrolment from `--state-dir`, or enrols with `--join-token` when there is none.
pub async fn resolve(args: &AgentArgs) -> Result<Enrolled, AgentError> {
    let given_server = args.server.as_deref().map(normalize_server).transpose()?;
    let given_ca = args.ca_cert.as_deref().map(read_ca_cert).transpose()?;
    if let Some(state) = load_state(&args.state_dir)? {
        if args.join_token.is_some() {
            tracing::warn!(
                agent_id = %state.agent_id,
                "already enrolled; ignoring the join token"
            );
        }
        return loaded(&args.state_dir, state, given_server, given_ca);
    }
    let join_token = args.join_token.as_deref().ok_or_else(|| {
        AgentError::Usage(format!(
            "{} holds no enrolment: give --join-token (from `openmi vm join-token`)",
            args.state_dir.display()
        ))
    })?;
    let server = given_server
        .ok_or_else(|| AgentError::Usage("--server is required for the first start".to_string()))?;
    create_private_dir(&args.state_dir)?;
    // Two agents starting on one new state directory (two `openmi vm run` at once): one enrols,
    // the other waits and then uses that enrolment.
    let _lock = lock_state_dir(&args.state_dir).await?;
    if let Some(state) = load_state(&args.state_dir)? {
        tracing::warn!(
            agent_id = %state.agent_id,
            "enrolled meanwhile by another agent; ignoring the join token"
        );
        return loaded(&args.state_dir, state, Some(server), given_ca);
    }
    let (state, key_pair) = enrol(
        &args.state_dir,
        &server,
        given_ca.as_deref(),
        join_token.trim(),
    )
    .await?;
    Ok(Enrolled {
        state,
        key_pair,
        server,
        ca_cert_pem: given_ca,
    })
}

/// An enrolment read from disk, with `--server` and `--ca-cert` taking precedence.
fn loaded(
    dir: &Path,
    state: EnrolmentState,
    given_server: Option<String>,
    given_ca: Option<String>,
) -> Result<Enrolled, AgentError> {
    let key_pair = load_key(dir)?;
    let server = given_server.unwrap_or_else(|| state.server.clone());
    let ca_cert_pem = given_ca.or_else(|| state.ca_cert.clone());
    Ok(Enrolled {
        state,
        key_pair,
        server,
        ca_cert_pem,
    })
}

/// Takes the state directory's lock file (`agent.lock`), waiting for another enrolling agent.
async fn lock_state_dir(dir: &Path) -> Result<std::fs::File, AgentError> {
    let path = dir.join(LOCK_FILE);
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let file = options.open(&path).map_err(|source| AgentError::File {
        action: "open",
        path: path.clone(),
        source,
    })?;
    let started = std::time::Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if started.elapsed() < LOCK_TIMEOUT => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(AgentError::Usage(format!(
                    "another agent has been enrolling in {} for {} s",
                    dir.display(),
                    LOCK_TIMEOUT.as_secs()
                )))
            }
            Err(std::fs::TryLockError::Error(source)) => {
                return Err(AgentError::File {
                    action: "lock",
                    path,
                    source,
                })
            }
        }
    }
}

/// `https://host[:port]` without a trailing slash; plain http is refused, as the assertion
/// would travel in clear text.
fn normalize_server(server: &str) -> Result<String, AgentError> {
    let server = server.trim().trim_end_matches('/');
    if !server.starts_with("https://") {
        return Err(AgentError::Usage(
            "--server must be an https:// URL".to_string(),
        ));
    }
    Ok(server.to_string())
}

fn read_ca_cert(path: &Path) -> Result<String, AgentError> {
    std::fs::read_to_string(path).map_err(|source| AgentError::File {
        action: "read the CA certificate",
        path: path.to_path_buf(),
        source,
    })
}

async fn enrol(
    dir: &Path,
    server: &str,
    ca_cert_pem: Option<&str>,
    join_token: &str,
) -> Result<(EnrolmentState, EcdsaKeyPair), AgentError> {
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(
        &ECDSA_P256_SHA256_FIXED_SIGNING,
        &aws_lc_rs::rand::SystemRandom::new(),
    )
    .map_err(|_| AgentError::KeyGeneration)?;
    let key_pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
        .map_err(|_| AgentError::KeyGeneration)?;
    let public_key = key_pair
        .public_key()
        .as_der()
        .map_err(|_| AgentError::KeyGeneration)?;
    write_private_file(&dir.join(KEY_FILE), pem_encode(pkcs8.as_ref()).as_bytes())?;

    let client = ServerClient::new(server, ca_cert_pem)?;
    let reply = match client.enroll(join_token, public_key.as_ref()).await {
        Ok(reply) => reply,
        Err(ServerCallError::Unauthorized { description, .. }) => {
            return Err(AgentError::JoinTokenRefused(if description.is_empty() {
                "the join token is invalid, expired or already used".to_string()
            } else {
                description
            }))
        }
        Err(error) => return Err(AgentError::Enrolment(error)),
    };
    let state = EnrolmentState {
        server: server.to_string(),
        agent_id: reply.agent_id,
        vm_resource_id: reply.vm_resource_id,
        tenant_id: reply.tenant_id,
        subscription_id: reply.subscription_id,
        ca_cert: ca_cert_pem.map(str::to_string),
        identity_header: new_identity_header()?,
    };
    let text = serde_json::to_vec_pretty(&state).map_err(|error| AgentError::DamagedState {
        path: dir.join(STATE_FILE),
        reason: error.to_string(),
    })?;
    write_private_file(&dir.join(STATE_FILE), &text)?;
    tracing::info!(agent_id = %state.agent_id, vm = %state.vm_resource_id, "enrolled");
    Ok((state, key_pair))
}

/// 256 random bits, base64url: the App Service identity header secret.
fn new_identity_header() -> Result<String, AgentError> {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| AgentError::KeyGeneration)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// The saved enrolment, or `None` when the directory holds none.
pub fn load_state(dir: &Path) -> Result<Option<EnrolmentState>, AgentError> {
    let path = dir.join(STATE_FILE);
    let text = match std::fs::read(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(AgentError::File {
                action: "read",
                path,
                source,
            })
        }
    };
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|error| AgentError::DamagedState {
            path,
            reason: error.to_string(),
        })
}

fn load_key(dir: &Path) -> Result<EcdsaKeyPair, AgentError> {
    let path = dir.join(KEY_FILE);
    let text = std::fs::read_to_string(&path).map_err(|source| AgentError::File {
        action: "read",
        path: path.clone(),
        source,
    })?;
    let der = pem_decode(&text).ok_or_else(|| AgentError::DamagedState {
        path: path.clone(),
        reason: "not a PEM private key".to_string(),
    })?;
    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der).map_err(|error| {
        AgentError::DamagedState {
            path,
            reason: error.to_string(),
        }
    })
}

fn pem_encode(der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut pem = format!("-----BEGIN {PEM_LABEL}-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str(&format!("-----END {PEM_LABEL}-----\n"));
    pem
}

fn pem_decode(text: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {PEM_LABEL}-----");
    let end = format!("-----END {PEM_LABEL}-----");
    let start = text.find(&begin)? + begin.len();
    let stop = text[start..].find(&end)? + start;
    let body: String = text[start..stop]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    STANDARD.decode(body).ok()
}

fn create_private_dir(dir: &Path) -> Result<(), AgentError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(|source| AgentError::File {
        action: "create",
        path: dir.to_path_buf(),
        source,
    })
}

/// Writes `bytes` to `path` with mode 0600, through a temporary file renamed into place.
fn write_private_file(path: &Path, bytes: &[u8]) -> Result<(), AgentError> {
    // Unique per process: two agents may write into one directory at once.
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(format!(".tmp-{}", std::process::id()));
    let temporary = PathBuf::from(temporary);
    let failed = |source| AgentError::File {
        action: "write",
        path: path.to_path_buf(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(&temporary).map_err(failed)?;
    file.write_all(bytes).map_err(failed)?;
    file.sync_all().map_err(failed)?;
    std::fs::rename(&temporary, path).map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_round_trips_through_pem_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &aws_lc_rs::rand::SystemRandom::new(),
        )
        .unwrap();
        write_private_file(
            &dir.path().join(KEY_FILE),
            pem_encode(pkcs8.as_ref()).as_bytes(),
        )
        .unwrap();
        let loaded = load_key(dir.path()).unwrap();
        let original =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        assert_eq!(loaded.public_key().as_ref(), original.public_key().as_ref());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn public_key_is_spki_der() {
        let key_pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let der = key_pair.public_key().as_der().unwrap();
        // SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING (65-byte point) }
        assert_eq!(der.as_ref().len(), 91);
        assert_eq!(der.as_ref()[0], 0x30);
    }

    #[test]
    fn state_is_absent_then_read_back() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load_state(dir.path()).unwrap().is_none());
        let state = EnrolmentState {
            server: "https://127.0.0.1:8443".into(),
            agent_id: "a".into(),
            vm_resource_id:
                "/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/virtualMachines/v"
                    .into(),
            tenant_id: "t".into(),
            subscription_id: "s".into(),
            ca_cert: None,
            identity_header: new_identity_header().unwrap(),
        };
        write_private_file(
            &dir.path().join(STATE_FILE),
            &serde_json::to_vec(&state).unwrap(),
        )
        .unwrap();
        let loaded = load_state(dir.path()).unwrap().unwrap();
        assert_eq!(loaded.agent_id, "a");
        assert_eq!(loaded.identity_header.len(), 43);
        std::fs::write(dir.path().join(STATE_FILE), b"{").unwrap();
        assert!(matches!(
            load_state(dir.path()),
            Err(AgentError::DamagedState { .. })
        ));
    }

    #[tokio::test]
    async fn one_agent_at_a_time_enrols_in_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let first = lock_state_dir(dir.path()).await.unwrap();
        let path = dir.path().to_path_buf();
        let second = tokio::spawn(async move { lock_state_dir(&path).await.map(drop) });
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert!(!second.is_finished(), "the second agent must wait");
        drop(first);
        second.await.unwrap().unwrap();
    }

    #[test]
    fn server_must_be_https() {
        assert_eq!(
            normalize_server("https://h:1/").unwrap(),
            "https://h:1".to_string()
        );
        assert!(normalize_server("http://h").is_err());
    }
}
