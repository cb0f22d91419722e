//! `make bench-events`: SPEC §5.1's trap path end to end — how long a port's status change
//! takes to reach `/monitoring` in etcd when the device announces it with a real SNMP trap,
//! against the same number of changes left to polling alone (the interval-bound figure), in
//! the same run; and esi-monitor's CPU per trap received. A benchmark, not a test: it prints
//! figures and fails only when something does not work at all (a wait timed out, a burst
//! not received); the goal (p99 flip → etcd ≤ 1 s with traps) is reported, not enforced.
//!
//! All on loopback, every process stopped at the end by a drop guard, also on error:
//!
//! 1. A throwaway etcd (tests/support/etcd.rs); N agents (default 100 × 100 ports; `--agents
//!    --ports`), each a real net-snmp snmpd on 127.1.X.Y, all on one UDP port, all ports up
//!    (examples/support/poll_agents.rs); one `ese_physical_port` resource per port written
//!    to the registry (examples/support/poll_resources.rs); one release `esi-monitor run`
//!    with `monitoring: {interval_s: 60, down_after: 2}` (`--interval-s`) and
//!    `snmp.trap_listen` on a free loopback UDP port. A watch on `/monitoring/` (opened
//!    before the start) waits until every resource has its first record, all UP; from then
//!    on a thread that does nothing else stamps each watch event the instant it arrives.
//! 2. Traps on: `--flips` ports (default 100, one per agent, so that the per-device limit of
//!    one triggered poll a second is not what is measured) go down one every `--gap-ms`
//!    (default 200); each flip replaces the agent's state, then net-snmp's `snmptrap` sends a
//!    v2c linkDown (ifIndex, ifAdminStatus, ifOperStatus, as a device does) from the agent's
//!    address (`--clientaddr`) in the community of its objects. Once every DOWN is seen, the
//!    same ports come back up the same way with linkUp traps. Each delay runs from the flip
//!    to the watch event showing the new status.
//! 3. Traps off: as many other ports go down with no trap; each one's DOWN is caught by
//!    polling alone (2 readings, the second an eighth of the interval after the first): the
//!    interval-bound figure. Once seen, the port comes back up; that UP is read by the poll
//!    esi-monitor makes soon after confirming a DOWN (a quarter of the interval later), so
//!    it is printed, but it is not an interval-bound figure.
//! 4. CPU per trap: after a quiet `--quiet-s` (default 5) that measures the idle CPU rate, a
//!    burst of `--burst` (default 20,000) v2c linkDown traps naming an ifIndex no resource
//!    monitors, from the agents' addresses in turn, paced on the receiver's socket queue
//!    (/proc/net/udp) so that none is dropped. The datagram is the one `snmptrap` sent to
//!    this process once (captured, then replayed from each agent's address): one snmptrap
//!    process per trap would cost this machine far more CPU than the receiver (its cost per
//!    trap is measured in step 2 and printed) and would measure process starts, not traps.
//!    Behind the burst comes one linkUp marker (naming agent 0's port 0, which is up) from
//!    agent 0; the burst ends when `/status` shows the marker as the last event of that port:
//!    the scheduler takes traps from one queue in order, so it has acted on every one. Its
//!    CPU time (utime + stime of /proc/<pid>/stat) over the burst / N = CPU per trap, also
//!    net of the idle rate; `esi_monitor_traps_received_total` must count them all. The
//!    triggered polls: `esi_monitor_triggered_polls_total{by="trap"}`, and the SNMP GETs the
//!    agents answered meanwhile (at most one per device per second, plus regular polling).
//! 5. After the burst: `--after-flips` (default 10) ports on distinct agents go down and up
//!    again, announced by snmptrap as in step 2 (is a trap still acted on at once after a
//!    storm?); and every agent must answer a poll within 1.5 intervals of the burst's end
//!    (polling kept its schedule), with the port results esi-monitor produced meanwhile.
//!
//! Every wait is bounded (`--limit-s`, default 200 s per flip); a flip not seen within it, a
//! burst not received, or an agent not polled after the burst fails the run (after the
//! figures). Community strings are never printed.

mod support;

// poll_resources.rs names the Contrail simulator (VMI flips); no VMI is registered here.
#[path = "../tests/support/contrail_sim.rs"]
mod contrail_sim;
#[path = "support/poll_agents.rs"]
mod poll_agents;
#[path = "support/poll_resources.rs"]
mod poll_resources;
#[path = "../tests/support/snmpd.rs"]
mod snmpd;

use crossbeam_channel::{Receiver, RecvTimeoutError};
use esi_monitor::store::{Watch, WatchEvent};
use poll_resources::{port_monitoring_key, Change, Records, Target};
use std::net::{SocketAddrV4, UdpSocket};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::etcd::Etcd;
use support::figures::{met, mib, quantile};
use support::instances::Instances;
use support::interrupt;
use support::metrics::{self, Samples};
use support::panics::panic_text;
use support::proc_stats;

const USAGE: &str = "usage: bench_events [--agents N] [--ports N] [--interval-s S] [--flips N] [--gap-ms MS]
                    [--burst N] [--quiet-s S] [--after-flips N] [--limit-s S] [--threads N]
  --agents N        SNMP agents (snmpd) on 127.1.0.1 ... (default 100)
  --ports N         interfaces per agent, each a registered physical_port (default 100, at least 4)
  --interval-s S    monitoring.interval_s (default 60)
  --flips N         flips with traps, and as many without (default 100; at most one per agent)
  --gap-ms MS       time between two flips of a phase (default 200)
  --burst N         traps of the CPU burst (default 20000)
  --quiet-s S       quiet time before the burst that measures the idle CPU rate (default 5)
  --after-flips N   flips announced by traps after the burst (default 10)
  --limit-s S       longest wait for one flip's record (default 200)
  --threads N       esi-monitor worker.threads (default 8)
  --log-level L     esi-monitor's log.level (default info)
  --keep-log PATH   copy esi-monitor's log to PATH at the end
BENCH_POLL_TRACE=1 prints every flip and every /monitoring change to stderr.";

/// The agents' community (never printed).
const COMMUNITY: &str = "bench-events";
const DOWN_AFTER: u32 = 2;
const LINK_DOWN: &str = "1.3.6.1.6.3.1.1.5.3";
const LINK_UP: &str = "1.3.6.1.6.3.1.1.5.4";
/// The ifIndex of port 0 (poll_agents: 501 + k).
const IF_INDEX0: usize = 501;
/// The ifIndex the burst's traps name: no agent has it, no resource monitors it.
const UNMONITORED_IF_INDEX: usize = 30_000;
/// The ifIndex of the linkUp that ends the burst: agent 0's port 0, which is up (a trap sets
/// the event of the port it names only). Once `/status` shows it as that port's last event,
/// the scheduler has acted on every trap before it (one queue, in order).
const MARKER_IF_INDEX: usize = IF_INDEX0;
/// Agents started at the same time (each start is bounded by the harness).
const START_PARALLEL: usize = 16;
/// Datagrams sent between two looks at the receiver's queue.
const PACE_EVERY: usize = 16;

struct Args {
    agents: usize,
    ports: usize,
    interval_s: u64,
    flips: usize,
    gap: Duration,
    burst: usize,
    quiet: Duration,
    after_flips: usize,
    limit: Duration,
    threads: usize,
    log_level: String,
    keep_log: Option<std::path::PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        agents: 100,
        ports: 100,
        interval_s: 60,
        flips: 100,
        gap: Duration::from_millis(200),
        burst: 20_000,
        quiet: Duration::from_secs(5),
        after_flips: 10,
        limit: Duration::from_secs(200),
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
        let positive = |n: usize| if n == 0 { Err(format!("{flag} must be at least 1")) } else { Ok(n) };
        match flag.as_str() {
            "--agents" => a.agents = positive(n)?.min(50_000),
            "--ports" if n >= 4 => a.ports = n.min(1000),
            "--ports" => return Err(format!("--ports must be at least 4 (each phase flips its own port)\n{USAGE}")),
            "--interval-s" => a.interval_s = positive(n)? as u64,
            "--flips" => a.flips = positive(n)?,
            "--gap-ms" => a.gap = Duration::from_millis(n as u64),
            "--burst" => a.burst = n,
            "--quiet-s" => a.quiet = Duration::from_secs(positive(n)? as u64),
            "--after-flips" => a.after_flips = n,
            "--limit-s" => a.limit = Duration::from_secs(positive(n)? as u64),
            "--threads" => a.threads = positive(n)?,
            _ => return Err(format!("unknown argument {flag}\n{USAGE}")),
        }
    }
    Ok(a)
}

fn main() -> ExitCode {
    interrupt::install();
    match parse_args().and_then(|args| run(&args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-events FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

// ------------------------------------------------------------------------ the watch events

/// The watch's events, each stamped the instant it arrived by a thread that does nothing
/// else (so that a flip's snmptrap, run by the main thread, never delays a stamp).
struct Stamped {
    events: Receiver<(Instant, WatchEvent)>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Stamped {
    fn start(watch: &Watch) -> Stamped {
        let from = watch.events.clone();
        let (tx, events) = crossbeam_channel::unbounded();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match from.recv_timeout(Duration::from_millis(100)) {
                    Ok(ev) => {
                        if tx.send((Instant::now(), ev)).is_err() {
                            return;
                        }
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            }
        });
        Stamped { events, stop, thread: Some(thread) }
    }
}

impl Drop for Stamped {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ------------------------------------------------------------------------------- the flips

/// One port set down or up, and when its record showed it.
struct Flip {
    key: String,
    agent: usize,
    port: usize,
    up: bool,
    /// When the agent's state was replaced (every answer after it has the new status).
    at: Instant,
    /// When its snmptrap exited, and whether it exited 0 (announced flips only).
    trap: Option<(Instant, bool)>,
    seen: Option<Instant>,
}

impl Flip {
    fn delay(&self) -> Option<f64> {
        Some(self.seen?.saturating_duration_since(self.at).as_secs_f64())
    }
}

/// Record changes nobody flipped.
#[derive(Default)]
struct Unexpected {
    count: usize,
    examples: Vec<String>,
}

/// What every phase needs.
struct Bench<'a> {
    agents: &'a poll_agents::Agents,
    ports: usize,
    stamped: &'a Stamped,
    fleet: &'a mut Instances,
    records: Records,
    unexpected: Unexpected,
    /// The trap receiver, `127.0.0.1:PORT`.
    trap_to: SocketAddrV4,
    limit: Duration,
    last_check: Instant,
}

/// The port each phase flips on agent `a` (distinct per phase for `ports` ≥ 4).
#[derive(Clone, Copy)]
enum Ports {
    On,
    Off,
    After,
}

impl Bench<'_> {
    fn port(&self, a: usize, which: Ports) -> usize {
        let k = (a * 37 + 11) % self.ports;
        match which {
            Ports::On => k,
            Ports::Off => (k + self.ports / 2) % self.ports,
            Ports::After => (k + self.ports / 4) % self.ports,
        }
    }

    /// `n` agents spread over all of them (one flip each), in order.
    fn spread(&self, n: usize) -> Vec<usize> {
        let agents = self.agents.list.len();
        let n = n.min(agents);
        (0..n).map(|i| i * agents / n.max(1)).collect()
    }

    /// Interrupted, or esi-monitor gone: an error (looked at every 500 ms at most).
    fn check(&mut self) -> Result<(), String> {
        if self.last_check.elapsed() >= Duration::from_millis(500) {
            self.last_check = Instant::now();
            interrupt::check()?;
            self.fleet.check_running()?;
        }
        Ok(())
    }

    /// The next record change within `wait`, with the instant it arrived.
    fn next(&mut self, wait: Duration) -> Result<Option<(Instant, Change)>, String> {
        match self.stamped.events.recv_timeout(wait) {
            Ok((at, ev)) => Ok(Some((at, self.records.take(ev, true)?))),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => Err("the watch on /monitoring/ ended".into()),
        }
    }

    fn note(&mut self, phase: &str, change: Change) {
        let what = match change {
            Change::Put { key, previous, status } => {
                format!("{key} {} → {status}", previous.as_deref().unwrap_or("(none)"))
            }
            Change::Other(what) => what,
        };
        self.unexpected.count += 1;
        if self.unexpected.examples.len() < 5 {
            self.unexpected.examples.push(format!("{phase}: {what}"));
        }
    }

    /// Waits until `until`, taking every record change as unexpected.
    fn idle(&mut self, phase: &str, until: Instant) -> Result<(), String> {
        while Instant::now() < until {
            self.check()?;
            let wait = until.saturating_duration_since(Instant::now()).min(Duration::from_millis(200));
            if let Some((_, change)) = self.next(wait)? {
                self.note(phase, change);
            }
        }
        Ok(())
    }

    /// Sends a linkDown/linkUp for port `k` of agent `a` from the agent's address; when
    /// snmptrap exited, and whether it exited 0.
    fn trap(&self, a: usize, k: usize, up: bool) -> (Instant, bool) {
        let ok = snmptrap(&self.agents.list[a].addr, &self.trap_to.to_string(), IF_INDEX0 + k, up);
        (Instant::now(), ok)
    }

    /// Makes the flips of `plan` (agent, port, up) one every `gap`, each announced by a trap
    /// when `announce`; with `then_up`, a port whose DOWN is seen goes back up at once (not
    /// announced), a flip of its own. Returns every flip once each was seen, or `limit`
    /// passed since it was made.
    fn flips(
        &mut self,
        phase: &str,
        plan: &[(usize, usize, bool)],
        gap: Duration,
        announce: bool,
        then_up: bool,
    ) -> Result<Vec<Flip>, String> {
        let start = Instant::now();
        let mut flips: Vec<Flip> = Vec::new();
        let mut pending: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        let mut made = 0;
        loop {
            self.check()?;
            let now = Instant::now();
            if made < plan.len() && now >= start + gap * made as u32 {
                let (a, k, up) = plan[made];
                made += 1;
                let key = port_monitoring_key(a, k);
                if pending.contains_key(&key) {
                    return Err(format!("{phase}: {key} flipped again before its record changed"));
                }
                let at = poll_resources::set(&Target::Port(a, poll_agents::interface_name(k)), up, self.agents, None);
                let trap = announce.then(|| self.trap(a, k, up));
                pending.insert(key.clone(), flips.len());
                flips.push(Flip { key, agent: a, port: k, up, at, trap, seen: None });
                continue;
            }
            if made == plan.len() && pending.values().all(|&i| now >= flips[i].at + self.limit) {
                return Ok(flips);
            }
            let next = if made < plan.len() { start + gap * made as u32 } else { now + Duration::from_millis(200) };
            let wait = next.saturating_duration_since(now).min(Duration::from_millis(200));
            let Some((at, change)) = self.next(wait)? else {
                continue;
            };
            let i = match &change {
                Change::Put { key, status, .. } => pending.get(key).copied().filter(|&i| {
                    let want = if flips[i].up { "UP" } else { "DOWN" };
                    status == want
                }),
                Change::Other(_) => None,
            };
            let Some(i) = i else {
                self.note(phase, change);
                continue;
            };
            flips[i].seen = Some(at);
            let key = flips[i].key.clone();
            pending.remove(&key);
            if then_up && !flips[i].up {
                let (a, k) = (flips[i].agent, flips[i].port);
                let at = poll_resources::set(&Target::Port(a, poll_agents::interface_name(k)), true, self.agents, None);
                pending.insert(key.clone(), flips.len());
                flips.push(Flip { key, agent: a, port: k, up: true, at, trap: None, seen: None });
            }
        }
    }
}

/// Delays (seconds) of the flips going `up` (or down), and how many were not seen.
fn delays(flips: &[Flip], up: bool) -> (Vec<f64>, usize) {
    let mine: Vec<&Flip> = flips.iter().filter(|f| f.up == up).collect();
    let d: Vec<f64> = mine.iter().filter_map(|f| f.delay()).collect();
    let missed = mine.len() - d.len();
    (d, missed)
}

/// `n=… p50 … p99 … (min …, max …)` in milliseconds.
fn ms_text(xs: &[f64]) -> String {
    if xs.is_empty() {
        return "n=0".into();
    }
    let ms = |p: f64| quantile(xs, p) * 1000.0;
    format!("n={} p50 {:.0} ms, p99 {:.0} ms (min {:.0}, max {:.0})", xs.len(), ms(0.5), ms(0.99), ms(0.0), ms(1.0))
}

/// `n=… p50 … p99 … (min …, max …)` in seconds.
fn s_text(xs: &[f64]) -> String {
    if xs.is_empty() {
        return "n=0".into();
    }
    let s = |p: f64| quantile(xs, p);
    format!("n={} p50 {:.1} s, p99 {:.1} s (min {:.1}, max {:.1})", xs.len(), s(0.5), s(0.99), s(0.0), s(1.0))
}

/// `phase: n of m flips (DOWN/UP) not seen within …` for each direction that missed some.
fn misses(phase: &str, flips: &[Flip], limit: Duration, failures: &mut Vec<String>) {
    for up in [false, true] {
        let (_, missed) = delays(flips, up);
        if missed > 0 {
            let n = flips.iter().filter(|f| f.up == up).count();
            let what = if up { "UP" } else { "DOWN" };
            failures.push(format!("{phase}: {missed} of {n} {what} flips not seen in /monitoring within {limit:?}"));
        }
    }
}

// ------------------------------------------------------------------------------- the burst

/// Runs net-snmp's snmptrap: a v2c linkDown (or linkUp) of `if_index` from `from` (its
/// `--clientaddr`) to `to`, with ifIndex, ifAdminStatus (up) and ifOperStatus as a device
/// sends them, in the agents' community; true when it exited 0.
fn snmptrap(from: &str, to: &str, if_index: usize, up: bool) -> bool {
    let index = if_index.to_string();
    let client = format!("--clientaddr={from}");
    let column = |c: u32| format!("1.3.6.1.2.1.2.2.1.{c}.{index}");
    let (i, admin, oper) = (column(1), column(7), column(8));
    let (kind, status) = if up { (LINK_UP, "1") } else { (LINK_DOWN, "2") };
    let varbinds = [&i, "i", &index, &admin, "i", "1", &oper, "i", status];
    let args: Vec<&str> = ["-v", "2c", "-c", COMMUNITY, &client, to, "", kind].into_iter().chain(varbinds).collect();
    snmpd::send_trap(false, &args)
}

/// The datagram snmptrap sends from agent address `from` for `if_index` (linkUp when `up`):
/// captured on a socket of this process, checked to come from `from`.
fn capture_trap(from: &str, if_index: usize, up: bool) -> Result<Vec<u8>, String> {
    let sock = UdpSocket::bind("127.0.0.1:0").map_err(|e| format!("capture socket: {e}"))?;
    sock.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| format!("capture socket: {e}"))?;
    let to = sock.local_addr().map_err(|e| format!("capture socket: {e}"))?.to_string();
    if !snmptrap(from, &to, if_index, up) {
        return Err("snmptrap failed sending the burst's trap to this process".into());
    }
    let mut buf = vec![0u8; 65_536];
    let (n, source) =
        sock.recv_from(&mut buf).map_err(|e| format!("the burst's trap from snmptrap did not arrive: {e}"))?;
    if source.ip().to_string() != from {
        return Err(format!("snmptrap --clientaddr={from} sent from {}", source.ip()));
    }
    Ok(buf[..n].to_vec())
}

/// Sum of every series of `name` (all label values).
fn total(s: &Samples, name: &str) -> f64 {
    let prefix = format!("{name}{{");
    s.0.iter().filter(|(k, _)| k.starts_with(&prefix) || k.as_str() == name).map(|(_, v)| v).sum()
}

/// The non-zero series of `name` that grew from `a` to `b`, as `label +n` items.
fn grown(a: &Samples, b: &Samples, name: &str) -> String {
    let prefix = format!("{name}{{");
    let items: Vec<String> = b
        .0
        .iter()
        .filter(|(k, _)| k.starts_with(&prefix))
        .filter_map(|(k, v)| {
            let d = v - a.0.get(k).copied().unwrap_or(0.0);
            (d > 0.0).then(|| format!("{} +{d:.0}", &k[prefix.len()..k.len() - 1]))
        })
        .collect();
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

const RECEIVED: &str = "esi_monitor_traps_received_total{version=\"2c\"}";
const TRIGGERED: &str = "esi_monitor_triggered_polls_total{by=\"trap\"}";
const DROPPED: &str = "esi_monitor_traps_dropped_total";
const PORT_RESULTS: &str = "esi_monitor_probe_results_total";

/// SNMP GETs each agent answered so far (the ifOperStatus reads of its port 0: every GET
/// asks all its ports).
fn gets(agents: &poll_agents::Agents) -> Vec<u64> {
    agents.list.iter().map(|a| a.snmpd.status_reads().get(&(IF_INDEX0 as u32)).copied().unwrap_or(0)).collect()
}

fn minus(after: &[u64], before: &[u64]) -> Vec<u64> {
    after.iter().zip(before).map(|(a, b)| a.saturating_sub(*b)).collect()
}

struct Burst {
    datagram_len: usize,
    sent: usize,
    send_errors: usize,
    pauses: usize,
    send_s: f64,
    /// From the first datagram until the scheduler had acted on every one (the marker seen).
    processed_s: Option<f64>,
    markers: usize,
    cpu: f64,
    idle_rate: f64,
    by_thread: String,
    /// CPU-seconds of the receiver thread (`traps`) and of the scheduler over the burst.
    receiver_cpu: f64,
    scheduler_cpu: f64,
    received: f64,
    triggered: f64,
    dropped: String,
    socket_drops: u64,
    /// GETs per agent from the first datagram until 1.5 s after the burst was processed.
    gets: Vec<u64>,
    gets_window_s: f64,
    /// When the burst was processed (or given up on).
    end: Instant,
}

/// `/status/<plural>/<id>` of esi-monitor as text.
fn status_text(listen: &str, resource: &str) -> Result<String, String> {
    metrics::get_text(listen, &format!("/status/{resource}"))
}

/// Step 4 (see the top of the file).
fn burst(bench: &mut Bench, n: usize, quiet: Duration) -> Result<Burst, String> {
    let agents = bench.agents;
    let datagram = capture_trap(&agents.list[0].addr, UNMONITORED_IF_INDEX, false)?;
    let marker = capture_trap(&agents.list[0].addr, MARKER_IF_INDEX, true)?;
    let marker_text = format!("linkUp trap from {} (ifIndex {MARKER_IF_INDEX}", agents.list[0].addr);
    let marked = format!("ese_physical_ports/{}", poll_resources::port_id(0, 0));
    let socks: Vec<UdpSocket> = agents
        .list
        .iter()
        .map(|a| UdpSocket::bind((a.addr.as_str(), 0)).map_err(|e| format!("bind {}:0: {e}", a.addr)))
        .collect::<Result<_, _>>()?;
    let pid = bench.fleet.list[0].pid();
    let listen = bench.fleet.list[0].listen.clone();
    // A quarter of the socket's default buffer queued at most (each datagram takes its
    // buffer's true size, about 1 KiB on loopback, not its length).
    let rmem: u64 = std::fs::read_to_string("/proc/sys/net/core/rmem_default")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(212_992);
    let threshold = (rmem / 4).max(16 * 1024);
    let queued = |to: SocketAddrV4| proc_stats::udp_socket(to).map_or(0, |s| s.rx_queue);

    // The idle rate: polling and the service's own timers, no trap.
    let idle0 = (Instant::now(), proc_stats::cpu_seconds(pid).unwrap_or(0.0));
    bench.idle("before the burst", Instant::now() + quiet)?;
    let idle_rate = (proc_stats::cpu_seconds(pid).unwrap_or(0.0) - idle0.1) / idle0.0.elapsed().as_secs_f64();

    let m0 = Samples::scrape(&listen)?;
    let sock0 = proc_stats::udp_socket(bench.trap_to).unwrap_or_default();
    let gets0 = gets(agents);
    let threads0 = proc_stats::cpu_by_thread(pid);
    let cpu0 = proc_stats::cpu_seconds(pid).unwrap_or(0.0);
    let t0 = Instant::now();
    let deadline = t0 + bench.limit;
    let (mut sent, mut send_errors, mut pauses) = (0, 0, 0);
    for i in 0..n {
        if i % PACE_EVERY == 0 {
            while queued(bench.trap_to) > threshold {
                if Instant::now() >= deadline {
                    return Err(format!("the trap receiver's queue stayed above {threshold} bytes: sent {sent} of {n}"));
                }
                pauses += 1;
                std::thread::sleep(Duration::from_micros(200));
            }
            if i % (PACE_EVERY * 64) == 0 {
                interrupt::check()?;
            }
        }
        match socks[i % socks.len()].send_to(&datagram, bench.trap_to) {
            Ok(_) => sent += 1,
            Err(_) => send_errors += 1,
        }
    }
    let send_s = t0.elapsed().as_secs_f64();
    // The marker, behind the burst in the same queue; sent again every 2 s until seen.
    let (mut processed, mut markers, mut marker_at) = (None, 0, None::<Instant>);
    while Instant::now() < deadline {
        interrupt::check()?;
        bench.fleet.check_running()?;
        if marker_at.map_or(true, |t| t.elapsed() >= Duration::from_secs(2)) {
            if socks[0].send_to(&marker, bench.trap_to).is_ok() {
                markers += 1;
            }
            marker_at = Some(Instant::now());
        }
        if status_text(&listen, &marked)?.contains(&marker_text) {
            processed = Some(t0.elapsed().as_secs_f64());
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let cpu = proc_stats::cpu_seconds(pid).unwrap_or(cpu0) - cpu0;
    let threads1 = proc_stats::cpu_by_thread(pid);
    let by_thread = proc_stats::cpu_by_thread_text(&threads0, &threads1);
    let thread = |name: &str| threads1.get(name).copied().unwrap_or(0.0) - threads0.get(name).copied().unwrap_or(0.0);
    let end = Instant::now();
    let sock1 = proc_stats::udp_socket(bench.trap_to).unwrap_or_default();
    let m1 = Samples::scrape(&listen)?;
    // The polls it triggered: those deferred to the end of a device's second included.
    bench.idle("the burst", end + Duration::from_millis(1500))?;
    let gets = minus(&gets(agents), &gets0);
    let m2 = Samples::scrape(&listen)?;
    Ok(Burst {
        datagram_len: datagram.len(),
        sent,
        send_errors,
        pauses,
        send_s,
        processed_s: processed,
        markers,
        cpu,
        idle_rate,
        by_thread,
        receiver_cpu: thread("traps"),
        scheduler_cpu: thread("scheduler"),
        received: m1.get(RECEIVED) - m0.get(RECEIVED),
        triggered: m2.get(TRIGGERED) - m0.get(TRIGGERED),
        dropped: grown(&m0, &m1, DROPPED),
        socket_drops: sock1.drops.saturating_sub(sock0.drops),
        gets,
        gets_window_s: t0.elapsed().as_secs_f64(),
        end,
    })
}

// ------------------------------------------------------------------------------------ run

fn run(args: &Args) -> Result<(), String> {
    let cpus = std::thread::available_parallelism().map(|p| p.get()).unwrap_or(0);
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into());
    let interval = Duration::from_secs(args.interval_s);
    let monitor_bin = support::sibling_binary("esi-monitor")?;
    let on_path = |tool: &str| {
        std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
    };
    if !on_path("snmptrap") {
        return Err("snmptrap is missing: install Debian's snmp (make deps, or scripts/deps bench-events)".into());
    }

    let etcd = std::panic::catch_unwind(Etcd::start).map_err(|p| format!("etcd: {}", panic_text(p)))?;
    let store = etcd.store();
    let t = Instant::now();
    let (agents, failures) = poll_agents::start(args.agents, args.ports, COMMUNITY, START_PARALLEL);
    if agents.list.is_empty() {
        return Err(format!("no agent came up: {}", failures.first().map_or("?", String::as_str)));
    }
    if !failures.is_empty() {
        println!(
            "bench-events: only {} of {} agents came up; going on with those ({} failed, first: {})",
            agents.list.len(),
            args.agents,
            failures.len(),
            failures[0]
        );
    }
    println!(
        "bench-events: {} agents x {} ports up in {:.1} s on UDP port {} ({:.0} MiB RSS for all snmpd + scripts)",
        agents.list.len(),
        args.ports,
        t.elapsed().as_secs_f64(),
        agents.port,
        mib(agents.rss_kib())
    );
    let resources = poll_resources::resources(&agents, args.ports, 0, COMMUNITY);
    let total_ports = resources.len();
    poll_resources::register(&store, &resources)?;

    // The trap receiver's port: free on loopback now.
    let trap_port = UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("a free UDP port: {e}"))?;
    let trap_to = SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, trap_port);
    let (_, rev) = store.range("/monitoring/").map_err(|e| e.to_string())?;
    let watch = store.watch("/monitoring/", rev + 1).map_err(|e| e.to_string())?;
    let config = format!(
        "etcd: {{endpoints: [\"{}\"]}}\n\
         worker: {{threads: {}}}\n\
         contrail: {{uve_stream: false}}\n\
         snmp: {{port: {}, timeout_ms: 1000, retries: 1, trap_listen: \"{trap_to}\"}}\n\
         monitoring: {{interval_s: {}, down_after: {DOWN_AFTER}}}\n\
         log: {{level: {}}}\n",
        etcd.endpoint, args.threads, agents.port, args.interval_s, args.log_level
    );
    let mut fleet = Instances::start(&monitor_bin, &config, 1, store.clone())?;
    let started = Instant::now();
    let mut records = Records::default();
    let first_limit = Duration::from_secs(60) + Duration::from_millis(5 * total_ports as u64);
    records.wait_first(&watch, total_ports, first_limit, &mut fleet)?;
    let not_up = records.status.values().filter(|s| *s != "UP").count();
    if not_up > 0 {
        return Err(format!("{not_up} of {total_ports} first records are not UP"));
    }
    let pid = fleet.list[0].pid();
    println!(
        "bench-events: {total_ports} ports registered; every first record UP {:.1} s after esi-monitor started (trap_listen {trap_to}, interval {} s, down_after {DOWN_AFTER}; {:.2} CPU-s, VmHWM {:.1} MiB)",
        started.elapsed().as_secs_f64(),
        args.interval_s,
        proc_stats::cpu_seconds(pid).unwrap_or(0.0),
        mib(proc_stats::status_kib(pid, "VmHWM").unwrap_or(0))
    );

    let stamped = Stamped::start(&watch);
    let mut bench = Bench {
        agents: &agents,
        ports: args.ports,
        stamped: &stamped,
        fleet: &mut fleet,
        records,
        unexpected: Unexpected::default(),
        trap_to,
        limit: args.limit,
        last_check: Instant::now(),
    };
    let listen = bench.fleet.list[0].listen.clone();
    let mut failures: Vec<String> = Vec::new();
    // The receiver learns the devices polled here a moment after their first poll.
    bench.idle("start", Instant::now() + Duration::from_secs(1))?;

    // ------------------------------------------------------------------------- traps on
    let flip_agents = bench.spread(args.flips);
    let m_on0 = Samples::scrape(&listen)?;
    let children0 = proc_stats::children_cpu_seconds(std::process::id()).unwrap_or(0.0);
    let t = Instant::now();
    let plan: Vec<(usize, usize, bool)> = flip_agents.iter().map(|&a| (a, bench.port(a, Ports::On), false)).collect();
    let mut on = bench.flips("traps on", &plan, args.gap, true, false)?;
    // Each agent's linkUp at least 2 s after its linkDown (the per-device limit is 1 s).
    let last_down = on.iter().map(|f| f.at).max().unwrap_or_else(Instant::now);
    bench.idle("traps on", last_down + Duration::from_secs(2))?;
    let plan: Vec<(usize, usize, bool)> = plan.iter().map(|&(a, k, _)| (a, k, true)).collect();
    on.extend(bench.flips("traps on", &plan, args.gap, true, false)?);
    let children1 = proc_stats::children_cpu_seconds(std::process::id()).unwrap_or(children0);
    let m_on1 = Samples::scrape(&listen)?;
    let on_s = t.elapsed().as_secs_f64();
    misses("traps on", &on, args.limit, &mut failures);
    let traps_sent = on.iter().filter(|f| f.trap.is_some()).count();
    let traps_failed = on.iter().filter(|f| f.trap.is_some_and(|(_, ok)| !ok)).count();
    println!("bench-events: traps on done in {on_s:.1} s ({traps_sent} snmptrap runs)");

    // ------------------------------------------------------------------------ traps off
    bench.idle("traps off", Instant::now() + Duration::from_secs(2))?;
    let t = Instant::now();
    let plan: Vec<(usize, usize, bool)> = flip_agents.iter().map(|&a| (a, bench.port(a, Ports::Off), false)).collect();
    let off = bench.flips("traps off", &plan, args.gap, false, true)?;
    misses("traps off", &off, args.limit, &mut failures);
    println!("bench-events: traps off done in {:.1} s", t.elapsed().as_secs_f64());

    // ---------------------------------------------------------------------------- burst
    let burst = if args.burst > 0 {
        let b = burst(&mut bench, args.burst, args.quiet)?;
        if b.processed_s.is_none() {
            failures.push(format!(
                "burst: within {:?} esi-monitor did not act on the trap sent after the {} of the burst ({:.0} received)",
                args.limit, b.sent, b.received
            ));
        } else if b.received < (b.sent + b.markers) as f64 {
            failures.push(format!("burst: esi-monitor received {:.0} of {} traps", b.received, b.sent + b.markers));
        }
        if b.send_errors > 0 {
            failures.push(format!("burst: {} of {} datagrams could not be sent", b.send_errors, args.burst));
        }
        println!("bench-events: burst of {} traps done in {:.1} s", b.sent, b.processed_s.unwrap_or(b.send_s));
        Some(b)
    } else {
        None
    };

    // ------------------------------------------------------------------- after the burst
    let after_start = burst.as_ref().map_or_else(Instant::now, |b| b.end);
    let gets_after0 = gets(&agents);
    let results_after0 = Samples::scrape(&listen)?;
    bench.idle("after the burst", after_start + Duration::from_secs(2))?;
    let after_agents = bench.spread(args.after_flips);
    let plan: Vec<(usize, usize, bool)> =
        after_agents.iter().map(|&a| (a, bench.port(a, Ports::After), false)).collect();
    let mut after = bench.flips("after the burst", &plan, Duration::from_millis(300), true, false)?;
    let last_down = after.iter().map(|f| f.at).max().unwrap_or_else(Instant::now);
    bench.idle("after the burst", last_down + Duration::from_secs(2))?;
    let plan: Vec<(usize, usize, bool)> = plan.iter().map(|&(a, k, _)| (a, k, true)).collect();
    after.extend(bench.flips("after the burst", &plan, Duration::from_millis(300), true, false)?);
    misses("after the burst", &after, args.limit, &mut failures);
    // Every agent polled within 1.5 intervals of the burst's end (a triggered poll moves a
    // device's next regular one to its slot at least half an interval later).
    let polled_limit = interval * 3 / 2 + Duration::from_secs(10);
    let mut unpolled = agents.list.len();
    let mut polled_after = Duration::ZERO;
    while Instant::now() < after_start + polled_limit {
        let since = minus(&gets(&agents), &gets_after0);
        unpolled = since.iter().filter(|g| **g == 0).count();
        polled_after = after_start.elapsed();
        if unpolled == 0 {
            break;
        }
        bench.idle("after the burst", Instant::now() + Duration::from_secs(1))?;
    }
    let results_after1 = Samples::scrape(&listen)?;
    let results_after =
        total(&results_after1, PORT_RESULTS) - total(&results_after0, PORT_RESULTS);
    if unpolled > 0 {
        failures.push(format!("after the burst: {unpolled} agents answered no poll within {polled_limit:?}"));
    }
    // Whatever is still queued (nothing is expected).
    while let Some((_, change)) = bench.next(Duration::from_millis(10))? {
        bench.note("end", change);
    }
    let m_end = Samples::scrape(&listen)?;
    let peak_rss = proc_stats::status_kib(pid, "VmHWM").unwrap_or(0);
    let alive = bench.fleet.check_running();

    // ---------------------------------------------------------------------- the figures
    let (on_down, _) = delays(&on, false);
    let (on_up, _) = delays(&on, true);
    let on_all: Vec<f64> = on_down.iter().chain(&on_up).copied().collect();
    let snmptrap_s: Vec<f64> =
        on.iter().filter_map(|f| Some(f.trap?.0.saturating_duration_since(f.at).as_secs_f64())).collect();
    let after_trap: Vec<f64> = on
        .iter()
        .filter_map(|f| Some(f.seen?.saturating_duration_since(f.trap?.0).as_secs_f64()))
        .collect();
    let (off_down, _) = delays(&off, false);
    let (off_up, _) = delays(&off, true);
    let (after_down, _) = delays(&after, false);
    let (after_up, _) = delays(&after, true);
    let p99 = |xs: &[f64]| quantile(xs, 0.99);
    let ratio = |a: &[f64], b: &[f64]| {
        if a.is_empty() || b.is_empty() {
            "n/a".to_string()
        } else {
            format!("{:.0}x ({:.1} s / {:.3} s)", p99(a) / p99(b).max(1e-6), p99(a), p99(b))
        }
    };
    let n_agents = agents.list.len();
    println!();
    println!(
        "bench-events: {n_agents} agents x {} ports = {total_ports} ports, one esi-monitor (release), interval {} s, down_after {DOWN_AFTER}, snmp.trap_listen {trap_to}; v2c traps from each agent's address; etcd {} ({cpus} CPUs, load {load} at start)",
        args.ports,
        args.interval_s,
        Etcd::version()
    );
    println!(
        "  traps on       : flip → etcd DOWN {}; UP {}; {} flips (one per agent, {} ms apart), each announced by snmptrap (linkDown/linkUp)",
        ms_text(&on_down),
        ms_text(&on_up),
        on.len(),
        args.gap.as_millis()
    );
    println!(
        "                   of which snmptrap from the flip to its exit {}; from its exit to the record {}; {traps_sent} traps sent, {traps_failed} snmptrap failures, esi-monitor: received +{:.0}, dropped {}, triggered polls +{:.0}",
        ms_text(&snmptrap_s),
        ms_text(&after_trap),
        m_on1.get(RECEIVED) - m_on0.get(RECEIVED),
        grown(&m_on0, &m_on1, DROPPED),
        m_on1.get(TRIGGERED) - m_on0.get(TRIGGERED)
    );
    println!(
        "  traps off      : flip → etcd DOWN {}; UP {} (polling only: {} flips on other ports, none announced; a DOWN needs {DOWN_AFTER} readings, the second {:.1} s after the first; each port is put back up once its DOWN is seen, and that UP is read by the poll that follows a confirmed DOWN, not by the interval)",
        s_text(&off_down),
        s_text(&off_up),
        off.iter().filter(|f| !f.up).count(),
        (interval / 8).max(Duration::from_secs(1)).as_secs_f64()
    );
    println!(
        "  ratio          : interval-bound p99 / trap p99: DOWN {}; UP {} (UP: the poll after a confirmed DOWN, above)",
        ratio(&off_down, &on_down),
        ratio(&off_up, &on_up)
    );
    println!(
        "  goal           : p99 flip → etcd <= 1 s with traps: {} (DOWN {:.3} s, UP {:.3} s, all {:.3} s over {} flips)",
        met(!on_all.is_empty() && p99(&on_all) <= 1.0 && on_all.len() == on.len()),
        p99(&on_down),
        p99(&on_up),
        p99(&on_all),
        on_all.len()
    );
    let snmptrap_cpu_us = (children1 - children0) * 1e6 / traps_sent.max(1) as f64;
    match &burst {
        Some(b) => {
            let per_trap = b.cpu * 1e6 / b.sent.max(1) as f64;
            let wall = b.processed_s.unwrap_or(b.send_s);
            let net = (b.cpu - b.idle_rate * wall).max(0.0) * 1e6 / b.sent.max(1) as f64;
            println!(
                "  CPU per trap   : {per_trap:.1} µs = {:.3} CPU-s of esi-monitor for {} traps in {wall:.2} s ({net:.1} µs net of its idle rate, {:.4} CPU-s/s over {:.0} s before); receiver thread {:.1} µs, scheduler {:.1} µs per trap; by thread: {}",
                b.cpu,
                b.sent,
                b.idle_rate,
                args.quiet.as_secs_f64(),
                b.receiver_cpu * 1e6 / b.sent.max(1) as f64,
                b.scheduler_cpu * 1e6 / b.sent.max(1) as f64,
                b.by_thread
            );
            println!(
                "                   one snmptrap process costs {snmptrap_cpu_us:.0} µs CPU per trap ({traps_sent} runs, this process's cutime + cstime), {:.0}x the receiver's cost per trap",
                snmptrap_cpu_us / per_trap.max(1e-9)
            );
            println!(
                "  burst          : {} v2c linkDown datagrams of {} bytes (snmptrap's, captured; ifIndex {UNMONITORED_IF_INDEX}, monitored by none) from the {n_agents} agents' addresses in turn, sent in {:.2} s = {:.0}/s ({} pauses of 200 µs for the receiver's queue); then {} linkUp marker(s) (ifIndex {MARKER_IF_INDEX}, agent 0's port 0, up); esi-monitor received +{:.0}, dropped {}; socket drops +{}; all acted on {}",
                b.sent,
                b.datagram_len,
                b.send_s,
                b.sent as f64 / b.send_s.max(1e-9),
                b.pauses,
                b.markers,
                b.received,
                b.dropped,
                b.socket_drops,
                b.processed_s.map_or("NEVER (see the failures)".to_string(), |s| {
                    format!("{s:.2} s after the first (the marker was the last event /status showed)")
                })
            );
            let window = b.gets_window_s;
            let bound = window.ceil() as u64 + 2;
            let sum: u64 = b.gets.iter().sum();
            let max = b.gets.iter().copied().max().unwrap_or(0);
            let regular = n_agents as f64 * window / args.interval_s as f64;
            println!(
                "  triggered polls: +{:.0} (esi_monitor_triggered_polls_total{{by=\"trap\"}}) for {} traps; the agents answered {sum} GETs in the {window:.1} s from the first trap to 1.5 s after the last was acted on ({:.2} per agent, max {max}; at most 1 triggered poll per device per second allows {bound} each; regular polling alone ~{regular:.1} in all)",
                b.triggered,
                b.sent + b.markers,
                sum as f64 / n_agents.max(1) as f64
            );
        }
        None => {
            println!(
                "  CPU per trap   : skipped (--burst 0); one snmptrap process costs {snmptrap_cpu_us:.0} µs CPU per trap"
            )
        }
    }
    println!(
        "  after the burst: flip → etcd DOWN {}; UP {} ({} flips announced by snmptrap, from 2 s after the burst was acted on)",
        ms_text(&after_down),
        ms_text(&after_up),
        after.iter().filter(|f| !f.up).count()
    );
    if p99(&after_down) > 1.0 || p99(&after_up) > 1.0 {
        println!(
            "                   NOTE: traps after the burst were not acted on at once: their records waited for polling"
        );
    }
    println!(
        "  polling        : every agent answered a poll within {:.1} s of the burst's end: {} ({} of {n_agents}; limit {:.0} s = 1.5 intervals + 10 s); {results_after:.0} port results meanwhile ({:.2} per port)",
        polled_after.as_secs_f64(),
        met(unpolled == 0),
        n_agents - unpolled,
        polled_limit.as_secs_f64(),
        results_after / total_ports.max(1) as f64
    );
    println!(
        "  esi-monitor    : {:.2} CPU-s since its start, peak RSS {:.1} MiB; traps received {:.0}, dropped {:.0} ({}), triggered polls {:.0}, /monitoring writes {:.0}",
        proc_stats::cpu_seconds(pid).unwrap_or(0.0),
        mib(peak_rss),
        total(&m_end, "esi_monitor_traps_received_total"),
        total(&m_end, DROPPED),
        grown(&Samples(Default::default()), &m_end, DROPPED),
        m_end.get(TRIGGERED),
        m_end.get("esi_monitor_monitoring_writes_total")
    );
    println!(
        "  unexpected     : {} record changes nobody flipped{}",
        bench.unexpected.count,
        if bench.unexpected.examples.is_empty() {
            String::new()
        } else {
            format!(": {}", bench.unexpected.examples.join("; "))
        }
    );
    println!(
        "  how            : a delay runs from the agent's state file replaced to the watch event on /monitoring/ (stamped on arrival by a thread of its own); p99 = nearest rank; CPU = utime + stime of /proc/<pid>/stat; GETs from the agents' own count of ifOperStatus reads"
    );
    if let Some(path) = &args.keep_log {
        if let Err(e) = std::fs::copy(&bench.fleet.list[0].proc.log, path) {
            println!("bench-events: cannot copy esi-monitor's log to {}: {e}", path.display());
        }
    }
    alive.map_err(|e| format!("during the run: {e}"))?;
    drop(bench);
    drop(stamped);
    drop(fleet);
    drop(watch);
    drop(agents);
    drop(etcd);
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("; "))
    }
}
