//! Probe tasks: what the scheduler hands the pool to poll, grouped so that one request
//! answers many objects (all monitored ports of a device in one SNMP GET, many VMIs in one
//! bulk POST), and the results the pool hands back.

use super::Context;
use crate::metrics::{self, ProbeType};
use crate::plugins::snmp::Device;
use crate::plugins::Probe;
use std::time::Instant;

/// Identifies one polled object: its resource's registry key and its name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Member {
    pub resource: String,
    pub object: String,
}

/// One request's worth of polling.
#[derive(Debug, Clone)]
pub enum Task {
    /// ifOperStatus of these ports (by ifName) of one device.
    Ports(Device, Vec<(Member, String)>),
    /// sysUpTime of one device (switch/router objects on it).
    Uptime(Device, Vec<Member>),
    /// `l2_active` of these VMIs (by fq_name), in bulk.
    Vmis(Vec<(Member, String)>),
    /// One virtual network (by fq_name).
    Vn(Vec<Member>, String),
}

/// Most VMIs asked for in one bulk request.
pub const VMI_BULK: usize = 100;

/// Runs a task; every member gets a probe result.
pub fn run(ctx: &Context, task: Task) -> Vec<(Member, Probe)> {
    let (_busy, started) = (metrics::busy(), Instant::now());
    let (kind, results): (_, Vec<_>) = match task {
        Task::Ports(device, ports) => {
            let names: Vec<String> = ports.iter().map(|(_, n)| n.clone()).collect();
            let probes = ctx.snmp.ports(&device, &names);
            (ProbeType::SnmpPort, ports.into_iter().map(|(m, _)| m).zip(probes).collect())
        }
        Task::Uptime(device, members) => {
            let probe = ctx.snmp.uptime(&device);
            (ProbeType::SnmpUptime, members.into_iter().map(|m| (m, probe.clone())).collect())
        }
        Task::Vmis(vmis) => {
            let names: Vec<String> = vmis.iter().map(|(_, n)| n.clone()).collect();
            let probes = ctx.contrail.probe_vmis(&names);
            (ProbeType::ContrailVmi, vmis.into_iter().map(|(m, _)| m).zip(probes).collect())
        }
        Task::Vn(members, fq_name) => {
            let probe = ctx.contrail.probe_vn(&fq_name);
            (ProbeType::ContrailVn, members.into_iter().map(|m| (m, probe.clone())).collect())
        }
    };
    metrics::probed(kind, started, results.iter().map(|(_, p)| p));
    results
}
