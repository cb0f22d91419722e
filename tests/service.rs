//! esi-monitor as a systemd service: it tells systemd when it is ready, that it is alive and
//! what it does (sd_notify); it reloads its configuration on SIGHUP only when the new file is
//! valid; on SIGTERM it leaves no job half-done; its log names the job of every job line.

mod support;

use esi_monitor::store::Store;
use serde_json::{json, Value};
use std::os::unix::net::UnixDatagram;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::etcd::Etcd;
use support::jobs;
use support::monitor::Monitor;
use support::wait_for;

const LIMIT: Duration = Duration::from_secs(30);

fn wait_state(store: &Store, plural: &str, id: &str) -> Value {
    jobs::wait_state(store, plural, id, LIMIT)
}

/// A socket playing systemd's part: every datagram the service sends is kept.
struct Systemd {
    path: std::path::PathBuf,
    heard: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl Systemd {
    fn listen() -> Systemd {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        let heard = Arc::new(Mutex::new(Vec::new()));
        let sink = heard.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = socket.recv(&mut buf) {
                sink.lock().unwrap().push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        });
        Systemd { path, heard, _dir: dir }
    }

    /// The first message with a line satisfying `f`, waited for.
    fn wait(&self, what: &str, f: impl Fn(&str) -> bool) -> String {
        wait_for(what, LIMIT, || self.heard.lock().unwrap().iter().find(|m| m.lines().any(&f)).cloned())
    }

    fn count(&self, line: &str) -> usize {
        self.heard.lock().unwrap().iter().filter(|m| m.lines().any(|l| l == line)).count()
    }
}

#[test]
fn systemd_hears_ready_after_the_initial_reads_then_status_watchdog_and_stopping() {
    let etcd = Etcd::start();
    let store = etcd.store();
    support::replay::load_templates(&store);
    let systemd = Systemd::listen();
    let socket = systemd.path.to_str().unwrap();
    // WatchdogSec=0.4s: a ping every 0.2 s.
    let mut monitor = Monitor::start_env(&etcd.endpoint, "", &[("NOTIFY_SOCKET", socket), ("WATCHDOG_USEC", "400000")]);
    let ready = systemd.wait("READY=1", |l| l == "READY=1");
    let log = monitor.log_text();
    assert!(log.contains("job table read") && log.contains("registry read"), "READY before the reads:\n{log}");
    assert!(ready.contains("STATUS=0 jobs completed, 0 failed; 0 objects polled"), "{ready}");
    wait_for("watchdog pings", LIMIT, || (systemd.count("WATCHDOG=1") >= 3).then_some(()));

    let (id, entry) = jobs::create("ese_device", "d1", jobs::switch_params());
    jobs::put(&store, &id, &entry);
    wait_state(&store, "ese_devices", "d1");
    // The job's switch (127.0.0.1, no agent) is polled: one object, not UP.
    systemd.wait("a STATUS line counting the job and its object", |l| {
        l.starts_with("STATUS=1 jobs completed, 0 failed; 1 objects polled")
    });

    assert!(monitor.terminate(LIMIT).success());
    systemd.wait("STOPPING=1", |l| l == "STOPPING=1");
}

#[test]
fn sighup_refuses_a_broken_configuration_and_applies_a_good_one() {
    let etcd = Etcd::start();
    let store = etcd.store();
    support::replay::load_templates(&store);
    jobs::put_template(
        &store,
        "custom_monitoring",
        "renamed:\n  type: switch\n  community_name: {{ community_name }}\n  ip: {{ device_ip }}\n",
    );
    let base = "monitoring: {enabled: false}\n";
    let monitor = Monitor::start(&etcd.endpoint, base);
    let text = Monitor::config_text(&etcd.endpoint, base);
    // Before its handlers are installed, SIGHUP would end the process (as for any program).
    monitor.wait_log("the service to serve", "ready: job table", LIMIT);

    std::fs::write(&monitor.config, format!("{text}worker: {{threads: 0}}\n")).unwrap();
    monitor.signal("HUP");
    let log = monitor.wait_log("the refused reload", "reload refused", LIMIT);
    assert!(log.contains("worker.threads"), "the error names the key:\n{log}");
    let (id, entry) = jobs::create("ese_device", "d1", jobs::switch_params());
    jobs::put(&store, &id, &entry);
    let state = wait_state(&store, "ese_devices", "d1");
    assert_eq!(state["state"]["state_monitoring"], "{\"switch\": \"ACTIVE\"}", "the old templates still apply");

    let good = format!("{text}templates: {{ese_device: custom_monitoring}}\nworker: {{threads: 3}}\n");
    std::fs::write(&monitor.config, good).unwrap();
    monitor.signal("HUP");
    let log = monitor.wait_log("the reload", "configuration reloaded", LIMIT);
    assert!(log.contains("changes to worker take effect after a restart"), "{log}");
    let (id, entry) = jobs::create("ese_device", "d2", jobs::switch_params());
    jobs::put(&store, &id, &entry);
    let state = wait_state(&store, "ese_devices", "d2");
    assert_eq!(state["state"]["state_monitoring"], "{\"renamed\": \"ACTIVE\"}", "the new template mapping applies");
}

#[test]
fn sigterm_during_200_jobs_leaves_none_half_done_and_a_restart_finishes_them() {
    let etcd = Etcd::start();
    let store = etcd.store();
    // Verify-mode jobs that wait until their gate is UP: every 25th job waits on a closed
    // gate, so the 8 pool threads end up holding 8 claimed jobs when SIGTERM arrives.
    let template = "dep:\n  type: etcd_reader\n  etcd_type: gate\n  etcd_id: {{ gate }}\n  timeout: 600\n  time_between_retries: 0.05\n";
    jobs::put_template(&store, "widget_monitoring", template);
    store.put("/monitoring/v2.0/gates/open", r#"{"g": "UP", "version": 1}"#).unwrap();
    store.put("/monitoring/v2.0/gates/closed", r#"{"g": "DOWN", "version": 1}"#).unwrap();
    let counts = jobs::count_state_puts(&store);
    let config = "jobs: {verify: true}\nworker: {threads: 8}\nmonitoring: {enabled: false}\n";
    let mut first = Monitor::start(&etcd.endpoint, config);
    let ids: Vec<String> = (0..200)
        .map(|i| {
            let gate = if i % 25 == 0 { "closed" } else { "open" };
            let (id, entry) = jobs::create("widget", &format!("w-{i:04}"), json!([{"param": "gate", "type": "value", "value": gate}]));
            jobs::put(&store, &id, &entry);
            id
        })
        .collect();
    wait_for("8 claims held on closed gates", LIMIT, || {
        let (kvs, _) = store.range("/jobs/working/").unwrap();
        (kvs.len() == 8).then_some(())
    });
    assert!(first.terminate(LIMIT).success(), "a clean exit after SIGTERM");

    // Each job is either done (its /state written, its job keys gone) or untouched.
    let (working, _) = store.range("/jobs/working/").unwrap();
    assert!(working.is_empty(), "claims left behind: {:?}", working.iter().map(|kv| &kv.key).collect::<Vec<_>>());
    let mut done = 0;
    for (i, id) in ids.iter().enumerate() {
        let job = store.get(&format!("/jobs/all/{id}")).unwrap();
        let state = store.get(&format!("/state/v2.0/widgets/w-{i:04}")).unwrap();
        let registered = store.get(&format!("/esi-worker/monitoring/v2.0/widgets/w-{i:04}")).unwrap();
        match (job, state, registered) {
            (None, Some(_), Some(_)) => done += 1,
            (Some(_), None, None) => {}
            (job, state, reg) => panic!("job {i} half done: job {:?}, state {:?}, registry {:?}", job.is_some(), state.is_some(), reg.is_some()),
        }
    }
    assert!(done < 200 - 8, "the jobs on closed gates cannot have completed ({done} done)");
    assert!(first.log_text().contains("the service is stopping"), "held jobs are released, not failed");

    store.put("/monitoring/v2.0/gates/closed", r#"{"g": "UP", "version": 2}"#).unwrap();
    let _second = Monitor::start(&etcd.endpoint, config);
    wait_for("all 200 jobs completed", Duration::from_secs(60), || {
        (jobs::completed(&store, "widgets", "w") == 200).then_some(())
    });
    jobs::assert_each_once(&counts, "widgets", "w", 200);
}

#[test]
fn jobs_command_shows_pending_claimed_and_failed_jobs() {
    let etcd = Etcd::start();
    let store = etcd.store();
    let template = "dep:\n  type: etcd_reader\n  etcd_type: gate\n  etcd_id: g\n  timeout: 600\n  time_between_retries: 0.05\n";
    jobs::put_template(&store, "widget_monitoring", template);
    store.put("/monitoring/v2.0/gates/g", r#"{"g": "DOWN", "version": 1}"#).unwrap();
    // One thread, verify mode: the first job is claimed and held, the second waits its turn;
    // a job whose template is missing fails (cleanup: false keeps /jobs/finished).
    let monitor = Monitor::start(
        &etcd.endpoint,
        "jobs: {verify: true, cleanup: false}\nworker: {threads: 1}\nmonitoring: {enabled: false}\n",
    );
    let (failed, entry) = jobs::create("gadget", "g1", json!([]));
    jobs::put(&store, &failed, &entry);
    wait_for("the failed job", LIMIT, || store.get(&format!("/jobs/finished/{failed}")).unwrap());
    let (held, entry) = jobs::create("widget", "w1", json!([]));
    jobs::put(&store, &held, &entry);
    let claim = wait_for("the claim", LIMIT, || store.get(&format!("/jobs/working/{held}")).unwrap());
    let (pending, entry) = jobs::create("widget", "w2", json!([]));
    jobs::put(&store, &pending, &entry);

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_esi-monitor"))
        .args(["jobs", "--config"])
        .arg(&monitor.config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let line = |id: &str| text.lines().find(|l| l.contains(id)).unwrap_or_else(|| panic!("{id} missing:\n{text}"));
    let owner = String::from_utf8_lossy(&claim.value).split('/').next().unwrap().to_string();
    assert!(line(&held).starts_with("claimed") && line(&held).contains(&owner), "{text}");
    assert!(line(&pending).starts_with("pending"), "{text}");
    assert!(line(&failed).starts_with("failed") && line(&failed).contains("gadget_monitoring"), "{text}");
    assert!(text.contains("1 pending, 0 waiting, 0 retrying, 1 claimed, 1 failed"), "{text}");
}

#[test]
fn every_job_line_names_its_job_in_text_and_json_logs() {
    let etcd = Etcd::start();
    let store = etcd.store();
    for (format, rid) in [("text", "t1"), ("json", "j1")] {
        let monitor = Monitor::start(
            &etcd.endpoint,
            &format!("log: {{level: debug, format: {format}}}\nmonitoring: {{enabled: false}}\n"),
        );
        // No template for `gizmo`: the job fails, which is logged at error level.
        let (id, entry) = jobs::create("gizmo", rid, json!([]));
        jobs::put(&store, &id, &entry);
        wait_state(&store, "gizmos", rid);
        let log = monitor.wait_log("the job's lines", "committed", LIMIT);
        let about: Vec<&str> = log.lines().filter(|l| l.contains("gizmo_monitoring") || l.contains("committed")).collect();
        assert!(about.len() >= 2, "{log}");
        for line in about {
            if format == "json" {
                let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
                assert_eq!((v["job"].as_str(), v["resource"].as_str()), (Some(id.as_str()), Some("gizmos/j1")), "{line}");
            } else {
                assert!(line.contains(&format!("job={id} resource=gizmos/t1")), "{line}");
            }
        }
        if format == "json" {
            for line in log.lines() {
                serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            }
        }
    }
}

#[test]
fn a_service_started_before_etcd_answers_waits_for_it_and_says_so_on_healthz() {
    let etcd = Etcd::start();
    let store = etcd.store();
    support::replay::load_templates(&store);
    let pid = etcd.pid().to_string();
    let signal = |sig: &str| assert!(std::process::Command::new("kill").args([sig, &pid]).status().unwrap().success());
    signal("-STOP"); // etcd frozen: connections open, nothing answers
    let listen = support::free_listen();
    let monitor = Monitor::start_with(&format!(
        "etcd: {{endpoints: [\"{}\"], lease_ttl_s: 3, timeout_ms: 300}}\nmetrics: {{listen: \"{listen}\"}}\nmonitoring: {{enabled: false}}\n",
        etcd.endpoint
    ));
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let health = || -> Option<(u16, String)> {
        let mut r = agent.get(&format!("http://{listen}/healthz")).call().ok()?;
        Some((r.status().as_u16(), r.body_mut().read_to_string().ok()?))
    };
    monitor.wait_log("a retry while etcd is frozen", "trying again", LIMIT);
    let (code, body) = wait_for("/healthz to answer", LIMIT, health);
    assert_eq!(code, 503, "not healthy before etcd answered: {body}");
    assert!(body.contains("waiting for etcd"), "{body}");
    signal("-CONT");
    let (id, entry) = jobs::create("ese_device", "d1", jobs::switch_params());
    jobs::put(&store, &id, &entry);
    let state = wait_state(&store, "ese_devices", "d1");
    assert_eq!(state["state"]["worker_state"], "CREATE_COMPLETED");
    wait_for("/healthz ok", LIMIT, || health().filter(|(code, _)| *code == 200));
}
