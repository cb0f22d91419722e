//! What the worker counts about itself, served at `/metrics` in the Prometheus text format
//! (version 0.0.4). No metrics crate: every series is a static atomic, a family with a fixed
//! label set (actions, probe types, outcomes, statuses) is an array indexed by the label
//! value's position, and a histogram is a fixed array of bucket counters plus its sum in
//! micro-seconds. Counting is a relaxed atomic add: no lock, no allocation on the job and
//! poll paths; only `render` (a scrape) builds text.

use crate::job::Action;
use crate::plugins::snmp::traps::Dropped;
use crate::plugins::{Probe, Prober, PROBERS};
use crate::store::{Outcome, Result as StoreResult, Unavailable};
use std::fmt::{Display, Write};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Instant;

/// The content type of `render`'s text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A label and its values, in the order of the array index that stands for each.
struct Label {
    name: &'static str,
    values: &'static [&'static str],
}

const ACTIONS: [&str; 4] = ["create", "delete", "modify", "other"];
/// The probers' labels, in the order of `plugins::PROBERS`.
static PROBE_TYPES: [&str; PROBERS.len()] = {
    let mut labels = [""; PROBERS.len()];
    let mut i = 0;
    while i < labels.len() {
        labels[i] = PROBERS[i].label;
        i += 1;
    }
    labels
};
const OUTCOMES: [&str; 4] = ["up", "down", "state", "no_answer"];
const STATUSES: [&str; 4] = ["UP", "DOWN", "OTHER", "UNKNOWN"];
const TXN_RESULTS: [&str; 3] = ["applied", "conflict", "error"];
const WATCHES: [&str; 4] = ["jobs", "registry", "members", "shards"];
const HANDOVER_WAYS: [&str; 2] = ["taken", "given"];
const OPEN_RESULTS: [&str; 2] = ["ok", "failed"];
const TRAP_VERSIONS: [&str; 3] = ["1", "2c", "3"];
const TRIGGERS: [&str; 2] = ["trap", "uve"];

const ACTION: Label = Label { name: "action", values: &ACTIONS };
const PROBE_TYPE: Label = Label { name: "type", values: &PROBE_TYPES };
const OUTCOME: Label = Label { name: "outcome", values: &OUTCOMES };
const STATUS: Label = Label { name: "status", values: &STATUSES };
const TXN_RESULT: Label = Label { name: "result", values: &TXN_RESULTS };
const WATCH: Label = Label { name: "watch", values: &WATCHES };
const HANDOVER_WAY: Label = Label { name: "way", values: &HANDOVER_WAYS };
const OPEN_RESULT: Label = Label { name: "result", values: &OPEN_RESULTS };
const TRAP_VERSION: Label = Label { name: "version", values: &TRAP_VERSIONS };
const DROP_REASON: Label = Label { name: "reason", values: &Dropped::LABELS };
const TRIGGER: Label = Label { name: "by", values: &TRIGGERS };
const RETRY_CAUSE: Label = Label { name: "cause", values: &Unavailable::LABELS };

/// Counters, one per label value (or combination of label values).
struct Counters<const N: usize>([AtomicU64; N]);

impl<const N: usize> Counters<N> {
    const fn new() -> Self {
        Counters([const { AtomicU64::new(0) }; N])
    }
    fn add(&self, i: usize, n: u64) {
        self.0[i].fetch_add(n, Relaxed);
    }
}

/// Gauges, one per label value.
struct Gauges<const N: usize>([AtomicI64; N]);

impl<const N: usize> Gauges<N> {
    const fn new() -> Self {
        Gauges([const { AtomicI64::new(0) }; N])
    }
    fn add(&self, i: usize, n: i64) {
        self.0[i].fetch_add(n, Relaxed);
    }
    fn set(&self, i: usize, v: i64) {
        self.0[i].store(v, Relaxed);
    }
}

/// Upper bounds of every histogram's buckets: in micro-seconds, and as written in `le`.
const BUCKETS: [(u64, &str); 18] = [
    (500, "0.0005"),
    (1_000, "0.001"),
    (2_500, "0.0025"),
    (5_000, "0.005"),
    (10_000, "0.01"),
    (25_000, "0.025"),
    (50_000, "0.05"),
    (100_000, "0.1"),
    (250_000, "0.25"),
    (500_000, "0.5"),
    (1_000_000, "1"),
    (2_500_000, "2.5"),
    (5_000_000, "5"),
    (10_000_000, "10"),
    (30_000_000, "30"),
    (60_000_000, "60"),
    (120_000_000, "120"),
    (u64::MAX, "+Inf"),
];

/// A duration histogram: each observation goes to the first bucket whose bound it does not
/// exceed (buckets are made cumulative when rendered, and their total is the count).
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    sum_us: AtomicU64,
}

impl Histogram {
    const fn new() -> Self {
        Histogram { buckets: [const { AtomicU64::new(0) }; BUCKETS.len()], sum_us: AtomicU64::new(0) }
    }

    fn observe_since(&self, started: Instant) {
        self.observe_us(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
    }

    fn observe_us(&self, us: u64) {
        let i = BUCKETS.iter().position(|(bound, _)| us <= *bound).unwrap_or(BUCKETS.len() - 1);
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum_us.fetch_add(us, Relaxed);
    }
}

static JOBS_RECEIVED: Counters<{ ACTIONS.len() }> = Counters::new();
static JOBS_COMPLETED: Counters<{ ACTIONS.len() }> = Counters::new();
static JOBS_FAILED: Counters<{ ACTIONS.len() }> = Counters::new();
static JOBS_UNPARSEABLE: Counters<1> = Counters::new();
static JOB_RETRIES: Counters<{ Unavailable::LABELS.len() }> = Counters::new();
static JOB_DURATION: Histogram = Histogram::new();
static POOL_BUSY: Gauges<1> = Gauges::new();
static PROBE_RESULTS: Counters<{ PROBE_TYPES.len() * OUTCOMES.len() }> = Counters::new();
static PROBE_DURATION: [Histogram; PROBE_TYPES.len()] = [const { Histogram::new() }; PROBE_TYPES.len()];
static OBJECTS: Gauges<{ STATUSES.len() }> = Gauges::new();
static ETCD_TXNS: Counters<{ TXN_RESULTS.len() }> = Counters::new();
static ETCD_BATCH_DURATION: Histogram = Histogram::new();
static ETCD_READ_DURATION: Histogram = Histogram::new();
static WATCH_RESTARTS: Counters<{ WATCHES.len() }> = Counters::new();
static LEASE_HELD: Gauges<1> = Gauges::new();
static NETCONF_SESSIONS: Gauges<1> = Gauges::new();
static NETCONF_OPENS: Counters<{ OPEN_RESULTS.len() }> = Counters::new();
static NETCONF_RECONNECTS: Counters<1> = Counters::new();
static READY: Gauges<1> = Gauges::new();
static SHARDS_OWNED: Gauges<1> = Gauges::new();
static MEMBERS: Gauges<1> = Gauges::new();
static HANDOVERS: Counters<{ HANDOVER_WAYS.len() }> = Counters::new();
static FENCED_WRITES: Counters<1> = Counters::new();
static MONITORING_WRITES: Counters<1> = Counters::new();
static TRAPS_RECEIVED: Counters<{ TRAP_VERSIONS.len() }> = Counters::new();
static TRAPS_DROPPED: Counters<{ Dropped::LABELS.len() }> = Counters::new();
static TRIGGERED_POLLS: Counters<{ TRIGGERS.len() }> = Counters::new();
static UVE_STREAM_RECONNECTS: Counters<1> = Counters::new();
static UVE_STREAM_CHANGES: Counters<1> = Counters::new();

fn action(a: &Action) -> usize {
    match a {
        Action::Create => 0,
        Action::Delete => 1,
        Action::Other(a) if a == "modify" => 2,
        Action::Other(_) => 3,
    }
}

/// A pool thread took a job from the work queue.
pub fn job_received(a: &Action) {
    JOBS_RECEIVED.add(action(a), 1);
}

/// etcd confirmed a job's commit; `started` is when its claim was sent.
pub fn job_committed(a: &Action, failed: bool, started: Instant) {
    let counters = if failed { &JOBS_FAILED } else { &JOBS_COMPLETED };
    counters.add(action(a), 1);
    JOB_DURATION.observe_since(started);
}

/// A `/jobs/all` entry of this handler could not be parsed.
pub fn job_unparseable() {
    JOBS_UNPARSEABLE.add(0, 1);
}

/// A job found etcd unavailable and waits to run again.
pub fn job_retried(cause: Unavailable) {
    JOB_RETRIES.add(cause as usize, 1);
}

/// A NETCONF session was opened (or failed to open); `again` after a session of the same
/// login failed.
pub fn netconf_opened(ok: bool, again: bool) {
    NETCONF_OPENS.add(usize::from(!ok), 1);
    if ok {
        NETCONF_SESSIONS.add(0, 1);
        if again {
            NETCONF_RECONNECTS.add(0, 1);
        }
    }
}

/// An open NETCONF session was closed (it failed, or it was idle).
pub fn netconf_closed() {
    NETCONF_SESSIONS.add(0, -1);
}

/// Counts a pool thread as busy until dropped.
pub struct Busy(());

pub fn busy() -> Busy {
    POOL_BUSY.add(0, 1);
    Busy(())
}

impl Drop for Busy {
    fn drop(&mut self) {
        POOL_BUSY.add(0, -1);
    }
}

fn outcome(p: &Probe) -> usize {
    match p {
        Probe::Up => 0,
        Probe::Down => 1,
        Probe::State(_) => 2,
        Probe::NoAnswer(_) => 3,
    }
}

/// One probe request, started at `started`, answered `results` (one per object).
pub fn probed(prober: &'static Prober, started: Instant, results: &[Probe]) {
    let t = prober.index();
    PROBE_DURATION[t].observe_since(started);
    let mut tally = [0u64; OUTCOMES.len()];
    for p in results {
        tally[outcome(p)] += 1;
    }
    for (o, n) in tally.into_iter().enumerate().filter(|(_, n)| *n > 0) {
        PROBE_RESULTS.add(t * OUTCOMES.len() + o, n);
    }
}

/// What `systemctl status` shows of the service: jobs completed and failed since start, and
/// the objects polled now, by status.
pub fn summary() -> String {
    let total = |c: &Counters<{ ACTIONS.len() }>| c.0.iter().map(|a| a.load(Relaxed)).sum::<u64>();
    let objects: Vec<i64> = OBJECTS.0.iter().map(|g| g.load(Relaxed)).collect();
    format!(
        "{} jobs completed, {} failed; {} objects polled: {} up, {} down, {} other, {} unconfirmed",
        total(&JOBS_COMPLETED),
        total(&JOBS_FAILED),
        objects.iter().sum::<i64>(),
        objects[0],
        objects[1],
        objects[2],
        objects[3]
    )
}

/// The `status` series a monitored object is counted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectStatus(usize);

impl ObjectStatus {
    /// From a confirmed status (`None`: not confirmed yet).
    pub fn of(confirmed: Option<&str>) -> ObjectStatus {
        ObjectStatus(match confirmed {
            Some("UP") => 0,
            Some("DOWN") => 1,
            Some(_) => 2,
            None => 3,
        })
    }
}

/// The scheduler took up (`delta` 1) or let go of (-1) an object with this confirmed status.
pub fn objects_held(confirmed: Option<&str>, delta: i64) {
    OBJECTS.add(ObjectStatus::of(confirmed).0, delta);
}

/// An object's confirmed status changed.
pub fn object_moved(from: ObjectStatus, to: Option<&str>) {
    OBJECTS.add(from.0, -1);
    objects_held(to, 1);
}

/// The writer sent a batch at `started` and etcd answered `results`.
pub fn etcd_batch(started: Instant, results: &[StoreResult<Outcome>]) {
    ETCD_BATCH_DURATION.observe_since(started);
    let mut tally = [0u64; TXN_RESULTS.len()];
    for r in results {
        tally[match r {
            Ok(o) if o.applied => 0,
            Ok(_) => 1,
            Err(_) => 2,
        }] += 1;
    }
    for (i, n) in tally.into_iter().enumerate() {
        ETCD_TXNS.add(i, n);
    }
}

/// Times an etcd read until dropped.
pub struct ReadTimer(Instant);

pub fn etcd_read() -> ReadTimer {
    ReadTimer(Instant::now())
}

impl Drop for ReadTimer {
    fn drop(&mut self) {
        ETCD_READ_DURATION.observe_since(self.0);
    }
}

/// Which watch broke.
#[derive(Debug, Clone, Copy)]
pub enum Watched {
    Jobs = 0,
    Registry = 1,
    Members = 2,
    Shards = 3,
}

impl Watched {
    /// Its `watch` label: `jobs` or `registry`.
    pub fn label(self) -> &'static str {
        WATCHES[self as usize]
    }
}

/// A watch broke and its prefix is read again.
pub fn watch_restarted(w: Watched) {
    WATCH_RESTARTS.add(w as usize, 1);
}

/// The lease is held while this lives (the keep-alive task owns it).
pub struct LeaseHeld(());

pub fn lease_held() -> LeaseHeld {
    LEASE_HELD.set(0, 1);
    LeaseHeld(())
}

impl Drop for LeaseHeld {
    fn drop(&mut self) {
        LEASE_HELD.set(0, 0);
    }
}

/// How many shards this instance holds and polls, and how many members are live.
pub fn set_shards(owned: usize, members: usize) {
    SHARDS_OWNED.set(0, owned as i64);
    MEMBERS.set(0, members as i64);
}

/// Shards claimed after another member held them (`taken`) or released to one (`given`).
pub fn handed_over(taken: bool, n: usize) {
    HANDOVERS.add(usize::from(!taken), n as u64);
}

/// A `/monitoring` write etcd applied.
pub fn monitoring_written() {
    MONITORING_WRITES.add(0, 1);
}

/// A `/monitoring` write refused by the shard fence, or withheld because the lease may have
/// expired.
pub fn write_fenced() {
    FENCED_WRITES.add(0, 1);
}

/// A trap or inform believed, by SNMP version (0: v1, 1: v2c, 3).
pub fn trap_received(version: i64) {
    TRAPS_RECEIVED.add(match version { 0 => 0, 1 => 1, _ => 2 }, 1);
}

/// A datagram the trap receiver dropped.
pub fn trap_dropped(reason: Dropped) {
    TRAPS_DROPPED.add(reason.index(), 1);
}

/// Polls made at once because of an event (one per device or VMI triggered), `by` "trap" or "uve".
pub fn poll_triggered(by: &str) {
    TRIGGERED_POLLS.add(usize::from(by != "trap"), 1);
}

/// The UVE stream was connected again after it broke or could not be opened.
pub fn uve_stream_reconnected() {
    UVE_STREAM_RECONNECTS.add(0, 1);
}

/// An `l2_active` change seen on the UVE stream.
pub fn uve_stream_change() {
    UVE_STREAM_CHANGES.add(0, 1);
}

/// The service is ready (READY=1 was sent) or, with false, stopping.
pub fn set_ready(ready: bool) {
    READY.set(0, i64::from(ready));
}

/// What `/healthz` says: healthy once ready and while the lease is held (claims can be made).
pub fn health() -> Result<(), &'static str> {
    if READY.0[0].load(Relaxed) == 0 {
        Err("not ready: waiting for etcd and the first reads of the job table and the registry, or stopping")
    } else if LEASE_HELD.0[0].load(Relaxed) == 0 {
        Err("no etcd lease: jobs cannot be claimed until it is kept alive again")
    } else {
        Ok(())
    }
}

/// The lease was revoked.
pub fn lease_released() {
    LEASE_HELD.set(0, 0);
}

/// Values the registry does not hold, read when `/metrics` is asked for.
pub struct Sampled {
    pub queue_depth: usize,
    pub queue_capacity: usize,
}

/// Every metric in the Prometheus text format.
pub fn render(sampled: &Sampled) -> String {
    let mut t = Text(String::with_capacity(16 * 1024));
    t.head("esi_monitor_build_info", "gauge", "Always 1; the labels are the running esi-monitor's version and git revision.");
    let labels = format!("{{version=\"{}\",revision=\"{}\"}}", env!("CARGO_PKG_VERSION"), env!("ESI_MONITOR_REVISION"));
    t.sample("esi_monitor_build_info", &labels, 1);
    t.counters(
        "esi_monitor_jobs_received_total",
        "Monitoring jobs a pool thread took from the work queue to claim and run, by action (a job retried after an etcd error counts again).",
        &[&ACTION],
        &JOBS_RECEIVED,
    );
    t.counters(
        "esi_monitor_jobs_completed_total",
        "Monitoring jobs committed as completed, by action (on_failure: ignore jobs whose execution failed included).",
        &[&ACTION],
        &JOBS_COMPLETED,
    );
    t.counters(
        "esi_monitor_jobs_failed_total",
        "Monitoring jobs committed as failed (worker_state <ACTION>_FAILED), by action.",
        &[&ACTION],
        &JOBS_FAILED,
    );
    t.counters(
        "esi_monitor_jobs_unparseable_total",
        "/jobs/all entries of this handler that could not be parsed and are left in place (counted at each read of the job table).",
        &[],
        &JOBS_UNPARSEABLE,
    );
    t.counters(
        "esi_monitor_job_retries_total",
        "Job attempts that found etcd unavailable, after which the job waits and runs again (never fails), by cause: election (no leader, leader changed), timeout, connection, overload (too many requests), contention (its job state kept changing), stopping.",
        &[&RETRY_CAUSE],
        &JOB_RETRIES,
    );
    t.histograms(
        "esi_monitor_job_duration_seconds",
        "Time from sending a job's claim to etcd confirming its commit.",
        &[],
        std::slice::from_ref(&JOB_DURATION),
    );
    t.head("esi_monitor_work_queue_depth", "gauge", "Runnable jobs waiting in the work queue for a pool thread.");
    t.sample("esi_monitor_work_queue_depth", "", sampled.queue_depth);
    t.head("esi_monitor_work_queue_capacity", "gauge", "Capacity of the work queue (worker.queue).");
    t.sample("esi_monitor_work_queue_capacity", "", sampled.queue_capacity);
    t.gauges(
        "esi_monitor_pool_threads_busy",
        "Pool threads executing jobs or polling right now.",
        &[],
        &POOL_BUSY,
    );
    t.counters(
        "esi_monitor_probe_results_total",
        "Probe results, one per object probed (by the poller, or by a job in verify mode), by probe type and outcome (no_answer: no usable answer, e.g. a timeout or an error).",
        &[&PROBE_TYPE, &OUTCOME],
        &PROBE_RESULTS,
    );
    t.histograms(
        "esi_monitor_probe_duration_seconds",
        "Time of one probe request, by probe type: per poll task (one SNMP request for all polled ports of a device, one bulk request for up to 100 VMIs) or per object probed in verify mode.",
        &[&PROBE_TYPE],
        &PROBE_DURATION,
    );
    t.gauges(
        "esi_monitor_objects",
        "Monitored objects the scheduler holds, by confirmed status (UNKNOWN: not confirmed yet or not polled by this version; OTHER: a named state such as MASTER).",
        &[&STATUS],
        &OBJECTS,
    );
    t.counters(
        "esi_monitor_etcd_txns_total",
        "etcd transactions sent by the writer thread, by result (conflict: a compare failed and nothing was applied; error: etcd gave no answer).",
        &[&TXN_RESULT],
        &ETCD_TXNS,
    );
    t.histograms(
        "esi_monitor_etcd_txn_batch_duration_seconds",
        "Time etcd took to answer one batch of transactions sent together by the writer thread (1 to 128 transactions).",
        &[],
        std::slice::from_ref(&ETCD_BATCH_DURATION),
    );
    t.histograms(
        "esi_monitor_etcd_read_duration_seconds",
        "Time of one etcd read outside the writer thread (a key, several keys at one revision, or every key under a prefix).",
        &[],
        std::slice::from_ref(&ETCD_READ_DURATION),
    );
    t.counters(
        "esi_monitor_watch_restarts_total",
        "Times a watch broke and its prefix was read again (jobs: /jobs/, registry: the monitoring registry, members and shards: /esi-worker/members/ and /esi-worker/shards/).",
        &[&WATCH],
        &WATCH_RESTARTS,
    );
    t.gauges(
        "esi_monitor_lease_held",
        "1 while this instance's etcd lease is granted and kept alive; 0 after a keep-alive failed, the lease expired or was revoked.",
        &[],
        &LEASE_HELD,
    );
    t.gauges("esi_monitor_shards_owned", "Shards (of 256) this instance has claimed and polls.", &[], &SHARDS_OWNED);
    t.gauges("esi_monitor_members", "Live esi-monitor instances sharing the polling (members with a lease), this one included.", &[], &MEMBERS);
    t.counters(
        "esi_monitor_handovers_total",
        "Shards claimed that another member held before (taken), and shards released for another member (given).",
        &[&HANDOVER_WAY],
        &HANDOVERS,
    );
    t.counters(
        "esi_monitor_monitoring_writes_total",
        "/monitoring records written (etcd applied the write).",
        &[],
        &MONITORING_WRITES,
    );
    t.counters(
        "esi_monitor_fenced_writes_total",
        "/monitoring writes refused by etcd because this instance no longer held the resource's shard claim, or withheld because its lease may have expired.",
        &[],
        &FENCED_WRITES,
    );
    t.counters(
        "esi_monitor_traps_received_total",
        "SNMP traps and informs believed (a registered device, its community or a profile's, or a v3 user with a right digest), by SNMP version.",
        &[&TRAP_VERSION],
        &TRAPS_RECEIVED,
    );
    t.counters(
        "esi_monitor_traps_dropped_total",
        "Datagrams the trap receiver dropped, by reason: malformed, unknown_sender (not a device polled here), wrong_community, unknown_user (no v3 profile has it), bad_auth (wrong digest, no authentication, or not decryptable), stale (outside the v3 time window), unsupported (v3 informs, requests).",
        &[&DROP_REASON],
        &TRAPS_DROPPED,
    );
    t.counters(
        "esi_monitor_triggered_polls_total",
        "Polls of a device or VMI made at once because of an event, by what told: trap or uve (the Contrail UVE stream).",
        &[&TRIGGER],
        &TRIGGERED_POLLS,
    );
    t.counters(
        "esi_monitor_uve_stream_reconnects_total",
        "Times the Contrail UVE stream was connected again after it broke or could not be opened.",
        &[],
        &UVE_STREAM_RECONNECTS,
    );
    t.counters(
        "esi_monitor_uve_stream_changes_total",
        "Changes of a VMI's l2_active seen on the Contrail UVE stream.",
        &[],
        &UVE_STREAM_CHANGES,
    );
    t.gauges("esi_monitor_netconf_sessions", "NETCONF sessions open now (one per device login).", &[], &NETCONF_SESSIONS);
    t.counters(
        "esi_monitor_netconf_session_opens_total",
        "NETCONF sessions opened (TCP, SSH handshake, password authentication, hello), by result.",
        &[&OPEN_RESULT],
        &NETCONF_OPENS,
    );
    t.counters(
        "esi_monitor_netconf_reconnects_total",
        "NETCONF sessions opened again after a session of the same login failed (timeout, end of stream, framing error, message-id mismatch).",
        &[],
        &NETCONF_RECONNECTS,
    );
    t.gauges(
        "esi_monitor_ready",
        "1 once etcd answered and the job table and registry were read (sd_notify READY); 0 before, and while stopping.",
        &[],
        &READY,
    );
    t.0
}

/// The exposition text being written.
struct Text(String);

impl Text {
    fn head(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &str, value: impl Display) {
        let _ = writeln!(self.0, "{name}{labels} {value}");
    }

    fn counters<const N: usize>(&mut self, name: &str, help: &str, dims: &[&Label], c: &Counters<N>) {
        self.head(name, "counter", help);
        for (i, v) in c.0.iter().enumerate() {
            self.sample(name, &labels(dims, i, None), v.load(Relaxed));
        }
    }

    fn gauges<const N: usize>(&mut self, name: &str, help: &str, dims: &[&Label], g: &Gauges<N>) {
        self.head(name, "gauge", help);
        for (i, v) in g.0.iter().enumerate() {
            self.sample(name, &labels(dims, i, None), v.load(Relaxed));
        }
    }

    fn histograms(&mut self, name: &str, help: &str, dims: &[&Label], hs: &[Histogram]) {
        self.head(name, "histogram", help);
        for (i, h) in hs.iter().enumerate() {
            let mut cumulative = 0;
            for ((_, le), n) in BUCKETS.iter().zip(&h.buckets) {
                cumulative += n.load(Relaxed);
                self.sample(&format!("{name}_bucket"), &labels(dims, i, Some(le)), cumulative);
            }
            let sum = h.sum_us.load(Relaxed) as f64 / 1e6;
            self.sample(&format!("{name}_sum"), &labels(dims, i, None), sum);
            self.sample(&format!("{name}_count"), &labels(dims, i, None), cumulative);
        }
    }
}

/// The label set of series `i` of a family over `dims` (the last label varies fastest),
/// plus `le` for a histogram bucket.
fn labels(dims: &[&Label], i: usize, le: Option<&str>) -> String {
    let mut pairs = Vec::with_capacity(dims.len() + 1);
    let mut rest = i;
    for d in dims.iter().rev() {
        pairs.push(format!("{}=\"{}\"", d.name, d.values[rest % d.values.len()]));
        rest /= d.values.len();
    }
    pairs.reverse();
    pairs.extend(le.map(|le| format!("le=\"{le}\"")));
    if pairs.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", pairs.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use regex_lite::Regex;
    use std::collections::{BTreeMap, HashMap};

    /// A parsed sample: name, labels, value.
    type Sample = (String, BTreeMap<String, String>, f64);

    /// Checks the exposition text as a scraper would read it and returns its samples.
    fn check(text: &str) -> Vec<Sample> {
        let name_re = Regex::new(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$").unwrap();
        let sample_re = Regex::new(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$").unwrap();
        let label_re = Regex::new(r#"^([a-zA-Z_][a-zA-Z0-9_]*)="([^"\\\n]*)"$"#).unwrap();
        let (mut help, mut kind): (HashMap<String, usize>, HashMap<String, String>) = Default::default();
        let mut samples = Vec::new();
        let mut finished: Vec<String> = Vec::new();
        let mut current = String::new();
        for (n, line) in text.lines().enumerate() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, text) = rest.split_once(' ').unwrap_or_else(|| panic!("line {n}: HELP without text"));
                assert!(name_re.is_match(name) && !text.trim().is_empty(), "line {n}: {line}");
                *help.entry(name.into()).or_default() += 1;
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, k) = rest.split_once(' ').unwrap_or_else(|| panic!("line {n}: TYPE without type"));
                assert!(["counter", "gauge", "histogram"].contains(&k), "line {n}: {line}");
                assert!(help.contains_key(name), "line {n}: TYPE of {name} before its HELP");
                assert!(kind.insert(name.into(), k.into()).is_none(), "{name}: TYPE twice");
                if !current.is_empty() {
                    finished.push(std::mem::take(&mut current));
                }
                assert!(!finished.contains(&name.to_string()), "{name}: its samples are split");
                current = name.into();
                continue;
            }
            assert!(!line.starts_with('#') && !line.is_empty(), "line {n}: stray {line:?}");
            let c = sample_re.captures(line).unwrap_or_else(|| panic!("line {n}: not a sample: {line:?}"));
            let name = c[1].to_string();
            let family = match kind.get(current.as_str()).map(String::as_str) {
                Some("histogram") => ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_prefix(current.as_str()).filter(|r| r == s))
                    .map(|_| current.clone()),
                Some(_) => (name == current).then(|| current.clone()),
                None => None,
            };
            assert!(family.is_some(), "line {n}: {name} is not of the family declared before it ({current})");
            let mut labels = BTreeMap::new();
            if let Some(set) = c.get(2) {
                let inner = &set.as_str()[1..set.as_str().len() - 1];
                for pair in inner.split(',') {
                    let l = label_re.captures(pair).unwrap_or_else(|| panic!("line {n}: bad label {pair:?}"));
                    assert!(labels.insert(l[1].to_string(), l[2].to_string()).is_none(), "line {n}: label twice");
                }
            }
            let value: f64 = match &c[3] {
                "+Inf" => f64::INFINITY,
                v => v.parse().unwrap_or_else(|_| panic!("line {n}: bad value {v:?}")),
            };
            samples.push((name, labels, value));
        }
        for (name, count) in &help {
            assert_eq!(*count, 1, "{name}: HELP {count} times");
            assert!(kind.contains_key(name), "{name}: no TYPE");
            let prefix = if kind[name] == "histogram" { format!("{name}_") } else { name.clone() };
            assert!(samples.iter().any(|s| s.0 == *name || s.0.starts_with(&prefix)), "{name}: no sample");
        }
        // Histograms: cumulative buckets ending at le="+Inf", which equals _count.
        let series_of = |labels: &BTreeMap<String, String>| format!("{:?}", labels.iter().filter(|(k, _)| *k != "le").collect::<Vec<_>>());
        for (name, _) in kind.iter().filter(|(_, k)| *k == "histogram") {
            let mut series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
            for (s, labels, v) in samples.iter().filter(|s| s.0 == format!("{name}_bucket")) {
                let le = labels.get("le").unwrap_or_else(|| panic!("{s} without le"));
                let bound = if le == "+Inf" { f64::INFINITY } else { le.parse().expect("le is a number") };
                series.entry(series_of(labels)).or_default().push((bound, *v));
            }
            assert!(!series.is_empty(), "{name}: no buckets");
            for (key, buckets) in series {
                let cumulative = buckets.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1);
                assert!(cumulative, "{name} {key}: buckets not cumulative: {buckets:?}");
                let last = buckets.last().unwrap();
                assert_eq!(last.0, f64::INFINITY, "{name} {key}: the last bucket is +Inf");
                let find = |suffix: &str| {
                    let sample = samples.iter().find(|(s, l, _)| *s == format!("{name}{suffix}") && series_of(l) == key);
                    sample.unwrap_or_else(|| panic!("{name}{suffix} {key} is missing")).2
                };
                assert_eq!(find("_count"), last.1, "{name} {key}: le=\"+Inf\" equals _count");
                assert!(find("_sum") >= 0.0);
            }
        }
        samples
    }

    fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
        let want: BTreeMap<String, String> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        samples
            .iter()
            .find(|(n, l, _)| n == name && *l == want)
            .unwrap_or_else(|| panic!("{name} {labels:?} is missing"))
            .2
    }

    fn scrape() -> Vec<Sample> {
        check(&render(&Sampled { queue_depth: 3, queue_capacity: 1024 }))
    }

    #[test]
    fn the_exposition_text_is_well_formed() {
        let before = scrape();
        let modify = Action::Other("modify".into());
        job_received(&modify);
        job_committed(&modify, false, Instant::now());
        job_committed(&Action::Other("frobnicate".into()), true, Instant::now());
        probed(&crate::plugins::snmp::PORTS, Instant::now(), &[Probe::Up, Probe::Up, Probe::NoAnswer("timeout".into())]);
        etcd_batch(Instant::now(), &[Ok(Outcome { applied: false, read: Vec::new() })]);
        objects_held(None, 2);
        object_moved(ObjectStatus::of(None), Some("DOWN"));
        object_moved(ObjectStatus::of(None), Some("MASTER"));
        let after = scrape();
        let delta = |name: &str, labels: &[(&str, &str)]| value(&after, name, labels) - value(&before, name, labels);
        assert!(delta("esi_monitor_jobs_received_total", &[("action", "modify")]) >= 1.0);
        assert!(delta("esi_monitor_jobs_completed_total", &[("action", "modify")]) >= 1.0);
        assert!(delta("esi_monitor_jobs_failed_total", &[("action", "other")]) >= 1.0, "unknown actions are other");
        assert!(delta("esi_monitor_job_duration_seconds_count", &[]) >= 2.0);
        assert!(delta("esi_monitor_probe_results_total", &[("type", "snmp_port"), ("outcome", "up")]) >= 2.0);
        assert!(delta("esi_monitor_probe_results_total", &[("type", "snmp_port"), ("outcome", "no_answer")]) >= 1.0);
        assert!(delta("esi_monitor_probe_duration_seconds_count", &[("type", "snmp_port")]) >= 1.0, "one per request");
        assert!(delta("esi_monitor_etcd_txns_total", &[("result", "conflict")]) >= 1.0);
        let objects = |status: &str| delta("esi_monitor_objects", &[("status", status)]);
        assert_eq!((objects("UNKNOWN"), objects("DOWN"), objects("OTHER"), objects("UP")), (0.0, 1.0, 1.0, 0.0));
        assert_eq!(value(&after, "esi_monitor_work_queue_depth", &[]), 3.0);
        let build = [("version", env!("CARGO_PKG_VERSION")), ("revision", env!("ESI_MONITOR_REVISION"))];
        assert_eq!(value(&after, "esi_monitor_build_info", &build), 1.0);
    }

    #[test]
    fn a_histogram_counts_each_observation_in_its_bucket_and_sums_micro_seconds() {
        let h = Histogram::new();
        h.observe_us(300); // ≤ 0.0005
        h.observe_us(1_000); // ≤ 0.001, on the bound
        h.observe_us(3_000_000); // ≤ 5
        h.observe_us(500_000_000); // only +Inf
        let mut t = Text(String::new());
        t.histograms("x_seconds", "A test histogram.", &[&WATCH], std::slice::from_ref(&h));
        let samples = check(&t.0);
        let bucket = |le: &str| value(&samples, "x_seconds_bucket", &[("watch", "jobs"), ("le", le)]);
        assert_eq!((bucket("0.0005"), bucket("0.001"), bucket("2.5"), bucket("5"), bucket("120")), (1.0, 2.0, 2.0, 3.0, 3.0));
        assert_eq!(bucket("+Inf"), 4.0);
        assert_eq!(value(&samples, "x_seconds_sum", &[("watch", "jobs")]), 503.0013);
    }

    #[test]
    fn two_labels_enumerate_every_combination() {
        let seen: Vec<String> = (0..PROBE_TYPES.len() * OUTCOMES.len()).map(|i| labels(&[&PROBE_TYPE, &OUTCOME], i, None)).collect();
        assert_eq!(seen[0], r#"{type="contrail_vmi",outcome="up"}"#);
        assert_eq!(seen[OUTCOMES.len() + 3], r#"{type="contrail_vn",outcome="no_answer"}"#);
        assert_eq!(seen.iter().collect::<std::collections::HashSet<_>>().len(), seen.len());
        assert_eq!(labels(&[], 0, Some("+Inf")), r#"{le="+Inf"}"#);
    }

    #[test]
    fn the_checker_rejects_broken_text() {
        let bad = [
            ("# HELP a_total A.\n# TYPE a_total counter\na_total 1\n# HELP a_total A.\n", "HELP 2 times"),
            ("# HELP a_total A.\n# TYPE a_total counter\nb_total 1\n", "not of the family"),
            ("# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 0\nh_count 1\n", "not cumulative"),
            ("# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 0\nh_count 1\n", "equals _count"),
            ("# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 0\nh_count 1\n", "is +Inf"),
            ("# HELP a_total A.\n# TYPE a_total counter\na_total{x=1} 1\n", "bad label"),
            ("# HELP 1a A.\n# TYPE 1a gauge\n1a 1\n", "HELP 1a"),
            ("# HELP a_total A.\n# TYPE a_total counter\n", "no sample"),
            ("# HELP a_total A.\n# TYPE a_total counter\na_total one\n", "bad value"),
        ];
        check("# HELP g A gauge.\n# TYPE g gauge\ng{a=\"x\"} -1\n"); // the checker does accept something
        for (text, why) in bad {
            let caught = std::panic::catch_unwind(|| check(text)).expect_err(text);
            let message = caught.downcast_ref::<String>().cloned().unwrap_or_default();
            assert!(message.contains(why), "{text}: rejected with {message:?}, expected {why:?}");
        }
    }
}
