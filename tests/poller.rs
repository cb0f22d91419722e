//! The poller against real parts: objects registered by jobs are polled every interval, a
//! status turns DOWN after exactly `down_after` bad polls and UP after one good one, and
//! nothing is written while nothing changes.

mod support;

use esi_monitor::store::Store;
use serde_json::{json, Value};
use std::time::Duration;
use support::contrail_sim::ContrailSim;
use support::etcd::Etcd;
use support::monitor::Monitor;
use support::snmpd::Snmpd;
use support::wait_for;

const LIMIT: Duration = Duration::from_secs(30);

fn put_job(store: &Store, rtype: &str, rid: &str, params: Value) {
    let (id, entry) = support::jobs::create(rtype, rid, params);
    support::jobs::put(store, &id, &entry);
}

fn record(store: &Store, key: &str) -> Option<Value> {
    serde_json::from_slice(&store.get(key).unwrap()?.value).ok()
}

fn wait_record(store: &Store, key: &str, want: Value) {
    wait_for(&format!("{key} = {want}"), LIMIT, || (record(store, key).as_ref() == Some(&want)).then_some(()));
}

#[test]
fn a_port_turns_down_after_down_after_polls_and_up_after_one() {
    let agent = Snmpd::start("127.0.0.41", "public", &Snmpd::junos_interfaces());
    let etcd = Etcd::start();
    let store = etcd.store();
    support::replay::load_templates(&store);
    let _monitor = Monitor::start(
        &etcd.endpoint,
        &format!("snmp: {{port: {}, timeout_ms: 300, retries: 0}}\nmonitoring: {{interval_s: 1, down_after: 2}}", agent.port()),
    );
    put_job(&store, "ese_physical_port", "pp1", json!([
        {"param": "community_name", "type": "value", "value": "public"},
        {"param": "device_ip", "type": "value", "value": agent.addr()},
        {"param": "name", "type": "value", "value": "xe-0/0/4"}]));
    let key = "/monitoring/v2.0/ese_physical_ports/pp1";
    wait_record(&store, key, json!({"port": "UP", "version": 1}));

    // Count polls through the agent's answers: DOWN needs exactly two bad ones.
    let (_, rev) = store.range("/nothing").unwrap();
    agent.set_up("xe-0/0/4", false);
    wait_record(&store, key, json!({"port": "DOWN", "version": 1}));
    let writes = store.range("/monitoring/").unwrap().1 - rev;
    assert_eq!(writes, 1, "one write for the change, none for the first bad poll");
    agent.set_up("xe-0/0/4", true);
    wait_record(&store, key, json!({"port": "UP", "version": 1}));
}

#[test]
fn a_vmi_follows_l2_active_and_a_steady_state_writes_nothing() {
    let sim = ContrailSim::start();
    let fq = "default-domain:admin:vmi-1";
    sim.set_l2_active(fq, true);
    let etcd = Etcd::start();
    let store = etcd.store();
    support::replay::load_templates(&store);
    let _monitor = Monitor::start(
        &etcd.endpoint,
        &format!("contrail: {{analytics_url: \"{}\"}}\nmonitoring: {{interval_s: 1, down_after: 2}}", sim.url()),
    );
    put_job(&store, "port", "vmi-1", json!([
        {"param": "device_owner", "type": "value", "value": "network:gw_interface"},
        {"param": "attached", "type": "value", "value": true},
        {"param": "vmi_fq_name", "type": "value", "value": fq},
        {"param": "vmi_uuid", "type": "value", "value": "vmi-1"}]));
    let key = "/monitoring/v2.0/ports/vmi-1";
    wait_record(&store, key, json!({"vmi": "UP", "version": 1}));

    // Steady state: ten more polls, and the etcd revision does not move.
    let (_, rev) = store.range("/nothing").unwrap();
    let polled = sim.requests();
    wait_for("ten more polls", LIMIT, || (sim.requests() >= polled + 10).then_some(()));
    assert_eq!(store.range("/nothing").unwrap().1, rev, "nothing written while nothing changed");

    sim.set_l2_active(fq, false);
    wait_record(&store, key, json!({"vmi": "DOWN", "version": 1}));
    sim.set_l2_active(fq, true);
    wait_record(&store, key, json!({"vmi": "UP", "version": 1}));
}

fn vmi_params(fq: &str) -> Value {
    json!([{"param": "device_owner", "type": "value", "value": "network:gw_interface"},
           {"param": "attached", "type": "value", "value": true},
           {"param": "vmi_fq_name", "type": "value", "value": fq},
           {"param": "vmi_uuid", "type": "value", "value": "u"}])
}

#[test]
fn a_restarted_instance_polls_again_and_writes_only_what_changed() {
    let sim = ContrailSim::start();
    let (up, down) = ("default-domain:admin:stays-up", "default-domain:admin:goes-down");
    sim.set_l2_active(up, true);
    sim.set_l2_active(down, true);
    let etcd = Etcd::start();
    let store = etcd.store();
    support::replay::load_templates(&store);
    let config = format!("contrail: {{analytics_url: \"{}\"}}\nmonitoring: {{interval_s: 1, down_after: 2}}", sim.url());
    let mut first = Monitor::start(&etcd.endpoint, &config);
    put_job(&store, "port", "stays-up", vmi_params(up));
    put_job(&store, "port", "goes-down", vmi_params(down));
    wait_record(&store, "/monitoring/v2.0/ports/stays-up", json!({"vmi": "UP", "version": 1}));
    wait_record(&store, "/monitoring/v2.0/ports/goes-down", json!({"vmi": "UP", "version": 1}));

    first.kill9();
    sim.set_l2_active(down, false); // changes while nobody watches
    let versions = |store: &esi_monitor::store::Store| -> Vec<i64> {
        let (kvs, _) = store.range("/monitoring/").unwrap();
        kvs.iter().map(|kv| kv.version).collect()
    };
    let before = versions(&store);
    let polled = sim.requests();
    let _second = Monitor::start(&etcd.endpoint, &config);
    wait_for("the new instance to poll", LIMIT, || (sim.requests() > polled).then_some(()));
    wait_record(&store, "/monitoring/v2.0/ports/goes-down", json!({"vmi": "DOWN", "version": 1}));
    // Exactly one write since the restart: the record that changed (goes-down sorts first).
    assert_eq!(versions(&store), [before[0] + 1, before[1]], "only the changed record is written after the restart");
    assert_eq!(record(&store, "/monitoring/v2.0/ports/stays-up"), Some(json!({"vmi": "UP", "version": 1})));
}

#[test]
fn a_modify_flow_replaces_the_v1_record_with_a_v2_one() {
    let sim = ContrailSim::start();
    let fq = "default-domain:admin:m1";
    sim.set_l2_active(fq, true);
    let etcd = Etcd::start();
    let store = etcd.store();
    support::replay::load_templates(&store);
    let config = format!("contrail: {{analytics_url: \"{}\"}}\nmonitoring: {{interval_s: 1, down_after: 2}}", sim.url());
    let _monitor = Monitor::start(&etcd.endpoint, &config);
    put_job(&store, "port", "m1", vmi_params(fq));
    let (registry, key) = ("/esi-worker/monitoring/v2.0/ports/m1", "/monitoring/v2.0/ports/m1");
    wait_record(&store, key, json!({"vmi": "UP", "version": 1}));

    // The update's delete job (is_first, old params) removes the v1 entry and record…
    let job = |action: &str, suffix: &str, first: bool, last: bool, deps: Value| {
        let id = format!("{action}:monitoring_worker:port:m1:2:{suffix}");
        let body = json!({"id": id, "job_name": "port:m1:2", "action": action, "handler": "monitoring_worker",
            "resource_type": "port", "resource_id": "m1", "version": 2, "is_first": first, "is_last": last,
            "on_failure": if action == "delete" { "ignore" } else { "fail" }, "dependency": deps,
            "params": vmi_params(fq), "resource_input": {"tenant_id": "t"}});
        (id.clone(), json!(["monitoring_worker", body, 0]).to_string())
    };
    let (delete_id, delete) = job("delete", "d", true, false, json!([]));
    let (create_id, create) = job("create", "c", false, true, json!([delete_id]));
    // In the job manager's order: a dependency that is not in /jobs/all counts as finished.
    store.put(&format!("/jobs/all/{delete_id}"), delete).unwrap();
    store.put(&format!("/jobs/all/{create_id}"), create).unwrap();
    // …and the create job registers v2, whose record follows.
    let state = wait_for("the create job's /state", LIMIT, || record(&store, "/state/v2.0/ports/m1").filter(|s| s["version"] == 2));
    assert_eq!(state["state"]["worker_state"], "CREATE_COMPLETED", "{state}\n{}", _monitor.log_text());
    wait_record(&store, key, json!({"vmi": "UP", "version": 2}));
    let entry = record(&store, registry).expect("v2 registered");
    assert_eq!(entry["version"], 2);
}

#[test]
fn a_stopped_agent_does_not_hold_up_the_polling_of_another() {
    use support::udp_delay::UdpDelay;
    let mut dead = Snmpd::start("127.0.0.42", "public", &Snmpd::junos_interfaces());
    let alive = Snmpd::start("127.0.0.43", "public", &Snmpd::junos_interfaces());
    // The proxy counts the answers the live agent gives.
    let counter = UdpDelay::start("127.0.0.43:0", alive.socket_addr());
    let etcd = Etcd::start();
    let store = etcd.store();
    let template = "port:\n  type: physical_port\n  community_name: public\n  device_ip: {{ ip }}\n  port: {{ port }}\n  name: xe-0/0/4\n";
    support::jobs::put_template(&store, "widget_monitoring", template);
    // Each poll of a dead device holds a thread for 2 x 3 s; the interval is 1 s.
    let _monitor = Monitor::start(
        &etcd.endpoint,
        "snmp: {timeout_ms: 3000, retries: 1}\nmonitoring: {interval_s: 1, down_after: 2}\nworker: {threads: 4}",
    );
    put_job(&store, "widget", "dead", json!([{"param": "ip", "type": "value", "value": dead.addr()},
        {"param": "port", "type": "value", "value": dead.port()}]));
    put_job(&store, "widget", "alive", json!([{"param": "ip", "type": "value", "value": "127.0.0.43"},
        {"param": "port", "type": "value", "value": counter.addr().port()}]));
    wait_record(&store, "/monitoring/v2.0/widgets/dead", json!({"port": "UP", "version": 1}));
    wait_record(&store, "/monitoring/v2.0/widgets/alive", json!({"port": "UP", "version": 1}));

    dead.stop();
    let before = counter.forwarded();
    // Confirming the dead device DOWN takes two polls of 6 s each: meanwhile the live one
    // keeps being polled every interval (serialized behind the dead one it would get ~2).
    wait_record(&store, "/monitoring/v2.0/widgets/dead", json!({"port": "DOWN", "version": 1}));
    let polls = counter.forwarded() - before;
    assert!(polls >= 6, "the live agent was polled {polls} times while the dead one was confirmed DOWN");
    assert_eq!(record(&store, "/monitoring/v2.0/widgets/alive"), Some(json!({"port": "UP", "version": 1})));
}

#[test]
fn status_shows_objects_last_results_confirmed_statuses_and_the_record() {
    let sim = ContrailSim::start();
    let fq = "default-domain:admin:st1";
    sim.set_l2_active(fq, true);
    let etcd = Etcd::start();
    let store = etcd.store();
    support::replay::load_templates(&store);
    let listen = support::free_listen();
    let monitor = Monitor::start(
        &etcd.endpoint,
        &format!(
            "contrail: {{analytics_url: \"{}\"}}\nmonitoring: {{interval_s: 1, down_after: 2}}\nmetrics: {{listen: \"{listen}\"}}",
            sim.url()
        ),
    );
    put_job(&store, "port", "st1", vmi_params(fq));
    wait_record(&store, "/monitoring/v2.0/ports/st1", json!({"vmi": "UP", "version": 1}));
    sim.set_l2_active(fq, false);
    let status = || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_esi-monitor"))
            .args(["status", "ports/st1", "--config"])
            .arg(&monitor.config)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // One bad result is not a DOWN yet: the last result and the confirmed status differ.
    let text = wait_for("a DOWN result not yet confirmed", LIMIT, || {
        let text = status();
        text.contains("last DOWN at 20").then_some(text)
    });
    assert!(text.contains("ports/st1: port registered at version 1"), "{text}");
    assert!(text.contains("vmi") && text.contains("virtual_machine_interface"), "{text}");
    assert!(text.contains("confirmed UP") || text.contains("confirmed DOWN"), "{text}");
    assert!(text.contains("/monitoring/v2.0/ports/st1: {\"vmi\":"), "{text}");
    let health = ureq::get(&format!("http://{listen}/healthz")).call().expect("/healthz answers");
    assert_eq!(health.status().as_u16(), 200);
    let unknown = std::process::Command::new(env!("CARGO_BIN_EXE_esi-monitor"))
        .args(["status", "ports/nope", "--config"])
        .arg(&monitor.config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&unknown.stdout);
    assert!(text.contains("not registered") && text.contains("no record"), "{text}");
}

#[test]
fn a_port_registered_while_its_device_is_being_polled_is_probed_right_after() {
    // With an hour's interval, a port that waited for its device's next slot would get no
    // record within the test's limit: only a probe right after registration gives one. The
    // device answers its first poll late, and the second port is registered meanwhile.
    let agent = Snmpd::start("127.0.0.27", "public", &Snmpd::junos_interfaces());
    let proxy = support::udp_delay::UdpDelay::start("127.0.0.28:0", agent.socket_addr());
    let etcd = Etcd::start();
    let store = etcd.store();
    support::replay::load_templates(&store);
    let _monitor = Monitor::start(
        &etcd.endpoint,
        &format!(
            "snmp: {{port: {}, timeout_ms: 4000, retries: 0}}\nmonitoring: {{interval_s: 3600, down_after: 2}}",
            proxy.addr().port()
        ),
    );
    let port_job = |i: usize, name: &str| {
        put_job(&store, "ese_physical_port", &format!("late{i}"), json!([
            {"param": "community_name", "type": "value", "value": "public"},
            {"param": "device_ip", "type": "value", "value": "127.0.0.28"},
            {"param": "name", "type": "value", "value": name}]));
    };
    proxy.delay_next_replies(8, Duration::from_millis(1500));
    port_job(0, "xe-0/0/3");
    wait_for("the first port registered", LIMIT, || {
        store.get("/esi-worker/monitoring/v2.0/ese_physical_ports/late0").unwrap().map(|_| ())
    });
    port_job(1, "xe-0/0/4");
    wait_record(&store, "/monitoring/v2.0/ese_physical_ports/late0", json!({"port": "UP", "version": 1}));
    wait_record(&store, "/monitoring/v2.0/ese_physical_ports/late1", json!({"port": "UP", "version": 1}));
}
