//! Events before polls (SPEC §5.1) and SNMPv3 in the running service, against real parts:
//! net-snmp's `snmpd` with v3 users, `snmptrap`/`snmpinform` sending real traps and informs
//! from the device's address, and the Contrail simulator's UVE stream.
//!
//! The SNMP tests poll every 60 s: after the poll at registration the next one is at least
//! half an interval later, so every poll a test counts (at the agent) was made because of
//! an event. With `down_after: 2`, a DOWN confirmed after one such poll shows that the trap
//! counted as the other reading.

mod support;

use esi_monitor::store::Store;
use serde_json::{json, Value};
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;
use support::contrail_sim::ContrailSim;
use support::etcd::Etcd;
use support::monitor::Monitor;
use support::scrape::{get, scrape, scrape_until};
use support::snmpd::{send_trap, Snmpd, V3User};
use support::wait_for;

const LIMIT: Duration = Duration::from_secs(30);
const LINK_DOWN: &str = "1.3.6.1.6.3.1.1.5.3";
const LINK_UP: &str = "1.3.6.1.6.3.1.1.5.4";
/// The v3 passwords: none of them may appear in a log.
const SECRETS: [&str; 4] = ["auth-pass-256", "priv-pass-128", "auth-pass-sha1", "devcomm-s3cret"];

fn put_port(store: &Store, rid: &str, agent: &Snmpd, community_name: &str, name: &str) {
    let (id, entry) = support::jobs::create("ese_physical_port", rid, json!([
        {"param": "community_name", "type": "value", "value": community_name},
        {"param": "device_ip", "type": "value", "value": agent.addr()},
        {"param": "name", "type": "value", "value": name}]));
    support::jobs::put(store, &id, &entry);
}

fn record(store: &Store, key: &str) -> Option<Value> {
    serde_json::from_slice(&store.get(key).unwrap()?.value).ok()
}

fn wait_record(store: &Store, key: &str, want: Value) {
    wait_for(&format!("{key} = {want}"), LIMIT, || (record(store, key).as_ref() == Some(&want)).then_some(()));
}

fn free_udp() -> u16 {
    UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn reads(agent: &Snmpd, if_index: u32) -> u64 {
    agent.status_reads().get(&if_index).copied().unwrap_or(0)
}

/// `snmptrap -v 2c` from `from` (the device's address) to the receiver: `trap` with ifIndex.
fn v2c_trap(inform: bool, community: &str, from: &str, to: u16, trap: &str, if_index: u32) -> bool {
    let (client, dest, oid) = (format!("--clientaddr={from}"), format!("127.0.0.1:{to}"), format!("1.3.6.1.2.1.2.2.1.1.{if_index}"));
    let index = if_index.to_string();
    let mut args = vec!["-v", "2c", "-c", community, &client];
    if inform {
        args.extend(["-r", "0", "-t", "3"]);
    }
    args.extend([dest.as_str(), "", trap, &oid, "i", &index]);
    send_trap(inform, &args)
}

/// Sends with `send` until the service counts one more trap received (the receiver learns the
/// devices polled a moment after their first poll; a trap before that is dropped, counted).
fn until_received(listen: SocketAddr, version: &str, mut send: impl FnMut()) {
    let series = format!("esi_monitor_traps_received_total{{version=\"{version}\"}}");
    let before = get(&scrape(listen).0, &series);
    for _ in 0..15 {
        send();
        // A second apiece to be counted, before sending again.
        for _ in 0..50 {
            if get(&scrape(listen).0, &series) > before {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    panic!("no trap of version {version} was received after 15 sent");
}

fn status(listen: SocketAddr, plural_id: &str) -> Value {
    let mut r = ureq::get(&format!("http://{listen}/status/{plural_id}")).call().expect("status");
    serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap()
}

fn assert_no_secret_in(log: &str) {
    for s in SECRETS {
        assert!(!log.contains(s), "a secret is in the log: {s}");
    }
}

/// A service receiving traps on a free port, polling `agent` every `interval_s`, with more
/// `snmp:` lines (indented by two spaces, e.g. credentials).
struct TrapSetup {
    store: Store,
    trap_port: u16,
    listen: SocketAddr,
    monitor: Monitor,
    _etcd: Etcd,
}

fn trap_setup(agent: &Snmpd, interval_s: u64, snmp: &str) -> TrapSetup {
    let etcd = Etcd::start();
    let store = etcd.store();
    support::replay::load_templates(&store);
    let (trap_port, listen) = (free_udp(), support::free_listen());
    let monitor = Monitor::start(
        &etcd.endpoint,
        &format!(
            "snmp:\n  port: {}\n  timeout_ms: 500\n  retries: 0\n  trap_listen: \"127.0.0.1:{trap_port}\"\n{snmp}\
             monitoring: {{interval_s: {interval_s}, down_after: 2}}\nmetrics: {{listen: \"{listen}\"}}",
            agent.port()
        ),
    );
    TrapSetup { store, trap_port, listen, monitor, _etcd: etcd }
}

#[test]
fn a_link_down_trap_confirms_down_with_one_poll_and_link_up_with_another() {
    let agent = Snmpd::start("127.0.0.61", "devcomm-s3cret", &Snmpd::junos_interfaces());
    let TrapSetup { store, trap_port, listen, monitor, _etcd } = trap_setup(&agent, 60, "");
    put_port(&store, "pp1", &agent, "devcomm-s3cret", "xe-0/0/4");
    let key = "/monitoring/v2.0/ese_physical_ports/pp1";
    wait_record(&store, key, json!({"port": "UP", "version": 1}));

    let before = reads(&agent, 514);
    agent.set_up("xe-0/0/4", false);
    until_received(listen, "2c", || assert!(v2c_trap(false, "devcomm-s3cret", "127.0.0.61", trap_port, LINK_DOWN, 514)));
    wait_record(&store, key, json!({"port": "DOWN", "version": 1}));
    assert_eq!(reads(&agent, 514), before + 1, "DOWN after one triggered poll: the trap was the other reading");

    // linkUp as an inform: acknowledged (snmpinform exits 0 only then), and UP after one poll.
    let before = reads(&agent, 514);
    agent.set_up("xe-0/0/4", true);
    until_received(listen, "2c", || assert!(v2c_trap(true, "devcomm-s3cret", "127.0.0.61", trap_port, LINK_UP, 514), "inform acknowledged"));
    wait_record(&store, key, json!({"port": "UP", "version": 1}));
    let polls = reads(&agent, 514) - before;
    assert!((1..=2).contains(&polls), "UP after the triggered poll ({polls} polls: one, or one deferred by the per-second limit)");

    let s = status(listen, "ese_physical_ports/pp1");
    let event = s["objects"]["port"]["event"].as_str().unwrap_or_default().to_string();
    assert!(event.starts_with("linkUp inform from 127.0.0.61 (ifIndex 514"), "status names the last event: {s}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_esi-monitor"))
        .args(["status", "ese_physical_ports/pp1", "--config"])
        .arg(&monitor.config)
        .output()
        .expect("esi-monitor status");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("last event: linkUp inform from 127.0.0.61"), "esi-monitor status shows it: {text}");
    let m = scrape(listen).0;
    assert!(get(&m, "esi_monitor_triggered_polls_total{by=\"trap\"}") >= 2.0);
    assert_no_secret_in(&monitor.log_text());
}

#[test]
fn traps_from_strangers_wrong_communities_bad_digests_and_garbage_are_dropped_and_polling_goes_on() {
    let agent = Snmpd::start("127.0.0.62", "devcomm-s3cret", &Snmpd::junos_interfaces());
    let profile = "  credentials:\n    V3: {version: 3, user: esi, auth_protocol: sha256, auth_password: auth-pass-256, \
                   priv_protocol: aes128, priv_password: priv-pass-128}\n";
    let TrapSetup { store, trap_port, listen, monitor, _etcd } = trap_setup(&agent, 1, profile);
    put_port(&store, "pp2", &agent, "devcomm-s3cret", "xe-0/0/3");
    let key = "/monitoring/v2.0/ese_physical_ports/pp2";
    wait_record(&store, key, json!({"port": "UP", "version": 1}));
    // The receiver knows the device once a good trap from it is believed.
    until_received(listen, "2c", || assert!(v2c_trap(false, "devcomm-s3cret", "127.0.0.62", trap_port, LINK_UP, 513)));
    // An SNMPv1 linkUp (generic-trap 3) is believed too.
    let dest = format!("127.0.0.1:{trap_port}");
    until_received(listen, "1", || {
        assert!(send_trap(false, &["-v", "1", "-c", "devcomm-s3cret", "--clientaddr=127.0.0.62", &dest, "1.3.6.1.4.1.2636",
            "127.0.0.62", "3", "0", "", "1.3.6.1.2.1.2.2.1.1.513", "i", "513"]));
    });

    let dropped = |m: &std::collections::BTreeMap<String, f64>, reason: &str| {
        get(m, &format!("esi_monitor_traps_dropped_total{{reason=\"{reason}\"}}"))
    };
    let m0 = scrape(listen).0;
    assert!(v2c_trap(false, "devcomm-s3cret", "127.0.0.99", trap_port, LINK_DOWN, 513), "from an unregistered address");
    assert!(v2c_trap(false, "not-the-community", "127.0.0.62", trap_port, LINK_DOWN, 513), "a wrong community");
    let v3 = |password: &str| {
        send_trap(false, &["-v", "3", "-u", "esi", "-l", "authPriv", "-a", "SHA-256", "-A", password, "-x", "AES", "-X",
            "priv-pass-128", "-e", "0x80001f8880aabbccdd", "--clientaddr=127.0.0.62", &dest, "", LINK_DOWN])
    };
    assert!(v3("not-the-auth-pass"), "a bad v3 digest");
    scrape_until(listen, "the three drops counted", |m| {
        dropped(m, "unknown_sender") > dropped(&m0, "unknown_sender")
            && dropped(m, "wrong_community") > dropped(&m0, "wrong_community")
            && dropped(m, "bad_auth") > dropped(&m0, "bad_auth")
    });

    // 10,000 garbage datagrams from the device's own address, while polling goes on; in
    // batches of 100, each counted before the next, so that no socket buffer overflows.
    let polls_before = reads(&agent, 513);
    let sock = UdpSocket::bind("127.0.0.62:0").unwrap();
    let all_dropped = |m: &std::collections::BTreeMap<String, f64>| -> f64 {
        ["malformed", "unsupported", "unknown_sender", "wrong_community", "unknown_user", "bad_auth", "stale"]
            .iter()
            .map(|r| dropped(m, r) - dropped(&m0, r))
            .sum()
    };
    let mut seed = 0x2545_f491_u32;
    let mut m = m0.clone();
    for batch in 0..100u32 {
        for n in 0..100u32 {
            let len = 1 + ((batch * 100 + n) % 300) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    (seed >> 8) as u8
                })
                .collect();
            let _ = sock.send_to(&bytes, ("127.0.0.1", trap_port));
        }
        let want = 3.0 + f64::from((batch + 1) * 100);
        m = scrape_until(listen, &format!("{want} datagrams dropped"), |m| all_dropped(m) >= want);
    }
    assert_eq!(all_dropped(&m), 10_003.0, "each bad datagram dropped once: {m:?}");
    assert!(dropped(&m, "malformed") >= 9_000.0, "garbage is malformed: {m:?}");
    wait_for("polling to go on after the garbage", LIMIT, || (reads(&agent, 513) >= polls_before + 3).then_some(()));
    // The trap receiver survived it all: a flip is still caught, by polling and by traps.
    agent.set_up("xe-0/0/3", false);
    wait_record(&store, key, json!({"port": "DOWN", "version": 1}));
    let mut monitor = monitor;
    assert!(monitor.is_running());
    assert_no_secret_in(&monitor.log_text());
}

fn v3_users() -> Vec<V3User> {
    vec![
        V3User::new("esi256", "SHA-256", "auth-pass-256", Some(("AES", "priv-pass-128"))),
        V3User::new("esi1", "SHA", "auth-pass-sha1", None),
    ]
}

const V3_PROFILES: &str = "  credentials:\n    \
    PRIV: {version: 3, user: esi256, auth_protocol: sha256, auth_password: auth-pass-256, priv_protocol: aes128, priv_password: priv-pass-128}\n    \
    AUTH: {version: \"3\", user: esi1, auth_protocol: sha, auth_password: auth-pass-sha1}\n";

#[test]
fn v3_ports_are_confirmed_down_and_up_with_auth_priv_and_auth_no_priv_and_a_v3_trap_is_believed() {
    let agent = Snmpd::start_v3("127.0.0.63", "unused-v2c-c0mm", &v3_users(), &Snmpd::junos_interfaces());
    let TrapSetup { store, trap_port, listen, monitor, _etcd } = trap_setup(&agent, 60, V3_PROFILES);
    put_port(&store, "priv", &agent, "PRIV", "xe-0/0/3");
    put_port(&store, "auth", &agent, "AUTH", "xe-0/0/4");
    let (kp, ka) = ("/monitoring/v2.0/ese_physical_ports/priv", "/monitoring/v2.0/ese_physical_ports/auth");
    wait_record(&store, kp, json!({"port": "UP", "version": 1}));
    wait_record(&store, ka, json!({"port": "UP", "version": 1}));

    // A v3 authPriv trap from the device (its own engine ID): believed, and it triggers the polls.
    agent.set_up("xe-0/0/3", false);
    agent.set_up("xe-0/0/4", false);
    let dest = format!("127.0.0.1:{trap_port}");
    until_received(listen, "3", || {
        assert!(send_trap(false, &["-v", "3", "-u", "esi256", "-l", "authPriv", "-a", "SHA-256", "-A", "auth-pass-256", "-x", "AES",
            "-X", "priv-pass-128", "-e", "0x80001f8880a1b2c3d4", "--clientaddr=127.0.0.63", &dest, "", LINK_DOWN,
            "1.3.6.1.2.1.2.2.1.1.513", "i", "513"]));
    });
    wait_record(&store, kp, json!({"port": "DOWN", "version": 1}));
    wait_record(&store, ka, json!({"port": "DOWN", "version": 1}));
    agent.set_up("xe-0/0/3", true);
    agent.set_up("xe-0/0/4", true);
    until_received(listen, "3", || {
        assert!(send_trap(false, &["-v", "3", "-u", "esi1", "-l", "authNoPriv", "-a", "SHA", "-A", "auth-pass-sha1",
            "-e", "0x80001f8880a1b2c3d4", "--clientaddr=127.0.0.63", &dest, "", LINK_UP, "1.3.6.1.2.1.2.2.1.1.513", "i", "513"]));
    });
    wait_record(&store, kp, json!({"port": "UP", "version": 1}));
    wait_record(&store, ka, json!({"port": "UP", "version": 1}));
    assert_no_secret_in(&monitor.log_text());
}

/// A VMI registered by a job, UP, polled every `interval_s` by a service following the
/// simulator's UVE stream.
struct VmiSetup {
    sim: ContrailSim,
    store: Store,
    listen: SocketAddr,
    key: String,
    _etcd: Etcd,
    _monitor: Monitor,
}

fn vmi_setup(name: &str, interval_s: u64) -> VmiSetup {
    let sim = ContrailSim::start();
    let fq = format!("default-domain:admin:{name}");
    sim.set_l2_active(&fq, true);
    let etcd = Etcd::start();
    let store = etcd.store();
    support::replay::load_templates(&store);
    let listen = support::free_listen();
    let monitor = Monitor::start(
        &etcd.endpoint,
        &format!(
            "contrail: {{analytics_url: \"{}\"}}\nmonitoring: {{interval_s: {interval_s}, down_after: 2}}\n\
             metrics: {{listen: \"{listen}\"}}",
            sim.url()
        ),
    );
    let (id, entry) = support::jobs::create("port", name, json!([
        {"param": "device_owner", "type": "value", "value": "network:gw_interface"},
        {"param": "attached", "type": "value", "value": true},
        {"param": "vmi_fq_name", "type": "value", "value": fq},
        {"param": "vmi_uuid", "type": "value", "value": name}]));
    support::jobs::put(&store, &id, &entry);
    let key = format!("/monitoring/v2.0/ports/{name}");
    wait_record(&store, &key, json!({"vmi": "UP", "version": 1}));
    wait_for("the stream to be followed", LIMIT, || (sim.stream_connections() >= 1).then_some(()));
    VmiSetup { sim, store, listen, key, _etcd: etcd, _monitor: monitor }
}

#[test]
fn a_vmi_flip_on_the_uve_stream_is_confirmed_with_one_poll() {
    let VmiSetup { sim, store, listen, key, _etcd, _monitor } = vmi_setup("evt-1", 60);
    let before = sim.requests();
    sim.set_l2_active("default-domain:admin:evt-1", false);
    wait_record(&store, &key, json!({"vmi": "DOWN", "version": 1}));
    // The stream itself was one request before; the rest are polls: exactly one triggered poll.
    assert_eq!(sim.requests() - before, 1, "DOWN after one triggered poll: the stream's change was the other reading");
    let m = scrape(listen).0;
    assert_eq!(get(&m, "esi_monitor_triggered_polls_total{by=\"uve\"}"), 1.0);
    assert!(get(&m, "esi_monitor_uve_stream_changes_total") >= 1.0);
}

#[test]
fn a_flip_made_while_the_uve_stream_is_down_is_caught_by_polling_and_the_stream_comes_back() {
    let VmiSetup { sim, store, listen, key, _etcd, _monitor } = vmi_setup("evt-2", 1);
    sim.set_stream_enabled(false);
    let connections = sim.stream_connections();
    sim.set_l2_active("default-domain:admin:evt-2", false);
    wait_record(&store, &key, json!({"vmi": "DOWN", "version": 1}));
    let m = scrape(listen).0;
    assert_eq!(get(&m, "esi_monitor_triggered_polls_total{by=\"uve\"}"), 0.0, "caught by polling alone");
    sim.set_stream_enabled(true);
    wait_for("the stream to be followed again", LIMIT, || (sim.stream_connections() > connections).then_some(()));
    scrape_until(listen, "the stream reconnected", |m| get(m, "esi_monitor_uve_stream_reconnects_total") >= 1.0);
    // And it serves again: a flip now is announced.
    sim.set_l2_active("default-domain:admin:evt-2", true);
    wait_record(&store, &key, json!({"vmi": "UP", "version": 1}));
    scrape_until(listen, "a poll triggered by the stream", |m| get(m, "esi_monitor_triggered_polls_total{by=\"uve\"}") >= 1.0);
}

#[test]
fn a_reloaded_profile_is_used_by_the_next_poll() {
    let agent = Snmpd::start_v3("127.0.0.64", "unused-v2c-c0mm", &v3_users(), &Snmpd::junos_interfaces());
    let etcd = Etcd::start();
    let store = etcd.store();
    support::replay::load_templates(&store);
    let config = |password: &str| {
        format!(
            "snmp:\n  port: {}\n  timeout_ms: 300\n  retries: 0\n  credentials:\n    \
             PRIV: {{version: 3, user: esi256, auth_protocol: sha256, auth_password: {password}, priv_protocol: aes128, \
             priv_password: priv-pass-128}}\nmonitoring: {{interval_s: 1, down_after: 2}}",
            agent.port()
        )
    };
    let monitor = Monitor::start(&etcd.endpoint, &config("auth-pass-wrong"));
    put_port(&store, "reload", &agent, "PRIV", "xe-0/0/3");
    let key = "/monitoring/v2.0/ese_physical_ports/reload";
    wait_record(&store, key, json!({"port": "DOWN", "version": 1}));
    assert!(monitor.log_text().contains("wrong digest"), "the refusal is logged");
    std::fs::write(&monitor.config, Monitor::config_text(&etcd.endpoint, &config("auth-pass-256"))).unwrap();
    monitor.signal("HUP");
    monitor.wait_log("the reload", "SNMP credential profiles reloaded", LIMIT);
    wait_record(&store, key, json!({"port": "UP", "version": 1}));
    let log = monitor.log_text();
    assert!(!log.contains("auth-pass-256") && !log.contains("auth-pass-wrong") && !log.contains("priv-pass-128"));
}

#[test]
fn a_trap_storm_triggers_at_most_one_poll_per_device_per_second() {
    let agent = Snmpd::start("127.0.0.65", "devcomm-s3cret", &Snmpd::junos_interfaces());
    let TrapSetup { store, trap_port, listen, monitor: _monitor, _etcd } = trap_setup(&agent, 60, "");
    put_port(&store, "storm", &agent, "devcomm-s3cret", "xe-0/0/3");
    let key = "/monitoring/v2.0/ese_physical_ports/storm";
    wait_record(&store, key, json!({"port": "UP", "version": 1}));
    until_received(listen, "2c", || assert!(v2c_trap(false, "devcomm-s3cret", "127.0.0.65", trap_port, LINK_UP, 513)));

    // snmptrap's own datagram, captured, then sent 1,000 times from the device's address in
    // batches of 50, each counted before the next.
    let capture = UdpSocket::bind("127.0.0.1:0").unwrap();
    capture.set_read_timeout(Some(LIMIT)).unwrap();
    let to = capture.local_addr().unwrap().port();
    assert!(v2c_trap(false, "devcomm-s3cret", "127.0.0.65", to, LINK_UP, 513));
    let mut buf = [0u8; 2048];
    let (n, _) = capture.recv_from(&mut buf).expect("the captured trap");
    let trap = buf[..n].to_vec();
    let series = "esi_monitor_traps_received_total{version=\"2c\"}";
    wait_for("the first trap's poll", LIMIT, || {
        let m = scrape(listen).0;
        (get(&m, "esi_monitor_triggered_polls_total{by=\"trap\"}") >= 1.0).then_some(())
    });
    let (received, polls) = (get(&scrape(listen).0, series), reads(&agent, 513));
    let sock = UdpSocket::bind("127.0.0.65:0").unwrap();
    let started = std::time::Instant::now();
    for batch in 1..=20 {
        for _ in 0..50 {
            sock.send_to(&trap, ("127.0.0.1", trap_port)).unwrap();
        }
        scrape_until(listen, "the batch counted", |m| get(m, series) >= received + f64::from(batch * 50));
    }
    let storm = started.elapsed();
    wait_for("the storm's polls to be made", LIMIT, || (reads(&agent, 513) > polls).then_some(()));
    let made = reads(&agent, 513) - polls;
    let triggered = get(&scrape(listen).0, "esi_monitor_triggered_polls_total{by=\"trap\"}");
    let most = storm.as_secs() + 2;
    assert!(made <= most, "{made} polls for 1,000 traps in {storm:?}: at most one a second (+1 deferred)");
    assert!(triggered <= 1.0 + most as f64, "{triggered} triggered polls counted");
    assert_eq!(record(&store, key), Some(json!({"port": "UP", "version": 1})));
}
