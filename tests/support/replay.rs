//! Replays recorded etcd traffic of the original system (tests/fixtures/flows): the writes of
//! gohan, the job manager and heat_worker are applied in their recorded order, while
//! esi-monitor does the monitoring_worker's part; every commit esi-monitor makes is collected
//! from a watch so it can be compared with what the original wrote.

use super::wait_for;
use esi_monitor::store::{Store, WatchEvent};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Event {
    pub mi: u64,
    pub action: String,
    pub key: String,
    pub writer: String,
    pub value: Option<Value>,
    pub raw: Option<String>,
    pub flow: String,
}

impl Event {
    fn text(&self) -> String {
        match (&self.raw, &self.value) {
            (Some(raw), _) => raw.clone(),
            (None, Some(v)) => v.to_string(),
            (None, None) => String::new(),
        }
    }
    pub fn is_delete(&self) -> bool {
        self.action == "delete" || self.action == "compareAndDelete"
    }
}

/// The recorded flows of one run (`cfg`, `igw`, `vpn`).
pub fn run_dir(run: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/flows").join(run)
}

/// Every event of the flows in `dir`, merged in recorded order (duplicates removed).
pub fn load_run(dir: &Path) -> (Vec<Event>, Vec<Value>) {
    let mut files: Vec<_> = std::fs::read_dir(dir).expect("flow dir").flatten().map(|e| e.path()).collect();
    files.sort();
    load_flows(&files)
}

/// Every event of the given flow files, merged in recorded order (duplicates removed), and
/// their resource-mapping rows; device addresses are mapped onto loopback.
pub fn load_flows(files: &[std::path::PathBuf]) -> (Vec<Event>, Vec<Value>) {
    let mut events = BTreeMap::new();
    let mut mappings = Vec::new();
    for path in files {
        // Recorded device addresses (10.x) become loopback ones (127.x) before anything
        // reaches etcd, so no probe of esi-monitor ever leaves the machine.
        let text = super::addresses::to_loopback(&std::fs::read_to_string(path).expect("read flow"));
        let flow: Value = serde_json::from_str(&text).expect("flow JSON");
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        for e in flow["events"].as_array().expect("events") {
            let ev = Event {
                mi: e["mi"].as_u64().expect("mi"),
                action: e["action"].as_str().unwrap_or("").to_string(),
                key: e["key"].as_str().unwrap_or("").to_string(),
                writer: e["writer"].as_str().unwrap_or("").to_string(),
                value: e.get("value").cloned(),
                raw: e.get("raw").and_then(Value::as_str).map(str::to_string),
                flow: name.clone(),
            };
            events.entry((ev.mi, ev.key.clone())).or_insert(ev);
        }
        for m in flow["resource_mappings"].as_array().into_iter().flatten() {
            mappings.push(m.clone());
        }
    }
    (events.into_values().collect(), mappings)
}

/// Loads the 23 templates exactly as gohan stored them.
pub fn load_templates(store: &Store) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/templates");
    for entry in std::fs::read_dir(dir).expect("templates dir").flatten() {
        let t: Value = serde_json::from_slice(&std::fs::read(entry.path()).unwrap()).unwrap();
        let key = t["key"].as_str().expect("template key");
        store.put(key, t["stored_as"].as_str().expect("stored_as")).expect("put template");
    }
}

/// Every etcd event since the recorder started, grouped by revision.
#[derive(Clone, Default)]
pub struct Recorder {
    pub by_revision: Arc<Mutex<BTreeMap<i64, Vec<WatchEvent>>>>,
}

impl Recorder {
    pub fn start(store: &Store) -> Recorder {
        let rec = Recorder::default();
        let (_, rev) = store.range("/nothing-here").expect("read revision");
        let watch = store.watch("/", rev + 1).expect("watch /");
        let sink = rec.by_revision.clone();
        std::thread::spawn(move || {
            let _keep = &watch;
            for ev in watch.events.iter() {
                let rev = match &ev {
                    WatchEvent::Put(kv) => kv.mod_revision,
                    WatchEvent::Delete { revision, .. } => *revision,
                    WatchEvent::NotText { .. } => continue, // the recorded flows' keys are text
                    WatchEvent::Broken(_) => return,
                };
                sink.lock().unwrap().entry(rev).or_default().push(ev);
            }
        });
        rec
    }

    /// The events of the transaction that put `key`, once it has happened.
    pub fn commit_of(&self, key: &str) -> Option<Vec<WatchEvent>> {
        let map = self.by_revision.lock().unwrap();
        map.values()
            .find(|evs| evs.iter().any(|e| matches!(e, WatchEvent::Put(kv) if kv.key == key)))
            .cloned()
    }

    pub fn wait_commit_of(&self, key: &str, limit: Duration) -> Vec<WatchEvent> {
        wait_for(&format!("a commit that writes {key}"), limit, || self.commit_of(key))
    }
}

/// Applies one recorded write of another component.
pub fn apply(store: &Store, ev: &Event) {
    if ev.is_delete() {
        store.delete(&ev.key).expect("replay delete");
    } else {
        store.put(&ev.key, ev.text()).expect("replay put");
    }
}

/// Parses the JSON strings the original embedded inside `/state` records, so that
/// comparisons do not depend on the key order of Python 2 dicts.
pub fn normalize_state(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(state) = v.get_mut("state").and_then(Value::as_object_mut) {
        for (_, item) in state.iter_mut() {
            if let Value::String(s) = item {
                if let Ok(parsed) = serde_json::from_str::<Value>(s) {
                    if parsed.is_array() || parsed.is_object() {
                        *item = parsed;
                    }
                }
            }
        }
    }
    v
}

/// Replays `events`: the writes of other components are applied in order; when the recording
/// shows the monitoring_worker claiming a job, `on_claim` is called, then the replay waits
/// (at most `limit`) for esi-monitor's commit of that job (it must run with
/// `jobs.cleanup: false`, so the commit puts `/jobs/finished/<id>`) and hands it to
/// `on_commit` with the index of the claim event. Returns the number of jobs.
pub fn replay(
    store: &Store,
    recorder: &Recorder,
    events: &[Event],
    limit: Duration,
    mut on_claim: impl FnMut(&str),
    mut on_commit: impl FnMut(&str, usize, &[WatchEvent]),
) -> usize {
    let mut jobs = 0;
    for (i, ev) in events.iter().enumerate() {
        match ev.writer.as_str() {
            "monitoring_worker" => {
                if let Some(id) = ev.key.strip_prefix("/jobs/working/").filter(|_| ev.action == "create") {
                    on_claim(id);
                    let commit = recorder.wait_commit_of(&format!("/jobs/finished/{id}"), limit);
                    on_commit(id, i, &commit);
                    jobs += 1;
                }
            }
            "collector" => {}
            _ => apply(store, ev),
        }
    }
    jobs
}

/// What the original wrote for one monitoring job: the last value per key of the resource's
/// job state and `/state` (None = deleted).
pub fn recorded_outcome(events: &[Event], claim: usize) -> BTreeMap<String, Option<Value>> {
    let id = events[claim].key.trim_start_matches("/jobs/working/").to_string();
    let parts: Vec<&str> = id.split(':').collect();
    let rid = parts[3];
    let mut out = BTreeMap::new();
    for ev in &events[claim + 1..] {
        if ev.writer != "monitoring_worker" {
            continue;
        }
        if ev.action == "create" && ev.key.starts_with("/jobs/working/") && ev.key.contains(rid) {
            break; // the next job of this resource
        }
        let about_resource = ev.key.ends_with(&format!("/{rid}"))
            && (ev.key.starts_with("/esi-worker/job_state/") || ev.key.starts_with("/state/"));
        if about_resource {
            out.insert(ev.key.clone(), if ev.is_delete() { None } else { ev.value.clone() });
        }
    }
    out
}

/// What esi-monitor's commit did to the same keys.
fn our_outcome(commit: &[WatchEvent], keys: &BTreeMap<String, Option<Value>>) -> BTreeMap<String, Option<Value>> {
    let mut out = BTreeMap::new();
    for ev in commit {
        match ev {
            WatchEvent::Put(kv) if keys.contains_key(&kv.key) || is_state_key(&kv.key) => {
                out.insert(kv.key.clone(), serde_json::from_slice(&kv.value).ok());
            }
            WatchEvent::Delete { key, .. } if keys.contains_key(key) || is_state_key(key) => {
                out.insert(key.clone(), None);
            }
            _ => {}
        }
    }
    out
}

fn is_state_key(k: &str) -> bool {
    k.starts_with("/esi-worker/job_state/") || k.starts_with("/state/")
}

fn normalize(map: &BTreeMap<String, Option<Value>>) -> BTreeMap<String, Option<Value>> {
    map.iter().map(|(k, v)| (k.clone(), v.as_ref().map(normalize_state))).collect()
}

/// Asserts that esi-monitor's commit of the job claimed at `events[claim]` wrote what the
/// original wrote to the resource's job state and `/state`; returns the recorded outcome.
pub fn assert_same_outcome(
    store: &Store,
    events: &[Event],
    claim: usize,
    commit: &[WatchEvent],
    context: &str,
) -> BTreeMap<String, Option<Value>> {
    let expected = recorded_outcome(events, claim);
    let mut ours = our_outcome(commit, &expected);
    // A delete of a key that never existed leaves no event: check it is absent.
    for (key, value) in &expected {
        if value.is_none() && !ours.contains_key(key) && store.get(key).unwrap().is_none() {
            ours.insert(key.clone(), None);
        }
    }
    assert_eq!(
        normalize(&ours),
        normalize(&expected),
        "{context}, flow {}: {} wrote something else than the original",
        events[claim].flow,
        events[claim].key
    );
    expected
}

/// Maps a recorded device address (10.x, unreachable here) onto a loopback one in every
/// recorded value.
pub fn map_address(events: &mut [Event], from: &str, to: &str) {
    for ev in events {
        if let Some(v) = &ev.value {
            let text = v.to_string();
            if text.contains(from) {
                ev.value = serde_json::from_str(&text.replace(from, to)).ok();
            }
        }
        if let Some(raw) = &mut ev.raw {
            *raw = raw.replace(from, to);
        }
    }
}

/// The secrets in recorded events: SNMP communities, passwords and tokens, whether they sit
/// under such a key or are the value of a job param of such a name, at any depth (values
/// stored as JSON text included).
pub fn secrets(events: &[Event]) -> std::collections::BTreeSet<String> {
    fn is_secret(name: &str) -> bool {
        ["community", "password", "token", "secret"].iter().any(|s| name.contains(s))
    }
    fn walk(v: &Value, out: &mut std::collections::BTreeSet<String>) {
        match v {
            Value::Object(m) => {
                if let (Some(Value::String(p)), Some(Value::String(value))) = (m.get("param"), m.get("value")) {
                    if is_secret(p) {
                        out.insert(value.clone());
                    }
                }
                for (k, x) in m {
                    match x {
                        Value::String(s) if is_secret(k) => {
                            out.insert(s.clone());
                        }
                        _ => walk(x, out),
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            Value::String(s) if s.starts_with(['{', '[']) => {
                if let Ok(inner) = serde_json::from_str::<Value>(s) {
                    walk(&inner, out);
                }
            }
            _ => {}
        }
    }
    let mut out = std::collections::BTreeSet::new();
    for ev in events {
        if let Some(v) = &ev.value {
            walk(v, &mut out);
        }
    }
    out
}
