//! `make bench-snmp`: what the coalescing SNMP client of `esi_monitor::plugins::snmp` gains
//! over reading port status the way the original plugin did. A benchmark, not a test: it
//! prints figures, and fails only when something does not work at all or a port reads
//! differently from what its agent serves.
//!
//! All on loopback, against the tests' own agent (`tests/support/snmpd.rs`: a real net-snmp
//! `snmpd` per 127.0.0.N serving ifName/ifOperStatus/sysUpTime through a python
//! pass_persist script), stopped at the end by a drop guard, also on error:
//!
//! 1. N agents (default 50; `--agents N`) on 127.0.0.101 …, one shared UDP port (an agent
//!    that cannot get it falls back to a port of its own), each with P Junos-like interfaces
//!    (default 100; `--ports N`; ifIndex 501 …, xe-0/0/k, ge-1/0/k, aeK, about one in nine
//!    down), started in parallel. If some do not come up, the run goes on with those that did
//!    and says so.
//! 2. Coalescing: one shared `Devices` (timeout 1000 ms, 1 retry), a pool of `--threads`
//!    workers (default 8) taking whole devices from a shared queue and calling
//!    `ports(device, all names)`. A first pass walks every device's ifName table (reported as
//!    the walk pass); then `--passes` steady passes (table cached: one GET per device, split
//!    on tooBig) are timed, the median reported.
//! 3. Naive, as the original Python plugin did: per port, a full ifName walk (GETBULK) to find
//!    its ifIndex, then one GET of its status. The wire layer is private to the library, so
//!    each port gets a fresh `Devices` (no cache: a walk + a GET per port; checked in the
//!    counters); its GET also carries sysUpTime and the ifName (3 varbinds, vs ~120 for the
//!    walk). Every port by default, or a sample spread over all agents (`--naive-sample N`),
//!    extrapolated; same thread count.
//! 4. net-snmp processes, as a shell-script monitor does: per port `snmpbulkwalk` of ifName,
//!    then `snmpget` of ifOperStatus, each a process of its own; a sample
//!    (`--netsnmp-sample`, default 1000) spread over all agents, extrapolated; same thread
//!    count. snmpbulkwalk runs with its defaults (10 repetitions per GETBULK).
//!
//! CPU: the workers' own CPU (getrusage RUSAGE_THREAD, summed over workers); for the net-snmp
//! pass also the children's (RUSAGE_CHILDREN delta). The agents' CPU (snmpd + its python
//! script, from /proc/<pid>/stat) is reported separately: on a small machine they compete
//! with the client for the same cores. Every result is checked against what the agents
//! serve; any mismatch makes the run exit non-zero.

#[path = "support/proc_stats.rs"]
#[allow(dead_code)]
mod proc_stats;
#[path = "../tests/support/snmpd.rs"]
mod snmpd;
#[path = "support/panics.rs"]
mod panics;

use esi_monitor::plugins::snmp::{Device, Devices, SnmpSettings, SnmpStats};
use esi_monitor::plugins::Probe;
use panics::panic_text;
use snmpd::{Interface, Snmpd};
use std::net::IpAddr;
use std::os::raw::{c_int, c_long};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const USAGE: &str = "usage: bench_snmp [--agents N] [--ports N] [--threads N] [--passes N]
                  [--naive-sample N] [--netsnmp-sample N]
  --agents N          SNMP agents on 127.0.0.101 ... (default 50, at most 150)
  --ports N           interfaces per agent (default 100)
  --threads N         client worker threads in every pass (default 8)
  --passes N          timed steady coalescing passes; the median is reported (default 5)
  --naive-sample N    ports read the naive way, extrapolated; 0 = all (default 0: all)
  --netsnmp-sample N  ports read with net-snmp processes, extrapolated; 0 = all, or skip
                      with --netsnmp-sample -1 (default 1000)";

const COMMUNITY: &str = "bench";
const FIRST_HOST: u32 = 101;
/// Agents started at the same time (each start is bounded by the harness: ≤ 10 s per try).
const START_PARALLEL: usize = 10;
/// Bound on one net-snmp command (it has its own -t 1 -r 1; this is the backstop).
const COMMAND_LIMIT: Duration = Duration::from_secs(15);
/// Bound on a whole pass.
const PASS_LIMIT: Duration = Duration::from_secs(300);

struct Args {
    agents: usize,
    ports: usize,
    threads: usize,
    passes: usize,
    naive_sample: usize,
    netsnmp_sample: Option<usize>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        agents: 50,
        ports: 100,
        threads: 8,
        passes: 5,
        naive_sample: 0,
        netsnmp_sample: Some(1000),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let value = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        if flag == "--netsnmp-sample" && value == "-1" {
            a.netsnmp_sample = None;
            continue;
        }
        let n: usize = value
            .parse()
            .map_err(|_| format!("{flag}: {value:?} is not a number\n{USAGE}"))?;
        let positive = |n: usize| {
            if n == 0 {
                Err(format!("{flag} must be at least 1"))
            } else {
                Ok(n)
            }
        };
        match flag.as_str() {
            "--agents" => a.agents = positive(n)?.min(150),
            "--ports" => a.ports = positive(n)?,
            "--threads" => a.threads = positive(n)?,
            "--passes" => a.passes = positive(n)?,
            "--naive-sample" => a.naive_sample = n,
            "--netsnmp-sample" => a.netsnmp_sample = Some(n),
            _ => return Err(format!("unknown argument {flag}\n{USAGE}")),
        }
    }
    Ok(a)
}

fn main() -> ExitCode {
    match parse_args().and_then(|args| run(&args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-snmp FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

// ------------------------------------------------------------------------------ the agents

/// The interfaces of agent `a`: Junos-like names, ifIndex 501 …, about one in nine down.
fn interfaces(a: usize, ports: usize) -> Vec<Interface> {
    (0..ports)
        .map(|k| {
            let name = match k {
                0..=47 => format!("xe-0/0/{k}"),
                48..=95 => format!("ge-1/0/{}", k - 48),
                _ => format!("ae{}", k - 96),
            };
            Interface::new(501 + k as u32, &name, (a * 7 + k) % 9 != 0)
        })
        .collect()
}

/// The running agents; dropping it stops them all (in parallel: each stop waits for its
/// snmpd to exit).
struct Agents(Vec<Agent>);

struct Agent {
    /// Held for its Drop: stops the agent.
    _snmpd: Snmpd,
    device: Device,
    interfaces: Vec<Interface>,
    /// snmpd and its pass_persist script.
    pids: Vec<u32>,
}

impl Drop for Agents {
    fn drop(&mut self) {
        let all = std::mem::take(&mut self.0);
        let per_thread = all.len().div_ceil(START_PARALLEL).max(1);
        let mut chunks: Vec<Vec<Agent>> = Vec::new();
        let mut rest = all;
        while !rest.is_empty() {
            let tail = rest.split_off(rest.len().min(per_thread));
            chunks.push(std::mem::replace(&mut rest, tail));
        }
        std::thread::scope(|s| {
            for chunk in chunks {
                s.spawn(move || drop(chunk));
            }
        });
    }
}

impl Agents {
    /// CPU-seconds used so far by every agent (snmpd + script).
    fn cpu_seconds(&self) -> f64 {
        self.0
            .iter()
            .flat_map(|a| &a.pids)
            .filter_map(|&pid| proc_cpu_seconds(pid))
            .sum()
    }
}

/// Starts agent `a` on the shared port, or on a port of its own when that fails.
fn start_agent(a: usize, port: u16, ports: usize) -> Result<Agent, String> {
    let addr = format!("127.0.0.{}", FIRST_HOST as usize + a);
    let ifaces = interfaces(a, ports);
    let started = std::panic::catch_unwind(|| Snmpd::start_on(&addr, port, COMMUNITY, &ifaces))
        .or_else(|_| std::panic::catch_unwind(|| Snmpd::start(&addr, COMMUNITY, &ifaces)))
        .map_err(|p| format!("agent on {addr}: {}", panic_text(p)))?;
    let ip: IpAddr = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
    let device = Device {
        ip,
        port: started.port(),
        community: COMMUNITY.into(),
    };
    let mut pids = Vec::new();
    if let Some(pid) = started.pid() {
        pids.push(pid);
        pids.extend(children_of(pid));
    }
    Ok(Agent {
        _snmpd: started,
        device,
        interfaces: ifaces,
        pids,
    })
}

/// Starts `n` agents, `START_PARALLEL` at a time; returns those that came up (in address
/// order) and the failures.
fn start_agents(n: usize, ports: usize) -> (Agents, Vec<String>) {
    let addrs: Vec<String> = (0..n)
        .map(|a| format!("127.0.0.{}", FIRST_HOST as usize + a))
        .collect();
    let addr_refs: Vec<&str> = addrs.iter().map(String::as_str).collect();
    let port = Snmpd::free_port(&addr_refs);
    // The harness panics on a failed start; keep the default hook from printing each one.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, Result<Agent, String>)>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..START_PARALLEL.min(n) {
            s.spawn(|| loop {
                let a = next.fetch_add(1, Ordering::Relaxed);
                if a >= n {
                    break;
                }
                let r = start_agent(a, port, ports);
                results
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((a, r));
            });
        }
    });
    std::panic::set_hook(hook);
    let mut results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    results.sort_by_key(|(a, _)| *a);
    let mut agents = Vec::new();
    let mut failures = Vec::new();
    for (_, r) in results {
        match r {
            Ok(agent) => agents.push(agent),
            Err(e) => failures.push(e),
        }
    }
    (Agents(agents), failures)
}

// ------------------------------------------------------------------------------ CPU time

#[repr(C)]
struct Timeval {
    sec: c_long,
    usec: c_long,
}

#[repr(C)]
struct Rusage {
    utime: Timeval,
    stime: Timeval,
    rest: [c_long; 14],
}

extern "C" {
    fn getrusage(who: c_int, usage: *mut Rusage) -> c_int;
}

const RUSAGE_CHILDREN: c_int = -1;
const RUSAGE_THREAD: c_int = 1;

/// user + system CPU-seconds of `who` (this thread, or the reaped children).
fn rusage_seconds(who: c_int) -> f64 {
    let mut u = Rusage {
        utime: Timeval { sec: 0, usec: 0 },
        stime: Timeval { sec: 0, usec: 0 },
        rest: [0; 14],
    };
    // SAFETY: `u` is a valid, writable struct rusage of the Linux ABI.
    if unsafe { getrusage(who, &mut u) } != 0 {
        return 0.0;
    }
    let s = |t: &Timeval| t.sec as f64 + t.usec as f64 / 1e6;
    s(&u.utime) + s(&u.stime)
}

use proc_stats::{children_of, cpu_seconds as proc_cpu_seconds};

// ----------------------------------------------------------------------------- the passes

/// What one port reads, compared with what its agent serves.
#[derive(Default, Clone, Copy)]
struct Tally {
    up: usize,
    down: usize,
    no_answer: usize,
    mismatches: usize,
}

impl Tally {
    fn add(
        &mut self,
        got: &Probe,
        expected_up: bool,
        what: impl FnOnce() -> String,
        examples: &Mutex<Vec<String>>,
    ) {
        match got {
            Probe::Up => self.up += 1,
            Probe::Down => self.down += 1,
            Probe::NoAnswer(_) | Probe::State(_) => self.no_answer += 1,
        }
        let ok = matches!((got, expected_up), (Probe::Up, true) | (Probe::Down, false));
        if !ok {
            self.mismatches += 1;
            let mut ex = examples.lock().unwrap_or_else(|e| e.into_inner());
            if ex.len() < 5 {
                ex.push(format!(
                    "{}: expected {}, read {got:?}",
                    what(),
                    if expected_up { "UP" } else { "DOWN" }
                ));
            }
        }
    }

    fn merge(&mut self, o: &Tally) {
        self.up += o.up;
        self.down += o.down;
        self.no_answer += o.no_answer;
        self.mismatches += o.mismatches;
    }
}

/// One timed pass.
struct Pass {
    ports: usize,
    wall: Duration,
    /// Workers' own CPU (RUSAGE_THREAD, summed).
    worker_cpu: f64,
    /// CPU of reaped children (net-snmp processes).
    children_cpu: f64,
    agents_cpu: f64,
    stats: SnmpStats,
    tally: Tally,
    examples: Vec<String>,
}

impl Pass {
    fn rate(&self) -> f64 {
        self.ports as f64 / self.wall.as_secs_f64().max(1e-9)
    }
    /// Client CPU-seconds per 1000 ports (workers + children).
    fn cpu_per_1000(&self) -> f64 {
        (self.worker_cpu + self.children_cpu) * 1000.0 / self.ports.max(1) as f64
    }
    fn agents_per_1000(&self) -> f64 {
        self.agents_cpu * 1000.0 / self.ports.max(1) as f64
    }
}

fn stats_delta(a: &SnmpStats, b: &SnmpStats) -> SnmpStats {
    SnmpStats {
        gets: b.gets - a.gets,
        bulks: b.bulks - a.bulks,
        packets: b.packets - a.packets,
        timeouts: b.timeouts - a.timeouts,
        unanswered: b.unanswered - a.unanswered,
        discarded: b.discarded - a.discarded,
        walks: b.walks - a.walks,
    }
}

fn stats_sum(a: &SnmpStats, b: &SnmpStats) -> SnmpStats {
    SnmpStats {
        gets: a.gets + b.gets,
        bulks: a.bulks + b.bulks,
        packets: a.packets + b.packets,
        timeouts: a.timeouts + b.timeouts,
        unanswered: a.unanswered + b.unanswered,
        discarded: a.discarded + b.discarded,
        walks: a.walks + b.walks,
    }
}

/// Runs `work(item)` for items 0..n on `threads` workers sharing one queue; returns the wall
/// time, the workers' summed CPU, the reaped children's CPU, the agents' CPU and the merged
/// results. Each worker stops once the queue is empty or the pass has run `PASS_LIMIT`.
fn pool<R: Send + Default>(
    agents: &Agents,
    threads: usize,
    n: usize,
    work: impl Fn(usize, &mut R) + Sync,
) -> Result<(Duration, f64, f64, f64, Vec<R>), String> {
    let next = AtomicUsize::new(0);
    let agents_before = agents.cpu_seconds();
    let children_before = rusage_seconds(RUSAGE_CHILDREN);
    let started = Instant::now();
    let outs: Vec<(f64, R, bool)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let cpu0 = rusage_seconds(RUSAGE_THREAD);
                    let mut r = R::default();
                    let mut late = false;
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            break;
                        }
                        if started.elapsed() > PASS_LIMIT {
                            late = true;
                            break;
                        }
                        work(i, &mut r);
                    }
                    (rusage_seconds(RUSAGE_THREAD) - cpu0, r, late)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a worker thread panicked"))
            .collect()
    });
    let wall = started.elapsed();
    if outs.iter().any(|(_, _, late)| *late) {
        return Err(format!("a pass did not finish within {PASS_LIMIT:?}"));
    }
    let children = rusage_seconds(RUSAGE_CHILDREN) - children_before;
    let agents_cpu = agents.cpu_seconds() - agents_before;
    let worker_cpu = outs.iter().map(|(c, _, _)| c).sum();
    Ok((
        wall,
        worker_cpu,
        children,
        agents_cpu,
        outs.into_iter().map(|(_, r, _)| r).collect(),
    ))
}

/// One pass of whole devices through the shared coalescing client.
fn coalescing_pass(devices: &Devices, agents: &Agents, threads: usize) -> Result<Pass, String> {
    let names: Vec<Vec<String>> = agents
        .0
        .iter()
        .map(|a| a.interfaces.iter().map(|i| i.name.clone()).collect())
        .collect();
    let examples = Mutex::new(Vec::new());
    let before = devices.stats();
    let (wall, worker_cpu, children_cpu, agents_cpu, tallies) =
        pool::<Tally>(agents, threads, agents.0.len(), |d, tally| {
            let agent = &agents.0[d];
            let probes = devices.ports(&agent.device, &names[d]);
            for (iface, got) in agent.interfaces.iter().zip(&probes) {
                tally.add(
                    got,
                    iface.up,
                    || format!("{} on {}", iface.name, agent.device),
                    &examples,
                );
            }
            tally.mismatches += agent.interfaces.len().saturating_sub(probes.len());
        })?;
    let mut tally = Tally::default();
    tallies.iter().for_each(|t| tally.merge(t));
    Ok(Pass {
        ports: names.iter().map(Vec::len).sum(),
        wall,
        worker_cpu,
        children_cpu,
        agents_cpu,
        stats: stats_delta(&before, &devices.stats()),
        tally,
        examples: examples.into_inner().unwrap_or_else(|e| e.into_inner()),
    })
}

/// `sample` ports (agent, interface), spread evenly over all agents; 0 = all.
fn sample_ports(agents: &Agents, sample: usize) -> Vec<(usize, usize)> {
    let all: Vec<(usize, usize)> = agents
        .0
        .iter()
        .enumerate()
        .flat_map(|(a, ag)| (0..ag.interfaces.len()).map(move |k| (a, k)))
        .collect();
    if sample == 0 || sample >= all.len() {
        return all;
    }
    (0..sample).map(|j| all[j * all.len() / sample]).collect()
}

/// Per port: a fresh client (so a full ifName walk), then the GET of its status.
fn naive_pass(
    settings: &SnmpSettings,
    agents: &Agents,
    threads: usize,
    sample: usize,
) -> Result<Pass, String> {
    let ports = sample_ports(agents, sample);
    let examples = Mutex::new(Vec::new());
    #[derive(Default)]
    struct Out {
        tally: Tally,
        stats: SnmpStats,
    }
    let (wall, worker_cpu, children_cpu, agents_cpu, outs) =
        pool::<Out>(agents, threads, ports.len(), |i, out| {
            let (a, k) = ports[i];
            let agent = &agents.0[a];
            let iface = &agent.interfaces[k];
            let devices = Devices::new(settings.clone());
            let got = devices
                .ports(&agent.device, std::slice::from_ref(&iface.name))
                .pop();
            let got = got.unwrap_or_else(|| Probe::NoAnswer("no reading".into()));
            out.tally.add(
                &got,
                iface.up,
                || format!("{} on {}", iface.name, agent.device),
                &examples,
            );
            out.stats = stats_sum(&out.stats, &devices.stats());
        })?;
    let mut tally = Tally::default();
    let mut stats = SnmpStats::default();
    for o in &outs {
        tally.merge(&o.tally);
        stats = stats_sum(&stats, &o.stats);
    }
    Ok(Pass {
        ports: ports.len(),
        wall,
        worker_cpu,
        children_cpu,
        agents_cpu,
        stats,
        tally,
        examples: examples.into_inner().unwrap_or_else(|e| e.into_inner()),
    })
}

/// Runs a net-snmp command, bounded by `COMMAND_LIMIT`; its stdout.
fn run_command(program: &str, args: &[String]) -> Result<String, String> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            format!("cannot start {program}: {e} (`make deps` installs net-snmp's tools)")
        })?;
    let deadline = Instant::now() + COMMAND_LIMIT;
    // The output (≤ a few KiB) fits in the pipe, so the child never blocks on it.
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_micros(200)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{program} did not finish within {COMMAND_LIMIT:?}"));
            }
            Err(e) => return Err(format!("{program}: {e}")),
        }
    };
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{program}: {e}"))?;
    if !status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!("{program} exited with {status}: {}", err.trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

const IF_NAME: &str = ".1.3.6.1.2.1.31.1.1.1.1";
const IF_OPER_STATUS: &str = ".1.3.6.1.2.1.2.2.1.8";

/// What a shell-script monitor does for one port: snmpbulkwalk of ifName to find the
/// ifIndex, then snmpget of ifOperStatus.<ifIndex>.
fn netsnmp_port(device: &Device, name: &str) -> Probe {
    // -O flags toggle: each command gets its output options once.
    let common = |output: &str, oid: String| -> Vec<String> {
        [
            "-v2c",
            "-c",
            &device.community,
            output,
            "-t",
            "1",
            "-r",
            "1",
            &device.addr().to_string(),
            &oid,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let walk = match run_command("snmpbulkwalk", &common("-Onq", IF_NAME.to_string())) {
        Ok(out) => out,
        Err(e) => return Probe::NoAnswer(e),
    };
    // Lines: `.1.3.6.1.2.1.31.1.1.1.1.<ifIndex> <name>` (the name possibly quoted).
    let index = walk.lines().find_map(|line| {
        let (oid, value) = line.split_once(' ')?;
        let index = oid.strip_prefix(IF_NAME)?.strip_prefix('.')?;
        (value.trim().trim_matches('"') == name).then(|| index.to_string())
    });
    let Some(index) = index else {
        return Probe::NoAnswer(format!("{name} not in the ifName walk"));
    };
    match run_command(
        "snmpget",
        &common("-Oqv", format!("{IF_OPER_STATUS}.{index}")),
    ) {
        Ok(out) => match out.split_whitespace().last().unwrap_or("") {
            "1" | "up" => Probe::Up,
            s if s.parse::<i64>().is_ok() || s == "down" => Probe::Down,
            other => Probe::NoAnswer(format!("snmpget printed {other:?}")),
        },
        Err(e) => Probe::NoAnswer(e),
    }
}

fn netsnmp_pass(agents: &Agents, threads: usize, sample: usize) -> Result<Pass, String> {
    let ports = sample_ports(agents, sample);
    let examples = Mutex::new(Vec::new());
    let (wall, worker_cpu, children_cpu, agents_cpu, tallies) =
        pool::<Tally>(agents, threads, ports.len(), |i, tally| {
            let (a, k) = ports[i];
            let agent = &agents.0[a];
            let iface = &agent.interfaces[k];
            let got = netsnmp_port(&agent.device, &iface.name);
            tally.add(
                &got,
                iface.up,
                || format!("{} on {}", iface.name, agent.device),
                &examples,
            );
        })?;
    let mut tally = Tally::default();
    tallies.iter().for_each(|t| tally.merge(t));
    Ok(Pass {
        ports: ports.len(),
        wall,
        worker_cpu,
        children_cpu,
        agents_cpu,
        stats: SnmpStats::default(),
        tally,
        examples: examples.into_inner().unwrap_or_else(|e| e.into_inner()),
    })
}

// ----------------------------------------------------------------------------------- run

/// Notes a pass that read ports differently from what the agents serve.
fn check(problems: &mut Vec<String>, what: &str, p: &Pass) {
    if p.tally.mismatches > 0 {
        problems.push(format!(
            "{what}: {} of {} ports read wrong, e.g. {}",
            p.tally.mismatches,
            p.ports,
            p.examples.join("; ")
        ));
    }
}

fn snmpd_version() -> String {
    let bin = std::env::var("SNMPD_BIN").unwrap_or_else(|_| {
        if std::path::Path::new("/usr/sbin/snmpd").is_file() {
            "/usr/sbin/snmpd".into()
        } else {
            "snmpd".into()
        }
    });
    Command::new(bin)
        .arg("-v")
        .stderr(Stdio::null())
        .output()
        .ok()
        .and_then(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            let line = text.lines().find(|l| l.contains("version"))?;
            Some(line.rsplit(' ').next()?.trim().to_string())
        })
        .unwrap_or_else(|| "?".into())
}

fn median(mut xs: Vec<Pass>) -> Pass {
    xs.sort_by_key(|p| p.wall);
    let mid = xs.len() / 2;
    xs.swap_remove(mid)
}

/// `[sample of N, extrapolated]` when `p` did not read every port.
fn sample_note(p: &Pass, total: usize) -> String {
    if p.ports < total {
        format!(" [sample of {}, extrapolated]", p.ports)
    } else {
        String::new()
    }
}

fn run(args: &Args) -> Result<(), String> {
    let cpus = std::thread::available_parallelism()
        .map(|p| p.get())
        .unwrap_or(0);
    // Other work on the machine shows in every figure: say how busy it was.
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into());
    let t = Instant::now();
    let (agents, failures) = start_agents(args.agents, args.ports);
    if !failures.is_empty() {
        println!(
            "bench-snmp: only {} of {} agents came up on this machine; going on with those ({} failed, first: {})",
            agents.0.len(),
            args.agents,
            failures.len(),
            failures[0]
        );
    }
    if agents.0.is_empty() {
        return Err(format!(
            "no agent came up: {}",
            failures.first().map_or("?", String::as_str)
        ));
    }
    let shared = agents
        .0
        .iter()
        .filter(|a| a.device.port == agents.0[0].device.port)
        .count();
    println!(
        "bench-snmp: {} agents up in {:.1} s ({} on the shared UDP port {})",
        agents.0.len(),
        t.elapsed().as_secs_f64(),
        shared,
        agents.0[0].device.port
    );
    let total: usize = agents.0.iter().map(|a| a.interfaces.len()).sum();
    let mut problems = Vec::new();

    let settings = SnmpSettings {
        port: 161,
        timeout: Duration::from_millis(1000),
        retries: 1,
        rewalk: Duration::from_secs(3600),
    };
    let devices = Devices::new(settings.clone());
    let walk = coalescing_pass(&devices, &agents, args.threads)?;
    check(&mut problems, "walk pass", &walk);
    let mut steady = Vec::new();
    for _ in 0..args.passes {
        let p = coalescing_pass(&devices, &agents, args.threads)?;
        check(&mut problems, "coalescing pass", &p);
        if p.stats.walks != 0 {
            problems.push(format!(
                "a steady coalescing pass walked {} ifName tables",
                p.stats.walks
            ));
        }
        steady.push(p);
    }
    let steady_cpu: f64 = steady.iter().map(Pass::cpu_per_1000).sum::<f64>() / steady.len() as f64;
    let steady_agents: f64 =
        steady.iter().map(Pass::agents_per_1000).sum::<f64>() / steady.len() as f64;
    let coal = median(steady);

    let naive = naive_pass(&settings, &agents, args.threads, args.naive_sample)?;
    check(&mut problems, "naive pass", &naive);
    if naive.stats.walks != naive.ports as u64 {
        problems.push(format!(
            "the naive pass walked {} times for {} ports",
            naive.stats.walks, naive.ports
        ));
    }
    let netsnmp = match args.netsnmp_sample {
        Some(sample) => {
            let p = netsnmp_pass(&agents, args.threads, sample)?;
            check(&mut problems, "net-snmp pass", &p);
            Some(p)
        }
        None => None,
    };

    println!();
    println!(
        "bench-snmp: {} agents x {} ports = {total} ports, {} threads, net-snmp snmpd {} on loopback ({cpus} CPUs, load {load} at start)",
        agents.0.len(),
        args.ports,
        args.threads,
        snmpd_version()
    );
    println!(
        "  walk pass      : {} ports in {:.2} s ({} walks, {} GETBULKs, {} GETs), {:.3} CPU-s per 1000 ports",
        walk.ports,
        walk.wall.as_secs_f64(),
        walk.stats.walks,
        walk.stats.bulks,
        walk.stats.gets,
        walk.cpu_per_1000()
    );
    println!(
        "  coalescing     : {} ports in {:.3} s = {:.0} ports/s, {:.4} CPU-s per 1000 ports ({} GETs, {} packets, {} timeouts) [median of {} steady passes; CPU averaged]",
        coal.ports,
        coal.wall.as_secs_f64(),
        coal.rate(),
        steady_cpu,
        coal.stats.gets,
        coal.stats.packets,
        coal.stats.timeouts,
        args.passes
    );
    let naive_total = total as f64 / naive.rate();
    println!(
        "  naive          : {total} ports in {:.1} s = {:.0} ports/s, {:.3} CPU-s per 1000 ports ({} walks + {} GETs, {} GETBULKs, {} packets, {} timeouts){}",
        naive_total,
        naive.rate(),
        naive.cpu_per_1000(),
        naive.stats.walks,
        naive.stats.gets,
        naive.stats.bulks,
        naive.stats.packets,
        naive.stats.timeouts,
        sample_note(&naive, total)
    );
    if let Some(n) = &netsnmp {
        println!(
            "  net-snmp procs : {total} ports in {:.1} s = {:.0} ports/s, {:.3} CPU-s per 1000 ports ({:.3} children + {:.3} workers; snmpbulkwalk + snmpget per port){}",
            total as f64 / n.rate(),
            n.rate(),
            n.cpu_per_1000(),
            n.children_cpu * 1000.0 / n.ports as f64,
            n.worker_cpu * 1000.0 / n.ports as f64,
            sample_note(n, total)
        );
    }
    println!(
        "  agents' CPU    : walk {:.3}, coalescing {:.3}, naive {:.3}{} CPU-s per 1000 ports (snmpd + pass_persist python, /proc)",
        walk.agents_per_1000(),
        steady_agents,
        naive.agents_per_1000(),
        netsnmp.as_ref().map_or(String::new(), |n| format!(", net-snmp procs {:.3}", n.agents_per_1000()))
    );
    let rate_ratio = coal.rate() / naive.rate();
    let cpu_ratio = naive.cpu_per_1000() / steady_cpu.max(1e-9);
    let mut ratios =
        format!("coalescing is {rate_ratio:.0}x the naive rate, {cpu_ratio:.0}x less client CPU");
    if let Some(n) = &netsnmp {
        ratios += &format!(
            "; {:.0}x the net-snmp processes' rate, {:.0}x less CPU",
            coal.rate() / n.rate(),
            n.cpu_per_1000() / steady_cpu.max(1e-9)
        );
    }
    println!("  ratios         : {ratios}");
    println!(
        "  target         : >= 20x the naive rate: {}",
        if rate_ratio >= 20.0 { "met" } else { "NOT met" }
    );
    let tallies = |p: &Pass| {
        format!(
            "{} up / {} down / {} no answer",
            p.tally.up, p.tally.down, p.tally.no_answer
        )
    };
    println!(
        "  checks         : walk pass {}; steady pass {}; naive {}{}; {} mismatches with what the agents serve",
        tallies(&walk),
        tallies(&coal),
        tallies(&naive),
        netsnmp.as_ref().map_or(String::new(), |n| format!("; net-snmp {}", tallies(n))),
        problems.len()
    );
    println!(
        "  how            : client CPU = getrusage(RUSAGE_THREAD) summed over the workers (+ RUSAGE_CHILDREN \
         for net-snmp's processes); agents' CPU from /proc/<pid>/stat; naive = a fresh Devices per port"
    );
    drop(agents);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}
