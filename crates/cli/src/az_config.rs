//! `openmi az-config`: points a stock Azure CLI at the openmi server this CLI is signed in to
//! (or `--server`), as research/az-cli.md §1 says az needs it: `az cloud register` with only the
//! resource-manager URL (az reads every other endpoint from the server's `/metadata/endpoints`),
//! `az cloud set`, `core.instance_discovery=false` (else MSAL asks login.microsoftonline.com
//! about the authority), and `REQUESTS_CA_BUNDLE` naming openmi's CA (az trusts nothing else
//! for every HTTPS call, MSAL's included; the variable cannot live in az's config).
//!
//! Without `--apply` it prints the commands; with `--apply DIR` it runs them with
//! `AZURE_CONFIG_DIR=DIR` and prints the environment lines to export.

use std::path::PathBuf;

use anyhow::{anyhow, Context};
use clap::Args;

/// `openmi az-config`
#[derive(Debug, Args)]
pub struct AzConfigArgs {
    /// The server's URL; default: the one `openmi login` signed in to.
    #[arg(long)]
    server: Option<String>,
    /// Its CA certificate (PEM); default: the one `openmi login` was given.
    #[arg(long)]
    ca_cert: Option<PathBuf>,
    /// The name of the cloud in az.
    #[arg(long, default_value = "openmi")]
    name: String,
    /// Run the commands for this AZURE_CONFIG_DIR instead of printing them.
    #[arg(long, value_name = "AZURE_CONFIG_DIR")]
    apply: Option<PathBuf>,
    /// The az executable (with --apply).
    #[arg(long, default_value = "az")]
    az: String,
}

fn shell_quote(text: &str) -> String {
    if text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/:._-=@".contains(c))
    {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// Runs `openmi az-config`; the text to print.
pub fn run(args: AzConfigArgs) -> anyhow::Result<String> {
    let session =
        match (&args.server, &args.ca_cert) {
            (Some(_), Some(_)) => None,
            _ => Some(crate::session::Session::load().context(
                "not signed in: run `openmi login` first, or give --server and --ca-cert",
            )?),
        };
    let server = args
        .server
        .clone()
        .or_else(|| session.as_ref().map(|session| session.server.clone()))
        .ok_or_else(|| anyhow!("give --server"))?;
    let ca_cert = args
        .ca_cert
        .clone()
        .or_else(|| session.as_ref().and_then(|session| session.ca_cert.clone()));
    let arm_url = format!("{}/", server.trim_end_matches('/'));
    let commands: Vec<Vec<String>> = vec![
        vec![
            "cloud".into(),
            "register".into(),
            "--name".into(),
            args.name.clone(),
            "--endpoint-resource-manager".into(),
            arm_url,
        ],
        vec![
            "cloud".into(),
            "set".into(),
            "--name".into(),
            args.name.clone(),
        ],
        vec![
            "config".into(),
            "set".into(),
            "core.instance_discovery=false".into(),
        ],
    ];
    let mut environment = vec![
        (
            "AZURE_CORE_INSTANCE_DISCOVERY".to_string(),
            "false".to_string(),
        ),
        (
            "AZURE_CORE_COLLECT_TELEMETRY".to_string(),
            "false".to_string(),
        ),
    ];
    if let Some(ca) = &ca_cert {
        let absolute = std::fs::canonicalize(ca).unwrap_or_else(|_| ca.clone());
        environment.insert(
            0,
            (
                "REQUESTS_CA_BUNDLE".to_string(),
                absolute.display().to_string(),
            ),
        );
    }
    let exports: Vec<String> = environment
        .iter()
        .map(|(name, value)| format!("export {name}={}", shell_quote(value)))
        .collect();
    let Some(config_dir) = &args.apply else {
        let mut lines = exports;
        lines.extend(commands.iter().map(|command| {
            let words: Vec<String> = command.iter().map(|word| shell_quote(word)).collect();
            format!("az {}", words.join(" "))
        }));
        return Ok(lines.join("\n"));
    };
    std::fs::create_dir_all(config_dir)
        .with_context(|| format!("cannot create {}", config_dir.display()))?;
    for command in &commands {
        let mut process = std::process::Command::new(&args.az);
        process
            .args(command)
            .env("AZURE_CONFIG_DIR", config_dir)
            .envs(environment.iter().map(|(name, value)| (name, value)))
            .stdout(std::process::Stdio::null());
        // Registering again replaces the cloud's endpoints (the server may have moved).
        if command.get(1).map(String::as_str) == Some("register") {
            let _ = std::process::Command::new(&args.az)
                .args(["cloud", "unregister", "--name", &args.name])
                .env("AZURE_CONFIG_DIR", config_dir)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
        let output = process
            .output()
            .with_context(|| format!("cannot run {}", args.az))?;
        if !output.status.success() {
            return Err(anyhow!(
                "`az {}` failed: {}",
                command.join(" "),
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
    }
    let mut lines = vec![format!(
        "export AZURE_CONFIG_DIR={}",
        shell_quote(&config_dir.display().to_string())
    )];
    lines.extend(exports);
    Ok(lines.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printed_commands_name_the_server() {
        let text = run(AzConfigArgs {
            server: Some("https://127.0.0.1:8443".into()),
            ca_cert: Some(PathBuf::from("/nonexistent/ca.pem")),
            name: "openmi".into(),
            apply: None,
            az: "az".into(),
        })
        .unwrap();
        assert!(
            text.contains("export REQUESTS_CA_BUNDLE=/nonexistent/ca.pem"),
            "{text}"
        );
        assert!(text.contains("az cloud register --name openmi --endpoint-resource-manager https://127.0.0.1:8443/"), "{text}");
        assert!(text.contains("az cloud set --name openmi"), "{text}");
        assert!(
            text.contains("az config set core.instance_discovery=false"),
            "{text}"
        );
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote("https://x:1/"), "https://x:1/");
    }
}
