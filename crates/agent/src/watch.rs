//! Revocation: a long poll on `GET /openmi/agent/watch?version=N` (agent protocol §6) for as long
//! as the agent runs. Each new instance document drops the tokens of identities that left the VM
//! and moves the VM-extension listener; a 401 (VM deleted, agent removed) drops everything.
//! Errors are retried with exponential backoff (0.5 s doubling to 10 s: after an outage the
//! agent hears of revocations again within seconds).

use std::sync::Arc;
use std::time::Duration;

use crate::extension::ExtensionListener;
use crate::server_client::ServerCallError;
use crate::tokens::TokenService;

/// The first pause after a failed poll.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// The longest pause between polls.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// The pause after `failures` failed polls in a row.
pub fn backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    FIRST_BACKOFF
        .saturating_mul(1u32 << doublings)
        .min(MAX_BACKOFF)
}

/// Watches the VM until the task is aborted.
pub async fn run(tokens: Arc<TokenService>, mut extensions: ExtensionListener) {
    let mut version = tokens.snapshot().map(|snapshot| snapshot.version);
    extensions
        .update(
            tokens
                .snapshot()
                .and_then(|snapshot| snapshot.extension_port),
        )
        .await;
    let mut failures = 0u32;
    loop {
        let result = match version {
            Some(version) => tokens.client().watch(version).await,
            None => tokens.client().instance().await,
        };
        match result {
            Ok(document) => {
                if failures > 0 {
                    tracing::info!("the server answers again");
                }
                failures = 0;
                if Some(document.version) != version || tokens.is_unregistered() {
                    version = Some(document.version);
                    let port = tokens.apply_instance(&document);
                    extensions.update(port).await;
                }
            }
            Err(ServerCallError::Unauthorized { description, .. }) => {
                if !tokens.is_unregistered() {
                    tracing::warn!(%description, "the server no longer knows this agent (VM deleted?); dropping every token");
                    tokens.revoke_all();
                    extensions.update(None).await;
                }
                version = None;
                failures = failures.saturating_add(1);
                tokio::time::sleep(backoff(failures)).await;
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                let pause = backoff(failures);
                tracing::warn!(%error, retry_in_ms = pause.as_millis() as u64, "watch failed");
                tokio::time::sleep(pause).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_ten_seconds() {
        assert_eq!(backoff(1), Duration::from_millis(500));
        assert_eq!(backoff(2), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(2));
        assert_eq!(backoff(5), Duration::from_secs(8));
        assert_eq!(backoff(6), Duration::from_secs(10));
        assert_eq!(backoff(1_000), Duration::from_secs(10));
    }
}
