//! The etcd_reader plugin against a real etcd: a resource is UP when another resource's
//! `/monitoring` record is all UP, else when its `/state` says every object is ACTIVE.

mod support;

use esi_monitor::keys::Plurals;
use esi_monitor::plugins::etcd_reader::probe;
use esi_monitor::plugins::Probe;
use std::collections::BTreeMap;

#[test]
fn reads_monitoring_then_state() {
    let etcd = support::etcd::Etcd::start();
    let store = etcd.store();
    let plurals = Plurals::new(&BTreeMap::new());
    let p = |id: &str| probe(&store, &plurals, "ha_interface", id);

    assert!(matches!(p("none"), Probe::NoAnswer(why) if why.contains("ha_interface none")));

    store.put("/monitoring/v2.0/ha_interfaces/m", r#"{"a": "UP", "b": "UP", "version": 3}"#).unwrap();
    assert_eq!(p("m"), Probe::Up);
    store.put("/monitoring/v2.0/ha_interfaces/m", r#"{"a": "UP", "b": "DOWN", "version": 3}"#).unwrap();
    assert_eq!(p("m"), Probe::Down);

    // Only /state: the original's text-encoded state_monitoring.
    let state = |sm: &str| serde_json::json!({"error": "", "state": {"state_monitoring": sm}, "version": 1}).to_string();
    store.put("/state/v2.0/ha_interfaces/s", state(r#"{"primary": "ACTIVE", "secondary": "ACTIVE"}"#)).unwrap();
    assert_eq!(p("s"), Probe::Up);
    store.put("/state/v2.0/ha_interfaces/s", state(r#"{"primary": "ACTIVE", "secondary": "DOWN"}"#)).unwrap();
    assert_eq!(p("s"), Probe::Down);

    // /monitoring wins over /state.
    store.put("/monitoring/v2.0/ha_interfaces/s", r#"{"primary": "UP", "secondary": "UP", "version": 1}"#).unwrap();
    assert_eq!(p("s"), Probe::Up);
}
