//! `openmi server` arguments (what the user typed, validated only) and the resolved configuration
//! (after the I/O: data dir, TLS files, database URL, key-encryption key). Two stages, as ripgrep.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};
use openmi_token::Kek;

use crate::connection::ClientTimeouts;
use crate::files::write_private_file;
use crate::tls::{ensure_local_ca, TlsFiles};

/// Where the store lives and how its secrets are opened; shared by `server` and `server keys rotate`.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
    /// Data directory: SQLite database, TLS material, bootstrap.json.
    #[arg(long, env = "OPENMI_DATA_DIR", default_value = "./openmi-data")]
    pub data_dir: PathBuf,
    /// PostgreSQL URL (postgres://...); without it the store is SQLite in the data directory.
    #[arg(long, env = "OPENMI_DATABASE_URL")]
    pub database_url: Option<String>,
    /// File holding the key-encryption key (64 hex characters). Servers sharing one database need
    /// the same key. Default: DIR/kek, created on first start.
    #[arg(long, env = "OPENMI_KEY_ENCRYPTION_KEY_FILE")]
    pub key_encryption_key_file: Option<PathBuf>,
}

/// `openmi server` options.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Address to listen on (HTTPS).
    #[arg(long, env = "OPENMI_LISTEN", default_value = "127.0.0.1:8443")]
    pub listen: String,
    /// More addresses serving the same (repeatable). `127.0.0.1:443` lets `az login -u` work
    /// against a server on another port: MSAL sends its user-realm lookup to port 443 of the
    /// authority's host whatever port the authority names.
    #[arg(
        long = "also-listen",
        env = "OPENMI_ALSO_LISTEN",
        value_delimiter = ','
    )]
    pub also_listen: Vec<String>,
    /// Extra host names for the server certificate and the token service's own URLs (repeatable).
    #[arg(long = "hostname", env = "OPENMI_HOSTNAMES", value_delimiter = ',')]
    pub hostnames: Vec<String>,
    /// Use this certificate (PEM) instead of one from the local CA.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Lifetime of access tokens for applications, in seconds.
    #[arg(long, default_value_t = 3600, value_parser = clap::value_parser!(i64).range(60..=86400))]
    pub token_lifetime: i64,
    /// Lifetime of access tokens for users, in seconds.
    #[arg(long, default_value_t = 3600, value_parser = clap::value_parser!(i64).range(60..=86400))]
    pub user_token_lifetime: i64,
    /// Lifetime of managed-identity tokens, in seconds (Azure's are about 24 h).
    #[arg(long, default_value_t = 86400, value_parser = clap::value_parser!(i64).range(300..=86400))]
    pub mi_token_lifetime: i64,
    /// How often to re-read signing keys from the store (picks up rotations by other processes), in seconds.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub key_reload_interval: u64,
    /// How long a deployment PUT waits for the deployment to finish before answering `Running`
    /// with its status URL, in seconds. 0 answers at once, as ARM always does.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(0..=60))]
    pub deployment_wait: u64,
    /// Failed password sign-ins that lock an account (Entra's smart lockout; 0 turns it off).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(0..=1000))]
    pub lockout_threshold: u32,
    /// Seconds of the first lockout; each further one doubles it, up to an hour.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(i64).range(1..=3600))]
    pub lockout_duration: i64,
    /// Whether the audit log records writes, refused requests and sign-ins (`off` only to
    /// measure what it costs).
    #[arg(long, default_value = "on", value_parser = ["on", "off"])]
    pub audit: String,
    /// Days an audit record is kept (the Activity Log keeps 90).
    #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u64).range(1..=3650))]
    pub audit_retention_days: u64,
    /// Token requests per second one client id may send, with bursts of twice that; more are
    /// answered 429 with `Retry-After` (0: no limit).
    #[arg(long, default_value_t = 1000)]
    pub token_rate_limit: u32,
    /// Token requests per second one remote address may send, bursts of twice that (0: no limit).
    #[arg(long, default_value_t = 2000)]
    pub token_address_rate_limit: u32,
    /// Seconds a client has to send a request's headers (counted from the connection's start,
    /// or from the first byte of a later request); also the longest pause allowed while it
    /// sends a body. A slower client's connection is closed.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub header_timeout: u64,
    /// Seconds a keep-alive connection may wait for its next request before it is closed.
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub idle_timeout: u64,
    /// Log format: text or json.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
}

/// `openmi server keys rotate` options.
#[derive(Debug, Clone, clap::Args)]
pub struct RotateArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Seconds the new key is published in the JWKS before it starts signing.
    #[arg(long, default_value_t = 86400, value_parser = clap::value_parser!(i64).range(0..))]
    pub publish_delay: i64,
}

/// Everything `run` needs, with every value filled in.
#[derive(Debug)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// `--also-listen` addresses.
    pub also_listen: Vec<SocketAddr>,
    pub database_url: String,
    pub kek: Kek,
    /// When the KEK was generated now, where to save it once the store accepted it.
    pub kek_to_save: Option<(PathBuf, String)>,
    pub tls: TlsFiles,
    /// `https://host:port` for every name the server answers to; the first is the primary URL.
    pub base_urls: Vec<String>,
    pub app_token_lifetime: i64,
    pub user_token_lifetime: i64,
    pub mi_token_lifetime: i64,
    pub key_reload_interval: std::time::Duration,
    pub deployment_wait: std::time::Duration,
    pub client_timeouts: ClientTimeouts,
    pub lockout: openmi_engine::LockoutPolicy,
    pub audit: bool,
    pub audit_retention: std::time::Duration,
    pub token_rate_limit: u32,
    pub token_address_rate_limit: u32,
}

/// Opens or creates the data directory, refusing a path that is not a usable directory.
pub fn prepare_data_dir(data_dir: &Path) -> anyhow::Result<PathBuf> {
    if data_dir.exists() && !data_dir.is_dir() {
        return Err(anyhow!(
            "data directory {} is not a directory",
            data_dir.display()
        ));
    }
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700));
    }
    let probe = data_dir.join(".write-test");
    std::fs::write(&probe, b"")
        .with_context(|| format!("data directory {} is not writable", data_dir.display()))?;
    let _ = std::fs::remove_file(&probe);
    data_dir
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", data_dir.display()))
}

impl StoreArgs {
    /// The database URL: the given one, or SQLite in the data directory.
    pub fn database_url(&self, data_dir: &Path) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}?mode=rwc", data_dir.join("openmi.db").display()),
        }
    }

    /// The KEK: from --key-encryption-key-file, from OPENMI_KEY_ENCRYPTION_KEY, from DIR/kek, or a
    /// new one (returned with where to save it).
    pub fn load_kek(&self, data_dir: &Path) -> anyhow::Result<(Kek, Option<(PathBuf, String)>)> {
        let from_file = |path: &Path| -> anyhow::Result<Kek> {
            let text = std::fs::read_to_string(path).with_context(|| {
                format!("cannot read the key-encryption key file {}", path.display())
            })?;
            Kek::from_hex(&text).map_err(|error| anyhow!("{}: {error}", path.display()))
        };
        if let Some(path) = &self.key_encryption_key_file {
            return Ok((from_file(path)?, None));
        }
        if let Ok(text) = std::env::var("OPENMI_KEY_ENCRYPTION_KEY") {
            return Ok((
                Kek::from_hex(&text)
                    .map_err(|error| anyhow!("OPENMI_KEY_ENCRYPTION_KEY: {error}"))?,
                None,
            ));
        }
        let default_path = data_dir.join("kek");
        if default_path.exists() {
            return Ok((from_file(&default_path)?, None));
        }
        let (kek, hex) = Kek::generate().map_err(|error| anyhow!("{error}"))?;
        Ok((kek, Some((default_path, hex))))
    }
}

/// Saves a newly generated KEK (mode 0600).
pub fn save_kek(path: &Path, hex: &str) -> anyhow::Result<()> {
    write_private_file(path, format!("{hex}\n").as_bytes())
}

impl ServerConfig {
    /// Resolves `args`: the I/O of configuration happens here and nowhere else.
    pub fn resolve(args: &ServerArgs) -> anyhow::Result<ServerConfig> {
        let listen: SocketAddr = args
            .listen
            .parse()
            .map_err(|_| anyhow!("--listen '{}' is not an address of the form HOST:PORT (for example 127.0.0.1:8443)", args.listen))?;
        let also_listen = args
            .also_listen
            .iter()
            .map(|address| {
                address.parse::<SocketAddr>().map_err(|_| {
                    anyhow!("--also-listen '{address}' is not an address of the form HOST:PORT (for example 127.0.0.1:443)")
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        for name in &args.hostnames {
            if name.is_empty()
                || name.contains(['/', ' ', ':']) && name.parse::<std::net::IpAddr>().is_err()
            {
                return Err(anyhow!("--hostname '{name}' is not a host name"));
            }
        }
        let data_dir = prepare_data_dir(&args.store.data_dir)?;
        let database_url = args.store.database_url(&data_dir);
        let (kek, kek_to_save) = args.store.load_kek(&data_dir)?;
        let mut names = vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "::1".to_string(),
        ];
        for name in &args.hostnames {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
        let listen_ip = listen.ip();
        for ip in std::iter::once(listen_ip).chain(also_listen.iter().map(SocketAddr::ip)) {
            if !ip.is_unspecified() && !names.contains(&ip.to_string()) {
                names.push(ip.to_string());
            }
        }
        let tls = match (&args.tls_cert, &args.tls_key) {
            (Some(cert_path), Some(key_path)) => TlsFiles {
                cert_path: cert_path.clone(),
                key_path: key_path.clone(),
                ca_cert_path: None,
            },
            _ => ensure_local_ca(&data_dir, &names)?,
        };
        let port = listen.port();
        let url_host = |name: &str| {
            if name.contains(':') {
                format!("[{name}]")
            } else {
                name.to_string()
            }
        };
        let primary = if listen_ip.is_unspecified() {
            args.hostnames
                .first()
                .cloned()
                .unwrap_or_else(|| "127.0.0.1".to_string())
        } else {
            listen_ip.to_string()
        };
        let mut base_urls = vec![format!("https://{}:{port}", url_host(&primary))];
        for name in &names {
            let url = format!("https://{}:{port}", url_host(name));
            if !base_urls.contains(&url) {
                base_urls.push(url);
            }
            if port == 443 {
                base_urls.push(format!("https://{}", url_host(name)));
            }
            for extra in &also_listen {
                let url = if extra.port() == 443 {
                    format!("https://{}", url_host(name))
                } else {
                    format!("https://{}:{}", url_host(name), extra.port())
                };
                if !base_urls.contains(&url) {
                    base_urls.push(url);
                }
            }
        }
        Ok(ServerConfig {
            data_dir,
            listen,
            also_listen,
            database_url,
            kek,
            kek_to_save,
            tls,
            base_urls,
            app_token_lifetime: args.token_lifetime,
            user_token_lifetime: args.user_token_lifetime,
            mi_token_lifetime: args.mi_token_lifetime,
            key_reload_interval: std::time::Duration::from_secs(args.key_reload_interval),
            deployment_wait: std::time::Duration::from_secs(args.deployment_wait),
            client_timeouts: ClientTimeouts {
                header: std::time::Duration::from_secs(args.header_timeout),
                idle: std::time::Duration::from_secs(args.idle_timeout),
            },
            audit: args.audit == "on",
            audit_retention: std::time::Duration::from_secs(args.audit_retention_days * 86400),
            token_rate_limit: args.token_rate_limit,
            token_address_rate_limit: args.token_address_rate_limit,
            lockout: openmi_engine::LockoutPolicy {
                threshold: args.lockout_threshold,
                duration: args.lockout_duration,
            },
        })
    }

    /// The primary URL (first of `base_urls`).
    pub fn url(&self) -> &str {
        self.base_urls
            .first()
            .map(String::as_str)
            .unwrap_or("https://127.0.0.1:8443")
    }
}
