//! The verdict of a create job (SPEC §3.3): by default every object is assumed to reach the
//! value its plugin waits for; in verify mode each object is probed until it does, or until
//! its timeout fails the job.

use super::Context;
use crate::plugins::{Object, Probe};
use serde_json::{Map, Value};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const DEFAULT_TIMEOUT_S: f64 = 120.0;
const DEFAULT_RETRY_S: f64 = 10.0;
/// Longest wait between two checks of whether the service is stopping.
const STOP_CHECK: Duration = Duration::from_millis(200);

/// Why verifying an object ended without success.
pub enum Unverified {
    /// The object did not reach its value: the job fails with this sentence.
    Failed(String),
    /// The service is stopping: the job is released, not committed, and runs again later.
    Interrupted,
}

impl From<String> for Unverified {
    fn from(why: String) -> Unverified {
        Unverified::Failed(why)
    }
}

impl From<&str> for Unverified {
    fn from(why: &str) -> Unverified {
        Unverified::Failed(why.to_string())
    }
}

impl std::fmt::Display for Unverified {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            Unverified::Failed(why) => f.write_str(why),
            Unverified::Interrupted => f.write_str("interrupted: the service is stopping"),
        }
    }
}

/// `{object name: verdict}` for the objects a create job reports.
pub fn reach(ctx: &Context, objects: &[Object]) -> Result<Map<String, Value>, Unverified> {
    let mut verdicts = Map::new();
    for object in objects {
        let Some(success) = object.success_value() else { continue };
        if ctx.config().jobs.verify {
            verify(ctx, object)?;
        }
        verdicts.insert(object.name.clone(), Value::String(success));
    }
    Ok(verdicts)
}

/// Probes until success, every `time_between_retries`, until `timeout` (first probe at once).
fn verify(ctx: &Context, object: &Object) -> Result<(), Unverified> {
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
            return Err(Unverified::Failed(format!(
                "object {:?} ({}) did not become {} within {}s: last probe said {}",
                object.name,
                object.text("type"),
                object.success_value().unwrap_or_default(),
                timeout.as_secs_f64(),
                probe
            )));
        }
        let next = now + every.min(deadline - now);
        while let Some(left) = next.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()) {
            if ctx.stopping.load(Ordering::Relaxed) {
                return Err(Unverified::Interrupted);
            }
            std::thread::sleep(left.min(STOP_CHECK));
        }
    }
}

/// One probe of an object, `None` for types that are never probed (they are assumed, as
/// in the default mode).
pub fn probe(ctx: &Context, object: &Object) -> Option<Probe> {
    let prober = object.kind.prober?;
    let started = Instant::now();
    let (probe, _) = (prober.probe)(&ctx.clients, object);
    crate::metrics::probed(prober, started, std::slice::from_ref(&probe));
    Some(probe)
}
