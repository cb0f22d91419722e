//! What the benchmarks read about processes and the machine from /proc: CPU time (also of the
//! children a process waited for), memory and open descriptors of a pid, the children of a
//! pid, the kernel's UDP counters (loopback included) and one UDP socket's queue and drops.

use std::process::Command;
use std::sync::OnceLock;

/// Fields of /proc/<pid>/stat after the command name (field 3, the state, first).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// Kernel clock ticks per second (`getconf CLK_TCK`; 100 on every usual Linux).
pub fn clock_ticks() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// utime + stime of a process (all its threads), in seconds.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let f = stat_fields(pid)?;
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks())
}

/// cutime + cstime of a process: the CPU of its children it has waited for, in seconds.
pub fn children_cpu_seconds(pid: u32) -> Option<f64> {
    let f = stat_fields(pid)?;
    let cutime: f64 = f.get(13)?.parse().ok()?;
    let cstime: f64 = f.get(14)?.parse().ok()?;
    Some((cutime + cstime) / clock_ticks())
}

/// A `Vm…:` line of /proc/<pid>/status, in KiB (VmHWM = peak RSS, VmRSS = current RSS).
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Number of threads of a process.
pub fn threads(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find(|l| l.starts_with("Threads:"))?.split_whitespace().nth(1)?.parse().ok()
}

/// Open file descriptors of a process (entries of /proc/<pid>/fd).
pub fn open_fds(pid: u32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

/// The pids whose parent is `pid`.
pub fn children_of(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| stat_fields(p).and_then(|f| f.get(1)?.parse::<u32>().ok()) == Some(pid))
        .collect()
}

/// The kernel's UDP counters (the `Udp:` lines of /proc/net/snmp, this network namespace):
/// every datagram over loopback counts once as Out and once as In.
#[derive(Debug, Clone, Copy, Default)]
pub struct Udp {
    pub in_datagrams: u64,
    pub out_datagrams: u64,
    pub in_errors: u64,
    pub rcvbuf_errors: u64,
}

impl Udp {
    pub fn read() -> Option<Udp> {
        let text = std::fs::read_to_string("/proc/net/snmp").ok()?;
        let mut lines = text.lines().filter(|l| l.starts_with("Udp:"));
        let names: Vec<&str> = lines.next()?.split_whitespace().collect();
        let values: Vec<&str> = lines.next()?.split_whitespace().collect();
        let get = |name: &str| -> u64 {
            names.iter().position(|n| *n == name).and_then(|i| values.get(i)?.parse().ok()).unwrap_or(0)
        };
        Some(Udp {
            in_datagrams: get("InDatagrams"),
            out_datagrams: get("OutDatagrams"),
            in_errors: get("InErrors"),
            rcvbuf_errors: get("RcvbufErrors"),
        })
    }

    pub fn since(&self, before: &Udp) -> Udp {
        Udp {
            in_datagrams: self.in_datagrams.saturating_sub(before.in_datagrams),
            out_datagrams: self.out_datagrams.saturating_sub(before.out_datagrams),
            in_errors: self.in_errors.saturating_sub(before.in_errors),
            rcvbuf_errors: self.rcvbuf_errors.saturating_sub(before.rcvbuf_errors),
        }
    }
}

/// CPU-seconds per thread group of a process so far: threads named `pool-3` count as
/// `pool-N` (the name's trailing digits become N); from /proc/<pid>/task/*/{comm,stat}.
pub fn cpu_by_thread(pid: u32) -> std::collections::BTreeMap<String, f64> {
    let mut out = std::collections::BTreeMap::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for e in dir.flatten() {
        let Some(tid) = e.file_name().to_str().and_then(|t| t.parse::<u32>().ok()) else { continue };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm")).unwrap_or_default();
        let comm = comm.trim();
        let base = comm.trim_end_matches(|c: char| c.is_ascii_digit());
        let group = if base.len() < comm.len() { format!("{base}N") } else { comm.to_string() };
        let cpu = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).ok().and_then(|stat| {
            let rest = stat.get(stat.rfind(')')? + 2..)?;
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some((f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / clock_ticks())
        });
        *out.entry(group).or_insert(0.0) += cpu.unwrap_or(0.0);
    }
    out
}

/// `after - before` per group, largest first, as `name 1.23` items.
pub fn cpu_by_thread_text(
    before: &std::collections::BTreeMap<String, f64>,
    after: &std::collections::BTreeMap<String, f64>,
) -> String {
    let mut v: Vec<(String, f64)> =
        after.iter().map(|(k, a)| (k.clone(), a - before.get(k).copied().unwrap_or(0.0))).collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1));
    v.iter().filter(|(_, c)| *c >= 0.005).map(|(k, c)| format!("{k} {c:.2}")).collect::<Vec<_>>().join(", ")
}

/// What the kernel holds for one IPv4 UDP socket (its line of /proc/net/udp).
#[derive(Debug, Clone, Copy, Default)]
pub struct UdpSocketStats {
    /// Bytes queued for the reader now (rx_queue: the datagrams' buffer sizes).
    pub rx_queue: u64,
    /// Datagrams dropped since the socket was opened (its receive buffer was full).
    pub drops: u64,
}

/// The socket bound to `addr` in this network namespace; None when there is none.
pub fn udp_socket(addr: std::net::SocketAddrV4) -> Option<UdpSocketStats> {
    // The address as the kernel prints it: the 4 bytes read as a native u32, then the port.
    let local = format!("{:08X}:{:04X}", u32::from_ne_bytes(addr.ip().octets()), addr.port());
    let text = std::fs::read_to_string("/proc/net/udp").ok()?;
    let f: Vec<&str> =
        text.lines().map(|l| l.split_whitespace().collect::<Vec<_>>()).find(|f| f.get(1) == Some(&local.as_str()))?;
    let rx = f.get(4)?.split_once(':')?.1;
    Some(UdpSocketStats { rx_queue: u64::from_str_radix(rx, 16).ok()?, drops: f.last()?.parse().ok()? })
}
