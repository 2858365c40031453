//! The fleet simulator: N agents, each with its own key, enrolment and open watch, against one
//! openmi server, speaking the agent protocol as `openmi agent` does. See Cargo.toml.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde_json::{json, Value};
use tokio::sync::{mpsc, Semaphore};

type Error = Box<dyn std::error::Error + Send + Sync>;

struct Args {
    data_dir: String,
    agents: usize,
    server_pid: u32,
    idle_seconds: u64,
    changes: usize,
    mint_agents: usize,
}

fn args() -> Result<Args, Error> {
    let mut args = Args {
        data_dir: String::new(),
        agents: 1000,
        server_pid: 0,
        idle_seconds: 30,
        changes: 200,
        mint_agents: 1000,
    };
    let mut given = std::env::args().skip(1);
    while let Some(flag) = given.next() {
        let value = given.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--data-dir" => args.data_dir = value,
            "--agents" => args.agents = value.parse()?,
            "--server-pid" => args.server_pid = value.parse()?,
            "--idle-seconds" => args.idle_seconds = value.parse()?,
            "--changes" => args.changes = value.parse()?,
            "--mint-agents" => args.mint_agents = value.parse()?,
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    if args.data_dir.is_empty() || args.server_pid == 0 {
        return Err("--data-dir and --server-pid are required".into());
    }
    Ok(args)
}

/// CPU seconds (user + system) the process has used, from /proc.
fn cpu_seconds(pid: u32) -> Result<f64, Error> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat.rsplit_once(") ").ok_or("odd /proc stat")?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11).ok_or("utime")?.parse::<f64>()? + fields.get(12).ok_or("stime")?.parse::<f64>()?;
    Ok(ticks / 100.0)
}

fn rss_mb(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| status.lines().find(|line| line.starts_with("VmRSS")).map(|line| line.split_whitespace().nth(1).unwrap_or("0").to_string()))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| format!("{} MB", kb / 1024))
        .unwrap_or_else(|| "?".to_string())
}

struct Agent {
    id: String,
    key: EcdsaKeyPair,
    vm: String,
    http: reqwest::Client,
    /// The assertion in use and when it was signed: reused, as `openmi agent` does, until a
    /// minute before its ten minutes end.
    assertion: std::sync::Mutex<Option<(String, Instant)>>,
}

impl Agent {
    /// `Authorization: Agent <ES256 JWT>` (agent protocol §3), reused while fresh.
    fn authorization(&self) -> Result<String, Error> {
        if let Ok(held) = self.assertion.lock() {
            if let Some((value, signed)) = held.as_ref() {
                if signed.elapsed() < Duration::from_secs(540) {
                    return Ok(value.clone());
                }
            }
        }
        let fresh = self.sign()?;
        if let Ok(mut held) = self.assertion.lock() {
            *held = Some((fresh.clone(), Instant::now()));
        }
        Ok(fresh)
    }

    fn sign(&self) -> Result<String, Error> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs() as i64;
        let header = json!({"alg": "ES256", "typ": "JWT", "kid": self.id});
        let claims = json!({"iss": self.id, "sub": self.id, "aud": "openmi-agent", "iat": now, "exp": now + 600, "jti": uuid::Uuid::new_v4().to_string()});
        let input = format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
        let signature = self.key.sign(&SystemRandom::new(), input.as_bytes()).map_err(|_| "signing failed")?;
        Ok(format!("Agent {input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref())))
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args = args()?;
    let boot: Value = serde_json::from_str(&std::fs::read_to_string(format!("{}/bootstrap.json", args.data_dir))?)?;
    let text = |name: &str| boot.get(name).and_then(Value::as_str).unwrap_or_default().to_string();
    let (url, tenant, subscription) = (text("url"), text("tenantId"), text("subscriptionId"));
    let ca = reqwest::Certificate::from_pem(std::fs::read(format!("{}/tls/ca.pem", args.data_dir))?.as_slice())?;
    let client = || reqwest::Client::builder().tls_certs_only([ca.clone()]).http1_only().pool_max_idle_per_host(2).timeout(Duration::from_secs(60)).build();
    let admin = client()?;
    let token: Value = admin
        .post(format!("{url}/{tenant}/oauth2/v2.0/token"))
        .form(&[("grant_type", "client_credentials"), ("client_id", &text("clientId")), ("client_secret", &text("clientSecret")), ("scope", "https://management.azure.com/.default")])
        .send().await?.json().await?;
    let bearer = format!("Bearer {}", token.get("access_token").and_then(Value::as_str).ok_or("no token")?);
    let group = format!("/subscriptions/{subscription}/resourceGroups/fleet");
    admin.put(format!("{url}{group}?api-version=2021-04-01")).header("Authorization", &bearer).json(&json!({"location": "westus"})).send().await?.error_for_status()?;

    // VMs with a system identity, join tokens, enrolment: 16 at a time.
    let began = Instant::now();
    let gate = Arc::new(Semaphore::new(16));
    let mut tasks = Vec::new();
    for index in 0..args.agents {
        let (gate, admin, bearer, url, group) = (gate.clone(), admin.clone(), bearer.clone(), url.clone(), group.clone());
        let http = client()?;
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire().await?;
            let vm = format!("{group}/providers/Microsoft.Compute/virtualMachines/vm{index:05}");
            admin.put(format!("{url}{vm}?api-version=2024-07-01")).header("Authorization", &bearer)
                .json(&json!({"location": "westus", "identity": {"type": "SystemAssigned"}, "properties": {"hardwareProfile": {"vmSize": "Standard_B1s"}}}))
                .send().await?.error_for_status()?;
            let join: Value = admin.post(format!("{url}{vm}/generateJoinToken?api-version=2024-11-01")).header("Authorization", &bearer).json(&json!({})).send().await?.error_for_status()?.json().await?;
            let document = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).map_err(|_| "key")?.to_pkcs8v1().map_err(|_| "pkcs8")?;
            let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, document.as_ref()).map_err(|_| "key")?;
            let public = key.public_key().as_der().map_err(|_| "der")?;
            let enrolled: Value = http.post(format!("{url}/openmi/agent/enroll"))
                .json(&json!({"joinToken": join.get("joinToken"), "publicKey": STANDARD.encode(public.as_ref())}))
                .send().await?.error_for_status()?.json().await?;
            let id = enrolled.get("agentId").and_then(Value::as_str).ok_or("no agentId")?.to_string();
            Ok::<Agent, Error>(Agent { id, key, vm, http, assertion: std::sync::Mutex::new(None) })
        }));
    }
    let mut agents = Vec::new();
    for task in tasks {
        agents.push(Arc::new(task.await??));
    }
    eprintln!("enrolled {} agents in {:.1} s", agents.len(), began.elapsed().as_secs_f64());

    // Every agent holds its watch open, as `openmi agent` does; a changed version is reported.
    let (changed, mut changes) = mpsc::unbounded_channel::<(usize, Instant)>();
    let open = Arc::new(AtomicUsize::new(0));
    for (index, agent) in agents.iter().enumerate() {
        let (agent, url, changed, open) = (agent.clone(), url.clone(), changed.clone(), open.clone());
        tokio::spawn(async move {
            let mut version: Option<i64> = None;
            let mut counted = false;
            loop {
                let Ok(authorization) = agent.authorization() else { return };
                let query = version.map(|v| format!("?version={v}")).unwrap_or_default();
                let request = agent.http.get(format!("{url}/openmi/agent/watch{query}")).header("Authorization", authorization);
                if !counted && version.is_some() {
                    open.fetch_add(1, Ordering::SeqCst);
                    counted = true;
                }
                match request.send().await {
                    Ok(response) => {
                        let Ok(document) = response.json::<Value>().await else { continue };
                        let now = document.get("version").and_then(Value::as_i64);
                        if version.is_some() && now != version {
                            let _ = changed.send((index, Instant::now()));
                        }
                        version = now;
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
                }
            }
        });
    }
    let settle = Instant::now();
    while open.load(Ordering::SeqCst) < agents.len() && settle.elapsed() < Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("{} watches open", open.load(Ordering::SeqCst));
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Idle: all watches open, nothing changes.
    let cpu_before = cpu_seconds(args.server_pid)?;
    let idle_began = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.idle_seconds)).await;
    let idle = (cpu_seconds(args.server_pid)? - cpu_before) / idle_began.elapsed().as_secs_f64();
    println!("agents {} | server idle CPU {:.2} % of a core over {} s | server RSS {}", agents.len(), idle * 100.0, args.idle_seconds, rss_mb(args.server_pid));

    // A change to one VM (a tag) reaches that VM's watch: the time from the PATCH's answer.
    while changes.try_recv().is_ok() {}
    let mut latencies = Vec::new();
    for round in 0..args.changes {
        let index = (round * 7919) % agents.len();
        let agent = &agents[index];
        admin.patch(format!("{url}{}?api-version=2024-07-01", agent.vm)).header("Authorization", &bearer)
            .json(&json!({"tags": {"round": round.to_string()}})).send().await?.error_for_status()?;
        let written = Instant::now();
        let deadline = written + Duration::from_secs(25);
        loop {
            match tokio::time::timeout_at(deadline.into(), changes.recv()).await {
                Ok(Some((which, at))) if which == index => {
                    latencies.push(at.saturating_duration_since(written).as_secs_f64() * 1000.0);
                    break;
                }
                Ok(Some(_)) => continue,
                _ => {
                    latencies.push(f64::INFINITY);
                    break;
                }
            }
        }
    }
    latencies.sort_by(|a, b| a.total_cmp(b));
    println!("change to one VM → its watch: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms over {} changes", percentile(&latencies, 0.5), percentile(&latencies, 0.99), latencies.last().copied().unwrap_or(f64::NAN), latencies.len());

    // Token mints: many agents at once, each call one fresh token (the server signs each).
    let minters: Vec<_> = agents.iter().take(args.mint_agents).cloned().collect();
    let cpu_before = cpu_seconds(args.server_pid)?;
    let began = Instant::now();
    let mut tasks = Vec::new();
    for agent in minters {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let mut minted = 0usize;
            let body = json!({"resource": "https://management.azure.com"});
            for _ in 0..5 {
                let authorization = agent.authorization()?;
                let response = agent.http.post(format!("{url}/openmi/agent/token")).header("Authorization", authorization).json(&body).send().await?;
                if response.status().is_success() {
                    minted += 1;
                }
            }
            Ok::<usize, Error>(minted)
        }));
    }
    let mut minted = 0;
    for task in tasks {
        minted += task.await??;
    }
    let seconds = began.elapsed().as_secs_f64();
    let cpu = cpu_seconds(args.server_pid)? - cpu_before;
    println!("token mints: {} agents × 5 at once: {minted} in {seconds:.2} s = {:.0} mints/s (server CPU {:.2} cores)", args.mint_agents.min(agents.len()), minted as f64 / seconds, cpu / seconds);
    Ok(())
}
