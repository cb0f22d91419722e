//! `esi-monitor status <plural>/<id>`: what an operator wants to know about one monitored
//! resource — its registered objects, the running service's last result for each (with
//! its time) and confirmed status, and the `/monitoring` record in etcd.

use crate::config::Config;
use crate::keys;
use crate::store::Store;
use serde_json::Value;

/// Prints the status of `target` (`<plural>/<id>`).
pub fn run(config: &Config, target: &str) -> Result<(), String> {
    let (plural, id) = target
        .split_once('/')
        .filter(|(p, i)| !p.is_empty() && !i.is_empty() && !i.contains('/'))
        .ok_or_else(|| format!("{target:?} is not <plural>/<id>, e.g. ports/7abe783f-…"))?;
    let store = Store::connect(&config.etcd).map_err(|e| e.to_string())?;
    let read = |key: String| -> Result<Option<Value>, String> {
        Ok(store.get(&key).map_err(|e| e.to_string())?.and_then(|kv| serde_json::from_slice(&kv.value).ok()))
    };
    let registry = read(keys::registry(plural, id))?;
    let record = read(keys::monitoring(plural, id))?;
    let path = format!("/status/{plural}/{id}");
    // The instance polling it (SPEC §6): the owner of its shard, asked at its own listener.
    let poller = match &registry {
        Some(entry) => Some(poller(&store, &keys::registry(plural, id), entry)?),
        None => None,
    };
    let live = match &poller {
        Some(Poller::Member { listen, .. }) if !listen.is_empty() => crate::ask_service::get_at(listen, &path),
        _ => crate::ask_service::get(config, &path),
    };

    match &registry {
        Some(entry) => println!(
            "{plural}/{id}: {} registered at version {}",
            entry["resource_type"].as_str().unwrap_or("?"),
            entry["version"]
        ),
        None => println!("{plural}/{id}: not registered ({} is absent)", keys::registry(plural, id)),
    }
    if let Some(p) = &poller {
        println!("  {p}");
    }
    let objects = registry.as_ref().and_then(|e| e["objects"].as_object().cloned()).unwrap_or_default();
    for (name, props) in &objects {
        let kind = props["type"].as_str().unwrap_or("?");
        let known = live.as_ref().ok().and_then(|l| l["objects"].get(name).cloned());
        let line = match known.clone() {
            Some(o) if !o["last"].is_null() => format!(
                "last {} at {}, confirmed {}{}",
                o["last"].as_str().unwrap_or("?"),
                o["at"].as_f64().map_or_else(|| "?".into(), crate::logging::utc),
                o["confirmed"].as_str().unwrap_or("not yet"),
                if o["reported"] == false { " (not reported)" } else { "" }
            ),
            Some(_) => "not polled yet".into(),
            None => match kind {
                "etcd_reader" | "kafka_messenger" => "not polled (by design)".into(),
                _ => "no result from the service".into(),
            },
        };
        let event = match known.as_ref().and_then(|o| Some((o["event"].as_str()?.to_string(), o["event_at"].as_f64()?))) {
            Some((text, at)) => format!("; last event: {text} at {}", crate::logging::utc(at)),
            None => String::new(),
        };
        println!("  {name:<20} {kind:<26} {line}{event}");
    }
    if let Err(why) = &live {
        println!("  (the running service was not asked: {why})");
    }
    match record {
        Some(r) => println!("{}: {r}", keys::monitoring(plural, id)),
        None => println!("{}: no record", keys::monitoring(plural, id)),
    }
    Ok(())
}


/// Who polls a resource: the member holding its shard's claim, or nobody now.
enum Poller {
    Member { shard: u16, id: String, host: String, pid: String, listen: String },
    Nobody { shard: u16 },
}

impl std::fmt::Display for Poller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Poller::Member { shard, id, host, pid, .. } => write!(f, "polled by instance {id} on {host} (pid {pid}), shard {shard}"),
            Poller::Nobody { shard } => write!(f, "polled by no instance now: shard {shard} is not claimed"),
        }
    }
}

fn poller(store: &Store, registry_key: &str, entry: &Value) -> Result<Poller, String> {
    let shard = crate::shards::shard_of(&crate::shards::affinity(registry_key, entry));
    let Some(claim) = store.get(&keys::shard(shard)).map_err(|e| e.to_string())? else {
        return Ok(Poller::Nobody { shard });
    };
    let id = claim.value_str().to_string();
    let member: Value = store
        .get(&keys::member(&id))
        .map_err(|e| e.to_string())?
        .and_then(|kv| serde_json::from_slice(&kv.value).ok())
        .unwrap_or(Value::Null);
    let text = |k: &str| match &member[k] {
        Value::String(s) => s.clone(),
        Value::Null => "?".into(),
        v => v.to_string(),
    };
    let listen = member["listen"].as_str().unwrap_or("").to_string();
    Ok(Poller::Member { shard, host: text("host"), pid: text("pid"), listen, id })
}
