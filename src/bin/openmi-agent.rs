//! `openmi-agent`: the agent alone (the same arguments as `openmi agent`), linking none of the
//! server, store or CLI code. `openmi agent` executes it when it is installed beside `openmi`.

use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "openmi agent",
    version,
    about = "The openmi agent: IMDS and the App Service identity endpoint for one enrolled VM."
)]
struct Cli {
    #[command(flatten)]
    args: openmi_agent::AgentArgs,
}

fn main() {
    let cli = Cli::parse();
    let runtime = openmi::runtime_or_exit(tokio::runtime::Builder::new_current_thread());
    let code = runtime.block_on(openmi::run_agent(cli.args));
    std::process::exit(code);
}
