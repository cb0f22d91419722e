//! The YAML configuration file: every key, its default, and the checks made once at start so
//! that the rest of the program can trust what it reads.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub etcd: Etcd,
    pub jobs: Jobs,
    pub worker: Worker,
    pub contrail: Contrail,
    pub snmp: Snmp,
    pub monitoring: Monitoring,
    pub log: Log,
    pub metrics: Metrics,
    /// Irregular plurals (`policy: policies`); the built-in table covers the monitored types.
    pub plurals: BTreeMap<String, String>,
    /// Template name per resource type when it is not `<resource_type>_monitoring`.
    pub templates: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Etcd {
    pub endpoints: Vec<String>,
    pub lease_ttl_s: u64,
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Jobs {
    pub handler: String,
    pub cleanup: bool,
    pub verify: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Worker {
    pub threads: usize,
    pub queue: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Contrail {
    pub analytics_url: String,
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Snmp {
    pub port: u16,
    pub timeout_ms: u64,
    pub retries: u32,
}

#[derive(Debug, Clone, Deserialize)]
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

#[derive(Debug, Clone, Deserialize)]
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

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Log {
    pub level: String,
}

impl Default for Etcd {
    fn default() -> Self {
        Etcd { endpoints: vec!["http://127.0.0.1:2379".into()], lease_ttl_s: 60, timeout_ms: 5000 }
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
        Contrail { analytics_url: "http://127.0.0.1:8081".into(), timeout_ms: 2000 }
    }
}

impl Default for Snmp {
    fn default() -> Self {
        Snmp { port: 161, timeout_ms: 1000, retries: 1 }
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
        Log { level: "info".into() }
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
        if self.snmp.timeout_ms == 0 {
            return fail("snmp.timeout_ms", "must be positive");
        }
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
        Ok(())
    }

    pub fn etcd_timeout(&self) -> Duration {
        Duration::from_millis(self.etcd.timeout_ms)
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

    #[test]
    fn invalid_value_is_named() {
        let e = Config::parse("monitoring: {down_after: 0}").unwrap_err();
        assert!(e.contains("monitoring.down_after"), "{e}");
    }
}
