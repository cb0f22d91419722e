//! The etcd key layout of SPEC §1 and the plural of each resource type. Every etcd path the
//! program uses is built here and nowhere else.

use std::collections::BTreeMap;

pub const JOBS: &str = "/jobs/";
pub const JOBS_ALL: &str = "/jobs/all/";
pub const JOBS_READY: &str = "/jobs/ready/";
pub const JOBS_WORKING: &str = "/jobs/working/";
pub const JOBS_FINISHED: &str = "/jobs/finished/";
pub const REGISTRY: &str = "/esi-worker/monitoring/v2.0/";
pub const RESOURCE_MAPPINGS: &str = "/esi-worker/resource_mappings/";
/// The live instances (SPEC §6), each on its lease.
pub const MEMBERS: &str = "/esi-worker/members/";
/// The shard claims, each on its owner's lease: the fence of every `/monitoring` write.
pub const SHARDS: &str = "/esi-worker/shards/";

pub fn job_all(id: &str) -> String {
    format!("{JOBS_ALL}{id}")
}
pub fn job_ready(id: &str) -> String {
    format!("{JOBS_READY}{id}")
}
pub fn job_working(id: &str) -> String {
    format!("{JOBS_WORKING}{id}")
}
pub fn job_finished(id: &str) -> String {
    format!("{JOBS_FINISHED}{id}")
}
pub fn template(name: &str) -> String {
    format!("/config/v2.0/heat_templates/{name}")
}
pub fn job_state(plural: &str, id: &str) -> String {
    format!("/esi-worker/job_state/v2.0/{plural}/{id}")
}
pub fn state(plural: &str, id: &str) -> String {
    format!("/state/v2.0/{plural}/{id}")
}
pub fn monitoring(plural: &str, id: &str) -> String {
    format!("/monitoring/v2.0/{plural}/{id}")
}
pub fn registry(plural: &str, id: &str) -> String {
    format!("{REGISTRY}{plural}/{id}")
}
pub fn resource_mapping(row_id: &str) -> String {
    format!("{RESOURCE_MAPPINGS}{row_id}")
}

pub fn member(instance: &str) -> String {
    format!("{MEMBERS}{instance}")
}
pub fn shard(n: u16) -> String {
    format!("{SHARDS}{n}")
}

/// The part of a key after `prefix`, when the key is under it.
pub fn suffix<'a>(key: &'a str, prefix: &str) -> Option<&'a str> {
    key.strip_prefix(prefix)
}

/// The 23 monitored types of the original system (all regular plurals).
const MONITORED: [&str; 23] = [
    "aws_gateway",
    "aws_interface",
    "common_function_gateway",
    "edge_router",
    "er_physical_interface",
    "ese_device",
    "ese_logical_port",
    "ese_physical_port",
    "firewall_interface",
    "firewall",
    "gw_interface",
    "ha_interface",
    "ha_router",
    "interdc_gateway",
    "interdc_interface",
    "internet_gateway",
    "load_balancer_interface",
    "load_balancer",
    "network",
    "port",
    "vnf_instance",
    "vpn_gateway",
    "vpn_interface",
];

/// Resource type → plural: the built-in table plus the configuration's overrides.
#[derive(Debug, Clone)]
pub struct Plurals {
    table: BTreeMap<String, String>,
}

impl Plurals {
    pub fn new(overrides: &BTreeMap<String, String>) -> Plurals {
        let mut table: BTreeMap<String, String> =
            MONITORED.iter().map(|t| (t.to_string(), format!("{t}s"))).collect();
        table.extend(overrides.iter().map(|(k, v)| (k.clone(), v.clone())));
        Plurals { table }
    }

    pub fn of(&self, resource_type: &str) -> String {
        match self.table.get(resource_type) {
            Some(p) => p.clone(),
            None => format!("{resource_type}s"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plurals_default_and_override() {
        let mut o = BTreeMap::new();
        o.insert("policy".to_string(), "policies".to_string());
        let p = Plurals::new(&o);
        assert_eq!(p.of("ese_device"), "ese_devices");
        assert_eq!(p.of("policy"), "policies");
        assert_eq!(p.of("widget"), "widgets");
    }

    #[test]
    fn layout() {
        assert_eq!(job_state("ports", "x"), "/esi-worker/job_state/v2.0/ports/x");
        assert_eq!(suffix("/jobs/all/a:b", JOBS_ALL), Some("a:b"));
    }
}
