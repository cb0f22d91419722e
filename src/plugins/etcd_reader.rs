//! The `etcd_reader` plugin: a resource is UP when another resource it depends on is healthy,
//! as that resource's `/monitoring` or `/state` record says.

use super::{Probe, Prober};
use crate::keys::{self, Plurals};
use crate::store::Store;
use serde_json::Value;

/// Verify mode only: the poller does not poll etcd_reader objects (their status is the
/// other resource's).
pub static READER: Prober = Prober {
    label: "etcd_reader",
    unit: None,
    poll: |_, _, asks| super::each(asks, Probe::NoAnswer("etcd_reader objects are not polled".into())),
    probe: |c, o| match &c.store {
        Some(store) => {
            (probe(store, &c.plurals, &o.text("etcd_type"), &o.text("etcd_id")), "read /monitoring, then /state".into())
        }
        None => (Probe::NoAnswer("no etcd connection".into()), "no etcd connection".into()),
    },
    bulk: 1,
    device: None,
    options: "--etcd URL, --config FILE (etcd:)",
};

/// Probes the resource `etcd_type`/`etcd_id`.
pub fn probe(store: &Store, plurals: &Plurals, etcd_type: &str, etcd_id: &str) -> Probe {
    let plural = plurals.of(etcd_type);
    let read = |key: String| -> Result<Option<Value>, String> {
        match store.get(&key) {
            Ok(Some(kv)) => Ok(serde_json::from_slice(&kv.value).ok()),
            Ok(None) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    };
    match read(keys::monitoring(&plural, etcd_id)) {
        Err(e) => return Probe::NoAnswer(e),
        Ok(Some(Value::Object(m))) => {
            let all_up = m.iter().filter(|(k, _)| *k != "version").all(|(_, v)| v == "UP");
            return if all_up { Probe::Up } else { Probe::Down };
        }
        Ok(_) => {}
    }
    match read(keys::state(&plural, etcd_id)) {
        Err(e) => Probe::NoAnswer(e),
        Ok(Some(state)) => {
            let monitoring = state.pointer("/state/state_monitoring").cloned().unwrap_or(Value::Null);
            // The original stored it as JSON text; accept an object too.
            let monitoring = match monitoring {
                Value::String(s) => serde_json::from_str(&s).unwrap_or(Value::Null),
                other => other,
            };
            match monitoring {
                Value::Object(m) if m.values().all(|v| v == "ACTIVE") => Probe::Up,
                _ => Probe::Down,
            }
        }
        Ok(None) => Probe::NoAnswer(format!("{etcd_type} {etcd_id} has neither a /monitoring nor a /state record")),
    }
}
