//! Connecting to etcd as a production deployment does: TLS with a client certificate, a
//! user and password, several endpoints of which some are down — against a real etcd with
//! certificates made by openssl, and the whole service on top of it.

mod support;

use esi_monitor::config::Secret;
use esi_monitor::store::Store;
use std::time::Duration;
use support::etcd::{free_port, Etcd, Pki, PASSWORD};
use support::monitor::Monitor;
use support::wait_for;

/// `config` with short timeouts, for connections that are expected to fail.
fn quick(config: &esi_monitor::config::Etcd) -> esi_monitor::config::Etcd {
    esi_monitor::config::Etcd { timeout_ms: 1000, connect_timeout_ms: 1000, ..config.clone() }
}

fn refused(config: &esi_monitor::config::Etcd) -> String {
    match Store::connect(config) {
        Ok(_) => panic!("connecting with {config:?} should fail"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn tls_with_a_client_certificate_reads_and_writes() {
    let etcd = Etcd::start_secure(Some(Pki::new()), false);
    assert!(etcd.endpoint.starts_with("https://"));
    let store = etcd.store();
    store.put("/tls/a", "over tls").unwrap();
    assert_eq!(store.get("/tls/a").unwrap().unwrap().value_str(), "over tls");
}

#[test]
fn tls_without_a_client_certificate_or_with_the_wrong_ca_is_refused() {
    let etcd = Etcd::start_secure(Some(Pki::new()), false);
    let mut no_cert = quick(&etcd.config);
    no_cert.cert_file.clear();
    no_cert.key_file.clear();
    let e = refused(&no_cert);
    assert!(e.starts_with(&format!("etcd {}: ", etcd.endpoint)), "{e}");
    assert!(e.contains("etcd.cert_file is not set"), "{e}");

    let other = Pki::new();
    let wrong_ca = esi_monitor::config::Etcd { ca_file: other.path("ca.pem"), ..quick(&etcd.config) };
    let e = refused(&wrong_ca);
    assert!(e.starts_with(&format!("etcd {}: TLS handshake failed: invalid peer certificate", etcd.endpoint)), "{e}");
}

#[test]
fn a_user_with_the_right_password_works_and_a_wrong_one_is_named() {
    let etcd = Etcd::start_secure(None, true);
    let store = etcd.store();
    store.put("/auth/a", "as esi").unwrap();
    assert_eq!(store.get("/auth/a").unwrap().unwrap().value_str(), "as esi");

    let wrong = esi_monitor::config::Etcd { password: Secret::new("Wr0ng-Passw0rd-77"), ..quick(&etcd.config) };
    let e = refused(&wrong);
    assert_eq!(e, format!("etcd {}: user esi: authentication failed (wrong user name or password)", etcd.endpoint));
    assert!(!e.contains("Wr0ng-Passw0rd-77") && !e.contains(PASSWORD), "{e}");

    // Without a user, etcd's refusal says what to configure.
    let anonymous = esi_monitor::config::Etcd { username: String::new(), password: Secret::default(), ..quick(&etcd.config) };
    let e = Store::connect(&anonymous).unwrap().get("/auth/a").unwrap_err().to_string();
    assert!(e.contains("etcd requires authentication: set etcd.username and etcd.password"), "{e}");
}

/// etcd forgets a token 5 minutes after its last use (simple tokens) and all of them when
/// auth is turned off and on: a long-running client authenticates again by itself. A
/// restart keeps the tokens (etcd replays them from its log) but breaks the connection.
#[test]
fn requests_go_on_after_etcd_dropped_the_token_or_restarted() {
    let mut etcd = Etcd::start_secure(Some(Pki::new()), true);
    let store = etcd.store();
    store.put("/token/a", "before").unwrap();
    etcd.etcdctl(&["auth", "disable"]);
    etcd.etcdctl(&["auth", "enable"]);
    assert_eq!(store.get("/token/a").unwrap().unwrap().value_str(), "before");
    etcd.restart();
    // The first request may meet the connection the restart closed.
    let value = wait_for("a read after the restart", Duration::from_secs(10), || store.get("/token/a").ok());
    assert_eq!(value.unwrap().value_str(), "before");
    store.put("/token/a", "after").unwrap();
    assert_eq!(store.get("/token/a").unwrap().unwrap().value_str(), "after");
}

#[test]
fn requests_reach_the_second_endpoint_when_the_first_is_down() {
    let etcd = Etcd::start();
    let dead = format!("http://127.0.0.1:{}", free_port());
    let both = esi_monitor::config::Etcd { endpoints: vec![dead.clone(), etcd.endpoint.clone()], ..etcd.config.clone() };
    let store = Store::connect(&both).unwrap();
    // The channel spreads requests over both endpoints: 40 in a row all succeed only when
    // the ones sent to the dead endpoint are sent again to the live one.
    for i in 0..40 {
        store.put(&format!("/failover/{i}"), "v").unwrap_or_else(|e| panic!("put {i}: {e}"));
    }
    assert_eq!(store.range("/failover/").unwrap().0.len(), 40);

    let none = esi_monitor::config::Etcd { endpoints: vec![dead.clone()], ..quick(&etcd.config) };
    assert_eq!(refused(&none), format!("etcd {dead}: connection refused"));
}

/// Waits for a job's `/state` record and checks it says the switch is ACTIVE.
fn assert_job_done(store: &Store, rid: &str) {
    let key = format!("/state/v2.0/ese_devices/{rid}");
    let kv = wait_for(&key, Duration::from_secs(60), || store.get(&key).unwrap());
    let state: serde_json::Value = serde_json::from_slice(&kv.value).unwrap();
    assert_eq!(state["error"], "", "{state}");
    assert_eq!(state["state"]["state_monitoring"], "{\"switch\": \"ACTIVE\"}", "{state}");
}

/// The service itself, configured with a dead endpoint first, TLS and a user, executes
/// jobs, also after etcd dropped its token; its log never shows the password.
#[test]
fn the_service_executes_jobs_over_tls_with_a_user() {
    let mut etcd = Etcd::start_secure(Some(Pki::new()), true);
    support::replay::load_templates(&etcd.store());
    etcd.config.endpoints.insert(0, format!("https://127.0.0.1:{}", free_port()));
    let mut monitor =
        Monitor::start_with(&format!("{}log: {{level: trace}}\nmetrics: {{listen: \"\"}}\n", etcd.config_yaml()));
    for (n, rid) in ["tls-1", "tls-2"].into_iter().enumerate() {
        if n == 1 {
            etcd.etcdctl(&["auth", "disable"]);
            etcd.etcdctl(&["auth", "enable"]);
        }
        // A new client each time: only the service has to live with the dropped token.
        let store = etcd.store();
        let (id, entry) = support::jobs::create("ese_device", rid, support::jobs::switch_params());
        support::jobs::put(&store, &id, &entry);
        assert_job_done(&store, rid);
    }
    assert!(monitor.is_running());
    let log = monitor.log_text();
    assert!(log.contains("esi-monitor") && log.contains("started"), "{log}");
    assert!(!log.contains(PASSWORD), "the log shows the password:\n{log}");
}
