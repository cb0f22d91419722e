//! The NETCONF probers (`vrrp_session`, `bgp_session`) against a real OpenSSH sshd serving a
//! Junos-like `netconf` subsystem (tests/support/sshd.rs): named states through the poller
//! with one write per confirmed change, one RPC per device per poll on one session, and
//! every failure a "no answer" that names the device, never the password.

mod support;

use esi_monitor::config::Config;
use esi_monitor::plugins::{Clients, Object, Probe};
use esi_monitor::store::Store;
use serde_json::{json, Map, Value};
use std::time::Duration;
use support::etcd::Etcd;
use support::monitor::Monitor;
use support::sshd::{BgpPeer, Faults, Layout, Sshd, VrrpGroup, RECORDED_INSTANCE};
use support::wait_for;

const USER: &str = "esi";
const PASSWORD: &str = "n3tconf-Secret";
const LIMIT: Duration = Duration::from_secs(30);

fn vrrp(sshd: &Sshd, password: &str, interface: &str, vrid: u32, wanted: &str) -> Value {
    json!({"type": "vrrp_session", "host": sshd.addr(), "port": sshd.port(), "login": USER, "password": password,
           "interface": interface, "vrid": vrid, "wanted_status": wanted})
}

fn bgp(sshd: &Sshd, instance: &str, peer: &str) -> Value {
    json!({"type": "bgp_session", "host": sshd.addr(), "port": sshd.port(), "login": USER, "password": PASSWORD,
           "instance": instance, "peer_address": peer})
}

fn object(props: Value) -> Object {
    let props: Map<String, Value> = props.as_object().unwrap().clone();
    Object::check("o", &props).unwrap()
}

fn clients(timeout_ms: u64, known_hosts: &str) -> Clients {
    let mut config = Config::default();
    config.netconf.timeout_ms = timeout_ms;
    config.netconf.known_hosts = known_hosts.to_string();
    Clients::new(&config, None).unwrap()
}

/// Polls one object the way the pool does: its unit, then the unit's poll.
fn poll(c: &Clients, o: &Object) -> Probe {
    let prober = o.kind.prober.unwrap();
    let (key, ask) = (prober.unit.unwrap())(o, c).unwrap();
    (prober.poll)(c, &key, &[ask]).pop().unwrap()
}

fn no_answer(p: Probe) -> String {
    match p {
        Probe::NoAnswer(why) => {
            assert!(!why.contains(PASSWORD) && !why.contains("wrong-password"), "a secret in {why}");
            why
        }
        other => panic!("expected no answer, got {other}"),
    }
}

fn state(s: &str) -> Probe {
    Probe::State(s.into())
}

#[test]
fn states_are_read_upper_cased_in_both_vrrp_layouts_and_for_bgp_peers() {
    let sshd = Sshd::start("127.0.5.1", &[(USER, PASSWORD)]);
    let c = clients(2000, "");
    assert_eq!(poll(&c, &object(vrrp(&sshd, PASSWORD, "ae0.1025", 41, "master"))), state("MASTER"));
    assert_eq!(poll(&c, &object(bgp(&sshd, RECORDED_INSTANCE, "192.168.8.1"))), state("ESTABLISHED"));
    sshd.set_layout(Layout::Els);
    sshd.set_vrrp(&[VrrpGroup::new("xe-0/0/0.1", 7, "backup"), VrrpGroup::new("xe-0/0/1.2", 7, "master")]);
    assert_eq!(poll(&c, &object(vrrp(&sshd, PASSWORD, "xe-0/0/1.2", 7, "master"))), state("MASTER"));
    assert_eq!(poll(&c, &object(vrrp(&sshd, PASSWORD, "xe-0/0/0.1", 7, "master"))), state("BACKUP"));
    assert_eq!(sshd.sessions(), 1, "one session for every object of the device");
}

#[test]
fn failures_are_no_answers_naming_the_device_and_the_session_recovers() {
    let sshd = Sshd::start("127.0.5.2", &[(USER, PASSWORD)]);
    let c = clients(700, "");
    let good = object(vrrp(&sshd, PASSWORD, "ae0.1025", 20, "master"));
    let device = format!("{USER}@{}:{}", sshd.addr(), sshd.port());
    assert_eq!(poll(&c, &good), state("MASTER"));

    // A wrong password spoils only its own session.
    let why = no_answer(poll(&c, &object(vrrp(&sshd, "wrong-password", "ae0.1025", 20, "master"))));
    assert!(why.contains(&device) && why.contains("authentication"), "{why}");
    assert_eq!(poll(&c, &good), state("MASTER"));

    // An unknown group: the device answered, the group is not in it.
    let why = no_answer(poll(&c, &object(vrrp(&sshd, PASSWORD, "ae0.1025", 99, "master"))));
    assert!(why.contains("group 99 on ae0.1025") && why.contains(sshd.addr()), "{why}");

    // An rpc-error is the device's answer: the session stays.
    sshd.set_faults(Faults { rpc_error: true, ..Faults::default() });
    let why = no_answer(poll(&c, &good));
    assert!(why.contains("rpc-error") && why.contains(&device), "{why}");
    sshd.set_faults(Faults::default());
    assert_eq!(poll(&c, &good), state("MASTER"));
    assert_eq!(sshd.sessions(), 1, "the refused login never got a session; the good one kept its own");

    // A reply slower than the timeout: the session is dropped and the next poll is right.
    sshd.set_faults(Faults { delay: Duration::from_millis(2000), ..Faults::default() });
    let why = no_answer(poll(&c, &good));
    assert!(why.contains("timed out") && why.contains(&device), "{why}");
    sshd.set_faults(Faults::default());
    sshd.set_vrrp_state("ae0.1025", 20, "backup");
    assert_eq!(poll(&c, &good), state("BACKUP"), "a new session, not the late reply of the old one");
    assert_eq!(sshd.sessions(), 2);

    // A truncated reply, garbage, and a dropped connection.
    for faults in [
        Faults { truncate: true, ..Faults::default() },
        Faults { garbage: true, ..Faults::default() },
        Faults { drop: true, ..Faults::default() },
    ] {
        sshd.set_faults(faults.clone());
        let why = no_answer(poll(&c, &good));
        assert!(why.contains(&device), "{faults:?}: {why}");
        sshd.set_faults(Faults::default());
        assert_eq!(poll(&c, &good), state("BACKUP"), "after {faults:?}");
    }
    sshd.kill_sessions();
    no_answer(poll(&c, &good));
    assert_eq!(poll(&c, &good), state("BACKUP"), "after the device dropped the session");

    // Nothing listening.
    let closed = json!({"type": "bgp_session", "host": "127.0.5.2", "port": Sshd::free_port(&["127.0.5.2"]),
        "login": USER, "password": PASSWORD, "instance": "i", "peer_address": "192.168.8.1"});
    let why = no_answer(poll(&c, &object(closed)));
    assert!(why.contains("connect") && why.contains("127.0.5.2"), "{why}");
}

#[test]
fn host_keys_are_pinned_by_known_hosts_or_kept_from_first_use() {
    let mut first = Sshd::start("127.0.5.3", &[(USER, PASSWORD)]);
    let port = first.port();
    let o = object(vrrp(&first, PASSWORD, "ae0.1025", 20, "master"));
    let c = clients(2000, "");
    assert_eq!(poll(&c, &o), state("MASTER"));
    let first_key = first.host_key_line();
    first.stop();
    drop(first);
    // Another server (another host key) on the same address and port.
    let second = Sshd::start_on("127.0.5.3", port, &[(USER, PASSWORD)]);
    no_answer(poll(&c, &o)); // the session to the first server is gone
    let why = no_answer(poll(&c, &o));
    assert!(why.contains("host key of 127.0.5.3") && why.contains(&second.fingerprint()), "{why}");
    // A fresh process trusts its first key; a known_hosts file pins one.
    let dir = tempfile::tempdir().unwrap();
    let known = dir.path().join("known_hosts");
    std::fs::write(&known, format!("[127.0.5.3]:{port} {}\n", second.host_key_line())).unwrap();
    let pinned = clients(2000, known.to_str().unwrap());
    assert_eq!(poll(&pinned, &o), state("MASTER"));
    std::fs::write(&known, format!("[127.0.5.3]:{port} {first_key}\n")).unwrap();
    let wrong = clients(2000, known.to_str().unwrap());
    let why = no_answer(poll(&wrong, &o));
    assert!(why.contains("netconf.known_hosts"), "{why}");
}

fn register(store: &Store, plural: &str, id: &str, objects: Value) {
    let entry = json!({"resource_type": plural.trim_end_matches('s'), "resource_id": id, "version": 1,
                       "tenant_id": "t", "objects": objects});
    store.put(&format!("/esi-worker/monitoring/v2.0/{plural}/{id}"), entry.to_string()).unwrap();
}

fn record(store: &Store, key: &str) -> Option<Value> {
    serde_json::from_slice(&store.get(key).unwrap()?.value).ok()
}

fn wait_record(store: &Store, key: &str, want: Value) {
    wait_for(&format!("{key} = {want}"), LIMIT, || (record(store, key).as_ref() == Some(&want)).then_some(()));
}

fn revision(store: &Store) -> i64 {
    store.range("/nothing").unwrap().1
}

fn poller(etcd: &Etcd, listen: &str) -> Monitor {
    Monitor::start(
        &etcd.endpoint,
        &format!(
            "monitoring: {{interval_s: 1, down_after: 2}}\nnetconf: {{timeout_ms: 800}}\nmetrics: {{listen: \"{listen}\"}}"
        ),
    )
}

#[test]
fn named_states_follow_the_devices_with_one_write_per_confirmed_change() {
    let sshd = Sshd::start("127.0.5.4", &[(USER, PASSWORD)]);
    let etcd = Etcd::start();
    let store = etcd.store();
    let monitor = poller(&etcd, &support::free_listen().to_string());
    register(&store, "gw_interfaces", "g1", json!({
        "primary": vrrp(&sshd, PASSWORD, "ae0.1025", 20, "master"),
        "peer": bgp(&sshd, RECORDED_INSTANCE, "192.168.8.1")}));
    let key = "/monitoring/v2.0/gw_interfaces/g1";
    wait_record(&store, key, json!({"primary": "MASTER", "peer": "ESTABLISHED", "version": 1}));
    let start = revision(&store);
    let steps = [
        ("vrrp", "backup", json!({"primary": "BACKUP", "peer": "ESTABLISHED", "version": 1})),
        ("vrrp", "master", json!({"primary": "MASTER", "peer": "ESTABLISHED", "version": 1})),
        ("bgp", "Active", json!({"primary": "MASTER", "peer": "ACTIVE", "version": 1})),
        ("bgp", "Established", json!({"primary": "MASTER", "peer": "ESTABLISHED", "version": 1})),
    ];
    for (n, (what, to, want)) in steps.into_iter().enumerate() {
        match what {
            "vrrp" => sshd.set_vrrp_state("ae0.1025", 20, to),
            _ => sshd.set_peer_state(RECORDED_INSTANCE, "192.168.8.1", to),
        }
        wait_record(&store, key, want);
        assert_eq!(revision(&store) - start, n as i64 + 1, "one write per confirmed change ({what} {to})");
    }
    assert_eq!(sshd.sessions(), 1, "one session for the whole test");
    assert!(!monitor.log_text().contains(PASSWORD));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_esi-monitor"))
        .args(["status", "gw_interfaces/g1", "--config"])
        .arg(&monitor.config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("vrrp_session") && text.contains("bgp_session") && text.contains("confirmed MASTER"), "{text}");
    assert!(!text.contains(PASSWORD), "{text}");
}

#[test]
fn twenty_groups_of_one_device_are_one_rpc_per_poll_on_one_session() {
    let sshd = Sshd::start("127.0.5.5", &[(USER, PASSWORD)]);
    let groups: Vec<VrrpGroup> = (1..=20).map(|g| VrrpGroup::new("ae0.1025", g, "master")).collect();
    sshd.set_vrrp(&groups);
    let etcd = Etcd::start();
    let store = etcd.store();
    let listen = support::free_listen();
    let _monitor = poller(&etcd, &listen.to_string());
    // Four resources of five groups each: still one device, one session, one unit.
    for r in 0..4 {
        let objects: Map<String, Value> =
            (1..=5).map(|i| (format!("g{i}"), vrrp(&sshd, PASSWORD, "ae0.1025", r * 5 + i, "master"))).collect();
        register(&store, "common_function_gateways", &format!("c{r}"), Value::Object(objects));
    }
    for r in 0..4 {
        let want: Map<String, Value> = (1..=5).map(|i| (format!("g{i}"), json!("MASTER"))).chain([("version".into(), json!(1))]).collect();
        wait_record(&store, &format!("/monitoring/v2.0/common_function_gateways/c{r}"), Value::Object(want));
    }
    let rpcs_at = |n| {
        wait_for(&format!("{n} RPCs"), LIMIT, || (sshd.rpc_count("get-vrrp-information") >= n).then_some(()));
    };
    rpcs_at(sshd.rpc_count("get-vrrp-information") + 4);
    let (samples, _) = support::scrape::scrape(listen);
    let polls = samples["esi_monitor_probe_duration_seconds_count{type=\"netconf_vrrp\"}"];
    let results = samples["esi_monitor_probe_results_total{type=\"netconf_vrrp\",outcome=\"state\"}"];
    let rpcs = sshd.rpc_count("get-vrrp-information") as f64;
    assert!(rpcs == polls || rpcs == polls + 1.0, "one RPC per poll: {rpcs} RPCs, {polls} polls");
    assert_eq!(results, polls * 20.0, "each poll answered all 20 groups");
    assert_eq!(sshd.sessions(), 1, "one SSH session");
    assert_eq!(samples["esi_monitor_netconf_sessions"], 1.0);
    assert_eq!(samples["esi_monitor_netconf_session_opens_total{result=\"ok\"}"], 1.0);
}

#[test]
fn a_slow_device_delays_no_other_and_its_failure_is_logged_without_the_password() {
    let slow = Sshd::start("127.0.5.6", &[(USER, PASSWORD)]);
    let fast = Sshd::start("127.0.5.7", &[(USER, PASSWORD)]);
    fast.set_bgp("vrf", &[BgpPeer::new("10.0.0.9", "Established")]);
    let etcd = Etcd::start();
    let store = etcd.store();
    let monitor = poller(&etcd, &support::free_listen().to_string());
    register(&store, "gw_interfaces", "slow", json!({"primary": vrrp(&slow, PASSWORD, "ae0.1025", 20, "master")}));
    register(&store, "vpn_interfaces", "fast", json!({"peer": bgp(&fast, "vrf", "10.0.0.9")}));
    wait_record(&store, "/monitoring/v2.0/gw_interfaces/slow", json!({"primary": "MASTER", "version": 1}));
    wait_record(&store, "/monitoring/v2.0/vpn_interfaces/fast", json!({"peer": "ESTABLISHED", "version": 1}));
    slow.set_faults(Faults { delay: Duration::from_secs(3), ..Faults::default() });
    wait_record(&store, "/monitoring/v2.0/gw_interfaces/slow", json!({"primary": "DOWN", "version": 1}));
    // While the slow device times out poll after poll, the other one's changes come through.
    for state in ["Active", "Established", "Idle"] {
        fast.set_peer_state("vrf", "10.0.0.9", state);
        let want = json!({"peer": state.to_uppercase(), "version": 1});
        wait_record(&store, "/monitoring/v2.0/vpn_interfaces/fast", want);
    }
    let log = monitor.log_text();
    let device = format!("{USER}@127.0.5.6:{}", slow.port());
    assert!(log.lines().any(|l| l.contains(&device) && l.contains("timed out") && l.contains("group 20")), "{log}");
    assert!(!log.contains(PASSWORD), "the password is in the log");
}

/// The recorded gw_interface and common_function_gateway flows of `run` (NETCONF objects
/// only) in verify mode, with the routers as sshd NETCONF servers on port 830 of `net`.x:
/// every job reaches the recorded outcome, its VRRP objects verified, not assumed.
fn replay_vrrp_flows_in_verify_mode(run: &str, net: &str) {
    use support::replay::{self, Recorder};
    let (primary, secondary) = (format!("{net}.185"), format!("{net}.184"));
    let routers = [Sshd::start_on(&primary, 830, &[("esi", "esiesi0000")]), {
        let s = Sshd::start_on(&secondary, 830, &[("esi", "esiesi0000")]);
        s.set_state(&Sshd::junos_secondary());
        s
    }];
    let etcd = Etcd::start();
    let store = etcd.store();
    replay::load_templates(&store);
    let mut files: Vec<_> = std::fs::read_dir(replay::run_dir(run))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| ["gw_interface", "common_function_gateway"].iter().any(|t| p.file_name().unwrap().to_string_lossy().starts_with(t)))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "run {run} has VRRP flows");
    let (mut events, _) = replay::load_flows(&files);
    replay::map_address(&mut events, "127.79.5.185", &primary);
    replay::map_address(&mut events, "127.79.5.184", &secondary);
    let recorder = Recorder::start(&store);
    let monitor = Monitor::start(&etcd.endpoint, "jobs: {cleanup: false, verify: true}\nmonitoring: {enabled: false}");
    let mut verdicts = Vec::new();
    let jobs = replay::replay(&store, &recorder, &events, LIMIT, |_| {}, |_, i, commit| {
        let expected = replay::assert_same_outcome(&store, &events, i, commit, &format!("run {run} (verify mode)"));
        verdicts.extend(expected.into_values().flatten());
    });
    assert_eq!(jobs, files.len());
    let text = serde_json::to_string(&verdicts).unwrap();
    assert!(text.contains("master") && text.contains("backup"), "VRRP verdicts: {text}");
    let rpcs: usize = routers.iter().map(|r| r.rpc_count("get-vrrp-information")).sum();
    assert!(rpcs >= 2 * jobs, "each job's objects were probed on both routers ({rpcs} RPCs)");
    assert!(!monitor.log_text().contains("esiesi0000"), "the password is in the log");
}

#[test]
fn vrrp_flows_of_the_cfg_run_in_verify_mode() {
    replay_vrrp_flows_in_verify_mode("cfg", "127.79.11");
}

#[test]
fn vrrp_flows_of_the_igw_run_in_verify_mode() {
    replay_vrrp_flows_in_verify_mode("igw", "127.79.12");
}

#[test]
fn vrrp_flows_of_the_vpn_run_in_verify_mode() {
    replay_vrrp_flows_in_verify_mode("vpn", "127.79.13");
}

#[test]
fn a_session_unused_for_three_intervals_is_closed_with_close_session() {
    let sshd = Sshd::start("127.0.5.8", &[(USER, PASSWORD)]);
    let mut config = Config::default();
    config.monitoring.interval_s = 1; // idle after 3 s
    let c = Clients::new(&config, None).unwrap();
    assert_eq!(poll(&c, &object(vrrp(&sshd, PASSWORD, "ae0.1025", 20, "master"))), state("MASTER"));
    c.tidy();
    assert_eq!(c.netconf.open_sessions(), 1, "in use a moment ago: kept");
    wait_for("the idle session closed", LIMIT, || {
        c.tidy();
        sshd.events().iter().any(|e| e == "close").then_some(())
    });
    assert_eq!(c.netconf.open_sessions(), 0);
    assert_eq!(poll(&c, &object(vrrp(&sshd, PASSWORD, "ae0.1025", 20, "master"))), state("MASTER"), "opened again");
    assert_eq!(sshd.sessions(), 2);
}
