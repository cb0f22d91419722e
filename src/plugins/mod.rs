//! Plugin types of SPEC §4: which props each type requires, the value a create job reports
//! for it, and the probes that read a live status in verify mode.

pub mod contrail;
pub mod etcd_reader;
pub mod snmp;

use serde_json::{Map, Value};

/// What one probe of one object found out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    Up,
    Down,
    /// A named state (VRRP MASTER/BACKUP, BGP ESTABLISHED, …), upper-cased.
    State(String),
    /// The device or API gave no usable answer; the string says why (never a secret).
    NoAnswer(String),
}

impl std::fmt::Display for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Probe::Up => f.write_str("UP"),
            Probe::Down => f.write_str("DOWN"),
            Probe::State(s) => f.write_str(s),
            Probe::NoAnswer(why) => write!(f, "no answer ({why})"),
        }
    }
}

/// The plugin types the original system knew.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    VirtualMachineInterface,
    VirtualNetwork,
    PhysicalPort,
    LogicalPort,
    Switch,
    Router,
    EtcdReader,
    VrrpSession,
    BgpSession,
    NovaVm,
    KafkaMessenger,
}

impl Kind {
    pub fn parse(name: &str) -> Option<Kind> {
        Some(match name {
            "virtual_machine_interface" => Kind::VirtualMachineInterface,
            "virtual_network" => Kind::VirtualNetwork,
            "physical_port" => Kind::PhysicalPort,
            "logical_port" => Kind::LogicalPort,
            "switch" => Kind::Switch,
            "router" => Kind::Router,
            "etcd_reader" => Kind::EtcdReader,
            "vrrp_session" => Kind::VrrpSession,
            "bgp_session" => Kind::BgpSession,
            "nova_vm" => Kind::NovaVm,
            "kafka_messenger" => Kind::KafkaMessenger,
            _ => return None,
        })
    }

    pub fn required(self) -> &'static [&'static str] {
        match self {
            Kind::VirtualMachineInterface | Kind::VirtualNetwork => &["fq_name"],
            Kind::PhysicalPort | Kind::LogicalPort => &["device_ip", "community_name", "name"],
            Kind::Switch | Kind::Router => &["ip", "community_name"],
            Kind::EtcdReader => &["etcd_type", "etcd_id"],
            Kind::VrrpSession => &["host", "port", "login", "password", "interface", "vrid"],
            Kind::BgpSession => &["host", "port", "login", "password", "instance", "peer_address"],
            Kind::NovaVm => &["server_id"],
            Kind::KafkaMessenger => &["kafka_topic"],
        }
    }
}

/// A rendered object checked against its type: the unit a job verifies and the poller polls.
#[derive(Debug, Clone)]
pub struct Object {
    pub name: String,
    pub kind: Kind,
    pub props: Map<String, Value>,
}

impl Object {
    /// Checks the type and the required props of a rendered object.
    pub fn check(name: &str, props: &Map<String, Value>) -> Result<Object, String> {
        let type_name = props.get("type").and_then(Value::as_str).unwrap_or("");
        let kind = Kind::parse(type_name)
            .ok_or_else(|| format!("object {name:?} has unknown plugin type {type_name:?}"))?;
        for prop in kind.required() {
            if props.get(*prop).map_or(true, Value::is_null) {
                return Err(format!("object {name:?} of type {type_name} lacks required property {prop:?}"));
            }
        }
        Ok(Object { name: name.to_string(), kind, props: props.clone() })
    }

    /// A prop as text (numbers and booleans as JSON prints them).
    pub fn text(&self, prop: &str) -> String {
        match self.props.get(prop) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => String::new(),
            Some(other) => other.to_string(),
        }
    }

    /// A prop read as seconds (`timeout`, `time_between_retries`), or the default.
    pub fn seconds(&self, prop: &str, default: f64) -> f64 {
        match self.props.get(prop) {
            Some(Value::Number(n)) => n.as_f64().unwrap_or(default),
            Some(Value::String(s)) => s.trim().parse().unwrap_or(default),
            _ => default,
        }
        .max(0.0)
    }

    /// The value a create job reports for this object when it is healthy; `None` for
    /// types that are never reported (`kafka_messenger`).
    pub fn success_value(&self) -> Option<String> {
        match self.kind {
            Kind::KafkaMessenger => None,
            Kind::VrrpSession => Some(self.text("wanted_status")),
            Kind::BgpSession => Some("ESTABLISHED".into()),
            _ => Some("ACTIVE".into()),
        }
    }

    /// True when a probe result is what this object waits for.
    pub fn is_success(&self, probe: &Probe) -> bool {
        match (self.kind, probe) {
            (Kind::VrrpSession, Probe::State(s)) => s.eq_ignore_ascii_case(&self.text("wanted_status")),
            (Kind::BgpSession, Probe::State(s)) => s == "ESTABLISHED",
            (_, Probe::Up) => true,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn props(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn checks_type_and_required_props() {
        let o = Object::check("vmi", &props(json!({"type": "virtual_machine_interface", "fq_name": "a:b"}))).unwrap();
        assert_eq!(o.success_value().as_deref(), Some("ACTIVE"));
        let e = Object::check("x", &props(json!({"type": "teleporter"}))).unwrap_err();
        assert!(e.contains("teleporter") && e.contains("\"x\""), "{e}");
        let e = Object::check("p", &props(json!({"type": "physical_port", "device_ip": "1", "name": "xe"}))).unwrap_err();
        assert!(e.contains("community_name"), "{e}");
    }

    #[test]
    fn success_values_per_type() {
        let vrrp = Object::check("p", &props(json!({"type": "vrrp_session", "host": "h", "port": 830,
            "login": "l", "password": "p", "interface": "ae0", "vrid": 41, "wanted_status": "master"}))).unwrap();
        assert_eq!(vrrp.success_value().as_deref(), Some("master"));
        assert!(vrrp.is_success(&Probe::State("MASTER".into())));
        assert!(!vrrp.is_success(&Probe::State("BACKUP".into())));
        let kafka = Object::check("k", &props(json!({"type": "kafka_messenger", "kafka_topic": "t"}))).unwrap();
        assert_eq!(kafka.success_value(), None);
    }
}
