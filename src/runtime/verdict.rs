//! The verdict of a create job (SPEC §3.3): by default every object is assumed to reach the
//! value its plugin waits for; in verify mode each object is probed until it does, or until
//! its timeout fails the job.

use super::Context;
use crate::plugins::{etcd_reader, Kind, Object, Probe};
use serde_json::{Map, Value};
use std::time::{Duration, Instant};

const DEFAULT_TIMEOUT_S: f64 = 120.0;
const DEFAULT_RETRY_S: f64 = 10.0;

/// `{object name: verdict}` for the objects a create job reports.
pub fn reach(ctx: &Context, objects: &[Object]) -> Result<Map<String, Value>, String> {
    let mut verdicts = Map::new();
    for object in objects {
        let Some(success) = object.success_value() else { continue };
        if ctx.config.jobs.verify {
            verify(ctx, object)?;
        }
        verdicts.insert(object.name.clone(), Value::String(success));
    }
    Ok(verdicts)
}

/// Probes until success, every `time_between_retries`, until `timeout` (first probe at once).
fn verify(ctx: &Context, object: &Object) -> Result<(), String> {
    let timeout = Duration::from_secs_f64(object.seconds("timeout", DEFAULT_TIMEOUT_S));
    let every = Duration::from_secs_f64(object.seconds("time_between_retries", DEFAULT_RETRY_S).max(0.01));
    let deadline = Instant::now() + timeout;
    loop {
        let Some(probe) = probe(ctx, object) else { return Ok(()) };
        if object.is_success(&probe) {
            return Ok(());
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(format!(
                "object {:?} ({}) did not become {} within {}s: last probe said {}",
                object.name,
                object.text("type"),
                object.success_value().unwrap_or_default(),
                timeout.as_secs_f64(),
                probe
            ));
        }
        std::thread::sleep(every.min(deadline - now));
    }
}

/// One probe of an object, `None` for types whose verify mode does not exist yet (they are
/// assumed, as in the default mode, and a warning says so).
pub fn probe(ctx: &Context, object: &Object) -> Option<Probe> {
    let started = Instant::now();
    let probe = match object.kind {
        Kind::VirtualMachineInterface => ctx.contrail.probe_vmi(&object.text("fq_name")),
        Kind::VirtualNetwork => ctx.contrail.probe_vn(&object.text("fq_name")),
        Kind::EtcdReader => {
            etcd_reader::probe(&ctx.store, &ctx.plurals, &object.text("etcd_type"), &object.text("etcd_id"))
        }
        Kind::PhysicalPort | Kind::LogicalPort | Kind::Switch | Kind::Router => ctx.snmp.probe(object),
        _ => {
            log::warn!(
                "object {:?}: verify mode is not available for type {} yet; assuming {}",
                object.name,
                object.text("type"),
                object.success_value().unwrap_or_default()
            );
            return None;
        }
    };
    if let Some(t) = crate::metrics::ProbeType::of(object.kind) {
        crate::metrics::probed(t, started, [&probe]);
    }
    Some(probe)
}
