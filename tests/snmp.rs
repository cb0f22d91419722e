//! The SNMP plugin (`esi_monitor::plugins::snmp`) against a real net-snmp agent
//! (`tests/support/snmpd.rs`) on 127.0.0.N: port status, the cached ifName walk and the
//! one-GET-per-device read, renumbering and reboots, silence (stopped agent, wrong
//! community) and a late reply through a delaying proxy. Every log line of the whole test
//! binary is captured and checked never to carry a community string.

mod support;

use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use esi_monitor::plugins::snmp::credentials::Profiles;
use esi_monitor::plugins::snmp::{Device, Devices, PortReading, SnmpSettings};
use esi_monitor::plugins::{Object, Probe};
use serde_json::json;
use support::snmpd::{Interface, Snmpd, V3User};
use support::udp_delay::UdpDelay;

/// Communities of the agents below (each one distinct, none a substring of a log word).
const COMMUNITIES: [&str; 8] = [
    "c0mm-alpha",
    "c0mm-bravo",
    "c0mm-charlie",
    "c0mm-delta",
    "c0mm-echo",
    "c0mm-foxtrot",
    "c0mm-golf",
    "c0mm-hotel",
];
const WRONG: &str = "wr0ng-c0mm-india";

/// Captures every log line of this test binary.
struct Capture;

fn log_lines() -> &'static Mutex<Vec<String>> {
    static LINES: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    LINES.get_or_init(|| Mutex::new(Vec::new()))
}

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        let line = format!("{} {}", record.level(), record.args());
        log_lines()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(line);
    }
    fn flush(&self) {}
}

fn capture_logs() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        static CAPTURE: Capture = Capture;
        if log::set_logger(&CAPTURE).is_ok() {
            log::set_max_level(log::LevelFilter::Trace);
        }
    });
}

fn logged() -> Vec<String> {
    log_lines()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
}

fn assert_no_community_in_logs() {
    for line in logged() {
        for c in COMMUNITIES.iter().chain([&WRONG]) {
            assert!(!line.contains(c), "a log line carries a community: {line}");
        }
    }
}

fn settings(timeout_ms: u64, retries: u32) -> SnmpSettings {
    SnmpSettings {
        port: 161,
        timeout: Duration::from_millis(timeout_ms),
        retries,
        rewalk: Duration::from_secs(600),
    }
}

fn device(agent: &Snmpd) -> Device {
    Device {
        ip: agent.addr().parse().expect("agent ip"),
        port: agent.port(),
        community: agent.community().to_string(),
    }
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn no_answer(probe: &Probe) -> &str {
    match probe {
        Probe::NoAnswer(why) => why,
        other => panic!("expected no answer, got {other:?}"),
    }
}

fn four() -> Vec<String> {
    names(&["xe-0/0/3", "xe-0/0/3.1025", "xe-0/0/4", "ae0.1025"])
}


/// An object probed the way verify mode does (ports by name, switches and routers by
/// sysUpTime), with these devices' settings.
fn probe(devices: &Devices, object: &Object) -> Probe {
    let device = Device::of(object, devices.settings()).expect("an SNMP object");
    match object.props.get("name") {
        Some(name) => devices.ports(&device, &[name.as_str().unwrap().to_string()]).remove(0),
        None => devices.uptime(&device),
    }
}

#[test]
fn ports_up_down_and_absent() {
    capture_logs();
    let agent = Snmpd::start("127.0.0.41", COMMUNITIES[0], &Snmpd::junos_interfaces());
    let devices = Devices::new(settings(1000, 1));
    let d = device(&agent);
    agent.set_up("xe-0/0/3.1025", false);
    let got = devices.ports_detailed(&d, &names(&["xe-0/0/3", "xe-0/0/3.1025", "ge-9/9/9"]));
    assert_eq!(
        got[0],
        PortReading {
            probe: Probe::Up,
            if_index: Some(513),
            oper_status: Some(1)
        }
    );
    assert_eq!(
        got[1],
        PortReading {
            probe: Probe::Down,
            if_index: Some(545),
            oper_status: Some(2)
        }
    );
    let why = no_answer(&got[2].probe);
    assert!(
        why.contains("ge-9/9/9") && why.contains(&d.to_string()),
        "{why}"
    );
    agent.set_up("xe-0/0/3", false);
    assert_eq!(devices.ports(&d, &names(&["xe-0/0/3"])), vec![Probe::Down]);
    agent.set_up("xe-0/0/3", true);

    // The same through Object (verify mode): the `port` prop overrides snmp.port.
    let props = json!({"type": "physical_port", "device_ip": agent.addr(), "port": agent.port(),
        "community_name": agent.community(), "name": "xe-0/0/3"});
    let object = Object::check("port", props.as_object().expect("object")).expect("valid object");
    assert_eq!(probe(&devices, &object), Probe::Up);
    assert_no_community_in_logs();
}

#[test]
fn four_ports_one_get_after_the_walk() {
    capture_logs();
    let agent = Snmpd::start("127.0.0.42", COMMUNITIES[1], &Snmpd::junos_interfaces());
    let devices = Devices::new(settings(1000, 1));
    let d = device(&agent);
    assert_eq!(devices.ports(&d, &four()), vec![Probe::Up; 4]);
    let after_walk = devices.device_stats(&d).expect("stats");
    assert_eq!(
        (after_walk.walks, after_walk.gets),
        (1, 1),
        "{after_walk:?}"
    );
    assert!(after_walk.bulks >= 1);
    agent.set_up("xe-0/0/4", false);
    assert_eq!(
        devices.ports(&d, &four()),
        vec![Probe::Up, Probe::Up, Probe::Down, Probe::Up]
    );
    let s = devices.device_stats(&d).expect("stats");
    assert_eq!(
        (s.walks, s.bulks, s.gets, s.packets),
        (1, after_walk.bulks, 2, after_walk.packets + 1),
        "{s:?}"
    );
}

#[test]
fn many_ports_are_walked_in_rounds_and_read_in_one_go() {
    capture_logs();
    let many: Vec<Interface> = (1..=300)
        .map(|i| Interface::new(1000 + i, &format!("ge-0/0/{i}"), i % 3 != 0))
        .collect();
    let agent = Snmpd::start("127.0.0.43", COMMUNITIES[2], &many);
    let devices = Devices::new(settings(2000, 1));
    let d = device(&agent);
    let wanted: Vec<String> = many.iter().map(|i| i.name.clone()).collect();
    let got = devices.ports_detailed(&d, &wanted);
    for (iface, reading) in many.iter().zip(&got) {
        let expected = if iface.up { Probe::Up } else { Probe::Down };
        assert_eq!(
            (reading.if_index, &reading.probe),
            (Some(iface.if_index), &expected),
            "{}",
            iface.name
        );
    }
    let s = devices.device_stats(&d).expect("stats");
    assert!(s.bulks >= 300 / 40, "{s:?}");
    println!("300 ports: {s:?}");
}

#[test]
fn renumbered_interface_is_found_again() {
    capture_logs();
    let agent = Snmpd::start("127.0.0.44", COMMUNITIES[3], &Snmpd::junos_interfaces());
    let devices = Devices::new(settings(1000, 1));
    let d = device(&agent);
    assert_eq!(
        devices.ports_detailed(&d, &names(&["xe-0/0/4"]))[0].if_index,
        Some(514)
    );
    // Same name, new ifIndex; the old ifIndex now belongs to another interface that is down.
    agent.set_interfaces(&[
        Interface::new(513, "xe-0/0/3", true),
        Interface::new(514, "xe-0/0/5", false),
        Interface::new(614, "xe-0/0/4", true),
    ]);
    let got = devices.ports_detailed(&d, &names(&["xe-0/0/4"]));
    assert_eq!(
        got[0],
        PortReading {
            probe: Probe::Up,
            if_index: Some(614),
            oper_status: Some(1)
        }
    );
    // A name missing from the cached table refreshes it, and renumbered ones with it.
    agent.set_interfaces(&[
        Interface::new(713, "xe-0/0/3", false),
        Interface::new(720, "xe-0/0/7", true),
    ]);
    let got = devices.ports_detailed(&d, &names(&["xe-0/0/7", "xe-0/0/3"]));
    assert_eq!((got[0].if_index, &got[0].probe), (Some(720), &Probe::Up));
    assert_eq!((got[1].if_index, &got[1].probe), (Some(713), &Probe::Down));
    assert_eq!(devices.device_stats(&d).expect("stats").walks, 3);
}

#[test]
fn uptime_backwards_is_down_and_drops_the_cache() {
    capture_logs();
    let agent = Snmpd::start("127.0.0.45", COMMUNITIES[4], &Snmpd::junos_interfaces());
    let devices = Devices::new(settings(1000, 1));
    let d = device(&agent);
    agent.set_uptime_ticks(500_000);
    // No previous reading: it reads twice, a second apart.
    let first = devices.uptime_detailed(&d);
    assert_eq!(first.probe, Probe::Up, "{first:?}");
    assert!(
        first.ticks.unwrap_or(0) >= first.previous.unwrap_or(u32::MAX).saturating_add(90),
        "{first:?}"
    );
    assert_eq!(devices.ports(&d, &four()), vec![Probe::Up; 4]);
    let walks = devices.device_stats(&d).expect("stats").walks;

    agent.set_uptime_ticks(100);
    let reboot = devices.uptime_detailed(&d);
    assert_eq!(
        (&reboot.probe, reboot.rebooted),
        (&Probe::Down, true),
        "{reboot:?}"
    );
    assert!(logged()
        .iter()
        .any(|l| l.contains(&d.to_string()) && l.contains("restarted")));
    assert_eq!(devices.ports(&d, &four()), vec![Probe::Up; 4]);
    assert_eq!(
        devices.device_stats(&d).expect("stats").walks,
        walks + 1,
        "the ifIndex table was dropped"
    );
    // And counting up again from there.
    assert_eq!(devices.uptime(&d), Probe::Up);

    // The switch/router object path.
    let props = json!({"type": "router", "ip": agent.addr(), "port": agent.port(), "community_name": agent.community()});
    let object = Object::check("router", props.as_object().expect("object")).expect("valid object");
    assert_eq!(probe(&devices, &object), Probe::Up);
}

#[test]
fn stopped_agent_is_no_answer_in_bounded_time_while_others_answer() {
    capture_logs();
    let mut dead = Snmpd::start("127.0.0.46", COMMUNITIES[5], &Snmpd::junos_interfaces());
    let live = Snmpd::start("127.0.0.47", COMMUNITIES[6], &Snmpd::junos_interfaces());
    let (timeout_ms, retries) = (700, 1);
    let devices = Devices::new(settings(timeout_ms, retries));
    let (dd, ld) = (device(&dead), device(&live));
    assert_eq!(devices.ports(&dd, &four()), vec![Probe::Up; 4]);
    assert_eq!(devices.ports(&ld, &four()), vec![Probe::Up; 4]);
    dead.stop();

    let bound = Duration::from_millis(timeout_ms * u64::from(retries + 1)) + Duration::from_secs(3);
    let live_answers = std::thread::scope(|s| {
        let stuck = s.spawn(|| {
            let started = Instant::now();
            let got = devices.ports(&dd, &four());
            (got, started.elapsed())
        });
        // The other device keeps answering while the dead one's request waits out its timeouts.
        let mut answers = 0;
        for _ in 0..10_000 {
            if stuck.is_finished() {
                break;
            }
            assert_eq!(devices.ports(&ld, &four()), vec![Probe::Up; 4]);
            answers += 1;
        }
        let (got, took) = stuck.join().expect("the probe thread does not panic");
        assert!(
            took <= bound,
            "no answer took {took:?}, more than {bound:?}"
        );
        for (name, probe) in four().iter().zip(&got) {
            let why = no_answer(probe);
            assert!(
                why.contains(name.as_str()) && why.contains(&dd.to_string()),
                "{why}"
            );
            assert!(
                why.contains(&format!("no answer within {timeout_ms} ms (2 attempts)")),
                "{why}"
            );
        }
        answers
    });
    assert!(
        live_answers >= 1,
        "the live device answered {live_answers} times meanwhile"
    );
    let s = devices.device_stats(&dd).expect("stats");
    assert_eq!((s.timeouts, s.unanswered), (2, 1), "{s:?}");
    assert_eq!(devices.device_stats(&ld).expect("stats").timeouts, 0);
    assert!(logged()
        .iter()
        .any(|l| l.contains(&dd.to_string()) && l.contains("xe-0/0/3") && l.contains("no answer")));

    dead.restart();
    assert_eq!(devices.ports(&dd, &four()), vec![Probe::Up; 4]);
    assert_no_community_in_logs();
}

#[test]
fn a_late_reply_is_not_the_answer_to_the_next_request() {
    capture_logs();
    let agent = Snmpd::start("127.0.0.48", COMMUNITIES[7], &Snmpd::junos_interfaces());
    let proxy = UdpDelay::start("127.0.0.48:0", agent.socket_addr());
    let timeout_ms = 300;
    let devices = Devices::new(settings(timeout_ms, 0));
    let d = Device {
        ip: proxy.addr().ip(),
        port: proxy.addr().port(),
        community: agent.community().to_string(),
    };
    let one = names(&["xe-0/0/3"]);
    assert_eq!(devices.ports(&d, &one), vec![Probe::Up]);

    // The next reply ("up") comes back only after its request gave up.
    let before = proxy.forwarded();
    proxy.delay_next_replies(1, Duration::from_millis(timeout_ms * 3));
    let why = no_answer(&devices.ports(&d, &one)[0]).to_string();
    assert!(
        why.contains("xe-0/0/3") && why.contains("no answer"),
        "{why}"
    );
    agent.set_up("xe-0/0/3", false);
    // Asked at once (the late "up" is still on its way) and after it has surely arrived.
    assert_eq!(devices.ports(&d, &one), vec![Probe::Down]);
    support::wait_for(
        "the late reply to be delivered",
        Duration::from_secs(10),
        || (proxy.forwarded() >= before + 2).then_some(()),
    );
    assert_eq!(devices.ports(&d, &one), vec![Probe::Down]);
    agent.set_up("xe-0/0/3", true);
    assert_eq!(devices.ports(&d, &one), vec![Probe::Up]);
}

#[test]
fn wrong_community_is_no_answer_and_never_logged() {
    capture_logs();
    let agent = Snmpd::start("127.0.0.49", COMMUNITIES[0], &Snmpd::junos_interfaces());
    let devices = Devices::new(settings(200, 1));
    let d = Device {
        community: WRONG.to_string(),
        ..device(&agent)
    };
    let started = Instant::now();
    let got = devices.ports(&d, &names(&["xe-0/0/3"]));
    assert!(started.elapsed() <= Duration::from_millis(400) + Duration::from_secs(3));
    let why = no_answer(&got[0]);
    assert!(
        why.contains("xe-0/0/3") && why.contains(&d.to_string()) && !why.contains(WRONG),
        "{why}"
    );
    let why = no_answer(&devices.uptime(&d)).to_string();
    assert!(why.contains("sysUpTime") && !why.contains(WRONG), "{why}");
    assert!(!format!("{d:?} {d}").contains(WRONG));
    let props = json!({"type": "switch", "ip": agent.addr(), "port": agent.port(), "community_name": WRONG});
    let object = Object::check("switch", props.as_object().expect("object")).expect("valid object");
    assert!(!no_answer(&probe(&devices, &object)).contains(WRONG));
    assert!(logged()
        .iter()
        .any(|l| l.contains(&d.to_string()) && l.contains("sysUpTime")));
    assert_no_community_in_logs();
    // The right community on the same agent still works.
    assert_eq!(
        devices.ports(&device(&agent), &names(&["xe-0/0/3"])),
        vec![Probe::Up]
    );
}

/// SNMPv3 passwords of the profiles below: none may appear in a log or a message.
const V3_SECRETS: [&str; 4] = ["v3-auth-pass-256", "v3-priv-pass-128", "v3-auth-pass-sha1", "v3-wr0ng-pass"];

fn v3_users() -> Vec<V3User> {
    vec![
        V3User::new("esi256", "SHA-256", V3_SECRETS[0], Some(("AES", V3_SECRETS[1]))),
        V3User::new("esi1", "SHA", V3_SECRETS[2], None),
    ]
}

/// The profiles of a configuration file, as the service builds them.
fn v3_profiles() -> Profiles {
    let text = format!(
        "snmp:\n  credentials:\n    \
         PRIV: {{version: 3, user: esi256, auth_protocol: sha256, auth_password: {a}, priv_protocol: aes128, priv_password: {p}}}\n    \
         AUTH: {{version: 3, user: esi1, auth_protocol: sha, auth_password: {s}}}\n    \
         WRONG_PASS: {{version: 3, user: esi256, auth_protocol: sha256, auth_password: {w}, priv_protocol: aes128, priv_password: {p}}}\n    \
         WRONG_USER: {{version: 3, user: nobody, auth_protocol: sha256, auth_password: {a}}}\n",
        a = V3_SECRETS[0],
        p = V3_SECRETS[1],
        s = V3_SECRETS[2],
        w = V3_SECRETS[3]
    );
    let config = esi_monitor::config::Config::parse(&text).expect("valid profiles");
    Profiles::new(&config.snmp.credentials)
}

fn assert_no_v3_secret_in_logs() {
    for line in logged() {
        for s in V3_SECRETS {
            assert!(!line.contains(s), "a log line carries a password: {line}");
        }
    }
}

fn profile(agent: &Snmpd, name: &str) -> Device {
    Device { community: name.to_string(), ..device(agent) }
}

#[test]
fn v3_auth_priv_and_auth_no_priv_read_ports_down_and_up() {
    capture_logs();
    let agent = Snmpd::start_v3("127.0.0.50", COMMUNITIES[1], &v3_users(), &Snmpd::junos_interfaces());
    let devices = Devices::with_profiles(settings(1000, 1), v3_profiles());
    for p in ["PRIV", "AUTH"] {
        assert_eq!(devices.ports(&profile(&agent, p), &four()), vec![Probe::Up; 4], "{p}");
    }
    agent.set_up("xe-0/0/4", false);
    for p in ["PRIV", "AUTH"] {
        let got = devices.ports(&profile(&agent, p), &four());
        assert_eq!(got, [Probe::Up, Probe::Up, Probe::Down, Probe::Up], "{p}");
    }
    agent.set_up("xe-0/0/4", true);
    assert_eq!(devices.ports(&profile(&agent, "PRIV"), &names(&["xe-0/0/4"])), vec![Probe::Up]);
    assert_eq!(devices.uptime(&profile(&agent, "AUTH")), Probe::Up, "sysUpTime over v3 too");
    // One walk per device, then one GET per call: the same coalescing as v2c.
    let stats = devices.device_stats(&profile(&agent, "PRIV")).expect("stats");
    assert_eq!(stats.walks, 1);
    assert_no_v3_secret_in_logs();
}

#[test]
fn a_wrong_v3_password_or_user_is_no_answer_naming_the_device_and_no_secret() {
    capture_logs();
    let agent = Snmpd::start_v3("127.0.0.51", COMMUNITIES[2], &v3_users(), &Snmpd::junos_interfaces());
    let devices = Devices::with_profiles(settings(500, 0), v3_profiles());
    for (p, says) in [("WRONG_PASS", "wrong digest"), ("WRONG_USER", "does not know user")] {
        let got = devices.ports(&profile(&agent, p), &names(&["xe-0/0/3"]));
        let why = no_answer(&got[0]);
        assert!(why.contains("xe-0/0/3") && why.contains(&agent.socket_addr().to_string()) && why.contains(says), "{p}: {why}");
        assert!(!V3_SECRETS.iter().any(|s| why.contains(s)), "{why}");
        let why = no_answer(&devices.uptime(&profile(&agent, p))).to_string();
        assert!(why.contains(&agent.socket_addr().to_string()), "{why}");
    }
    assert!(!format!("{:?}", v3_profiles()).contains("v3-"), "profiles print no password");
    assert_no_v3_secret_in_logs();
    // The right user on the same agent answers.
    assert_eq!(devices.ports(&profile(&agent, "PRIV"), &names(&["xe-0/0/3"])), vec![Probe::Up]);
}

#[test]
fn a_restarted_v3_agent_answers_the_very_next_poll() {
    capture_logs();
    let mut agent = Snmpd::start_v3("127.0.0.52", COMMUNITIES[3], &v3_users(), &Snmpd::junos_interfaces());
    let devices = Devices::with_profiles(settings(1000, 0), v3_profiles());
    let d = profile(&agent, "PRIV");
    assert_eq!(devices.ports(&d, &names(&["xe-0/0/3"])), vec![Probe::Up]);
    let before = devices.device_stats(&d).expect("stats");
    // snmpd keeps its engine ID in its persistent directory and counts engineBoots up: our
    // next request carries the old boots, the agent reports usmStatsNotInTimeWindows, and
    // the request is sent again with the new ones, within the same poll.
    agent.restart();
    assert_eq!(devices.ports(&d, &names(&["xe-0/0/3"])), vec![Probe::Up], "no poll lost after the restart");
    let after = devices.device_stats(&d).expect("stats");
    assert_eq!(after.timeouts, before.timeouts, "no attempt timed out");
    assert!(after.packets >= before.packets + 2, "the report, then the request again: {before:?} → {after:?}");
    assert_no_v3_secret_in_logs();
}
