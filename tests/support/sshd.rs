//! A real OpenSSH server (Debian's `/usr/sbin/sshd`) serving a `netconf` subsystem backed by a
//! small Junos-like NETCONF 1.0 responder (tests/support/netconf_agent.py), so the NETCONF
//! probes' tests and benchmarks poll VRRP and BGP state over real SSH, password login and
//! `]]>]]>` framing included, from a state file the test rewrites.
//!
//! How it works (needs root, as the tests run):
//! - Everything lives in a temporary directory: sshd_config, its own ed25519 host key, the
//!   agent script, `state.json`, `events.log`, `sshd.log` (LogLevel VERBOSE, `-E`).
//! - Logins that are not system users (the recorded `esi`): sshd runs under
//!   `unshare --mount --pid --fork --kill-child --mount-proc`, and in that private mount
//!   namespace copies of /etc/passwd, /etc/shadow and /etc/group (the real ones plus one line
//!   per test user: uid/gid 4200+n, home = the temporary directory, shell /bin/sh, the password
//!   hashed with `openssl passwd -6`) are bind-mounted over the real ones, which never change.
//!   `UsePAM no`, so sshd checks the password against that shadow copy itself.
//! - sshd is pid 1 of its own pid namespace: orphaned session processes are reparented to it,
//!   and when it dies the kernel kills every process of the namespace, so `stop` (SIGKILL to
//!   sshd) leaves nothing behind and `kill_sessions` (SIGKILL to every other process of the
//!   namespace) drops every connection while sshd keeps listening.
//! - Readiness (within 10 s): sshd logs `Server listening on ADDR port PORT.` (so the socket is
//!   this sshd's) and a TCP connect receives its `SSH-2.0-` banner.
//!
//! The state file (JSON, replaced atomically by write + rename; the agent re-reads it on every
//! RPC, so a change shows in the very next reply, also on an open session):
//! ```json
//! {"layout": "mx",                     // or "els" (EX/QFX: <vrrp-vlan> records)
//!  "vrrp": [{"interface": "ae0.1025", "group": 20, "state": "master"}],
//!  "bgp": {"vrf_x": [{"peer": "192.168.8.1", "state": "Established", "as": 65001}]},
//!  "faults": {"delay_s": 0.0, "rpc_error": false, "truncate": false, "drop": false, "garbage": false}}
//! ```
//! A VRRP group may also have `interface_state` (default `up`), `local_address` and
//! `virtual_address`. In the ELS layout `xe-0/0/0.1` is written as `<vrrp-vlan>
//! <physical-interface>xe-0/0/0</physical-interface><unit>1</unit></vrrp-vlan>`.
//! Faults apply to every RPC but `<close-session/>`: `delay_s` delays each reply, `rpc_error`
//! answers an rpc-error (severity error), `garbage` a non-XML body (framed), `truncate` writes
//! the first half of the reply and ends the session, `drop` ends it without answering.
//! RPCs: `get-vrrp-information`, `get-bgp-summary-information` (with `<exact-instance>`: that
//! instance's peers, an unknown one has none; without: all), `close-session` (`<ok/>`, then the
//! agent exits); anything else, or input that is not XML, gets an rpc-error.
//!
//! The events log, one line an event (whole-line O_APPEND writes, so sessions never mix):
//! `session <pid>` (the agent's pid in sshd's pid namespace), `hello` (the client's),
//! `rpc <name>` (as received, before any fault; `rpc malformed` for non-XML), `close`, `eof`,
//! `fault drop`, `fault truncate`, `error …` (the agent caught an exception and ended).
#![allow(dead_code)]

use serde_json::json;
use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The NETCONF responder run by sshd for the `netconf` subsystem.
const SCRIPT: &str = include_str!("netconf_agent.py");

const SSHD: &str = "/usr/sbin/sshd";
const PYTHON: &str = "/usr/bin/python3";
const READY_LIMIT: Duration = Duration::from_secs(10);
const STOP_LIMIT: Duration = Duration::from_secs(5);
const FIRST_UID: u32 = 4200;

/// How the device lays out `get-vrrp-information`: MX routers (one `vrrp-interface` a group,
/// `<interface>ae0.1025</interface>`) or EX/QFX ELS switches (one `vrrp-interface` holding
/// `<vrrp-vlan><physical-interface>…</physical-interface><unit>…</unit></vrrp-vlan>` records).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Mx,
    Els,
}

/// One VRRP group: `state` as Junos writes it (`master`, `backup`, `init`, `transition`, `idle`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VrrpGroup {
    pub interface: String,
    pub group: u32,
    pub state: String,
}

impl VrrpGroup {
    pub fn new(interface: &str, group: u32, state: &str) -> VrrpGroup {
        VrrpGroup { interface: interface.to_string(), group, state: state.to_string() }
    }
}

/// One BGP peer of a routing instance: `state` as Junos writes it (`Established`, `Active`,
/// `Connect`, `Idle`, `OpenSent`, `OpenConfirm`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BgpPeer {
    pub peer: String,
    pub state: String,
    pub asn: u32,
}

impl BgpPeer {
    /// A peer of AS 65001 (the recorded peers' AS).
    pub fn new(peer: &str, state: &str) -> BgpPeer {
        BgpPeer { peer: peer.to_string(), state: state.to_string(), asn: 65001 }
    }
}

/// Misbehaviour of the device, for every RPC but `<close-session/>` (see the top comment).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    pub delay: Duration,
    pub rpc_error: bool,
    pub truncate: bool,
    pub drop: bool,
    pub garbage: bool,
}

/// What the device answers.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceState {
    pub layout: Layout,
    pub vrrp: Vec<VrrpGroup>,
    /// Routing instance → its peers.
    pub bgp: BTreeMap<String, Vec<BgpPeer>>,
    pub faults: Faults,
}

/// The routing instance of the recorded `vpn_interface` BGP peers.
pub const RECORDED_INSTANCE: &str = "vrf_gw_sample-ha-router-downlink_1025";

/// A running sshd; dropping it kills sshd and every session (the whole pid namespace) and
/// removes its directory.
pub struct Sshd {
    addr: String,
    port: u16,
    users: Vec<String>,
    running: Option<Running>,
    state: Mutex<DeviceState>,
    dir: tempfile::TempDir,
}

/// The `unshare` child and, inside its namespaces, sshd (pid 1 there).
struct Running {
    unshare: Child,
    sshd_pid: u32,
    pid_ns: String,
}

impl Sshd {
    /// Starts sshd on `addr` (a 127.0.0.0/8 address) on a free port, with password logins
    /// `users` (name, password), serving `Sshd::junos_primary()`, and waits (at most 10 s) until
    /// it sends its SSH banner. Panics with sshd's log when it does not come up.
    pub fn start(addr: &str, users: &[(&str, &str)]) -> Sshd {
        // The free port can be taken by someone else before sshd binds it: try a few.
        let mut last = String::new();
        for _ in 0..5 {
            let port = Self::free_port(&[addr]);
            match Self::try_start(addr, port, users) {
                Ok(sshd) => return sshd,
                Err(e) => last = e,
            }
        }
        panic!("{last}");
    }

    /// Like `start`, on a fixed port (e.g. 830 on 127.79.5.185, as the recorded devices): several
    /// servers on different 127.x.y.z can share one port number.
    pub fn start_on(addr: &str, port: u16, users: &[(&str, &str)]) -> Sshd {
        Self::try_start(addr, port, users).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A TCP port that is free on every one of `addrs` right now (for `start_on`).
    pub fn free_port(addrs: &[&str]) -> u16 {
        for _ in 0..100 {
            let first = TcpListener::bind((addrs[0], 0)).unwrap_or_else(|e| panic!("bind {}:0: {e}", addrs[0]));
            let port = first.local_addr().expect("local addr").port();
            if addrs[1..].iter().all(|a| TcpListener::bind((*a, port)).is_ok()) {
                return port;
            }
        }
        panic!("no TCP port free on all of {addrs:?} after 100 tries");
    }

    /// The recorded primary (10.79.5.185): VRRP groups 20, 41, 42 on ae0.1025 master, BGP peer
    /// 192.168.8.1 Established in `RECORDED_INSTANCE`, MX layout, no faults.
    pub fn junos_primary() -> DeviceState {
        Self::recorded("master", "192.168.8.1")
    }

    /// The recorded secondary (10.79.5.184): the same groups backup, peer 192.168.8.5 Established.
    pub fn junos_secondary() -> DeviceState {
        Self::recorded("backup", "192.168.8.5")
    }

    fn recorded(vrrp_state: &str, peer: &str) -> DeviceState {
        DeviceState {
            layout: Layout::Mx,
            vrrp: [20, 41, 42].iter().map(|g| VrrpGroup::new("ae0.1025", *g, vrrp_state)).collect(),
            bgp: BTreeMap::from([(RECORDED_INSTANCE.to_string(), vec![BgpPeer::new(peer, "Established")])]),
            faults: Faults::default(),
        }
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `addr:port` as a socket address.
    pub fn socket_addr(&self) -> std::net::SocketAddr {
        format!("{}:{}", self.addr, self.port).parse().expect("sshd socket address")
    }

    /// The temporary directory (its path is in the command line of sshd and of every agent).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The login names served.
    pub fn users(&self) -> &[String] {
        &self.users
    }

    /// The host key as in known_hosts / the .pub file: `ssh-ed25519 AAAA…` (no comment).
    pub fn host_key_line(&self) -> String {
        let text = fs::read_to_string(self.dir.path().join("ssh_host_ed25519_key.pub")).expect("read host key");
        text.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
    }

    /// The host key's fingerprint as `ssh-keygen -l` writes it: `SHA256:…` (unpadded base64).
    pub fn fingerprint(&self) -> String {
        let out = Command::new("ssh-keygen")
            .args(["-l", "-E", "sha256", "-f"])
            .arg(self.dir.path().join("ssh_host_ed25519_key.pub"))
            .output()
            .expect("run ssh-keygen -l");
        let text = String::from_utf8_lossy(&out.stdout);
        text.split_whitespace().nth(1).unwrap_or_else(|| panic!("ssh-keygen -l printed {text:?}")).to_string()
    }

    /// sshd's log (VERBOSE: connections, accepted/failed passwords, subsystem requests) and
    /// what it wrote to stderr.
    pub fn log_text(&self) -> String {
        let log = fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default();
        let stderr = fs::read_to_string(self.dir.path().join("sshd.stderr")).unwrap_or_default();
        format!("{log}--- stderr:\n{stderr}")
    }

    /// The agents' event lines so far (see the top comment).
    pub fn events(&self) -> Vec<String> {
        let text = fs::read_to_string(self.dir.path().join("events.log")).unwrap_or_default();
        text.lines().map(str::to_string).collect()
    }

    /// How many NETCONF sessions (agents) have started.
    pub fn sessions(&self) -> usize {
        self.events().iter().filter(|l| l.starts_with("session ")).count()
    }

    /// How many RPCs named `name` (e.g. "get-vrrp-information") the agents have received.
    pub fn rpc_count(&self, name: &str) -> usize {
        let line = format!("rpc {name}");
        self.events().iter().filter(|l| **l == line).count()
    }

    /// Whether sshd is running (between `stop` and `restart` it is not).
    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// The host pid of the listening sshd, when running.
    pub fn pid(&self) -> Option<u32> {
        self.running.as_ref().map(|r| r.sshd_pid)
    }

    /// Every live process of this server (sshd, its per-connection children, the agents).
    pub fn pids(&self) -> Vec<u32> {
        self.running.as_ref().map(|r| namespace_pids(&r.pid_ns)).unwrap_or_default()
    }

    /// The state served now.
    pub fn state(&self) -> DeviceState {
        self.state.lock().unwrap().clone()
    }

    /// Replaces the whole state; the next RPC (of any session) answers from it.
    pub fn set_state(&self, state: &DeviceState) {
        let mut current = self.state.lock().unwrap();
        *current = state.clone();
        write_state(self.dir.path(), &current);
    }

    /// Replaces the VRRP groups.
    pub fn set_vrrp(&self, groups: &[VrrpGroup]) {
        self.update(|s| s.vrrp = groups.to_vec());
    }

    /// Sets the state of VRRP group `group` on `interface` (panics when there is none).
    pub fn set_vrrp_state(&self, interface: &str, group: u32, state: &str) {
        self.update(|s| {
            let g = s.vrrp.iter_mut().find(|g| g.interface == interface && g.group == group);
            g.unwrap_or_else(|| panic!("set_vrrp_state: no VRRP group {group} on {interface:?}")).state =
                state.to_string();
        });
    }

    /// Replaces the peers of routing instance `instance` (adding the instance when new).
    pub fn set_bgp(&self, instance: &str, peers: &[BgpPeer]) {
        self.update(|s| {
            s.bgp.insert(instance.to_string(), peers.to_vec());
        });
    }

    /// Removes routing instance `instance` and its peers.
    pub fn remove_bgp(&self, instance: &str) {
        self.update(|s| {
            s.bgp.remove(instance);
        });
    }

    /// Sets the state of peer `peer` of `instance` (panics when there is none).
    pub fn set_peer_state(&self, instance: &str, peer: &str, state: &str) {
        self.update(|s| {
            let p = s.bgp.get_mut(instance).and_then(|ps| ps.iter_mut().find(|p| p.peer == peer));
            p.unwrap_or_else(|| panic!("set_peer_state: no peer {peer} in instance {instance:?}")).state =
                state.to_string();
        });
    }

    pub fn set_layout(&self, layout: Layout) {
        self.update(|s| s.layout = layout);
    }

    /// Sets the faults (`Faults::default()` for none); they apply from the next RPC on.
    pub fn set_faults(&self, faults: Faults) {
        self.update(|s| s.faults = faults);
    }

    fn update(&self, f: impl FnOnce(&mut DeviceState)) {
        let mut state = self.state.lock().unwrap();
        f(&mut state);
        write_state(self.dir.path(), &state);
    }

    /// Kills every connection (the per-connection sshd processes and their agents) while sshd
    /// keeps listening, as when the device drops its sessions; waits (at most 5 s) until they
    /// are gone.
    pub fn kill_sessions(&self) {
        let Some(running) = &self.running else { return };
        let others = |r: &Running| namespace_pids(&r.pid_ns).into_iter().filter(|p| *p != r.sshd_pid).collect();
        let victims: Vec<u32> = others(running);
        signal_kill(&victims);
        let deadline = Instant::now() + STOP_LIMIT;
        loop {
            // Connections accepted meanwhile are killed too.
            let left: Vec<u32> = others(running);
            if left.is_empty() {
                return;
            }
            assert!(Instant::now() < deadline, "kill_sessions: processes {left:?} still alive after {STOP_LIMIT:?}");
            signal_kill(&left);
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stops the server: sshd and every session are killed (connections are closed) and the
    /// port refuses connections until `restart`.
    pub fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            terminate(running);
        }
    }

    /// Starts sshd again (stopping it first if it runs) on the same address and port, with the
    /// same host key, users and state, and waits until it sends its banner.
    pub fn restart(&mut self) {
        self.stop();
        let mut last = String::new();
        for _ in 0..5 {
            match spawn_ready(self.dir.path(), &self.addr, self.port) {
                Ok(running) => {
                    self.running = Some(running);
                    return;
                }
                Err(e) => last = e,
            }
        }
        panic!("{last}");
    }

    fn try_start(addr: &str, port: u16, users: &[(&str, &str)]) -> Result<Sshd, String> {
        check_prerequisites(addr);
        assert!(!users.is_empty(), "the test sshd needs at least one user");
        for (name, password) in users {
            assert!(
                !name.is_empty()
                    && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
                    && !name.starts_with('-'),
                "user name {name:?}: use [a-z0-9_-]"
            );
            let one_line = !password.is_empty() && !password.contains(['\n', '\r']);
            assert!(one_line, "password of {name:?}: one non-empty line");
        }
        let dir = tempfile::Builder::new().prefix("sshd-").tempdir().expect("temp dir for sshd");
        let d = dir.path();
        let dir_text = d.to_str().expect("temp dir path is UTF-8");
        assert!(!dir_text.contains(|c: char| c.is_whitespace() || c == '\'' || c == '"'), "temp dir {dir_text:?}");
        // The agent runs as the test users: it must read the script and the state and append
        // to the events log.
        fs::set_permissions(d, fs::Permissions::from_mode(0o755)).expect("chmod sshd temp dir");
        write_file(&d.join("netconf_agent.py"), SCRIPT, 0o644);
        write_file(&d.join("events.log"), "", 0o666);
        let state = Self::junos_primary();
        write_state(d, &state);
        host_key(d);
        write_accounts(d, users);
        write_config(d, addr, port, users);
        let running = spawn_ready(d, addr, port)?;
        Ok(Sshd {
            addr: addr.to_string(),
            port,
            users: users.iter().map(|(n, _)| n.to_string()).collect(),
            running: Some(running),
            state: Mutex::new(state),
            dir,
        })
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
    }
}

fn check_prerequisites(addr: &str) {
    let ip: std::net::Ipv4Addr = addr.parse().unwrap_or_else(|e| panic!("sshd address {addr:?}: {e}"));
    assert!(ip.is_loopback(), "sshd address {addr}: only 127.0.0.0/8 may be used");
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let root = status.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"));
    assert!(root, "the test sshd needs root (mount and pid namespaces, sshd's privilege separation)");
    assert!(Path::new(SSHD).is_file(), "{SSHD} is missing: install Debian's openssh-server (`scripts/deps test`)");
    assert!(Path::new(PYTHON).is_file(), "{PYTHON} is missing: install Debian's python3");
    // sshd's privilege separation directory (the package's tmpfiles.d entry makes it at boot).
    if !Path::new("/run/sshd").is_dir() {
        let _ = fs::create_dir_all("/run/sshd");
        let _ = fs::set_permissions("/run/sshd", fs::Permissions::from_mode(0o755));
    }
}

fn write_file(path: &Path, text: &str, mode: u32) {
    fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// The state file (see the top comment), written to a temporary name and renamed, so the agent
/// never reads half a file.
fn write_state(dir: &Path, state: &DeviceState) {
    let vrrp: Vec<_> =
        state.vrrp.iter().map(|g| json!({"interface": g.interface, "group": g.group, "state": g.state})).collect();
    let bgp: serde_json::Map<String, serde_json::Value> = state
        .bgp
        .iter()
        .map(|(inst, peers)| {
            let peers: Vec<_> = peers.iter().map(|p| json!({"peer": p.peer, "state": p.state, "as": p.asn})).collect();
            (inst.clone(), json!(peers))
        })
        .collect();
    let f = &state.faults;
    let doc = json!({
        "layout": match state.layout { Layout::Mx => "mx", Layout::Els => "els" },
        "vrrp": vrrp,
        "bgp": bgp,
        "faults": {"delay_s": f.delay.as_secs_f64(), "rpc_error": f.rpc_error, "truncate": f.truncate,
                   "drop": f.drop, "garbage": f.garbage},
    });
    let tmp = dir.join("state.json.tmp");
    write_file(&tmp, &serde_json::to_string_pretty(&doc).expect("state JSON"), 0o644);
    fs::rename(&tmp, dir.join("state.json")).expect("replace sshd state file");
}

fn host_key(dir: &Path) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "esi-monitor-test-sshd", "-f"])
        .arg(dir.join("ssh_host_ed25519_key"))
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run ssh-keygen ({e}): install openssh-client (`scripts/deps test`)"));
    assert!(out.status.success(), "ssh-keygen failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// `openssl passwd -6` of `password` (read from stdin, so it is not in a command line).
fn hash_password(password: &str) -> String {
    let mut child = Command::new("openssl")
        .args(["passwd", "-6", "-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run openssl ({e}): install Debian's openssl"));
    child.stdin.take().expect("openssl stdin").write_all(format!("{password}\n").as_bytes()).expect("write password");
    let out = child.wait_with_output().expect("openssl passwd");
    let hash = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && hash.starts_with("$6$"), "openssl passwd -6: {stderr}");
    hash
}

/// Copies of /etc/passwd, /etc/shadow and /etc/group with the test users (replacing any real
/// entry of the same name in the copies), bind-mounted over the real ones in sshd's namespace.
fn write_accounts(dir: &Path, users: &[(&str, &str)]) {
    let names: Vec<&str> = users.iter().map(|(n, _)| *n).collect();
    let copy = |path: &str| -> String {
        let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
        text.lines().filter(|l| !names.contains(&l.split(':').next().unwrap_or(""))).map(|l| format!("{l}\n")).collect()
    };
    let (mut passwd, mut shadow, mut group) = (copy("/etc/passwd"), copy("/etc/shadow"), copy("/etc/group"));
    let home = dir.display();
    for (n, (name, password)) in users.iter().enumerate() {
        let id = FIRST_UID + n as u32;
        passwd.push_str(&format!("{name}:x:{id}:{id}:esi-monitor test user:{home}:/bin/sh\n"));
        // No aging fields: the password never expires and needs no change.
        shadow.push_str(&format!("{name}:{}:::::::\n", hash_password(password)));
        group.push_str(&format!("{name}:x:{id}:\n"));
    }
    write_file(&dir.join("passwd"), &passwd, 0o644);
    write_file(&dir.join("shadow"), &shadow, 0o600);
    write_file(&dir.join("group"), &group, 0o644);
}

/// OpenSSH's (major, minor), e.g. (9, 2), from `sshd -V`.
fn sshd_version() -> (u32, u32) {
    static VERSION: OnceLock<(u32, u32)> = OnceLock::new();
    *VERSION.get_or_init(|| {
        let out = Command::new(SSHD).arg("-V").output().expect("run sshd -V");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout));
        let v = text.split("OpenSSH_").nth(1).unwrap_or("");
        let mut parts = v.split(|c: char| !c.is_ascii_digit()).map(|p| p.parse().unwrap_or(0));
        (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
    })
}

fn write_config(dir: &Path, addr: &str, port: u16, users: &[(&str, &str)]) {
    let d = dir.display();
    let allow: Vec<&str> = users.iter().map(|(n, _)| *n).collect();
    let mut conf = format!(
        "# Throwaway sshd of the NETCONF tests (tests/support/sshd.rs).\n\
         ListenAddress {addr}:{port}\n\
         HostKey {d}/ssh_host_ed25519_key\n\
         PidFile {d}/sshd.pid\n\
         LogLevel VERBOSE\n\
         PasswordAuthentication yes\n\
         KbdInteractiveAuthentication no\n\
         PubkeyAuthentication no\n\
         AuthorizedKeysFile none\n\
         PermitEmptyPasswords no\n\
         UsePAM no\n\
         PermitRootLogin no\n\
         AllowUsers {allow}\n\
         StrictModes no\n\
         UseDNS no\n\
         PrintMotd no\n\
         PrintLastLog no\n\
         X11Forwarding no\n\
         AllowTcpForwarding no\n\
         AllowAgentForwarding no\n\
         LoginGraceTime 30\n\
         MaxStartups 1000\n\
         MaxSessions 100\n\
         MaxAuthTries 6\n\
         Subsystem netconf {PYTHON} -S {d}/netconf_agent.py {d}/state.json {d}/events.log\n",
        allow = allow.join(" ")
    );
    // From 9.8 on, sshd would lock out a source address that fails logins (127.0.0.1, here).
    if sshd_version() >= (9, 8) {
        conf.push_str("PerSourcePenalties no\n");
    }
    write_file(&dir.join("sshd_config"), &conf, 0o644);
}

/// Starts `unshare … sh -c 'mount --bind …; exec sshd'` and waits until sshd sends its banner.
fn spawn_ready(dir: &Path, addr: &str, port: u16) -> Result<Running, String> {
    let d = dir.display();
    let script = format!(
        "set -e\n\
         mount --bind '{d}/passwd' /etc/passwd\n\
         mount --bind '{d}/shadow' /etc/shadow\n\
         mount --bind '{d}/group' /etc/group\n\
         exec {SSHD} -D -e -f '{d}/sshd_config' -E '{d}/sshd.log'\n"
    );
    let stderr = fs::File::create(dir.join("sshd.stderr")).expect("sshd stderr file");
    let stdout = stderr.try_clone().expect("sshd stdout file");
    let mut unshare = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--pid", "--fork", "--kill-child", "--mount-proc", "sh", "-c"])
        .arg(script)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run unshare ({e}): install Debian's util-linux"));
    let fail = |why: String| format!("sshd on {addr}:{port} {why}\n--- sshd.log:\n{}", read_tail(dir));
    match wait_ready(&mut unshare, dir, addr, port) {
        Ok(sshd_pid) => match fs::read_link(format!("/proc/{sshd_pid}/ns/pid")) {
            Ok(ns) => Ok(Running { unshare, sshd_pid, pid_ns: ns.to_string_lossy().into_owned() }),
            Err(e) => {
                let _ = unshare.kill();
                let _ = unshare.wait();
                Err(fail(format!("exited right after start ({e})")))
            }
        },
        Err(why) => {
            let _ = unshare.kill(); // --kill-child: sshd gets SIGKILL too
            let _ = unshare.wait();
            Err(fail(why))
        }
    }
}

fn read_tail(dir: &Path) -> String {
    let mut text = String::new();
    for name in ["sshd.log", "sshd.stderr"] {
        let bytes = fs::read(dir.join(name)).unwrap_or_default();
        text.push_str(&format!("[{name}]\n{}\n", String::from_utf8_lossy(&bytes[bytes.len().saturating_sub(3000)..])));
    }
    text
}

/// Waits (at most 10 s) until sshd logs that it listens on `addr:port` and a TCP connect gets
/// the `SSH-2.0-` banner; returns the host pid of sshd (the child of unshare). Fails when
/// unshare or sshd exits first.
fn wait_ready(unshare: &mut Child, dir: &Path, addr: &str, port: u16) -> Result<u32, String> {
    let deadline = Instant::now() + READY_LIMIT;
    let listening = format!("Server listening on {addr} port {port}.");
    let target: std::net::SocketAddr = format!("{addr}:{port}").parse().map_err(|e| format!("address: {e}"))?;
    loop {
        if let Some(status) = unshare.try_wait().expect("unshare status") {
            return Err(format!("exited at start ({status})"));
        }
        if Instant::now() >= deadline {
            return Err(format!("did not send its SSH banner within {READY_LIMIT:?}"));
        }
        // The log line proves the listening socket is this sshd's, the banner that it answers.
        let log = fs::read_to_string(dir.join("sshd.log")).unwrap_or_default();
        if log.contains(&listening) && banner(&target) {
            if let Some(pid) = children_of(unshare.id()).into_iter().next() {
                return Ok(pid);
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether `target` accepts a connection and sends `SSH-2.0-` (within 1 s).
fn banner(target: &std::net::SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(target, Duration::from_millis(500)) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while got.len() < 8 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    got.starts_with(b"SSH-2.0-")
}

/// Pids whose parent is `parent`.
fn children_of(parent: u32) -> Vec<u32> {
    proc_pids()
        .into_iter()
        .filter(|pid| {
            let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            status.lines().any(|l| l.starts_with("PPid:") && l.split_whitespace().nth(1) == Some(&parent.to_string()))
        })
        .collect()
}

fn proc_pids() -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else { return Vec::new() };
    entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect()
}

/// Live (not zombie) processes of pid namespace `ns` (as `readlink /proc/PID/ns/pid` names it).
fn namespace_pids(ns: &str) -> Vec<u32> {
    proc_pids()
        .into_iter()
        .filter(|pid| {
            let link: PathBuf = fs::read_link(format!("/proc/{pid}/ns/pid")).unwrap_or_default();
            link.to_string_lossy() == ns && !is_zombie(*pid)
        })
        .collect()
}

fn is_zombie(pid: u32) -> bool {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The state follows the command name in parentheses (which may hold spaces).
    stat.rsplit_once(')').map(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])).unwrap_or(true)
}

fn signal_kill(pids: &[u32]) {
    if pids.is_empty() {
        return;
    }
    let _ = Command::new("kill")
        .arg("-KILL")
        .args(pids.iter().map(|p| p.to_string()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// SIGKILL to sshd, pid 1 of its namespace: the kernel kills every other process there, then
/// unshare exits. Bounded waits; SIGKILL to unshare as the last resort (--kill-child).
fn terminate(mut running: Running) {
    signal_kill(&[running.sshd_pid]);
    let deadline = Instant::now() + STOP_LIMIT;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = running.unshare.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = running.unshare.kill();
    let _ = running.unshare.wait();
    let deadline = Instant::now() + STOP_LIMIT;
    loop {
        let left = namespace_pids(&running.pid_ns);
        if left.is_empty() {
            return;
        }
        if Instant::now() >= deadline {
            // No panic: this runs in Drop, maybe while a failed test unwinds.
            eprintln!("sshd stop: processes {left:?} still alive after {STOP_LIMIT:?}");
            return;
        }
        signal_kill(&left);
        std::thread::sleep(Duration::from_millis(5));
    }
}
