//! `openmi vm join-token` and `openmi vm run`: enrolling an agent for a VM and running a command
//! "on" that VM (issue #6, docs/design/agent-protocol.md §1).
//!
//! `vm run` starts `openmi agent` (this same binary) for the VM on a free loopback port, enrolling
//! it first when its state directory (`$OPENMI_CONFIG_DIR/agents/<sub>/<rg>/<vm>`, lower case)
//! holds no enrolment, then runs the command with the environment unmodified SDKs read
//! (`AZURE_POD_IDENTITY_AUTHORITY_HOST` for IMDS, `IDENTITY_ENDPOINT`/`IDENTITY_HEADER` for App
//! Service) and passes its exit status through. The agent runs in its own process group with a
//! pipe as standard input: closing the pipe stops it, so it never outlives this command, even when
//! this command is killed. The join token reaches the agent in its environment, never in argv.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{anyhow, Context};
use clap::{Args, ValueEnum};
use serde_json::{json, Value};

use crate::arm::{self, Arm, ArmArgs};
use crate::output::Outcome;

/// The provider type of virtual machines.
const VM_TYPE: &str = "Microsoft.Compute/virtualMachines";
/// Lifetime of the join token `vm run` asks for when it enrols an agent.
const RUN_JOIN_TOKEN_LIFETIME: i64 = 600;
/// How long `vm run` waits for the agent to listen.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the agent may take to stop before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// The agent's exit code when the server no longer knows its enrolment.
const AGENT_NOT_REGISTERED: i32 = 3;
/// Managed-identity variables of every source (protocols.md §2.1); `vm run` sets the ones of the
/// chosen protocol and removes the others, so the SDK cannot pick another source.
const IDENTITY_VARIABLES: [&str; 6] = [
    "AZURE_POD_IDENTITY_AUTHORITY_HOST",
    "IDENTITY_ENDPOINT",
    "IDENTITY_HEADER",
    "IDENTITY_SERVER_THUMBPRINT",
    "IMDS_ENDPOINT",
    "MSI_ENDPOINT",
];
const MSI_SECRET: &str = "MSI_SECRET";

/// `openmi vm join-token`
#[derive(Debug, Args)]
pub struct JoinTokenArgs {
    /// Resource group.
    #[arg(long, short = 'g')]
    resource_group: String,
    /// Name of the virtual machine.
    #[arg(long, short = 'n')]
    name: String,
    /// Lifetime of the token: seconds, or a number with s, m, h or d (60 s to 1 d).
    #[arg(long, default_value = "1h", value_parser = parse_lifetime)]
    expires_in: i64,
}

/// The workload protocol `vm run` sets up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Protocol {
    /// IMDS (`AZURE_POD_IDENTITY_AUTHORITY_HOST`), as on an Azure VM.
    Imds,
    /// The App Service protocol (`IDENTITY_ENDPOINT` + `IDENTITY_HEADER`).
    AppService,
}

/// `openmi vm run`
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Resource group.
    #[arg(long, short = 'g')]
    resource_group: String,
    /// Name of the virtual machine.
    #[arg(long, short = 'n')]
    name: String,
    /// How the command's SDKs reach the agent.
    #[arg(long, value_enum, default_value = "imds")]
    protocol: Protocol,
    /// The command to run and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<String>,
}

/// `--expires-in`: `3600`, `90s`, `30m`, `1h`, `1d`; 60 s to 1 day.
fn parse_lifetime(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let (number, unit) = match text.char_indices().last() {
        Some((index, unit)) if unit.is_ascii_alphabetic() => (&text[..index], unit),
        _ => (text, 's'),
    };
    let number: i64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a lifetime such as 3600, 30m or 1h"))?;
    let seconds = match unit.to_ascii_lowercase() {
        's' => Some(number),
        'm' => number.checked_mul(60),
        'h' => number.checked_mul(3600),
        'd' => number.checked_mul(86_400),
        _ => None,
    }
    .ok_or_else(|| format!("'{text}' is not a lifetime such as 3600, 30m or 1h"))?;
    if !(60..=86_400).contains(&seconds) {
        return Err(format!(
            "the lifetime must be between 60 seconds and 1 day, not {seconds} seconds"
        ));
    }
    Ok(seconds)
}

/// `POST {vm id}/generateJoinToken` (agent protocol §1).
async fn request_join_token(
    arm: &Arm,
    group: &str,
    name: &str,
    expires_in: i64,
) -> anyhow::Result<Value> {
    let (session, client) = crate::signed_in().await?;
    let path = arm::with_api_version(
        &format!(
            "{}/generateJoinToken",
            arm.resource_id(group, VM_TYPE, name)
        ),
        arm::API_VIRTUAL_MACHINES,
    );
    client
        .post_json(
            &path,
            session.access_token(),
            &json!({"expiresIn": expires_in}),
        )
        .await
}

/// `openmi vm join-token`: prints `{joinToken, expiresOn, vmResourceId}`.
pub async fn join_token(arm: &Arm, args: JoinTokenArgs) -> anyhow::Result<Outcome> {
    let reply = request_join_token(arm, &args.resource_group, &args.name, args.expires_in).await?;
    Ok(Outcome::value(reply))
}

/// The configuration directory of the CLI (as the session's).
fn config_dir() -> anyhow::Result<PathBuf> {
    if let Ok(dir) = std::env::var("OPENMI_CONFIG_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let home = std::env::var("HOME").map_err(|_| anyhow!("set OPENMI_CONFIG_DIR or HOME"))?;
    Ok(PathBuf::from(home).join(".openmi"))
}

/// `$OPENMI_CONFIG_DIR/agents/<sub>/<rg>/<vm>`, lower case.
fn agent_state_dir(config_dir: &Path, subscription: &str, group: &str, name: &str) -> PathBuf {
    config_dir
        .join("agents")
        .join(subscription.to_lowercase())
        .join(group.to_lowercase())
        .join(name.to_lowercase())
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))
}

/// A started agent.
struct RunningAgent {
    child: tokio::process::Child,
    url: String,
    ready_file: PathBuf,
}

/// Why an agent did not become ready.
enum StartFailure {
    /// The server no longer knows the saved enrolment.
    NotRegistered,
    Failed(anyhow::Error),
}

impl From<anyhow::Error> for StartFailure {
    fn from(error: anyhow::Error) -> StartFailure {
        StartFailure::Failed(error)
    }
}

/// The last lines of the agent's log, to explain a failed start.
fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(5)..].join("\n")
}

/// Starts `openmi agent` for the state directory on 127.0.0.1:0 and waits until it listens.
async fn start_agent(
    server: &str,
    ca_cert: Option<&Path>,
    state_dir: &Path,
    join_token: Option<&str>,
) -> Result<RunningAgent, StartFailure> {
    let executable = std::env::current_exe().context("cannot find the openmi executable")?;
    let ready_file = state_dir.join(format!("ready-{}", std::process::id()));
    let _ = std::fs::remove_file(&ready_file);
    let log_path = state_dir.join("agent.log");
    let mut log_options = std::fs::OpenOptions::new();
    log_options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        log_options.mode(0o600);
    }
    let log = log_options
        .open(&log_path)
        .with_context(|| format!("cannot write {}", log_path.display()))?;
    let mut command = tokio::process::Command::new(executable);
    command
        .arg("agent")
        .arg("--server")
        .arg(server)
        .arg("--state-dir")
        .arg(state_dir)
        .args(["--listen", "127.0.0.1:0", "--stop-when-stdin-closes"])
        .arg("--ready-file")
        .arg(&ready_file)
        .env_remove("OPENMI_JOIN_TOKEN")
        .env_remove("OPENMI_IDENTITY_HEADER")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .kill_on_drop(true);
    if let Some(ca_cert) = ca_cert {
        command.arg("--ca-cert").arg(ca_cert);
    }
    if let Some(token) = join_token {
        command.env("OPENMI_JOIN_TOKEN", token);
    }
    #[cfg(unix)]
    {
        // Its own process group: a Ctrl-C meant for the command does not stop the agent under it.
        command.process_group(0);
    }
    let mut child = command.spawn().context("cannot start the agent")?;
    let started = std::time::Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(&ready_file) {
            if let Some(url) = text.lines().next().filter(|url| !url.is_empty()) {
                return Ok(RunningAgent {
                    child,
                    url: url.to_string(),
                    ready_file,
                });
            }
        }
        if let Some(status) = child.try_wait().context("cannot watch the agent")? {
            if status.code() == Some(AGENT_NOT_REGISTERED) {
                return Err(StartFailure::NotRegistered);
            }
            return Err(StartFailure::Failed(anyhow!(
                "the agent stopped ({status}) before it was ready:\n{}",
                log_tail(&log_path)
            )));
        }
        if started.elapsed() > READY_TIMEOUT {
            let _ = child.kill().await;
            return Err(StartFailure::Failed(anyhow!(
                "the agent was not ready after {} s:\n{}",
                READY_TIMEOUT.as_secs(),
                log_tail(&log_path)
            )));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

impl RunningAgent {
    /// Closes the agent's standard input (its signal to stop), then kills it if it lingers.
    async fn stop(mut self) {
        drop(self.child.stdin.take());
        if tokio::time::timeout(STOP_TIMEOUT, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
        let _ = std::fs::remove_file(&self.ready_file);
    }
}

/// The exit code a shell would report for `status`: the code, or 128 + the signal.
fn exit_code(status: std::process::ExitStatus) -> i32 {
    if let Some(code) = status.code() {
        return code;
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt as _;
        if let Some(signal) = status.signal() {
            return 128 + signal;
        }
    }
    1
}

/// The environment changes for `protocol`: variables to set (the others of
/// [`IDENTITY_VARIABLES`] are removed).
fn workload_environment(
    protocol: Protocol,
    url: &str,
    identity_header: &str,
) -> Vec<(&'static str, String)> {
    match protocol {
        Protocol::Imds => vec![("AZURE_POD_IDENTITY_AUTHORITY_HOST", url.to_string())],
        Protocol::AppService => vec![
            ("IDENTITY_ENDPOINT", format!("{url}/msi/token")),
            ("IDENTITY_HEADER", identity_header.to_string()),
        ],
    }
}

/// `openmi vm run`: returns the command's exit code.
pub async fn run(global: ArmArgs, args: RunArgs) -> anyhow::Result<i32> {
    let arm = Arm::connect(global.subscription.as_deref()).await?;
    let (session, _) = crate::signed_in().await?;
    let state_dir = agent_state_dir(
        &config_dir()?,
        arm.subscription(),
        &args.resource_group,
        &args.name,
    );
    create_private_dir(&state_dir)?;
    let state_file = state_dir.join("agent.json");
    let mut enrolled = state_file.exists();
    let agent = loop {
        let join_token = if enrolled {
            None
        } else {
            let reply = request_join_token(
                &arm,
                &args.resource_group,
                &args.name,
                RUN_JOIN_TOKEN_LIFETIME,
            )
            .await?;
            let token = reply
                .get("joinToken")
                .and_then(Value::as_str)
                .ok_or_else(|| anyhow!("the server returned no join token"))?
                .to_string();
            Some(token)
        };
        match start_agent(
            &session.server,
            session.ca_cert.as_deref(),
            &state_dir,
            join_token.as_deref(),
        )
        .await
        {
            Ok(agent) => break agent,
            Err(StartFailure::NotRegistered) if enrolled => {
                // The VM was deleted (and perhaps made again) since the agent enrolled: enrol anew.
                eprintln!("openmi: the agent's enrolment is gone; enrolling again");
                for file in ["agent.json", "agent.key"] {
                    let _ = std::fs::remove_file(state_dir.join(file));
                }
                enrolled = false;
            }
            Err(StartFailure::NotRegistered) => {
                return Err(anyhow!(
                    "the server refused the agent right after enrolling it"
                ))
            }
            Err(StartFailure::Failed(error)) => return Err(error),
        }
    };
    let identity_header = match args.protocol {
        Protocol::AppService => read_identity_header(&state_file)?,
        Protocol::Imds => String::new(),
    };
    let result = run_workload(&args, &agent.url, &identity_header).await;
    agent.stop().await;
    result
}

fn read_identity_header(state_file: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(state_file)
        .with_context(|| format!("cannot read {}", state_file.display()))?;
    let state: Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is damaged", state_file.display()))?;
    state
        .get("identityHeader")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| anyhow!("{} holds no identity header", state_file.display()))
}

/// Runs the command with the workload environment; Ctrl-C goes to the command (it shares the
/// terminal's process group) while this process waits for it to finish.
async fn run_workload(args: &RunArgs, url: &str, identity_header: &str) -> anyhow::Result<i32> {
    let Some((program, arguments)) = args.command.split_first() else {
        return Err(anyhow!("give the command to run after --"));
    };
    let mut command = tokio::process::Command::new(program);
    command.args(arguments);
    for variable in IDENTITY_VARIABLES.iter().chain([&MSI_SECRET]) {
        command.env_remove(variable);
    }
    for (variable, value) in workload_environment(args.protocol, url, identity_header) {
        command.env(variable, value);
    }
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(error) => {
            eprintln!("openmi: cannot run {program}: {error}");
            return Ok(if error.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            });
        }
    };
    loop {
        tokio::select! {
            status = child.wait() => {
                return Ok(exit_code(status.context("cannot wait for the command")?));
            }
            _ = tokio::signal::ctrl_c() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_take_units_and_stay_in_range() {
        assert_eq!(parse_lifetime("3600"), Ok(3600));
        assert_eq!(parse_lifetime("1h"), Ok(3600));
        assert_eq!(parse_lifetime("30m"), Ok(1800));
        assert_eq!(parse_lifetime("90s"), Ok(90));
        assert_eq!(parse_lifetime("1d"), Ok(86_400));
        assert!(parse_lifetime("59").is_err());
        assert!(parse_lifetime("2d").is_err());
        assert!(parse_lifetime("1w").is_err());
        assert!(parse_lifetime("h").is_err());
    }

    #[test]
    fn state_dir_is_per_vm_in_lower_case() {
        assert_eq!(
            agent_state_dir(Path::new("/c"), "SUB-1", "MyGroup", "VM1"),
            PathBuf::from("/c/agents/sub-1/mygroup/vm1")
        );
    }

    #[test]
    fn workload_environment_follows_the_protocol() {
        assert_eq!(
            workload_environment(Protocol::Imds, "http://127.0.0.1:5", "s"),
            vec![(
                "AZURE_POD_IDENTITY_AUTHORITY_HOST",
                "http://127.0.0.1:5".to_string()
            )]
        );
        assert_eq!(
            workload_environment(Protocol::AppService, "http://127.0.0.1:5", "s"),
            vec![
                (
                    "IDENTITY_ENDPOINT",
                    "http://127.0.0.1:5/msi/token".to_string()
                ),
                ("IDENTITY_HEADER", "s".to_string()),
            ]
        );
    }

    #[cfg(unix)]
    #[test]
    fn exit_status_passes_through_with_signals_as_128_plus_n() {
        use std::os::unix::process::ExitStatusExt as _;
        assert_eq!(exit_code(std::process::ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(exit_code(std::process::ExitStatus::from_raw(15)), 143);
    }
}
