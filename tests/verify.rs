//! Verify mode (`jobs.verify: true`) for virtual_machine_interface objects, on the seed 002
//! modify flow (igw/port-7abe783f…) with the Contrail analytics simulator: the create job
//! waits until analytics reports `l2_active: true`, and fails with the documented `/state`
//! error when it never does within the object's timeout.

mod support;

use serde_json::Value;
use std::time::Duration;
use support::contrail_sim::ContrailSim;
use support::etcd::Etcd;
use support::monitor::Monitor;
use support::replay::{self, Recorder};

const PORT: &str = "7abe783f-4837-417d-b76f-771ec4d38b97";
const CREATE_V2: &str = "create:monitoring_worker:port:7abe783f-4837-417d-b76f-771ec4d38b97:2:72o7k";

/// Replays the seed 002 flow with the port template's VMI timeout replaced; calls `on_claim`
/// when the recording claims the v2 create job, and returns the final `/state` record.
fn run_seed_002(sim: &ContrailSim, vmi_timing: &str, mut on_claim: impl FnMut(&str)) -> Value {
    let etcd = Etcd::start();
    let store = etcd.store();
    replay::load_templates(&store);
    // The test's copy of port_monitoring: the same template with a short timeout.
    let key = "/config/v2.0/heat_templates/port_monitoring";
    let stored = store.get(key).unwrap().expect("port_monitoring loaded");
    let mut record: Value = serde_json::from_slice(&stored.value).unwrap();
    let mut body: Value = serde_json::from_str(record["body"].as_str().expect("gohan stores body as text")).unwrap();
    let text = body["template_file"].as_str().unwrap().to_string();
    assert!(text.contains("timeout: 120"), "the recorded template has a 120 s timeout");
    body["template_file"] = Value::from(text.replace("timeout: 120", vmi_timing));
    record["body"] = Value::from(body.to_string());
    store.put(key, record.to_string()).unwrap();

    let (events, _) = replay::load_flows(&[replay::run_dir("igw").join(format!("port-{PORT}.json"))]);
    let recorder = Recorder::start(&store);
    let _monitor = Monitor::start(
        &etcd.endpoint,
        &format!("jobs: {{cleanup: false, verify: true}}\ncontrail: {{analytics_url: \"{}\", timeout_ms: 500}}", sim.url()),
    );
    let jobs = replay::replay(&store, &recorder, &events, Duration::from_secs(30), &mut on_claim, |_, _, _| {});
    assert_eq!(jobs, 3, "create v1, delete v2, create v2");
    let kv = store.get(&format!("/state/v2.0/ports/{PORT}")).unwrap().expect("/state written");
    serde_json::from_slice(&kv.value).unwrap()
}

#[test]
fn vmi_becomes_active_once_analytics_reports_l2_active() {
    let sim = ContrailSim::start();
    let fq_name = format!("default-domain:admin:{PORT}");
    sim.set_l2_active(&fq_name, false);
    let before = sim.requests();
    let state = run_seed_002(&sim, "timeout: 60\n  time_between_retries: 0.1", |id| {
        if id == CREATE_V2 {
            // The job is being verified now: it keeps asking until analytics says active.
            support::wait_for("esi-monitor to poll analytics", Duration::from_secs(10), || {
                (sim.requests() >= before + 2).then_some(())
            });
            sim.set_l2_active(&fq_name, true);
        }
    });
    assert_eq!(state["error"], "");
    assert_eq!(state["version"], 2);
    assert_eq!(state["state"]["worker_state"], "CREATE_COMPLETED");
    let monitoring: Value = serde_json::from_str(state["state"]["state_monitoring"].as_str().unwrap()).unwrap();
    assert_eq!(monitoring, serde_json::json!({"vmi": "ACTIVE"}));
}

#[test]
fn vmi_that_stays_down_fails_the_job_after_its_timeout() {
    let sim = ContrailSim::start();
    sim.set_l2_active(&format!("default-domain:admin:{PORT}"), false);
    let state = run_seed_002(&sim, "timeout: 1\n  time_between_retries: 0.2", |_| {});
    assert_eq!(state["version"], 2);
    assert_eq!(state["state"]["worker_state"], "CREATE_FAILED");
    let error = state["error"].as_str().unwrap();
    println!("{error}");
    for needle in ["port", PORT, "port_monitoring", "\"vmi\"", "did not become ACTIVE within 1s", "DOWN"] {
        assert!(error.contains(needle), "error {error:?} should mention {needle:?}");
    }
}
