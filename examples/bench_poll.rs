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
//! 3. The release `esi-monitor run` starts with `monitoring: {interval_s, down_after: 2}`,
//!    `snmp: {port, timeout_ms: 1000, retries: 1}`, the simulator's URL and 8 worker
//!    threads. A watch on `/monitoring/` (opened before the start) waits until every
//!    resource has its first record (bounded).
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
//!    etcd's revision must not move (esi-monitor writes only on change), and the kernel's
//!    UDP counters there count esi-monitor's SNMP requests (cross-check of the results).
//!
//! Figures: results/s = objects × intervals / window wall time (esi-monitor exposes no poll
//! counters; every object is polled once per interval; cross-checked with the simulator's
//! request count and the quiet interval's UDP datagrams); esi-monitor CPU-seconds
//! (utime + stime, /proc/<pid>/stat) over the window per 1,000 results; peak RSS (VmHWM);
//! the exporter's CPU-seconds per 1,000 port results and its ratio to esi-monitor's.

mod support;

#[path = "../tests/support/contrail_sim.rs"]
mod contrail_sim;
#[path = "support/poll_agents.rs"]
mod poll_agents;
#[path = "support/snmp_exporter.rs"]
mod snmp_exporter;
#[path = "../tests/support/snmpd.rs"]
mod snmpd;

use contrail_sim::ContrailSim;
use esi_monitor::store::{Op, Store, Txn, WatchEvent};
use support::figures::{delays_text, met, mib, quantile, revision};
use support::panics::panic_text;
use support::proc_stats::{self, Udp};
use serde_json::{json, Value};
use snmp_exporter::Exporter;
use std::collections::HashMap;
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use support::etcd::Etcd;
use support::process::Proc;

const USAGE: &str = "usage: bench_poll [--agents N] [--ports N] [--interval-s S] [--intervals N] [--vmis N]
                  [--threads N] [--port-flips N] [--vmi-flips N] [--scrape-threads N] [--no-exporter]
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
  --log-level L       esi-monitor's log.level (default info)
  --keep-log PATH     copy esi-monitor's log to PATH at the end
BENCH_POLL_TRACE=1 prints every flip and every /monitoring change of the window to stderr.";

const COMMUNITY: &str = "bench";
const DOWN_AFTER: u32 = 2;
const SNMP_TIMEOUT: Duration = Duration::from_millis(1000);
const SNMP_RETRIES: u32 = 1;
/// GETBULK max-repetitions of the exporter's walk (snmp_exporter's default).
const EXPORTER_MAX_REPETITIONS: u32 = 25;
/// Agents started at the same time (each start is bounded by the harness).
const START_PARALLEL: usize = 16;
/// Registry entries per `Store::txns` call.
const WRITE_BATCH: usize = 256;
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
            _ => return Err(format!("unknown argument {flag}\n{USAGE}")),
        }
    }
    if a.intervals < 5 {
        return Err(format!("--intervals must be at least 5 (a flip needs 2 intervals to go down and 1 to come back)\n{USAGE}"));
    }
    Ok(a)
}

fn main() -> ExitCode {
    match parse_args().and_then(|args| run(&args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-poll FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

// ------------------------------------------------------------------------- the resources

#[derive(Debug, Clone)]
enum Target {
    /// Agent index, interface name.
    Port(usize, String),
    Vmi(String),
}

/// One registered resource.
struct Resource {
    registry_key: String,
    entry: String,
}

fn port_id(agent: usize, k: usize) -> String {
    format!("pp-{agent:05}-{k:03}")
}

fn vmi_fq_name(j: usize) -> String {
    format!("default-domain:bench:vmi-{j:06}")
}

fn vmi_id(j: usize) -> String {
    format!("vmi-{j:06}")
}

/// The object name inside a `/monitoring` record, from its key.
fn object_of(monitoring_key: &str) -> &'static str {
    if monitoring_key.starts_with("/monitoring/v2.0/ese_physical_ports/") {
        "port"
    } else {
        "vmi"
    }
}

fn resources(agents: &poll_agents::Agents, ports: usize, vmis: usize) -> Vec<Resource> {
    let mut out = Vec::with_capacity(agents.list.len() * ports + vmis);
    for (a, agent) in agents.list.iter().enumerate() {
        for k in 0..ports {
            let id = port_id(a, k);
            let entry = json!({
                "resource_type": "ese_physical_port",
                "resource_id": id,
                "version": 1,
                "tenant_id": "bench-tenant",
                "objects": {"port": {
                    "type": "physical_port",
                    "device_ip": agent.addr,
                    "community_name": COMMUNITY,
                    "name": poll_agents::interface_name(k),
                    "port": agent.port,
                }},
            });
            out.push(Resource {
                registry_key: esi_monitor::keys::registry("ese_physical_ports", &id),
                entry: entry.to_string(),
            });
        }
    }
    for j in 0..vmis {
        let id = vmi_id(j);
        let entry = json!({
            "resource_type": "port",
            "resource_id": id,
            "version": 1,
            "tenant_id": "bench-tenant",
            "objects": {"vmi": {"type": "virtual_machine_interface", "fq_name": vmi_fq_name(j)}},
        });
        out.push(Resource {
            registry_key: esi_monitor::keys::registry("ports", &id),
            entry: entry.to_string(),
        });
    }
    out
}

fn register(store: &Store, resources: &[Resource]) -> Result<(), String> {
    for chunk in resources.chunks(WRITE_BATCH) {
        let txns: Vec<Txn> = chunk
            .iter()
            .map(|r| Txn { when: Vec::new(), then: vec![Op::put(r.registry_key.clone(), r.entry.clone())] })
            .collect();
        for r in store.txns(&txns) {
            match r {
                Ok(o) if o.applied => {}
                Ok(_) => return Err("a registry write was not applied".into()),
                Err(e) => return Err(format!("writing the registry: {e}")),
            }
        }
    }
    Ok(())
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

/// What the watch on `/monitoring/` has shown so far.
struct Seen {
    /// Key → status of its one object.
    records: HashMap<String, String>,
    flips: Vec<Flip>,
    by_key: HashMap<String, usize>,
    unexpected: Unexpected,
    events: u64,
}

impl Seen {
    /// Takes one watch event, seen at `now`; with `measuring`, a change nobody flipped is
    /// unexpected.
    fn take(&mut self, ev: WatchEvent, now: Instant, measuring: bool) -> Result<(), String> {
        self.events += 1;
        let kv = match ev {
            WatchEvent::Put(kv) => kv,
            WatchEvent::Delete { key, .. } => {
                self.unexpected.note(format!("{key} deleted"));
                return Ok(());
            }
            WatchEvent::NotText { key } => {
                self.unexpected.note(format!("{key} written (not text)"));
                return Ok(());
            }
            WatchEvent::Broken(why) => return Err(format!("the watch on /monitoring/ broke: {why}")),
        };
        let value: Value = serde_json::from_slice(&kv.value).unwrap_or(Value::Null);
        if measuring && std::env::var_os("BENCH_POLL_TRACE").is_some() {
            let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            eprintln!("trace {:.3} seen {} {value}", t.as_secs_f64() % 3600.0, kv.key);
        }
        let status = value.get(object_of(&kv.key)).and_then(Value::as_str).unwrap_or("?").to_string();
        let previous = self.records.insert(kv.key.clone(), status.clone());
        if !measuring {
            return Ok(());
        }
        let text = format!("{} {} → {status}", kv.key, previous.as_deref().unwrap_or("(none)"));
        match self.by_key.get(&kv.key).map(|&i| &mut self.flips[i]) {
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
                esi_monitor::keys::monitoring("ese_physical_ports", &port_id(a, k)),
            ));
            p += 1;
        } else {
            let j = (v * vmis / vmi_flips + 7) % vmis;
            targets.push((Target::Vmi(vmi_fq_name(j)), esi_monitor::keys::monitoring("ports", &vmi_id(j))));
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
    if std::env::var_os("BENCH_POLL_TRACE").is_some() {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        eprintln!("trace {:.3} set {target:?} {}", t.as_secs_f64() % 3600.0, if up { "up" } else { "down" });
    }
    match target {
        Target::Port(a, name) => agents.list[*a].snmpd.set_up(name, up),
        Target::Vmi(fq) => sim.set_l2_active(fq, up),
    }
    Instant::now()
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

    let resources = resources(&agents, args.ports, args.vmis);
    let n_ports = agents.list.len() * args.ports;
    let total = resources.len();
    let t = Instant::now();
    register(&store, &resources)?;
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
        "etcd: {{endpoints: [\"{}\"]}}\n\
         worker: {{threads: {}}}\n\
         contrail: {{analytics_url: \"{}\"}}\n\
         snmp: {{port: {}, timeout_ms: {}, retries: {SNMP_RETRIES}}}\n\
         monitoring: {{interval_s: {}, down_after: {DOWN_AFTER}}}\n\
         log: {{level: {}}}\n\
         metrics: {{listen: \"\"}}\n",
        etcd.endpoint,
        args.threads,
        sim.url(),
        agents.port,
        SNMP_TIMEOUT.as_millis(),
        args.interval_s,
        args.log_level
    );
    let mut monitor = Proc::esi_monitor(&monitor_bin, &config)?;
    let pid = monitor.pid();
    let started = Instant::now();

    // Every resource's first record (bounded: the first poll of everything, plus margin).
    let mut seen = Seen {
        records: HashMap::new(),
        flips: Vec::new(),
        by_key: HashMap::new(),
        unexpected: Unexpected::default(),
        events: 0,
    };
    let first_limit = Duration::from_secs(60) + interval * 4 + Duration::from_millis(5 * total as u64);
    let mut last_check = Instant::now();
    while seen.records.len() < total {
        if started.elapsed() > first_limit {
            return Err(format!(
                "only {} of {total} resources had a /monitoring record after {first_limit:?}; esi-monitor log: {}",
                seen.records.len(),
                monitor.log_tail(5).join(" | ")
            ));
        }
        if last_check.elapsed() > Duration::from_millis(500) {
            last_check = Instant::now();
            if !monitor.is_running() {
                return Err(format!("esi-monitor exited: {}", monitor.log_tail(10).join(" | ")));
            }
        }
        if let Ok(ev) = watch.events.recv_timeout(Duration::from_millis(200)) {
            seen.take(ev, Instant::now(), false)?;
        }
    }
    let first_s = started.elapsed().as_secs_f64();
    let first_not_up = seen.records.values().filter(|s| *s != "UP").count();
    let startup_cpu = proc_stats::cpu_seconds(pid).unwrap_or(0.0);
    let startup_rss = proc_stats::status_kib(pid, "VmHWM").unwrap_or(0);
    println!(
        "bench-poll: {total} resources registered in {register_s:.1} s; all have their first /monitoring record {first_s:.1} s after esi-monitor started ({first_not_up} not UP); startup took {startup_cpu:.2} CPU-s, VmHWM {:.1} MiB",
        mib(startup_rss)
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
    let cpu0 = proc_stats::cpu_seconds(pid).unwrap_or(0.0);
    let threads0 = proc_stats::cpu_by_thread(pid);
    let agents_cpu0 = agents.cpu_seconds();
    let self_cpu0 = proc_stats::cpu_seconds(std::process::id()).unwrap_or(0.0);
    let sim0 = sim.requests();
    let conns0 = sim.connections();
    let udp0 = Udp::read().unwrap_or_default();
    let rev0 = revision(&store)?;
    let events0 = seen.events;
    let stop = AtomicBool::new(false);
    let mut threads1 = Default::default();
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
                        if !monitor.is_running() {
                            return Err(format!("esi-monitor exited: {}", monitor.log_tail(10).join(" | ")));
                        }
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
                threads1 = proc_stats::cpu_by_thread(pid);
                Ok((
                    Instant::now(),
                    proc_stats::cpu_seconds(pid).unwrap_or(cpu0),
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
    let wall = window_end.duration_since(t0).as_secs_f64();
    let conns = sim.connections() - conns0;

    // Let every flip settle (bounded), still watching.
    let settle_deadline = Instant::now() + give_up + interval;
    while !seen.flips.iter().all(|f| f.settled(Instant::now(), give_up)) && Instant::now() < settle_deadline {
        if let Ok(ev) = watch.events.recv_timeout(Duration::from_millis(100)) {
            seen.take(ev, Instant::now(), true)?;
        }
    }
    // Flips planned but never made (a window too short for them) are reported as such.
    let unmade = seen.flips.iter().filter(|f| f.up_at.is_none()).count();

    // ------------------------------------------------------------------ the quiet interval
    let q_rev0 = revision(&store)?;
    let q_sim0 = sim.requests();
    let q_events0 = seen.events;
    let q_cpu0 = proc_stats::cpu_seconds(pid).unwrap_or(0.0);
    let q_reads0 = agents.script_reads();
    let q_end = Instant::now() + interval;
    while Instant::now() < q_end {
        if let Ok(ev) = watch.events.recv_timeout(q_end.saturating_duration_since(Instant::now())) {
            seen.take(ev, Instant::now(), true)?;
        }
    }
    let q_rev = revision(&store)? - q_rev0;
    let q_sim = sim.requests() - q_sim0;
    let q_events = seen.events - q_events0;
    let q_cpu = proc_stats::cpu_seconds(pid).unwrap_or(q_cpu0) - q_cpu0;
    // GETs per agent in the quiet interval, from what the agents' scripts read (each GET of
    // P ports asks 1 + 2P varbinds: sysUpTime, then ifName and ifOperStatus per port).
    let per_get = (1 + 2 * args.ports) as f64;
    let q_gets: Vec<f64> =
        agents.commands_between(&q_reads0, &agents.script_reads()).into_iter().flatten().map(|c| c / per_get).collect();

    let peak_rss = proc_stats::status_kib(pid, "VmHWM").unwrap_or(0);
    let rss_now = proc_stats::status_kib(pid, "VmRSS").unwrap_or(0);
    let threads = proc_stats::threads(pid).unwrap_or(0);
    let monitor_alive = monitor.is_running();
    if let Some(path) = &args.keep_log {
        if let Err(e) = std::fs::copy(&monitor.log, path) {
            println!("bench-poll: cannot copy esi-monitor's log to {}: {e}", path.display());
        }
    }

    // ------------------------------------------------------------------------- the figures
    let results = (total * args.intervals) as f64;
    let cpu = cpu1 - cpu0;
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
        "  results/s      : {:.0}/s = {total} objects x {} intervals in {wall:.1} s (derived: esi-monitor exports no poll counters; each object is polled once per interval)",
        results / wall,
        args.intervals
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
    println!(
        "  worker CPU     : {cpu:.2} CPU-s in the window = {cpu_per_1000:.4} CPU-s per 1000 results = {results_per_cpu_s:.0} results per CPU-second (startup: {startup_cpu:.2} CPU-s; quiet interval: {q_cpu:.2} CPU-s)"
    );
    println!("                   by thread: {}", proc_stats::cpu_by_thread_text(&threads0, &threads1));
    println!(
        "  memory         : peak RSS {:.1} MiB (VmHWM; {:.1} MiB at the first records), {:.1} MiB now, {threads} threads",
        mib(peak_rss),
        mib(startup_rss),
        mib(rss_now)
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
        seen.events - events0,
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
        "  how            : CPU = utime+stime of /proc/<pid>/stat over the window (esi-monitor, exporter, agents); RSS = VmHWM; delays from the instant a flip was applied (agent state file replaced / simulator updated) to the watch event on /monitoring/; results derived{}",
        ratio.map_or(String::new(), |_| "; exporter CPU per 1000 ifOperStatus samples it returned".to_string())
    );
    if !monitor_alive {
        return Err(format!("esi-monitor exited during the run: {}", monitor.log_tail(10).join(" | ")));
    }
    // Stop in order: the pollers first, then what they poll, then etcd.
    drop(exporter);
    drop(monitor);
    drop(watch);
    drop(sim);
    drop(agents);
    drop(etcd);
    Ok(())
}
