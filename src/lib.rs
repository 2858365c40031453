//! What the `openmi` and `openmi-agent` binaries share: logging set-up and running the agent.

/// Logs to stderr, filtered by `OPENMI_LOG` (default `info`), as text or JSON lines.
pub fn init_logging(json: bool) {
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

/// Runs the agent until it stops; the process exit status.
pub async fn run_agent(args: openmi_agent::AgentArgs) -> i32 {
    init_logging(args.log_format == "json");
    match openmi_agent::run(args).await {
        Ok(()) => 0,
        Err(error) => {
            eprintln!("openmi: {error}");
            error.exit_code()
        }
    }
}

/// The name of the agent-only binary that `openmi agent` hands over to when it sits beside
/// `openmi`: it links the agent alone, so the long-running process maps a fraction of the code
/// (BENCHMARKS.md, agent memory).
pub const AGENT_BINARY: &str = "openmi-agent";

/// `builder`'s runtime with every driver on; exits with status 2 if it cannot be built.
pub fn runtime_or_exit(mut builder: tokio::runtime::Builder) -> tokio::runtime::Runtime {
    match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("openmi: cannot start the async runtime: {error}");
            std::process::exit(2);
        }
    }
}
