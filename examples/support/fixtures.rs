//! The recorded data of the original system, read from `tests/fixtures/` of this repository
//! (only from this repository): the 23 monitoring templates and the flows of etcd writes.

use esi_monitor::store::Store;
use serde_json::Value;
use std::path::{Path, PathBuf};

pub fn fixtures_dir() -> PathBuf {
    super::repo_root().join("tests/fixtures")
}

/// Writes the 23 templates exactly as gohan stored them; returns how many.
pub fn load_templates(store: &Store) -> Result<usize, String> {
    let dir = fixtures_dir().join("templates");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| format!("read {}: {e}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    for path in &files {
        let t = read_json(path)?;
        let key = t["key"].as_str().ok_or_else(|| format!("{}: no \"key\"", path.display()))?;
        let stored = t["stored_as"].as_str().ok_or_else(|| format!("{}: no \"stored_as\"", path.display()))?;
        store.put(key, stored).map_err(|e| e.to_string())?;
    }
    Ok(files.len())
}

pub fn read_json(path: &Path) -> Result<Value, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("read {}: {e}", path.display()))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("{}: not JSON: {e}", path.display()))
}

/// One recorded etcd write.
#[derive(Debug, Clone)]
pub struct Event {
    pub mi: u64,
    pub action: String,
    pub key: String,
    pub writer: String,
    pub value: Option<Value>,
    pub raw: Option<String>,
}

impl Event {
    pub fn is_delete(&self) -> bool {
        self.action == "delete" || self.action == "compareAndDelete"
    }

    /// The text to write: the raw recorded string when there is one, else the value as JSON
    /// (a recorded `null` is an empty value, as etcd v2 held it).
    pub fn text(&self) -> String {
        match (&self.raw, &self.value) {
            (Some(raw), _) => raw.clone(),
            (None, Some(Value::Null)) | (None, None) => String::new(),
            (None, Some(v)) => v.to_string(),
        }
    }
}

/// One flow file: every write about one resource, in recorded order.
#[derive(Debug, Clone)]
pub struct Flow {
    pub run: String,
    pub file: String,
    pub resource_type: String,
    pub resource_id: String,
    pub plural: String,
    pub events: Vec<Event>,
}

/// Reads one flow; recorded device addresses (10.x) become loopback ones (127.x), so that
/// nothing esi-monitor polls ever leaves the machine.
pub fn load_flow(path: &Path) -> Result<Flow, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("read {}: {e}", path.display()))?;
    let f: Value = serde_json::from_str(&super::addresses::to_loopback(&text))
        .map_err(|e| format!("{}: not JSON: {e}", path.display()))?;
    let s = |k: &str| f[k].as_str().unwrap_or("").to_string();
    let mut events: Vec<Event> = f["events"]
        .as_array()
        .ok_or_else(|| format!("{}: no events", path.display()))?
        .iter()
        .map(|e| Event {
            mi: e["mi"].as_u64().unwrap_or(0),
            action: e["action"].as_str().unwrap_or("").to_string(),
            key: e["key"].as_str().unwrap_or("").to_string(),
            writer: e["writer"].as_str().unwrap_or("").to_string(),
            value: e.get("value").cloned(),
            raw: e.get("raw").and_then(Value::as_str).map(str::to_string),
        })
        .collect();
    events.sort_by_key(|e| e.mi);
    Ok(Flow {
        run: s("run"),
        file: path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        resource_type: s("resource_type"),
        resource_id: s("resource_id"),
        plural: s("plural"),
        events,
    })
}

/// Every flow of every run (cfg, igw, vpn), sorted by run and file name.
pub fn load_all_flows() -> Result<Vec<Flow>, String> {
    let root = fixtures_dir().join("flows");
    let mut paths = Vec::new();
    for run in std::fs::read_dir(&root).map_err(|e| format!("read {}: {e}", root.display()))?.flatten() {
        if run.path().is_dir() {
            for f in std::fs::read_dir(run.path()).map_err(|e| e.to_string())?.flatten() {
                if f.path().extension().is_some_and(|x| x == "json") {
                    paths.push(f.path());
                }
            }
        }
    }
    paths.sort();
    paths.iter().map(|p| load_flow(p)).collect()
}

/// The flow of `run` whose file name starts with `prefix` (e.g. `port-7abe783f`).
pub fn find_flow(run: &str, prefix: &str) -> Result<Flow, String> {
    let dir = fixtures_dir().join("flows").join(run);
    let mut hits: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| format!("read {}: {e}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(prefix)))
        .collect();
    hits.sort();
    match hits.as_slice() {
        [one] => load_flow(one),
        [] => Err(format!("no flow {prefix}* in {}", dir.display())),
        _ => Err(format!("several flows match {prefix}* in {}", dir.display())),
    }
}
