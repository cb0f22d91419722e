//! From probe results to the statuses operators see (SPEC §5): the status an object wants
//! (UP, or its named state: MASTER, BACKUP, ESTABLISHED) is confirmed by one reading; any
//! other after `monitoring.down_after` readings in a row that differ from the confirmed
//! status ("no answer" counts, and is written DOWN). A resource's `/monitoring` record
//! holds every reported object's status plus the registry version, and exists only once
//! every one of them has a confirmed status.

use crate::plugins::Probe;
use serde_json::{Map, Value};

/// Whether an object of `kind` in a resource of `resource_type` appears in `/monitoring`.
/// The original collectors did not report the logical ports of VPN and inter-DC interfaces
/// (only their sessions); `unreported` lists such (resource type, object type) pairs.
pub fn is_reported(resource_type: &str, type_name: &str, unreported: &[(String, String)]) -> bool {
    !unreported.iter().any(|(r, t)| r == resource_type && t == type_name)
}

/// The confirmation state of one object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Confirmed {
    /// The status last confirmed (`None` until the first confirmation).
    pub status: Option<String>,
    /// Readings in a row that differ from the confirmed status and from the wanted one.
    misses: u32,
}

/// A reading as a record writes it: `UP`, `DOWN`, the named state; "no answer" is `DOWN`.
fn reading(probe: &Probe) -> &str {
    match probe {
        Probe::Up => "UP",
        Probe::Down | Probe::NoAnswer(_) => "DOWN",
        Probe::State(s) => s,
    }
}

impl Confirmed {
    /// Takes one probe result of an object that wants `wanted` (`UP`, or its named state);
    /// true when the confirmed status changed. A reading of the wanted status is confirmed
    /// at once; any other is written after `down_after` readings in a row that differ from
    /// the confirmed status (the latest of them).
    pub fn observe(&mut self, probe: &Probe, wanted: &str, down_after: u32) -> bool {
        let now = reading(probe);
        if now == wanted || self.status.as_deref() == Some(now) {
            self.misses = 0;
        } else {
            self.misses = self.misses.saturating_add(1);
            if self.misses < down_after.max(1) {
                return false;
            }
        }
        if self.status.as_deref() == Some(now) {
            return false;
        }
        self.status = Some(now.to_string());
        true
    }

    /// True while readings that differ from the confirmed status are being counted (the
    /// poller asks again sooner).
    pub fn confirming(&self) -> bool {
        self.misses > 0
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

    fn state(s: &str) -> Probe {
        Probe::State(s.into())
    }

    #[test]
    fn down_only_after_down_after_misses_up_at_once() {
        let mut c = Confirmed::default();
        assert!(c.observe(&Probe::Up, "UP", 2));
        assert_eq!(c.status.as_deref(), Some("UP"));
        assert!(!c.observe(&Probe::Down, "UP", 2), "one miss is not enough");
        assert!(c.confirming());
        assert!(c.observe(&Probe::NoAnswer("timeout".into()), "UP", 2), "no answer counts");
        assert_eq!(c.status.as_deref(), Some("DOWN"));
        assert!(!c.observe(&Probe::Down, "UP", 2), "no change, nothing to write");
        assert!(!c.confirming(), "a reading that agrees is not being confirmed");
        assert!(c.observe(&Probe::Up, "UP", 2));
        assert!(!c.observe(&Probe::Down, "UP", 2), "the count starts again after an UP");
    }

    #[test]
    fn a_device_that_never_answers_is_confirmed_down() {
        let mut c = Confirmed::default();
        assert!(!c.observe(&Probe::NoAnswer("x".into()), "UP", 3));
        assert!(!c.observe(&Probe::NoAnswer("x".into()), "UP", 3));
        assert!(c.observe(&Probe::NoAnswer("x".into()), "UP", 3));
        assert_eq!(c.status.as_deref(), Some("DOWN"));
    }

    #[test]
    fn the_wanted_state_at_once_others_after_down_after_readings() {
        let mut c = Confirmed::default();
        assert!(c.observe(&state("MASTER"), "MASTER", 2), "the wanted state: one reading");
        assert!(!c.observe(&state("BACKUP"), "MASTER", 2), "another state: not yet");
        assert!(c.observe(&state("BACKUP"), "MASTER", 2));
        assert_eq!(c.status.as_deref(), Some("BACKUP"));
        assert!(!c.observe(&state("BACKUP"), "MASTER", 2));
        assert!(c.observe(&state("MASTER"), "MASTER", 2), "back to the wanted state at once");
        // Differing readings that differ among themselves: the latest is written.
        assert!(!c.observe(&state("INIT"), "MASTER", 2));
        assert!(c.observe(&Probe::NoAnswer("timeout".into()), "MASTER", 2));
        assert_eq!(c.status.as_deref(), Some("DOWN"), "no answer is recorded as DOWN");
        // A secondary that wants BACKUP gets it at once; MASTER only after confirmation.
        let mut s = Confirmed::default();
        assert!(s.observe(&state("BACKUP"), "BACKUP", 2));
        assert!(!s.observe(&state("MASTER"), "BACKUP", 2));
        assert!(!s.observe(&state("BACKUP"), "BACKUP", 2), "the flap is not written");
        assert!(!s.confirming());
    }

    #[test]
    fn record_waits_for_every_object() {
        let (mut a, b) = (Confirmed::default(), Confirmed::default());
        a.observe(&Probe::Up, "UP", 2);
        let v = Value::from(3);
        assert_eq!(record([("a", &a), ("b", &b)].into_iter(), &v), None);
        let mut b = b;
        b.observe(&state("ESTABLISHED"), "ESTABLISHED", 2);
        assert_eq!(
            record([("a", &a), ("b", &b)].into_iter(), &v),
            Some(serde_json::json!({"a": "UP", "b": "ESTABLISHED", "version": 3}))
        );
    }

    #[test]
    fn unreported_types() {
        let u = crate::config::Config::default().unreported();
        assert!(!is_reported("vpn_interface", "logical_port", &u));
        assert!(is_reported("vpn_interface", "bgp_session", &u));
        assert!(is_reported("ese_logical_port", "logical_port", &u));
    }
}
