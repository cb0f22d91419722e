//! Bad input, one case per test: each bad job gets one clear error where the spec puts it
//! (the `/state` record, or the log for a job that cannot be parsed at all), nothing is lost,
//! and the same worker goes on to complete the next, good job.

mod support;

use esi_monitor::store::Store;
use serde_json::{json, Value};
use std::time::Duration;
use support::etcd::Etcd;
use support::jobs::{create as job, put as put_job, put_template};
use support::monitor::Monitor;
use support::wait_for;

const LIMIT: Duration = Duration::from_secs(20);

struct World {
    etcd: Etcd,
    store: Store,
    monitor: Monitor,
}

fn world() -> World {
    let etcd = Etcd::start();
    let store = etcd.store();
    support::replay::load_templates(&store);
    let monitor = Monitor::start(&etcd.endpoint, "");
    World { etcd, store, monitor }
}

fn wait_state(store: &Store, plural: &str, rid: &str) -> Value {
    support::jobs::wait_state(store, plural, rid, LIMIT)
}

/// Asserts the job failed with an error containing `needle`, and that the workflow is gone.
fn assert_failed(w: &World, rtype: &str, rid: &str, id: &str, needle: &str) {
    let state = wait_state(&w.store, &format!("{rtype}s"), rid);
    let error = state["error"].as_str().unwrap_or("");
    println!("{rtype}/{rid}: {error}");
    assert!(error.contains(needle), "error {error:?} should mention {needle:?}");
    assert_eq!(state["state"]["worker_state"], "CREATE_FAILED", "{state}");
    assert_eq!(state["version"], 1);
    wait_for("the failed job to be removed (cleanup: true)", LIMIT, || {
        w.store.get(&format!("/jobs/all/{id}")).unwrap().is_none().then_some(())
    });
    assert!(w.store.get(&format!("/jobs/working/{id}")).unwrap().is_none());
    assert!(w.store.get(&format!("/jobs/finished/{id}")).unwrap().is_none());
}

/// A good job after the bad one: the worker still serves.
fn assert_still_serving(w: &mut World) {
    let (id, value) = job("ese_device", "good-1", support::jobs::switch_params());
    put_job(&w.store, &id, &value);
    let state = wait_state(&w.store, "ese_devices", "good-1");
    assert_eq!(state["error"], "");
    assert_eq!(state["state"]["state_monitoring"], "{\"switch\": \"ACTIVE\"}");
    assert!(w.monitor.is_running(), "esi-monitor must not exit on bad input");
    let _ = &w.etcd;
}

#[test]
fn job_value_that_is_not_json_is_left_in_place_and_reported() {
    let mut w = world();
    let id = "create:monitoring_worker:port:broken:1:x";
    w.store.put(&format!("/jobs/all/{id}"), "[\"monitoring_worker\", {not json").unwrap();
    assert_still_serving(&mut w);
    assert!(w.store.get(&format!("/jobs/all/{id}")).unwrap().is_some(), "the unparseable job must not be lost");
    let log = w.monitor.wait_log("the log line about the bad job", id, LIMIT);
    assert!(log.contains("not JSON"), "{log}");
}

#[test]
fn job_without_params_fails_with_a_clear_error() {
    let mut w = world();
    let (id, mut value) = job("ese_device", "d1", json!([]));
    value[1].as_object_mut().unwrap().remove("params");
    put_job(&w.store, &id, &value);
    assert_failed(&w, "ese_device", "d1", &id, "params");
    assert_still_serving(&mut w);
}

#[test]
fn missing_template_fails_the_job_and_aborts_its_workflow() {
    let mut w = world();
    let (id, value) = job("widget", "w1", json!([]));
    // A later job of the same workflow: removed when the workflow is aborted.
    let (_, mut sibling) = job("widget", "w1", json!([]));
    let sibling_id = "create:monitoring_worker:widget:w1:1:later";
    sibling[1]["id"] = json!(sibling_id);
    sibling[1]["dependency"] = json!([id]);
    put_job(&w.store, sibling_id, &sibling);
    put_job(&w.store, &id, &value);
    assert_failed(&w, "widget", "w1", &id, "template widget_monitoring failed: the template does not exist");
    assert!(w.store.get(&format!("/jobs/all/{sibling_id}")).unwrap().is_none(), "the workflow's next job is removed");
    assert_still_serving(&mut w);
}

#[test]
fn template_that_does_not_render_fails_the_job() {
    let mut w = world();
    put_template(&w.store, "widget_monitoring", "a:\n  type: {% if %}\n");
    let (id, value) = job("widget", "w2", json!([]));
    put_job(&w.store, &id, &value);
    assert_failed(&w, "widget", "w2", &id, "with template widget_monitoring failed");
    assert_still_serving(&mut w);
}

#[test]
fn template_rendering_invalid_yaml_fails_the_job() {
    let mut w = world();
    put_template(&w.store, "widget_monitoring", "a: [unclosed\n  type: switch\n");
    let (id, value) = job("widget", "w3", json!([]));
    put_job(&w.store, &id, &value);
    assert_failed(&w, "widget", "w3", &id, "with template widget_monitoring failed");
    assert_still_serving(&mut w);
}

#[test]
fn unknown_plugin_type_fails_the_job() {
    let mut w = world();
    put_template(&w.store, "widget_monitoring", "thing:\n  type: teleporter\n");
    let (id, value) = job("widget", "w4", json!([]));
    put_job(&w.store, &id, &value);
    assert_failed(&w, "widget", "w4", &id, "unknown plugin type \"teleporter\"");
    assert_still_serving(&mut w);
}

#[test]
fn missing_required_property_fails_the_job() {
    let mut w = world();
    put_template(&w.store, "widget_monitoring", "sw:\n  type: switch\n  ip: {{ ip }}\n");
    let (id, value) = job("widget", "w5", json!([{"param": "ip", "type": "value", "value": "127.0.0.1"}]));
    put_job(&w.store, &id, &value);
    assert_failed(&w, "widget", "w5", &id, "community_name");
    assert_still_serving(&mut w);
}

#[test]
fn unresolvable_output_key_fails_the_job() {
    let mut w = world();
    let (id, value) = job("network", "n1", json!([
        {"param": "fq_name", "type": "output_key",
         "value": {"output_key": "fq_name", "resource_type": "network", "resource_id": "n1"}}]));
    put_job(&w.store, &id, &value);
    assert_failed(&w, "network", "n1", &id, "no heat outputs recorded for network n1");
    assert_still_serving(&mut w);
}

#[test]
fn template_looping_a_billion_times_fails_the_job() {
    let mut w = world();
    put_template(
        &w.store,
        "widget_monitoring",
        "{% for i in range(1000000000) %}x{{ i }}:\n  type: switch\n{% endfor %}",
    );
    let (id, value) = job("widget", "w6", json!([]));
    put_job(&w.store, &id, &value);
    assert_failed(&w, "widget", "w6", &id, "with template widget_monitoring failed");
    assert_still_serving(&mut w);
}

#[test]
fn ignored_failure_completes_the_job_normally() {
    let w = world();
    let (id, mut value) = job("widget", "w7", json!([]));
    value[1]["on_failure"] = json!("ignore");
    put_job(&w.store, &id, &value);
    let state = wait_state(&w.store, "widgets", "w7");
    assert_eq!(state["error"], "", "{state}");
    assert_eq!(state["state"]["worker_state"], "CREATE_COMPLETED");
    let log = w.monitor.wait_log("the warning", "on_failure: ignore", LIMIT);
    assert!(log.contains("widget_monitoring"), "{log}");
}

#[test]
fn secrets_never_reach_the_log() {
    let mut w = world();
    // A VRRP object whose job fails (no `vrid`), and a list param that is not a list: both
    // carry secrets the error must not repeat.
    put_template(
        &w.store,
        "widget_monitoring",
        "s:\n  type: vrrp_session\n  host: h\n  port: 830\n  login: esi\n  password: {{ pw }}\n  interface: ae0\n",
    );
    let (id, value) = job("widget", "w8", json!([
        {"param": "pw", "type": "value", "value": "Pa55-w0rd-secret"},
        {"param": "community_name", "type": "list", "value": "C0mmunity-secret"}]));
    put_job(&w.store, &id, &value);
    let state = wait_state(&w.store, "widgets", "w8");
    assert_eq!(state["state"]["worker_state"], "CREATE_FAILED");
    assert_still_serving(&mut w);
    let (id2, value2) = job("widget", "w9", json!([{"param": "pw", "type": "value", "value": "Pa55-w0rd-secret"}]));
    put_job(&w.store, &id2, &value2);
    let state = wait_state(&w.store, "widgets", "w9");
    assert!(state["error"].as_str().unwrap().contains("\"vrid\""), "{state}");
    let log = w.monitor.log_text();
    assert!(log.contains("w9"), "the failure is logged (debug level)");
    for secret in ["Pa55-w0rd-secret", "C0mmunity-secret"] {
        assert!(!log.contains(secret), "{secret} appears in the log:\n{log}");
        assert!(!state.to_string().contains(secret), "{secret} appears in /state");
    }
}
