//! Replay of every recorded flow (tests/fixtures/flows, 51 resources in three runs) against a
//! real etcd: esi-monitor must write the same job states, `/state` records and
//! resource-mapping rows as the original monitoring_worker did.

mod support;

use esi_monitor::store::WatchEvent;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;
use support::replay::{self, Recorder};

/// The registry entry of a create job lists every reported object with the job's version;
/// a delete job removes the entry and the `/monitoring` record.
fn check_registry(id: &str, commit: &[WatchEvent], outcome: &BTreeMap<String, Option<Value>>) {
    let parts: Vec<&str> = id.split(':').collect();
    let (action, rid, version) = (parts[0], parts[3], parts[4]);
    let registry_put = commit.iter().find_map(|ev| match ev {
        WatchEvent::Put(kv) if kv.key.starts_with("/esi-worker/monitoring/v2.0/") && kv.key.ends_with(rid) => {
            Some(serde_json::from_slice::<Value>(&kv.value).unwrap())
        }
        _ => None,
    });
    if action == "delete" {
        assert!(registry_put.is_none(), "{id}: a delete job registers nothing");
        let removed = |prefix: &str| {
            commit.iter().any(|ev| matches!(ev, WatchEvent::Delete { key, .. } if key.starts_with(prefix) && key.ends_with(rid)))
        };
        assert!(removed("/esi-worker/monitoring/v2.0/"), "{id}: the registry entry is removed");
        return;
    }
    let entry = registry_put.unwrap_or_else(|| panic!("{id}: a create job registers its objects"));
    assert_eq!(entry["version"].to_string(), version, "{id}: registry version");
    assert_eq!(entry["resource_id"], rid);
    // Every object the job reported is registered (kafka_messenger ones are registered but
    // never reported).
    let reported: Vec<String> = outcome
        .values()
        .flatten()
        .filter_map(|v| {
            let sm = v.pointer("/state/state_monitoring").or_else(|| v.get("state_monitoring"))?;
            let sm = match sm {
                Value::String(text) => serde_json::from_str::<Value>(text).ok()?,
                other => other.clone(),
            };
            Some(sm.as_object()?.keys().cloned().collect::<Vec<_>>())
        })
        .flatten()
        .collect();
    let objects = entry["objects"].as_object().unwrap_or_else(|| panic!("{id}: registry objects"));
    for name in &reported {
        assert!(objects.contains_key(name), "{id}: {name} is registered");
        assert!(objects[name]["type"].is_string(), "{id}: {name} has a type");
    }
}

fn replay_run(run: &str) {
    let (events, mappings) = replay::load_run(&replay::run_dir(run));
    let etcd = support::etcd::Etcd::start();
    let store = etcd.store();
    replay::load_templates(&store);
    let recorder = Recorder::start(&store);
    let monitor = support::monitor::Monitor::start(
        &etcd.endpoint,
        "jobs: {cleanup: false, verify: false}\nworker: {threads: 4}",
    );
    let jobs = replay::replay(&store, &recorder, &events, Duration::from_secs(20), |_| {}, |id, i, commit| {
        let expected = replay::assert_same_outcome(&store, &events, i, commit, &format!("run {run}"));
        check_registry(id, commit, &expected);
    });
    assert!(jobs > 0, "run {run} has monitoring jobs");
    // The debug-level log of the whole run repeats none of the fixtures' secrets.
    let secrets = replay::secrets(&events);
    println!("run {run}: the log holds none of the {} secrets of the fixtures", secrets.len());
    assert!(secrets.len() >= 3, "run {run}: only {} secrets found in the fixtures", secrets.len());
    let log = monitor.log_text();
    assert!(log.lines().count() > jobs, "run {run}: the log is at debug level");
    for secret in &secrets {
        assert!(!log.contains(secret.as_str()), "run {run}: secret {secret:?} appears in the log");
    }
    // Resource mappings: the same rows, ignoring ids and timestamps.
    let (rows, _) = store.range("/esi-worker/resource_mappings/").unwrap();
    let summarize = |row: &Value, deleted: bool| {
        let f = |k: &str| row.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        (f("tenant_id"), f("resource_type"), f("resource_id"), f("mapped_id"), f("relation"), deleted)
    };
    let mut ours: Vec<_> = rows
        .iter()
        .map(|kv| serde_json::from_slice::<Value>(&kv.value).unwrap())
        .map(|row| summarize(&row, !row["deleted"].is_null()))
        .collect();
    let mut expected = Vec::new();
    for m in &mappings {
        let row = &m["row"];
        match m["op"].as_str() {
            Some("insert") => expected.push(summarize(row, false)),
            Some("soft-delete") => {
                let target = summarize(row, false);
                let hit = expected.iter_mut().find(|e| **e == target).expect("soft-deleted row was inserted");
                hit.5 = true;
            }
            other => panic!("unknown mapping op {other:?}"),
        }
    }
    ours.sort();
    expected.sort();
    assert_eq!(ours, expected, "run {run}: resource-mapping rows differ");
    println!("run {run}: {jobs} monitoring jobs matched, {} mapping rows", expected.len());
}

#[test]
fn replay_cfg() {
    replay_run("cfg");
}

#[test]
fn replay_igw() {
    replay_run("igw");
}

#[test]
fn replay_vpn() {
    replay_run("vpn");
}
