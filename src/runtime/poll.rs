//! Probe tasks: what the scheduler hands the pool to poll, grouped so that one request
//! answers many objects (all monitored ports of a device in one SNMP GET, all VRRP groups of
//! a NETCONF session in one RPC, many VMIs in one bulk POST), and the results the pool
//! hands back.

use super::Context;
use crate::metrics;
use crate::plugins::{Probe, Prober, UnitKey};
use std::time::Instant;

/// Identifies one polled object: its resource's registry key, its name, and its shard.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Member {
    pub resource: String,
    pub object: String,
    /// The resource's shard.
    pub shard: u16,
}

/// One request's worth of polling: a unit (or, for bulk probers, several units of the same
/// prober) and what each member asks for.
#[derive(Debug, Clone)]
pub struct Task {
    pub prober: &'static Prober,
    pub key: UnitKey,
    pub members: Vec<(Member, String)>,
}

/// Runs a task; every member gets a probe result.
pub fn run(ctx: &Context, task: Task) -> Vec<(Member, Probe)> {
    let (_busy, started) = (metrics::busy(), Instant::now());
    let asks: Vec<String> = task.members.iter().map(|(_, a)| a.clone()).collect();
    let mut probes = (task.prober.poll)(&ctx.clients, &task.key, &asks);
    // A prober answers every ask; should one not, the rest are no answer rather than lost.
    probes.resize_with(asks.len(), || Probe::NoAnswer(format!("{}: no reading", task.prober.label)));
    metrics::probed(task.prober, started, &probes);
    ctx.clients.tidy();
    task.members.into_iter().map(|(m, _)| m).zip(probes).collect()
}
