//! `/metrics` of the running service, scraped over real HTTP: after a replay of recorded
//! flows the job counters equal the jobs replayed, and while objects are polled the probe
//! counters move and the objects-by-status gauge follows a DOWN object.

mod support;

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;
use support::contrail_sim::ContrailSim;
use support::etcd::Etcd;
use support::monitor::Monitor;
use support::replay::{self, Recorder};
use support::snmpd::Snmpd;
use support::scrape::{get, scrape, scrape_until};
use support::wait_for;

const LIMIT: Duration = Duration::from_secs(30);
const STATUSES: [&str; 4] = ["UP", "DOWN", "OTHER", "UNKNOWN"];

#[test]
fn job_counters_equal_the_replayed_jobs() {
    let etcd = Etcd::start();
    let store = etcd.store();
    replay::load_templates(&store);
    let (events, _) = replay::load_run(&replay::run_dir("cfg"));
    let recorder = Recorder::start(&store);
    let listen = support::free_listen();
    let monitor = Monitor::start(
        &etcd.endpoint,
        &format!(
            "jobs: {{cleanup: false, verify: false}}\nworker: {{threads: 4, queue: 64}}\n\
             monitoring: {{enabled: false}}\nmetrics: {{listen: \"{listen}\"}}"
        ),
    );
    let mut by_action: BTreeMap<String, f64> = BTreeMap::new();
    let jobs = replay::replay(&store, &recorder, &events, Duration::from_secs(20), |_| {}, |id, _, _| {
        *by_action.entry(id.split(':').next().unwrap().to_string()).or_default() += 1.0;
    });
    assert!(jobs > 0 && by_action.contains_key("create") && by_action.contains_key("delete"), "{by_action:?}");
    // One job that fails (no template for its type) and one entry that is not a job at all.
    let (id, entry) = support::jobs::create("widget", "w1", json!([]));
    support::jobs::put(&store, &id, &entry);
    store.put("/jobs/all/not-a-job", "[\"monitoring_worker\", {nope").unwrap();
    wait_for("the failing job's /state", LIMIT, || {
        let state: Value = serde_json::from_slice(&store.get("/state/v2.0/widgets/w1").unwrap()?.value).ok()?;
        (state["state"]["worker_state"] == "CREATE_FAILED").then_some(())
    });

    let done = by_action.values().sum::<f64>() + 1.0;
    let s = scrape_until(listen, "every commit counted and the pool idle", |s| {
        s.get("esi_monitor_job_duration_seconds_count") == Some(&done)
            && s.get("esi_monitor_pool_threads_busy") == Some(&0.0)
            && s.get("esi_monitor_work_queue_depth") == Some(&0.0)
    });
    for action in ["create", "delete"] {
        assert_eq!(
            get(&s, &format!("esi_monitor_jobs_completed_total{{action=\"{action}\"}}")),
            by_action[action],
            "{action} jobs completed\n{}",
            monitor.log_text()
        );
    }
    assert_eq!(get(&s, "esi_monitor_jobs_failed_total{action=\"create\"}"), 1.0, "the widget job failed");
    assert_eq!(get(&s, "esi_monitor_jobs_failed_total{action=\"delete\"}"), 0.0);
    let received = get(&s, "esi_monitor_jobs_received_total{action=\"create\"}")
        + get(&s, "esi_monitor_jobs_received_total{action=\"delete\"}");
    assert!(received >= done, "every committed job was received first: {received} < {done}");
    // An entry that cannot be parsed is counted at each read of the job table.
    let restarts = get(&s, "esi_monitor_watch_restarts_total{watch=\"jobs\"}");
    assert_eq!(get(&s, "esi_monitor_jobs_unparseable_total"), 1.0 + restarts);
    assert!(get(&s, "esi_monitor_etcd_txns_total{result=\"applied\"}") >= 2.0 * done, "a claim and a commit per job");
    assert!(get(&s, "esi_monitor_etcd_txn_batch_duration_seconds_count") > 0.0);
    assert!(get(&s, "esi_monitor_etcd_read_duration_seconds_count") > 0.0, "the job table was read");
    assert_eq!(get(&s, "esi_monitor_lease_held"), 1.0);
    assert_eq!(get(&s, "esi_monitor_work_queue_capacity"), 64.0);
    assert_eq!(get(&s, "esi_monitor_objects{status=\"UP\"}"), 0.0, "the poller is off");
    let build = format!("{{version=\"{}\",revision=\"{}\"}}", env!("CARGO_PKG_VERSION"), env!("ESI_MONITOR_REVISION"));
    assert_eq!(get(&s, &format!("esi_monitor_build_info{build}")), 1.0);

    let (_, content_type) = scrape(listen);
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut unknown = agent.get(&format!("http://{listen}/nothing")).call().unwrap();
    assert_eq!(unknown.status().as_u16(), 404);
    let text = unknown.body_mut().read_to_string().unwrap();
    assert!(text.contains("/metrics") && text.contains("/healthz"), "{text}");
}

#[test]
fn probe_counters_move_and_objects_by_status_follow_a_down_object() {
    let agent = Snmpd::start("127.0.0.51", "public", &Snmpd::junos_interfaces());
    let sim = ContrailSim::start();
    let fq = "default-domain:admin:metrics-vmi";
    sim.set_l2_active(fq, true);
    let etcd = Etcd::start();
    let store = etcd.store();
    replay::load_templates(&store);
    let listen = support::free_listen();
    let _monitor = Monitor::start(
        &etcd.endpoint,
        &format!(
            // No UVE stream: its change would count as one of the two bad readings.
            "snmp: {{port: {}, timeout_ms: 300, retries: 0}}\ncontrail: {{analytics_url: \"{}\", uve_stream: false}}\n\
             monitoring: {{interval_s: 1, down_after: 2}}\nmetrics: {{listen: \"{listen}\"}}",
            agent.port(),
            sim.url()
        ),
    );
    let (id, entry) = support::jobs::create("port", "mv1", json!([
        {"param": "device_owner", "type": "value", "value": "network:gw_interface"},
        {"param": "attached", "type": "value", "value": true},
        {"param": "vmi_fq_name", "type": "value", "value": fq},
        {"param": "vmi_uuid", "type": "value", "value": "mv1"}]));
    support::jobs::put(&store, &id, &entry);
    let (id, entry) = support::jobs::create("ese_physical_port", "mp1", json!([
        {"param": "community_name", "type": "value", "value": "public"},
        {"param": "device_ip", "type": "value", "value": agent.addr()},
        {"param": "name", "type": "value", "value": "xe-0/0/4"}]));
    support::jobs::put(&store, &id, &entry);

    let up = scrape_until(listen, "both objects polled UP", |s| s.get("esi_monitor_objects{status=\"UP\"}") == Some(&2.0));
    let results = |s: &BTreeMap<String, f64>, t: &str, o: &str| {
        get(s, &format!("esi_monitor_probe_results_total{{type=\"{t}\",outcome=\"{o}\"}}"))
    };
    assert!(results(&up, "contrail_vmi", "up") >= 1.0 && results(&up, "snmp_port", "up") >= 1.0);
    assert!(get(&up, "esi_monitor_probe_duration_seconds_count{type=\"contrail_vmi\"}") >= 1.0);
    assert!(get(&up, "esi_monitor_probe_duration_seconds_count{type=\"snmp_port\"}") >= 1.0);
    assert_eq!(get(&up, "esi_monitor_objects{status=\"DOWN\"}"), 0.0);
    assert_eq!(get(&up, "esi_monitor_objects{status=\"UNKNOWN\"}"), 0.0);

    sim.set_l2_active(fq, false);
    let down = scrape_until(listen, "the VMI confirmed DOWN", |s| s.get("esi_monitor_objects{status=\"DOWN\"}") == Some(&1.0));
    assert_eq!(get(&down, "esi_monitor_objects{status=\"UP\"}"), 1.0, "the port stays UP");
    assert!(results(&down, "contrail_vmi", "down") >= 2.0, "down_after: 2 bad results before DOWN");
    assert!(results(&down, "snmp_port", "up") > results(&up, "snmp_port", "up"), "the port is still polled");
    wait_for("the DOWN record", LIMIT, || {
        let kv = store.get("/monitoring/v2.0/ports/mv1").unwrap()?;
        (serde_json::from_slice::<Value>(&kv.value).ok()? == json!({"vmi": "DOWN", "version": 1})).then_some(())
    });
}

#[test]
fn an_etcd_restart_keeps_the_lease_and_counts_watch_restarts() {
    let mut etcd = Etcd::start();
    let store = etcd.store();
    let listen = support::free_listen();
    let monitor = Monitor::start(&etcd.endpoint, &format!("metrics: {{listen: \"{listen}\"}}"));
    // Both prefixes read: what is written now reaches the service only through its watches.
    wait_for("both initial reads", LIMIT, || {
        let log = monitor.log_text();
        (log.contains("job table read at revision") && log.contains("registry read at revision")).then_some(())
    });
    store.put("/jobs/all/not-a-job", "[\"monitoring_worker\", {nope").unwrap();
    let entry = json!({"resource_type": "port", "resource_id": "r1", "version": 1,
        "objects": {"vmi": {"type": "virtual_machine_interface", "fq_name": "default-domain:admin:r1"}}});
    store.put("/esi-worker/monitoring/v2.0/ports/r1", entry.to_string()).unwrap();
    let held = |s: &BTreeMap<String, f64>| STATUSES.iter().map(|st| get(s, &format!("esi_monitor_objects{{status=\"{st}\"}}"))).sum::<f64>();
    let before = scrape_until(listen, "both watches delivering", |s| {
        s.get("esi_monitor_jobs_unparseable_total") == Some(&1.0) && held(s) == 1.0
    });
    assert_eq!(get(&before, "esi_monitor_lease_held"), 1.0);
    assert_eq!(get(&before, "esi_monitor_watch_restarts_total{watch=\"jobs\"}"), 0.0);

    etcd.restart();
    // The keep-alive stream breaks with the connection and is opened again, and so do both
    // watches; the job table is read again (the bad entry is counted again) and the object is
    // still held once.
    let after = scrape_until(listen, "the lease kept and both watches restarted", |s| {
        s.get("esi_monitor_lease_held") == Some(&1.0)
            && s.get("esi_monitor_watch_restarts_total{watch=\"jobs\"}") >= Some(&1.0)
            && s.get("esi_monitor_watch_restarts_total{watch=\"registry\"}") >= Some(&1.0)
            && s.get("esi_monitor_jobs_unparseable_total") > Some(&1.0)
            && monitor.log_text().contains("keep-alive interrupted")
    });
    assert_eq!(held(&after), 1.0, "re-reading the registry does not count an object twice");
}
