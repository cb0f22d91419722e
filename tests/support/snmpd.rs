//! A real SNMP agent (net-snmp's `snmpd`, v2c) for the SNMP plugin's tests and benchmarks:
//! it serves Junos-like interfaces (ifName, ifOperStatus) and sysUpTime from a state file the
//! test rewrites, so a test can flip a port, rename or renumber interfaces, or make the device
//! "reboot" (sysUpTime going backwards).
//!
//! How it works:
//! - `snmpd` runs in the foreground (`-f`) on `udp:ADDR:PORT` with only its own configuration
//!   (`-C -c agent.conf`), its own persistent directory and log inside a temporary directory,
//!   and only two MIB modules initialised (`-I vacm_conf,pass_persist`): the host's real
//!   ifTable/ifXTable/system group are never registered, so nothing shadows the values below.
//!   That needs no root: an unprivileged port, and no path outside the temporary directory.
//! - One `pass_persist` script (python3, started by snmpd on the first request and kept
//!   running) owns the whole mib-2 subtree `.1.3.6.1.2.1` and answers get/getnext from the
//!   state file: sysUpTime.0, ifOperStatus.<ifIndex>, ifName.<ifIndex> and, like a real
//!   device, the next ifXTable column ifInMulticastPkts.<ifIndex> (Counter32 0), so that a
//!   walk or GETBULK over ifName leaves the ifName subtree after the last interface. The script
//!   reads the file on every request (a few µs) and re-parses it only when its bytes changed;
//!   the harness replaces the file atomically (write + rename), so a change is seen by the
//!   very next request.
//! - sysUpTime = base + (now − t0) × 100 ticks (mod 2³²); `set_uptime_ticks` resets base and
//!   t0, so it can jump backwards and keeps counting from there.
//! - A request with another community gets no answer at all (snmpd drops it silently: the
//!   client sees a timeout), as with a real device.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::fs;
use std::net::UdpSocket;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// One interface of the simulated device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub if_index: u32,
    pub name: String,
    pub up: bool,
}

impl Interface {
    pub fn new(if_index: u32, name: &str, up: bool) -> Interface {
        Interface { if_index, name: name.to_string(), up }
    }
}

/// An SNMPv3 user of the agent (`createUser` and `rouser` lines): `auth` is net-snmp's name
/// of the protocol (MD5, SHA, SHA-224, SHA-256, SHA-384, SHA-512), `privacy` its privacy
/// protocol (DES, AES, AES-192, AES-256) and password, or none (authNoPriv).
#[derive(Debug, Clone)]
pub struct V3User {
    pub name: String,
    pub auth: String,
    pub auth_password: String,
    pub privacy: Option<(String, String)>,
}

impl V3User {
    pub fn new(name: &str, auth: &str, auth_password: &str, privacy: Option<(&str, &str)>) -> V3User {
        let privacy = privacy.map(|(p, pw)| (p.to_string(), pw.to_string()));
        V3User { name: name.into(), auth: auth.into(), auth_password: auth_password.into(), privacy }
    }
}

/// Sends a notification with net-snmp's `snmptrap` (or `snmpinform` when `inform`), `args`
/// being its arguments (version, security, `--clientaddr`, destination, uptime, trap OID,
/// varbinds); true when it exited 0 (an inform: when it was acknowledged).
pub fn send_trap(inform: bool, args: &[&str]) -> bool {
    let tool = if inform { "snmpinform" } else { "snmptrap" };
    Command::new(tool)
        .args(args)
        .env("MIBS", "")
        .env("SNMPCONFPATH", "/nonexistent")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("cannot run {tool} ({e}): install Debian's snmp (`make deps`)"))
        .success()
}

/// A running snmpd; dropping it stops the agent (and its script) and removes its directory.
pub struct Snmpd {
    addr: String,
    port: u16,
    community: String,
    child: Option<Child>,
    state: Mutex<State>,
    dir: tempfile::TempDir,
}

struct State {
    interfaces: Vec<Interface>,
    uptime_base: u32,
    uptime_t0: f64,
}

const READY_LIMIT: Duration = Duration::from_secs(10);
const STOP_LIMIT: Duration = Duration::from_secs(5);

impl Snmpd {
    /// Starts snmpd on `addr` (e.g. "127.0.0.5") on a free UDP port, read-only v2c community
    /// `community`, serving `interfaces`, and waits (at most 10 s) until it answers a GET of
    /// sysUpTime. Panics with a clear message when snmpd is missing or does not come up.
    pub fn start(addr: &str, community: &str, interfaces: &[Interface]) -> Snmpd {
        // The free port can be taken by someone else before snmpd binds it: try a few.
        let mut last = String::new();
        for _ in 0..5 {
            let port = Self::free_port(&[addr]);
            match Self::try_start(addr, port, community, &[], interfaces) {
                Ok(agent) => return agent,
                Err(e) => last = e,
            }
        }
        panic!("{last}");
    }

    /// Like `start`, with SNMPv3 `users` as well (the v2c community stays, for readiness).
    pub fn start_v3(addr: &str, community: &str, users: &[V3User], interfaces: &[Interface]) -> Snmpd {
        let mut last = String::new();
        for _ in 0..5 {
            let port = Self::free_port(&[addr]);
            match Self::try_start(addr, port, community, users, interfaces) {
                Ok(agent) => return agent,
                Err(e) => last = e,
            }
        }
        panic!("{last}");
    }

    /// Like `start`, on a fixed port: several agents on different 127.0.0.N can share one port
    /// number, as real devices all listen on 161.
    pub fn start_on(addr: &str, port: u16, community: &str, interfaces: &[Interface]) -> Snmpd {
        Self::try_start(addr, port, community, &[], interfaces).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A UDP port that is free on every one of `addrs` right now (for `start_on`).
    pub fn free_port(addrs: &[&str]) -> u16 {
        for _ in 0..100 {
            let first = UdpSocket::bind((addrs[0], 0)).unwrap_or_else(|e| panic!("bind {}:0: {e}", addrs[0]));
            let port = first.local_addr().expect("local addr").port();
            if addrs[1..].iter().all(|a| UdpSocket::bind((*a, port)).is_ok()) {
                return port;
            }
        }
        panic!("no UDP port free on all of {addrs:?} after 100 tries");
    }

    /// The Junos-like default set: xe-0/0/3 (ifIndex 513), xe-0/0/3.1025 (545), xe-0/0/4 (514),
    /// ae0.1025 (560), all up.
    pub fn junos_interfaces() -> Vec<Interface> {
        vec![
            Interface::new(513, "xe-0/0/3", true),
            Interface::new(545, "xe-0/0/3.1025", true),
            Interface::new(514, "xe-0/0/4", true),
            Interface::new(560, "ae0.1025", true),
        ]
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn community(&self) -> &str {
        &self.community
    }

    /// `addr:port` as a socket address (e.g. for `UdpDelay`).
    pub fn socket_addr(&self) -> std::net::SocketAddr {
        format!("{}:{}", self.addr, self.port).parse().expect("agent socket address")
    }

    /// The pid of the snmpd process, when running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// The interfaces currently served.
    pub fn interfaces(&self) -> Vec<Interface> {
        self.state.lock().unwrap().interfaces.clone()
    }

    /// Sets the oper status of the interface named `name` (panics when there is none); the
    /// agent's next answer has it.
    pub fn set_up(&self, name: &str, up: bool) {
        let mut state = self.state.lock().unwrap();
        let iface = state
            .interfaces
            .iter_mut()
            .find(|i| i.name == name)
            .unwrap_or_else(|| panic!("set_up: agent {} has no interface {name:?}", self.addr));
        iface.up = up;
        write_state(self.dir.path(), &state);
    }

    /// How many times each ifIndex's ifOperStatus was read (one per varbind of a GET), since
    /// the agent started: what the tests count polls by, at the device.
    pub fn status_reads(&self) -> std::collections::HashMap<u32, u64> {
        let mut reads = std::collections::HashMap::new();
        let text = std::fs::read_to_string(self.dir.path().join("state.reads")).unwrap_or_default();
        for index in text.lines().filter_map(|l| l.parse::<u32>().ok()) {
            *reads.entry(index).or_insert(0) += 1;
        }
        reads
    }

    /// Replaces the whole interface set (rename, renumber, remove, add).
    pub fn set_interfaces(&self, interfaces: &[Interface]) {
        check_interfaces(interfaces);
        let mut state = self.state.lock().unwrap();
        state.interfaces = interfaces.to_vec();
        write_state(self.dir.path(), &state);
    }

    /// Makes sysUpTime read `ticks` now (e.g. lower than before = a reboot); it keeps moving
    /// forward from there.
    pub fn set_uptime_ticks(&self, ticks: u32) {
        let mut state = self.state.lock().unwrap();
        state.uptime_base = ticks;
        state.uptime_t0 = unix_now();
        write_state(self.dir.path(), &state);
    }

    /// Stops the agent (SIGTERM, then SIGKILL after 5 s): requests get no answer until
    /// `restart`.
    pub fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            terminate(child);
        }
    }

    /// Starts the agent again (stopping it first if it runs) with the same address, port,
    /// community and state (sysUpTime keeps counting; use `set_uptime_ticks` for a reboot),
    /// and waits until it answers.
    pub fn restart(&mut self) {
        self.stop();
        let mut last = String::new();
        // Right after a stop the port may still be held for a moment: a few tries.
        for _ in 0..5 {
            match spawn_ready(self.dir.path(), &self.addr, self.port, &self.community) {
                Ok(child) => {
                    self.child = Some(child);
                    return;
                }
                Err(e) => last = e,
            }
        }
        panic!("{last}");
    }

    fn try_start(addr: &str, port: u16, community: &str, users: &[V3User], interfaces: &[Interface]) -> Result<Snmpd, String> {
        assert!(
            !community.is_empty() && !community.chars().any(|c| c.is_whitespace() || c == '"' || c == '#'),
            "community {community:?}: use a plain word"
        );
        check_interfaces(interfaces);
        let dir = tempfile::Builder::new().prefix("snmpd-").tempdir().expect("temp dir for snmpd");
        let state = State { interfaces: interfaces.to_vec(), uptime_base: 0, uptime_t0: unix_now() };
        write_state(dir.path(), &state);
        write_config(dir.path(), community, users);
        let child = spawn_ready(dir.path(), addr, port, community)?;
        Ok(Snmpd {
            addr: addr.to_string(),
            port,
            community: community.to_string(),
            child: Some(child),
            state: Mutex::new(state),
            dir,
        })
    }
}

impl Drop for Snmpd {
    fn drop(&mut self) {
        self.stop();
    }
}

fn check_interfaces(interfaces: &[Interface]) {
    for i in interfaces {
        assert!(!i.name.contains(['\n', '\r']), "interface name {:?} has a line break", i.name);
    }
}

fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs_f64()
}

/// The state file, one record a line:
/// `uptime <base ticks> <t0 unix seconds>` and `if <ifIndex> <1 up|2 down> <name>`.
/// Written to a temporary name and renamed, so the script never sees half a file.
fn write_state(dir: &Path, state: &State) {
    let mut text = format!("uptime {} {:.6}\n", state.uptime_base, state.uptime_t0);
    for i in &state.interfaces {
        let _ = writeln!(text, "if {} {} {}", i.if_index, if i.up { 1 } else { 2 }, i.name);
    }
    let tmp = dir.join("state.tmp");
    fs::write(&tmp, text).expect("write snmpd state file");
    fs::rename(&tmp, dir.join("state")).expect("replace snmpd state file");
}

fn python() -> &'static str {
    // The absolute path avoids wrappers such as pyenv shims (slow to start).
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

fn write_config(dir: &Path, community: &str, users: &[V3User]) {
    let d = dir.display();
    fs::create_dir_all(dir.join("persist")).expect("snmpd persistent dir");
    fs::write(dir.join("agent.py"), SCRIPT).expect("write pass_persist script");
    let mut v3 = String::new();
    for u in users {
        let (level, privacy) = match &u.privacy {
            Some((p, pw)) => ("priv", format!(" {p} \"{pw}\"")),
            None => ("auth", String::new()),
        };
        let _ = writeln!(v3, "createUser {} {} \"{}\"{privacy}\nrouser {} {level}", u.name, u.auth, u.auth_password, u.name);
    }
    let conf = v3 + &format!(
        "[snmp] persistentDir {d}/persist\n\
         dontLogTCPWrappersConnects yes\n\
         rocommunity {community} default\n\
         pass_persist .1.3.6.1.2.1 {py} -S {d}/agent.py {d}/state\n",
        py = python()
    );
    fs::write(dir.join("agent.conf"), conf).expect("write snmpd config");
}

fn snmpd_command() -> Command {
    if let Ok(bin) = std::env::var("SNMPD_BIN") {
        return Command::new(bin);
    }
    // Debian puts snmpd in /usr/sbin, which is not on a normal user's PATH.
    let on_path =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).any(|d| d.join("snmpd").is_file())).unwrap_or(false);
    if !on_path && Path::new("/usr/sbin/snmpd").is_file() {
        Command::new("/usr/sbin/snmpd")
    } else {
        Command::new("snmpd")
    }
}

fn spawn_ready(dir: &Path, addr: &str, port: u16, community: &str) -> Result<Child, String> {
    let log = dir.join("snmpd.log");
    let stderr = fs::File::create(dir.join("snmpd.stderr")).expect("snmpd stderr file");
    let mut child = snmpd_command()
        .arg("-f")
        .arg("-C")
        .arg("-c")
        .arg(dir.join("agent.conf"))
        .arg("-A")
        .arg("-Lf")
        .arg(&log)
        .arg("-p")
        .arg(dir.join("snmpd.pid"))
        .arg("-I")
        .arg("vacm_conf,usmConf,pass_persist")
        .arg(format!("udp:{addr}:{port}"))
        .env("MIBS", "")
        .env("SNMP_PERSISTENT_DIR", dir.join("persist"))
        .env("SNMPCONFPATH", dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start snmpd ({e}): install Debian's snmpd (`make deps`), or set SNMPD_BIN"));
    match wait_ready(&mut child, addr, port, community) {
        Ok(()) => Ok(child),
        Err(why) => {
            terminate(child);
            Err(format!(
                "snmpd on udp:{addr}:{port} {why}\n--- snmpd.log:\n{}\n--- stderr:\n{}",
                read_tail(&log),
                read_tail(&dir.join("snmpd.stderr"))
            ))
        }
    }
}

fn read_tail(path: &Path) -> String {
    let bytes = fs::read(path).unwrap_or_default();
    String::from_utf8_lossy(&bytes[bytes.len().saturating_sub(2000)..]).into_owned()
}

/// Sends GETs of sysUpTime.0 until one is answered with a TimeTicks value (which proves snmpd
/// and the script both work), snmpd exits, or 10 s pass.
fn wait_ready(child: &mut Child, addr: &str, port: u16, community: &str) -> Result<(), String> {
    let sock = UdpSocket::bind(("127.0.0.1", 0)).expect("bind probe socket");
    sock.set_read_timeout(Some(Duration::from_millis(100))).expect("probe timeout");
    let deadline = Instant::now() + READY_LIMIT;
    let mut request_id: u16 = 1;
    let mut buf = [0u8; 1500];
    loop {
        if let Some(status) = child.try_wait().expect("snmpd status") {
            return Err(format!("exited at start ({status})"));
        }
        if Instant::now() >= deadline {
            return Err(format!("did not answer a GET of sysUpTime within {READY_LIMIT:?}"));
        }
        request_id = request_id.wrapping_add(1);
        let _ = sock.send_to(&get_sysuptime(community, request_id), (addr, port));
        // Drain answers until this probe's timeout; any sysUpTime TimeTicks answer will do.
        while let Ok((n, _)) = sock.recv_from(&mut buf) {
            if is_uptime_answer(&buf[..n]) {
                return Ok(());
            }
        }
    }
}

const SYS_UPTIME_OID: [u8; 10] = [0x06, 0x08, 0x2b, 0x06, 0x01, 0x02, 0x01, 0x01, 0x03, 0x00];

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len.to_be_bytes().iter().copied().skip_while(|b| *b == 0).collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

/// A BER-encoded SNMPv2c GetRequest for sysUpTime.0.
fn get_sysuptime(community: &str, request_id: u16) -> Vec<u8> {
    let varbind = tlv(0x30, &[&SYS_UPTIME_OID[..], &[0x05, 0x00]].concat());
    let pdu_body =
        [tlv(0x02, &request_id.to_be_bytes()), tlv(0x02, &[0]), tlv(0x02, &[0]), tlv(0x30, &varbind)].concat();
    let msg = [tlv(0x02, &[1]), tlv(0x04, community.as_bytes()), tlv(0xa0, &pdu_body)].concat();
    tlv(0x30, &msg)
}

/// A response carrying sysUpTime.0 as TimeTicks (tag 0x43).
fn is_uptime_answer(packet: &[u8]) -> bool {
    packet.windows(SYS_UPTIME_OID.len() + 1).any(|w| w[..SYS_UPTIME_OID.len()] == SYS_UPTIME_OID && w[10] == 0x43)
}

/// SIGTERM (snmpd then stops its pass_persist script and reaps it), bounded wait, SIGKILL.
fn terminate(mut child: Child) {
    let asked = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if asked {
        let deadline = Instant::now() + STOP_LIMIT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The pass_persist script (see the top comment). Protocol: `PING` → `PONG`;
/// `get`/`getnext` + OID → OID, type, value lines, or `NONE`; `set` → `not-writable`.
const SCRIPT: &str = r#"# pass_persist script of the test SNMP agent (written by tests/support/snmpd.rs).
import bisect, sys, time

STATE = sys.argv[1]
READS = open(STATE + '.reads', 'a', buffering=1)
STATUS = (1, 3, 6, 1, 2, 1, 2, 2, 1, 8)
raw = None
keys, rows = [], []
base, t0 = 0, 0.0

def load():
    global raw, keys, rows, base, t0
    try:
        with open(STATE, 'rb') as f:
            data = f.read()
    except OSError:
        return
    if data == raw:
        return
    b, t, table = 0, time.time(), []
    for line in data.decode('utf-8', 'replace').splitlines():
        p = line.split(' ', 3)
        if p[0] == 'uptime' and len(p) >= 3:
            b, t = int(p[1]), float(p[2])
        elif p[0] == 'if' and len(p) == 4:
            table.append((int(p[1]), p[2], p[3]))
    r = [((1, 3, 6, 1, 2, 1, 1, 3, 0), 'timeticks', None)]
    for idx, status, name in table:
        r.append(((1, 3, 6, 1, 2, 1, 2, 2, 1, 8, idx), 'integer', status))
        r.append(((1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 1, idx), 'string', name))
        r.append(((1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 2, idx), 'counter', '0'))
    r.sort()
    raw, base, t0 = data, b, t
    keys = [k for k, _, _ in r]
    rows = [('.' + '.'.join(map(str, k)), ty, v) for k, ty, v in r]

def oid_of(line):
    try:
        return tuple(int(x) for x in line.strip().strip('.').split('.') if x)
    except ValueError:
        return ()

def main():
    inp, out = sys.stdin, sys.stdout
    while True:
        line = inp.readline()
        if not line:
            return
        cmd = line.strip()
        if cmd == 'PING':
            out.write('PONG\n')
        elif cmd == 'get' or cmd == 'getnext':
            oid = oid_of(inp.readline())
            load()
            if cmd == 'get':
                if oid[:10] == STATUS and len(oid) == 11:
                    READS.write('%d\n' % oid[10])
                i = bisect.bisect_left(keys, oid)
                hit = i < len(keys) and keys[i] == oid
            else:
                i = bisect.bisect_right(keys, oid)
                hit = i < len(keys)
            if hit:
                text, ty, v = rows[i]
                if v is None:
                    v = str(int(base + (time.time() - t0) * 100) % 4294967296)
                out.write(text + '\n' + ty + '\n' + v + '\n')
            else:
                out.write('NONE\n')
        elif cmd == 'set':
            inp.readline()
            inp.readline()
            out.write('not-writable\n')
        else:
            continue
        out.flush()

main()
"#;
