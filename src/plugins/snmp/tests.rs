//! Unit tests against the in-process fake agent ([`super::fake`]).

use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use super::fake::FakeAgent;
use super::*;

const COMMUNITY: &str = "s3cr3t-community";

fn settings(timeout_ms: u64, retries: u32) -> SnmpSettings {
    SnmpSettings {
        port: 161,
        timeout: Duration::from_millis(timeout_ms),
        retries,
        rewalk: Duration::from_secs(600),
    }
}

fn device(agent: &FakeAgent) -> Device {
    Device {
        ip: agent.addr().ip(),
        port: agent.addr().port(),
        community: COMMUNITY.into(),
    }
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn junos() -> Vec<(u32, &'static str, bool)> {
    vec![
        (513, "xe-0/0/3", true),
        (545, "xe-0/0/3.1025", false),
        (514, "xe-0/0/4", true),
        (560, "ae0.1025", true),
    ]
}

fn count(agent: &FakeAgent, kind: u8) -> usize {
    agent.requests().iter().filter(|(t, _)| *t == kind).count()
}

fn object(v: Value) -> Object {
    let props: Map<String, Value> = v.as_object().cloned().unwrap_or_default();
    Object::check("o", &props).expect("a valid object")
}

#[test]
fn devices_are_shareable() {
    fn assert_traits<T: Send + Sync>() {}
    assert_traits::<Devices>();
}

#[test]
fn device_of_objects() {
    let s = settings(100, 0);
    let port = object(
        json!({"type": "physical_port", "device_ip": "10.1.2.3", "community_name": "c", "name": "xe-0/0/3"}),
    );
    let d = Device::of(&port, &s).expect("device");
    assert_eq!(
        (d.ip.to_string(), d.port, d.community.as_str()),
        ("10.1.2.3".into(), 161, "c")
    );
    let sw = object(json!({"type": "switch", "ip": "::1", "community_name": "c", "port": "1161"}));
    assert_eq!(
        Device::of(&sw, &s).expect("device").to_string(),
        "[::1]:1161"
    );
    let rt =
        object(json!({"type": "router", "ip": "10.0.0.1", "community_name": "c", "port": 2161}));
    assert_eq!(Device::of(&rt, &s).expect("device").port, 2161);
    let bad = object(json!({"type": "router", "ip": "core-1", "community_name": "c"}));
    assert!(Device::of(&bad, &s)
        .unwrap_err()
        .contains("not an IP address"));
    let bad =
        object(json!({"type": "router", "ip": "10.0.0.1", "community_name": "c", "port": 70000}));
    assert!(Device::of(&bad, &s).unwrap_err().contains("not a UDP port"));
    let vn = object(json!({"type": "virtual_network", "fq_name": "a"}));
    assert!(Device::of(&vn, &s).is_err());
    let secret = Device {
        ip: "127.0.0.1".parse().expect("ip"),
        port: 1,
        community: COMMUNITY.into(),
    };
    assert!(!format!("{secret:?} {secret}").contains(COMMUNITY));
}

#[test]
fn ports_up_down_and_missing() {
    let agent = FakeAgent::start(COMMUNITY, &junos());
    let devices = Devices::new(settings(500, 1));
    let d = device(&agent);
    let got = devices.ports_detailed(
        &d,
        &names(&["xe-0/0/4", "xe-0/0/3.1025", "nope-0/0/0", "xe-0/0/3"]),
    );
    assert_eq!(
        got[0],
        PortReading {
            probe: Probe::Up,
            if_index: Some(514),
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
    match &got[2].probe {
        Probe::NoAnswer(why) => assert!(
            why.contains("nope-0/0/0") && why.contains(&d.to_string()),
            "{why}"
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(got[3].probe, Probe::Up);
}

#[test]
fn many_ports_one_get_after_the_walk() {
    let agent = FakeAgent::start(COMMUNITY, &junos());
    let devices = Devices::new(settings(500, 1));
    let d = device(&agent);
    let four = names(&["xe-0/0/3", "xe-0/0/3.1025", "xe-0/0/4", "ae0.1025"]);
    assert_eq!(
        devices.ports(&d, &four),
        vec![Probe::Up, Probe::Down, Probe::Up, Probe::Up]
    );
    assert_eq!(count(&agent, message::GET), 1);
    let bulks = count(&agent, message::GETBULK);
    assert!(bulks >= 1);
    agent.set_up(545, true);
    assert_eq!(devices.ports(&d, &four), vec![Probe::Up; 4]);
    assert_eq!(
        count(&agent, message::GET),
        2,
        "one GET per call"
    );
    assert_eq!(
        count(&agent, message::GETBULK),
        bulks,
        "the table is cached"
    );
    let stats = devices.device_stats(&d).expect("stats");
    assert_eq!((stats.gets, stats.walks, stats.timeouts), (2, 1, 0));
    assert_eq!(devices.stats(), stats);
}

#[test]
fn a_long_walk_takes_several_rounds() {
    let many: Vec<(u32, String, bool)> = (1..=250)
        .map(|i| (i, format!("ge-0/0/{i}"), i % 2 == 0))
        .collect();
    let refs: Vec<(u32, &str, bool)> = many.iter().map(|(i, n, u)| (*i, n.as_str(), *u)).collect();
    let agent = FakeAgent::start(COMMUNITY, &refs);
    let devices = Devices::new(settings(500, 1));
    let got = devices.ports(&device(&agent), &names(&["ge-0/0/1", "ge-0/0/250"]));
    assert_eq!(got, vec![Probe::Down, Probe::Up]);
    assert!(count(&agent, message::GETBULK) >= 250 / ports::WALK_REPETITIONS as usize);
}

#[test]
fn renumbered_and_new_interfaces_are_found() {
    let agent = FakeAgent::start(COMMUNITY, &junos());
    let devices = Devices::new(settings(500, 1));
    let d = device(&agent);
    assert_eq!(devices.ports(&d, &names(&["xe-0/0/4"])), vec![Probe::Up]);
    // Same name, new ifIndex; the old index now carries another name.
    agent.set_interfaces(&[
        (514, "xe-0/0/9", false),
        (600, "xe-0/0/4", false),
        (513, "xe-0/0/3", true),
    ]);
    let got = devices.ports_detailed(&d, &names(&["xe-0/0/4"]));
    assert_eq!(
        got[0],
        PortReading {
            probe: Probe::Down,
            if_index: Some(600),
            oper_status: Some(2)
        }
    );
    // A name not in the cached table triggers a walk.
    agent.set_interfaces(&[(600, "xe-0/0/4", false), (700, "xe-0/0/7", true)]);
    assert_eq!(devices.ports(&d, &names(&["xe-0/0/7"])), vec![Probe::Up]);
    assert_eq!(devices.stats().walks, 3);
}

#[test]
fn too_big_gets_are_split() {
    let agent = FakeAgent::start(COMMUNITY, &junos());
    agent.too_big_above(3);
    let devices = Devices::new(settings(500, 1));
    let four = names(&["xe-0/0/3", "xe-0/0/3.1025", "xe-0/0/4", "ae0.1025"]);
    assert_eq!(
        devices.ports(&device(&agent), &four),
        vec![Probe::Up, Probe::Down, Probe::Up, Probe::Up]
    );
    // sysUpTime + 2 × 4 varbinds, halved until the agent takes them.
    let gets: Vec<usize> = agent
        .requests()
        .iter()
        .filter(|(t, _)| *t == message::GET)
        .map(|(_, n)| *n)
        .collect();
    assert_eq!(gets, [9, 4, 2, 2, 5, 2, 3]);
}

#[test]
fn a_stray_reply_with_another_id_is_not_the_answer() {
    let agent = FakeAgent::start(COMMUNITY, &junos());
    let devices = Devices::new(settings(500, 0));
    let d = device(&agent);
    agent.stray_first(true);
    let got = devices.ports(&d, &names(&["xe-0/0/3", "xe-0/0/3.1025"]));
    assert_eq!(got, vec![Probe::Up, Probe::Down]);
    assert!(devices.stats().discarded >= 1, "{:?}", devices.stats());
}

#[test]
fn a_dropped_request_is_retried() {
    let agent = FakeAgent::start(COMMUNITY, &junos());
    let devices = Devices::new(settings(200, 1));
    let d = device(&agent);
    assert_eq!(devices.ports(&d, &names(&["xe-0/0/3"])), vec![Probe::Up]);
    agent.drop_next(1);
    assert_eq!(devices.ports(&d, &names(&["xe-0/0/3"])), vec![Probe::Up]);
    let s = devices.stats();
    assert_eq!((s.timeouts, s.unanswered), (1, 0), "{s:?}");
}

#[test]
fn a_late_reply_is_never_the_answer_to_the_next_request() {
    let agent = FakeAgent::start(COMMUNITY, &junos());
    let devices = Devices::new(settings(150, 0));
    let d = device(&agent);
    let one = names(&["xe-0/0/3"]);
    assert_eq!(devices.ports(&d, &one), vec![Probe::Up]);
    // The next reply ("up") arrives after its request gave up.
    agent.delay_next(&[Duration::from_millis(300)]);
    assert!(matches!(&devices.ports(&d, &one)[0], Probe::NoAnswer(_)));
    agent.set_up(513, false);
    // Asked right away, and again once the late "up" has been sent: always "down".
    assert_eq!(devices.ports(&d, &one), vec![Probe::Down]);
    for _ in 0..500 {
        if agent.late_sent() > 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(agent.late_sent(), 1);
    assert_eq!(devices.ports(&d, &one), vec![Probe::Down]);
}

#[test]
fn a_session_drops_the_late_reply_to_its_previous_request() {
    let agent = FakeAgent::start(COMMUNITY, &junos());
    let (device_counters, totals) = (wire::Counters::default(), wire::Counters::default());
    let timeout = Duration::from_millis(200);
    let mut session = wire::Session::open(
        agent.addr(),
        wire::Security::Community(COMMUNITY.as_bytes()),
        timeout,
        0,
        [&device_counters, &totals],
    )
    .expect("a session");
    let oper = [wire::IF_OPER_STATUS, &[513]].concat();
    // Reply 1 ("up") comes at 300 ms, after request 1 gave up at 200 ms and while request 2
    // (sent at 200 ms) waits for its own reply ("down"), which comes at 350 ms.
    agent.delay_next(&[Duration::from_millis(300), Duration::from_millis(150)]);
    assert!(matches!(
        session.get(&[&oper]),
        Err(wire::Failure::Timeout { .. })
    ));
    agent.set_up(513, false);
    assert_eq!(session.get(&[&oper]), Ok(vec![ber::Val::Int(2)]));
    assert_eq!(
        totals.discarded.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the late reply"
    );
}

#[test]
fn a_late_reply_to_an_earlier_attempt_of_the_same_request_is_accepted() {
    let agent = FakeAgent::start(COMMUNITY, &junos());
    let devices = Devices::new(settings(300, 2));
    let d = device(&agent);
    assert_eq!(devices.ports(&d, &names(&["xe-0/0/3"])), vec![Probe::Up]);
    agent.delay_next(&[Duration::from_millis(400)]);
    assert_eq!(devices.ports(&d, &names(&["xe-0/0/3"])), vec![Probe::Up]);
    assert_eq!(devices.stats().unanswered, 0);
}

#[test]
fn silence_is_no_answer_within_the_bound() {
    // Wrong community: the agent stays silent.
    let agent = FakeAgent::start("other", &junos());
    let devices = Devices::new(settings(100, 2));
    let d = device(&agent);
    let started = Instant::now();
    let got = devices.ports(&d, &names(&["xe-0/0/3"]));
    let took = started.elapsed();
    assert!(took < Duration::from_millis(300 + 2000), "{took:?}");
    match &got[0] {
        Probe::NoAnswer(why) => {
            assert!(
                why.contains("xe-0/0/3") && why.contains(&d.to_string()),
                "{why}"
            );
            assert!(
                why.contains("no answer within 100 ms (3 attempts)"),
                "{why}"
            );
            assert!(!why.contains(COMMUNITY), "{why}");
        }
        other => panic!("{other:?}"),
    }
    let s = devices.stats();
    assert_eq!((s.packets, s.timeouts, s.unanswered), (3, 3, 1), "{s:?}");
    match devices.uptime(&d) {
        Probe::NoAnswer(why) => assert!(
            why.contains("sysUpTime") && !why.contains(COMMUNITY),
            "{why}"
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn nothing_listening_is_no_answer() {
    let free = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = free.local_addr().expect("addr");
    drop(free);
    let devices = Devices::new(settings(100, 1));
    let d = Device {
        ip: addr.ip(),
        port: addr.port(),
        community: COMMUNITY.into(),
    };
    assert!(matches!(
        &devices.ports(&d, &names(&["xe-0/0/3"]))[0],
        Probe::NoAnswer(_)
    ));
}

#[test]
fn uptime_increasing_same_and_backwards() {
    let agent = FakeAgent::start(COMMUNITY, &junos());
    let devices = Devices::new(settings(500, 1));
    let d = device(&agent);
    // No previous reading: two readings a second apart.
    let first = devices.uptime_detailed(&d);
    assert_eq!(first.probe, Probe::Up, "{first:?}");
    assert!(first.ticks > first.previous);
    assert_eq!(count(&agent, message::GET), 2);
    // Let the ports cache exist, then "reboot" the device.
    assert_eq!(devices.ports(&d, &names(&["xe-0/0/3"])), vec![Probe::Up]);
    let walks = devices.stats().walks;
    agent.set_uptime(Some(5));
    let reboot = devices.uptime_detailed(&d);
    assert_eq!(
        (reboot.probe.clone(), reboot.rebooted),
        (Probe::Down, true),
        "{reboot:?}"
    );
    assert_eq!(devices.ports(&d, &names(&["xe-0/0/3"])), vec![Probe::Up]);
    assert_eq!(
        devices.stats().walks,
        walks + 1,
        "the reboot dropped the ifIndex table"
    );
    // No sysUpTime at all.
    agent.set_uptime(None);
    assert!(matches!(devices.uptime(&d), Probe::NoAnswer(why) if why.contains("noSuchInstance")));
}

#[test]
fn a_reboot_seen_by_the_ports_get_refreshes_the_table() {
    let agent = FakeAgent::start(COMMUNITY, &junos());
    let devices = Devices::new(settings(500, 1));
    let d = device(&agent);
    agent.set_uptime(Some(100_000));
    assert_eq!(devices.ports(&d, &names(&["xe-0/0/3"])), vec![Probe::Up]);
    agent.set_uptime(Some(10));
    assert_eq!(devices.ports(&d, &names(&["xe-0/0/3"])), vec![Probe::Up]);
    assert_eq!(devices.stats().walks, 2);
}

#[test]
fn the_type_table_leads_each_type_to_its_prober() {
    let agent = FakeAgent::start(COMMUNITY, &junos());
    let clients = crate::plugins::Clients::new(&crate::config::Config::default(), None).expect("clients");
    let port = object(
        json!({"type": "logical_port", "device_ip": "127.0.0.1", "port": agent.addr().port(),
        "community_name": COMMUNITY, "name": "xe-0/0/3.1025"}),
    );
    let probe = |o: &Object| (o.kind.prober.expect("probed").probe)(&clients, o);
    let (status, raw) = probe(&port);
    assert_eq!(status, Probe::Down);
    assert!(raw.contains("ifOperStatus 2") && !raw.contains(COMMUNITY), "{raw}");
    let bad = object(json!({"type": "switch", "ip": "nowhere", "community_name": COMMUNITY}));
    assert!(matches!(probe(&bad).0, Probe::NoAnswer(why) if why.contains("not an IP address")));
}
