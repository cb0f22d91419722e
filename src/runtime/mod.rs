//! The running service: the watcher thread, the bounded work queue, the pool of OS threads
//! that execute jobs, and the writer thread that owns every etcd mutation.

pub mod execute;
pub mod follow;
pub mod listener;
pub mod membership;
pub mod poll;
pub mod scheduler;
pub mod supervisor;
pub mod traps;
pub mod uve;
pub mod verdict;
pub mod watcher;
pub mod writer;

use crate::config::Config;
use crate::keys::Plurals;
use crate::plugins::Clients;
use crate::store::Store;
use crate::template::Limits;
use crossbeam_channel::{bounded, unbounded, Receiver, Sender};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use writer::Writer;

/// Most jobs one pool thread sends through etcd together.
const BATCH: usize = 16;

/// What every pool thread shares.
pub struct Context {
    /// The running configuration; a reload (SIGHUP) replaces it.
    config: RwLock<Arc<Config>>,
    pub store: Store,
    pub writer: Writer,
    pub plurals: Plurals,
    /// The probers' clients (verify mode and the poller).
    pub clients: Arc<Clients>,
    pub limits: Limits,
    /// This instance's id, the first part of its claim tokens.
    pub instance: String,
    /// Set when the service is stopping: queued jobs are left for other instances.
    pub stopping: AtomicBool,
}

impl Context {
    /// The configuration as it is now (read it once per job: a reload may replace it).
    pub fn config(&self) -> Arc<Config> {
        self.config.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set_config(&self, config: Config) {
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(config);
    }
}

/// Connects to etcd, serves jobs and polls the registered objects until `stop` fires or
/// is closed; applies the configurations sent on `reloads` (already validated).
pub fn run(config: Config, stop: Receiver<()>, reloads: Receiver<Config>) -> Result<(), String> {
    let status_listener = match config.metrics.listen.as_str() {
        "" => None,
        addr => Some(std::net::TcpListener::bind(addr).map_err(|e| format!("metrics.listen {addr}: {e}"))?),
    };
    // The listener answers from the start: /healthz says why the service is not ready yet.
    let (work_tx, work_rx) = bounded::<watcher::Work>(config.worker.queue);
    let (query_tx, query_rx) = bounded::<scheduler::Query>(16);
    let waiting = watcher::Waiting::default();
    if let Some(l) = status_listener {
        let asked = listener::Asked { queries: query_tx, queue: work_rx.clone(), waiting: waiting.clone() };
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("listener".into())
            .spawn(move || listener::run(l, asked, stop))
            .map_err(|e| format!("cannot start the status listener: {e}"))?;
    }
    let Some((store, lease)) = connect(&config, &stop) else {
        return Ok(()); // stopped before etcd answered
    };
    let instance = uuid::Uuid::new_v4().to_string();
    log::info!(
        "esi-monitor {} (git {}) started: instance {instance}, lease {lease:x}, {} worker threads, verify mode {}",
        env!("CARGO_PKG_VERSION"),
        env!("ESI_MONITOR_REVISION"),
        config.worker.threads,
        if config.jobs.verify { "on" } else { "off" }
    );
    let clients = Arc::new(Clients::new(&config, Some(store.clone()))?);
    let polling = config.monitoring.enabled;
    let (events_tx, events_rx) = unbounded::<scheduler::Event>();
    if polling && !config.snmp.trap_listen.is_empty() {
        let socket = traps::bind(&config.snmp.trap_listen)?;
        log::info!("receiving SNMP traps on {}", config.snmp.trap_listen);
        let (clients, events, stop) = (clients.clone(), events_tx.clone(), stop.clone());
        std::thread::Builder::new()
            .name("traps".into())
            .spawn(move || traps::run(socket, clients, events, stop))
            .map_err(|e| format!("cannot start the trap receiver: {e}"))?;
    }
    if polling && config.contrail.uve_stream {
        let (url, timeout, events, stop) = (config.contrail.analytics_url.clone(), config.contrail_timeout(), events_tx.clone(), stop.clone());
        std::thread::Builder::new()
            .name("uve-stream".into())
            .spawn(move || uve::run(&url, timeout, events, stop))
            .map_err(|e| format!("cannot start the UVE stream thread: {e}"))?;
    }
    drop(events_tx);
    let (writer, writer_thread) = Writer::start(store.clone())?;
    let ctx = Arc::new(Context {
        plurals: Plurals::new(&config.plurals),
        clients: clients.clone(),
        limits: Limits::default(),
        store: store.clone(),
        writer,
        instance,
        stopping: AtomicBool::new(false),
        config: RwLock::new(Arc::new(config.clone())),
    });
    let (done_tx, done_rx) = unbounded::<watcher::Done>();
    let (task_tx, task_rx) = bounded::<scheduler::Batch>(config.worker.threads * 2);
    let (result_tx, result_rx) = unbounded::<scheduler::Results>();
    let mut pool = Vec::new();
    for i in 0..config.worker.threads {
        let (ctx, work_rx, done_tx) = (ctx.clone(), work_rx.clone(), done_tx.clone());
        let (task_rx, result_tx) = (task_rx.clone(), result_tx.clone());
        let t = std::thread::Builder::new()
            .name(format!("pool-{i}"))
            .spawn(move || pool_thread(&ctx, &work_rx, &done_tx, &task_rx, &result_tx))
            .map_err(|e| format!("cannot start pool thread: {e}"))?;
        pool.push(t);
    }
    drop((task_rx, result_tx));
    let sched = scheduler::Scheduler {
        store: store.clone(),
        writer: ctx.writer.clone(),
        clients,
        interval: std::time::Duration::from_secs(config.monitoring.interval_s),
        down_after: config.monitoring.down_after,
        unreported: config.unreported(),
        traps: !config.snmp.trap_listen.is_empty(),
    };
    let sched_stop = stop.clone();
    let (shards_tx, shards_rx) = unbounded::<membership::Shards>();
    let (back_tx, back_rx) = unbounded::<membership::Back>();
    let membership_thread = match polling {
        false => None,
        true => {
            let m = membership::Membership {
                store: store.clone(),
                writer: ctx.writer.clone(),
                instance: ctx.instance.clone(),
                lease_ttl_s: config.etcd.lease_ttl_s,
                value: membership::member_value(crate::logging::now(), &config.metrics.listen),
            };
            let ch = membership::Channels { scheduler: shards_tx, back: back_rx, stop: stop.clone() };
            let t = std::thread::Builder::new()
                .name("membership".into())
                .spawn(move || m.run(ch))
                .map_err(|e| format!("cannot start the membership thread: {e}"))?;
            Some(t)
        }
    };
    let (ready, ready_rx) = supervisor::Ready::channel();
    let (settings_tx, settings_rx) = unbounded::<Config>();
    let supervisor = supervisor::Supervisor {
        ctx: ctx.clone(),
        awaited: if polling { vec!["jobs", "registry"] } else { vec!["jobs"] },
        ready: ready_rx,
        reloads,
        scheduler: settings_tx,
        queue: work_rx.clone(),
    };
    let supervisor_stop = stop.clone();
    let supervisor_thread = std::thread::Builder::new()
        .name("supervisor".into())
        .spawn(move || supervisor.run(supervisor_stop))
        .map_err(|e| format!("cannot start the supervisor thread: {e}"))?;
    let sched_ready = ready.clone();
    let scheduler_thread = std::thread::Builder::new()
        .name("scheduler".into())
        .spawn(move || {
            if polling {
                sched.run(scheduler::Channels {
                    tasks: task_tx,
                    results: result_rx,
                    queries: query_rx,
                    settings: settings_rx,
                    shards: shards_rx,
                    back: back_tx,
                    events: events_rx,
                    ready: sched_ready,
                    stop: sched_stop,
                });
            } else {
                log::info!("monitoring.enabled is false: this instance polls nothing");
                let _ = sched_stop.recv(); // holds the task channel open until the stop
            }
        })
        .map_err(|e| format!("cannot start the scheduler thread: {e}"))?;
    drop(done_tx);
    let channels = watcher::Channels { work: work_tx, done: done_rx, ready, stop };
    let watched = watcher::run(store.clone(), &config.jobs.handler, &ctx.instance, waiting, channels);
    ctx.stopping.store(true, Ordering::Relaxed);
    let _ = supervisor_thread.join();
    // The scheduler stops on the same signal; its task channel closing ends the pool.
    let _ = scheduler_thread.join();
    if let Some(t) = membership_thread {
        let _ = t.join();
    }
    // The watcher has stopped taking jobs: let the pool finish what it holds.
    for t in pool {
        let _ = t.join();
    }
    drop(ctx);
    let _ = writer_thread.join();
    if let Err(e) = store.revoke_lease() {
        log::warn!("{e}");
    }
    log::info!("esi-monitor stopped");
    watched
}

/// Connects to etcd and takes the instance's lease, trying again (with a growing pause)
/// until etcd answers or `stop` fires: a controller may boot before its etcd does.
fn connect(config: &Config, stop: &Receiver<()>) -> Option<(Store, i64)> {
    let mut pause = std::time::Duration::from_millis(500);
    loop {
        let connected = Store::connect(&config.etcd)
            .and_then(|store| Ok((store.grant_lease(config.etcd.lease_ttl_s)?, store)));
        match connected {
            Ok((lease, store)) => return Some((store, lease)),
            Err(e) => {
                log::warn!("{e}; trying again in {pause:?}");
                crate::notify::send(&format!("STATUS=waiting for etcd: {e}"));
            }
        }
        if !matches!(stop.recv_timeout(pause), Err(crossbeam_channel::RecvTimeoutError::Timeout)) {
            return None;
        }
        pause = (pause * 2).min(std::time::Duration::from_secs(10));
    }
}

/// One pool thread: executes jobs and polls, whichever is waiting. Verify mode waits on
/// devices, so jobs then run one per thread and a slow device holds up no other job;
/// otherwise a thread takes what is queued, up to BATCH jobs, and sends them through etcd
/// together.
fn pool_thread(
    ctx: &Context,
    work_rx: &Receiver<watcher::Work>,
    done_tx: &Sender<watcher::Done>,
    task_rx: &Receiver<scheduler::Batch>,
    result_tx: &Sender<scheduler::Results>,
) {
    loop {
        let batch = if ctx.config().jobs.verify { 1 } else { BATCH };
        crossbeam_channel::select! {
            recv(work_rx) -> first => {
                let Ok(first) = first else { return };
                let mut works = vec![first];
                works.extend(work_rx.try_iter().take(batch - 1));
                if ctx.stopping.load(Ordering::Relaxed) {
                    continue; // unclaimed: another instance (or the next start) runs them
                }
                for done in execute::run_batch(ctx, &works) {
                    if done_tx.send(done).is_err() {
                        return;
                    }
                }
            }
            recv(task_rx) -> task => {
                let Ok((units, task)) = task else { return };
                if result_tx.send((units, poll::run(ctx, task))).is_err() {
                    return;
                }
            }
        }
    }
}
