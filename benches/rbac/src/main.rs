//! Authorization decisions: openmi-rbac against cedar-policy on the same tenant and the same
//! decisions (issue #5, BENCHMARKS.md).
//!
//! ```sh
//! cargo run --release --manifest-path benches/rbac/Cargo.toml --target-dir target/bench-rbac \
//!     -- [--max 1000000] [--decisions 200000] [--cedar cedar,cedar-grants] [--cedar-max N] \
//!        [--cedar-timeout 300]
//! ```
//!
//! Sizes are 1 000, 10 000, 100 000 and 1 000 000 assignments (up to `--max`); the tenant is
//! described in `world.rs`, the Cedar model in `cedar_model.rs`. Every (engine, size) runs in a
//! child process of this binary (`--child ENGINE --size N`), so that the resident memory it
//! reports is its own; each child regenerates the same deterministic tenant. Engines:
//! - `openmi`: `Snapshot::build`, then `is_allowed` (raw action and scope, normalised inside, as
//!   the server calls it) and `is_allowed_normalized` (the engine alone);
//! - `cedar`, `cedar-grants`: the two Cedar models, with requests built before timing; after
//!   timing, the child builds openmi's snapshot and compares every answer (`mismatches`).
//!
//! Each engine sees every decision seven times: a warm-up pass, an untimed pass for
//! decisions/s, and five passes with an `Instant` pair around each call; p50 and p99 are the
//! medians of the five passes' (a shared machine's bursts land in one pass, not in all).
//! A Cedar child that takes longer than `--cedar-timeout` seconds is stopped, and larger sizes
//! are not tried for Cedar.

mod cedar_model;
mod world;

use std::hint::black_box;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use openmi_rbac::{builtin, scope_key, Snapshot};

use crate::cedar_model::{CedarModel, Shape};
use crate::world::{principals_for, Target, World};

const SIZES: [usize; 4] = [1_000, 10_000, 100_000, 1_000_000];
const CEDAR_VERSION: &str = "4.14.1";

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmRSS:"))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kib| kib.parse().ok())
        })
        .unwrap_or(0)
}

struct Latencies {
    p50: u64,
    p99: u64,
    max: u64,
}

fn summarize(mut nanos: Vec<u64>) -> Latencies {
    nanos.sort_unstable();
    let at = |per_mille: usize| nanos[(nanos.len() * per_mille / 1000).min(nanos.len() - 1)];
    Latencies {
        p50: at(500),
        p99: at(990),
        max: nanos[nanos.len() - 1],
    }
}

fn micros(nanos: u64) -> String {
    format!("{:.2} µs", nanos as f64 / 1000.0)
}

fn thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            out.push(' ');
        }
        out.push(digit);
    }
    out
}

/// Timed passes per (engine, size): the machine is shared, so one pass's p99 may carry another
/// tenant's burst; the median of the passes' p50 and p99 is reported (and the max of all).
const TIMED_PASSES: usize = 5;

/// Times `decide` over every input: an untimed warm-up pass, an untimed pass for throughput,
/// then `TIMED_PASSES` passes with one `Instant` pair around each call.
fn measure<T>(inputs: &[T], mut decide: impl FnMut(&T) -> bool) -> (Latencies, f64, Vec<bool>) {
    for input in inputs {
        black_box(decide(black_box(input)));
    }
    let start = Instant::now();
    let mut allowed = 0usize;
    for input in inputs {
        allowed += usize::from(decide(black_box(input)));
    }
    black_box(allowed);
    let per_second = inputs.len() as f64 / start.elapsed().as_secs_f64();
    let mut passes = Vec::with_capacity(TIMED_PASSES);
    let mut answers = Vec::with_capacity(inputs.len());
    for _ in 0..TIMED_PASSES {
        let mut nanos = Vec::with_capacity(inputs.len());
        answers.clear();
        for input in inputs {
            let started = Instant::now();
            let answer = black_box(decide(black_box(input)));
            nanos.push(started.elapsed().as_nanos() as u64);
            answers.push(answer);
        }
        passes.push(summarize(nanos));
    }
    let median = |pick: fn(&Latencies) -> u64| {
        let mut values: Vec<u64> = passes.iter().map(pick).collect();
        values.sort_unstable();
        values[values.len() / 2]
    };
    let latencies = Latencies {
        p50: median(|pass| pass.p50),
        p99: median(|pass| pass.p99),
        max: passes.iter().map(|pass| pass.max).max().unwrap_or(0),
    };
    (latencies, per_second, answers)
}

/// What a child prints, one line each, for the parent to collect.
fn emit_row(
    engine: &str,
    size: usize,
    build: Duration,
    memory_kib: u64,
    latencies: &Latencies,
    per_second: f64,
    answers: &[bool],
    mismatches: &str,
) {
    let allowed = answers.iter().filter(|answer| **answer).count();
    println!(
        "ROW|{engine}|{size}|{}|{:.1} ms|{:.1} MiB|{}|{}|{}|{}|{:.1} %|{mismatches}",
        thousands(principals_for(size) as u64),
        build.as_secs_f64() * 1000.0,
        memory_kib as f64 / 1024.0,
        micros(latencies.p50),
        micros(latencies.p99),
        micros(latencies.max),
        thousands(per_second as u64),
        100.0 * allowed as f64 / answers.len() as f64,
    );
    println!("P99|{engine}|{size}|{}", latencies.p99);
}

fn child_openmi(size: usize, count: usize) {
    let world = World::generate(size);
    let decisions = world.decisions(count);
    describe(&world);
    let definitions = builtin::definitions();
    let before = rss_kib();
    let started = Instant::now();
    let snapshot = Snapshot::build(&definitions, &world.assignments);
    let build = started.elapsed();
    let memory = rss_kib().saturating_sub(before);
    assert_eq!(snapshot.assignment_count(), size);

    // As the server calls it: raw action and scope, normalised inside.
    let (latencies, per_second, raw) = measure(&decisions, |decision| {
        snapshot.is_allowed(decision.principal, decision.action, &decision.scope)
    });
    emit_row(
        "openmi `is_allowed`",
        size,
        build,
        memory,
        &latencies,
        per_second,
        &raw,
        "",
    );
    // The engine alone: action and scope normalised beforehand, as Cedar's requests are.
    let normalized: Vec<_> = decisions
        .iter()
        .map(|decision| {
            (
                decision.principal,
                decision.action.to_ascii_lowercase(),
                scope_key(&decision.scope),
            )
        })
        .collect();
    let (latencies, per_second, answers) = measure(&normalized, |(principal, action, scope)| {
        snapshot.is_allowed_normalized(*principal, action, scope)
    });
    let differ = raw.iter().zip(&answers).filter(|(a, b)| a != b).count();
    emit_row(
        "openmi `is_allowed_normalized`",
        size,
        build,
        memory,
        &latencies,
        per_second,
        &answers,
        &format!("{differ} vs `is_allowed`"),
    );
}

fn child_cedar(size: usize, count: usize, shape: Shape) {
    let world = World::generate(size);
    let decisions = world.decisions(count);
    let definitions = builtin::definitions();
    let before = rss_kib();
    let started = Instant::now();
    let model = CedarModel::build(&world, &definitions, shape);
    let build = started.elapsed();
    let memory = rss_kib().saturating_sub(before);
    eprintln!("    cedar entities built in {:.2} s", build.as_secs_f64());
    let requests: Vec<_> = decisions
        .iter()
        .map(|decision| model.request(decision))
        .collect();
    let authorizer = cedar_policy::Authorizer::new();
    let (latencies, per_second, answers) = measure(&requests, |request| {
        authorizer
            .is_authorized(request, &model.policies, &model.entities)
            .decision()
            == cedar_policy::Decision::Allow
    });

    // Equivalence, after the measurements: openmi's answer for every decision.
    let snapshot = Snapshot::build(&definitions, &world.assignments);
    let mut mismatches = 0usize;
    for (decision, cedar) in decisions.iter().zip(&answers) {
        let openmi = snapshot.is_allowed(decision.principal, decision.action, &decision.scope);
        if openmi != *cedar {
            if mismatches < 5 {
                eprintln!(
                    "    MISMATCH openmi={openmi} cedar={cedar}: {} {} {}",
                    decision.principal, decision.action, decision.scope
                );
            }
            mismatches += 1;
        }
    }
    emit_row(
        &format!(
            "cedar-policy {CEDAR_VERSION}, {}",
            match shape {
                Shape::PrincipalScopes => "scopes on principals",
                Shape::ScopeGrants => "grant groups on scopes",
            }
        ),
        size,
        build,
        memory,
        &latencies,
        per_second,
        &answers,
        &format!("{mismatches} vs openmi"),
    );
    println!("MISMATCHES|{shape:?}|{size}|{mismatches}");
}

/// The tenant's shape, printed once per size.
fn describe(world: &World) {
    let (mut subscription, mut group, mut resource) = (0, 0, 0);
    let mut per_principal = vec![0u32; world.principals.len()];
    for (principal, target) in &world.placed {
        per_principal[*principal as usize] += 1;
        match target {
            Target::Subscription => subscription += 1,
            Target::Group(_) => group += 1,
            Target::Resource(_) => resource += 1,
        }
    }
    per_principal.sort_unstable();
    let quantile = |per_mille: usize| {
        per_principal[(per_principal.len() * per_mille / 1000).min(per_principal.len() - 1)]
    };
    println!(
        "SHAPE|{}|{} principals ({} heavy); scopes: {subscription} subscription, {group} group, \
         {resource} resource; assignments per principal p50 {} p99 {} max {}",
        world.assignments.len(),
        world.principals.len(),
        world.heavy_principals,
        quantile(500),
        quantile(990),
        per_principal[per_principal.len() - 1],
    );
}

/// Runs this binary as a child; returns its stdout, or None when it ran out of time or failed.
fn run_child(engine: &str, size: usize, count: usize, timeout: Duration) -> Option<String> {
    let exe = std::env::current_exe().expect("current exe");
    let mut child = Command::new(exe)
        .args([
            "--child",
            engine,
            "--size",
            &size.to_string(),
            "--decisions",
            &count.to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child");
    let mut stdout = child.stdout.take().expect("child stdout");
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        stdout.read_to_string(&mut out).map(|_| out)
    });
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait().expect("wait child") {
            Some(status) => {
                let out = reader.join().ok()?.ok()?;
                return status.success().then_some(out);
            }
            None if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                eprintln!(
                    "  {engine} at {size}: no result within {} s, stopped",
                    timeout.as_secs()
                );
                return None;
            }
            None => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

fn timer_overhead() -> Latencies {
    let mut nanos = Vec::with_capacity(200_000);
    for _ in 0..200_000 {
        let started = Instant::now();
        nanos.push(black_box(started.elapsed()).as_nanos() as u64);
    }
    summarize(nanos)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| {
        args.iter()
            .position(|arg| arg == flag)
            .and_then(|at| args.get(at + 1))
            .cloned()
    };
    let number = |flag: &str, default: usize| {
        value(flag)
            .map(|text| text.replace('_', "").parse().expect("a number"))
            .unwrap_or(default)
    };
    let count = number("--decisions", 200_000);
    if let Some(engine) = value("--child") {
        let size = number("--size", 1_000);
        match engine.as_str() {
            "openmi" => child_openmi(size, count),
            "cedar" => child_cedar(size, count, Shape::PrincipalScopes),
            "cedar-grants" => child_cedar(size, count, Shape::ScopeGrants),
            other => panic!("unknown engine {other}"),
        }
        return;
    }
    let max = number("--max", 1_000_000);
    let cedar_max = number("--cedar-max", max);
    let cedar_timeout = Duration::from_secs(number("--cedar-timeout", 300) as u64);
    let cedar_engines: Vec<String> = value("--cedar")
        .unwrap_or_else(|| "cedar,cedar-grants".to_string())
        .split(',')
        .filter(|engine| !engine.is_empty())
        .map(str::to_string)
        .collect();
    let sizes: Vec<usize> = SIZES.iter().copied().filter(|size| *size <= max).collect();

    let command = format!(
        "cargo run --release --manifest-path benches/rbac/Cargo.toml --target-dir target/bench-rbac -- {}",
        args[1..].join(" ")
    );
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split(':').nth(1))
                .map(|name| name.trim().to_string())
        })
        .unwrap_or_default();
    let timer = timer_overhead();
    let load = std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();

    let mut rows = Vec::new();
    let mut shapes = Vec::new();
    let mut p99 = Vec::new();
    let mut mismatches = Vec::new();
    let mut cedar_stopped_at = None;
    let started = Instant::now();
    for &size in &sizes {
        let mut engines = vec!["openmi"];
        if size <= cedar_max && cedar_stopped_at.is_none() {
            engines.extend(cedar_engines.iter().map(String::as_str));
        }
        for engine in engines {
            eprintln!(
                "{engine} at {size} assignments ({:.0} s so far)",
                started.elapsed().as_secs_f64()
            );
            let is_cedar = engine.starts_with("cedar");
            let timeout = if is_cedar {
                cedar_timeout
            } else {
                Duration::from_secs(600)
            };
            let Some(out) = run_child(engine, size, count, timeout) else {
                if is_cedar {
                    cedar_stopped_at = Some(size);
                }
                continue;
            };
            for line in out.lines() {
                let fields: Vec<&str> = line.split('|').collect();
                match fields[0] {
                    "ROW" => {
                        let engine = fields[1];
                        let size = thousands(fields[2].parse().expect("size"));
                        rows.push(format!(
                            "| {engine} | {size} | {} |",
                            fields[3..].join(" | ")
                        ));
                        eprintln!("  {}", rows[rows.len() - 1]);
                    }
                    "P99" => p99.push((
                        fields[1].to_string(),
                        fields[2].parse::<usize>().expect("size"),
                        fields[3].parse::<u64>().expect("p99"),
                    )),
                    "SHAPE" => shapes.push(format!(
                        "- {} assignments: {}",
                        thousands(fields[1].parse().expect("size")),
                        fields[2]
                    )),
                    "MISMATCHES" => mismatches.push((
                        fields[1].to_string(),
                        fields[2].to_string(),
                        fields[3].to_string(),
                    )),
                    _ => {}
                }
            }
        }
    }

    println!("Command: `{command}`");
    println!();
    println!(
        "Machine: {} × {cpu}, load average {load} at start; {count} decisions per (engine, \
         size), p50/p99 the median of {TIMED_PASSES} timed passes; timer overhead (an empty `Instant` pair) p50 {} p99 {}; total {:.0} s.",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        micros(timer.p50),
        micros(timer.p99),
        started.elapsed().as_secs_f64()
    );
    println!();
    println!("| engine | assignments | principals | build | index RSS | p50 | p99 | max | decisions/s | allowed | mismatches |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for row in &rows {
        println!("{row}");
    }
    println!();
    println!("Tenant per size:");
    for shape in &shapes {
        println!("{shape}");
    }
    println!();
    let smallest = sizes.first().copied().unwrap_or(0);
    let mut engines: Vec<&str> = Vec::new();
    for (engine, _, _) in &p99 {
        if !engines.contains(&engine.as_str()) {
            engines.push(engine);
        }
    }
    for engine in engines {
        let of = |size: usize| {
            p99.iter()
                .find(|(e, s, _)| e == engine && *s == size)
                .map(|(_, _, nanos)| *nanos)
        };
        let largest = p99
            .iter()
            .filter(|(e, _, _)| e == engine)
            .map(|(_, size, _)| *size)
            .max()
            .unwrap_or(0);
        if let (Some(low), Some(high)) = (of(smallest), of(largest)) {
            println!(
                "Growth of p99 for {engine}: {} → {}: {:.2}x",
                thousands(smallest as u64),
                thousands(largest as u64),
                high as f64 / low as f64
            );
        }
    }
    for (shape, size, count) in &mismatches {
        println!(
            "Cedar ({shape}) vs openmi at {} assignments: {count} mismatching decisions",
            thousands(size.parse().expect("size"))
        );
    }
    if let Some(size) = cedar_stopped_at {
        println!(
            "Cedar did not finish at {} assignments within {} s; larger sizes skipped.",
            thousands(size as u64),
            cedar_timeout.as_secs()
        );
    }
}
