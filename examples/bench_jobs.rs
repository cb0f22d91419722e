//! `make bench-jobs`: how fast esi-monitor executes monitoring jobs, compared with how fast
//! etcd on this machine can take the same transactions from a minimal client. A benchmark,
//! not a test: it prints figures and only fails when something does not work at all.
//!
//! All on loopback, with throwaway etcds (Debian etcd-server) killed at the end by drop guards:
//!
//! 1. N jobs (default 10,000; `--jobs N`) are made from the REAL recorded
//!    `create:monitoring_worker` jobs of tests/fixtures/flows (all three runs): each copy gets
//!    a fresh resource id, the id `create:monitoring_worker:<type>:<id>:1:bench`, and becomes
//!    a whole workflow (`is_first`, `is_last`, no dependency). Params of type `output_key`
//!    are replaced by `value` params holding the heat output the original resolved them to
//!    (with the old resource id replaced by the new one): same templates, same rendering,
//!    no heat_worker needed.
//! 2. Phase A, esi-monitor: `esi-monitor run` (8 pool threads, `cleanup: true`,
//!    `verify: false`) is started on a fresh etcd holding the templates; once it has read its
//!    job table, a writer thread puts the N jobs to `/jobs/all` (in `Store::txns` batches, as
//!    a job manager with a backlog would) WHILE it runs. Timed from the first job write until
//!    a watch on `/state/` has seen all N records.
//!    (Writing while it runs is the steady state of a real deployment; a preloaded backlog
//!    is covered by tests/recovery.rs.)
//! 3. Phase B, direct: on a fresh etcd, the same writer thread puts the same jobs while a
//!    minimal client does per job the same requests esi-monitor makes (it learns the jobs
//!    from a watch on `/jobs/all/`; claim txn that also reads the job state, template and
//!    registry entry; completing txn with the values esi-monitor writes, computed with the library's own
//!    template and record code), from the same number of threads on one connection, each
//!    thread sending its claims and its commits in `Store::txns` batches. That rate is what
//!    etcd allows here; esi-monitor is judged against it.

mod support;

use esi_monitor::keys::{self, Plurals};
use esi_monitor::plugins::Object;
use esi_monitor::records::{self, Mapping};
use esi_monitor::store::{Cmp, Op, Store, Txn, WatchEvent};
use esi_monitor::template::{self, Limits};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::etcd::Etcd;
use support::process::Proc;

const USAGE: &str = "usage: bench_jobs [--jobs N] [--threads N] [--direct-batch N] [--timeout-s S] [--poll]
  --jobs N          number of monitoring jobs (default 10000)
  --poll            keep esi-monitor's poller on (default off: the job path alone; the
                    recorded devices are unreachable here, so it would time out on all)
  --threads N       esi-monitor pool threads, and threads of the direct client (default 8)
  --direct-batch N  jobs per Store::txns batch of one direct-client thread (default 16)
  --timeout-s S     give up on a phase after S seconds (default 600)";

/// Jobs written per `Store::txns` call by the job writer.
const WRITE_BATCH: usize = 256;

struct Args {
    poll: bool,
    jobs: usize,
    threads: usize,
    direct_batch: usize,
    timeout: Duration,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args { poll: false, jobs: 10_000, threads: 8, direct_batch: 16, timeout: Duration::from_secs(600) };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        if flag == "--poll" {
            a.poll = true;
            continue;
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let n: usize = value.parse().map_err(|_| format!("{flag}: {value:?} is not a positive number\n{USAGE}"))?;
        if n == 0 {
            return Err(format!("{flag} must be at least 1"));
        }
        match flag.as_str() {
            "--jobs" => a.jobs = n,
            "--threads" => a.threads = n,
            "--direct-batch" => a.direct_batch = n,
            "--timeout-s" => a.timeout = Duration::from_secs(n as u64),
            _ => return Err(format!("unknown argument {flag}\n{USAGE}")),
        }
    }
    Ok(a)
}

fn main() -> ExitCode {
    let result = parse_args().and_then(|args| run(&args));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-jobs FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

// ------------------------------------------------------------------------------ the jobs

/// One benchmark job: its `/jobs/all` value and what its commit writes (computed with the
/// library's own template and record code, for the direct client).
struct BenchJob {
    id: String,
    value: String,
    resource_type: String,
    template_key: String,
    state_key: String,
    job_state_key: String,
    state_record: String,
    registry_key: String,
    registry_record: String,
    mapping_rows: Vec<(String, String)>,
}

/// Heat outputs per (run, resource type, resource id).
type HeatOutputs = HashMap<(String, String, String), Vec<Value>>;

/// The recorded create:monitoring_worker jobs of every run, and the heat outputs heat_worker
/// recorded.
fn recorded_jobs() -> Result<(Vec<(String, Value)>, HeatOutputs), String> {
    let flows = support::fixtures::load_all_flows()?;
    let mut jobs = BTreeMap::new();
    let mut outputs = HashMap::new();
    for flow in &flows {
        for ev in &flow.events {
            if ev.is_delete() || ev.writer == "monitoring_worker" {
                continue;
            }
            let Some(value) = &ev.value else { continue };
            if ev.key.starts_with("/jobs/all/create:monitoring_worker:") {
                if let Some(job) = value.get(1).filter(|j| j.get("params").is_some()) {
                    let id = job["id"].as_str().unwrap_or(&ev.key).to_string();
                    jobs.entry(id).or_insert_with(|| (flow.run.clone(), job.clone()));
                }
            }
            if ev.key.starts_with("/esi-worker/job_state/") {
                if let Some(list) = value.get("heat_outputs").and_then(Value::as_array) {
                    let key = (flow.run.clone(), flow.resource_type.clone(), flow.resource_id.clone());
                    outputs.insert(key, list.clone());
                }
            }
        }
    }
    Ok((jobs.into_values().collect(), outputs))
}

/// A param as the benchmark sends it: `output_key` params become `value` params.
fn rewrite_param(
    p: &Value,
    run: &str,
    old_id: &str,
    new_id: &str,
    outputs: &HashMap<(String, String, String), Vec<Value>>,
) -> Value {
    match p.get("type").and_then(Value::as_str) {
        Some("output_key") => {
            let v = &p["value"];
            let (key, rtype, rid) = (
                v["output_key"].as_str().unwrap_or(""),
                v["resource_type"].as_str().unwrap_or(""),
                v["resource_id"].as_str().unwrap_or(""),
            );
            let recorded = outputs
                .get(&(run.to_string(), rtype.to_string(), rid.to_string()))
                .and_then(|list| list.iter().find(|o| o["output_key"] == key))
                .map(|o| o["output_value"].clone());
            let resolved = match recorded {
                Some(Value::String(s)) => Value::String(s.replace(old_id, new_id)),
                Some(other) => other,
                None if key == "id" => Value::String(new_id.to_string()),
                None => Value::String(format!("default-domain:admin:{new_id}")),
            };
            json!({"param": p["param"], "type": "value", "value": resolved, "resources": []})
        }
        Some("list") => {
            let mut p = p.clone();
            if let Some(items) = p.get_mut("value").and_then(Value::as_array_mut) {
                for item in items.iter_mut() {
                    *item = rewrite_param(item, run, old_id, new_id, outputs);
                }
            }
            p
        }
        _ => p.clone(),
    }
}

/// The template text per resource type, read from the recorded templates.
fn template_sources() -> Result<HashMap<String, String>, String> {
    let dir = support::fixtures::fixtures_dir().join("templates");
    let mut out = HashMap::new();
    for entry in std::fs::read_dir(&dir).map_err(|e| format!("read {}: {e}", dir.display()))?.flatten() {
        let t = support::fixtures::read_json(&entry.path())?;
        let record: Value = serde_json::from_str(t["stored_as"].as_str().unwrap_or("")).map_err(|e| e.to_string())?;
        let body: Value = match &record["body"] {
            Value::String(s) => serde_json::from_str(s).map_err(|e| e.to_string())?,
            other => other.clone(),
        };
        let name = t["key"].as_str().unwrap_or("").trim_start_matches("/config/v2.0/heat_templates/").to_string();
        out.insert(name, body["template_file"].as_str().unwrap_or("").to_string());
    }
    Ok(out)
}

fn plain_vars(params: &[Value]) -> Map<String, Value> {
    params
        .iter()
        .filter_map(|p| {
            let value = match p.get("type").and_then(Value::as_str) {
                Some("list") => Value::Array(p["value"].as_array()?.iter().map(|i| i["value"].clone()).collect()),
                _ => p["value"].clone(),
            };
            Some((p["param"].as_str()?.to_string(), value))
        })
        .collect()
}

fn make_jobs(n: usize) -> Result<(Vec<BenchJob>, usize), String> {
    let (bases, outputs) = recorded_jobs()?;
    if bases.is_empty() {
        return Err("no recorded create:monitoring_worker jobs in tests/fixtures/flows".into());
    }
    let sources = template_sources()?;
    let plurals = Plurals::new(&BTreeMap::new());
    let limits = Limits::default();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let mut jobs = Vec::with_capacity(n);
    for i in 0..n {
        let (run, base) = &bases[i % bases.len()];
        let rtype = base["resource_type"].as_str().unwrap_or("").to_string();
        let old_id = base["resource_id"].as_str().unwrap_or("").to_string();
        let rid = uuid::Uuid::new_v4().to_string();
        let id = format!("create:monitoring_worker:{rtype}:{rid}:1:bench");
        let params: Vec<Value> = base["params"]
            .as_array()
            .map(|ps| ps.iter().map(|p| rewrite_param(p, run, &old_id, &rid, &outputs)).collect())
            .unwrap_or_default();
        let mut job = base.clone();
        job["id"] = json!(id);
        job["job_name"] = json!(format!("{rtype}:{rid}:1"));
        job["resource_id"] = json!(rid);
        job["version"] = json!(1);
        job["is_first"] = json!(true);
        job["is_last"] = json!(true);
        job["dependency"] = json!([]);
        job["params"] = Value::Array(params.clone());
        if job["resource_input"].get("id").is_some() {
            job["resource_input"]["id"] = json!(rid);
        }
        let tenant = job["resource_input"].get("tenant_id").cloned().unwrap_or(Value::Null);

        // What esi-monitor will commit for it (verify: false → every object's success value).
        let name = format!("{rtype}_monitoring");
        let source = sources.get(&name).ok_or_else(|| format!("no template {name}"))?;
        let rendered = template::render_objects(source, &plain_vars(&params), &limits)
            .map_err(|e| format!("recorded job {} does not render: {e:?}", base["id"]))?;
        let objects: Vec<Object> = rendered
            .objects
            .iter()
            .map(|(name, props)| Object::check(name, props))
            .collect::<Result<_, _>>()?;
        let verdicts: Map<String, Value> =
            objects.iter().filter_map(|o| Some((o.name.clone(), Value::String(o.success_value()?)))).collect();
        let mut state = Map::new();
        state.insert("state_monitoring".into(), Value::Object(verdicts));
        let plural = plurals.of(&rtype);
        let named: Vec<(String, Map<String, Value>)> = objects.iter().map(|o| (o.name.clone(), o.props.clone())).collect();
        let mapping_rows = rendered
            .db_mappings
            .iter()
            .map(|item| {
                let m = Mapping::from_item(item, &rtype, &rid)?;
                let row_id = uuid::Uuid::new_v4().to_string();
                Ok((keys::resource_mapping(&row_id), records::mapping_row(&row_id, &tenant, &m, now).to_string()))
            })
            .collect::<Result<Vec<_>, String>>()?;
        jobs.push(BenchJob {
            value: json!(["monitoring_worker", job, 0]).to_string(),
            template_key: keys::template(&name),
            state_key: keys::state(&plural, &rid),
            job_state_key: keys::job_state(&plural, &rid),
            state_record: records::state_record(&state, "CREATE_COMPLETED", &json!(1), "").to_string(),
            registry_key: keys::registry(&plural, &rid),
            registry_record: records::registry_record(&rtype, &rid, &json!(1), &tenant, &named).to_string(),
            mapping_rows,
            resource_type: rtype,
            id,
        });
    }
    Ok((jobs, bases.len()))
}

// ----------------------------------------------------------------------------- the etcds

/// A fresh etcd with the 23 templates.
fn fresh_etcd() -> Result<(Etcd, Store), String> {
    let etcd = Etcd::start();
    let store = etcd.store();
    support::fixtures::load_templates(&store)?;
    Ok((etcd, store))
}

/// Writes the jobs to /jobs/all on a thread of its own (with its own connection), in
/// `Store::txns` batches, as a job manager with a backlog would; returns how long it took.
fn spawn_job_writer(etcd: &Etcd, jobs: Arc<Vec<BenchJob>>) -> Result<std::thread::JoinHandle<Result<Duration, String>>, String> {
    let store = etcd.store();
    Ok(std::thread::spawn(move || {
        let t = Instant::now();
        for chunk in jobs.chunks(WRITE_BATCH) {
            let txns: Vec<Txn> = chunk
                .iter()
                .map(|j| Txn { when: vec![], then: vec![Op::put(keys::job_all(&j.id), j.value.clone())] })
                .collect();
            for r in store.txns(&txns) {
                r.map_err(|e| format!("writing jobs: {e}"))?;
            }
        }
        Ok(t.elapsed())
    }))
}

fn join_writer(h: std::thread::JoinHandle<Result<Duration, String>>) -> Result<Duration, String> {
    h.join().map_err(|_| "the job-writer thread panicked".to_string())?
}

// ------------------------------------------------------------------------ phase A: service

struct ServiceResult {
    total: Duration,
    written: Duration,
    cpu_s: Option<f64>,
    rss_kib: Option<u64>,
    errors: usize,
    left_in_jobs_all: Option<usize>,
    log_problems: usize,
}

fn phase_service(args: &Args, jobs: Arc<Vec<BenchJob>>) -> Result<ServiceResult, String> {
    let binary = support::sibling_binary("esi-monitor")?;
    let (etcd, store) = fresh_etcd()?;
    let (_, rev) = store.range("/nothing-here").map_err(|e| e.to_string())?;
    let watch = store.watch("/state/", rev + 1).map_err(|e| e.to_string())?;
    let config = format!(
        "etcd: {{endpoints: [\"{}\"], lease_ttl_s: 10}}\n\
         jobs: {{handler: monitoring_worker, cleanup: true, verify: false}}\n\
         worker: {{threads: {}, queue: 1024}}\n\
         contrail: {{analytics_url: \"http://127.0.0.1:9\", timeout_ms: 2000}}\n\
         monitoring: {{enabled: {}}}\n\
         log: {{level: info}}\n\
         metrics: {{listen: \"\"}}\n",
        etcd.endpoint, args.threads, args.poll
    );
    let mut monitor = Proc::esi_monitor(&binary, &config)?;
    // Ready once it has read its (empty) job table and watches /jobs/.
    let ready = support::wait_until("esi-monitor to read its job table", Duration::from_secs(15), Duration::from_millis(20), || {
        let log = std::fs::read_to_string(&monitor.log).unwrap_or_default();
        log.contains("job table read").then_some(())
    });
    if let Err(e) = ready {
        return Err(format!("{e}; its log ends with:\n    {}", monitor.log_tail(10).join("\n    ")));
    }
    println!("  phase A: esi-monitor is up; writing {} jobs to /jobs/all while it runs", jobs.len());
    let started = Instant::now();
    let writer = spawn_job_writer(&etcd, jobs.clone())?;
    let deadline = started + args.timeout;
    let mut seen = HashSet::with_capacity(jobs.len());
    let mut errors = 0;
    while seen.len() < jobs.len() {
        let now = Instant::now();
        if now >= deadline {
            return Err(format!(
                "phase A: only {} of {} /state records after {:?}; esi-monitor's log ends with:\n    {}",
                seen.len(),
                jobs.len(),
                args.timeout,
                monitor.log_tail(10).join("\n    ")
            ));
        }
        match watch.events.recv_timeout((deadline - now).min(Duration::from_millis(500))) {
            Ok(WatchEvent::Put(kv)) => {
                if serde_json::from_slice::<Value>(&kv.value).map_or(true, |v| v["error"] != "") {
                    errors += 1;
                }
                seen.insert(kv.key);
            }
            Ok(WatchEvent::Delete { .. } | WatchEvent::NotText { .. }) => {}
            Ok(WatchEvent::Broken(why)) => return Err(format!("phase A: the watch on /state/ broke: {why}")),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                if !monitor.is_running() {
                    return Err(format!("esi-monitor exited: {}", monitor.log_tail(5).join(" | ")));
                }
            }
            Err(e) => return Err(format!("phase A: watch channel: {e}")),
        }
    }
    let total = started.elapsed();
    let cpu_s = monitor.cpu_seconds();
    let rss_kib = monitor.peak_rss_kib();
    let written = join_writer(writer)?;
    let left_in_jobs_all = store.range("/jobs/all/").ok().map(|(kvs, _)| kvs.len());
    monitor.stop();
    let log = std::fs::read_to_string(&monitor.log).unwrap_or_default();
    let problems: Vec<&str> = log.lines().filter(|l| l.contains("WARN") || l.contains("ERROR")).collect();
    for line in problems.iter().take(3) {
        println!("  log: {line}");
    }
    let log_problems = problems.len();
    Ok(ServiceResult { total, written, cpu_s, rss_kib, errors, left_in_jobs_all, log_problems })
}

// ------------------------------------------------------------------------- phase B: direct

struct DirectResult {
    total: Duration,
    written: Duration,
    committed: usize,
}

/// A job as the dispatcher hands it over: its index and the create revision of its key.
type Claimable = (usize, i64);

fn phase_direct(args: &Args, jobs: Arc<Vec<BenchJob>>) -> Result<DirectResult, String> {
    let (etcd, store) = fresh_etcd()?;
    // As esi-monitor: one connection for the client, a lease for the claims, a watch on
    // /jobs/all/ that feeds a pool of threads.
    store.grant_lease(10).map_err(|e| e.to_string())?;
    let index: Arc<HashMap<String, usize>> =
        Arc::new(jobs.iter().enumerate().map(|(i, j)| (keys::job_all(&j.id), i)).collect());
    let (_, rev) = store.range("/nothing-here").map_err(|e| e.to_string())?;
    let watch = store.watch("/jobs/all/", rev + 1).map_err(|e| e.to_string())?;
    let (work_tx, work_rx) = crossbeam_channel::bounded::<Vec<Claimable>>(args.threads);
    let committed = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for t in 0..args.threads {
        let (store, jobs, work_rx, committed) = (store.clone(), jobs.clone(), work_rx.clone(), committed.clone());
        workers.push(std::thread::spawn(move || -> Result<(), String> {
            for chunk in work_rx {
                direct_chunk(&store, &jobs, &chunk, t)?;
                committed.fetch_add(chunk.len(), Ordering::Relaxed);
            }
            Ok(())
        }));
    }
    drop(work_rx);
    println!("  phase B: direct client is up; writing {} jobs to /jobs/all while it runs", jobs.len());
    let started = Instant::now();
    let writer = spawn_job_writer(&etcd, jobs.clone())?;
    let deadline = started + args.timeout;
    // Dispatcher: hand out whatever has arrived, at most `direct_batch` jobs per chunk.
    let mut dispatched = 0;
    let mut pending: Vec<Claimable> = Vec::new();
    while dispatched < jobs.len() {
        let now = Instant::now();
        if now >= deadline {
            return Err(format!("phase B: only {dispatched} of {} jobs dispatched after {:?}", jobs.len(), args.timeout));
        }
        let first = match watch.events.recv_timeout((deadline - now).min(Duration::from_millis(500))) {
            Ok(ev) => ev,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => continue,
            Err(e) => return Err(format!("phase B: watch channel: {e}")),
        };
        let mut next = Some(first);
        while let Some(ev) = next.take() {
            match ev {
                WatchEvent::Put(kv) if kv.create_revision == kv.mod_revision => {
                    if let Some(&i) = index.get(&kv.key) {
                        pending.push((i, kv.create_revision));
                    }
                }
                WatchEvent::Broken(why) => return Err(format!("phase B: the watch on /jobs/all/ broke: {why}")),
                _ => {}
            }
            if pending.len() < args.direct_batch {
                next = watch.events.try_recv().ok();
            }
        }
        while !pending.is_empty() {
            let take = pending.len().min(args.direct_batch);
            let chunk: Vec<Claimable> = pending.drain(..take).collect();
            dispatched += chunk.len();
            work_tx.send(chunk).map_err(|_| "phase B: every direct-client thread has stopped".to_string())?;
        }
    }
    drop(work_tx);
    for w in workers {
        w.join().map_err(|_| "a direct-client thread panicked".to_string())??;
    }
    let total = started.elapsed();
    let written = join_writer(writer)?;
    Ok(DirectResult { total, written, committed: committed.load(Ordering::Relaxed) })
}

/// One batch of the direct client: the claims (with the reads esi-monitor makes per job) in
/// one `Store::txns` call, then the completing transactions in one `Store::txns` call.
fn direct_chunk(store: &Store, jobs: &[BenchJob], chunk: &[Claimable], thread: usize) -> Result<(), String> {
    let tokens: Vec<String> = chunk.iter().map(|_| format!("direct-{thread}/{}", uuid::Uuid::new_v4())).collect();
    let claims: Vec<Txn> = chunk
        .iter()
        .zip(&tokens)
        .map(|(&(i, created), token)| {
            let j = &jobs[i];
            Txn {
                when: vec![
                    Cmp::CreateRevision(keys::job_working(&j.id), 0),
                    Cmp::CreateRevision(keys::job_finished(&j.id), 0),
                    Cmp::CreateRevision(keys::job_all(&j.id), created),
                ],
                then: vec![
                    Op::put_leased(keys::job_working(&j.id), token.clone()),
                    Op::delete(keys::job_ready(&j.id)),
                    Op::get(j.job_state_key.clone()),
                    Op::get(j.template_key.clone()),
                    Op::get(j.registry_key.clone()),
                ],
            }
        })
        .collect();
    let mut reads = Vec::with_capacity(chunk.len());
    for r in store.txns(&claims) {
        let outcome = r.map_err(|e| e.to_string())?;
        if !outcome.applied {
            return Err("phase B: a claim did not hold".into());
        }
        reads.push(outcome.read);
    }
    let mut commits = Vec::with_capacity(chunk.len());
    for ((&(i, _), token), read) in chunk.iter().zip(&tokens).zip(reads) {
        let j = &jobs[i];
        let state_rev = read[0].as_ref().map_or(0, |kv| kv.mod_revision);
        if read[1].is_none() {
            return Err(format!("phase B: template missing for {}", j.resource_type));
        }
        let registry_rev = read[2].as_ref().map_or(0, |kv| kv.mod_revision);
        let mut then = vec![
            Op::put(j.state_key.clone(), j.state_record.clone()),
            Op::delete(j.job_state_key.clone()),
            Op::put(j.registry_key.clone(), j.registry_record.clone()),
        ];
        then.extend(j.mapping_rows.iter().map(|(k, v)| Op::put(k.clone(), v.clone())));
        then.push(Op::delete(keys::job_working(&j.id)));
        then.push(Op::delete(keys::job_all(&j.id)));
        commits.push(Txn {
            when: vec![
                Cmp::Value(keys::job_working(&j.id), token.clone().into_bytes()),
                Cmp::ModRevision(j.job_state_key.clone(), state_rev),
                Cmp::ModRevision(j.registry_key.clone(), registry_rev),
            ],
            then,
        });
    }
    for r in store.txns(&commits) {
        if !r.map_err(|e| e.to_string())?.applied {
            return Err("phase B: a completing transaction did not hold".into());
        }
    }
    Ok(())
}

// ----------------------------------------------------------------------------------- run

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

fn run(args: &Args) -> Result<(), String> {
    let t = Instant::now();
    let (jobs, bases) = make_jobs(args.jobs)?;
    let n = jobs.len();
    let per_type = jobs.iter().map(|j| j.resource_type.as_str()).collect::<HashSet<_>>().len();
    println!(
        "bench-jobs: {n} jobs made from {bases} recorded create:monitoring_worker jobs ({per_type} resource types) in {:.2} s",
        t.elapsed().as_secs_f64()
    );
    let jobs = Arc::new(jobs);
    let a = phase_service(args, jobs.clone())?;
    let b = phase_direct(args, jobs)?;

    let ra = rate(n, a.total);
    let rb = rate(b.committed, b.total);
    println!();
    println!(
        "bench-jobs: N={n} jobs, {} worker threads, etcd {} on loopback ({} CPUs), poller {}",
        args.threads,
        Etcd::version(),
        std::thread::available_parallelism().map(|p| p.get()).unwrap_or(0),
        if args.poll { "on (--poll)" } else { "off (monitoring.enabled: false; make bench-poll measures it)" }
    );
    println!(
        "  esi-monitor : {n} jobs in {:.2} s = {:.0} jobs/s ({:.2} ms/job)",
        a.total.as_secs_f64(),
        ra,
        1000.0 / ra
    );
    println!(
        "                CPU {}, peak RSS {}",
        a.cpu_s.map_or("?".into(), |c| format!("{c:.2} s ({:.2} ms/job)", c * 1000.0 / n as f64)),
        a.rss_kib.map_or("?".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0)),
    );
    println!(
        "  direct etcd : {} jobs in {:.2} s = {:.0} jobs/s ({} threads, batches of <= {}, one connection)",
        b.committed,
        b.total.as_secs_f64(),
        rb,
        args.threads,
        args.direct_batch
    );
    println!("  ratio       : {:.2} of the direct rate (target >= 0.5)", ra / rb);
    println!("  original    : 52-188 ms/job (5-19 jobs/s)");
    println!(
        "  how         : timed from the first job write to the last commit; jobs written to /jobs/all \
         while the service ran (Store::txns batches of {WRITE_BATCH}, done after {:.2} s in A, {:.2} s in B)",
        a.written.as_secs_f64(),
        b.written.as_secs_f64()
    );
    println!(
        "  checks      : {} /state records with an error, {} jobs left in /jobs/all, {} WARN/ERROR lines in esi-monitor's log",
        a.errors,
        a.left_in_jobs_all.map_or("?".into(), |n| n.to_string()),
        a.log_problems
    );
    Ok(())
}
