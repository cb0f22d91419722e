//! The operators' probe runner, `esi-monitor probe` (and `cargo run --example probe`, the
//! same command), against real agents: it prints the status, the raw values read and the
//! time taken, never the community string, and takes its settings from a configuration.

mod support;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output};
use support::contrail_sim::ContrailSim;
use support::etcd::Etcd;
use support::snmpd::{Snmpd, V3User};

/// `esi-monitor probe ARGS`.
fn probe(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_esi-monitor")).arg("probe").args(args).output().expect("run esi-monitor probe")
}

/// target/debug/examples/probe, built by `make test` (`cargo build --examples`) next to
/// this test binary.
fn example_probe() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|deps| deps.parent()).expect("target/<profile>");
    let probe = dir.join("examples/probe");
    assert!(probe.is_file(), "{} is missing: run `make test`, or `cargo build --examples` first", probe.display());
    probe
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// A probe line without its time: `#1 DOWN       ifIndex 514, ifOperStatus 2`.
fn without_time(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout.lines().map(|l| l.rsplit_once("  [").map_or(l, |(line, _)| line).to_string()).collect::<Vec<_>>().join("\n")
}

#[test]
fn probes_a_port_and_a_switch_over_snmp() {
    let agent = Snmpd::start("127.0.0.31", "s3cret-community", &Snmpd::junos_interfaces());
    let (ip, port) = (format!("device_ip={}", agent.addr()), format!("port={}", agent.port()));
    agent.set_up("xe-0/0/4", false);
    let out = probe(&["physical_port", &ip, &port, "community_name=s3cret-community", "name=xe-0/0/4"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "DOWN exits 1: {}", text(&out));
    assert!(stdout.contains("DOWN") && stdout.contains("ifIndex 514") && stdout.contains("ifOperStatus 2"), "{stdout}");
    assert!(stdout.contains(" ms]"), "the time taken: {stdout}");
    assert!(!text(&out).contains("s3cret-community"), "the community is never printed: {}", text(&out));

    let ip = format!("ip={}", agent.addr());
    let out = probe(&["switch", &ip, &port, "community_name=s3cret-community", "--repeat", "2", "--interval", "0.1"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", text(&out));
    assert!(stdout.contains("#1 ") && stdout.contains("#2 UP") && stdout.contains("sysUpTime"), "{stdout}");
    assert!(!text(&out).contains("s3cret-community"), "the community is never printed: {}", text(&out));
}

#[test]
fn probes_a_port_over_snmpv3_with_a_profile_of_the_configuration() {
    let users = [V3User::new("esi", "SHA-512", "v3-auth-s3cret", Some(("AES-256", "v3-priv-s3cret")))];
    let agent = Snmpd::start_v3("127.0.0.34", "unused-c0mm", &users, &Snmpd::junos_interfaces());
    let mut config = tempfile::NamedTempFile::new().unwrap();
    write!(
        config,
        "snmp:\n  credentials:\n    ESE_NODE_COMMUNITY: {{version: 3, user: esi, auth_protocol: sha512, \
         auth_password: v3-auth-s3cret, priv_protocol: aes256, priv_password: v3-priv-s3cret}}\n"
    )
    .unwrap();
    let (ip, port) = (format!("device_ip={}", agent.addr()), format!("port={}", agent.port()));
    let cfg = config.path().to_str().unwrap();
    agent.set_up("xe-0/0/4", false);
    let out = probe(&["--config", cfg, "physical_port", &ip, &port, "community_name=ESE_NODE_COMMUNITY", "name=xe-0/0/4"]);
    assert_eq!(out.status.code(), Some(1), "DOWN exits 1: {}", text(&out));
    assert!(without_time(&out).contains("DOWN") && without_time(&out).contains("ifIndex 514"), "{}", text(&out));
    let out = probe(&["--config", cfg, "physical_port", &ip, &port, "community_name=ESE_NODE_COMMUNITY", "name=xe-0/0/3"]);
    assert!(out.status.success(), "UP over v3: {}", text(&out));
    // Without the profile the name is a v2c community the agent does not know: no answer.
    let out = probe(&["physical_port", &ip, &port, "community_name=ESE_NODE_COMMUNITY", "name=xe-0/0/3", "--snmp-timeout-ms", "200"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("no answer"), "{}", text(&out));
    assert!(!text(&out).contains("s3cret"), "no password printed: {}", text(&out));
}

#[test]
fn a_silent_agent_is_no_answer_within_the_snmp_timeout() {
    let mut agent = Snmpd::start("127.0.0.32", "public", &Snmpd::junos_interfaces());
    agent.stop();
    let (ip, port) = (format!("ip={}", agent.addr()), format!("port={}", agent.port()));
    let args = ["router", &ip, &port, "community_name=public", "--snmp-timeout-ms", "150", "--snmp-retries", "0"];
    let out = probe(&args);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("no answer"), "{}", text(&out));
}

#[test]
fn probes_a_vmi_on_contrail_analytics_from_the_option_or_the_configuration() {
    let sim = ContrailSim::start();
    sim.set_l2_active("default-domain:admin:p1", true);
    let out = probe(&["virtual_machine_interface", "fq_name=default-domain:admin:p1", "--analytics", &sim.url()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", text(&out));
    assert!(stdout.contains("UP") && stdout.contains("l2_active"), "{stdout}");

    let mut config = tempfile::NamedTempFile::new().unwrap();
    writeln!(config, "contrail: {{analytics_url: {:?}}}", sim.url()).unwrap();
    sim.set_l2_active("default-domain:admin:p1", false);
    let path = config.path().to_str().unwrap();
    let out = probe(&["virtual_machine_interface", "fq_name=default-domain:admin:p1", "--config", path]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("DOWN"), "{}", text(&out));
}

#[test]
fn probes_an_etcd_reader_object() {
    let etcd = Etcd::start();
    etcd.store().put("/monitoring/v2.0/ha_interfaces/h1", r#"{"primary": "UP", "version": 3}"#).unwrap();
    let out = probe(&["etcd_reader", "etcd_type=ha_interface", "etcd_id=h1", "--etcd", &etcd.endpoint]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("#1 UP"), "{}", text(&out));
    let out = probe(&["etcd_reader", "etcd_type=ha_interface", "etcd_id=h2", "--etcd", &etcd.endpoint]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("neither a /monitoring nor a /state record"), "{}", text(&out));
}

#[test]
fn names_a_missing_property_or_a_bad_argument_with_exit_2() {
    let out = probe(&["physical_port", "device_ip=127.0.0.1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("community_name"), "{}", text(&out));
    let out = probe(&["switch", "ip"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"ip\" is not key=value"), "{}", text(&out));
    let out = probe(&["switch", "ip=127.0.0.1", "community_name=x", "--repeat", "many"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[test]
fn the_example_is_the_same_command() {
    let agent = Snmpd::start("127.0.0.33", "public", &Snmpd::junos_interfaces());
    let (ip, port) = (format!("device_ip={}", agent.addr()), format!("port={}", agent.port()));
    let args = ["physical_port", &ip, &port, "community_name=public", "name=xe-0/0/4", "--repeat", "2", "--interval", "0"];
    let shipped = probe(&args);
    let example = Command::new(example_probe()).args(args).output().unwrap();
    assert_eq!(example.status.code(), shipped.status.code(), "{}", text(&example));
    assert_eq!(without_time(&example), without_time(&shipped));
    assert!(without_time(&shipped).contains("#2 UP"), "{}", text(&shipped));

    let shipped = probe(&["--help"]);
    let example = Command::new(example_probe()).arg("--help").output().unwrap();
    assert_eq!(example.status.code(), Some(0));
    let help = |out: &Output| String::from_utf8_lossy(&out.stdout).replace("esi-monitor probe", "probe");
    assert_eq!(help(&example), help(&shipped));
    assert!(help(&shipped).contains("--repeat") && help(&shipped).contains("--snmp-timeout-ms"), "{}", help(&shipped));

    let example = Command::new(example_probe()).args(["physical_port", "device_ip=127.0.0.1"]).output().unwrap();
    assert_eq!(example.status.code(), Some(2), "{}", text(&example));
}

#[test]
fn probes_vrrp_and_bgp_over_netconf_without_printing_the_password() {
    let sshd = support::sshd::Sshd::start("127.0.0.36", &[("esi", "pr0be-Secret")]);
    let (host, port) = (format!("host={}", sshd.addr()), format!("port={}", sshd.port()));
    let common = [host.as_str(), port.as_str(), "login=esi", "password=pr0be-Secret"];
    let vrrp = |wanted: &str| {
        let mut args = vec!["vrrp_session"];
        args.extend(common);
        args.extend(["interface=ae0.1025", "vrid=20", wanted]);
        probe(&args)
    };
    let out = vrrp("wanted_status=master");
    assert!(out.status.success() && without_time(&out).contains("MASTER"), "{}", text(&out));
    let out = vrrp("wanted_status=backup");
    assert_eq!(out.status.code(), Some(1), "MASTER when BACKUP is wanted: {}", text(&out));
    let mut args = vec!["bgp_session"];
    args.extend(common);
    args.extend(["instance=vrf_gw_sample-ha-router-downlink_1025", "peer_address=192.168.8.1"]);
    let out = probe(&args);
    assert!(out.status.success() && without_time(&out).contains("ESTABLISHED"), "{}", text(&out));
    // A wrong password, given on standard input: no answer, and no password anywhere.
    let mut child = Command::new(env!("CARGO_BIN_EXE_esi-monitor"))
        .args(["probe", "vrrp_session", &host, &port, "login=esi", "password=-", "interface=ae0.1025", "vrid=20"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"Wr0ng-Secret\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("authentication") && !text(&out).contains("Wr0ng-Secret"), "{}", text(&out));
    let out = probe(&["list"]);
    for t in ["vrrp_session", "bgp_session", "nova_vm", "physical_port"] {
        assert!(String::from_utf8_lossy(&out.stdout).contains(t), "{}", text(&out));
    }
}

#[test]
fn probes_a_nova_server_with_the_configured_cloud() {
    use support::nova_sim::{NovaSim, PASSWORD, PROJECT, USERNAME};
    let sim = NovaSim::start();
    let ids = sim.add_servers(2);
    sim.set_status(&ids[1], "SHUTOFF");
    let mut config = tempfile::NamedTempFile::new().unwrap();
    writeln!(config, "nova: {{auth_url: \"{}\", username: {USERNAME}, password: {PASSWORD}, project_name: {PROJECT}}}", sim.url()).unwrap();
    let path = config.path().to_str().unwrap();
    let out = probe(&["nova_vm", &format!("server_id={}", ids[0]), "--config", path]);
    assert!(out.status.success() && without_time(&out).contains("UP"), "{}", text(&out));
    let out = probe(&["nova_vm", &format!("server_id={}", ids[1]), "--config", path]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(without_time(&out).contains("DOWN") && text(&out).contains("SHUTOFF"), "{}", text(&out));
    assert!(!text(&out).contains(PASSWORD), "{}", text(&out));
}
