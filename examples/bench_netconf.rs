//! `make bench-netconf`: esi-monitor's continuous monitoring (SPEC §5) of NETCONF objects at
//! scale — VRRP groups and BGP peers on Junos-like devices behind real OpenSSH servers: how
//! many object results it produces per CPU-second, how many RPCs and SSH handshakes the
//! devices see per interval (the goal: one RPC per device per type per interval, no
//! handshake after the first), how long a state change on a device takes to reach
//! `/monitoring` in etcd, its peak memory; and, as the ratio, the same objects polled the
//! original's way (a session and an RPC per object). A benchmark, not a test: it prints
//! figures and fails only when something does not work at all (a goal missed is reported,
//! not fatal).
//!
//! All on loopback, every process stopped at the end by a drop guard, also on error:
//!
//! 1. A throwaway etcd (tests/support/etcd.rs); N devices (default 50, `--devices`), each a
//!    real OpenSSH sshd with the tests' Junos-like NETCONF responder as its `netconf`
//!    subsystem (tests/support/sshd.rs, a python agent per session) on 127.2.X.Y, one
//!    password login, G VRRP groups on ae0.1025 (default 20, `--groups`; groups 1..=G,
//!    master) and one routing instance with P BGP peers (default 10, `--peers`;
//!    Established). Started 8 at a time; if some do not come up, the run goes on with those
//!    that did and says so.
//! 2. The registry is written directly (no jobs), in `Store::txns` batches: per device one
//!    `common_function_gateways/gw-NNNN` resource holding its G `vrrp_session` objects
//!    (wanted_status master) and one `vpn_interfaces/vpn-NNNN` holding its P `bgp_session`
//!    objects — so esi-monitor has to coalesce by session (VRRP) and by session and
//!    routing instance (BGP) to reach one RPC per device and type.
//! 3. The release `esi-monitor run` starts with `monitoring: {interval_s, down_after: 2}`,
//!    `netconf: {timeout_ms: 5000}`, a metrics listener and 8 worker threads. A watch on
//!    `/monitoring/` (opened before the start) waits until every resource has its first
//!    record (bounded).
//! 4. The measured window: `--intervals` intervals (default 10 × 5 s). VRRP groups
//!    (`--vrrp-flips`, default 20, master → backup) and BGP peers (`--bgp-flips`, default 10,
//!    Established → Active), on distinct devices while there are enough, change at
//!    instants spread over the window and change back 2 intervals + 2 s later (or once their
//!    changed record was seen, if later). From the watch: the delay from each change to its
//!    record change, "away" from the wanted state (needs `down_after` = 2 readings) and
//!    "back" to it (1 reading). Any other record change is counted as unexpected.
//! 5. Once every flip has settled (bounded), esi-monitor is stopped, then the original's
//!    way: the objects of `--original-devices` devices (default 5, spread over all; 0 = skip)
//!    are polled one at a time, each with a fresh `esi_monitor::plugins::Clients` (so a
//!    fresh NETCONF pool: TCP connect, SSH handshake, password login, hello) and one RPC for
//!    that object alone (the prober's `unit` + `poll`, as the pool calls them), from this
//!    process, one thread; the session is dropped with its `Clients`.
//!
//! Figures: results = the window's delta of `esi_monitor_probe_results_total` for
//! `netconf_vrrp` and `netconf_bgp` (cross-check: objects × intervals); esi-monitor's
//! CPU-seconds (utime + stime, /proc/<pid>/stat) over the window → results per CPU-second;
//! peak RSS (VmHWM); RPCs per interval = the window's delta of the agents' `rpc
//! get-vrrp-information` / `rpc get-bgp-summary-information` events ÷ intervals, against
//! the goal (one per device; a device whose object is being confirmed is asked again
//! sooner, so flipped devices get a few more); SSH handshakes = the agents' `session` events
//! (and `netconf_session_opens_total`) before the window (goal: one per device) and in it
//! (goal: 0); the devices' own CPU (every process of each sshd's pid namespace, from
//! schedstat, plus the children they reaped). The original's way: this thread's CPU (getrusage RUSAGE_THREAD) per
//! object → results per CPU-second, the ratio of esi-monitor's to it, the wall time per
//! object, and the devices' CPU per result both ways.

mod support;

#[path = "support/netconf_devices.rs"]
mod netconf_devices;
#[path = "../tests/support/sshd.rs"]
mod sshd;

use esi_monitor::plugins::{Clients, Object, Probe};
use esi_monitor::store::{Op, Store, Txn, WatchEvent};
use netconf_devices::{Counts, Devices, INTERFACE, PASSWORD, USER};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};
use support::etcd::Etcd;
use support::figures::{delays_text, met, mib, quantile, revision};
use support::metrics::Samples;
use support::panics::panic_text;
use support::proc_stats;
use support::process::Proc;

const USAGE: &str = "usage: bench_netconf [--devices N] [--groups N] [--peers N] [--interval-s S] [--intervals N]
                     [--threads N] [--vrrp-flips N] [--bgp-flips N] [--original-devices N]
  --devices N           NETCONF devices (sshd + python agent) on 127.2.0.1 ... (default 50)
  --groups N            VRRP groups per device, each a registered vrrp_session (default 20)
  --peers N             BGP peers per device, each a registered bgp_session (default 10)
  --interval-s S        monitoring.interval_s (default 5)
  --intervals N         measured intervals (default 10; at least 5)
  --threads N           esi-monitor worker.threads (default 8)
  --vrrp-flips N        VRRP groups turned backup and master again during the window (default 20)
  --bgp-flips N         BGP peers turned Active and Established again during the window (default 10)
  --original-devices N  devices whose objects are polled the original's way afterwards (default 5; 0: skip)
  --log-level L         esi-monitor's log.level (default info)
  --keep-log PATH       copy esi-monitor's log to PATH at the end
BENCH_NETCONF_TRACE=1 prints every flip and every /monitoring change of the window to stderr.";

const DOWN_AFTER: u32 = 2;
const TIMEOUT_MS: u64 = 5000;
/// Devices started at the same time (each start runs ssh-keygen, openssl and unshare).
const START_PARALLEL: usize = 8;
/// Registry entries per `Store::txns` call.
const WRITE_BATCH: usize = 256;
const GW_PLURAL: &str = "common_function_gateways";
const VPN_PLURAL: &str = "vpn_interfaces";

struct Args {
    devices: usize,
    groups: usize,
    peers: usize,
    interval_s: u64,
    intervals: usize,
    threads: usize,
    vrrp_flips: usize,
    bgp_flips: usize,
    original_devices: usize,
    log_level: String,
    keep_log: Option<std::path::PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        devices: 50,
        groups: 20,
        peers: 10,
        interval_s: 5,
        intervals: 10,
        threads: 8,
        vrrp_flips: 20,
        bgp_flips: 10,
        original_devices: 5,
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
        let positive = |n: usize| if n == 0 { Err(format!("{flag} must be at least 1")) } else { Ok(n) };
        match flag.as_str() {
            "--devices" => a.devices = positive(n)?.min(10_000),
            "--groups" => a.groups = positive(n)?.min(4000),
            "--peers" => a.peers = positive(n)?.min(2000),
            "--interval-s" => a.interval_s = positive(n)? as u64,
            "--intervals" => a.intervals = n,
            "--threads" => a.threads = positive(n)?,
            "--vrrp-flips" => a.vrrp_flips = n,
            "--bgp-flips" => a.bgp_flips = n,
            "--original-devices" => a.original_devices = n,
            _ => return Err(format!("unknown argument {flag}\n{USAGE}")),
        }
    }
    if a.intervals < 5 {
        return Err(format!(
            "--intervals must be at least 5 (a flip needs 2 intervals to show and 1 to come back)\n{USAGE}"
        ));
    }
    Ok(a)
}

fn main() -> ExitCode {
    match parse_args().and_then(|args| run(&args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-netconf FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

// ------------------------------------------------------------------------- the resources

fn gw_id(index: usize) -> String {
    format!("gw-{index:04}")
}

fn vpn_id(index: usize) -> String {
    format!("vpn-{index:04}")
}

fn vrrp_name(group: usize) -> String {
    format!("g{group}")
}

fn bgp_name(k: usize) -> String {
    format!("p{}", k + 1)
}

fn vrrp_props(d: &netconf_devices::Device, group: usize) -> Value {
    json!({"type": "vrrp_session", "host": d.sshd.addr(), "port": d.sshd.port(), "login": USER, "password": PASSWORD,
           "interface": INTERFACE, "vrid": group, "wanted_status": "master"})
}

fn bgp_props(d: &netconf_devices::Device, k: usize) -> Value {
    json!({"type": "bgp_session", "host": d.sshd.addr(), "port": d.sshd.port(), "login": USER, "password": PASSWORD,
           "instance": netconf_devices::instance(d.index), "peer_address": netconf_devices::peer(k)})
}

/// Per device: its VRRP resource and its BGP resource, as (registry key, entry) pairs.
fn registry_entries(devices: &Devices, groups: usize, peers: usize) -> Vec<(String, String)> {
    let mut out = Vec::with_capacity(devices.list.len() * 2);
    for d in &devices.list {
        let vrrp: Map<String, Value> = (1..=groups).map(|g| (vrrp_name(g), vrrp_props(d, g))).collect();
        let bgp: Map<String, Value> = (0..peers).map(|k| (bgp_name(k), bgp_props(d, k))).collect();
        for (plural, id, objects) in [(GW_PLURAL, gw_id(d.index), vrrp), (VPN_PLURAL, vpn_id(d.index), bgp)] {
            let entry = json!({"resource_type": plural.trim_end_matches('s'), "resource_id": id, "version": 1,
                               "tenant_id": "bench-tenant", "objects": objects});
            out.push((esi_monitor::keys::registry(plural, &id), entry.to_string()));
        }
    }
    out
}

fn register(store: &Store, entries: &[(String, String)]) -> Result<(), String> {
    for chunk in entries.chunks(WRITE_BATCH) {
        let txns: Vec<Txn> =
            chunk.iter().map(|(k, v)| Txn { when: Vec::new(), then: vec![Op::put(k.clone(), v.clone())] }).collect();
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

#[derive(Debug, Clone, Copy)]
enum Target {
    /// Device (position in the list), VRRP group.
    Vrrp(usize, usize),
    /// Device (position in the list), BGP peer (0-based).
    Bgp(usize, usize),
}

struct Flip {
    target: Target,
    monitoring_key: String,
    object: String,
    /// The record's status while changed (BACKUP, ACTIVE) and the wanted one.
    away: &'static str,
    wanted: &'static str,
    away_plan: Instant,
    away_at: Option<Instant>,
    away_seen: Option<Instant>,
    back_plan: Instant,
    back_at: Option<Instant>,
    back_seen: Option<Instant>,
}

impl Flip {
    fn settled(&self, now: Instant, give_up: Duration) -> bool {
        match (self.away_at, self.back_at) {
            (Some(_), Some(back)) => self.back_seen.is_some() || now >= back + give_up,
            _ => false,
        }
    }
}

/// When flips happen: away instants spread over [t0 + lead, t0 + last_away], each held for
/// `hold`.
struct FlipTiming {
    t0: Instant,
    lead: Duration,
    last_away: Duration,
    hold: Duration,
}

/// The flips: VRRP and BGP interleaved, each on its own device while there are enough.
fn plan_flips(devices: &Devices, args: &Args, timing: FlipTiming) -> Vec<Flip> {
    let FlipTiming { t0, lead, last_away, hold } = timing;
    let n = devices.list.len();
    let vrrp_flips = args.vrrp_flips.min(n * args.groups);
    let bgp_flips = args.bgp_flips.min(n * args.peers);
    let total = vrrp_flips + bgp_flips;
    let (mut v, mut b) = (0, 0);
    let mut flips = Vec::with_capacity(total);
    let span = last_away.saturating_sub(lead);
    for i in 0..total {
        // Distinct devices spread over all while flips ≤ devices, then round again.
        let dev = if total <= n { i * n / total } else { i % n };
        let index = devices.list[dev].index;
        let take_vrrp = b >= bgp_flips || (v < vrrp_flips && v * bgp_flips.max(1) <= b * vrrp_flips.max(1));
        let (target, monitoring_key, object, away, wanted) = if take_vrrp {
            let group = (v * 7 + i / n) % args.groups + 1;
            v += 1;
            let key = esi_monitor::keys::monitoring(GW_PLURAL, &gw_id(index));
            (Target::Vrrp(dev, group), key, vrrp_name(group), "BACKUP", "MASTER")
        } else {
            let k = (b * 3 + i / n) % args.peers;
            b += 1;
            let key = esi_monitor::keys::monitoring(VPN_PLURAL, &vpn_id(index));
            (Target::Bgp(dev, k), key, bgp_name(k), "ACTIVE", "ESTABLISHED")
        };
        let away_plan = t0 + lead + span.mul_f64(i as f64 / total.max(1) as f64);
        flips.push(Flip {
            target,
            monitoring_key,
            object,
            away,
            wanted,
            away_plan,
            away_at: None,
            away_seen: None,
            back_plan: away_plan + hold,
            back_at: None,
            back_seen: None,
        });
    }
    flips
}

fn trace_on() -> bool {
    std::env::var_os("BENCH_NETCONF_TRACE").is_some()
}

fn trace(what: std::fmt::Arguments) {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    eprintln!("trace {:.3} {what}", t.as_secs_f64() % 3600.0);
}

/// Changes a flip's target away from its wanted state or back; the instant after which
/// every answer reflects it (the state file is replaced before this returns).
fn set(target: Target, away: bool, devices: &Devices) -> Instant {
    if trace_on() {
        trace(format_args!("set {target:?} {}", if away { "away" } else { "back" }));
    }
    match target {
        Target::Vrrp(dev, group) => {
            devices.list[dev].sshd.set_vrrp_state(INTERFACE, group as u32, if away { "backup" } else { "master" })
        }
        Target::Bgp(dev, k) => {
            let d = &devices.list[dev];
            let state = if away { "Active" } else { "Established" };
            d.sshd.set_peer_state(&netconf_devices::instance(d.index), &netconf_devices::peer(k), state)
        }
    }
    Instant::now()
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
    /// Key → object → status.
    records: HashMap<String, BTreeMap<String, String>>,
    flips: Vec<Flip>,
    /// (monitoring key, object) → flip.
    by_object: HashMap<(String, String), usize>,
    unexpected: Unexpected,
    events: u64,
}

impl Seen {
    /// Takes one watch event, seen at `now`; with `measuring`, a change nobody made is
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
        if measuring && trace_on() {
            trace(format_args!("seen {} {value}", kv.key));
        }
        let statuses: BTreeMap<String, String> = value
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, _)| k.as_str() != "version")
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("?").to_string()))
            .collect();
        let previous = self.records.insert(kv.key.clone(), statuses.clone()).unwrap_or_default();
        if !measuring {
            return Ok(());
        }
        let mut changed = 0;
        for (object, status) in &statuses {
            if previous.get(object) == Some(status) {
                continue;
            }
            changed += 1;
            let flip = self.by_object.get(&(kv.key.clone(), object.clone())).map(|&i| &mut self.flips[i]);
            match flip {
                Some(f) if status == f.away && f.away_at.is_some() && f.away_seen.is_none() && f.back_at.is_none() => {
                    f.away_seen = Some(now);
                }
                Some(f) if status == f.wanted && f.back_at.is_some() && f.back_seen.is_none() => {
                    f.back_seen = Some(now)
                }
                _ => self.unexpected.note(format!(
                    "{} {object}: {} → {status}",
                    kv.key,
                    previous.get(object).map_or("(none)", String::as_str)
                )),
            }
        }
        if changed == 0 {
            self.unexpected.note(format!("{} rewritten without a change", kv.key));
        }
        Ok(())
    }

    /// Objects whose status in the records is not `wanted` (MASTER for VRRP, ESTABLISHED).
    fn not_wanted(&self) -> usize {
        self.records
            .iter()
            .flat_map(|(key, objects)| {
                let wanted = if key.contains(GW_PLURAL) { "MASTER" } else { "ESTABLISHED" };
                objects.values().filter(move |s| *s != wanted)
            })
            .count()
    }
}

// ---------------------------------------------------------------------- the original way

#[repr(C)]
struct Timeval {
    sec: std::os::raw::c_long,
    usec: std::os::raw::c_long,
}

#[repr(C)]
struct Rusage {
    utime: Timeval,
    stime: Timeval,
    rest: [std::os::raw::c_long; 14],
}

extern "C" {
    fn getrusage(who: std::os::raw::c_int, usage: *mut Rusage) -> std::os::raw::c_int;
}

/// user + system CPU-seconds of the calling thread (getrusage RUSAGE_THREAD).
fn thread_cpu_seconds() -> f64 {
    const RUSAGE_THREAD: std::os::raw::c_int = 1;
    let mut u = Rusage { utime: Timeval { sec: 0, usec: 0 }, stime: Timeval { sec: 0, usec: 0 }, rest: [0; 14] };
    // SAFETY: `u` is a valid, writable struct rusage of the Linux ABI.
    if unsafe { getrusage(RUSAGE_THREAD, &mut u) } != 0 {
        return 0.0;
    }
    let s = |t: &Timeval| t.sec as f64 + t.usec as f64 / 1e6;
    s(&u.utime) + s(&u.stime)
}

/// What the original's way cost.
struct OriginalRun {
    devices: usize,
    objects: usize,
    right: usize,
    wrong: Vec<String>,
    wrong_count: usize,
    /// This thread's CPU for all of it, and for the `Clients::new` calls alone.
    cpu: f64,
    clients_cpu: f64,
    wall: Duration,
    walls: Vec<f64>,
    device_cpu: f64,
    sessions: usize,
    rpcs: usize,
}

/// Waits (at most `limit`) until each device has no process left but its sshd (so what the
/// sessions used is counted in sshd's reaped-children time).
fn wait_idle(devices: &[&netconf_devices::Device], limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if devices.iter().all(|d| d.sshd.pids().len() <= 1) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls every object of `sample` one at a time: a fresh `Clients` (a fresh NETCONF pool,
/// so a new SSH session) and one RPC per object; on this thread.
fn original_way(devices: &Devices, sample: &[usize], args: &Args) -> Result<OriginalRun, String> {
    let mut config = esi_monitor::config::Config::default();
    config.netconf.timeout_ms = TIMEOUT_MS;
    config.monitoring.interval_s = args.interval_s;
    let chosen: Vec<&netconf_devices::Device> = sample.iter().map(|&i| &devices.list[i]).collect();
    // Each object with the status its device serves now (upper-cased, as the prober reads it).
    let mut objects: Vec<(Object, String)> = Vec::new();
    for d in &chosen {
        let state = d.sshd.state();
        for g in 1..=args.groups {
            let props = vrrp_props(d, g);
            let want = state.vrrp.iter().find(|v| v.group == g as u32).map_or("?".into(), |v| v.state.to_uppercase());
            objects.push((Object::check(&vrrp_name(g), props.as_object().ok_or("props")?)?, want));
        }
        let peers = state.bgp.get(&netconf_devices::instance(d.index)).cloned().unwrap_or_default();
        for k in 0..args.peers {
            let props = bgp_props(d, k);
            let peer = netconf_devices::peer(k);
            let want = peers.iter().find(|p| p.peer == peer).map_or("?".into(), |p| p.state.to_uppercase());
            objects.push((Object::check(&bgp_name(k), props.as_object().ok_or("props")?)?, want));
        }
    }
    let counts0: Vec<Counts> = chosen.iter().map(|d| d.counts()).collect();
    let device_cpu0: f64 = chosen.iter().map(|d| d.cpu_seconds()).sum();
    let mut run = OriginalRun {
        devices: chosen.len(),
        objects: objects.len(),
        right: 0,
        wrong: Vec::new(),
        wrong_count: 0,
        cpu: 0.0,
        clients_cpu: 0.0,
        wall: Duration::ZERO,
        walls: Vec::new(),
        device_cpu: 0.0,
        sessions: 0,
        rpcs: 0,
    };
    let cpu0 = thread_cpu_seconds();
    let started = Instant::now();
    for (o, want) in &objects {
        let t = Instant::now();
        let c0 = thread_cpu_seconds();
        let clients = Clients::new(&config, None)?;
        run.clients_cpu += thread_cpu_seconds() - c0;
        let prober = o.kind.prober.ok_or_else(|| format!("{} has no prober", o.kind.name))?;
        let unit = prober.unit.ok_or_else(|| format!("{} is not polled", o.kind.name))?;
        let probe = match unit(o, &clients) {
            Ok((key, ask)) => (prober.poll)(&clients, &key, &[ask]).pop(),
            Err(why) => Some(Probe::NoAnswer(why)),
        };
        drop(clients);
        run.walls.push(t.elapsed().as_secs_f64());
        match probe {
            Some(Probe::State(s)) if s == *want => run.right += 1,
            other => {
                run.wrong_count += 1;
                if run.wrong.len() < 3 {
                    run.wrong.push(format!("{} {}: {other:?}, not {want}", o.text("host"), o.name));
                }
            }
        }
    }
    run.cpu = thread_cpu_seconds() - cpu0;
    run.wall = started.elapsed();
    if !wait_idle(&chosen, Duration::from_secs(10)) {
        println!("bench-netconf: NOTE: some sessions of the original's way were still open 10 s later");
    }
    run.device_cpu = chosen.iter().map(|d| d.cpu_seconds()).sum::<f64>() - device_cpu0;
    for (d, c0) in chosen.iter().zip(&counts0) {
        let c = d.counts();
        run.sessions += c.sessions - c0.sessions;
        run.rpcs += (c.vrrp_rpcs - c0.vrrp_rpcs) + (c.bgp_rpcs - c0.bgp_rpcs);
    }
    Ok(run)
}

// ------------------------------------------------------------------------------- helpers

/// The `p` quantile (nearest rank) of `xs`.
/// min / mean / max of per-device figures.
fn spread_text(xs: &[f64]) -> String {
    if xs.is_empty() {
        return "none".into();
    }
    let mean = xs.iter().sum::<f64>() / xs.len() as f64;
    format!("min {:.2}, mean {mean:.2}, max {:.2}", quantile(xs, 0.0), quantile(xs, 1.0))
}

/// The first line `program arg` prints (stdout or stderr) that contains `marker`.
fn version_line(program: &str, arg: &str, marker: &str) -> String {
    Command::new(program)
        .arg(arg)
        .stdin(Stdio::null())
        .output()
        .ok()
        .and_then(|o| {
            let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
            let line = text.lines().find(|l| l.contains(marker))?;
            Some(line.split([',', ' ']).find(|w| w.contains(marker))?.trim().to_string())
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
    let run_started = Instant::now();
    let interval = Duration::from_secs(args.interval_s);
    let monitor_bin = support::sibling_binary("esi-monitor")?;

    let etcd = std::panic::catch_unwind(Etcd::start).map_err(|p| format!("etcd: {}", panic_text(p)))?;
    let store = etcd.store();

    let t = Instant::now();
    let (devices, failures) = netconf_devices::start(args.devices, args.groups, args.peers, START_PARALLEL);
    let devices_up_s = t.elapsed().as_secs_f64();
    if !failures.is_empty() {
        println!(
            "bench-netconf: only {} of {} devices came up on this machine; going on with those ({} failed, first: {})",
            devices.list.len(),
            args.devices,
            failures.len(),
            failures[0]
        );
    }
    if devices.list.is_empty() {
        return Err(format!("no device came up: {}", failures.first().map_or("?", String::as_str)));
    }
    let n = devices.list.len();
    let (procs0, rss0) = devices.processes();
    println!(
        "bench-netconf: {n} devices x ({} VRRP groups + {} BGP peers) up in {devices_up_s:.1} s ({procs0} sshd, {:.0} MiB RSS)",
        args.groups,
        args.peers,
        mib(rss0)
    );

    let entries = registry_entries(&devices, args.groups, args.peers);
    let resources = entries.len();
    let objects = n * (args.groups + args.peers);
    let t = Instant::now();
    register(&store, &entries)?;
    let register_s = t.elapsed().as_secs_f64();

    // The watch on /monitoring/, opened before esi-monitor starts.
    let (_, rev) = store.range("/monitoring/").map_err(|e| e.to_string())?;
    let watch = store.watch("/monitoring/", rev + 1).map_err(|e| e.to_string())?;
    let listen = format!("127.0.0.1:{}", support::free_port());
    let config = format!(
        "etcd: {{endpoints: [\"{}\"]}}\n\
         worker: {{threads: {}}}\n\
         netconf: {{timeout_ms: {TIMEOUT_MS}}}\n\
         monitoring: {{interval_s: {}, down_after: {DOWN_AFTER}}}\n\
         log: {{level: {}}}\n\
         metrics: {{listen: \"{listen}\"}}\n",
        etcd.endpoint, args.threads, args.interval_s, args.log_level
    );
    let mut monitor = Proc::esi_monitor(&monitor_bin, &config)?;
    let pid = monitor.pid();
    let started = Instant::now();

    // Every resource's first record (bounded: the first poll of everything, plus margin).
    let mut seen = Seen {
        records: HashMap::new(),
        flips: Vec::new(),
        by_object: HashMap::new(),
        unexpected: Unexpected::default(),
        events: 0,
    };
    let first_limit = Duration::from_secs(60) + interval * 4 + Duration::from_millis(200 * n as u64);
    let mut last_check = Instant::now();
    while seen.records.len() < resources {
        if started.elapsed() > first_limit {
            return Err(format!(
                "only {} of {resources} resources had a /monitoring record after {first_limit:?}; esi-monitor log: {}",
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
    let first_not_wanted = seen.not_wanted();
    let startup_cpu = proc_stats::cpu_seconds(pid).unwrap_or(0.0);
    let startup_rss = proc_stats::status_kib(pid, "VmHWM").unwrap_or(0);
    let startup_threads = proc_stats::cpu_by_thread(pid);
    println!(
        "bench-netconf: {resources} resources ({objects} objects) registered in {register_s:.1} s; all have their first /monitoring record {first_s:.1} s after esi-monitor started ({first_not_wanted} objects not in their wanted state); startup took {startup_cpu:.2} CPU-s ({}), VmHWM {:.1} MiB",
        proc_stats::cpu_by_thread_text(&BTreeMap::new(), &startup_threads),
        mib(startup_rss)
    );

    // ------------------------------------------------------------------ the measured window
    let window = interval * args.intervals as u32;
    let hold = interval * DOWN_AFTER + Duration::from_secs(2);
    let lead = Duration::from_millis(500);
    // The last change leaves time for its record (≤ down_after intervals), the hold, and back.
    let last_away = window.saturating_sub(hold + interval + Duration::from_secs(2));
    let m0 = Samples::scrape(&listen)?;
    let counts0 = devices.counts();
    let cpu0 = proc_stats::cpu_seconds(pid).unwrap_or(0.0);
    let threads0 = proc_stats::cpu_by_thread(pid);
    let device_cpu0 = devices.cpu_seconds();
    let self_cpu0 = proc_stats::cpu_seconds(std::process::id()).unwrap_or(0.0);
    let rev0 = revision(&store)?;
    let events0 = seen.events;
    let t0 = Instant::now();
    seen.flips = plan_flips(&devices, args, FlipTiming { t0, lead, last_away, hold });
    seen.by_object =
        seen.flips.iter().enumerate().map(|(i, f)| ((f.monitoring_key.clone(), f.object.clone()), i)).collect();
    // The longest a flip's record is waited for before it counts as missed.
    let give_up = interval * (DOWN_AFTER + 2);

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
            if f.away_at.is_none() {
                if now >= f.away_plan {
                    f.away_at = Some(set(f.target, true, &devices));
                } else {
                    next = next.min(f.away_plan);
                }
            } else if f.back_at.is_none() {
                let away_at = f.away_at.unwrap_or(now);
                // Back once held long enough and its changed record was seen (or given up on).
                let ready = f.away_seen.is_some() || now >= away_at + give_up;
                if now >= f.back_plan && ready {
                    f.back_at = Some(set(f.target, false, &devices));
                } else if now >= f.back_plan {
                    next = next.min(now + Duration::from_millis(20));
                } else {
                    next = next.min(f.back_plan);
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
    let window_end = Instant::now();
    let cpu1 = proc_stats::cpu_seconds(pid).unwrap_or(cpu0);
    let threads1 = proc_stats::cpu_by_thread(pid);
    let device_cpu1 = devices.cpu_seconds();
    let self_cpu1 = proc_stats::cpu_seconds(std::process::id()).unwrap_or(self_cpu0);
    let counts1 = devices.counts();
    let m1 = Samples::scrape(&listen)?;
    let rev1 = revision(&store)?;
    let wall = window_end.duration_since(t0).as_secs_f64();

    // Let every flip settle (bounded), still watching.
    let settle_deadline = Instant::now() + give_up + interval;
    while !seen.flips.iter().all(|f| f.settled(Instant::now(), give_up)) && Instant::now() < settle_deadline {
        // Flips still away are turned back as soon as they may be.
        let now = Instant::now();
        for f in seen.flips.iter_mut() {
            let ready = f.away_seen.is_some() || f.away_at.is_some_and(|a| now >= a + give_up);
            if f.away_at.is_some() && f.back_at.is_none() && now >= f.back_plan && ready {
                f.back_at = Some(set(f.target, false, &devices));
            }
        }
        if let Ok(ev) = watch.events.recv_timeout(Duration::from_millis(100)) {
            seen.take(ev, Instant::now(), true)?;
        }
    }
    let unmade = seen.flips.iter().filter(|f| f.back_at.is_none()).count();
    let m_end = Samples::scrape(&listen)?;
    let peak_rss = proc_stats::status_kib(pid, "VmHWM").unwrap_or(0);
    let rss_now = proc_stats::status_kib(pid, "VmRSS").unwrap_or(0);
    let threads = proc_stats::threads(pid).unwrap_or(0);
    let (device_procs, device_rss) = devices.processes();
    let monitor_alive = monitor.is_running();
    if let Some(path) = &args.keep_log {
        if let Err(e) = std::fs::copy(&monitor.log, path) {
            println!("bench-netconf: cannot copy esi-monitor's log to {}: {e}", path.display());
        }
    }
    let log_warnings = std::fs::read_to_string(&monitor.log)
        .map(|t| t.lines().filter(|l| l.contains("WARN") || l.contains("ERROR")).count())
        .unwrap_or(0);
    // esi-monitor stops here: the original's way runs alone (its sessions end with it).
    drop(monitor);

    // ------------------------------------------------------------------ the original's way
    let sample: Vec<usize> = {
        let m = args.original_devices.min(n);
        (0..m).map(|i| i * n / m.max(1)).collect()
    };
    let all_refs: Vec<&netconf_devices::Device> = devices.list.iter().collect();
    if !wait_idle(&all_refs, Duration::from_secs(10)) {
        println!("bench-netconf: NOTE: some of esi-monitor's sessions were still open 10 s after it was stopped");
    }
    let original = if sample.is_empty() { None } else { Some(original_way(&devices, &sample, args)?) };

    // ------------------------------------------------------------------------- the figures
    let intervals = args.intervals as f64;
    let types = ["netconf_vrrp", "netconf_bgp"];
    let results: f64 = types.iter().map(|t| m1.results(t, None) - m0.results(t, None)).sum();
    let no_answers: f64 = types.iter().map(|t| m1.results(t, Some("no_answer")) - m0.results(t, Some("no_answer"))).sum();
    let derived = (objects * args.intervals) as f64;
    let cpu = cpu1 - cpu0;
    let results_per_cpu_s = results / cpu.max(1e-9);
    let polls = |m: &Samples, t: &str| m.get(&format!("esi_monitor_probe_duration_seconds_count{{type=\"{t}\"}}"));
    let poll_sum = |m: &Samples, t: &str| m.get(&format!("esi_monitor_probe_duration_seconds_sum{{type=\"{t}\"}}"));
    let mean_ms = |t: &str| {
        1000.0 * (poll_sum(&m1, t) - poll_sum(&m0, t)) / (polls(&m1, t) - polls(&m0, t)).max(1.0)
    };
    let opens = |m: &Samples| m.get("esi_monitor_netconf_session_opens_total{result=\"ok\"}");
    let opens_failed = |m: &Samples| m.get("esi_monitor_netconf_session_opens_total{result=\"failed\"}");
    let reconnects = |m: &Samples| m.get("esi_monitor_netconf_reconnects_total");

    // RPCs and handshakes from the devices.
    let flipped: std::collections::HashSet<usize> = seen
        .flips
        .iter()
        .map(|f| match f.target {
            Target::Vrrp(d, _) | Target::Bgp(d, _) => d,
        })
        .collect();
    let per_device = |f: fn(&Counts) -> usize, with_flips: bool| -> Vec<f64> {
        counts0
            .iter()
            .zip(&counts1)
            .enumerate()
            .filter(|(i, _)| flipped.contains(i) == with_flips)
            .map(|(_, (a, b))| (f(b) - f(a)) as f64 / intervals)
            .collect()
    };
    let vrrp_rpcs: usize = counts0.iter().zip(&counts1).map(|(a, b)| b.vrrp_rpcs - a.vrrp_rpcs).sum();
    let bgp_rpcs: usize = counts0.iter().zip(&counts1).map(|(a, b)| b.bgp_rpcs - a.bgp_rpcs).sum();
    let sessions_before: usize = counts0.iter().map(|c| c.sessions).sum();
    let sessions_in: usize = counts0.iter().zip(&counts1).map(|(a, b)| b.sessions - a.sessions).sum();
    let quiet_vrrp = per_device(|c| c.vrrp_rpcs, false);
    let quiet_bgp = per_device(|c| c.bgp_rpcs, false);
    let flip_vrrp = per_device(|c| c.vrrp_rpcs, true);
    let flip_bgp = per_device(|c| c.bgp_rpcs, true);
    // The goal is judged on the devices without flips (a device whose object is being confirmed
    // is asked again sooner: one extra poll per change away), or on all when every one had one.
    let (goal_vrrp, goal_bgp, goal_on, tolerance) = if quiet_vrrp.is_empty() {
        (&flip_vrrp, &flip_bgp, "all devices (each had a flip)", 2.5 / intervals)
    } else {
        (&quiet_vrrp, &quiet_bgp, "devices without flips", 1.5 / intervals)
    };
    let goal_rpcs = goal_vrrp.iter().chain(goal_bgp).all(|x| (x - 1.0).abs() <= tolerance);
    let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len().max(1) as f64;
    // The interval is kept when every device answered about one poll per interval per type.
    let kept = |xs: &[f64]| xs.iter().all(|x| *x >= 1.0 - 1.5 / intervals);
    let interval_kept = kept(&quiet_vrrp) && kept(&quiet_bgp) && kept(&flip_vrrp) && kept(&flip_bgp);

    // Flip delays.
    let secs = |a: Instant, b: Instant| b.duration_since(a).as_secs_f64();
    let (mut away, mut back) = (Vec::new(), Vec::new());
    let (mut vrrp_away, mut vrrp_back, mut bgp_away, mut bgp_back) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut missed = Vec::new();
    for f in &seen.flips {
        let is_vrrp = matches!(f.target, Target::Vrrp(..));
        match (f.away_at, f.away_seen) {
            (Some(a), Some(b)) => {
                away.push(secs(a, b));
                if is_vrrp { vrrp_away.push(secs(a, b)) } else { bgp_away.push(secs(a, b)) }
            }
            (Some(_), None) => missed.push(format!("{} {} {}", f.monitoring_key, f.object, f.away)),
            _ => {}
        }
        match (f.back_at, f.back_seen, f.away_seen) {
            (Some(a), Some(b), _) => {
                back.push(secs(a, b));
                if is_vrrp { vrrp_back.push(secs(a, b)) } else { bgp_back.push(secs(a, b)) }
            }
            (Some(_), None, Some(_)) => missed.push(format!("{} {} {}", f.monitoring_key, f.object, f.wanted)),
            _ => {}
        }
    }
    let all: Vec<f64> = away.iter().chain(&back).copied().collect();
    let p99_limit = 2.0 * args.interval_s as f64 + 1.0;
    let p99_all = quantile(&all, 0.99);

    println!();
    println!(
        "bench-netconf: {n} devices x ({} VRRP groups + {} BGP peers) = {objects} objects in {resources} resources; interval {} s x {} intervals, down_after {DOWN_AFTER}, netconf timeout {TIMEOUT_MS} ms, {} worker threads; etcd {}, {} with a python3 NETCONF agent per session ({}) on loopback ({cpus} CPUs, load {load} at start)",
        args.groups,
        args.peers,
        args.interval_s,
        args.intervals,
        args.threads,
        Etcd::version(),
        version_line("/usr/sbin/sshd", "-V", "OpenSSH_"),
        version_line("/usr/bin/python3", "--version", "3."),
    );
    if n < args.devices {
        println!("  NOTE           : only {n} of the {} devices asked for came up; the figures are for those", args.devices);
    }
    println!(
        "  results        : {results:.0} in the window ({no_answers:.0} no answers) = {:.0}/s over {wall:.1} s; objects x intervals = {derived:.0} ({:.3} of it)",
        results / wall,
        results / derived
    );
    println!(
        "  worker CPU     : {cpu:.2} CPU-s in the window = {:.1} µs per result = {results_per_cpu_s:.0} results per CPU-second (startup to the first records: {startup_cpu:.2} CPU-s)",
        cpu * 1e6 / results.max(1.0)
    );
    println!("                   by thread: {}", proc_stats::cpu_by_thread_text(&threads0, &threads1));
    println!(
        "  memory         : peak RSS {:.1} MiB (VmHWM; {:.1} MiB at the first records), {:.1} MiB now, {threads} threads",
        mib(peak_rss),
        mib(startup_rss),
        mib(rss_now)
    );
    println!(
        "  RPCs/interval  : get-vrrp-information {:.1}, get-bgp-summary-information {:.1} (goal: {n} each, one per device); per device without flips: VRRP {}, BGP {} ({} devices); with flips (asked again while confirming): VRRP {}, BGP {} ({} devices)",
        vrrp_rpcs as f64 / intervals,
        bgp_rpcs as f64 / intervals,
        spread_text(&quiet_vrrp),
        spread_text(&quiet_bgp),
        quiet_vrrp.len(),
        spread_text(&flip_vrrp),
        spread_text(&flip_bgp),
        flip_vrrp.len()
    );
    println!(
        "  polls          : mean RPC round trip (probe_duration_seconds) VRRP {:.1} ms, BGP {:.1} ms; interval {}",
        mean_ms("netconf_vrrp"),
        mean_ms("netconf_bgp"),
        if interval_kept {
            "kept (every device polled about once per interval per type)".to_string()
        } else {
            format!("NOT kept: some device got fewer than {:.2} polls per interval of a type", 1.0 - 1.5 / intervals)
        }
    );
    println!(
        "  SSH handshakes : before the window {sessions_before} (goal {n}, one per device login; session_opens_total ok {:.0}, failed {:.0}); in the window {sessions_in} (goal 0; session_opens_total +{:.0}, reconnects +{:.0}); sessions open at the end {:.0}",
        opens(&m0),
        opens_failed(&m0),
        opens(&m1) - opens(&m0),
        reconnects(&m1) - reconnects(&m0),
        m_end.get("esi_monitor_netconf_sessions")
    );
    println!("  flip → etcd    : away {}", delays_text(&away));
    println!("                   back {}", delays_text(&back));
    println!("                   all  {}", delays_text(&all));
    println!(
        "                   VRRP away p50/p99 {:.2}/{:.2} s, back {:.2}/{:.2} s; BGP away {:.2}/{:.2} s, back {:.2}/{:.2} s",
        quantile(&vrrp_away, 0.5),
        quantile(&vrrp_away, 0.99),
        quantile(&vrrp_back, 0.5),
        quantile(&vrrp_back, 0.99),
        quantile(&bgp_away, 0.5),
        quantile(&bgp_away, 0.99),
        quantile(&bgp_back, 0.5),
        quantile(&bgp_back, 0.99)
    );
    println!(
        "                   {} flips ({} VRRP master→backup, {} BGP Established→Active; on {} distinct devices); {} record changes missed{}; {unmade} flips not made; {} unexpected record changes{}",
        seen.flips.len(),
        seen.flips.iter().filter(|f| matches!(f.target, Target::Vrrp(..))).count(),
        seen.flips.iter().filter(|f| matches!(f.target, Target::Bgp(..))).count(),
        flipped.len(),
        missed.len(),
        if missed.is_empty() { String::new() } else { format!(" ({})", missed.iter().take(3).cloned().collect::<Vec<_>>().join(", ")) },
        seen.unexpected.count,
        if seen.unexpected.examples.is_empty() { String::new() } else { format!(": {}", seen.unexpected.examples.join("; ")) }
    );
    println!(
        "  etcd writes    : {} /monitoring changes in the window (revision +{}); esi-monitor logged {log_warnings} WARN/ERROR lines",
        seen.events - events0,
        rev1 - rev0
    );
    let device_cpu = device_cpu1 - device_cpu0;
    let device_ms_per_result = device_cpu * 1000.0 / results.max(1.0);
    println!(
        "  devices' CPU   : {device_cpu:.2} CPU-s in the window (sshd + per-session sshd + python agents) = {:.2} ms per RPC, {device_ms_per_result:.3} ms per result; {device_procs} processes, {:.0} MiB RSS at the end",
        device_cpu * 1000.0 / ((vrrp_rpcs + bgp_rpcs).max(1) as f64),
        mib(device_rss)
    );
    println!("  this process   : {:.2} CPU-s in the window (watch, flips)", self_cpu1 - self_cpu0);
    let mut ratio = None;
    match &original {
        Some(o) => {
            let per_cpu_s = o.right as f64 / o.cpu.max(1e-9);
            let per_object_ms = 1000.0 * o.wall.as_secs_f64() / o.objects.max(1) as f64;
            println!(
                "  original's way : {} objects of {} device(s), one at a time, each a fresh Clients (new SSH session: connect, handshake, password, hello) and one RPC: {} right, {} wrong{}; {} handshakes, {} RPCs seen by the devices",
                o.objects,
                o.devices,
                o.right,
                o.wrong_count,
                if o.wrong.is_empty() { String::new() } else { format!(" ({})", o.wrong.join("; ")) },
                o.sessions,
                o.rpcs
            );
            println!(
                "                   client CPU {:.3} CPU-s (this thread, getrusage; {:.1} ms of it in Clients::new) = {:.2} ms per result = {per_cpu_s:.0} results per CPU-second; wall {:.1} s = {per_object_ms:.1} ms per object (p50 {:.1}, max {:.1} ms), so one interval of all {objects} objects would take {:.0} s one at a time",
                o.cpu,
                o.clients_cpu * 1000.0,
                o.cpu * 1000.0 / o.objects.max(1) as f64,
                o.wall.as_secs_f64(),
                1000.0 * quantile(&o.walls, 0.5),
                1000.0 * quantile(&o.walls, 1.0),
                per_object_ms * objects as f64 / 1000.0
            );
            println!(
                "                   devices' CPU {:.2} CPU-s = {:.2} ms per result",
                o.device_cpu,
                o.device_cpu * 1000.0 / o.objects.max(1) as f64
            );
            if o.right > 0 && cpu > 0.0 {
                let x = results_per_cpu_s / per_cpu_s;
                ratio = Some(x);
                println!(
                    "  ratio          : esi-monitor produces {x:.0}x the results per client CPU-second of the original's way ({results_per_cpu_s:.0} vs {per_cpu_s:.0}; esi-monitor's figure also carries its scheduling, confirmation and etcd work); the devices spend {:.0}x less CPU per result ({device_ms_per_result:.3} vs {:.2} ms)",
                    o.device_cpu / o.objects.max(1) as f64 / (device_cpu / results.max(1.0)).max(1e-12),
                    o.device_cpu * 1000.0 / o.objects.max(1) as f64
                );
            }
        }
        None => println!("  original's way : not run (--original-devices 0)"),
    }
    println!(
        "  goals          : one RPC per device per type per interval: {} ({:.2} VRRP, {:.2} BGP per device per interval on {goal_on}); no handshake after the first: {} ({sessions_in} in the window, {sessions_before} before for {n} devices); p99 flip-to-etcd <= 2 intervals + 1 s = {p99_limit:.0} s: {} ({p99_all:.2} s over {} transitions); peak RSS {:.1} MiB (bench-poll's bound: 64 MiB: {})",
        met(goal_rpcs),
        mean(goal_vrrp),
        mean(goal_bgp),
        met(sessions_in == 0 && sessions_before == n),
        met(!all.is_empty() && p99_all <= p99_limit && missed.is_empty()),
        all.len(),
        mib(peak_rss),
        met(peak_rss > 0 && mib(peak_rss) <= 64.0)
    );
    println!(
        "  how            : CPU = utime+stime of /proc/<pid>/stat over the window (esi-monitor), of every process in each sshd's pid namespace (schedstat) plus its reaped children (devices); RSS = VmHWM; results = delta of probe_results_total; RPCs and handshakes = the agents' events logs; delays from the instant a device's state file was replaced to the watch event on /monitoring/{}; whole run {:.0} s",
        if ratio.is_some() { "; original's way: getrusage(RUSAGE_THREAD) of the one thread that polled" } else { "" },
        run_started.elapsed().as_secs_f64()
    );
    if !monitor_alive {
        return Err("esi-monitor exited during the run".into());
    }
    // Stop in order: the watch, then the devices, then etcd (esi-monitor is stopped above).
    drop(watch);
    drop(devices);
    drop(etcd);
    Ok(())
}
