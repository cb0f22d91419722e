//! Code shared by the demo and the benchmarks (and only by them): a throwaway etcd, child
//! processes that are killed when dropped, the recorded fixtures, the figures the benchmarks
//! print, and bounded waits.
//!
//! The throwaway etcd is the tests' own (`tests/support/etcd.rs`); the rest mirrors
//! `tests/support/` so that a timed-out wait is an error the example can report (and exit
//! non-zero on) instead of a panic.
#![allow(dead_code)]

#[path = "../../tests/support/addresses.rs"]
pub mod addresses;
#[path = "../../tests/support/etcd.rs"]
pub mod etcd;
pub mod figures;
pub mod fixtures;
pub mod instances;
pub mod interrupt;
pub mod metrics;
pub mod panics;
pub mod proc_stats;
pub mod process;

use std::time::{Duration, Instant};

/// Polls `f` every `every` until it returns `Some`, at most `limit`; the error names `what`.
pub fn wait_until<T>(
    what: &str,
    limit: Duration,
    every: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> Result<T, String> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            return Err(format!("timed out after {limit:?} waiting for {what}"));
        }
        std::thread::sleep(every);
    }
}

/// A free TCP port on the loopback interface (free when asked; good enough for a demo).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port")
}

/// The repository root, where `target/` and `tests/fixtures/` are.
pub fn repo_root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A release binary built next to this example (`target/release/esi-monitor`,
/// `target/release/examples/contrail_sim`): found relative to the running executable, so a
/// custom `CARGO_TARGET_DIR` works too.
pub fn sibling_binary(relative_to_profile_dir: &str) -> Result<std::path::PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot locate this executable: {e}"))?;
    // target/<profile>/examples/<this> → target/<profile>
    let profile_dir = exe
        .parent()
        .and_then(|examples| examples.parent())
        .ok_or_else(|| format!("unexpected location of this executable: {}", exe.display()))?;
    let path = profile_dir.join(relative_to_profile_dir);
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "{} is missing: build it first (cargo build --release --bin esi-monitor --example contrail_sim)",
            path.display()
        ))
    }
}
