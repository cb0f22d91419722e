//! Replay of the recorded flows with the poller on and every peer answering UP: the
//! `/monitoring` records equal the original collectors' ones, and resources whose objects
//! are all etcd_reader/kafka_messenger get none. (Resources with NETCONF objects —
//! vrrp_session, bgp_session — wait for the NETCONF plugins of a later issue.)

mod support;

use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;
use support::contrail_sim::ContrailSim;
use support::etcd::Etcd;
use support::monitor::Monitor;
use support::replay::{self, Recorder};
use support::snmpd::{Interface, Snmpd};
use support::wait_for;

/// Types whose objects include NETCONF sessions: not polled by this version.
const NETCONF_TYPES: [&str; 3] = ["gw_interface", "common_function_gateway", "vpn_interface"];

fn agents(port: u16) -> Vec<Snmpd> {
    let switch = [(513, "xe-0/0/3"), (514, "xe-0/0/4"), (545, "xe-0/0/3.1025"), (546, "xe-0/0/4.1025")];
    let router = [(501, "ae0"), (510, "ge-0/0/1"), (520, "ge-0/0/1.122")];
    let up = |list: &[(u32, &str)]| list.iter().map(|(i, n)| Interface::new(*i, n, true)).collect::<Vec<_>>();
    vec![
        Snmpd::start_on("127.161.0.34", port, "ESE_NODE_COMMUNITY", &up(&switch)),
        Snmpd::start_on("127.79.5.184", port, "EDGE_ROUTER_COMMUNITY", &up(&router)),
        Snmpd::start_on("127.79.5.185", port, "EDGE_ROUTER_COMMUNITY", &up(&router)),
    ]
}

/// The last `/monitoring` record the original collectors wrote per key.
fn recorded_records(events: &[replay::Event]) -> BTreeMap<String, Value> {
    events
        .iter()
        .filter(|e| e.writer == "collector" && e.key.starts_with("/monitoring/"))
        .filter_map(|e| Some((e.key.clone(), e.value.clone()?)))
        .collect()
}

fn replay_run_with_poller(run: &str) {
    let port = Snmpd::free_port(&["127.161.0.34", "127.79.5.184", "127.79.5.185"]);
    let _agents = agents(port);
    let sim = ContrailSim::start();
    let etcd = Etcd::start();
    let store = etcd.store();
    replay::load_templates(&store);
    let (events, _) = replay::load_run(&replay::run_dir(run));
    let recorder = Recorder::start(&store);
    let config = format!(
        "jobs: {{cleanup: false}}\nsnmp: {{port: {port}, timeout_ms: 500, retries: 1}}\n\
         contrail: {{analytics_url: \"{}\"}}\nmonitoring: {{interval_s: 1, down_after: 2}}",
        sim.url()
    );
    let _monitor = Monitor::start(&etcd.endpoint, &config);
    replay::replay(&store, &recorder, &events, Duration::from_secs(20), |_| {}, |_, _, _| {});

    // Analytics knows every VMI and network the jobs registered, all active.
    let (registry, _) = store.range("/esi-worker/monitoring/v2.0/").unwrap();
    for kv in &registry {
        let entry: Value = serde_json::from_slice(&kv.value).unwrap();
        for object in entry["objects"].as_object().unwrap().values() {
            let fq = object["fq_name"].as_str().unwrap_or("");
            match object["type"].as_str() {
                Some("virtual_machine_interface") => sim.set_l2_active(fq, true),
                Some("virtual_network") => sim.add_vn(fq),
                _ => {}
            }
        }
    }

    let expected: BTreeMap<String, Value> = recorded_records(&events)
        .into_iter()
        .filter(|(key, _)| !NETCONF_TYPES.iter().any(|t| key.contains(&format!("/{t}s/"))))
        .collect();
    assert!(expected.len() >= 10, "run {run}: records to compare");
    for (key, want) in &expected {
        wait_for(&format!("run {run}: {key} = {want}"), Duration::from_secs(30), || {
            let kv = store.get(key).unwrap()?;
            (serde_json::from_slice::<Value>(&kv.value).ok()? == *want).then_some(())
        });
    }
    // Resources polled by nobody (etcd_reader and kafka_messenger objects only) get no record.
    for kv in &registry {
        let key = kv.key.replace("/esi-worker/monitoring/", "/monitoring/");
        let entry: Value = serde_json::from_slice(&kv.value).unwrap();
        let polled = entry["objects"].as_object().unwrap().values().any(|o| {
            !matches!(o["type"].as_str(), Some("etcd_reader") | Some("kafka_messenger"))
        });
        if !polled {
            assert!(store.get(&key).unwrap().is_none(), "run {run}: {key} has no polled object, so no record");
        }
    }
    println!("run {run}: {} /monitoring records equal the collectors'", expected.len());
}

#[test]
fn records_of_the_cfg_run_equal_the_collectors() {
    replay_run_with_poller("cfg");
}

#[test]
fn records_of_the_igw_run_equal_the_collectors() {
    replay_run_with_poller("igw");
}

#[test]
fn records_of_the_vpn_run_equal_the_collectors() {
    replay_run_with_poller("vpn");
}
