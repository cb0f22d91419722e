//! SNMP plugins in verify mode against real agents (net-snmp snmpd): the recorded
//! ese_device, ese_physical_port and ese_logical_port flows (seeds 003 and 004 among them)
//! with device 10.161.0.34 mapped onto a loopback agent reach the recorded job states; a
//! port that is down, or absent, fails its job with the documented `/state` error.

mod support;

use serde_json::{json, Value};
use std::time::Duration;
use support::etcd::Etcd;
use support::monitor::Monitor;
use support::replay::{self, Recorder};
use support::snmpd::{Interface, Snmpd};

/// The recorded device 10.161.0.34, as the replay maps it onto loopback.
const DEVICE: &str = "127.161.0.34";
const COMMUNITY: &str = "ESE_NODE_COMMUNITY";

/// The interfaces the recorded ports name, with ifIndex numbers as a QFX has them.
fn qfx_interfaces() -> Vec<Interface> {
    vec![
        Interface::new(513, "xe-0/0/3", true),
        Interface::new(514, "xe-0/0/4", true),
        Interface::new(545, "xe-0/0/3.1025", true),
        Interface::new(546, "xe-0/0/4.1025", true),
        Interface::new(560, "ae0.1025", true),
    ]
}

fn monitor_config(agent: &Snmpd) -> String {
    format!(
        "jobs: {{cleanup: false, verify: true}}\nsnmp: {{port: {}, timeout_ms: 300, retries: 1}}",
        agent.port()
    )
}

fn replay_ese_flows(run: &str, loopback: &str) {
    let agent = Snmpd::start(loopback, COMMUNITY, &qfx_interfaces());
    let etcd = Etcd::start();
    let store = etcd.store();
    replay::load_templates(&store);
    let mut files: Vec<_> = std::fs::read_dir(replay::run_dir(run))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("ese_"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 5, "ese_device, two physical and two logical ports");
    let (mut events, _) = replay::load_flows(&files);
    replay::map_address(&mut events, DEVICE, loopback);
    let recorder = Recorder::start(&store);
    let _monitor = Monitor::start(&etcd.endpoint, &monitor_config(&agent));
    let mut verdicts = Vec::new();
    let jobs = replay::replay(&store, &recorder, &events, Duration::from_secs(30), |_| {}, |_, i, commit| {
        let expected = replay::assert_same_outcome(&store, &events, i, commit, &format!("run {run} (verify mode)"));
        verdicts.extend(expected.into_values().flatten());
    });
    assert_eq!(jobs, 5);
    let text = serde_json::to_string(&verdicts).unwrap();
    for object in ["switch", "port", "logical_port"] {
        assert!(text.contains(&format!("\\\"{object}\\\": \\\"ACTIVE\\\"")), "{object} verified ACTIVE: {text}");
    }
}

#[test]
fn ese_flows_of_the_cfg_run_in_verify_mode() {
    replay_ese_flows("cfg", "127.0.0.21");
}

#[test]
fn ese_flows_of_the_igw_run_in_verify_mode() {
    replay_ese_flows("igw", "127.0.0.22");
}

#[test]
fn ese_flows_of_the_vpn_run_in_verify_mode() {
    replay_ese_flows("vpn", "127.0.0.23");
}

/// One physical-port job against `agent` with a 1 s timeout; returns its `/state`.
fn physical_port_job(agent: &Snmpd, name: &str) -> Value {
    let etcd = Etcd::start();
    let store = etcd.store();
    let template = "port:\n  type: physical_port\n  community_name: {{ community_name }}\n  device_ip: {{ device_ip }}\n  name: {{ name }}\n  timeout: 1\n  time_between_retries: 0.2\n";
    support::jobs::put_template(&store, "ese_physical_port_monitoring", template);
    let _monitor = Monitor::start(&etcd.endpoint, &monitor_config(agent));
    let (id, entry) = support::jobs::create("ese_physical_port", "pp1", json!([
        {"param": "community_name", "type": "value", "value": COMMUNITY},
        {"param": "device_ip", "type": "value", "value": agent.addr()},
        {"param": "name", "type": "value", "value": name}]));
    support::jobs::put(&store, &id, &entry);
    support::wait_for("the job's /state", Duration::from_secs(30), || {
        let kv = store.get("/state/v2.0/ese_physical_ports/pp1").unwrap()?;
        serde_json::from_slice(&kv.value).ok()
    })
}

#[test]
fn a_port_that_stays_down_fails_its_job_after_the_timeout() {
    let agent = Snmpd::start("127.0.0.24", COMMUNITY, &qfx_interfaces());
    agent.set_up("xe-0/0/4", false);
    let state = physical_port_job(&agent, "xe-0/0/4");
    assert_eq!(state["state"]["worker_state"], "CREATE_FAILED");
    let error = state["error"].as_str().unwrap();
    println!("{error}");
    for needle in ["ese_physical_port pp1", "ese_physical_port_monitoring", "\"port\"", "did not become ACTIVE within 1s", "DOWN"] {
        assert!(error.contains(needle), "error {error:?} should mention {needle:?}");
    }
    assert!(!error.contains(COMMUNITY), "the community never appears: {error}");
}

#[test]
fn a_port_name_the_device_does_not_have_fails_naming_the_interface() {
    let agent = Snmpd::start("127.0.0.25", COMMUNITY, &qfx_interfaces());
    let state = physical_port_job(&agent, "xe-9/9/9");
    assert_eq!(state["state"]["worker_state"], "CREATE_FAILED");
    let error = state["error"].as_str().unwrap();
    println!("{error}");
    for needle in ["\"port\"", "xe-9/9/9", "no answer"] {
        assert!(error.contains(needle), "error {error:?} should mention {needle:?}");
    }
}
