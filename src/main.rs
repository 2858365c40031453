//! The `openmi` binary: parses the command line and dispatches to the server, the key rotation
//! command, the agent and the az-style CLI. No logic lives here.

use clap::{Parser, Subcommand};

/// openmi: a self-hostable managed-identity platform speaking Azure's protocols.
#[derive(Debug, Parser)]
#[command(name = "openmi", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the platform (ARM control plane + token service) over HTTPS.
    Server(ServerCommand),
    /// Run the per-machine agent: IMDS and the App Service identity endpoint for one enrolled VM.
    Agent(openmi_agent::AgentArgs),
    #[command(flatten)]
    Client(openmi_cli::Command),
}

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
struct ServerCommand {
    #[command(subcommand)]
    action: Option<ServerAction>,
    #[command(flatten)]
    args: openmi_server::ServerArgs,
}

#[derive(Debug, Subcommand)]
enum ServerAction {
    /// Manage the token signing keys.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
}

#[derive(Debug, Subcommand)]
enum KeysAction {
    /// Add a signing key: published at once, signing after --publish-delay seconds.
    Rotate(openmi_server::RotateArgs),
}

/// How much older than `openmi` the `openmi-agent` beside it may be and still be taken for the
/// same build (both are linked by one `cargo build`, seconds apart).
const SAME_BUILD_WINDOW: std::time::Duration = std::time::Duration::from_secs(120);

/// `openmi agent ...` hands over to `openmi-agent` when that binary sits beside this one and is
/// not older than it (so a stale one left by an earlier build, after `cargo build --bin openmi`,
/// is not run): same process id, same arguments. Otherwise the agent runs in this process.
fn exec_agent_binary() {
    use std::os::unix::process::CommandExt as _;
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref() != Some(std::ffi::OsStr::new("agent")) {
        return;
    }
    let Some(exe) = std::env::current_exe().ok() else {
        return;
    };
    let modified =
        |path: &std::path::Path| std::fs::metadata(path).and_then(|meta| meta.modified());
    let Some(agent) = exe
        .parent()
        .map(|dir| dir.join(openmi::AGENT_BINARY))
        .filter(|agent| match (modified(agent), modified(&exe)) {
            (Ok(agent), Ok(openmi)) => agent + SAME_BUILD_WINDOW >= openmi,
            _ => false,
        })
    else {
        return;
    };
    // `exec` returns only when it failed: then run the agent here.
    let _ = std::process::Command::new(agent).args(args).exec();
}

async fn try_main(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Server(ServerCommand { action: None, args }) => {
            openmi::init_logging(args.log_format == "json");
            openmi_server::run(args).await?;
            Ok(0)
        }
        Command::Server(ServerCommand {
            action:
                Some(ServerAction::Keys {
                    action: KeysAction::Rotate(args),
                }),
            ..
        }) => {
            openmi_server::rotate_keys(args).await?;
            Ok(0)
        }
        Command::Agent(args) => Ok(openmi::run_agent(args).await),
        Command::Client(command) => openmi_cli::run(command).await,
    }
}

fn main() {
    exec_agent_binary();
    let cli = Cli::parse();
    let runtime = openmi::runtime_or_exit(tokio::runtime::Builder::new_multi_thread());
    match runtime.block_on(try_main(cli)) {
        Ok(code) => std::process::exit(code),
        Err(error) => {
            eprintln!("openmi: {error:#}");
            std::process::exit(1);
        }
    }
}
