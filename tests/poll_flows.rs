//! Replay of the recorded flows with the poller on and every peer answering as it did (SNMP
//! agents, the Contrail simulator, and the two MX routers as real sshd NETCONF servers with
//! the recorded VRRP and BGP states): all 42 `/monitoring` records of the three runs equal
//! the original collectors' ones, and resources whose objects are all
//! etcd_reader/kafka_messenger get none.

mod support;

use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;
use support::contrail_sim::ContrailSim;
use support::etcd::Etcd;
use support::monitor::Monitor;
use support::replay::{self, Recorder};
use support::snmpd::{Interface, Snmpd};
use support::sshd::Sshd;
use support::wait_for;

/// The recorded login of the routers' NETCONF service.
const NETCONF_LOGIN: (&str, &str) = ("esi", "esiesi0000");

/// The two routers (10.79.5.185 primary, .184 secondary) as NETCONF servers on port 830 of
/// `net`.185 and `net`.184, serving the recorded states.
fn routers(net: &str) -> Vec<Sshd> {
    let primary = Sshd::start_on(&format!("{net}.185"), 830, &[NETCONF_LOGIN]);
    let secondary = Sshd::start_on(&format!("{net}.184"), 830, &[NETCONF_LOGIN]);
    secondary.set_state(&Sshd::junos_secondary());
    vec![primary, secondary]
}

fn agents(port: u16, net: &str) -> Vec<Snmpd> {
    let switch = [(513, "xe-0/0/3"), (514, "xe-0/0/4"), (545, "xe-0/0/3.1025"), (546, "xe-0/0/4.1025")];
    let router = [(501, "ae0"), (510, "ge-0/0/1"), (520, "ge-0/0/1.122")];
    let up = |list: &[(u32, &str)]| list.iter().map(|(i, n)| Interface::new(*i, n, true)).collect::<Vec<_>>();
    vec![
        Snmpd::start_on("127.161.0.34", port, "ESE_NODE_COMMUNITY", &up(&switch)),
        Snmpd::start_on(&format!("{net}.184"), port, "EDGE_ROUTER_COMMUNITY", &up(&router)),
        Snmpd::start_on(&format!("{net}.185"), port, "EDGE_ROUTER_COMMUNITY", &up(&router)),
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

/// Replays `run` with its routers moved from 127.79.5.x to `net`.x (the runs replay at the
/// same time, and each needs port 830 of its routers); returns how many records matched.
fn replay_run_with_poller(run: &str, net: &str) -> usize {
    let (primary, secondary) = (format!("{net}.185"), format!("{net}.184"));
    let port = Snmpd::free_port(&["127.161.0.34", &primary, &secondary]);
    let _agents = agents(port, net);
    let _routers = routers(net);
    let sim = ContrailSim::start();
    let etcd = Etcd::start();
    let store = etcd.store();
    replay::load_templates(&store);
    let (mut events, _) = replay::load_run(&replay::run_dir(run));
    replay::map_address(&mut events, "127.79.5.185", &primary);
    replay::map_address(&mut events, "127.79.5.184", &secondary);
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

    let expected: BTreeMap<String, Value> = recorded_records(&events);
    assert!(expected.len() >= 13, "run {run}: records to compare");
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
    expected.len()
}

#[test]
fn records_of_the_cfg_run_equal_the_collectors() {
    assert_eq!(replay_run_with_poller("cfg", "127.79.1"), 13);
}

#[test]
fn records_of_the_igw_run_equal_the_collectors() {
    assert_eq!(replay_run_with_poller("igw", "127.79.2"), 13);
}

#[test]
fn records_of_the_vpn_run_equal_the_collectors() {
    assert_eq!(replay_run_with_poller("vpn", "127.79.3"), 16);
}
