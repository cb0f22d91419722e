//! Debian's `prometheus-snmp-exporter` for `bench_poll`, the reference that esi-monitor's
//! SNMP polling is compared with: started on a free loopback port with a minimal module
//! that walks only ifOperStatus (1.3.6.1.2.1.2.2.1.8) with the agents' v2c community, and
//! scraped the way Prometheus does (`GET /snmp?target=IP:PORT&module=…`). Killed when
//! dropped, also on error.
//!
//! The module uses the configuration format of the exporter releases before 0.23
//! (`version:` and `auth: {community:}` inside the module), which is what Debian 12 ships
//! (0.21); a newer exporter that rejects it is reported with its own error message.
//!
//! Included by `examples/bench_poll.rs` with `#[path]`.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const MODULE: &str = "if_oper";
pub const BINARY: &str = "prometheus-snmp-exporter";
const READY_LIMIT: Duration = Duration::from_secs(15);

/// The exporter binary on PATH (or in /usr/bin), or why there is none.
pub fn find_binary() -> Result<PathBuf, String> {
    let on_path = std::env::var_os("PATH")
        .and_then(|p| std::env::split_paths(&p).map(|d| d.join(BINARY)).find(|p| p.is_file()));
    match on_path {
        Some(p) => Ok(p),
        None if Path::new("/usr/bin/prometheus-snmp-exporter").is_file() => Ok("/usr/bin/prometheus-snmp-exporter".into()),
        None => Err(format!(
            "{BINARY} is not installed (Debian package prometheus-snmp-exporter; `make bench-poll` installs it with apt-get when it can)"
        )),
    }
}

/// `prometheus-snmp-exporter --version`, e.g. `0.21.0`.
pub fn version(binary: &Path) -> String {
    let out = run_bounded(Command::new(binary).arg("--version"), Duration::from_secs(10)).unwrap_or_default();
    out.split_whitespace()
        .skip_while(|w| *w != "version")
        .nth(1)
        .map(|v| v.trim_end_matches(',').to_string())
        .unwrap_or_else(|| "?".into())
}

/// The module: walk ifOperStatus only, SNMP v2c, the same timeout and retries as esi-monitor.
pub fn config(community: &str, timeout: Duration, retries: u32, max_repetitions: u32) -> String {
    format!(
        "{MODULE}:\n\
         \x20 walk:\n\
         \x20 - 1.3.6.1.2.1.2.2.1.8\n\
         \x20 metrics:\n\
         \x20 - name: ifOperStatus\n\
         \x20   oid: 1.3.6.1.2.1.2.2.1.8\n\
         \x20   type: gauge\n\
         \x20   help: The current operational state of the interface - 1.3.6.1.2.1.2.2.1.8\n\
         \x20   indexes:\n\
         \x20   - labelname: ifIndex\n\
         \x20     type: gauge\n\
         \x20 version: 2\n\
         \x20 max_repetitions: {max_repetitions}\n\
         \x20 retries: {retries}\n\
         \x20 timeout: {}ms\n\
         \x20 auth:\n\
         \x20   community: {community}\n",
        timeout.as_millis()
    )
}

/// Runs a command to its end (stdout + stderr together), at most `limit`.
fn run_bounded(cmd: &mut Command, limit: Duration) -> Result<String, String> {
    let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    let out_path = dir.path().join("out");
    let out = std::fs::File::create(&out_path).map_err(|e| e.to_string())?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("cannot start {BINARY}: {e}"))?;
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{BINARY} did not finish within {limit:?}"));
            }
            Err(e) => return Err(e.to_string()),
        }
    };
    let text = std::fs::read_to_string(&out_path).unwrap_or_default();
    if status.success() {
        Ok(text)
    } else {
        Err(format!("{status}: {}", text.trim()))
    }
}

pub struct Exporter {
    child: Child,
    pub addr: SocketAddr,
    pub log: PathBuf,
    pub version: String,
    _dir: tempfile::TempDir,
}

impl Exporter {
    /// Writes the module, checks it with `--dry-run`, starts the exporter on a free
    /// loopback port and waits (≤ 15 s) until it answers `/metrics`.
    pub fn start(binary: &Path, module_yaml: &str) -> Result<Exporter, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
        let config = dir.path().join("snmp.yml");
        std::fs::write(&config, module_yaml).map_err(|e| format!("write {}: {e}", config.display()))?;
        let version = version(binary);
        run_bounded(
            Command::new(binary).arg(format!("--config.file={}", config.display())).arg("--dry-run"),
            Duration::from_secs(10),
        )
        .map_err(|e| format!("{BINARY} {version} rejects the ifOperStatus module: {e}"))?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|e| format!("no free loopback port: {e}"))?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let log = dir.path().join("exporter.log");
        let log_file = std::fs::File::create(&log).map_err(|e| format!("create {}: {e}", log.display()))?;
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let mut exporter = Exporter { child, addr, log, version, _dir: dir };
        let deadline = Instant::now() + READY_LIMIT;
        loop {
            if let Ok(Some(status)) = exporter.child.try_wait() {
                return Err(format!("{BINARY} exited at start ({status}): {}", exporter.log_tail()));
            }
            if matches!(http_get(addr, "/metrics", Duration::from_secs(2)), Ok((200, _))) {
                return Ok(exporter);
            }
            if Instant::now() >= deadline {
                return Err(format!("{BINARY} did not answer on http://{addr}/metrics within {READY_LIMIT:?}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(3)..].join(" | ")
    }

    /// One scrape of one agent, as Prometheus makes it.
    pub fn scrape(&self, target: &str, limit: Duration) -> Result<Scrape, String> {
        let path = format!("/snmp?target={target}&module={MODULE}");
        let (status, body) = http_get(self.addr, &path, limit)?;
        if status != 200 {
            let first = body.lines().next().unwrap_or("").to_string();
            return Err(format!("HTTP {status} for {target}: {first}"));
        }
        Ok(Scrape::parse(&body))
    }

    /// The exporter's own `/metrics` text.
    pub fn metrics(&self) -> Result<String, String> {
        match http_get(self.addr, "/metrics", Duration::from_secs(5))? {
            (200, body) => Ok(body),
            (s, _) => Err(format!("/metrics answered HTTP {s}")),
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one scrape returned.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    /// (ifIndex, ifOperStatus) of every `ifOperStatus{ifIndex="…"}` sample.
    pub statuses: Vec<(u32, i64)>,
    /// `snmp_scrape_pdus_returned` when present.
    pub pdus: Option<u64>,
}

impl Scrape {
    pub fn parse(body: &str) -> Scrape {
        let mut s = Scrape::default();
        for line in body.lines() {
            if let Some(rest) = line.strip_prefix("ifOperStatus{") {
                let index = rest
                    .split("ifIndex=\"")
                    .nth(1)
                    .and_then(|r| r.split('"').next())
                    .and_then(|i| i.parse().ok());
                let value = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok());
                if let (Some(i), Some(v)) = (index, value) {
                    s.statuses.push((i, v as i64));
                }
            } else if let Some(rest) = line.strip_prefix("snmp_scrape_pdus_returned ") {
                s.pdus = rest.trim().parse::<f64>().ok().map(|v| v as u64);
            }
        }
        s
    }
}

/// A plain HTTP/1.0 GET on loopback (the exporter answers and closes); (status, body).
pub fn http_get(addr: SocketAddr, path: &str, limit: Duration) -> Result<(u16, String), String> {
    let deadline = Instant::now() + limit;
    let mut stream =
        TcpStream::connect_timeout(&addr, limit).map_err(|e| format!("connect {addr}: {e}"))?;
    stream.set_write_timeout(Some(limit)).map_err(|e| e.to_string())?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\nUser-Agent: bench_poll\r\n\r\n")
        .map_err(|e| format!("send to {addr}: {e}"))?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("GET http://{addr}{path}: no complete answer within {limit:?}"));
        }
        stream.set_read_timeout(Some(left)).map_err(|e| e.to_string())?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::Interrupted) => continue,
            Err(e) => return Err(format!("GET http://{addr}{path}: {e}")),
        }
    }
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| format!("GET http://{addr}{path}: no HTTP header"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("GET http://{addr}{path}: bad status line"))?;
    Ok((status, body.to_string()))
}
