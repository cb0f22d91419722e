//! The faults a production etcd cluster sees, with three esi-monitor instances on a real
//! 3-member cluster: a leader killed (an election), a follower frozen, an instance frozen past
//! its lease and resumed, an instance killed and started again — while 300 jobs resolving
//! `output_key` params run (they wait on one heat job, finished just before the fault). Every job completes exactly once (its `/state` key is written
//! once, etcd version 1), with the right record, and none fails. Then one etcd that stops
//! answering in the middle of a claim and of a release (a proxy), and the hostile entries
//! that once made workers spin or retry for ever.

mod support;

use esi_monitor::store::Store;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::etcd::{Cluster, Etcd};
use support::monitor::Monitor;
use support::tcp_fault::TcpFault;
use support::scrape::{get, scrape_until};
use support::wait_for;

const JOBS: usize = 300;

/// The heat job every network job of a test depends on: until it is finished (its key
/// removed) no job may run, then all may at once, so that the fault meets jobs in flight.
const GATE: &str = "create:heat_worker:gate:g:1:t";

/// The network job of resource `rid`, as the job manager writes it after heat_worker: its
/// params are the `fq_name` and `id` heat outputs, which only the job state holds.
fn network_job(store: &Store, rid: &str) {
    network_job_after(store, rid, &[]);
}

fn network_job_after(store: &Store, rid: &str, dependency: &[&str]) {
    let outputs = json!({"heat_outputs": [
        {"output_key": "fq_name", "output_value": format!("default-domain:admin:{rid}")},
        {"output_key": "id", "output_value": format!("uuid-{rid}")}]});
    put(store, &format!("/esi-worker/job_state/v2.0/networks/{rid}"), outputs.to_string());
    let reference = |key: &str| json!({"output_key": key, "resource_type": "network", "resource_id": rid});
    let params = json!([{"param": "fq_name", "type": "output_key", "value": reference("fq_name")},
                        {"param": "uuid", "type": "output_key", "value": reference("id")}]);
    let (id, mut entry) = support::jobs::create("network", rid, params);
    entry[1]["is_first"] = json!(false);
    entry[1]["dependency"] = json!(dependency);
    put(store, &format!("/jobs/all/{id}"), entry.to_string());
}

/// A put as the other components make it during a fault: sent again until etcd takes it
/// (a put of the same value twice does no harm), at most 60 s.
fn put(store: &Store, key: &str, value: String) {
    wait_for(&format!("etcd to take the put of {key}"), Duration::from_secs(60), || store.put(key, value.clone()).ok());
}

/// Writes `JOBS` network jobs `<prefix>-NNNN` behind the gate (a heat job not finished yet).
fn gated_jobs(store: &Store, prefix: &str) {
    let (_, mut gate) = support::jobs::create("gate", "g", json!([]));
    gate[0] = json!("heat_worker");
    gate[1]["handler"] = json!("heat_worker");
    put(store, &format!("/jobs/all/{GATE}"), gate.to_string());
    for i in 0..JOBS {
        network_job_after(store, &format!("{prefix}-{i:04}"), &[GATE]);
    }
}

/// heat_worker finishes the gate's job: every job may run now.
fn open_gate(store: &Store) {
    wait_for("etcd to take the gate's delete", Duration::from_secs(60), || {
        store.delete(&format!("/jobs/all/{GATE}")).ok()
    });
}

/// Three instances reaching every member, with short etcd timeouts, ready.
fn instances(cluster: &Cluster) -> Vec<Monitor> {
    let monitors: Vec<Monitor> = (0..3).map(|_| instance(cluster)).collect();
    for m in &monitors {
        m.wait_log("the instance to be ready", "ready:", Duration::from_secs(30));
    }
    monitors
}

fn instance(cluster: &Cluster) -> Monitor {
    let etcd = "lease_ttl_s: 3, timeout_ms: 1000, connect_timeout_ms: 500";
    Monitor::start_with(&Monitor::config_on(&cluster.endpoints(), etcd, "worker: {threads: 2}\nmonitoring: {enabled: false}"))
}

/// Every job completed once: `/state` written once (version 1) saying CREATE_COMPLETED with
/// the verdict and the heat outputs it resolved, no job key left, no failure.
fn assert_all_completed_once(store: &Store, prefix: &str, monitors: &[Monitor]) {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(120);
    while support::jobs::completed(store, "networks", prefix) < JOBS {
        if Instant::now() > deadline {
            let (left, _) = store.range("/jobs/").unwrap();
            let left: Vec<String> = left.iter().map(|kv| format!("{} = {}", kv.key, kv.value_str())).take(10).collect();
            let logs: Vec<String> = monitors.iter().map(|m| m.log_text()).collect();
            for (i, log) in logs.iter().enumerate() {
                let _ = std::fs::write(std::env::temp_dir().join(format!("etcd_faults-{prefix}-{i}.log")), log);
            }
            panic!(
                "{} of {JOBS} jobs completed after 120 s; left: {left:#?}\n{}",
                support::jobs::completed(store, "networks", prefix),
                logs.iter().map(|l| l.lines().rev().take(40).collect::<Vec<_>>().join("\n")).collect::<Vec<_>>().join("\n----\n")
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("{JOBS} jobs completed {:.1} s after the wait began", started.elapsed().as_secs_f64());
    let (states, _) = store.range(&format!("/state/v2.0/networks/{prefix}-")).unwrap();
    assert_eq!(states.len(), JOBS);
    for kv in &states {
        let record: Value = serde_json::from_slice(&kv.value).unwrap();
        assert_eq!(kv.version, 1, "{} was written {} times: {record}", kv.key, kv.version);
        assert_eq!(record["error"], "", "{}: {record}", kv.key);
        assert_eq!(record["state"]["worker_state"], "CREATE_COMPLETED", "{}", kv.key);
        assert_eq!(record["state"]["state_monitoring"], "{\"network\": \"ACTIVE\"}", "{}", kv.key);
        let rid = kv.key.rsplit('/').next().unwrap();
        assert!(record["state"]["heat_outputs"].as_str().unwrap().contains(&format!("uuid-{rid}")), "{record}");
    }
    let left = wait_for("no job keys left", Duration::from_secs(30), || {
        let (kvs, _) = store.range("/jobs/").unwrap();
        kvs.is_empty().then_some(kvs)
    });
    assert!(left.is_empty());
    let mut waited = 0;
    for m in monitors {
        let log = m.log_text();
        assert!(!log.contains("committed (failed)"), "a job failed:\n{log}");
        waited += log.matches("the job waits and runs again").count();
    }
    // How often the fault reached a job (it depends on what was in flight): shown, not asserted.
    eprintln!("job attempts that found etcd unavailable and waited: {waited}");
}

/// Opens the gate and waits until `n` jobs of `prefix` are completed: the fault comes then,
/// with most jobs still to run.
fn run_until(store: &Store, prefix: &str, n: usize) {
    open_gate(store);
    wait_for(&format!("{n} completed jobs before the fault"), Duration::from_secs(60), || {
        (support::jobs::completed(store, "networks", prefix) >= n).then_some(())
    });
}

#[test]
fn killing_the_leader_fails_no_job_and_completes_each_once() {
    let mut cluster = Cluster::start(3);
    let store = cluster.store();
    support::replay::load_templates(&store);
    let monitors = instances(&cluster);
    gated_jobs(&store, "lk");
    let leader = cluster.wait_leader();
    run_until(&store, "lk", 10);
    cluster.kill(leader);
    let new_leader = cluster.wait_leader();
    assert_ne!(new_leader, leader);
    assert_all_completed_once(&store, "lk", &monitors);
    cluster.restart(leader);
}

#[test]
fn a_frozen_follower_fails_no_job() {
    let cluster = Cluster::start(3);
    let store = cluster.store();
    support::replay::load_templates(&store);
    let monitors = instances(&cluster);
    gated_jobs(&store, "ff");
    let leader = cluster.wait_leader();
    let follower = (leader + 1) % 3;
    cluster.signal(follower, "STOP");
    open_gate(&store);
    std::thread::sleep(Duration::from_secs(5)); // the fault itself: frozen for 5 s
    cluster.signal(follower, "CONT");
    assert_all_completed_once(&store, "ff", &monitors);
}

#[test]
fn an_instance_frozen_past_its_lease_writes_nothing_stale() {
    let cluster = Cluster::start(3);
    let store = cluster.store();
    support::replay::load_templates(&store);
    let monitors = instances(&cluster);
    gated_jobs(&store, "fz");
    run_until(&store, "fz", 10);
    monitors[0].signal("STOP");
    // Frozen past its lease TTL (3 s): its claims expire and the others run those jobs.
    std::thread::sleep(Duration::from_secs(5));
    monitors[0].signal("CONT");
    assert_all_completed_once(&store, "fz", &monitors);
    let mut first = monitors.into_iter().next().unwrap();
    assert!(first.is_running(), "the resumed instance runs on:\n{}", first.log_text());
}

#[test]
fn an_instance_killed_and_started_again_mid_batch_loses_no_job() {
    let cluster = Cluster::start(3);
    let store = cluster.store();
    support::replay::load_templates(&store);
    let mut monitors = instances(&cluster);
    gated_jobs(&store, "kr");
    run_until(&store, "kr", 10);
    monitors[0].kill9();
    monitors[0] = instance(&cluster);
    assert_all_completed_once(&store, "kr", &monitors);
}

/// The one job of the proxy tests, its instance behind `proxy`, and a direct client.
fn one_job_behind(proxy: &TcpFault, etcd: &Etcd, silence: Duration, listen: std::net::SocketAddr) -> (Monitor, String) {
    let store = etcd.store();
    support::replay::load_templates(&store);
    let rid = "px-0000";
    let id = format!("create:monitoring_worker:network:{rid}:1:t");
    proxy.silence_after(&format!("/jobs/working/{id}"), silence);
    let config = Monitor::config_on(
        &[proxy.endpoint()],
        "lease_ttl_s: 20, timeout_ms: 500, connect_timeout_ms: 500",
        &format!("monitoring: {{enabled: false}}\nmetrics: {{listen: \"{listen}\"}}"),
    );
    let monitor = Monitor::start_with(&config);
    monitor.wait_log("the service to be ready", "ready:", Duration::from_secs(30));
    network_job(&store, rid);
    (monitor, id)
}

#[test]
fn a_claim_whose_answer_is_lost_is_read_back_and_the_job_runs_once() {
    let etcd = Etcd::start();
    let proxy = TcpFault::start(&etcd.endpoint);
    // Silent for longer than the claim's timeout (500 ms): the claim is applied, its answer
    // lost; the read-back after the silence finds the claim ours.
    let (monitor, _) = one_job_behind(&proxy, &etcd, Duration::from_millis(1500), support::free_listen());
    let store = etcd.store();
    let state = support::jobs::wait_state(&store, "networks", "px-0000", Duration::from_secs(30));
    assert_eq!(proxy.silences(), 1);
    assert_eq!(state["state"]["worker_state"], "CREATE_COMPLETED", "{state}");
    assert_eq!(store.get("/state/v2.0/networks/px-0000").unwrap().unwrap().version, 1);
    let log = monitor.log_text();
    assert!(log.contains("the claim's outcome is unknown"), "the claim's answer was not lost:\n{log}");
}

#[test]
fn a_claim_left_by_a_failed_release_is_run_by_its_instance_and_jobs_shows_it_waiting() {
    let etcd = Etcd::start();
    let proxy = TcpFault::start(&etcd.endpoint);
    // Silent for 4 s: the claim is applied, its answer lost, the read-back and the release
    // time out; the claim stays on the live lease (TTL 20 s), and only this instance can run
    // the job: it must notice the claim is its own.
    let listen = support::free_listen();
    let (monitor, id) = one_job_behind(&proxy, &etcd, Duration::from_secs(4), listen);
    let store = etcd.store();
    let log = monitor.wait_log("the release to fail", "releasing the claim", Duration::from_secs(20));
    assert!(log.contains("the claim's outcome is unknown"), "{log}");
    // While it waits, `esi-monitor jobs` (reading etcd directly) shows it retrying.
    let cli_config = support::temp_config(&format!(
        "etcd: {{endpoints: [\"{}\"]}}\nmetrics: {{listen: \"{listen}\"}}\n",
        etcd.endpoint
    ));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_esi-monitor"))
        .args(["jobs", "--config", cli_config.path().to_str().unwrap()])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&out.stdout);
    let line = listing.lines().find(|l| l.contains(&id)).unwrap_or_else(|| panic!("{id} not listed:\n{listing}"));
    assert!(line.starts_with("retrying") && line.contains("retried 1 times"), "{listing}");
    let state = support::jobs::wait_state(&store, "networks", "px-0000", Duration::from_secs(60));
    assert_eq!(state["state"]["worker_state"], "CREATE_COMPLETED", "{state}");
    assert_eq!(store.get("/state/v2.0/networks/px-0000").unwrap().unwrap().version, 1);
    let retried = |s: &std::collections::BTreeMap<String, f64>| -> f64 {
        s.iter().filter(|(k, _)| k.starts_with("esi_monitor_job_retries_total{")).map(|(_, v)| v).sum()
    };
    // The commit is counted when etcd's answer reaches the writer, a moment after /state is
    // readable: wait for both counts.
    let completed = |s: &std::collections::BTreeMap<String, f64>| get(s, "esi_monitor_jobs_completed_total{action=\"create\"}");
    let samples = scrape_until(listen, "a retry and the commit counted", |s| retried(s) >= 1.0 && completed(s) >= 1.0);
    assert_eq!(completed(&samples), 1.0, "completed once");
}

#[test]
fn a_key_that_is_not_text_is_reported_once_and_left_alone() {
    let mut etcd = Etcd::start();
    let store = etcd.store();
    support::replay::load_templates(&store);
    let listen = support::free_listen();
    let monitor = Monitor::start(&etcd.endpoint, &format!("metrics: {{listen: \"{listen}\"}}"));
    monitor.wait_log("the service to be ready", "ready:", Duration::from_secs(30));
    let (_, entry) = support::jobs::create("ese_device", "x", support::jobs::switch_params());
    let mut key = b"/jobs/all/create:monitoring_worker:ese_device:x".to_vec();
    key.extend_from_slice(b"\xff:1:t");
    etcd.etcdctl_bytes(&[b"put".as_slice(), &key, entry.to_string().as_bytes()]);
    // A good job afterwards runs: the instance was not stuck on the bad one.
    let (id, good) = support::jobs::create("ese_device", "good", support::jobs::switch_params());
    support::jobs::put(&store, &id, &good);
    support::jobs::wait_state(&store, "ese_devices", "good", Duration::from_secs(30));
    let log = monitor.log_text();
    let about: Vec<&str> = log.lines().filter(|l| l.contains("x\\xff:1:t")).collect();
    assert_eq!(about.len(), 1, "reported once:\n{log}");
    assert!(about[0].contains("not UTF-8 text") && about[0].contains("ERROR"), "{}", about[0]);
    assert!(!log.contains("dropped"), "no job was dropped (nothing looped):\n{log}");
    let samples = scrape_until(listen, "the good job counted", |s| {
        s.get("esi_monitor_jobs_completed_total{action=\"create\"}") == Some(&1.0)
    });
    assert_eq!(get(&samples, "esi_monitor_jobs_unparseable_total"), 1.0);
    // Only the good job ever reached a pool thread.
    assert_eq!(get(&samples, "esi_monitor_jobs_received_total{action=\"create\"}"), 1.0);
    // A restarted watch reads the table again and does not report the key again.
    etcd.restart();
    let (id, again) = support::jobs::create("ese_device", "good-2", support::jobs::switch_params());
    support::jobs::put(&etcd.store(), &id, &again);
    support::jobs::wait_state(&etcd.store(), "ese_devices", "good-2", Duration::from_secs(60));
    let log = monitor.log_text();
    assert_eq!(log.lines().filter(|l| l.contains("x\\xff:1:t")).count(), 1, "{log}");
    assert!(monitor.log_text().contains("reading it again"), "the watch was restarted:\n{log}");
}

#[test]
fn a_commit_larger_than_etcd_accepts_fails_its_job_once() {
    let etcd = Etcd::start();
    let store = etcd.store();
    let listen = support::free_listen();
    // One scalar of 800,000 `"` renders within the template limit and doubles in JSON.
    let template = "big:\n  type: etcd_reader\n  etcd_type: gate\n  etcd_id: '{{ '\"' * 800000 }}'\n";
    support::jobs::put_template(&store, "huge_monitoring", template);
    let monitor = Monitor::start(&etcd.endpoint, &format!("metrics: {{listen: \"{listen}\"}}"));
    let (id, entry) = support::jobs::create("huge", "h1", json!([]));
    support::jobs::put(&store, &id, &entry);
    let state = support::jobs::wait_state(&store, "huges", "h1", Duration::from_secs(30));
    let error = state["error"].as_str().unwrap();
    assert!(error.contains("huge_monitoring") && error.contains("bytes") && error.contains("max_request_bytes"), "{error}");
    assert_eq!(state["state"]["worker_state"], "CREATE_FAILED", "{state}");
    assert_eq!(store.get("/state/v2.0/huges/h1").unwrap().unwrap().version, 1);
    let samples = scrape_until(listen, "the failure counted", |s| {
        s.get("esi_monitor_jobs_failed_total{action=\"create\"}") == Some(&1.0)
    });
    assert_eq!(get(&samples, "esi_monitor_jobs_received_total{action=\"create\"}"), 1.0, "run once");
    assert_eq!(get(&samples, "esi_monitor_etcd_txns_total{result=\"error\"}"), 0.0, "nothing too large was sent");
    let log = monitor.log_text();
    assert_eq!(log.lines().filter(|l| l.contains("max_request_bytes")).count(), 1, "{log}");
}
