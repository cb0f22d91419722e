//! The operators' probe runner (`cargo run --example probe`) against real agents: it prints
//! the status, the raw values read and the time taken, and never the community string.

mod support;

use std::process::{Command, Output};
use support::contrail_sim::ContrailSim;
use support::snmpd::Snmpd;

/// target/debug/examples/probe, built by `make test` (`cargo build --examples`) next to
/// this test binary.
fn probe(args: &[&str]) -> Output {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|deps| deps.parent()).expect("target/<profile>");
    let probe = dir.join("examples/probe");
    assert!(probe.is_file(), "{} is missing: run `make test`, or `cargo build --examples` first", probe.display());
    Command::new(probe).args(args).output().expect("run probe")
}

#[test]
fn probes_a_port_and_a_switch_over_snmp() {
    let agent = Snmpd::start("127.0.0.31", "s3cret-community", &Snmpd::junos_interfaces());
    let (ip, port) = (format!("device_ip={}", agent.addr()), format!("port={}", agent.port()));
    agent.set_up("xe-0/0/4", false);
    let out = probe(&["physical_port", &ip, &port, "community_name=s3cret-community", "name=xe-0/0/4"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "DOWN exits 1: {text}");
    assert!(text.contains("DOWN") && text.contains("ifIndex 514") && text.contains("ifOperStatus 2"), "{text}");
    assert!(text.contains(" ms]"), "the time taken: {text}");

    let ip = format!("ip={}", agent.addr());
    let out = probe(&["switch", &ip, &port, "community_name=s3cret-community", "--repeat", "2", "--interval", "0.1"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("#1 ") && text.contains("#2 UP") && text.contains("sysUpTime"), "{text}");
    let all = format!("{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(!all.contains("s3cret-community"), "the community is never printed: {all}");
}

#[test]
fn probes_a_vmi_on_contrail_analytics() {
    let sim = ContrailSim::start();
    sim.set_l2_active("default-domain:admin:p1", true);
    let out = probe(&["virtual_machine_interface", "fq_name=default-domain:admin:p1", "--analytics", &sim.url()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("UP") && text.contains("l2_active"), "{text}");
}

#[test]
fn names_a_missing_property() {
    let out = probe(&["physical_port", "device_ip=127.0.0.1"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("community_name"), "{err}");
}
