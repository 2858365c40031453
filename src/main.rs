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

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("OPENMI_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn try_main(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Server(ServerCommand { action: None, args }) => {
            init_logging(args.log_format == "json");
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
        Command::Agent(args) => {
            init_logging(args.log_format == "json");
            match openmi_agent::run(args).await {
                Ok(()) => Ok(0),
                Err(error) => {
                    eprintln!("openmi: {error}");
                    Ok(error.exit_code())
                }
            }
        }
        Command::Client(command) => openmi_cli::run(command).await,
    }
}

fn main() {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("openmi: cannot start the async runtime: {error}");
            std::process::exit(2);
        }
    };
    match runtime.block_on(try_main(cli)) {
        Ok(code) => std::process::exit(code),
        Err(error) => {
            eprintln!("openmi: {error:#}");
            std::process::exit(1);
        }
    }
}
