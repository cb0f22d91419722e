//! The resources `bench_poll` and `soak` register and flip: one `ese_physical_port`
//! resource per agent port (object `port`: physical_port, device_ip, community_name, name,
//! `port` = the agents' UDP port) and one `port` resource per Contrail VMI (object `vmi`:
//! virtual_machine_interface, fq_name), written directly to the registry (no jobs), version
//! 1; how a flip is applied (the agent's state file, the simulator's VMI); and the records
//! a watch on `/monitoring/` shows.
//!
//! Included with `#[path]`; it needs the crate-root modules `poll_agents` (and through it
//! `snmpd`) and `contrail_sim` (tests/support/contrail_sim.rs).
#![allow(dead_code)]

use crate::contrail_sim::ContrailSim;
use crate::poll_agents;
use crate::support::instances::Instances;
use esi_monitor::store::{Op, Store, Txn, Watch, WatchEvent};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Registry entries per `Store::txns` call.
const WRITE_BATCH: usize = 256;

#[derive(Debug, Clone)]
pub enum Target {
    /// Agent index, interface name.
    Port(usize, String),
    Vmi(String),
}

/// One registered resource.
pub struct Resource {
    pub registry_key: String,
    pub entry: String,
}

pub fn port_id(agent: usize, k: usize) -> String {
    format!("pp-{agent:05}-{k:03}")
}

pub fn vmi_fq_name(j: usize) -> String {
    format!("default-domain:bench:vmi-{j:06}")
}

pub fn vmi_id(j: usize) -> String {
    format!("vmi-{j:06}")
}

pub fn port_registry_key(agent: usize, k: usize) -> String {
    esi_monitor::keys::registry("ese_physical_ports", &port_id(agent, k))
}

pub fn port_monitoring_key(agent: usize, k: usize) -> String {
    esi_monitor::keys::monitoring("ese_physical_ports", &port_id(agent, k))
}

pub fn vmi_monitoring_key(j: usize) -> String {
    esi_monitor::keys::monitoring("ports", &vmi_id(j))
}

/// The object name inside a `/monitoring` record, from its key.
pub fn object_of(monitoring_key: &str) -> &'static str {
    if monitoring_key.starts_with("/monitoring/v2.0/ese_physical_ports/") {
        "port"
    } else {
        "vmi"
    }
}

/// The registry entry of port `k` of agent `a`.
pub fn port_entry(agent: &poll_agents::Agent, a: usize, k: usize, community: &str) -> String {
    json!({
        "resource_type": "ese_physical_port",
        "resource_id": port_id(a, k),
        "version": 1,
        "tenant_id": "bench-tenant",
        "objects": {"port": {
            "type": "physical_port",
            "device_ip": agent.addr,
            "community_name": community,
            "name": poll_agents::interface_name(k),
            "port": agent.port,
        }},
    })
    .to_string()
}

/// Every port of every agent, then `vmis` VMIs.
pub fn resources(agents: &poll_agents::Agents, ports: usize, vmis: usize, community: &str) -> Vec<Resource> {
    let mut out = Vec::with_capacity(agents.list.len() * ports + vmis);
    for (a, agent) in agents.list.iter().enumerate() {
        for k in 0..ports {
            out.push(Resource { registry_key: port_registry_key(a, k), entry: port_entry(agent, a, k, community) });
        }
    }
    for j in 0..vmis {
        let entry = json!({
            "resource_type": "port",
            "resource_id": vmi_id(j),
            "version": 1,
            "tenant_id": "bench-tenant",
            "objects": {"vmi": {"type": "virtual_machine_interface", "fq_name": vmi_fq_name(j)}},
        });
        out.push(Resource { registry_key: esi_monitor::keys::registry("ports", &vmi_id(j)), entry: entry.to_string() });
    }
    out
}

/// Writes the registry entries, `WRITE_BATCH` transactions per call.
pub fn register(store: &Store, resources: &[Resource]) -> Result<(), String> {
    for chunk in resources.chunks(WRITE_BATCH) {
        let txns: Vec<Txn> = chunk
            .iter()
            .map(|r| Txn { when: Vec::new(), then: vec![Op::put(r.registry_key.clone(), r.entry.clone())] })
            .collect();
        for r in store.txns(&txns) {
            match r {
                Ok(o) if o.applied => {}
                Ok(_) => return Err("a registry write was not applied".into()),
                Err(e) => return Err(format!("writing the registry: {e}")),
            }
        }
    }
    Ok(())
}

/// Sets a flip's target up or down; the instant after which every answer reflects it.
/// BENCH_POLL_TRACE=1 prints each one to stderr.
pub fn set(target: &Target, up: bool, agents: &poll_agents::Agents, sim: Option<&ContrailSim>) -> Instant {
    if std::env::var_os("BENCH_POLL_TRACE").is_some() {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        eprintln!("trace {:.3} set {target:?} {}", t.as_secs_f64() % 3600.0, if up { "up" } else { "down" });
    }
    match (target, sim) {
        (Target::Port(a, name), _) => agents.list[*a].snmpd.set_up(name, up),
        (Target::Vmi(fq), Some(sim)) => sim.set_l2_active(fq, up),
        (Target::Vmi(_), None) => {}
    }
    Instant::now()
}

/// One event of the watch on `/monitoring/`.
pub enum Change {
    /// A record written: its key, the status of its one object before (None: its first
    /// record) and now.
    Put { key: String, previous: Option<String>, status: String },
    /// A record deleted or not text (never expected).
    Other(String),
}

/// What the watch on `/monitoring/` has shown so far: key → status of its one object.
#[derive(Default)]
pub struct Records {
    pub status: HashMap<String, String>,
    pub events: u64,
}

impl Records {
    /// Takes one event; a broken watch is an error. With `trace` (and BENCH_POLL_TRACE=1)
    /// each record is printed to stderr.
    pub fn take(&mut self, ev: WatchEvent, trace: bool) -> Result<Change, String> {
        self.events += 1;
        let kv = match ev {
            WatchEvent::Put(kv) => kv,
            WatchEvent::Delete { key, .. } => return Ok(Change::Other(format!("{key} deleted"))),
            WatchEvent::NotText { key } => return Ok(Change::Other(format!("{key} written (not text)"))),
            WatchEvent::Broken(why) => return Err(format!("the watch on /monitoring/ broke: {why}")),
        };
        let value: Value = serde_json::from_slice(&kv.value).unwrap_or(Value::Null);
        if trace && std::env::var_os("BENCH_POLL_TRACE").is_some() {
            let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            eprintln!("trace {:.3} seen {} {value}", t.as_secs_f64() % 3600.0, kv.key);
        }
        let status = value.get(object_of(&kv.key)).and_then(Value::as_str).unwrap_or("?").to_string();
        let previous = self.status.insert(kv.key.clone(), status.clone());
        Ok(Change::Put { key: kv.key, previous, status })
    }

    /// Waits (at most `limit`) until `total` resources have a record, checking that the
    /// instances keep running; returns how long it took.
    pub fn wait_first(
        &mut self,
        watch: &Watch,
        total: usize,
        limit: Duration,
        instances: &mut Instances,
    ) -> Result<Duration, String> {
        let started = Instant::now();
        let mut last_check = Instant::now();
        while self.status.len() < total {
            crate::support::interrupt::check()?;
            if started.elapsed() > limit {
                let tail = instances.list.first().map(|m| m.proc.log_tail(5).join(" | ")).unwrap_or_default();
                return Err(format!(
                    "only {} of {total} resources had a /monitoring record after {limit:?}; esi-monitor log: {tail}",
                    self.status.len()
                ));
            }
            if last_check.elapsed() > Duration::from_millis(500) {
                last_check = Instant::now();
                instances.check_running()?;
            }
            if let Ok(ev) = watch.events.recv_timeout(Duration::from_millis(200)) {
                self.take(ev, false)?;
            }
        }
        Ok(started.elapsed())
    }
}
