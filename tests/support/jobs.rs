//! Monitoring jobs as the job manager writes them (`[handler, job, 0]` at
//! `/jobs/all/<id>`), for tests that need jobs of their own rather than recorded ones.

use esi_monitor::store::{Store, WatchEvent};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A whole create workflow in one job (is_first and is_last, version 1, on_failure fail),
/// with id `create:monitoring_worker:<type>:<rid>:1:t`. Returns the id and the entry; tests
/// change fields of `entry[1]` before putting it.
pub fn create(rtype: &str, rid: &str, params: Value) -> (String, Value) {
    let id = format!("create:monitoring_worker:{rtype}:{rid}:1:t");
    let body = json!({"id": id, "job_name": format!("{rtype}:{rid}:1"), "handler": "monitoring_worker",
        "action": "create", "resource_type": rtype, "resource_id": rid, "version": 1,
        "is_first": true, "is_last": true, "on_failure": "fail", "dependency": [],
        "params": params, "resource_input": {"tenant_id": "tenant-1"}});
    (id, json!(["monitoring_worker", body, 0]))
}

/// The params of the ese_device template: a switch at 127.0.0.1, community `public`.
pub fn switch_params() -> Value {
    json!([{"param": "community_name", "type": "value", "value": "public"},
           {"param": "device_ip", "type": "value", "value": "127.0.0.1"}])
}

pub fn put(store: &Store, id: &str, entry: &Value) {
    store.put(&format!("/jobs/all/{id}"), entry.to_string()).expect("put job");
}

/// Writes a template the way gohan does (`body` as JSON text).
pub fn put_template(store: &Store, name: &str, text: &str) {
    let body = json!({"handler": "monitoring_worker", "id": name, "template_file": text}).to_string();
    store
        .put(&format!("/config/v2.0/heat_templates/{name}"), json!({"body": body, "version": 1}).to_string())
        .expect("put template");
}

/// Counts the puts of every `/state/` key from now on.
pub fn count_state_puts(store: &Store) -> Arc<Mutex<HashMap<String, usize>>> {
    let counts = Arc::new(Mutex::new(HashMap::new()));
    let (_, rev) = store.range("/state/").unwrap();
    let watch = store.watch("/state/", rev + 1).unwrap();
    let sink = counts.clone();
    std::thread::spawn(move || {
        for ev in watch.events.iter() {
            if let WatchEvent::Put(kv) = ev {
                *sink.lock().unwrap().entry(kv.key).or_insert(0) += 1;
            }
        }
    });
    counts
}

/// How many of `<plural>/<prefix>-*` have a `/state` record saying CREATE_COMPLETED.
pub fn completed(store: &Store, plural: &str, prefix: &str) -> usize {
    let (kvs, _) = store.range(&format!("/state/v2.0/{plural}/{prefix}-")).unwrap();
    kvs.iter()
        .filter(|kv| {
            let v: Value = serde_json::from_slice(&kv.value).unwrap();
            v["state"]["worker_state"] == "CREATE_COMPLETED"
        })
        .count()
}

/// Each `/state/v2.0/<plural>/<prefix>-NNNN` (N of them) was put exactly once, once the
/// counting watch has caught up with etcd.
pub fn assert_each_once(counts: &Arc<Mutex<HashMap<String, usize>>>, plural: &str, prefix: &str, n: usize) {
    let keys: Vec<String> = (0..n).map(|i| format!("/state/v2.0/{plural}/{prefix}-{i:04}")).collect();
    let counted = || {
        let counts = counts.lock().unwrap();
        keys.iter().all(|k| counts.contains_key(k)).then(|| counts.clone())
    };
    let counts = super::wait_for("the watch to see every /state put", std::time::Duration::from_secs(30), counted);
    for key in &keys {
        assert_eq!(counts.get(key).copied(), Some(1), "{key} must be written exactly once");
    }
}

/// The `/state` record of `<plural>/<id>`, once written (at most `limit`).
pub fn wait_state(store: &Store, plural: &str, id: &str, limit: std::time::Duration) -> Value {
    super::wait_for(&format!("/state of {plural}/{id}"), limit, || {
        let kv = store.get(&format!("/state/v2.0/{plural}/{id}")).unwrap()?;
        serde_json::from_slice(&kv.value).ok()
    })
}
