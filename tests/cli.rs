//! The command line as operators use it: `render` for debugging templates, `run` refusing a
//! bad configuration with a message naming the key, `version`, and `jobs` and `status`
//! failing at once on an etcd that refuses connections but waiting for a silent one.

use serde_json::{json, Value};
use std::io::Write;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn esi_monitor(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_esi-monitor")).args(args).output().expect("run esi-monitor")
}

fn temp_file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

const TEMPLATE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/templates/vpn_interface_monitoring.json");

#[test]
fn render_prints_objects_in_template_order_and_db_mappings() {
    let params = temp_file(
        &json!({"primary_device_ip": "127.0.0.1", "secondary_device_ip": "127.0.0.2", "primary_port": "xe-0/0/1",
                "secondary_port": "xe-0/0/2", "community_name": "public", "primary_device_port": 830,
                "secondary_device_port": 830, "primary_device_login": "esi", "secondary_device_login": "esi",
                "primary_device_password": "pw", "secondary_device_password": "pw", "primary_peer_ip": "127.1.0.1",
                "secondary_peer_ip": "127.1.0.2", "vrf_name": "vrf1"}).to_string(),
    );
    let out = esi_monitor(&["render", "--template", TEMPLATE, "--params", params.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    let names: Vec<&String> = printed["objects"].as_object().unwrap().keys().collect();
    assert_eq!(names, ["primary", "primary_uplink", "secondary", "secondary_uplink"]);
    assert_eq!(printed["objects"]["primary_uplink"]["device_ip"], "127.0.0.1");
    assert_eq!(printed["objects"]["primary"]["port"], 830);
    assert_eq!(printed["db_mappings"][1], json!({"mapped_id": "127.0.0.2-xe-0/0/2", "relation": "secondary"}));
}

#[test]
fn render_accepts_a_job_params_list_and_names_what_it_cannot_resolve() {
    let params = temp_file(
        &json!([{"param": "vmi_fq_name", "type": "output_key",
                 "value": {"output_key": "fq_name", "resource_type": "port", "resource_id": "p1"}}])
        .to_string(),
    );
    let out = esi_monitor(&["render", "--template", TEMPLATE, "--params", params.path().to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("vmi_fq_name") && err.contains("output_key"), "{err}");
}

#[test]
fn run_refuses_a_bad_configuration_naming_the_key() {
    for (text, key) in [("worker: {threads: many}", "worker.threads"), ("snmp: {comunity: x}", "snmp.comunity")] {
        let config = temp_file(text);
        let out = esi_monitor(&["run", "--config", config.path().to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(key), "{err}");
        assert_eq!(err.lines().count(), 1, "one clear line: {err}");
    }
}

#[test]
fn version_names_the_git_revision() {
    let revision = std::process::Command::new("git").args(["rev-parse", "--short=12", "HEAD"]).output().unwrap();
    let revision = String::from_utf8_lossy(&revision.stdout).trim().to_string();
    for args in [&["version"][..], &["--version"]] {
        let out = esi_monitor(args);
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.starts_with(&format!("esi-monitor {} (git ", env!("CARGO_PKG_VERSION"))), "{text}");
        assert!(text.contains(&revision), "{text} should name {revision}");
    }
}

#[test]
fn a_usage_error_exits_2_and_help_exits_0() {
    let out = esi_monitor(&["run", "--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    let out = esi_monitor(&["status", "--help"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("<plural>/<id>"));
    for command in ["run", "render", "status", "jobs", "check-config", "probe", "version"] {
        let out = esi_monitor(&[command, "--help"]);
        assert_eq!(out.status.code(), Some(0), "{command} --help");
        assert!(String::from_utf8_lossy(&out.stdout).starts_with("Usage:"), "{command} --help");
    }
    let out = esi_monitor(&[]);
    assert_eq!(out.status.code(), Some(2), "no command is a usage error");
}

#[test]
fn check_config_validates_without_starting() {
    let good = temp_file("worker: {threads: 4}\nmetrics: {listen: \"\"}");
    let out = esi_monitor(&["check-config", good.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("valid"));
    let bad = temp_file("monitoring: {down_after: 0}");
    let out = esi_monitor(&["check-config", bad.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("monitoring.down_after"));
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/config.yaml");
    assert!(esi_monitor(&["check-config", shipped]).status.success());
}

/// A loopback port nobody listens on: a listener's port, closed again.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `jobs` and `status` against `endpoints` with the given etcd timeouts: the exit status,
/// stderr, and how long it took.
fn against_etcd(endpoints: &[String], connect_timeout_ms: u64, timeout_ms: u64) -> Vec<(Output, Duration)> {
    let config = temp_file(&format!(
        "etcd: {{endpoints: {endpoints:?}, connect_timeout_ms: {connect_timeout_ms}, timeout_ms: {timeout_ms}}}\n\
         metrics: {{listen: \"\"}}"
    ));
    let path = config.path().to_str().unwrap();
    [&["jobs", "--config", path][..], &["status", "ports/p1", "--config", path]]
        .iter()
        .map(|args| {
            let started = Instant::now();
            let out = esi_monitor(args);
            (out, started.elapsed())
        })
        .collect()
}

#[test]
fn a_refused_etcd_endpoint_is_reported_at_once() {
    let endpoint = format!("http://127.0.0.1:{}", closed_port());
    // A minute to connect: only a refusal taken as the answer ends the commands before.
    for (out, took) in against_etcd(std::slice::from_ref(&endpoint), 60_000, 5_000) {
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(&endpoint) && err.contains("refused"), "names the endpoint and says refused: {err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(took < Duration::from_secs(60), "took {took:?}: the refusal waited for the connect timeout");
    }
}

#[test]
fn every_endpoint_refused_is_named() {
    let endpoints = [format!("http://127.0.0.1:{}", closed_port()), format!("127.0.0.1:{}", closed_port())];
    for (out, took) in against_etcd(&endpoints, 60_000, 5_000) {
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        for endpoint in &endpoints {
            assert!(err.contains(&format!("{endpoint}: connection refused")), "{endpoint} in: {err}");
        }
        assert!(took < Duration::from_secs(60), "took {took:?}");
    }
}

#[test]
fn a_silent_etcd_endpoint_is_given_the_configured_timeout() {
    // Accepts connections (the kernel completes them) and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", silent.local_addr().unwrap());
    let connect_timeout = Duration::from_millis(400);
    for (out, took) in against_etcd(std::slice::from_ref(&endpoint), connect_timeout.as_millis() as u64, 400) {
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(&endpoint) && !err.contains("refused"), "{err}");
        assert!(took >= connect_timeout, "gave up after {took:?}, before the connect timeout: {err}");
    }
    // One refusing endpoint beside a silent one is no answer about etcd: it waits too.
    let endpoints = [format!("http://127.0.0.1:{}", closed_port()), endpoint];
    for (out, took) in against_etcd(&endpoints, connect_timeout.as_millis() as u64, 400) {
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(took >= connect_timeout, "gave up after {took:?} although one endpoint may answer: {err}");
    }
}
