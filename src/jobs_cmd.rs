//! `esi-monitor jobs`: the monitoring jobs in etcd as an operator wants to see them — which
//! are pending, which wait on other jobs, which an instance has claimed (which instance,
//! since when), which the running service holds back until etcd answers again, and which
//! failed — read at one etcd revision.

use crate::config::Config;
use crate::job;
use crate::keys;
use crate::store::Store;
use serde_json::Value;
use std::collections::BTreeMap;

/// One job's line.
#[derive(Debug, PartialEq)]
pub struct Row {
    pub status: &'static str,
    pub owner: String,
    pub age: String,
    pub id: String,
    pub detail: String,
}

/// Prints the jobs of `config.jobs.handler` (every handler's with `all`). The running
/// service adds the jobs it holds back until etcd answers again; when etcd cannot be read,
/// those are printed before the error.
pub fn run(config: &Config, all: bool) -> Result<(), String> {
    let store = Store::connect(&config.etcd);
    // The jobs every member holds back: this machine's service, and each member's listener.
    let mut listeners: Vec<String> = vec![config.metrics.listen.clone()];
    if let Ok((members, _)) = store.as_ref().map_err(|e| e.clone()).and_then(|s| s.range(keys::MEMBERS)) {
        let listen = |kv: &crate::store::Kv| serde_json::from_slice::<Value>(&kv.value).ok()?["listen"].as_str().map(str::to_string);
        listeners.extend(members.iter().filter_map(listen).filter(|l| !l.is_empty()));
    }
    listeners.sort();
    listeners.dedup();
    let mut waiting: BTreeMap<String, Value> = BTreeMap::new();
    for listen in listeners.iter().filter(|l| !l.is_empty()) {
        if let Ok(Value::Object(m)) = crate::ask_service::get_at(listen, "/jobs").map(|v| v["waiting"].clone()) {
            waiting.extend(m);
        }
    }
    let range = store.and_then(|store| store.read_range(keys::JOBS));
    let range = match range {
        Ok(r) => r,
        Err(e) => {
            for (id, w) in &waiting {
                println!("{:<9} {:<36} {:>8}  {id}  ({})", "retrying", "", "", retrying(w, crate::logging::now()));
            }
            return Err(e.to_string());
        }
    };
    let entries: Vec<(String, Vec<u8>)> = range.kvs.into_iter().map(|kv| (kv.key, kv.value)).collect();
    let handler = (!all).then_some(config.jobs.handler.as_str());
    let now = crate::logging::now();
    let mut rows = rows(&entries, handler, now);
    for r in rows.iter_mut().filter(|r| r.status == "pending" || r.status == "claimed") {
        if let Some(w) = waiting.get(&r.id) {
            r.status = "retrying";
            r.detail = retrying(w, now);
        }
    }
    for key in range.not_text.iter().filter_map(|k| keys::suffix(k, keys::JOBS_ALL)) {
        let detail = "the key is not UTF-8 text: left in place, never executed".to_string();
        rows.push(Row { status: "bad", owner: String::new(), age: String::new(), id: key.to_string(), detail });
    }
    println!("{:<9} {:<36} {:>8}  JOB", "STATUS", "OWNER", "AGE");
    for r in &rows {
        let detail = if r.detail.is_empty() { String::new() } else { format!("  ({})", r.detail) };
        println!("{:<9} {:<36} {:>8}  {}{detail}", r.status, r.owner, r.age, r.id);
    }
    let count = |s: &str| rows.iter().filter(|r| r.status == s).count();
    println!(
        "{} pending, {} waiting, {} retrying, {} claimed, {} failed, {} unparseable (etcd revision {})",
        count("pending"),
        count("waiting"),
        count("retrying"),
        count("claimed"),
        count("failed"),
        count("bad"),
        range.revision
    );
    Ok(())
}

/// `waiting for etcd: election, retried 3 times, next in 4s (etcd txn: etcdserver: leader changed)`.
fn retrying(w: &Value, now: f64) -> String {
    let next = w["next_at"].as_f64().map_or_else(|| "?".into(), |t| age(t - now));
    format!(
        "waiting for etcd: {}, retried {} times, next in {next} ({})",
        w["cause"].as_str().unwrap_or("?"),
        w["retries"],
        w["error"].as_str().unwrap_or("")
    )
}

/// The rows for the `/jobs/` keys and values read, at `now` (Unix seconds).
pub fn rows(entries: &[(String, Vec<u8>)], handler: Option<&str>, now: f64) -> Vec<Row> {
    let under = |prefix: &str| -> BTreeMap<&str, &[u8]> {
        entries.iter().filter_map(|(k, v)| Some((keys::suffix(k, prefix)?, v.as_slice()))).collect()
    };
    let (jobs, working, finished) = (under(keys::JOBS_ALL), under(keys::JOBS_WORKING), under(keys::JOBS_FINISHED));
    let mut rows = Vec::new();
    for (&id, raw) in &jobs {
        let row = |status, owner: String, age: String, detail: String| Row { status, owner, age, id: id.into(), detail };
        let job = match job::parse(id, raw) {
            Ok(job) => job,
            Err(e) => {
                rows.push(row("bad", String::new(), String::new(), e));
                continue;
            }
        };
        if handler.is_some_and(|h| h != job.handler) {
            continue;
        }
        if let Some(value) = finished.get(id) {
            let error = serde_json::from_slice::<serde_json::Value>(value)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(String::from));
            match error {
                Some(e) => rows.push(row("failed", String::new(), String::new(), e)),
                None => rows.push(row("finished", String::new(), String::new(), String::new())),
            }
        } else if let Some(token) = working.get(id) {
            let (owner, claimed_at) = claim_token(&String::from_utf8_lossy(token));
            rows.push(row("claimed", owner, claimed_at.map(|t| age(now - t)).unwrap_or_default(), String::new()));
        } else {
            let waiting = job.dependency.iter().filter(|d| jobs.contains_key(d.as_str()) && !finished.contains_key(d.as_str())).count();
            match waiting {
                0 => rows.push(row("pending", String::new(), String::new(), String::new())),
                n => rows.push(row("waiting", String::new(), String::new(), format!("on {n} unfinished jobs"))),
            }
        }
    }
    rows
}

/// A new claim token: `<instance>/<claimed at, Unix ms>/<uuid>`.
pub fn new_claim_token(instance: &str) -> String {
    let ms = (crate::logging::now() * 1000.0) as u64;
    format!("{instance}/{ms}/{}", uuid::Uuid::new_v4().simple())
}

/// The owning instance and the claim time (Unix seconds) of a claim token.
fn claim_token(token: &str) -> (String, Option<f64>) {
    let mut parts = token.splitn(3, '/');
    let owner = parts.next().unwrap_or("").to_string();
    let at = parts.next().and_then(|ms| ms.parse::<u64>().ok()).map(|ms| ms as f64 / 1000.0);
    (owner, at)
}

/// `45s`, `3m12s`, `2h05m`, `3d04h`.
fn age(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86_400 => format!("{}h{:02}m", s / 3600, s / 60 % 60),
        _ => format!("{}d{:02}h", s / 86_400, s / 3600 % 24),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: &str, handler: &str, deps: &[&str]) -> (String, Vec<u8>) {
        let body = serde_json::json!([handler, {
            "job_name": "w", "action": "create", "resource_type": "port", "resource_id": id,
            "version": 1, "dependency": deps, "params": []}, 1]);
        (keys::job_all(id), body.to_string().into_bytes())
    }

    #[test]
    fn every_status_is_told_apart() {
        let entries = vec![
            job("a", "monitoring_worker", &[]),
            job("b", "monitoring_worker", &["a"]),
            job("c", "monitoring_worker", &[]),
            (keys::job_working("c"), b"inst-1/1000000/abc".to_vec()),
            job("d", "monitoring_worker", &[]),
            (keys::job_finished("d"), br#"{"error": "template missing"}"#.to_vec()),
            job("e", "heat_worker", &[]),
            (keys::job_all("f"), b"{not json".to_vec()),
        ];
        let rows = rows(&entries, Some("monitoring_worker"), 1000.0 + 192.0);
        let got: Vec<(&str, &str, &str, &str)> =
            rows.iter().map(|r| (r.id.as_str(), r.status, r.owner.as_str(), r.age.as_str())).collect();
        assert_eq!(
            got,
            [
                ("a", "pending", "", ""),
                ("b", "waiting", "", ""),
                ("c", "claimed", "inst-1", "3m12s"),
                ("d", "failed", "", ""),
                ("f", "bad", "", "")
            ]
        );
        assert_eq!(rows[3].detail, "template missing");
        assert!(rows[4].detail.contains("not JSON"), "{}", rows[4].detail);
        assert_eq!(super::rows(&entries, None, 0.0).len(), 6, "--all lists the heat_worker job too");
    }

    #[test]
    fn tokens_and_ages() {
        let t = new_claim_token("inst");
        let (owner, at) = claim_token(&t);
        assert_eq!(owner, "inst");
        assert!((crate::logging::now() - at.unwrap()).abs() < 60.0, "{t}");
        assert_eq!([age(5.0), age(125.0), age(7500.0), age(100_000.0)], ["5s", "2m05s", "2h05m", "1d03h"]);
    }
}
