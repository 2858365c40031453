//! The az-style command line: `login`, `account`, `ad sp`, `group`, `identity`, `vm` (with
//! `vm join-token` and `vm run`, which starts the agent), `resource`, `role`, `deployment`,
//! `cosmosdb` and `audit list`, talking HTTPS to an openmi server.
//!
//! Every verb takes az's `--output` and `--query` (see `output`); the ARM verbs also take
//! `--subscription` and reach the server through the small client in `arm`.
//!
//! **Architecture invariant:** the CLI reaches the platform only over HTTPS, as `az` does; it
//! links no server-side crate. The session (server URL, CA, tokens) lives in
//! `$OPENMI_CONFIG_DIR/session.json` (default `~/.openmi`), mode 0600.

mod arm;
mod audit;
mod az_config;
mod client;
mod cosmosdb;
mod deployment;
mod group;
mod identity;
mod output;
mod resource;
mod role;
mod session;
mod vm;
mod vm_agent;

use std::io::IsTerminal as _;

use anyhow::{anyhow, Context};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::client::Client;
use crate::output::{Outcome, OutputArgs};
use crate::session::{Identity, Session};

/// Commands of the az-style CLI.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Sign in to an openmi server as a user or a service principal.
    Login {
        #[command(flatten)]
        args: LoginArgs,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// The signed-in account.
    Account {
        #[command(flatten)]
        output: OutputArgs,
        #[command(subcommand)]
        action: AccountAction,
    },
    /// Directory objects (applications and service principals).
    Ad {
        #[command(flatten)]
        output: OutputArgs,
        #[command(subcommand)]
        action: AdAction,
    },
    /// Resource groups.
    Group(group::GroupCommand),
    /// User-assigned managed identities.
    Identity(identity::IdentityCommand),
    /// Virtual machines and their managed identities.
    Vm(vm::VmCommand),
    /// Any resource, by id or by group, name and type.
    Resource(resource::ResourceCommand),
    /// Role definitions and role assignments (role-based access control).
    Role(role::RoleCommand),
    /// ARM template deployments.
    Deployment(deployment::DeploymentCommand),
    /// Print (or apply to an AZURE_CONFIG_DIR) what points a stock `az` at this openmi server.
    AzConfig(az_config::AzConfigArgs),
    /// Cosmos DB accounts, SQL databases and containers, data-plane roles.
    Cosmosdb(cosmosdb::CosmosdbCommand),
    /// The audit log: ARM's Activity Log, sign-ins and directory changes.
    Audit(audit::AuditCommand),
}

/// `openmi login`
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The server's URL, e.g. https://127.0.0.1:8443.
    #[arg(long, env = "OPENMI_SERVER")]
    server: String,
    /// User name, or the application id with --service-principal.
    #[arg(long, short = 'u')]
    username: String,
    /// Password, or the client secret with --service-principal (which may start with `-`).
    #[arg(long, short = 'p', allow_hyphen_values = true)]
    password: String,
    /// Sign in as a service principal (client credentials).
    #[arg(long)]
    service_principal: bool,
    /// Tenant id (required with --service-principal).
    #[arg(long, short = 't')]
    tenant: Option<String>,
    /// CA certificate (PEM) to trust for the server, e.g. DIR/tls/ca.pem.
    #[arg(long)]
    ca_cert: Option<std::path::PathBuf>,
}

/// `openmi account ...`
#[derive(Debug, Subcommand)]
pub enum AccountAction {
    /// Show the signed-in account and its subscription.
    Show,
    /// Print an access token for the platform (refreshing it when needed).
    GetAccessToken,
}

/// `openmi ad ...`
#[derive(Debug, Subcommand)]
pub enum AdAction {
    /// Service principals.
    Sp {
        #[command(subcommand)]
        action: SpAction,
    },
}

/// `openmi ad sp ...`
#[derive(Debug, Subcommand)]
pub enum SpAction {
    /// Create an application with a service principal and a secret (or a certificate).
    CreateForRbac {
        /// Display name; default `openmi-sp-<timestamp>`.
        #[arg(long, short = 'n')]
        name: Option<String>,
        /// A certificate to register instead of a secret: `@file.pem` or a path.
        #[arg(long)]
        cert: Option<String>,
    },
}

/// Runs a CLI command; returns the process exit code.
pub async fn run(command: Command) -> anyhow::Result<i32> {
    let command = match command {
        // `vm run` exits with its command's status instead of printing an outcome.
        Command::Vm(vm::VmCommand {
            global,
            action: vm::VmAction::Run(args),
        }) => return vm_agent::run(global, args).await,
        // `az-config` prints shell lines, not a JSON document.
        Command::AzConfig(args) => {
            println!("{}", az_config::run(args)?);
            return Ok(0);
        }
        other => other,
    };
    let (output, outcome) = match command {
        Command::Login { args, output } => (output, Outcome::value(login(args).await?)),
        Command::Account {
            output,
            action: AccountAction::Show,
        } => (output, Outcome::value(account_show().await?)),
        Command::Account {
            output,
            action: AccountAction::GetAccessToken,
        } => (output, Outcome::value(get_access_token().await?)),
        Command::Ad {
            output,
            action:
                AdAction::Sp {
                    action: SpAction::CreateForRbac { name, cert },
                },
        } => (output, Outcome::value(create_for_rbac(name, cert).await?)),
        Command::Group(command) => (command.global.output.clone(), group::run(command).await?),
        Command::Identity(command) => {
            (command.global.output.clone(), identity::run(command).await?)
        }
        Command::Vm(command) => (command.global.output.clone(), vm::run(command).await?),
        Command::Resource(command) => {
            (command.global.output.clone(), resource::run(command).await?)
        }
        Command::Role(command) => (command.global.output.clone(), role::run(command).await?),
        Command::Deployment(command) => (
            command.global.output.clone(),
            deployment::run(command).await?,
        ),
        Command::AzConfig(_) => return Ok(0),
        Command::Cosmosdb(command) => {
            (command.global.output.clone(), cosmosdb::run(command).await?)
        }
        Command::Audit(command) => (command.global.output.clone(), audit::run(command).await?),
    };
    output.print(outcome)?;
    Ok(0)
}

async fn login(args: LoginArgs) -> anyhow::Result<Value> {
    let server = args.server.trim_end_matches('/').to_string();
    if !server.starts_with("https://") {
        return Err(anyhow!("--server must be an https:// URL"));
    }
    let ca_cert = args
        .ca_cert
        .map(|path| {
            path.canonicalize()
                .with_context(|| format!("cannot read {}", path.display()))
        })
        .transpose()?;
    let client = Client::new(&server, ca_cert.as_deref())?;
    let identity = if args.service_principal {
        let tenant = args
            .tenant
            .ok_or_else(|| anyhow!("--tenant is required with --service-principal"))?;
        Identity::ServicePrincipal {
            tenant,
            client_id: args.username,
            secret: args.password.clone(),
        }
    } else {
        Identity::User {
            tenant: args.tenant.unwrap_or_else(|| "organizations".to_string()),
            username: args.username,
            refresh_token: String::new(),
        }
    };
    let mut session = Session::new(server, ca_cert, identity);
    if args.service_principal {
        session.acquire_token(&client).await?;
    } else {
        session.login_user(&client, &args.password).await?;
    }
    let subscriptions = client
        .get_json(
            "/subscriptions?api-version=2022-12-01",
            session.access_token(),
        )
        .await?;
    let first = subscriptions
        .get("value")
        .and_then(Value::as_array)
        .and_then(|list| list.first().cloned())
        .ok_or_else(|| anyhow!("no subscriptions found for this account"))?;
    session.subscription_id = first
        .get("subscriptionId")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    session.subscription_name = first
        .get("displayName")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    session.save()?;
    Ok(json!([account_json(&session)]))
}

fn account_json(session: &Session) -> Value {
    let (name, kind) = match &session.identity {
        Identity::User { username, .. } => (username.clone(), "user"),
        Identity::ServicePrincipal { client_id, .. } => (client_id.clone(), "servicePrincipal"),
    };
    json!({
        "cloudName": "openmi",
        "environmentName": "openmi",
        "homeTenantId": session.tenant_id,
        "id": session.subscription_id,
        "isDefault": true,
        "managedByTenants": [],
        "name": session.subscription_name,
        "state": "Enabled",
        "tenantId": session.tenant_id,
        "user": {"name": name, "type": kind},
        "server": session.server,
    })
}

/// The saved session, with a fresh access token, and a client for its server.
pub(crate) async fn signed_in() -> anyhow::Result<(Session, Client)> {
    let mut session = Session::load()?;
    let client = Client::new(&session.server, session.ca_cert.as_deref())?;
    if session.needs_refresh() {
        session.acquire_token(&client).await?;
        session.save()?;
    }
    Ok((session, client))
}

async fn account_show() -> anyhow::Result<Value> {
    let (session, _) = signed_in().await?;
    Ok(account_json(&session))
}

async fn get_access_token() -> anyhow::Result<Value> {
    let (session, _) = signed_in().await?;
    Ok(json!({
        "accessToken": session.access_token(),
        "expires_on": session.expires_on,
        "subscription": session.subscription_id,
        "tenant": session.tenant_id,
        "tokenType": "Bearer",
    }))
}

/// Reads `@file` or a path holding a PEM certificate; returns base64 DER as Graph wants it.
fn read_certificate(argument: &str) -> anyhow::Result<String> {
    let path = argument.strip_prefix('@').unwrap_or(argument);
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read certificate file {path}"))?;
    let begin = "-----BEGIN CERTIFICATE-----";
    let start = text
        .find(begin)
        .ok_or_else(|| anyhow!("{path} holds no PEM certificate"))?
        + begin.len();
    let end = text[start..]
        .find("-----END CERTIFICATE-----")
        .ok_or_else(|| anyhow!("{path} holds no complete PEM certificate"))?
        + start;
    Ok(text[start..end]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect())
}

async fn create_for_rbac(name: Option<String>, cert: Option<String>) -> anyhow::Result<Value> {
    let (session, client) = signed_in().await?;
    let name = name.unwrap_or_else(|| format!("openmi-sp-{}", session::now()));
    let mut application_body = json!({"displayName": name});
    if let Some(cert) = &cert {
        application_body["keyCredentials"] = json!([{"type": "AsymmetricX509Cert", "usage": "Verify", "key": read_certificate(cert)?}]);
    }
    let token = session.access_token();
    let application = client
        .post_json("/v1.0/applications", token, &application_body)
        .await?;
    let application_id = application
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("the server returned no application id"))?;
    let app_id = application
        .get("appId")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("the server returned no appId"))?
        .to_string();
    client
        .post_json("/v1.0/servicePrincipals", token, &json!({"appId": app_id}))
        .await?;
    let mut output = json!({"appId": app_id, "displayName": name, "tenant": session.tenant_id});
    if cert.is_none() {
        let password = client
            .post_json(
                &format!("/v1.0/applications/{application_id}/addPassword"),
                token,
                &json!({"passwordCredential": {"displayName": "rbac"}}),
            )
            .await?;
        output["password"] = password.get("secretText").cloned().unwrap_or(Value::Null);
    }
    Ok(output)
}

/// Asks "Are you sure...?" unless `yes`; refuses without a terminal, as az does.
pub(crate) fn confirm(yes: bool) -> anyhow::Result<()> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(anyhow!(
            "Operation cancelled: unable to prompt for confirmation as no tty available. Use --yes."
        ));
    }
    loop {
        eprint!("Are you sure you want to perform this operation? (y/n): ");
        let mut answer = String::new();
        if std::io::stdin().read_line(&mut answer)? == 0 {
            return Err(anyhow!("Operation cancelled."));
        }
        match answer.trim().to_ascii_lowercase().as_str() {
            "y" | "yes" => return Ok(()),
            "n" | "no" => return Err(anyhow!("Operation cancelled.")),
            _ => eprintln!("Please enter 'y' (yes) or 'n' (no)."),
        }
    }
}
