//! From probe results to the statuses operators see (SPEC §5): an object is DOWN only after
//! `down_after` consecutive non-UP results ("no answer" counts), UP after one UP; a named
//! state (MASTER, ESTABLISHED, …) is taken as it comes. A resource's `/monitoring` record
//! holds every reported object's status plus the registry version, and exists only once
//! every one of them has a confirmed status.

use crate::plugins::{Kind, Probe};
use serde_json::{Map, Value};

/// Types that are never polled: their status lives elsewhere (etcd_reader) or nowhere
/// (kafka_messenger).
pub fn is_polled(kind: Kind) -> bool {
    !matches!(kind, Kind::EtcdReader | Kind::KafkaMessenger)
}

/// Whether an object of `kind` in a resource of `resource_type` appears in `/monitoring`.
/// The original collectors did not report the logical ports of VPN and inter-DC interfaces
/// (only their sessions); `unreported` lists such (resource type, object type) pairs.
pub fn is_reported(resource_type: &str, type_name: &str, kind: Kind, unreported: &[(String, String)]) -> bool {
    is_polled(kind) && !unreported.iter().any(|(r, t)| r == resource_type && t == type_name)
}

/// The confirmation state of one object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Confirmed {
    /// The status last confirmed (`None` until the first confirmation).
    pub status: Option<String>,
    /// Consecutive non-UP results so far.
    misses: u32,
}

impl Confirmed {
    /// Takes one probe result; true when the confirmed status changed.
    pub fn observe(&mut self, probe: &Probe, down_after: u32) -> bool {
        let next = match probe {
            Probe::Up => {
                self.misses = 0;
                Some("UP".to_string())
            }
            Probe::State(s) => {
                self.misses = 0;
                Some(s.clone())
            }
            Probe::Down | Probe::NoAnswer(_) => {
                self.misses = self.misses.saturating_add(1);
                (self.misses >= down_after.max(1)).then(|| "DOWN".to_string())
            }
        };
        match next {
            Some(s) if self.status.as_deref() != Some(s.as_str()) => {
                self.status = Some(s);
                true
            }
            _ => false,
        }
    }
}

/// The `/monitoring` record of a resource from its reported objects' states, or `None`
/// while any of them has no confirmed status yet.
pub fn record<'a>(objects: impl Iterator<Item = (&'a str, &'a Confirmed)>, version: &Value) -> Option<Value> {
    let mut map = Map::new();
    for (name, state) in objects {
        map.insert(name.to_string(), Value::String(state.status.clone()?));
    }
    map.insert("version".into(), version.clone());
    Some(Value::Object(map))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn down_only_after_down_after_misses_up_at_once() {
        let mut c = Confirmed::default();
        assert!(c.observe(&Probe::Up, 2));
        assert_eq!(c.status.as_deref(), Some("UP"));
        assert!(!c.observe(&Probe::Down, 2), "one miss is not enough");
        assert!(c.observe(&Probe::NoAnswer("timeout".into()), 2), "no answer counts");
        assert_eq!(c.status.as_deref(), Some("DOWN"));
        assert!(!c.observe(&Probe::Down, 2), "no change, nothing to write");
        assert!(c.observe(&Probe::Up, 2));
        assert!(!c.observe(&Probe::Down, 2), "the count starts again after an UP");
    }

    #[test]
    fn a_device_that_never_answers_is_confirmed_down() {
        let mut c = Confirmed::default();
        assert!(!c.observe(&Probe::NoAnswer("x".into()), 3));
        assert!(!c.observe(&Probe::NoAnswer("x".into()), 3));
        assert!(c.observe(&Probe::NoAnswer("x".into()), 3));
        assert_eq!(c.status.as_deref(), Some("DOWN"));
    }

    #[test]
    fn named_states_are_reported_as_they_come() {
        let mut c = Confirmed::default();
        assert!(c.observe(&Probe::State("MASTER".into()), 2));
        assert!(c.observe(&Probe::State("BACKUP".into()), 2));
        assert_eq!(c.status.as_deref(), Some("BACKUP"));
    }

    #[test]
    fn record_waits_for_every_object() {
        let (mut a, b) = (Confirmed::default(), Confirmed::default());
        a.observe(&Probe::Up, 2);
        let v = Value::from(3);
        assert_eq!(record([("a", &a), ("b", &b)].into_iter(), &v), None);
        let mut b = b;
        b.observe(&Probe::State("ESTABLISHED".into()), 2);
        assert_eq!(
            record([("a", &a), ("b", &b)].into_iter(), &v),
            Some(serde_json::json!({"a": "UP", "b": "ESTABLISHED", "version": 3}))
        );
    }

    #[test]
    fn unreported_types() {
        let u = crate::config::Config::default().unreported();
        assert!(!is_reported("vpn_interface", "logical_port", Kind::LogicalPort, &u));
        assert!(is_reported("vpn_interface", "bgp_session", Kind::BgpSession, &u));
        assert!(is_reported("ese_logical_port", "logical_port", Kind::LogicalPort, &u));
        assert!(!is_reported("internet_gateway", "etcd_reader", Kind::EtcdReader, &u));
    }
}
