//! A broken watch never loses a job: after etcd restarts, or when the history a watch needs
//! was compacted, the job table is read again and every job still runs.

mod support;

use esi_monitor::store::WatchEvent;
use serde_json::json;
use std::time::Duration;
use support::etcd::Etcd;
use support::monitor::Monitor;
use support::wait_for;

fn put_job(store: &esi_monitor::store::Store, rid: &str) {
    let (id, entry) = support::jobs::create("ese_device", rid, support::jobs::switch_params());
    support::jobs::put(store, &id, &entry);
}

fn wait_state(etcd: &Etcd, rid: &str) {
    wait_for(&format!("/state of {rid}"), Duration::from_secs(60), || {
        let store = etcd.store();
        store.get(&format!("/state/v2.0/ese_devices/{rid}")).ok().flatten().map(|_| ())
    });
}

#[test]
fn jobs_written_after_an_etcd_restart_are_executed() {
    let mut etcd = Etcd::start();
    support::replay::load_templates(&etcd.store());
    let monitor = Monitor::start(&etcd.endpoint, "");
    put_job(&etcd.store(), "before");
    wait_state(&etcd, "before");
    etcd.restart();
    put_job(&etcd.store(), "after");
    wait_state(&etcd, "after");
    let log = monitor.log_text();
    assert!(log.contains("the watch on /jobs/ broke") || log.contains("reading /jobs/"), "the watch break is logged:\n{log}");
}

#[test]
fn a_watch_from_a_compacted_revision_reports_broken() {
    let etcd = Etcd::start();
    let store = etcd.store();
    for i in 0..5 {
        store.put("/jobs/all/x", format!("{i}")).unwrap();
    }
    let (_, rev) = store.range("/jobs/").unwrap();
    etcd.compact(rev);
    let watch = store.watch("/jobs/", rev - 3).unwrap();
    match watch.events.recv_timeout(Duration::from_secs(10)) {
        Ok(WatchEvent::Broken(reason)) => assert!(reason.contains("compact"), "{reason}"),
        other => panic!("expected a broken watch, got {other:?}"),
    }
}

#[test]
fn jobs_waiting_before_the_start_are_executed() {
    let etcd = Etcd::start();
    support::replay::load_templates(&etcd.store());
    put_job(&etcd.store(), "early");
    let _monitor = Monitor::start(&etcd.endpoint, "");
    wait_state(&etcd, "early");
}

#[test]
fn sigterm_stops_the_service_and_releases_its_lease() {
    let etcd = Etcd::start();
    support::replay::load_templates(&etcd.store());
    let mut monitor = Monitor::start_with(&format!(
        "etcd: {{endpoints: [\"{}\"], lease_ttl_s: 600}}\nmetrics: {{listen: \"\"}}",
        etcd.endpoint
    ));
    put_job(&etcd.store(), "served");
    wait_state(&etcd, "served");
    let status = monitor.terminate(Duration::from_secs(30));
    assert!(status.success(), "exit status {status}");
    let log = monitor.log_text();
    assert!(log.contains("esi-monitor stopped"), "{log}");
    // The lease (600 s) was revoked at once, not left to expire.
    let out = std::process::Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", etcd.endpoint))
        .args(["lease", "list"])
        .output()
        .expect("etcdctl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("found 0 leases"), "{text}");
}

#[test]
fn a_backlog_larger_than_one_etcd_message_is_served() {
    let etcd = Etcd::start();
    let store = etcd.store();
    support::replay::load_templates(&store);
    // 2,600 jobs of ~2.3 KB: more than gRPC's default 4 MiB in one range answer.
    let padding = "p".repeat(2048);
    let txns: Vec<_> = (0..2600)
        .map(|i| {
            let (id, mut entry) = support::jobs::create("ese_device", &format!("b{i:05}"), support::jobs::switch_params());
            entry[1]["resource_input"]["description"] = json!(padding);
            esi_monitor::store::Txn {
                when: vec![],
                then: vec![esi_monitor::store::Op::put(format!("/jobs/all/{id}"), entry.to_string())],
            }
        })
        .collect();
    for chunk in txns.chunks(128) {
        assert!(store.txns(chunk).into_iter().all(|r| r.map(|o| o.applied) == Ok(true)));
    }
    let _monitor = Monitor::start(&etcd.endpoint, "");
    wait_for("2,600 completed jobs", Duration::from_secs(300), || {
        let (kvs, _) = store.range("/state/v2.0/ese_devices/b").unwrap();
        (kvs.len() == 2600).then_some(())
    });
}

#[test]
fn a_lost_lease_is_replaced_and_jobs_still_run() {
    let etcd = Etcd::start();
    let store = etcd.store();
    support::replay::load_templates(&store);
    let monitor = Monitor::start(&etcd.endpoint, "monitoring: {enabled: false}");
    put_job(&store, "before");
    wait_state(&etcd, "before");
    // As if the lease had expired (etcd unreachable for longer than its TTL).
    let leases = etcd.etcdctl(&["lease", "list"]);
    let id = leases.lines().nth(1).expect("the service's lease").trim().to_string();
    etcd.etcdctl(&["lease", "revoke", &id]);
    let log = monitor.wait_log("a new lease", "new lease", Duration::from_secs(30));
    // etcdctl pads the id to 16 hex digits; the log does not.
    let unpadded = id.trim_start_matches('0');
    assert!(log.contains(&format!("etcd lease {unpadded} expired")), "lease {id}: {log}");
    put_job(&store, "after");
    wait_state(&etcd, "after");
    let new = etcd.etcdctl(&["lease", "list"]);
    assert!(new.contains("found 1 leases") && !new.contains(&id), "one new lease: {new}");
}
