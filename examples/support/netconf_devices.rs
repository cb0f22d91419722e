//! The NETCONF devices of `bench_netconf`: N real OpenSSH sshd (the tests' own harness,
//! `tests/support/sshd.rs`, with its Junos-like python responder as the `netconf`
//! subsystem) on 127.2.X.Y, each with one password login, G VRRP groups on ae0.1025 (groups
//! 1..=G, master) and one routing instance with P BGP peers (Established). Started in
//! parallel; dropping `Devices` stops them all in parallel (each stop kills the device's
//! whole pid namespace and waits for it), also on error.
//!
//! What the devices did is read from the harness (the agents' events log: `session` and
//! `rpc <name>` lines) and from /proc: the CPU of every process in each device's pid
//! namespace, reaped children included.
//!
//! Included by `examples/bench_netconf.rs` with `#[path]`; it needs the crate-root module
//! `sshd` (tests/support/sshd.rs).
#![allow(dead_code)]

use crate::sshd::{BgpPeer, DeviceState, Faults, Layout, Sshd, VrrpGroup};
use crate::support::panics::panic_text;
use crate::support::proc_stats;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

pub const USER: &str = "esi";
pub const PASSWORD: &str = "bench-N3tconf";
pub const INTERFACE: &str = "ae0.1025";
pub const VRRP_RPC: &str = "get-vrrp-information";
pub const BGP_RPC: &str = "get-bgp-summary-information";

/// The address of device `i` (0-based): 127.2.0.1 … 127.2.0.200, 127.2.1.1 …
pub fn address(i: usize) -> String {
    format!("127.2.{}.{}", i / 200, i % 200 + 1)
}

/// The routing instance of device `i`.
pub fn instance(i: usize) -> String {
    format!("vrf_bench_{i:04}")
}

/// BGP peer `k` (0-based) of every device's instance.
pub fn peer(k: usize) -> String {
    format!("192.168.{}.{}", 8 + k / 250, k % 250 + 1)
}

/// What every device serves at the start: groups 1..=`groups` master, `peers` peers Established.
pub fn state(i: usize, groups: usize, peers: usize) -> DeviceState {
    DeviceState {
        layout: Layout::Mx,
        vrrp: (1..=groups as u32).map(|g| VrrpGroup::new(INTERFACE, g, "master")).collect(),
        bgp: BTreeMap::from([(instance(i), (0..peers).map(|k| BgpPeer::new(&peer(k), "Established")).collect())]),
        faults: Faults::default(),
    }
}

pub struct Device {
    pub sshd: Sshd,
    /// Its index among the devices asked for (its address and instance).
    pub index: usize,
}

/// What one device's agents logged so far.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counts {
    pub sessions: usize,
    pub vrrp_rpcs: usize,
    pub bgp_rpcs: usize,
}

impl Device {
    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for line in self.sshd.events() {
            if line.starts_with("session ") {
                c.sessions += 1;
            } else if let Some(name) = line.strip_prefix("rpc ") {
                if name == VRRP_RPC {
                    c.vrrp_rpcs += 1;
                } else if name == BGP_RPC {
                    c.bgp_rpcs += 1;
                }
            }
        }
        c
    }

    /// CPU-seconds of the device so far: every live process of its pid namespace (sshd, its
    /// per-connection processes, the python agents) and the processes they reaped.
    pub fn cpu_seconds(&self) -> f64 {
        self.sshd.pids().into_iter().filter_map(cpu_with_children).sum()
    }
}

/// A process's CPU-seconds so far with those of its reaped children: its threads' on-CPU
/// time from /proc/<pid>/task/*/schedstat (nanoseconds: these processes live short and use
/// little, so clock ticks would round most of it away), or utime + stime where that is
/// missing; plus cutime + cstime (ticks, summed by the kernel before rounding).
fn cpu_with_children(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok());
    let children = (ticks(13)? + ticks(14)?) / proc_stats::clock_ticks();
    let own = schedstat_seconds(pid).or_else(|| Some((ticks(11)? + ticks(12)?) / proc_stats::clock_ticks()))?;
    Some(own + children)
}

/// The on-CPU time of every thread of a process, from schedstat.
fn schedstat_seconds(pid: u32) -> Option<f64> {
    let mut ns = 0u64;
    for e in std::fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten() {
        let text = std::fs::read_to_string(e.path().join("schedstat")).ok()?;
        ns += text.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(ns as f64 / 1e9)
}

pub struct Devices {
    pub list: Vec<Device>,
}

impl Devices {
    pub fn counts(&self) -> Vec<Counts> {
        self.list.iter().map(Device::counts).collect()
    }

    pub fn cpu_seconds(&self) -> f64 {
        self.list.iter().map(Device::cpu_seconds).sum()
    }

    /// Live processes of all devices, and their resident memory now in KiB.
    pub fn processes(&self) -> (usize, u64) {
        let pids: Vec<u32> = self.list.iter().flat_map(|d| d.sshd.pids()).collect();
        let rss = pids.iter().filter_map(|&p| proc_stats::status_kib(p, "VmRSS")).sum();
        (pids.len(), rss)
    }
}

/// Starts `n` devices, `parallel` at a time, each on a free port of its own address.
/// Returns those that came up (in address order) and the failures; a device that cannot
/// start is left out (the caller reports it).
pub fn start(n: usize, groups: usize, peers: usize, parallel: usize) -> (Devices, Vec<String>) {
    // The harness panics on a failed start; keep the default hook from printing each one.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, Result<Device, String>)>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..parallel.clamp(1, n.max(1)) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let addr = address(i);
                let r = std::panic::catch_unwind(|| {
                    let sshd = Sshd::start(&addr, &[(USER, PASSWORD)]);
                    sshd.set_state(&state(i, groups, peers));
                    sshd
                })
                .map_err(|p| format!("sshd on {addr}: {}", panic_text(p)))
                .map(|sshd| Device { sshd, index: i });
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
            Ok(d) => list.push(d),
            Err(e) => failures.push(e),
        }
    }
    (Devices { list }, failures)
}

impl Drop for Devices {
    fn drop(&mut self) {
        let mut rest = std::mem::take(&mut self.list);
        let per_thread = rest.len().div_ceil(16).max(1);
        let mut chunks: Vec<Vec<Device>> = Vec::new();
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
