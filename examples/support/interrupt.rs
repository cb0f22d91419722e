//! Ctrl-C (SIGINT) and SIGTERM for the long-running benchmarks: the first one sets a flag
//! their loops check (`check`), so that they return an error and every child process
//! (esi-monitor instances, agents, etcd) is stopped by its drop guard; a second one
//! terminates at once with exit code 1.

use signal_hook::consts::{SIGINT, SIGTERM};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();

fn flag() -> &'static Arc<AtomicBool> {
    FLAG.get_or_init(|| Arc::new(AtomicBool::new(false)))
}

/// Takes SIGINT and SIGTERM over (once per process).
pub fn install() {
    for signal in [SIGINT, SIGTERM] {
        // The shutdown hook runs first and sees the flag of the previous signal.
        let _ = signal_hook::flag::register_conditional_shutdown(signal, 1, flag().clone());
        let _ = signal_hook::flag::register(signal, flag().clone());
    }
}

pub fn interrupted() -> bool {
    flag().load(Ordering::Relaxed)
}

/// An error once SIGINT or SIGTERM arrived.
pub fn check() -> Result<(), String> {
    if interrupted() {
        Err("interrupted (SIGINT or SIGTERM): stopping every process it started".into())
    } else {
        Ok(())
    }
}
