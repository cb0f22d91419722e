//! `make bench-poll`: esi-monitor's continuous monitoring (SPEC §5) at scale — how many
//! object results it produces per CPU-second, how much memory it holds, and how long a
//! status change on a device takes to reach `/monitoring` in etcd; with Debian's
//! prometheus-snmp-exporter polling the same agents' ifOperStatus alongside, as the
//! reference for the CPU cost of SNMP polling. A benchmark, not a test: it prints figures
//! and fails only when something does not work at all (a target missed is reported, not
//! fatal).
//!
//! All on loopback, every process stopped at the end by a drop guard, also on error:
//!
//! 1. A throwaway etcd (tests/support/etcd.rs); N agents (default 200 × 100 ports;
//!    `--agents --ports`), each a real net-snmp snmpd with the tests' pass_persist script
//!    (tests/support/snmpd.rs) on 127.1.X.Y, all on one shared UDP port, all ports up; the
//!    Contrail simulator (tests/support/contrail_sim.rs, in this process) with M VMIs up
//!    (default 2,000; `--vmis`). If some agents do not come up, the run goes on with those
//!    that did and says so.
//! 2. The registry is written directly (no jobs): one entry per port, resource type
//!    `ese_physical_port` (object `port`: physical_port, device_ip, community_name, name,
//!    `port` = the agents' UDP port), one per VMI, resource type `port` (object `vmi`:
//!    virtual_machine_interface, fq_name), version 1, in `Store::txns` batches.
//! 3. `--instances N` (1..=3, default 1) release `esi-monitor run` processes start against
//!    the same etcd, each with `monitoring: {interval_s, down_after: 2}`, `snmp: {port,
//!    timeout_ms: 1000, retries: 1}`, the simulator's URL, 8 worker threads, `etcd.lease_ttl_s`
//!    `--lease-ttl-s` (default 4) and its own `metrics.listen` port. A watch on `/monitoring/`
//!    (opened before the start) waits until every resource has its first record, then the
//!    bench waits until the shards are split (SPEC §6: every `/esi-worker/shards/<n>` claimed
//!    by its rendezvous owner among the running instances' member ids); both bounded.
//! 4. The measured window: `--intervals` intervals (default 10 × 5 s). Ports (`--port-flips`,
//!    default 40, on distinct agents) and VMIs (`--vmi-flips`, default 10) go down at
//!    instants spread over the window and come back up 2 intervals + 2 s later (or once
//!    their DOWN record was seen, if later). From the watch: the delay from each flip to
//!    its record change, for DOWN (needs `down_after` = 2 polls) and UP (1 poll). Any other
//!    record change is counted as unexpected. Meanwhile, at the start of every interval,
//!    `--scrape-threads` threads (default 8) scrape every agent once through
//!    prometheus-snmp-exporter (a module that walks only ifOperStatus, v2c, same timeout
//!    and retries).
//! 5. Then, once every flip has settled, one quiet interval without flips or scrapes:
//!    etcd's revision must not move (esi-monitor writes only on change), and the agents'
//!    scripts' read bytes there count the SNMP GETs every agent answered, all instances
//!    together (one per agent per interval, whatever the number of instances: each agent's
//!    ports are in one shard, polled by one instance).
//! 6. With N ≥ 2, `--failover-trials` (default 5) kill -9 trials. One trial: a port resource
//!    whose shard (`esi_monitor::shards::shard_of(affinity(key, entry))`) the victim holds
//!    (`/esi-worker/shards/<n>` names its id, `/esi-worker/members/<id>` its pid) is chosen,
//!    the victim gets SIGKILL and the port goes down at that moment; the failover time runs
//!    until the record shows DOWN (≈ lease TTL + claim + `down_after` polls, the first at
//!    once). Then the port comes back up, a new instance starts, and the next trial waits
//!    until it holds shards (`esi_monitor_shards_owned` > 0 on its /metrics and its id in a
//!    claim) and the split is settled again. With N = 1 there is nobody to fail over to: the
//!    trials are skipped, and the run says so.
//!
//! Figures: results/s = objects × intervals / window wall time (every object is polled once
//! per interval; cross-checked with the simulator's request count, the quiet interval's
//! agent GETs and each instance's `probe_results_total`); esi-monitor CPU-seconds
//! (utime + stime, /proc/<pid>/stat, summed over every instance) over the window per 1,000
//! results; device requests per interval per instance (`probe_duration_seconds_count` of
//! its /metrics: one per device GET, one per VMI bulk request) and all together; peak RSS
//! (VmHWM) per instance; shard handovers and fenced writes in the window; the failover
//! times (median and worst) beside the lease TTL and the interval; the exporter's
//! CPU-seconds per 1,000 port results and its ratio to esi-monitor's.

mod support;

#[path = "../tests/support/contrail_sim.rs"]
mod contrail_sim;
#[path = "support/poll_agents.rs"]
mod poll_agents;
#[path = "support/poll_resources.rs"]
mod poll_resources;
#[path = "support/snmp_exporter.rs"]
mod snmp_exporter;
#[path = "../tests/support/snmpd.rs"]
mod snmpd;

use contrail_sim::ContrailSim;
use esi_monitor::store::{Watch, WatchEvent};
use poll_resources::{port_entry, port_monitoring_key, port_registry_key, vmi_fq_name, vmi_monitoring_key};
use poll_resources::{Change, Records, Target};
use snmp_exporter::Exporter;
use std::collections::HashMap;
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use support::etcd::Etcd;
use support::figures::{delays_text, met, mib, quantile, revision};
use support::instances::{self, Instances};
use support::interrupt;
use support::metrics::Samples;
use support::panics::panic_text;
use support::proc_stats::{self, Udp};

const USAGE: &str = "usage: bench_poll [--agents N] [--ports N] [--interval-s S] [--intervals N] [--vmis N]
                  [--threads N] [--port-flips N] [--vmi-flips N] [--scrape-threads N] [--no-exporter]
                  [--instances N] [--lease-ttl-s S] [--failover-trials N]
  --agents N          SNMP agents (snmpd) on 127.1.0.1 ... (default 200)
  --ports N           interfaces per agent, each a registered physical_port (default 100)
  --interval-s S      monitoring.interval_s (default 5)
  --intervals N       measured intervals (default 10; at least 5)
  --vmis N            VMIs on the Contrail simulator, each a registered VMI (default 2000)
  --threads N         esi-monitor worker.threads (default 8)
  --port-flips N      ports taken down and up again during the window (default 40)
  --vmi-flips N       VMIs taken down and up again during the window (default 10)
  --scrape-threads N  threads scraping prometheus-snmp-exporter (default 8)
  --no-exporter       skip the prometheus-snmp-exporter comparison
  --instances N       esi-monitor instances sharing the polling through one etcd (1..=3, default 1);
                      with 2 or 3, kill -9 failover trials follow the window
  --lease-ttl-s S     every instance's etcd.lease_ttl_s (default 4, at least 2): failover takes
                      about the lease TTL + one interval at most
  --failover-trials N kill -9 trials with 2 or 3 instances (default 5; 0 skips them)
  --log-level L       esi-monitor's log.level (default info)
  --keep-log PATH     copy esi-monitor's log to PATH at the end (PATH.1, PATH.2, ... with several instances)
BENCH_POLL_TRACE=1 prints every flip and every /monitoring change of the window to stderr.";

const COMMUNITY: &str = "bench";
const DOWN_AFTER: u32 = 2;
const SNMP_TIMEOUT: Duration = Duration::from_millis(1000);
const SNMP_RETRIES: u32 = 1;
/// GETBULK max-repetitions of the exporter's walk (snmp_exporter's default).
const EXPORTER_MAX_REPETITIONS: u32 = 25;
/// Agents started at the same time (each start is bounded by the harness).
const START_PARALLEL: usize = 16;
/// Bound on one exporter scrape.
const SCRAPE_LIMIT: Duration = Duration::from_secs(20);

struct Args {
    agents: usize,
    ports: usize,
    interval_s: u64,
    intervals: usize,
    vmis: usize,
    threads: usize,
    port_flips: usize,
    vmi_flips: usize,
    scrape_threads: usize,
    exporter: bool,
    instances: usize,
    lease_ttl_s: u64,
    failover_trials: usize,
    log_level: String,
    keep_log: Option<std::path::PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        agents: 200,
        ports: 100,
        interval_s: 5,
        intervals: 10,
        vmis: 2000,
        threads: 8,
        port_flips: 40,
        vmi_flips: 10,
        scrape_threads: 8,
        exporter: true,
        instances: 1,
        lease_ttl_s: 4,
        failover_trials: 5,
        log_level: "info".into(),
        keep_log: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            "--no-exporter" => {
                a.exporter = false;
                continue;
            }
            _ => {}
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        match flag.as_str() {
            "--log-level" => {
                a.log_level = value;
                continue;
            }
            "--keep-log" => {
                a.keep_log = Some(value.into());
                continue;
            }
            _ => {}
        }
        let n: usize = value.parse().map_err(|_| format!("{flag}: {value:?} is not a number\n{USAGE}"))?;
        let positive = |n: usize| if n == 0 { Err(format!("{flag} must be at least 1")) } else { Ok(n) };
        match flag.as_str() {
            "--agents" => a.agents = positive(n)?.min(50_000),
            "--ports" => a.ports = positive(n)?.min(1000),
            "--interval-s" => a.interval_s = positive(n)? as u64,
            "--intervals" => a.intervals = n,
            "--vmis" => a.vmis = n,
            "--threads" => a.threads = positive(n)?,
            "--port-flips" => a.port_flips = n,
            "--vmi-flips" => a.vmi_flips = n,
            "--scrape-threads" => a.scrape_threads = positive(n)?,
            "--instances" if (1..=3).contains(&n) => a.instances = n,
            "--instances" => return Err(format!("--instances must be 1, 2 or 3\n{USAGE}")),
            "--lease-ttl-s" if n >= 2 => a.lease_ttl_s = n as u64,
            "--lease-ttl-s" => return Err(format!("--lease-ttl-s must be at least 2 (esi-monitor's minimum)\n{USAGE}")),
            "--failover-trials" => a.failover_trials = n,
            _ => return Err(format!("unknown argument {flag}\n{USAGE}")),
        }
    }
    if a.intervals < 5 {
        return Err(format!("--intervals must be at least 5 (a flip needs 2 intervals to go down and 1 to come back)\n{USAGE}"));
    }
    Ok(a)
}

fn main() -> ExitCode {
    interrupt::install();
    match parse_args().and_then(|args| run(&args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-poll FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

// ------------------------------------------------------------------------------ the flips

struct Flip {
    target: Target,
    monitoring_key: String,
    down_plan: Instant,
    down_at: Option<Instant>,
    down_seen: Option<Instant>,
    up_plan: Instant,
    up_at: Option<Instant>,
    up_seen: Option<Instant>,
}

impl Flip {
    fn settled(&self, now: Instant, give_up: Duration) -> bool {
        match (self.down_at, self.up_at) {
            (None, _) => false,
            (Some(_), None) => false,
            (Some(_), Some(up)) => self.up_seen.is_some() || now >= up + give_up,
        }
    }
}

/// Record changes that are not the answer to a flip.
#[derive(Default)]
struct Unexpected {
    count: usize,
    examples: Vec<String>,
}

impl Unexpected {
    fn note(&mut self, what: String) {
        self.count += 1;
        if self.examples.len() < 5 {
            self.examples.push(what);
        }
    }
}

/// What the watch on `/monitoring/` has shown so far, and the flips it is matched with.
struct Seen {
    records: Records,
    flips: Vec<Flip>,
    by_key: HashMap<String, usize>,
    unexpected: Unexpected,
}

impl Seen {
    /// Takes one watch event, seen at `now`; with `measuring`, a change nobody flipped is
    /// unexpected.
    fn take(&mut self, ev: WatchEvent, now: Instant, measuring: bool) -> Result<(), String> {
        let (key, previous, status) = match self.records.take(ev, measuring)? {
            Change::Put { key, previous, status } => (key, previous, status),
            Change::Other(what) => {
                self.unexpected.note(what);
                return Ok(());
            }
        };
        if !measuring {
            return Ok(());
        }
        let text = format!("{key} {} → {status}", previous.as_deref().unwrap_or("(none)"));
        match self.by_key.get(&key).map(|&i| &mut self.flips[i]) {
            Some(f) if status == "DOWN" && f.down_at.is_some() && f.down_seen.is_none() && f.up_at.is_none() => {
                f.down_seen = Some(now);
            }
            Some(f) if status == "UP" && f.up_at.is_some() && f.up_seen.is_none() => f.up_seen = Some(now),
            _ => self.unexpected.note(text),
        }
        Ok(())
    }
}

/// The flips: ports on distinct agents, VMIs spread over all of them; their down instants
/// spread evenly over [lead, last_down] after `t0`, ports and VMIs interleaved.
/// When flips happen: down instants spread over [t0 + lead, t0 + last_down], each held for
/// `hold`.
struct FlipTiming {
    t0: Instant,
    lead: Duration,
    last_down: Duration,
    hold: Duration,
}

fn plan_flips(
    agents: &poll_agents::Agents,
    (ports, vmis): (usize, usize),
    (port_flips, vmi_flips): (usize, usize),
    timing: FlipTiming,
) -> Vec<Flip> {
    let FlipTiming { t0, lead, last_down, hold } = timing;
    let n_agents = agents.list.len();
    let port_flips = port_flips.min(n_agents * ports);
    let vmi_flips = vmi_flips.min(vmis);
    let mut targets: Vec<(Target, String)> = Vec::new();
    let (mut p, mut v) = (0, 0);
    // Interleave: the kind that is further behind its share goes next.
    while p < port_flips || v < vmi_flips {
        let take_port = v >= vmi_flips || (p < port_flips && p * vmi_flips.max(1) <= v * port_flips.max(1));
        if take_port {
            let a = p * n_agents / port_flips;
            let k = (p * 37 + 11) % ports;
            targets.push((
                Target::Port(a, poll_agents::interface_name(k)),
                port_monitoring_key(a, k),
            ));
            p += 1;
        } else {
            let j = (v * vmis / vmi_flips + 7) % vmis;
            targets.push((Target::Vmi(vmi_fq_name(j)), vmi_monitoring_key(j)));
            v += 1;
        }
    }
    let n = targets.len();
    let span = last_down.saturating_sub(lead);
    targets
        .into_iter()
        .enumerate()
        .map(|(i, (target, monitoring_key))| {
            let down_plan = t0 + lead + span.mul_f64(i as f64 / n.max(1) as f64);
            Flip {
                target,
                monitoring_key,
                down_plan,
                down_at: None,
                down_seen: None,
                up_plan: down_plan + hold,
                up_at: None,
                up_seen: None,
            }
        })
        .collect()
}

/// Sets a flip's target up or down; the instant after which every answer reflects it.
fn set(target: &Target, up: bool, agents: &poll_agents::Agents, sim: &ContrailSim) -> Instant {
    poll_resources::set(target, up, agents, Some(sim))
}

// ----------------------------------------------------------------------- the exporter side

/// What the exporter rounds produced.
#[derive(Default)]
struct ExporterRun {
    rounds: usize,
    skipped: usize,
    scrapes: usize,
    ports: usize,
    up: usize,
    down: usize,
    errors: usize,
    error_examples: Vec<String>,
    round_walls: Vec<Duration>,
    cpu: f64,
}

/// At the start of each interval, scrape every agent once (threads sharing a queue).
fn exporter_rounds(
    exporter: &Exporter,
    agents: &poll_agents::Agents,
    t0: Instant,
    interval: Duration,
    intervals: usize,
    threads: usize,
    stop: &AtomicBool,
) -> ExporterRun {
    let cpu0 = proc_stats::cpu_seconds(exporter.pid()).unwrap_or(0.0);
    let mut run = ExporterRun::default();
    let targets: Vec<String> = agents.list.iter().map(|a| format!("{}:{}", a.addr, a.port)).collect();
    for k in 0..intervals {
        let start = t0 + interval * k as u32;
        // Bounded wait for the round's start (a late round is skipped, not stacked).
        while Instant::now() < start && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(start.saturating_duration_since(Instant::now()).min(Duration::from_millis(50)));
        }
        if stop.load(Ordering::Relaxed) {
            break;
        }
        if Instant::now() > start + interval / 2 {
            run.skipped += 1;
            continue;
        }
        let began = Instant::now();
        let next = AtomicUsize::new(0);
        let out = Mutex::new(ExporterRun::default());
        std::thread::scope(|s| {
            for _ in 0..threads.min(targets.len()).max(1) {
                s.spawn(|| {
                    let mut mine = ExporterRun::default();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= targets.len() || stop.load(Ordering::Relaxed) {
                            break;
                        }
                        mine.scrapes += 1;
                        match exporter.scrape(&targets[i], SCRAPE_LIMIT) {
                            Ok(s) if !s.statuses.is_empty() => {
                                mine.ports += s.statuses.len();
                                mine.up += s.statuses.iter().filter(|(_, v)| *v == 1).count();
                                mine.down += s.statuses.iter().filter(|(_, v)| *v != 1).count();
                            }
                            Ok(_) => {
                                mine.errors += 1;
                                if mine.error_examples.len() < 2 {
                                    mine.error_examples.push(format!("{}: no ifOperStatus in the answer", targets[i]));
                                }
                            }
                            Err(e) => {
                                mine.errors += 1;
                                if mine.error_examples.len() < 2 {
                                    mine.error_examples.push(e);
                                }
                            }
                        }
                    }
                    let mut o = out.lock().unwrap_or_else(|e| e.into_inner());
                    o.scrapes += mine.scrapes;
                    o.ports += mine.ports;
                    o.up += mine.up;
                    o.down += mine.down;
                    o.errors += mine.errors;
                    o.error_examples.extend(mine.error_examples);
                });
            }
        });
        let o = out.into_inner().unwrap_or_else(|e| e.into_inner());
        run.rounds += 1;
        run.scrapes += o.scrapes;
        run.ports += o.ports;
        run.up += o.up;
        run.down += o.down;
        run.errors += o.errors;
        for e in o.error_examples {
            if run.error_examples.len() < 3 {
                run.error_examples.push(e);
            }
        }
        run.round_walls.push(began.elapsed());
    }
    run.cpu = proc_stats::cpu_seconds(exporter.pid()).unwrap_or(cpu0) - cpu0;
    run
}

// ------------------------------------------------------------------------ kill -9 failover

/// One kill -9 trial (each is also printed as it ends).
struct Trial {
    /// Seconds from the kill until another instance's claim of the port's shard was read,
    /// and until the record showed DOWN (the port went down right after the kill).
    taken_over: Option<f64>,
    failover: Option<f64>,
    /// Seconds from the restarted instance's start until it held shards.
    holds: f64,
}

/// Shards claimed by each running instance, in `list` order.
fn shard_shares(fleet: &Instances) -> Result<Vec<usize>, String> {
    let claims = fleet.claims()?;
    Ok(fleet.ids()?.iter().map(|id| id.as_ref().map_or(0, |id| claims.values().filter(|o| *o == id).count())).collect())
}

/// The trials (see the top of the file); every wait bounded.
fn failover_trials(
    args: &Args,
    fleet: &mut Instances,
    seen: &mut Seen,
    watch: &Watch,
    agents: &poll_agents::Agents,
    sim: &ContrailSim,
) -> Result<Vec<Trial>, String> {
    let interval = Duration::from_secs(args.interval_s);
    let ttl = Duration::from_secs(args.lease_ttl_s);
    // A record is waited for the lease, the claim, down_after polls and a margin.
    let limit = ttl + interval * (DOWN_AFTER + 2) + Duration::from_secs(20);
    let settle_limit = Duration::from_secs(60) + ttl * 4 + interval * 2;
    let n_agents = agents.list.len();
    let mut trials = Vec::new();
    println!("  failover       : {} kill -9 trials, etcd.lease_ttl_s {} s, interval {} s:", args.failover_trials, args.lease_ttl_s, args.interval_s);
    for t in 0..args.failover_trials {
        interrupt::check()?;
        fleet.check_running()?;
        drain(seen, watch)?;
        // The victim: each instance in turn (the first that holds an agent's shard); the
        // port: on an agent whose shard it holds, found as an operator would, from etcd.
        let claims = fleet.claims()?;
        let members = fleet.members()?;
        let k = (t * 37 + 5) % args.ports;
        let owner_index = |a: usize| -> Option<usize> {
            let shard = instances::shard_of(&port_registry_key(a, k), &port_entry(&agents.list[a], a, k, COMMUNITY));
            let pid = members.get(claims.get(&shard)?)?;
            fleet.list.iter().position(|m| m.pid() == *pid)
        };
        let len = fleet.list.len();
        let pick = (0..len).map(|v| (t + v) % len).find_map(|v| {
            (0..n_agents).map(|i| (t * 7 + i) % n_agents).find(|&a| {
                owner_index(a) == Some(v) && seen.records.status.get(&port_monitoring_key(a, k)).map(String::as_str) == Some("UP")
            })
        });
        let Some(a) = pick else {
            return Err(format!("trial {}: no instance holds the shard of an UP port {k} of any agent", t + 1));
        };
        let shard = instances::shard_of(&port_registry_key(a, k), &port_entry(&agents.list[a], a, k, COMMUNITY));
        let v = owner_index(a).unwrap_or(0);
        let victim_id = fleet.ids()?[v].clone().unwrap_or_default();
        let victim_shards = claims.values().filter(|o| **o == victim_id).count();
        let key = port_monitoring_key(a, k);
        let target = Target::Port(a, poll_agents::interface_name(k));

        let (victim, killed) = fleet.kill(v);
        let flipped = set(&target, false, agents, sim);
        let (mut taken_over, mut down) = (None, None);
        let mut last_claim = Instant::now() - Duration::from_secs(1);
        while down.is_none() && killed.elapsed() < limit {
            interrupt::check()?;
            if taken_over.is_none() && last_claim.elapsed() >= Duration::from_millis(50) {
                last_claim = Instant::now();
                if fleet.claim(shard)?.is_some_and(|o| o != victim_id) {
                    taken_over = Some(killed.elapsed().as_secs_f64());
                }
            }
            if let Ok(ev) = watch.events.recv_timeout(Duration::from_millis(50)) {
                match seen.records.take(ev, true)? {
                    Change::Put { key: k2, status, .. } if k2 == key && status == "DOWN" => {
                        down = Some(flipped.elapsed().as_secs_f64())
                    }
                    Change::Put { key: k2, previous, status } => {
                        seen.unexpected.note(format!("{k2} {} → {status}", previous.as_deref().unwrap_or("(none)")))
                    }
                    Change::Other(what) => seen.unexpected.note(what),
                }
            }
        }

        // The port back up, a new instance, and the split settled again.
        let up_at = set(&target, true, agents, sim);
        let new = fleet.start_one()?;
        let restarted = fleet.list[new].number;
        let mut up = false;
        while !up && up_at.elapsed() < limit + settle_limit {
            interrupt::check()?;
            fleet.check_running()?;
            if let Ok(ev) = watch.events.recv_timeout(Duration::from_millis(100)) {
                match seen.records.take(ev, true)? {
                    Change::Put { key: k2, status, .. } if k2 == key && status == "UP" => up = true,
                    Change::Put { key: k2, previous, status } => {
                        seen.unexpected.note(format!("{k2} {} → {status}", previous.as_deref().unwrap_or("(none)")))
                    }
                    Change::Other(what) => seen.unexpected.note(what),
                }
            }
        }
        if !up && down.is_some() {
            return Err(format!("trial {}: {key} did not come back UP within {:?}", t + 1, limit + settle_limit));
        }
        let holds = fleet.wait_holds(new, settle_limit)?.as_secs_f64();
        fleet.wait_settled(settle_limit)?;
        let settled = fleet.list[new].started.elapsed().as_secs_f64();
        let opt = |x: Option<f64>| x.map_or("never".to_string(), |x| format!("{x:.2} s"));
        println!(
            "                   trial {}: kill -9 of instance {} (pid {}, {victim_shards} shards), {key} (shard {shard}) DOWN at once: claim taken over after {}, DOWN in etcd after {}; instance {restarted} started, held shards after {holds:.1} s, split settled after {settled:.1} s",
            t + 1,
            victim.number,
            victim.proc.pid(),
            opt(taken_over),
            opt(down)
        );
        trials.push(Trial { taken_over, failover: down, holds });
    }
    Ok(trials)
}

/// Takes what the watch has queued (record changes outside a measurement are unexpected).
fn drain(seen: &mut Seen, watch: &Watch) -> Result<(), String> {
    while let Ok(ev) = watch.events.try_recv() {
        seen.take(ev, Instant::now(), true)?;
    }
    Ok(())
}

fn print_failover(args: &Args, trials: &[Trial], unexpected: usize) {
    let failovers: Vec<f64> = trials.iter().filter_map(|t| t.failover).collect();
    let taken: Vec<f64> = trials.iter().filter_map(|t| t.taken_over).collect();
    let holds: Vec<f64> = trials.iter().map(|t| t.holds).collect();
    let missed = trials.len() - failovers.len();
    let bound = (args.lease_ttl_s + args.interval_s) as f64 + 1.0;
    let worst = quantile(&failovers, 1.0);
    println!(
        "  failover time  : kill -9 of a port's owner → its flip DOWN in etcd: median {:.2} s, worst {worst:.2} s over {} trials ({missed} never seen); claim taken over median {:.2} s, worst {:.2} s; restarted instance held shards after median {:.1} s; {unexpected} unexpected record changes during the trials",
        quantile(&failovers, 0.5),
        trials.len(),
        quantile(&taken, 0.5),
        quantile(&taken, 1.0),
        quantile(&holds, 0.5)
    );
    println!(
        "                   etcd.lease_ttl_s {} s, interval {} s, down_after {DOWN_AFTER} (the lease expires, a survivor claims the shard and polls it at once): failover <= lease TTL + 1 interval + 1 s = {bound:.0} s: {} (worst {worst:.2} s)",
        args.lease_ttl_s,
        args.interval_s,
        met(missed == 0 && !failovers.is_empty() && worst <= bound)
    );
}

/// Copies every running instance's log (`PATH` with one instance, else `PATH.<number>`).
fn keep_logs(fleet: &Instances, path: &std::path::Path) {
    for m in &fleet.list {
        let to = if fleet.list.len() == 1 && fleet.started == 1 {
            path.to_path_buf()
        } else {
            std::path::PathBuf::from(format!("{}.{}", path.display(), m.number))
        };
        if let Err(e) = std::fs::copy(&m.proc.log, &to) {
            println!("bench-poll: cannot copy esi-monitor's log to {}: {e}", to.display());
        }
    }
}

// ------------------------------------------------------------------------------- helpers

/// The `p` quantile (nearest rank) of `xs`, in seconds.
fn version_of(program: &str, arg: &str, marker: &str) -> String {
    Command::new(program)
        .arg(arg)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()
        .and_then(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            let line = text.lines().find(|l| l.contains(marker))?;
            Some(line.rsplit(' ').next()?.trim().to_string())
        })
        .unwrap_or_else(|| "?".into())
}


// ----------------------------------------------------------------------------------- run

fn run(args: &Args) -> Result<(), String> {
    let cpus = std::thread::available_parallelism().map(|p| p.get()).unwrap_or(0);
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into());
    let interval = Duration::from_secs(args.interval_s);
    let monitor_bin = support::sibling_binary("esi-monitor")?;
    // The exporter is optional: without it, the run says exactly why.
    let exporter_bin = if args.exporter { snmp_exporter::find_binary() } else { Err("skipped (--no-exporter)".into()) };

    let etcd = std::panic::catch_unwind(Etcd::start).map_err(|p| format!("etcd: {}", panic_text(p)))?;
    let store = etcd.store();

    let t = Instant::now();
    let (agents, failures) = poll_agents::start(args.agents, args.ports, COMMUNITY, START_PARALLEL);
    let agents_up_s = t.elapsed().as_secs_f64();
    if !failures.is_empty() {
        println!(
            "bench-poll: only {} of {} agents came up on this machine; going on with those ({} failed, first: {})",
            agents.list.len(),
            args.agents,
            failures.len(),
            failures[0]
        );
    }
    if agents.list.is_empty() {
        return Err(format!("no agent came up: {}", failures.first().map_or("?", String::as_str)));
    }
    println!(
        "bench-poll: {} agents x {} ports up in {agents_up_s:.1} s on UDP port {} ({:.0} MiB RSS for all snmpd + scripts)",
        agents.list.len(),
        args.ports,
        agents.port,
        mib(agents.rss_kib())
    );

    let sim = ContrailSim::start();
    for j in 0..args.vmis {
        sim.set_l2_active(&vmi_fq_name(j), true);
    }

    let resources = poll_resources::resources(&agents, args.ports, args.vmis, COMMUNITY);
    let n_ports = agents.list.len() * args.ports;
    let total = resources.len();
    let t = Instant::now();
    poll_resources::register(&store, &resources)?;
    let register_s = t.elapsed().as_secs_f64();

    // The exporter, up before esi-monitor (its start is not part of anything measured).
    let mut exporter: Result<Exporter, String> = exporter_bin.and_then(|bin| {
        let module = snmp_exporter::config(COMMUNITY, SNMP_TIMEOUT, SNMP_RETRIES, EXPORTER_MAX_REPETITIONS);
        Exporter::start(&bin, &module)
    });
    // One scrape proves the module works against these agents before anything is timed.
    if let Ok(e) = &exporter {
        let target = format!("{}:{}", agents.list[0].addr, agents.list[0].port);
        match e.scrape(&target, SCRAPE_LIMIT) {
            Ok(s) if s.statuses.len() == args.ports => {}
            Ok(s) => {
                exporter = Err(format!(
                    "the exporter's scrape of {target} returned {} ifOperStatus samples, not {}",
                    s.statuses.len(),
                    args.ports
                ))
            }
            Err(e) => exporter = Err(format!("the exporter cannot scrape {target}: {e}")),
        }
    }

    // The watch on /monitoring/, opened before esi-monitor starts.
    let (_, rev) = store.range("/monitoring/").map_err(|e| e.to_string())?;
    let watch = store.watch("/monitoring/", rev + 1).map_err(|e| e.to_string())?;
    let config = format!(
        "etcd: {{endpoints: [\"{}\"], lease_ttl_s: {}}}\n\
         worker: {{threads: {}}}\n\
         contrail: {{analytics_url: \"{}\"}}\n\
         snmp: {{port: {}, timeout_ms: {}, retries: {SNMP_RETRIES}}}\n\
         monitoring: {{interval_s: {}, down_after: {DOWN_AFTER}}}\n\
         log: {{level: {}}}\n",
        etcd.endpoint,
        args.lease_ttl_s,
        args.threads,
        sim.url(),
        agents.port,
        SNMP_TIMEOUT.as_millis(),
        args.interval_s,
        args.log_level
    );
    let mut fleet = Instances::start(&monitor_bin, &config, args.instances, store.clone())?;
    let started = Instant::now();

    // Every resource's first record (bounded: the first poll of everything, plus margin).
    let mut seen =
        Seen { records: Records::default(), flips: Vec::new(), by_key: HashMap::new(), unexpected: Unexpected::default() };
    let first_limit = Duration::from_secs(60) + interval * 4 + Duration::from_millis(5 * total as u64);
    seen.records.wait_first(&watch, total, first_limit, &mut fleet)?;
    let first_s = started.elapsed().as_secs_f64();
    let first_not_up = seen.records.status.values().filter(|s| *s != "UP").count();
    // The shards split as rendezvous hashing says, before anything is measured.
    let settle_limit = Duration::from_secs(60) + Duration::from_secs(4 * args.lease_ttl_s) + interval * 2;
    fleet.wait_settled(settle_limit)?;
    let settled_s = started.elapsed().as_secs_f64();
    let shares = shard_shares(&fleet)?;
    let startup_cpu = fleet.cpu_seconds();
    let startup_rss = fleet.status_kib("VmHWM").into_iter().max().unwrap_or(0);
    println!(
        "bench-poll: {total} resources registered in {register_s:.1} s; all have their first /monitoring record {first_s:.1} s after {} started ({first_not_up} not UP); shards split ({} per instance) {settled_s:.1} s after the start; startup took {startup_cpu:.2} CPU-s, VmHWM {:.1} MiB{}",
        if args.instances == 1 { "esi-monitor".to_string() } else { format!("{} esi-monitor instances", args.instances) },
        shares.iter().map(usize::to_string).collect::<Vec<_>>().join("/"),
        mib(startup_rss),
        if args.instances == 1 { "" } else { " (the largest instance)" }
    );

    // ------------------------------------------------------------------ the measured window
    let window = interval * args.intervals as u32;
    let hold = interval * DOWN_AFTER + Duration::from_secs(2);
    let lead = Duration::from_millis(500);
    // The last down leaves time for its DOWN (≤ down_after intervals), the hold, and its UP.
    let last_down = window.saturating_sub(hold + interval + Duration::from_secs(2));
    let t0 = Instant::now();
    seen.flips = plan_flips(
        &agents,
        (args.ports, args.vmis),
        (args.port_flips, args.vmi_flips),
        FlipTiming { t0, lead, last_down, hold },
    );
    seen.by_key = seen.flips.iter().enumerate().map(|(i, f)| (f.monitoring_key.clone(), i)).collect();
    // Scraped before the CPU is read: rendering /metrics is not part of the window.
    let m0 = fleet.samples()?;
    let cpu0 = fleet.cpu_seconds();
    let cpu_each0 = fleet.cpu_each();
    let threads0 = fleet.cpu_by_thread();
    let agents_cpu0 = agents.cpu_seconds();
    let self_cpu0 = proc_stats::cpu_seconds(std::process::id()).unwrap_or(0.0);
    let sim0 = sim.requests();
    let conns0 = sim.connections();
    let udp0 = Udp::read().unwrap_or_default();
    let rev0 = revision(&store)?;
    let events0 = seen.records.events;
    let stop = AtomicBool::new(false);
    let mut threads1 = Default::default();
    let mut cpu_each1 = Vec::new();
    // The longest a flip's record is waited for before it counts as missed.
    let give_up = interval * (DOWN_AFTER + 2);

    let (window_end, exporter_run, cpu1, agents_cpu1, sim1, udp1, rev1, self_cpu1) =
        std::thread::scope(|s| -> Result<_, String> {
            let scraper = exporter.as_ref().ok().map(|e| {
                let (agents, stop) = (&agents, &stop);
                s.spawn(move || exporter_rounds(e, agents, t0, interval, args.intervals, args.scrape_threads, stop))
            });
            let result = (|| -> Result<_, String> {
                let end = t0 + window;
                let mut last_check = Instant::now();
                loop {
                    let now = Instant::now();
                    if now >= end {
                        break;
                    }
                    if last_check.elapsed() > Duration::from_millis(500) {
                        last_check = now;
                        interrupt::check()?;
                        fleet.check_running()?;
                    }
                    // Flips that are due.
                    let mut next = end;
                    for f in seen.flips.iter_mut() {
                        if f.down_at.is_none() {
                            if now >= f.down_plan {
                                f.down_at = Some(set(&f.target, false, &agents, &sim));
                            } else {
                                next = next.min(f.down_plan);
                            }
                        } else if f.up_at.is_none() {
                            let down_at = f.down_at.unwrap_or(now);
                            // Up once held long enough and its DOWN was seen (or given up on).
                            let ready = f.down_seen.is_some() || now >= down_at + give_up;
                            if now >= f.up_plan && ready {
                                f.up_at = Some(set(&f.target, true, &agents, &sim));
                            } else if now >= f.up_plan {
                                next = next.min(now + Duration::from_millis(20));
                            } else {
                                next = next.min(f.up_plan);
                            }
                        }
                    }
                    let wait = next.saturating_duration_since(Instant::now()).min(Duration::from_millis(500));
                    if let Ok(ev) = watch.events.recv_timeout(wait) {
                        seen.take(ev, Instant::now(), true)?;
                        // Take whatever else is queued at the same instant.
                        while let Ok(ev) = watch.events.try_recv() {
                            seen.take(ev, Instant::now(), true)?;
                        }
                    }
                }
                threads1 = fleet.cpu_by_thread();
                cpu_each1 = fleet.cpu_each();
                Ok((
                    Instant::now(),
                    fleet.cpu_seconds(),
                    agents.cpu_seconds(),
                    sim.requests(),
                    Udp::read().unwrap_or_default(),
                    revision(&store)?,
                    proc_stats::cpu_seconds(std::process::id()).unwrap_or(self_cpu0),
                ))
            })();
            if result.is_err() {
                stop.store(true, Ordering::Relaxed);
            }
            let exporter_run = scraper.map(|h| h.join().map_err(|p| format!("scraper: {}", panic_text(p))));
            let (end, cpu1, acpu1, sim1, udp1, rev1, scpu1) = result?;
            let exporter_run = exporter_run.transpose()?;
            Ok((end, exporter_run, cpu1, acpu1, sim1, udp1, rev1, scpu1))
        })?;
    let m1 = fleet.samples()?;
    let events_window_end = seen.records.events;
    let wall = window_end.duration_since(t0).as_secs_f64();
    let conns = sim.connections() - conns0;

    // Let every flip settle (bounded), still watching.
    let settle_deadline = Instant::now() + give_up + interval;
    while !seen.flips.iter().all(|f| f.settled(Instant::now(), give_up)) && Instant::now() < settle_deadline {
        interrupt::check()?;
        if let Ok(ev) = watch.events.recv_timeout(Duration::from_millis(100)) {
            seen.take(ev, Instant::now(), true)?;
        }
    }
    // Flips planned but never made (a window too short for them) are reported as such.
    let unmade = seen.flips.iter().filter(|f| f.up_at.is_none()).count();

    // ------------------------------------------------------------------ the quiet interval
    let q_rev0 = revision(&store)?;
    let q_sim0 = sim.requests();
    let q_events0 = seen.records.events;
    let qm0 = fleet.samples()?;
    let q_cpu0 = fleet.cpu_seconds();
    let q_reads0 = agents.script_reads();
    let q_end = Instant::now() + interval;
    while Instant::now() < q_end {
        if let Ok(ev) = watch.events.recv_timeout(q_end.saturating_duration_since(Instant::now())) {
            seen.take(ev, Instant::now(), true)?;
        }
    }
    let q_rev = revision(&store)? - q_rev0;
    let q_sim = sim.requests() - q_sim0;
    let q_events = seen.records.events - q_events0;
    let q_cpu = fleet.cpu_seconds() - q_cpu0;
    let qm1 = fleet.samples()?;
    // GETs per agent in the quiet interval, from what the agents' scripts read (each GET of
    // P ports asks 1 + 2P varbinds: sysUpTime, then ifName and ifOperStatus per port).
    let per_get = (1 + 2 * args.ports) as f64;
    let q_gets: Vec<f64> =
        agents.commands_between(&q_reads0, &agents.script_reads()).into_iter().flatten().map(|c| c / per_get).collect();

    let peaks = fleet.status_kib("VmHWM");
    let peak_rss = peaks.iter().copied().max().unwrap_or(0);
    let rss_now = fleet.status_kib("VmRSS");
    let threads: Vec<u64> = fleet.list.iter().map(|m| proc_stats::threads(m.pid()).unwrap_or(0)).collect();
    let monitor_alive = fleet.check_running();

    // ------------------------------------------------------------------------- the figures
    let results = (total * args.intervals) as f64;
    let cpu = cpu1 - cpu0;
    let n = fleet.list.len();
    // Per instance, from its /metrics: deltas over the window and the quiet interval.
    let delta = |a: &[Samples], b: &[Samples], f: &dyn Fn(&Samples) -> f64| -> Vec<f64> {
        a.iter().zip(b).map(|(a, b)| f(b) - f(a)).collect()
    };
    let per_interval = |v: Vec<f64>| -> Vec<f64> { v.into_iter().map(|x| x / args.intervals as f64).collect() };
    let gets = per_interval(delta(&m0, &m1, &|m| m.requests("snmp_port")));
    let vmi_requests = per_interval(delta(&m0, &m1, &|m| m.requests("contrail_vmi")));
    let measured: f64 =
        delta(&m0, &m1, &|m| m.results("snmp_port", None) + m.results("contrail_vmi", None)).iter().sum();
    let q_inst_gets: f64 = delta(&qm0, &qm1, &|m| m.requests("snmp_port")).iter().sum();
    let counter = |series: &str| -> f64 { delta(&m0, &m1, &|m| m.get(series)).iter().sum() };
    let taken = counter("esi_monitor_handovers_total{way=\"taken\"}");
    let given = counter("esi_monitor_handovers_total{way=\"given\"}");
    let fenced = counter("esi_monitor_fenced_writes_total");
    let writes = counter("esi_monitor_monitoring_writes_total");
    let writes_all: f64 = m1.iter().map(|m| m.get("esi_monitor_monitoring_writes_total")).sum();
    let each = |v: &[f64], digits: usize| -> String {
        v.iter().enumerate().map(|(i, x)| format!("#{} {x:.digits$}", i + 1)).collect::<Vec<_>>().join(", ")
    };
    let cpu_each: Vec<f64> = cpu_each1.iter().zip(&cpu_each0).map(|(b, a)| b - a).collect();
    let results_per_cpu_s = results / cpu.max(1e-9);
    let cpu_per_1000 = cpu * 1000.0 / results;
    let secs = |a: Instant, b: Instant| b.duration_since(a).as_secs_f64();
    let mut downs = Vec::new();
    let mut ups = Vec::new();
    let (mut port_d, mut port_u, mut vmi_d, mut vmi_u) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut missed = Vec::new();
    for f in &seen.flips {
        let is_port = matches!(f.target, Target::Port(..));
        match (f.down_at, f.down_seen) {
            (Some(a), Some(b)) => {
                downs.push(secs(a, b));
                if is_port { port_d.push(secs(a, b)) } else { vmi_d.push(secs(a, b)) }
            }
            (Some(_), None) => missed.push(format!("{} DOWN", f.monitoring_key)),
            _ => {}
        }
        match (f.up_at, f.up_seen, f.down_seen) {
            (Some(a), Some(b), _) => {
                ups.push(secs(a, b));
                if is_port { port_u.push(secs(a, b)) } else { vmi_u.push(secs(a, b)) }
            }
            (Some(_), None, Some(_)) => missed.push(format!("{} UP", f.monitoring_key)),
            _ => {}
        }
    }
    let all: Vec<f64> = downs.iter().chain(&ups).copied().collect();
    let p99_limit = 2.0 * args.interval_s as f64 + 1.0;
    let p99_all = quantile(&all, 0.99);

    println!();
    println!(
        "bench-poll: {} agents x {} ports = {n_ports} ports + {} VMIs = {total} objects; interval {} s x {} intervals, down_after {DOWN_AFTER}, {} worker threads; etcd {}, net-snmp snmpd {} on loopback ({cpus} CPUs, load {load} at start)",
        agents.list.len(),
        args.ports,
        args.vmis,
        args.interval_s,
        args.intervals,
        args.threads,
        Etcd::version(),
        version_of(if std::path::Path::new("/usr/sbin/snmpd").is_file() { "/usr/sbin/snmpd" } else { "snmpd" }, "-v", "version"),
    );
    if agents.list.len() < args.agents {
        println!("  NOTE           : only {} of the {} agents asked for came up; the figures are for those", agents.list.len(), args.agents);
    }
    println!(
        "  results/s      : {:.0}/s = {total} objects x {} intervals in {wall:.1} s (derived: each object is polled once per interval; the instances' probe_results_total counted {measured:.0} = {:.3} per object per interval)",
        results / wall,
        args.intervals,
        measured / results
    );
    let vmi_results = (args.vmis * args.intervals) as f64;
    println!(
        "  cross-checks   : VMIs: the simulator answered {} requests in the window for {vmi_results:.0} VMI results = {:.1} VMIs per request (bulk is up to {}) over {conns} new TCP connections; ports: in the quiet interval the agents answered {:.2} GETs of {per_get:.0} varbinds per agent on average (min {:.2}, max {:.2}; {} agents read; from their scripts' read bytes), the simulator {q_sim} requests",
        sim1 - sim0,
        vmi_results / ((sim1 - sim0).max(1) as f64),
        esi_monitor::plugins::contrail::BULK,
        q_gets.iter().sum::<f64>() / (q_gets.len().max(1) as f64),
        quantile(&q_gets, 0.0),
        quantile(&q_gets, 1.0),
        q_gets.len()
    );
    let agents_n = agents.list.len() as f64;
    println!(
        "  device reqs    : {} together: {:.1} SNMP GETs + {:.1} VMI bulk requests per interval for {} agents and {} VMIs = {:.2} GETs per agent per interval (window; each instance's probe_duration_seconds_count); quiet interval: the agents answered {:.2} GETs per agent (their scripts, above), the instances counted {:.2}",
        if n == 1 { "the instance".to_string() } else { format!("all {n} instances") },
        gets.iter().sum::<f64>(),
        vmi_requests.iter().sum::<f64>(),
        agents.list.len(),
        args.vmis,
        gets.iter().sum::<f64>() / agents_n,
        q_gets.iter().sum::<f64>() / (q_gets.len().max(1) as f64),
        q_inst_gets / agents_n
    );
    if n > 1 {
        println!(
            "                   per instance and interval: SNMP GETs {}; VMI bulk requests {}",
            each(&gets, 1),
            each(&vmi_requests, 1)
        );
    }
    println!(
        "  worker CPU     : {cpu:.2} CPU-s in the window{} = {cpu_per_1000:.4} CPU-s per 1000 results = {results_per_cpu_s:.0} results per CPU-second (startup: {startup_cpu:.2} CPU-s; quiet interval: {q_cpu:.2} CPU-s)",
        if n == 1 { String::new() } else { format!(", all {n} instances together ({})", each(&cpu_each, 2)) }
    );
    println!("                   by thread: {}", proc_stats::cpu_by_thread_text(&threads0, &threads1));
    let mibs = |v: &[u64]| -> Vec<f64> { v.iter().map(|k| mib(*k)).collect() };
    if n == 1 {
        println!(
            "  memory         : peak RSS {:.1} MiB (VmHWM; {:.1} MiB at the first records), {:.1} MiB now, {} threads",
            mib(peak_rss),
            mib(startup_rss),
            mib(rss_now.iter().sum()),
            threads.iter().sum::<u64>()
        );
    } else {
        println!(
            "  memory         : peak RSS per instance {} MiB (VmHWM; largest {:.1} MiB at the first records), now {} MiB, sum {:.1} MiB; threads {}",
            each(&mibs(&peaks), 1),
            mib(startup_rss),
            each(&mibs(&rss_now), 1),
            mib(rss_now.iter().sum()),
            threads.iter().map(u64::to_string).collect::<Vec<_>>().join("/")
        );
    }
    println!(
        "  instances      : {n} sharing the polling through one etcd, etcd.lease_ttl_s {} s, interval {} s; shards held {} (of {}); in the window {taken:.0} shards taken over and {given:.0} given, {fenced:.0} fenced writes, {writes:.0} /monitoring writes counted by the instances for {} changes watched (since the start: {writes_all:.0} counted, {} watched; a write is counted when its answer is taken)",
        args.lease_ttl_s,
        args.interval_s,
        shares.iter().map(usize::to_string).collect::<Vec<_>>().join("/"),
        esi_monitor::shards::SHARDS,
        seen.records.events - events0,
        events_window_end
    );
    println!("  flip → etcd    : DOWN {}", delays_text(&downs));
    println!("                   UP   {}", delays_text(&ups));
    println!("                   all  {}", delays_text(&all));
    println!(
        "                   ports DOWN p50/p99 {:.2}/{:.2} s, UP {:.2}/{:.2} s; VMIs DOWN {:.2}/{:.2} s, UP {:.2}/{:.2} s",
        quantile(&port_d, 0.5),
        quantile(&port_d, 0.99),
        quantile(&port_u, 0.5),
        quantile(&port_u, 0.99),
        quantile(&vmi_d, 0.5),
        quantile(&vmi_d, 0.99),
        quantile(&vmi_u, 0.5),
        quantile(&vmi_u, 0.99)
    );
    println!(
        "                   {} flips ({} ports on distinct agents, {} VMIs); {} record changes missed{}; {} flips not made; {} unexpected record changes{}",
        seen.flips.len(),
        seen.flips.iter().filter(|f| matches!(f.target, Target::Port(..))).count(),
        seen.flips.iter().filter(|f| matches!(f.target, Target::Vmi(_))).count(),
        missed.len(),
        if missed.is_empty() { String::new() } else { format!(" ({})", missed.iter().take(3).cloned().collect::<Vec<_>>().join(", ")) },
        unmade,
        seen.unexpected.count,
        if seen.unexpected.examples.is_empty() { String::new() } else { format!(": {}", seen.unexpected.examples.join("; ")) }
    );
    println!(
        "  etcd writes    : {} /monitoring changes in the window (revision +{}); quiet interval: revision +{q_rev}, {q_events} watch events",
        seen.records.events - events0,
        rev1 - rev0
    );
    println!(
        "  agents' CPU    : {:.2} CPU-s in the window (snmpd + pass_persist python; serves both esi-monitor and the exporter); UDP in the window (whole machine): {} datagrams in, {} in-errors, {} rcvbuf errors",
        agents_cpu1 - agents_cpu0,
        udp1.since(&udp0).in_datagrams,
        udp1.since(&udp0).in_errors,
        udp1.since(&udp0).rcvbuf_errors
    );
    println!(
        "  this process   : {:.2} CPU-s in the window (simulator, scrapers, watch)",
        self_cpu1 - self_cpu0
    );
    let mut ratio = None;
    match (&exporter, &exporter_run) {
        (Ok(e), Some(r)) => {
            let per_1000 = r.cpu * 1000.0 / (r.ports.max(1) as f64);
            let walls: Vec<f64> = r.round_walls.iter().map(Duration::as_secs_f64).collect();
            println!(
                "  exporter       : prometheus-snmp-exporter {} (module: walk ifOperStatus, v2c, max-repetitions {EXPORTER_MAX_REPETITIONS}, timeout {} ms, retries {SNMP_RETRIES}): {} rounds x {} agents ({} skipped), {} port results ({} up, {} down), {} failed scrapes{}; round wall p50 {:.2} s, max {:.2} s ({} scrape threads)",
                e.version,
                SNMP_TIMEOUT.as_millis(),
                r.rounds,
                agents.list.len(),
                r.skipped,
                r.ports,
                r.up,
                r.down,
                r.errors,
                if r.error_examples.is_empty() { String::new() } else { format!(" ({})", r.error_examples.join("; ")) },
                quantile(&walls, 0.5),
                quantile(&walls, 1.0),
                args.scrape_threads
            );
            println!(
                "  exporter CPU   : {:.2} CPU-s = {per_1000:.4} CPU-s per 1000 port results = {:.0} results per CPU-second",
                r.cpu,
                r.ports as f64 / r.cpu.max(1e-9)
            );
            if r.ports > 0 && cpu > 0.0 {
                let x = per_1000 / cpu_per_1000;
                ratio = Some(x);
                println!(
                    "  CPU ratio      : the exporter uses {x:.1}x esi-monitor's CPU per 1000 results (esi-monitor's figure also carries its VMIs, confirmation and etcd work)"
                );
            }
        }
        (Err(why), _) => println!("  exporter       : not run: {why}"),
        (Ok(_), None) => println!("  exporter       : not run"),
    }
    let rss_ok = peak_rss > 0 && mib(peak_rss) <= 64.0;
    println!(
        "  targets        : >= 100,000 results per worker CPU-second: {} ({results_per_cpu_s:.0}); p99 flip-to-etcd <= 2 intervals + 1 s = {p99_limit:.0} s: {} ({p99_all:.2} s over {} transitions); peak RSS <= 64 MiB: {} ({:.1} MiB)",
        met(results_per_cpu_s >= 100_000.0),
        met(!all.is_empty() && p99_all <= p99_limit && missed.is_empty()),
        all.len(),
        met(rss_ok),
        mib(peak_rss)
    );
    println!(
        "  how            : CPU = utime+stime of /proc/<pid>/stat over the window (every esi-monitor instance summed, exporter, agents); RSS = VmHWM; delays from the instant a flip was applied (agent state file replaced / simulator updated) to the watch event on /monitoring/; results derived{}",
        ratio.map_or(String::new(), |_| "; exporter CPU per 1000 ifOperStatus samples it returned".to_string())
    );
    if let Err(e) = monitor_alive {
        return Err(format!("during the run: {e}"));
    }

    // --------------------------------------------------------------------- kill -9 failover
    drop(exporter);
    let unexpected0 = seen.unexpected.count;
    let trials = if n == 1 {
        println!("  failover       : skipped: with --instances 1 there is no other instance to fail over to (--instances 2 or 3 runs {} kill -9 trials)", args.failover_trials);
        Ok(Vec::new())
    } else if args.failover_trials == 0 {
        println!("  failover       : skipped (--failover-trials 0)");
        Ok(Vec::new())
    } else {
        failover_trials(args, &mut fleet, &mut seen, &watch, &agents, &sim)
    };
    if let Some(path) = &args.keep_log {
        keep_logs(&fleet, path);
    }
    let trials = trials?;
    if !trials.is_empty() {
        print_failover(args, &trials, seen.unexpected.count - unexpected0);
    }
    // Stop in order: the pollers first, then what they poll, then etcd.
    drop(fleet);
    drop(watch);
    drop(sim);
    drop(agents);
    drop(etcd);
    Ok(())
}
