//! Plugin types of SPEC §4: which props each type requires, the value a create job reports
//! for it, and the probes that read a live status in verify mode.

pub mod contrail;
pub mod etcd_reader;
pub mod netconf;
pub mod nova;
pub mod snmp;
pub mod uve_stream;

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

/// What a create job reports for an object of a type when it is healthy, and what the
/// poller confirms at once (SPEC §3.3, §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Success {
    /// `ACTIVE` in the job; `UP` when polled.
    Active,
    /// The object's `wanted_status` (VRRP `master`/`backup`), upper-cased when polled.
    Wanted,
    /// `ESTABLISHED` (BGP).
    Established,
    /// Never reported (`kafka_messenger`).
    Never,
}

/// One plugin type: the table below is the only place a type name is known.
#[derive(Debug)]
pub struct Type {
    pub name: &'static str,
    pub required: &'static [&'static str],
    pub success: Success,
    /// How its objects are probed; `None` for types that are never probed.
    pub prober: Option<&'static Prober>,
    /// The props of an example object, for the probe runner's help.
    pub example: &'static str,
}

/// Every plugin type of the original system. A new type is a prober (a file under
/// `src/plugins/`) and one line here.
pub static TYPES: [Type; 11] = [
    Type { name: "virtual_machine_interface", required: &["fq_name"], success: Success::Active, prober: Some(&contrail::VMI), example: "fq_name=default-domain:admin:UUID" },
    Type { name: "virtual_network", required: &["fq_name"], success: Success::Active, prober: Some(&contrail::VN), example: "fq_name=default-domain:admin:net" },
    Type { name: "physical_port", required: &["device_ip", "community_name", "name"], success: Success::Active, prober: Some(&snmp::PORTS), example: "device_ip=10.0.0.1 community_name=public name=xe-0/0/4" },
    Type { name: "logical_port", required: &["device_ip", "community_name", "name"], success: Success::Active, prober: Some(&snmp::PORTS), example: "device_ip=10.0.0.1 community_name=public name=xe-0/0/4.1025" },
    Type { name: "switch", required: &["ip", "community_name"], success: Success::Active, prober: Some(&snmp::UPTIME), example: "ip=10.0.0.1 community_name=public" },
    Type { name: "router", required: &["ip", "community_name"], success: Success::Active, prober: Some(&snmp::UPTIME), example: "ip=10.0.0.1 community_name=public" },
    Type { name: "etcd_reader", required: &["etcd_type", "etcd_id"], success: Success::Active, prober: Some(&etcd_reader::READER), example: "etcd_type=ha_interface etcd_id=UUID" },
    Type { name: "vrrp_session", required: &["host", "login", "password", "interface", "vrid"], success: Success::Wanted, prober: Some(&netconf::VRRP), example: "host=10.0.0.1 login=esi password=… interface=ae0.1025 vrid=20 wanted_status=master" },
    Type { name: "bgp_session", required: &["host", "login", "password", "instance", "peer_address"], success: Success::Established, prober: Some(&netconf::BGP), example: "host=10.0.0.1 login=esi password=… instance=vrf_x peer_address=192.168.8.1" },
    Type { name: "nova_vm", required: &["server_id"], success: Success::Active, prober: Some(&nova::NOVA), example: "server_id=UUID" },
    Type { name: "kafka_messenger", required: &["kafka_topic"], success: Success::Never, prober: None, example: "kafka_topic=t" },
];

impl Type {
    pub fn named(name: &str) -> Option<&'static Type> {
        TYPES.iter().find(|t| t.name == name)
    }

    /// Whether the poller polls objects of this type (etcd_reader is probed in verify mode
    /// only; its status lives in other records).
    pub fn polled(&self) -> bool {
        self.prober.is_some_and(|p| p.unit.is_some())
    }
}

/// The probers, in the order of the `type` label of the probe metrics.
pub static PROBERS: [&Prober; 8] =
    [&contrail::VMI, &contrail::VN, &snmp::PORTS, &snmp::UPTIME, &etcd_reader::READER, &netconf::VRRP, &netconf::BGP, &nova::NOVA];

/// The poll unit of an object and what its member asks for, or why it cannot be polled.
pub type UnitOf = fn(&Object, &Clients) -> Result<(UnitKey, String), String>;

/// How one protocol probes objects (one per file under `src/plugins/`), as
/// blackbox_exporter's probers: grouping into poll units, polling a unit, probing one object.
pub struct Prober {
    /// The `type` label of `probe_results_total` and `probe_duration_seconds`.
    pub label: &'static str,
    /// The poll unit an object belongs to and what its member asks for (port name, fq_name,
    /// group, …), or why it cannot be polled; `None` when the poller never polls this type.
    pub unit: Option<UnitOf>,
    /// Polls one unit: one probe per ask, in order.
    pub poll: fn(&Clients, &UnitKey, &[String]) -> Vec<Probe>,
    /// Probes one object (verify mode and the probe runner), with the raw values behind it.
    pub probe: fn(&Clients, &Object) -> (Probe, String),
    /// How many units one request may answer (VMIs: 100 per bulk POST); 1 otherwise.
    pub bulk: usize,
    /// The prop naming the device polled (SNMP `device_ip`/`ip`, NETCONF `host`): its
    /// address is the resource's shard affinity (`crate::shards`); `None` for APIs.
    pub device: Option<&'static str>,
    /// The probe runner's options that apply (for its help).
    pub options: &'static str,
}

impl std::fmt::Debug for Prober {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label)
    }
}

impl Prober {
    /// Its place in [`PROBERS`] (the metrics index their series by it).
    pub fn index(&'static self) -> usize {
        PROBERS.iter().position(|p| std::ptr::eq(*p, self)).unwrap_or(0)
    }
}

/// Where a poll unit asks: objects with equal keys are polled together (one device, one
/// NETCONF session and routing instance, one VMI, all servers). `auth` is a secret
/// (community, login and password): never printed.
#[derive(Clone)]
pub struct UnitKey {
    pub prober: &'static Prober,
    /// `ip:port`, `host:port`, or "" for an API of the configuration.
    pub addr: String,
    pub auth: String,
    /// What within the address: a routing instance, an fq_name.
    pub scope: String,
}

impl UnitKey {
    pub fn new(prober: &'static Prober, addr: String, auth: String, scope: String) -> UnitKey {
        UnitKey { prober, addr, auth, scope }
    }
}

impl PartialEq for UnitKey {
    fn eq(&self, o: &UnitKey) -> bool {
        std::ptr::eq(self.prober, o.prober) && self.addr == o.addr && self.auth == o.auth && self.scope == o.scope
    }
}

impl Eq for UnitKey {}

impl std::hash::Hash for UnitKey {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        (self.prober.label, &self.addr, &self.auth, &self.scope).hash(h)
    }
}

impl std::fmt::Debug for UnitKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {}", self.prober.label, self.addr, self.scope)
    }
}

/// The clients the probers use, built once from the configuration and shared by the pool.
pub struct Clients {
    pub contrail: contrail::Contrail,
    pub snmp: snmp::Devices,
    pub netconf: netconf::Netconf,
    pub nova: nova::Nova,
    /// For etcd_reader; the probe runner connects only when it probes one.
    pub store: Option<crate::store::Store>,
    pub plurals: crate::keys::Plurals,
}

impl Clients {
    pub fn new(config: &crate::config::Config, store: Option<crate::store::Store>) -> Result<Clients, String> {
        Ok(Clients {
            contrail: contrail::Contrail::new(&config.contrail.analytics_url, config.contrail_timeout()),
            snmp: snmp::Devices::with_profiles(
                snmp::SnmpSettings::from_config(config),
                snmp::credentials::Profiles::new(&config.snmp.credentials),
            ),
            netconf: netconf::Netconf::new(&config.netconf, config.monitoring.interval_s)?,
            nova: nova::Nova::new(&config.nova)?,
            store,
            plurals: crate::keys::Plurals::new(&config.plurals),
        })
    }

    /// Housekeeping between polls: closes the NETCONF sessions nobody used for three
    /// intervals (a device whose objects are gone).
    pub fn tidy(&self) {
        self.netconf.close_idle();
    }
}

/// The HTTP client of the API probers (Contrail analytics, Keystone and Nova): one per
/// API, shared by the pool, so connections are kept and reused. Every stage of a request
/// (connect, send, answer, body) must finish within `timeout` — per stage, not global: with
/// a global timeout ureq resolves every host name on a thread of its own. 4xx/5xx are
/// answers to map (a 401 renews a token), not transport errors; these are in-cluster
/// services, so no proxy comes from the environment. `https://` is verified against `roots`
/// (a `ca_file`'s certificates), or the Mozilla roots.
pub fn http_agent(timeout: std::time::Duration, roots: Option<ureq::tls::RootCerts>) -> ureq::Agent {
    let tls = ureq::tls::TlsConfig::builder().root_certs(roots.unwrap_or(ureq::tls::RootCerts::WebPki)).build();
    ureq::Agent::config_builder()
        .tls_config(tls)
        .timeout_connect(Some(timeout))
        .timeout_send_request(Some(timeout))
        .timeout_send_body(Some(timeout))
        .timeout_recv_response(Some(timeout))
        .timeout_recv_body(Some(timeout))
        .http_status_as_error(false)
        .proxy(None)
        .max_idle_connections(64)
        .max_idle_connections_per_host(64)
        .user_agent(concat!("esi-monitor/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// The certificates of a PEM file, as roots of trust for `https://`.
pub fn tls_roots(path: &str) -> Result<ureq::tls::RootCerts, String> {
    let pem = std::fs::read(path).map_err(|e| e.to_string())?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        if let ureq::tls::PemItem::Certificate(c) = item.map_err(|e| format!("not a PEM file: {e}"))? {
            certs.push(c);
        }
    }
    if certs.is_empty() {
        return Err("no certificate in it".into());
    }
    Ok(ureq::tls::RootCerts::new_with_certs(&certs))
}

/// One probe per ask, all the same (a unit answered by one reading, or a failed request).
pub fn each(asks: &[String], probe: Probe) -> Vec<Probe> {
    vec![probe; asks.len()]
}

/// A rendered object checked against its type: the unit a job verifies and the poller polls.
#[derive(Debug, Clone)]
pub struct Object {
    pub name: String,
    pub kind: &'static Type,
    pub props: Map<String, Value>,
}

impl Object {
    /// Checks the type and the required props of a rendered object.
    pub fn check(name: &str, props: &Map<String, Value>) -> Result<Object, String> {
        let type_name = props.get("type").and_then(Value::as_str).unwrap_or("");
        let kind = Type::named(type_name)
            .ok_or_else(|| format!("object {name:?} has unknown plugin type {type_name:?}"))?;
        for prop in kind.required {
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
        match self.kind.success {
            Success::Never => None,
            Success::Wanted => Some(self.text("wanted_status")),
            Success::Established => Some("ESTABLISHED".into()),
            Success::Active => Some("ACTIVE".into()),
        }
    }

    /// The status the poller confirms after one reading (SPEC §5): `UP`, or the named
    /// state the object wants, upper-cased.
    pub fn wanted(&self) -> String {
        match self.kind.success {
            Success::Wanted => self.text("wanted_status").trim().to_uppercase(),
            Success::Established => "ESTABLISHED".into(),
            Success::Active | Success::Never => "UP".into(),
        }
    }

    /// True when a probe result is what this object waits for.
    pub fn is_success(&self, probe: &Probe) -> bool {
        match probe {
            Probe::Up => self.wanted() == "UP",
            Probe::State(s) => s.eq_ignore_ascii_case(&self.wanted()),
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
