//! The SNMP agents of `bench_poll`: N real net-snmp `snmpd` (the tests' own agent,
//! `tests/support/snmpd.rs`, with its python pass_persist script), one per loopback address
//! 127.1.X.Y, all on one shared UDP port (as real devices all listen on 161), each serving
//! P Junos-like interfaces that are all up. Started in parallel; dropping `Agents` stops
//! them all in parallel (each stop waits for its snmpd to exit), also on error.
//!
//! Included by `examples/bench_poll.rs` with `#[path]`; it needs the crate-root modules
//! `snmpd` (tests/support/snmpd.rs) and `proc_stats`.
#![allow(dead_code)]

use crate::proc_stats;
use crate::support::panics::panic_text;
use crate::snmpd::{Interface, Snmpd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::path::PathBuf;
use std::sync::Mutex;

/// The address of agent `i` (0-based): 127.1.0.1 … 127.1.0.200, 127.1.1.1 …
pub fn address(i: usize) -> String {
    format!("127.1.{}.{}", i / 200, i % 200 + 1)
}

/// Interface `k` of an agent: ifIndex 501 + k, xe-0/0/k, ge-1/0/k, aeK as on a Junos box.
pub fn interface_name(k: usize) -> String {
    match k {
        0..=47 => format!("xe-0/0/{k}"),
        48..=95 => format!("ge-1/0/{}", k - 48),
        _ => format!("ae{}", k - 96),
    }
}

pub fn interfaces(ports: usize) -> Vec<Interface> {
    (0..ports).map(|k| Interface::new(501 + k as u32, &interface_name(k), true)).collect()
}

pub struct Agent {
    pub snmpd: Snmpd,
    pub addr: String,
    pub port: u16,
    /// snmpd and its pass_persist script.
    pub pids: Vec<u32>,
    /// The pass_persist script's pid and its state file.
    pub script: Option<(u32, PathBuf)>,
}

pub struct Agents {
    pub list: Vec<Agent>,
    /// The UDP port they share.
    pub port: u16,
}

impl Agents {
    /// CPU-seconds used so far by every agent (snmpd + its script).
    pub fn cpu_seconds(&self) -> f64 {
        self.list.iter().flat_map(|a| &a.pids).filter_map(|&p| proc_stats::cpu_seconds(p)).sum()
    }

    /// Resident memory of all agents (snmpd + scripts) now, in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.list.iter().flat_map(|a| &a.pids).filter_map(|&p| proc_stats::status_kib(p, "VmRSS")).sum()
    }
}

/// The state file of a pass_persist script (`python3 -S agent.py <state>`), from its
/// command line.
fn script_of(pid: u32) -> Option<(u32, PathBuf)> {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<String> =
        cmdline.split(|b| *b == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
    if !args.iter().any(|a| a.ends_with("agent.py")) {
        return None;
    }
    Some((pid, PathBuf::from(args.last()?)))
}

/// Bytes read so far by a process (`rchar` of /proc/<pid>/io).
fn rchar(pid: u32) -> Option<u64> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    io.lines().find_map(|l| l.strip_prefix("rchar:"))?.trim().parse().ok()
}

/// Bytes read so far by every agent's pass_persist script.
#[derive(Debug, Clone, Default)]
pub struct ScriptReads(Vec<Option<u64>>);

/// Bytes snmpd writes to the script per command: `get\n` or `getnext\n` and an OID line
/// (sysUpTime.0 19, ifOperStatus.5xx 25, ifName.5xx 28 bytes with the newline).
pub const COMMAND_BYTES: f64 = 4.0 + 26.0;

impl Agents {
    pub fn script_reads(&self) -> ScriptReads {
        ScriptReads(self.list.iter().map(|a| a.script.as_ref().and_then(|(pid, _)| rchar(*pid))).collect())
    }

    /// Estimated get/getnext commands the scripts answered between two readings: each one
    /// reads its command and the whole state file (the script re-reads it on every
    /// request). Per agent; None where the script could not be read.
    pub fn commands_between(&self, before: &ScriptReads, after: &ScriptReads) -> Vec<Option<f64>> {
        self.list
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let (_, state) = a.script.as_ref()?;
                let size = std::fs::metadata(state).ok()?.len() as f64;
                let delta = after.0.get(i).copied().flatten()?.checked_sub(before.0.get(i).copied().flatten()?)?;
                Some(delta as f64 / (size + COMMAND_BYTES))
            })
            .collect()
    }
}

/// Starts `n` agents with `ports` interfaces each on a port free on all their addresses,
/// `parallel` at a time. Returns those that came up (in address order) and the failures;
/// an agent that cannot start is left out (the caller reports it), never retried on
/// another port (every registry entry names the shared port).
pub fn start(n: usize, ports: usize, community: &str, parallel: usize) -> (Agents, Vec<String>) {
    let addrs: Vec<String> = (0..n).map(address).collect();
    let refs: Vec<&str> = addrs.iter().map(String::as_str).collect();
    let port = Snmpd::free_port(&refs);
    let ifaces = interfaces(ports);
    // The harness panics on a failed start; keep the default hook from printing each one.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, Result<Agent, String>)>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..parallel.clamp(1, n.max(1)) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let addr = &addrs[i];
                let r = std::panic::catch_unwind(|| Snmpd::start_on(addr, port, community, &ifaces))
                    .map_err(|p| format!("agent on {addr}:{port}: {}", panic_text(p)))
                    .map(|snmpd| {
                        let mut pids = Vec::new();
                        if let Some(pid) = snmpd.pid() {
                            pids.push(pid);
                            pids.extend(proc_stats::children_of(pid));
                        }
                        let script = pids.iter().skip(1).find_map(|&p| script_of(p));
                        Agent { snmpd, addr: addr.clone(), port, pids, script }
                    });
                results.lock().unwrap_or_else(|e| e.into_inner()).push((i, r));
            });
        }
    });
    std::panic::set_hook(hook);
    let mut results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    results.sort_by_key(|(i, _)| *i);
    let (mut list, mut failures) = (Vec::new(), Vec::new());
    for (_, r) in results {
        match r {
            Ok(a) => list.push(a),
            Err(e) => failures.push(e),
        }
    }
    (Agents { list, port }, failures)
}

impl Drop for Agents {
    fn drop(&mut self) {
        let mut rest = std::mem::take(&mut self.list);
        let per_thread = rest.len().div_ceil(16).max(1);
        let mut chunks: Vec<Vec<Agent>> = Vec::new();
        while !rest.is_empty() {
            let tail = rest.split_off(rest.len().min(per_thread));
            chunks.push(std::mem::replace(&mut rest, tail));
        }
        std::thread::scope(|s| {
            for chunk in chunks {
                s.spawn(move || drop(chunk));
            }
        });
    }
}
