//! Several esi-monitor processes against one etcd: every job is completed exactly once, and
//! the jobs a killed instance had claimed are completed by another once its lease expires.

mod support;

use esi_monitor::store::Store;
use serde_json::json;
use support::jobs::{assert_each_once, completed, count_state_puts};
use std::time::Duration;
use support::etcd::Etcd;
use support::monitor::Monitor;
use support::wait_for;

fn write_jobs(store: &Store, rtype: &str, prefix: &str, n: usize) {
    for i in 0..n {
        let (id, entry) = support::jobs::create(rtype, &format!("{prefix}-{i:04}"), support::jobs::switch_params());
        support::jobs::put(store, &id, &entry);
    }
}

#[test]
fn two_instances_complete_500_jobs_exactly_once() {
    let etcd = Etcd::start();
    let store = etcd.store();
    support::replay::load_templates(&store);
    let counts = count_state_puts(&store);
    let _a = Monitor::start(&etcd.endpoint, "worker: {threads: 4}");
    let _b = Monitor::start(&etcd.endpoint, "worker: {threads: 4}");
    write_jobs(&store, "ese_device", "dev", 500);
    wait_for("500 completed jobs", Duration::from_secs(120), || {
        (completed(&store, "ese_devices", "dev") == 500).then_some(())
    });
    let (left, _) = store.range("/jobs/").unwrap();
    assert!(left.is_empty(), "no job keys are left behind: {:?}", left.first().map(|kv| &kv.key));
    assert_each_once(&counts, "ese_devices", "dev", 500);
}

#[test]
fn jobs_of_a_killed_instance_are_completed_by_the_other_after_its_lease_expires() {
    let etcd = Etcd::start();
    let store = etcd.store();
    support::replay::load_templates(&store);
    // Jobs that wait (verify mode) until the resource they read is UP.
    let template = "dep:\n  type: etcd_reader\n  etcd_type: gate\n  etcd_id: g1\n  timeout: 600\n  time_between_retries: 0.05\n";
    // `body` as an object here (gohan stores it as JSON text: both are accepted).
    let body = json!({"handler": "monitoring_worker", "id": "widget_monitoring", "template_file": template});
    store.put("/config/v2.0/heat_templates/widget_monitoring", json!({"body": body}).to_string()).unwrap();
    store.put("/monitoring/v2.0/gates/g1", r#"{"g": "DOWN", "version": 1}"#).unwrap();
    let counts = count_state_puts(&store);
    let verify = "jobs: {verify: true}\nworker: {threads: 8}";
    let mut a = Monitor::start(&etcd.endpoint, verify);
    write_jobs(&store, "widget", "w", 20);
    let claimed_by_a = wait_for("instance A to claim 8 jobs", Duration::from_secs(20), || {
        let (kvs, _) = store.range("/jobs/working/").unwrap();
        (kvs.len() == 8).then_some(kvs)
    });
    let _b = Monitor::start(&etcd.endpoint, verify);
    wait_for("instance B to claim 8 more", Duration::from_secs(20), || {
        let (kvs, _) = store.range("/jobs/working/").unwrap();
        (kvs.len() == 16).then_some(())
    });
    a.kill9();
    store.put("/monitoring/v2.0/gates/g1", r#"{"g": "UP", "version": 1}"#).unwrap();
    wait_for("all 20 jobs completed", Duration::from_secs(60), || {
        (completed(&store, "widgets", "w") == 20).then_some(())
    });
    // A's claims were not released by A: they went with its lease, and B re-ran the jobs.
    for kv in &claimed_by_a {
        assert!(store.get(&kv.key).unwrap().is_none(), "{} was completed", kv.key);
    }
    assert_each_once(&counts, "widgets", "w", 20);
}
