//! `make soak`: esi-monitor polling 20,000 objects for half an hour, to show that nothing
//! grows (memory, file descriptors) and that no status change is lost on the way. Not part
//! of `make test`; a run, not a benchmark: it fails (exit code 1) when RSS or the open
//! descriptors did not stay flat or a flip did not reach etcd.
//!
//! All on loopback, with `bench_poll`'s parts (examples/support), every process stopped at the
//! end by a drop guard, also on error, panic, Ctrl-C or SIGTERM (a second one exits at once):
//!
//! 1. A throwaway etcd; N real net-snmp snmpd agents (default 200 × 100 ports = 20,000
//!    objects; `--agents --ports`) on 127.1.X.Y, one shared UDP port, all ports up; with
//!    `--vmis M` also the Contrail simulator (in this process) with M VMIs up.
//! 2. The registry written directly (one `ese_physical_port` resource per port, one `port`
//!    resource per VMI), as `bench_poll` writes it.
//! 3. `--instances N` (1..=3, default 1) `esi-monitor run` against that etcd with
//!    `monitoring: {interval_s: --interval-s (default 10), down_after: 2}`, `snmp: {timeout_ms:
//!    1000, retries: 1}`, `etcd.lease_ttl_s` `--lease-ttl-s` (default 10) and a `metrics.listen`
//!    each. The run starts once every resource has its first record and the shards are split.
//! 4. `--minutes` minutes (default 30). 2 s into every minute `--flips` ports (default 4, on
//!    distinct agents; and `--vmi-flips` VMIs when there are VMIs) go down; each comes back up
//!    once its DOWN record was seen (or after 2 intervals + 2 s + 2 intervals, then its DOWN
//!    is missed), and its UP record is waited for as long. A watch on `/monitoring/` sees
//!    both. At the end of every minute, per esi-monitor process: VmRSS and VmHWM
//!    (/proc/<pid>/status), open descriptors (entries of /proc/<pid>/fd), threads, CPU-seconds
//!    of the minute.
//! 5. The verdict: RSS and descriptors flat = every sample after minute `--warmup-minutes`
//!    (default 5) within ±10 % of its value at that minute (shorter runs are not judged, and
//!    say so); every flip's DOWN and UP in `/monitoring`. Record changes nobody flipped are
//!    counted and shown.

mod support;

#[path = "../tests/support/contrail_sim.rs"]
mod contrail_sim;
#[path = "support/poll_agents.rs"]
mod poll_agents;
#[path = "support/poll_resources.rs"]
mod poll_resources;
#[path = "../tests/support/snmpd.rs"]
mod snmpd;

use contrail_sim::ContrailSim;
use poll_resources::{port_monitoring_key, vmi_fq_name, vmi_monitoring_key, Change, Records, Target};
use std::collections::{HashMap, HashSet};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use support::etcd::Etcd;
use support::figures::mib;
use support::instances::Instances;
use support::interrupt;
use support::panics::panic_text;
use support::proc_stats;

const USAGE: &str = "usage: soak [--minutes N] [--agents N] [--ports N] [--vmis N] [--interval-s S] [--instances N]
            [--flips N] [--vmi-flips N] [--lease-ttl-s S] [--warmup-minutes N] [--threads N]
  --minutes N         how long esi-monitor polls (default 30)
  --agents N          SNMP agents (snmpd) on 127.1.0.1 ... (default 200)
  --ports N           interfaces per agent, each a registered physical_port (default 100: 20,000 objects)
  --vmis N            VMIs on the Contrail simulator, each a registered VMI (default 0)
  --interval-s S      monitoring.interval_s (default 10)
  --instances N       esi-monitor instances sharing the polling through one etcd (1..=3, default 1)
  --flips N           ports taken down and up again every minute, on distinct agents (default 4)
  --vmi-flips N       VMIs taken down and up again every minute when there are VMIs (default 1)
  --lease-ttl-s S     etcd.lease_ttl_s of every instance (default 10, at least 2)
  --warmup-minutes N  RSS and descriptors are judged against their value at this minute, on the
                      minutes after it (default 5)
  --threads N         esi-monitor worker.threads (default 8)
  --log-level L       esi-monitor's log.level (default info)
  --keep-log PATH     copy esi-monitor's log to PATH at the end (PATH.1, PATH.2, ... with several instances)
Exit code 0 when RSS and descriptors stayed flat and every flip reached etcd, 1 otherwise, 2 for a usage error.
BENCH_POLL_TRACE=1 prints every flip and every /monitoring change to stderr.";

const COMMUNITY: &str = "soak";
const DOWN_AFTER: u32 = 2;
const SNMP_TIMEOUT_MS: u64 = 1000;
const SNMP_RETRIES: u32 = 1;
const START_PARALLEL: usize = 16;
const MINUTE: Duration = Duration::from_secs(60);
/// Flips start this long into their minute.
const FLIP_OFFSET: Duration = Duration::from_secs(2);
/// RSS and descriptors may move this much (relative) after the warm-up.
const FLAT: f64 = 0.10;

struct Args {
    minutes: usize,
    agents: usize,
    ports: usize,
    vmis: usize,
    interval_s: u64,
    instances: usize,
    flips: usize,
    vmi_flips: usize,
    lease_ttl_s: u64,
    warmup: usize,
    threads: usize,
    log_level: String,
    keep_log: Option<std::path::PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        minutes: 30,
        agents: 200,
        ports: 100,
        vmis: 0,
        interval_s: 10,
        instances: 1,
        flips: 4,
        vmi_flips: 1,
        lease_ttl_s: 10,
        warmup: 5,
        threads: 8,
        log_level: "info".into(),
        keep_log: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
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
        let positive = |n: usize| if n == 0 { Err(format!("{flag} must be at least 1\n{USAGE}")) } else { Ok(n) };
        match flag.as_str() {
            "--minutes" => a.minutes = positive(n)?,
            "--agents" => a.agents = positive(n)?.min(50_000),
            "--ports" => a.ports = positive(n)?.min(1000),
            "--vmis" => a.vmis = n,
            "--interval-s" => a.interval_s = positive(n)? as u64,
            "--instances" if (1..=3).contains(&n) => a.instances = n,
            "--instances" => return Err(format!("--instances must be 1, 2 or 3\n{USAGE}")),
            "--flips" => a.flips = n,
            "--vmi-flips" => a.vmi_flips = n,
            "--lease-ttl-s" if n >= 2 => a.lease_ttl_s = n as u64,
            "--lease-ttl-s" => return Err(format!("--lease-ttl-s must be at least 2 (esi-monitor's minimum)\n{USAGE}")),
            "--warmup-minutes" => a.warmup = n,
            "--threads" => a.threads = positive(n)?,
            _ => return Err(format!("unknown argument {flag}\n{USAGE}")),
        }
    }
    Ok(a)
}

fn main() -> ExitCode {
    interrupt::install();
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("soak: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            println!("soak FAILED (see the verdict above)");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("soak FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

// ------------------------------------------------------------------------------ the flips

struct Flip {
    target: Target,
    key: String,
    minute: usize,
    down_at: Instant,
    down_seen: Option<Instant>,
    up_at: Option<Instant>,
    up_seen: Option<Instant>,
}

impl Flip {
    /// Its UP was seen, or given up on.
    fn done(&self, now: Instant, give_up: Duration) -> bool {
        self.up_at.is_some_and(|up| self.up_seen.is_some() || now >= up + give_up)
    }
}

/// The flips so far and the watch's view of `/monitoring`.
struct Flips {
    list: Vec<Flip>,
    /// Record key → index of its flip not done yet.
    open: HashMap<String, usize>,
    records: Records,
    unexpected: usize,
    examples: Vec<String>,
    /// Where the next minute's choice of targets starts.
    cursor: usize,
}

impl Flips {
    fn note(&mut self, what: String) {
        self.unexpected += 1;
        if self.examples.len() < 5 {
            self.examples.push(what);
        }
    }

    fn take(&mut self, ev: esi_monitor::store::WatchEvent) -> Result<(), String> {
        let now = Instant::now();
        match self.records.take(ev, true)? {
            Change::Other(what) => self.note(what),
            Change::Put { key, previous, status } => {
                let f = self.open.get(&key).map(|&i| &mut self.list[i]);
                match f {
                    Some(f) if status == "DOWN" && f.down_seen.is_none() && f.up_at.is_none() => f.down_seen = Some(now),
                    Some(f) if status == "UP" && f.up_at.is_some() && f.up_seen.is_none() => f.up_seen = Some(now),
                    _ => self.note(format!("{key} {} → {status}", previous.as_deref().unwrap_or("(none)"))),
                }
            }
        }
        Ok(())
    }

    /// Takes this minute's targets down: `ports` ports on distinct agents and `vmis` VMIs,
    /// none of them with a flip still open.
    fn start_minute(
        &mut self,
        minute: usize,
        (ports, vmis): (usize, usize),
        args: &Args,
        agents: &poll_agents::Agents,
        sim: Option<&ContrailSim>,
    ) {
        let n_agents = agents.list.len();
        let mut used_agents: HashSet<usize> = self
            .open
            .values()
            .filter_map(|&i| match self.list[i].target {
                Target::Port(a, _) => Some(a),
                Target::Vmi(_) => None,
            })
            .collect();
        let mut targets: Vec<(Target, String)> = Vec::new();
        // Ports: agents in turn from the cursor, a different interface each time round.
        for step in 0..n_agents {
            if targets.len() >= ports {
                break;
            }
            let g = self.cursor + step;
            let a = g % n_agents;
            let k = (g / n_agents * 37 + a * 11 + 5) % args.ports;
            let key = port_monitoring_key(a, k);
            if used_agents.contains(&a) || self.open.contains_key(&key) {
                continue;
            }
            used_agents.insert(a);
            targets.push((Target::Port(a, poll_agents::interface_name(k)), key));
            self.cursor = g + 1;
        }
        let mut taken = 0;
        for step in 0..args.vmis {
            if taken >= vmis {
                break;
            }
            let j = (minute * 131 + step * 7 + 3) % args.vmis;
            let key = vmi_monitoring_key(j);
            if !self.open.contains_key(&key) && !targets.iter().any(|(_, k)| *k == key) {
                targets.push((Target::Vmi(vmi_fq_name(j)), key));
                taken += 1;
            }
        }
        for (target, key) in targets {
            let down_at = poll_resources::set(&target, false, agents, sim);
            self.open.insert(key.clone(), self.list.len());
            self.list.push(Flip { target, key, minute, down_at, down_seen: None, up_at: None, up_seen: None });
        }
    }

    /// Brings back up the flips whose DOWN was seen (or given up on); closes those done.
    fn advance(&mut self, give_up: Duration, agents: &poll_agents::Agents, sim: Option<&ContrailSim>) {
        let now = Instant::now();
        for &i in self.open.values() {
            let f = &mut self.list[i];
            if f.up_at.is_none() && (f.down_seen.is_some() || now >= f.down_at + give_up) {
                f.up_at = Some(poll_resources::set(&f.target, true, agents, sim));
            }
        }
        let list = &self.list;
        self.open.retain(|_, i| !list[*i].done(now, give_up));
    }

    fn made(&self) -> usize {
        self.list.len()
    }
    fn downs_seen(&self) -> usize {
        self.list.iter().filter(|f| f.down_seen.is_some()).count()
    }
    fn ups_seen(&self) -> usize {
        self.list.iter().filter(|f| f.up_seen.is_some()).count()
    }
    /// Transitions that never showed in `/monitoring`: a DOWN given up on (the port was
    /// brought back up without it), an UP of a flip done without it.
    fn missed(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (i, f) in self.list.iter().enumerate() {
            if f.up_at.is_some() && f.down_seen.is_none() {
                out.push(format!("{} DOWN (minute {})", f.key, f.minute));
            }
            if self.open.get(&f.key) != Some(&i) && f.up_seen.is_none() {
                out.push(format!("{} UP (minute {})", f.key, f.minute));
            }
        }
        out
    }
}

// ---------------------------------------------------------------------------- the samples

/// One process's figures at the end of a minute.
#[derive(Clone, Copy, Default)]
struct Sample {
    rss_kib: u64,
    hwm_kib: u64,
    fds: usize,
    threads: u64,
    cpu: f64,
}

fn sample(pid: u32) -> Sample {
    Sample {
        rss_kib: proc_stats::status_kib(pid, "VmRSS").unwrap_or(0),
        hwm_kib: proc_stats::status_kib(pid, "VmHWM").unwrap_or(0),
        fds: proc_stats::open_fds(pid).unwrap_or(0),
        threads: proc_stats::threads(pid).unwrap_or(0),
        cpu: proc_stats::cpu_seconds(pid).unwrap_or(0.0),
    }
}

/// `ok` and a text: every value after the baseline within ±FLAT of it (`digits` decimals).
fn flat(what: &str, values: &[f64], warmup: usize, unit: &str, digits: usize) -> (bool, String) {
    let base = values[warmup];
    let after = &values[warmup + 1..];
    let dev = |v: f64| if base > 0.0 { v / base - 1.0 } else if v == 0.0 { 0.0 } else { f64::INFINITY };
    let lo = after.iter().copied().map(dev).fold(0.0, f64::min);
    let hi = after.iter().copied().map(dev).fold(0.0, f64::max);
    let ok = base > 0.0 && lo >= -FLAT && hi <= FLAT;
    let text = format!(
        "{what} {base:.digits$}{unit} at minute {warmup}, then {:.digits$}..{:.digits$}{unit} ({:+.1} %..{:+.1} %): {}",
        after.iter().copied().fold(f64::INFINITY, f64::min),
        after.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        lo * 100.0,
        hi * 100.0,
        if ok { "flat" } else { "NOT flat" }
    );
    (ok, text)
}

// ----------------------------------------------------------------------------------- run

fn run(args: &Args) -> Result<bool, String> {
    let interval = Duration::from_secs(args.interval_s);
    let monitor_bin = support::sibling_binary("esi-monitor")?;
    let etcd = std::panic::catch_unwind(Etcd::start).map_err(|p| format!("etcd: {}", panic_text(p)))?;
    let store = etcd.store();

    let t = Instant::now();
    let (agents, failures) = poll_agents::start(args.agents, args.ports, COMMUNITY, START_PARALLEL);
    if agents.list.is_empty() {
        return Err(format!("no agent came up: {}", failures.first().map_or("?", String::as_str)));
    }
    if !failures.is_empty() {
        println!(
            "soak: only {} of {} agents came up; going on with those ({} failed, first: {})",
            agents.list.len(),
            args.agents,
            failures.len(),
            failures[0]
        );
    }
    println!(
        "soak: {} agents x {} ports up in {:.1} s on UDP port {} ({:.0} MiB RSS for all snmpd + scripts)",
        agents.list.len(),
        args.ports,
        t.elapsed().as_secs_f64(),
        agents.port,
        mib(agents.rss_kib())
    );
    interrupt::check()?;
    let sim = (args.vmis > 0).then(ContrailSim::start);
    if let Some(sim) = &sim {
        for j in 0..args.vmis {
            sim.set_l2_active(&vmi_fq_name(j), true);
        }
    }
    let resources = poll_resources::resources(&agents, args.ports, args.vmis, COMMUNITY);
    let total = resources.len();
    poll_resources::register(&store, &resources)?;

    let (_, rev) = store.range("/monitoring/").map_err(|e| e.to_string())?;
    let watch = store.watch("/monitoring/", rev + 1).map_err(|e| e.to_string())?;
    let analytics = sim.as_ref().map_or_else(|| "http://127.0.0.1:9".to_string(), ContrailSim::url);
    let config = format!(
        "etcd: {{endpoints: [\"{}\"], lease_ttl_s: {}}}\n\
         worker: {{threads: {}}}\n\
         contrail: {{analytics_url: \"{analytics}\"}}\n\
         snmp: {{port: {}, timeout_ms: {SNMP_TIMEOUT_MS}, retries: {SNMP_RETRIES}}}\n\
         monitoring: {{interval_s: {}, down_after: {DOWN_AFTER}}}\n\
         log: {{level: {}}}\n",
        etcd.endpoint, args.lease_ttl_s, args.threads, agents.port, args.interval_s, args.log_level
    );
    let mut fleet = Instances::start(&monitor_bin, &config, args.instances, store.clone())?;
    let mut flips =
        Flips { list: Vec::new(), open: HashMap::new(), records: Records::default(), unexpected: 0, examples: Vec::new(), cursor: 0 };
    let first_limit = Duration::from_secs(60) + interval * 4 + Duration::from_millis(5 * total as u64);
    let first = flips.records.wait_first(&watch, total, first_limit, &mut fleet)?;
    let settle_limit = Duration::from_secs(60) + Duration::from_secs(4 * args.lease_ttl_s) + interval * 2;
    fleet.wait_settled(settle_limit)?;
    println!(
        "soak: {total} objects ({} ports, {} VMIs) registered; all have a record {:.1} s after {} esi-monitor instance{} started; {} minutes, interval {} s, down_after {DOWN_AFTER}, lease TTL {} s, {} port flips{} per minute",
        agents.list.len() * args.ports,
        args.vmis,
        first.as_secs_f64(),
        args.instances,
        if args.instances == 1 { "" } else { "s" },
        args.minutes,
        args.interval_s,
        args.lease_ttl_s,
        args.flips.min(agents.list.len()),
        if args.vmis > 0 { format!(" + {} VMI flips", args.vmi_flips.min(args.vmis)) } else { String::new() }
    );

    // ------------------------------------------------------------------------- the minutes
    // The longest a flip's DOWN (down_after polls) or UP (one poll) is waited for.
    let give_up = interval * (DOWN_AFTER + 2) + Duration::from_secs(2);
    let pids = fleet.pids();
    let mut samples: Vec<Vec<Sample>> = vec![pids.iter().map(|&p| sample(p)).collect()];
    let t0 = Instant::now();
    let (mut next_flips, mut next_sample) = (0usize, 1usize);
    let mut last_check = Instant::now();
    let events0 = flips.records.events;
    while next_sample <= args.minutes {
        interrupt::check()?;
        if last_check.elapsed() > Duration::from_millis(500) {
            last_check = Instant::now();
            fleet.check_running()?;
        }
        let flips_due = t0 + MINUTE * next_flips as u32 + FLIP_OFFSET;
        if next_flips < args.minutes && Instant::now() >= flips_due {
            let vmi_flips = if args.vmis > 0 { args.vmi_flips } else { 0 };
            flips.start_minute(next_flips + 1, (args.flips, vmi_flips), args, &agents, sim.as_ref());
            next_flips += 1;
        }
        flips.advance(give_up, &agents, sim.as_ref());
        let sample_due = t0 + MINUTE * next_sample as u32;
        if Instant::now() >= sample_due {
            let now: Vec<Sample> = pids.iter().map(|&p| sample(p)).collect();
            let prev = samples.last().cloned().unwrap_or_default();
            let join = |f: &dyn Fn(&Sample) -> String| now.iter().map(f).collect::<Vec<_>>().join("/");
            let cpu: Vec<String> = now.iter().zip(&prev).map(|(n, p)| format!("{:.2}", n.cpu - p.cpu)).collect();
            println!(
                "soak: minute {next_sample:>3}/{}: RSS {} MiB (peak {}), {} fds, {} threads, {} CPU-s in the minute | flips {} made, {} DOWN and {} UP seen, {} open, {} missed | {} record changes, {} unexpected",
                args.minutes,
                join(&|s| format!("{:.1}", mib(s.rss_kib))),
                join(&|s| format!("{:.1}", mib(s.hwm_kib))),
                join(&|s| s.fds.to_string()),
                join(&|s| s.threads.to_string()),
                cpu.join("/"),
                flips.made(),
                flips.downs_seen(),
                flips.ups_seen(),
                flips.open.len(),
                flips.missed().len(),
                flips.records.events - events0,
                flips.unexpected
            );
            samples.push(now);
            next_sample += 1;
            continue;
        }
        let next = sample_due.min(if next_flips < args.minutes { flips_due } else { sample_due });
        let wait = next.saturating_duration_since(Instant::now()).min(Duration::from_millis(200));
        if let Ok(ev) = watch.events.recv_timeout(wait) {
            flips.take(ev)?;
            while let Ok(ev) = watch.events.try_recv() {
                flips.take(ev)?;
            }
        }
    }
    // The last flips settle (bounded), still watched.
    let deadline = Instant::now() + give_up * 2 + Duration::from_secs(5);
    while !flips.open.is_empty() && Instant::now() < deadline {
        interrupt::check()?;
        flips.advance(give_up, &agents, sim.as_ref());
        if let Ok(ev) = watch.events.recv_timeout(Duration::from_millis(100)) {
            flips.take(ev)?;
        }
    }
    fleet.check_running()?;
    if let Some(path) = &args.keep_log {
        for m in &fleet.list {
            let to = if fleet.list.len() == 1 { path.clone() } else { format!("{}.{}", path.display(), m.number).into() };
            if let Err(e) = std::fs::copy(&m.proc.log, &to) {
                println!("soak: cannot copy esi-monitor's log to {}: {e}", to.display());
            }
        }
    }

    // ------------------------------------------------------------------------- the verdict
    let mut ok = true;
    println!();
    println!(
        "soak: {} minutes ({:.1} min of wall time), {total} objects, {} esi-monitor instance{}, interval {} s",
        args.minutes,
        t0.elapsed().as_secs_f64() / 60.0,
        args.instances,
        if args.instances == 1 { "" } else { "s" },
        args.interval_s
    );
    for (i, m) in fleet.list.iter().enumerate() {
        let rss: Vec<f64> = samples.iter().map(|s| mib(s[i].rss_kib)).collect();
        let fds: Vec<f64> = samples.iter().map(|s| s[i].fds as f64).collect();
        let name = if fleet.list.len() == 1 { "esi-monitor".to_string() } else { format!("instance {}", m.number) };
        if args.minutes > args.warmup {
            let (rss_ok, rss_text) = flat("RSS", &rss, args.warmup, " MiB", 1);
            let (fds_ok, fds_text) = flat("open fds", &fds, args.warmup, "", 0);
            ok &= rss_ok && fds_ok;
            println!("  {name:<14}: {rss_text}; {fds_text}");
        } else {
            println!(
                "  {name:<14}: RSS {:.1} → {:.1} MiB, open fds {} → {}: not judged (the run is not longer than the {}-minute warm-up; --minutes > --warmup-minutes)",
                rss[1.min(rss.len() - 1)],
                rss[rss.len() - 1],
                fds[1.min(fds.len() - 1)],
                fds[fds.len() - 1],
                args.warmup
            );
        }
        println!(
            "                  peak RSS {:.1} MiB (VmHWM), {:.2} CPU-s over the minutes",
            mib(samples.last().map_or(0, |s| s[i].hwm_kib)),
            samples.last().map_or(0.0, |s| s[i].cpu) - samples[0][i].cpu
        );
    }
    let missed = flips.missed();
    let open: Vec<&String> = flips.open.keys().collect();
    let flips_ok = missed.is_empty() && open.is_empty() && flips.made() > 0;
    ok &= flips_ok;
    println!(
        "  flips         : {} made, {} DOWN and {} UP seen in /monitoring; {} missed{}; {} never settled{}: {}",
        flips.made(),
        flips.downs_seen(),
        flips.ups_seen(),
        missed.len(),
        if missed.is_empty() { String::new() } else { format!(" ({})", missed.iter().take(5).cloned().collect::<Vec<_>>().join(", ")) },
        open.len(),
        if open.is_empty() { String::new() } else { format!(" ({})", open.iter().take(5).map(|s| s.as_str()).collect::<Vec<_>>().join(", ")) },
        if flips_ok { "every flip reached etcd" } else { "NOT every flip reached etcd" }
    );
    println!(
        "  records       : {} /monitoring changes, {} not from a flip{}",
        flips.records.events - events0,
        flips.unexpected,
        if flips.examples.is_empty() { String::new() } else { format!(" ({})", flips.examples.join("; ")) }
    );
    let judged = args.minutes > args.warmup;
    println!(
        "  verdict       : {}",
        match (ok, judged) {
            (true, true) => "passed",
            (true, false) => "passed (every flip reached etcd; RSS and descriptors not judged)",
            (false, _) => "FAILED",
        }
    );
    drop(fleet);
    drop(watch);
    drop(sim);
    drop(agents);
    drop(etcd);
    Ok(ok)
}
