//! The YAML configuration file: every key, its default, and the checks made once at start so
//! that the rest of the program can trust what it reads.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub etcd: Etcd,
    pub jobs: Jobs,
    pub worker: Worker,
    pub contrail: Contrail,
    pub snmp: Snmp,
    pub nova: Nova,
    pub netconf: Netconf,
    pub monitoring: Monitoring,
    pub log: Log,
    pub metrics: Metrics,
    /// Irregular plurals (`policy: policies`); the built-in table covers the monitored types.
    pub plurals: BTreeMap<String, String>,
    /// Template name per resource type when it is not `<resource_type>_monitoring`.
    pub templates: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Etcd {
    pub endpoints: Vec<String>,
    pub lease_ttl_s: u64,
    /// Bound of every request.
    pub timeout_ms: u64,
    /// Bound of opening a connection to one endpoint (TCP and TLS handshake).
    pub connect_timeout_ms: u64,
    /// The largest request etcd accepts (its `--max-request-bytes`): a job whose commit
    /// would be larger fails with a message saying so, instead of being retried.
    pub max_request_bytes: usize,
    /// PEM CA certificate that signed etcd's server certificate; empty: plain HTTP.
    pub ca_file: String,
    /// PEM client certificate and its key, for etcd's `--client-cert-auth`; empty: none.
    pub cert_file: String,
    pub key_file: String,
    /// etcd user (`--auth`); empty: no authentication.
    pub username: String,
    pub password: Secret,
}

/// A secret read from the configuration: its `Debug` never shows it (an empty one shows as
/// empty, so that a default configuration still prints as the default).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl<'de> Deserialize<'de> for Secret {
    /// Only a string; the error for any other value does not repeat it (serde's would).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(text) => Ok(Secret(text)),
            _ => Err(serde::de::Error::custom("must be a string: put it in quotes (the value is not shown)")),
        }
    }
}

impl Secret {
    pub fn new(text: impl Into<String>) -> Secret {
        Secret(text.into())
    }
    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Written as its `Debug` form: a configuration printed or serialized never shows it.
impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(if self.0.is_empty() { "" } else { "<redacted>" })
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() { f.write_str("\"\"") } else { f.write_str("\"<redacted>\"") }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Jobs {
    pub handler: String,
    pub cleanup: bool,
    pub verify: bool,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Worker {
    pub threads: usize,
    pub queue: usize,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Contrail {
    pub analytics_url: String,
    pub timeout_ms: u64,
    /// Follow analytics' UVE stream, so that a VMI's change is polled at once (SPEC §5.1).
    pub uve_stream: bool,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Snmp {
    pub port: u16,
    pub timeout_ms: u64,
    pub retries: u32,
    /// Address of the trap and inform receiver (`0.0.0.0:162` needs CAP_NET_BIND_SERVICE); empty: off.
    pub trap_listen: String,
    /// What an object's `community_name` stands for (SPEC §4.3): a v2c community or an
    /// SNMPv3 user; a name not here is itself the v2c community.
    pub credentials: BTreeMap<String, SnmpCredential>,
}

/// One credential profile of `snmp.credentials`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SnmpCredential {
    /// `2c` or `3` (a string or a number).
    pub version: SnmpVersion,
    #[serde(default)]
    pub community: Secret,
    #[serde(default)]
    pub user: String,
    /// md5, sha, sha224, sha256, sha384, sha512.
    #[serde(default)]
    pub auth_protocol: String,
    #[serde(default)]
    pub auth_password: Secret,
    /// none (the default), des, aes128, aes192, aes256, aes192c, aes256c.
    #[serde(default)]
    pub priv_protocol: String,
    #[serde(default)]
    pub priv_password: Secret,
}

/// An SNMP version as the configuration writes it: `2c`, `"3"` or `3`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SnmpVersion(pub String);

impl<'de> Deserialize<'de> for SnmpVersion {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<SnmpVersion, D::Error> {
        let text = match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(s) => s.trim().to_ascii_lowercase(),
            serde_json::Value::Number(n) => n.to_string(),
            _ => String::new(),
        };
        match text.as_str() {
            "2c" | "2" | "3" => Ok(SnmpVersion(if text == "2" { "2c".into() } else { text })),
            _ => Err(serde::de::Error::custom("must be \"2c\" or 3")),
        }
    }
}

impl Snmp {
    /// The checks of every credential profile (the error names the profile and the key,
    /// never a secret).
    fn validate(&self) -> Result<(), String> {
        if self.timeout_ms == 0 {
            return Err("snmp.timeout_ms: must be positive".into());
        }
        if !self.trap_listen.is_empty() && self.trap_listen.parse::<std::net::SocketAddr>().is_err() {
            return Err("snmp.trap_listen: must be an address:port such as 0.0.0.0:162, or empty".into());
        }
        for (name, c) in &self.credentials {
            let fail = |key: &str, why: &str| Err(format!("snmp.credentials.{name}.{key}: {why}"));
            let v3_keys = [("user", c.user.is_empty()), ("auth_protocol", c.auth_protocol.is_empty()),
                ("auth_password", c.auth_password.is_empty()), ("priv_protocol", c.priv_protocol.is_empty()),
                ("priv_password", c.priv_password.is_empty())];
            if c.version.0 == "2c" {
                if c.community.is_empty() {
                    return fail("community", "must be set for version 2c");
                }
                if let Some((key, _)) = v3_keys.iter().find(|(_, empty)| !empty) {
                    return fail(key, "is for version 3 profiles only");
                }
                continue;
            }
            if !c.community.is_empty() {
                return fail("community", "is for version 2c profiles only");
            }
            if c.user.is_empty() {
                return fail("user", "must be set for version 3");
            }
            if crate::plugins::snmp::usm::Auth::named(&c.auth_protocol).is_none() {
                return fail("auth_protocol", "must be one of md5, sha, sha224, sha256, sha384, sha512");
            }
            if c.auth_password.expose().len() < 8 {
                return fail("auth_password", "must be at least 8 characters (RFC 3414)");
            }
            match crate::plugins::snmp::usm::Privacy::named(&c.priv_protocol) {
                None => return fail("priv_protocol", "must be one of none, des, aes128, aes192, aes256, aes192c, aes256c"),
                Some(crate::plugins::snmp::usm::Privacy::None) if !c.priv_password.is_empty() => {
                    return fail("priv_password", "must be absent when priv_protocol is none");
                }
                Some(crate::plugins::snmp::usm::Privacy::None) => {}
                Some(_) if c.priv_password.expose().len() < 8 => {
                    return fail("priv_password", "must be at least 8 characters (RFC 3414)");
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
}

/// OpenStack Keystone v3 + Nova, for `nova_vm` objects; the keys are those of OpenStack's
/// `clouds.yaml` (`auth:` and the cloud's own keys). An empty `auth_url`: not configured.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Nova {
    /// Keystone, with or without its `/v3` suffix (`http://10.0.0.1:5000/v3`).
    pub auth_url: String,
    pub username: String,
    pub password: Secret,
    pub project_name: String,
    pub user_domain_name: String,
    pub project_domain_name: String,
    /// Region of the compute endpoint in the token's catalog; empty: any.
    pub region_name: String,
    /// `public`, `internal` or `admin` (`publicURL`… also accepted, as clouds.yaml does).
    pub interface: String,
    /// PEM CA certificates of `https://` Keystone and Nova; empty: the Mozilla roots (public CAs).
    pub ca_file: String,
    /// Bound of every stage (connect, send, answer, body) of each Keystone and Nova request.
    pub timeout_ms: u64,
    /// List the servers of every project (`all_tenants=1`, needs the admin role).
    pub all_tenants: bool,
}

/// The NETCONF (SSH) sessions of `vrrp_session` and `bgp_session` objects.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Netconf {
    /// OpenSSH `known_hosts` file pinning the devices' host keys; empty: the first key seen
    /// per host is kept (for the life of the process).
    pub known_hosts: String,
    /// Bound of connecting, authenticating, and of each RPC.
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Monitoring {
    /// Poll the registered objects (false: an instance that only executes jobs).
    pub enabled: bool,
    pub interval_s: u64,
    pub down_after: u32,
    pub rewalk_s: u64,
    /// Object types not reported in `/monitoring`, per resource type.
    pub unreported: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Metrics {
    /// Address of the local HTTP listener (`/healthz`, `/metrics`, `/status/<plural>/<id>`); empty: off.
    pub listen: String,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics { listen: "127.0.0.1:9464".into() }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Log {
    pub level: String,
    /// `text` (for journald) or `json` (one object per line, for log shippers).
    pub format: String,
}

impl Default for Etcd {
    fn default() -> Self {
        Etcd {
            endpoints: vec!["http://127.0.0.1:2379".into()],
            lease_ttl_s: 60,
            timeout_ms: 5000,
            connect_timeout_ms: 5000,
            max_request_bytes: 1536 * 1024,
            ca_file: String::new(),
            cert_file: String::new(),
            key_file: String::new(),
            username: String::new(),
            password: Secret::default(),
        }
    }
}

impl Etcd {
    /// The connection checks: timeouts, TLS files and credentials that go together, and
    /// files that can be read. TLS (any `https://` endpoint, `ca_file` or `cert_file`) needs
    /// `ca_file`: the system's root certificates are not used, as etcd clusters are signed by
    /// their own CA.
    fn validate(&self) -> Result<(), String> {
        let fail = |key: &str, why: &str| Err(format!("{key}: {why}"));
        if self.connect_timeout_ms == 0 {
            return fail("etcd.connect_timeout_ms", "must be positive");
        }
        if self.max_request_bytes < 64 * 1024 {
            return fail("etcd.max_request_bytes", "must be at least 65536 (etcd's default is 1572864)");
        }
        match (self.cert_file.is_empty(), self.key_file.is_empty()) {
            (false, true) => return fail("etcd.key_file", "must be set when etcd.cert_file is"),
            (true, false) => return fail("etcd.cert_file", "must be set when etcd.key_file is"),
            _ => {}
        }
        match (self.username.is_empty(), self.password.is_empty()) {
            (false, true) => return fail("etcd.password", "must be set when etcd.username is"),
            (true, false) => return fail("etcd.username", "must be set when etcd.password is"),
            _ => {}
        }
        let https = self.endpoints.iter().find(|e| e.starts_with("https://"));
        if self.tls() {
            if let Some(plain) = self.endpoints.iter().find(|e| e.starts_with("http://")) {
                return fail("etcd.endpoints", &format!("{plain} is plain HTTP while TLS is configured: use https://"));
            }
            if self.ca_file.is_empty() {
                let why = match https {
                    Some(e) => format!("{e} is https://"),
                    None => "etcd.cert_file is set".to_string(),
                };
                let what = "name the CA certificate that signed etcd's server certificate (system roots are not used)";
                return fail("etcd.ca_file", &format!("{why}: {what}"));
            }
        }
        let files = [("ca_file", &self.ca_file), ("cert_file", &self.cert_file), ("key_file", &self.key_file)];
        for (key, path) in files.map(|(k, p)| (format!("etcd.{k}"), p)) {
            if path.is_empty() {
                continue;
            }
            let text = std::fs::read(path).map_err(|e| format!("{key} {path}: {e}"))?;
            if !text.windows(11).any(|w| w == b"-----BEGIN ") {
                return Err(format!("{key} {path}: not a PEM file (no -----BEGIN line)"));
            }
        }
        Ok(())
    }

    /// Whether the endpoints are reached over TLS.
    pub fn tls(&self) -> bool {
        let https = self.endpoints.iter().any(|e| e.starts_with("https://"));
        https || !self.ca_file.is_empty() || !self.cert_file.is_empty()
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }
}

impl Default for Jobs {
    fn default() -> Self {
        Jobs { handler: "monitoring_worker".into(), cleanup: true, verify: false }
    }
}

impl Default for Worker {
    fn default() -> Self {
        Worker { threads: 8, queue: 1024 }
    }
}

impl Default for Contrail {
    fn default() -> Self {
        Contrail { analytics_url: "http://127.0.0.1:8081".into(), timeout_ms: 2000, uve_stream: true }
    }
}

impl Default for Snmp {
    fn default() -> Self {
        Snmp { port: 161, timeout_ms: 1000, retries: 1, trap_listen: String::new(), credentials: BTreeMap::new() }
    }
}

impl Default for Nova {
    fn default() -> Self {
        Nova {
            auth_url: String::new(),
            username: String::new(),
            password: Secret::default(),
            project_name: String::new(),
            user_domain_name: "Default".into(),
            project_domain_name: "Default".into(),
            region_name: String::new(),
            interface: "public".into(),
            ca_file: String::new(),
            timeout_ms: 5000,
            all_tenants: true,
        }
    }
}

impl Nova {
    /// Whether Nova is configured at all (`auth_url` set).
    pub fn configured(&self) -> bool {
        !self.auth_url.is_empty()
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// `interface` as the catalog spells it: `publicURL` → `public` (clouds.yaml accepts both).
    pub fn catalog_interface(&self) -> &str {
        self.interface.strip_suffix("URL").unwrap_or(&self.interface)
    }

    fn validate(&self) -> Result<(), String> {
        let fail = |key: &str, why: &str| Err(format!("{key}: {why}"));
        if self.timeout_ms == 0 {
            return fail("nova.timeout_ms", "must be positive");
        }
        if !matches!(self.catalog_interface(), "public" | "internal" | "admin") {
            return fail("nova.interface", "must be public, internal or admin");
        }
        if !self.configured() {
            return Ok(());
        }
        let rest = self.auth_url.strip_prefix("http://").or_else(|| self.auth_url.strip_prefix("https://"));
        if rest.map_or(true, |r| r.is_empty() || r.starts_with('/')) {
            return fail("nova.auth_url", "must be an http:// or https:// URL, such as http://10.0.0.1:5000/v3");
        }
        let needed = [
            ("nova.username", self.username.is_empty()),
            ("nova.password", self.password.is_empty()),
            ("nova.project_name", self.project_name.is_empty()),
            ("nova.user_domain_name", self.user_domain_name.is_empty()),
            ("nova.project_domain_name", self.project_domain_name.is_empty()),
        ];
        if let Some((key, _)) = needed.iter().find(|(_, missing)| *missing) {
            return fail(key, "must be set when nova.auth_url is");
        }
        if !self.ca_file.is_empty() {
            let path = &self.ca_file;
            crate::plugins::tls_roots(path).map_err(|e| format!("nova.ca_file {path}: {e}"))?;
        }
        Ok(())
    }
}

impl Default for Netconf {
    fn default() -> Self {
        Netconf { known_hosts: String::new(), timeout_ms: 10000 }
    }
}

impl Netconf {
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    fn validate(&self) -> Result<(), String> {
        if self.timeout_ms == 0 {
            return Err("netconf.timeout_ms: must be positive".into());
        }
        if !self.known_hosts.is_empty() {
            let path = &self.known_hosts;
            std::fs::File::open(path).map_err(|e| format!("netconf.known_hosts {path}: {e}"))?;
        }
        Ok(())
    }
}

impl Default for Monitoring {
    fn default() -> Self {
        let unreported = ["vpn_interface", "interdc_interface"]
            .iter()
            .map(|r| (r.to_string(), vec!["logical_port".to_string()]))
            .collect();
        Monitoring { enabled: true, interval_s: 60, down_after: 2, rewalk_s: 600, unreported }
    }
}

impl Default for Log {
    fn default() -> Self {
        Log { level: "info".into(), format: "text".into() }
    }
}

impl Config {
    /// Reads and validates a configuration file; the error names the file and the key.
    pub fn load(path: &std::path::Path) -> Result<Config, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read configuration {}: {e}", path.display()))?;
        Config::parse(&text).map_err(|e| format!("configuration {}: {e}", path.display()))
    }

    /// Parses and validates configuration text (an empty text gives the defaults).
    pub fn parse(text: &str) -> Result<Config, String> {
        let config: Config = if text.trim().is_empty() {
            Config::default()
        } else {
            // YAML → a JSON tree → Config, so that an error can name the key's full path.
            let tree: serde_json::Value = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
            serde_path_to_error::deserialize(tree).map_err(|e| {
                let path = e.path().to_string();
                let inner = e.into_inner();
                if path == "." { inner.to_string() } else { format!("{path}: {inner}") }
            })?
        };
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        let fail = |key: &str, why: &str| Err(format!("{key}: {why}"));
        if self.etcd.endpoints.is_empty() {
            return fail("etcd.endpoints", "at least one endpoint is needed");
        }
        for e in &self.etcd.endpoints {
            if !(e.starts_with("http://") || e.starts_with("https://")) && e.contains("://") {
                return fail("etcd.endpoints", &format!("{e:?} is not an http(s) URL or host:port"));
            }
        }
        if self.etcd.lease_ttl_s < 2 {
            return fail("etcd.lease_ttl_s", "must be at least 2 seconds");
        }
        if self.etcd.timeout_ms == 0 {
            return fail("etcd.timeout_ms", "must be positive");
        }
        self.etcd.validate()?;
        if self.jobs.handler.is_empty() {
            return fail("jobs.handler", "must not be empty");
        }
        if self.worker.threads == 0 || self.worker.threads > 1024 {
            return fail("worker.threads", "must be between 1 and 1024");
        }
        if self.worker.queue == 0 {
            return fail("worker.queue", "must be positive");
        }
        if !self.contrail.analytics_url.starts_with("http://") {
            return fail("contrail.analytics_url", "must be an http:// URL");
        }
        if self.contrail.timeout_ms == 0 {
            return fail("contrail.timeout_ms", "must be positive");
        }
        self.snmp.validate()?;
        self.nova.validate()?;
        self.netconf.validate()?;
        if self.monitoring.interval_s == 0 {
            return fail("monitoring.interval_s", "must be positive");
        }
        if self.monitoring.down_after == 0 {
            return fail("monitoring.down_after", "must be at least 1");
        }
        if !self.metrics.listen.is_empty() && self.metrics.listen.parse::<std::net::SocketAddr>().is_err() {
            return fail("metrics.listen", "must be an address:port such as 127.0.0.1:9464, or empty");
        }
        if self.log.level.parse::<log::LevelFilter>().is_err() {
            return fail("log.level", "must be one of off, error, warn, info, debug, trace");
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return fail("log.format", "must be text or json");
        }
        Ok(())
    }

    /// The configuration a reload of `new` gives: what can change while running comes from
    /// `new` (log, jobs.cleanup, jobs.verify, templates, snmp.credentials,
    /// monitoring.interval_s, down_after and unreported), the rest stays as it runs; the second value names the sections of
    /// `new` that differ and wait for a restart.
    pub fn reloaded(&self, new: Config) -> (Config, Vec<&'static str>) {
        let mut effective = new;
        let mut restart = Vec::new();
        fn keep<T: PartialEq + Clone>(new: &mut T, running: &T, name: &'static str, restart: &mut Vec<&'static str>) {
            if new != running {
                restart.push(name);
                *new = running.clone();
            }
        }
        let e = &mut effective;
        keep(&mut e.etcd, &self.etcd, "etcd", &mut restart);
        keep(&mut e.jobs.handler, &self.jobs.handler, "jobs.handler", &mut restart);
        keep(&mut e.worker, &self.worker, "worker", &mut restart);
        keep(&mut e.contrail, &self.contrail, "contrail", &mut restart);
        keep(&mut e.snmp.port, &self.snmp.port, "snmp.port", &mut restart);
        keep(&mut e.snmp.timeout_ms, &self.snmp.timeout_ms, "snmp.timeout_ms", &mut restart);
        keep(&mut e.snmp.retries, &self.snmp.retries, "snmp.retries", &mut restart);
        keep(&mut e.snmp.trap_listen, &self.snmp.trap_listen, "snmp.trap_listen", &mut restart);
        keep(&mut e.nova, &self.nova, "nova", &mut restart);
        keep(&mut e.netconf, &self.netconf, "netconf", &mut restart);
        keep(&mut e.monitoring.enabled, &self.monitoring.enabled, "monitoring.enabled", &mut restart);
        keep(&mut e.monitoring.rewalk_s, &self.monitoring.rewalk_s, "monitoring.rewalk_s", &mut restart);
        keep(&mut e.metrics, &self.metrics, "metrics", &mut restart);
        keep(&mut e.plurals, &self.plurals, "plurals", &mut restart);
        (effective, restart)
    }

    /// The log level (validated at load).
    pub fn log_level(&self) -> log::LevelFilter {
        self.log.level.parse().unwrap_or(log::LevelFilter::Info)
    }

    /// (resource type, object type) pairs left out of `/monitoring`.
    pub fn unreported(&self) -> Vec<(String, String)> {
        let m = &self.monitoring.unreported;
        m.iter().flat_map(|(r, types)| types.iter().map(move |t| (r.clone(), t.clone()))).collect()
    }

    pub fn contrail_timeout(&self) -> Duration {
        Duration::from_millis(self.contrail.timeout_ms)
    }

    /// The template that renders a resource type's monitored objects.
    pub fn template_name(&self, resource_type: &str) -> String {
        match self.templates.get(resource_type) {
            Some(name) => name.clone(),
            None => format!("{resource_type}_monitoring"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_text_gives_defaults() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.worker.threads, 8);
        assert_eq!(c.monitoring.interval_s, 60);
        assert!(c.jobs.cleanup);
        assert!(!c.jobs.verify);
    }

    #[test]
    fn documented_keys_are_accepted() {
        let text = r#"
etcd: {endpoints: ["http://127.0.0.1:2379"], lease_ttl_s: 60}
jobs: {handler: monitoring_worker, cleanup: true, verify: false}
worker: {threads: 8, queue: 1024}
contrail: {analytics_url: "http://127.0.0.1:8081", timeout_ms: 2000}
snmp: {port: 161, timeout_ms: 1000, retries: 1}
monitoring: {interval_s: 60, down_after: 2, rewalk_s: 600}
log: {level: info}
"#;
        let c = Config::parse(text).unwrap();
        assert_eq!(c.snmp.port, 161);
        assert_eq!(c.contrail.analytics_url, "http://127.0.0.1:8081");
    }

    #[test]
    fn unknown_key_is_named() {
        let e = Config::parse("worker: {threds: 3}").unwrap_err();
        assert!(e.contains("worker.threds") && e.contains("unknown field"), "{e}");
    }

    #[test]
    fn wrong_type_is_named() {
        let e = Config::parse("worker: {threads: many}").unwrap_err();
        assert!(e.starts_with("worker.threads: invalid type"), "{e}");
        let e = Config::parse("snmp: {port: 70000}").unwrap_err();
        assert!(e.starts_with("snmp.port: invalid value"), "{e}");
    }

    /// The etcd section with these keys (YAML flow mapping entries) and the given files.
    fn etcd(keys: &str) -> Result<Config, String> {
        Config::parse(&format!("etcd: {{{keys}}}"))
    }

    fn pem_file() -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n").unwrap();
        file
    }

    #[test]
    fn etcd_tls_and_user_keys_are_accepted() {
        let (ca, cert, key) = (pem_file(), pem_file(), pem_file());
        let c = etcd(&format!(
            "endpoints: [\"https://10.0.0.1:2379\", \"https://10.0.0.2:2379\"], ca_file: {:?}, cert_file: {:?}, \
             key_file: {:?}, username: esi, password: s3cret-pw, connect_timeout_ms: 700, timeout_ms: 900",
            ca.path(), cert.path(), key.path()
        ))
        .unwrap();
        assert!(c.etcd.tls());
        assert_eq!(c.etcd.password.expose(), "s3cret-pw");
        assert_eq!(c.etcd.connect_timeout(), Duration::from_millis(700));
        assert_eq!(c.etcd.timeout(), Duration::from_millis(900));
    }

    #[test]
    fn etcd_password_never_shows_in_debug_output() {
        let c = etcd("username: esi, password: s3cret-pw").unwrap();
        let text = format!("{c:?}");
        assert!(!text.contains("s3cret-pw") && text.contains("password: \"<redacted>\""), "{text}");
        assert!(format!("{:?}", Config::default()).contains("password: \"\""));
        let e = etcd("username: esi, password: 8675309").unwrap_err();
        assert_eq!(e, "etcd.password: must be a string: put it in quotes (the value is not shown)");
    }

    #[test]
    fn etcd_keys_that_go_together_are_named() {
        let file = pem_file();
        let path = file.path().display();
        let named = |keys: &str, key: &str| {
            let e = etcd(keys).unwrap_err();
            assert!(e.starts_with(&format!("{key}: ")), "{keys} → {e}");
            e
        };
        named(&format!("endpoints: [\"https://h:2379\"], ca_file: {path}, cert_file: {path}"), "etcd.key_file");
        named(&format!("endpoints: [\"https://h:2379\"], ca_file: {path}, key_file: {path}"), "etcd.cert_file");
        named("username: esi", "etcd.password");
        named("password: s3cret-pw", "etcd.username");
        named("connect_timeout_ms: 0", "etcd.connect_timeout_ms");
        let e = named("endpoints: [\"https://h:2379\"]", "etcd.ca_file");
        assert!(e.contains("https://h:2379 is https://") && e.contains("system roots are not used"), "{e}");
        let e = named(&format!("endpoints: [\"http://h:2379\"], ca_file: {path}"), "etcd.endpoints");
        assert!(e.contains("http://h:2379 is plain HTTP"), "{e}");
    }

    #[test]
    fn etcd_files_that_cannot_be_used_are_named_with_their_path() {
        let e = etcd("endpoints: [\"https://h:2379\"], ca_file: /nonexistent/ca.pem").unwrap_err();
        assert!(e.starts_with("etcd.ca_file /nonexistent/ca.pem: No such file"), "{e}");
        let not_pem = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(not_pem.path(), "hello").unwrap();
        let (ca, path) = (pem_file(), not_pem.path().display().to_string());
        let keys = format!("endpoints: [\"https://h\"], ca_file: {:?}, cert_file: {path}, key_file: {path}", ca.path());
        let e = etcd(&keys).unwrap_err();
        assert_eq!(e, format!("etcd.cert_file {path}: not a PEM file (no -----BEGIN line)"));
    }

    #[test]
    fn invalid_value_is_named() {
        let e = Config::parse("monitoring: {down_after: 0}").unwrap_err();
        assert!(e.contains("monitoring.down_after"), "{e}");
    }

    /// The nova section with these keys (YAML flow mapping entries).
    fn nova(keys: &str) -> Result<Config, String> {
        Config::parse(&format!("nova: {{{keys}}}"))
    }

    const NOVA: &str = "auth_url: \"http://10.0.0.1:5000/v3\", username: esi, password: \"n0va-pw\", project_name: admin";

    #[test]
    fn nova_defaults_and_keys() {
        let c = Config::parse("").unwrap();
        assert!(!c.nova.configured());
        assert_eq!((c.nova.user_domain_name.as_str(), c.nova.project_domain_name.as_str()), ("Default", "Default"));
        assert_eq!((c.nova.interface.as_str(), c.nova.timeout_ms, c.nova.all_tenants), ("public", 5000, true));
        let c = nova(&format!("{NOVA}, region_name: RegionTwo, interface: internalURL, timeout_ms: 700, \
                               all_tenants: false, user_domain_name: ad, project_domain_name: ops")).unwrap();
        assert!(c.nova.configured());
        assert_eq!(c.nova.password.expose(), "n0va-pw");
        assert_eq!(c.nova.catalog_interface(), "internal");
        assert_eq!(c.nova.timeout(), Duration::from_millis(700));
        assert!(!c.nova.all_tenants);
        let text = format!("{c:?}");
        assert!(!text.contains("n0va-pw") && text.contains("password: \"<redacted>\""), "{text}");
        assert!(!serde_json::to_string(&c).unwrap().contains("n0va-pw"));
    }

    #[test]
    fn nova_keys_that_go_together_are_named() {
        let named = |keys: &str, key: &str| {
            let e = nova(keys).unwrap_err();
            assert!(e.starts_with(&format!("{key}: ")), "{keys} → {e}");
            assert!(!e.contains("n0va-pw"), "{e}");
            e
        };
        named("auth_url: \"http://k:5000\", password: n0va-pw, project_name: admin", "nova.username");
        named("auth_url: \"http://k:5000\", username: esi, project_name: admin", "nova.password");
        named("auth_url: \"http://k:5000\", username: esi, password: n0va-pw", "nova.project_name");
        named(&format!("{NOVA}, user_domain_name: \"\""), "nova.user_domain_name");
        named("auth_url: \"k:5000/v3\", username: esi, password: n0va-pw, project_name: admin", "nova.auth_url");
        named("auth_url: \"http://\", username: esi, password: n0va-pw, project_name: admin", "nova.auth_url");
        named(&format!("{NOVA}, timeout_ms: 0"), "nova.timeout_ms");
        named("timeout_ms: 0", "nova.timeout_ms");
        named(&format!("{NOVA}, interface: private"), "nova.interface");
        let e = named(&format!("{NOVA}, ca_file: /nonexistent/ca.pem"), "nova.ca_file /nonexistent/ca.pem");
        assert!(e.contains("No such file"), "{e}");
        let not_pem = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(not_pem.path(), "hello\n").unwrap();
        let path = not_pem.path().display();
        let e = named(&format!("{NOVA}, ca_file: \"{path}\""), &format!("nova.ca_file {path}"));
        assert!(e.contains("no certificate"), "{e}");
        assert!(nova("auth_url: \"https://k:5000\", username: u, password: p, project_name: x").is_ok());
        let e = nova("password: 8675309").unwrap_err();
        assert_eq!(e, "nova.password: must be a string: put it in quotes (the value is not shown)");
        // Credentials without auth_url: not configured, not an error.
        assert!(!nova("username: esi, password: n0va-pw").unwrap().nova.configured());
    }

    #[test]
    fn netconf_defaults_and_checks() {
        let c = Config::parse("").unwrap();
        assert_eq!((c.netconf.known_hosts.as_str(), c.netconf.timeout_ms), ("", 10000));
        let file = tempfile::NamedTempFile::new().unwrap();
        let c = Config::parse(&format!("netconf: {{known_hosts: {:?}, timeout_ms: 300}}", file.path())).unwrap();
        assert_eq!(c.netconf.timeout(), Duration::from_millis(300));
        let e = Config::parse("netconf: {timeout_ms: 0}").unwrap_err();
        assert_eq!(e, "netconf.timeout_ms: must be positive");
        let e = Config::parse("netconf: {known_hosts: /nonexistent/known_hosts}").unwrap_err();
        assert!(e.starts_with("netconf.known_hosts /nonexistent/known_hosts: No such file"), "{e}");
    }

    #[test]
    fn nova_and_netconf_wait_for_a_restart() {
        let running = Config::parse("").unwrap();
        let new = Config::parse(&format!("nova: {{{NOVA}}}\nnetconf: {{timeout_ms: 5}}")).unwrap();
        let (effective, restart) = running.reloaded(new);
        assert_eq!(restart, vec!["nova", "netconf"]);
        assert_eq!(effective, running);
    }

    const V3: &str = "version: 3, user: esi, auth_protocol: sha256, auth_password: \"s3cret-auth\", \
                      priv_protocol: aes128, priv_password: \"s3cret-priv\"";

    fn credentials(profile: &str) -> Result<Config, String> {
        Config::parse(&format!("snmp: {{credentials: {{ESE_NODE_COMMUNITY: {{{profile}}}}}}}"))
    }

    #[test]
    fn snmp_profiles_are_accepted_and_never_shown() {
        let c = credentials(V3).unwrap();
        let p = &c.snmp.credentials["ESE_NODE_COMMUNITY"];
        assert_eq!((p.version.0.as_str(), p.user.as_str(), p.priv_protocol.as_str()), ("3", "esi", "aes128"));
        let shown = format!("{c:?} {}", serde_json::to_string(&c).unwrap());
        assert!(!shown.contains("s3cret"), "{shown}");
        for ok in ["version: 2c, community: \"c0mm\"", "version: \"2c\", community: c0mm", "version: \"3\", user: u, \
                    auth_protocol: SHA, auth_password: \"12345678\""] {
            credentials(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        let c = Config::parse("snmp: {trap_listen: \"0.0.0.0:162\"}").unwrap();
        assert_eq!(c.snmp.trap_listen, "0.0.0.0:162");
    }

    #[test]
    fn snmp_profile_mistakes_are_named_without_the_secret() {
        let cases = [
            ("version: 1, community: c", "snmp.credentials.ESE_NODE_COMMUNITY.version: must be \"2c\" or 3"),
            ("version: 2c", "snmp.credentials.ESE_NODE_COMMUNITY.community: must be set for version 2c"),
            ("version: 2c, community: c, user: u", "snmp.credentials.ESE_NODE_COMMUNITY.user: is for version 3 profiles only"),
            ("version: 3, auth_protocol: sha, auth_password: \"s3cret-auth\"", "ESE_NODE_COMMUNITY.user: must be set for version 3"),
            ("version: 3, user: u, auth_protocol: sha1024, auth_password: \"s3cret-auth\"", "ESE_NODE_COMMUNITY.auth_protocol: must be one of"),
            ("version: 3, user: u, auth_protocol: md5, auth_password: \"s3cret\"", "ESE_NODE_COMMUNITY.auth_password: must be at least 8"),
            ("version: 3, user: u, auth_protocol: md5, auth_password: \"s3cret-auth\", priv_protocol: aes512",
                "ESE_NODE_COMMUNITY.priv_protocol: must be one of"),
            ("version: 3, user: u, auth_protocol: md5, auth_password: \"s3cret-auth\", priv_protocol: des",
                "ESE_NODE_COMMUNITY.priv_password: must be at least 8"),
            ("version: 3, user: u, auth_protocol: md5, auth_password: \"s3cret-auth\", priv_password: \"s3cret-priv\"",
                "ESE_NODE_COMMUNITY.priv_password: must be absent when priv_protocol is none"),
            ("version: 3, user: u, auth_protocol: md5, auth_password: 12345678", "auth_password: must be a string"),
            ("version: 3, user: u, colour: blue", "ESE_NODE_COMMUNITY.colour: unknown field"),
        ];
        for (profile, want) in cases {
            let e = credentials(profile).unwrap_err();
            assert!(e.contains(want), "{profile}: {e}");
            assert!(!e.contains("s3cret"), "{profile}: the error shows a secret: {e}");
        }
        let e = Config::parse("snmp: {trap_listen: \"port 162\"}").unwrap_err();
        assert!(e.starts_with("snmp.trap_listen: must be an address:port"), "{e}");
    }

    #[test]
    fn snmp_profiles_reload_and_the_trap_listener_waits_for_a_restart() {
        let running = Config::parse("").unwrap();
        let new = Config::parse(&format!(
            "snmp: {{trap_listen: \"127.0.0.1:1162\", credentials: {{P: {{{V3}}}}}}}"
        ))
        .unwrap();
        let (effective, restart) = running.reloaded(new.clone());
        assert_eq!(restart, vec!["snmp.trap_listen"]);
        assert_eq!(effective.snmp.credentials, new.snmp.credentials, "profiles are live");
        assert_eq!(effective.snmp.trap_listen, "");
    }
}
