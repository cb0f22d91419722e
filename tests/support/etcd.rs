//! A real etcd (Debian's etcd-server) for the tests, the demo and the benchmarks: started on
//! free loopback ports with its own temporary data directory, stopped and removed when
//! dropped.
#![allow(dead_code)]

use esi_monitor::store::Store;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Etcd {
    child: Child,
    pub endpoint: String,
    peer_url: String,
    dir: tempfile::TempDir,
    /// Certificates of a TLS etcd (`start_secure`), with the client's.
    pki: Option<Pki>,
    /// The `etcd` configuration section a client of this etcd needs (TLS files, user).
    pub config: esi_monitor::config::Etcd,
}

/// A throwaway CA with a server certificate for 127.0.0.1 and a client certificate, made
/// with the openssl command (`make deps` installs it) in a temporary directory.
pub struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().expect("temp dir");
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .output()
                .expect("run openssl (make deps installs it)");
            assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
        let ca = ["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=test-ca"];
        openssl(&[&["req", "-x509"], &ec[..], &ca[..]].concat());
        let server = "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1";
        for (name, extensions) in [("server", server), ("client", "extendedKeyUsage=clientAuth")] {
            let ext = format!("{name}.ext");
            let text = format!("basicConstraints=CA:FALSE\n{extensions}\n");
            std::fs::write(dir.path().join(&ext), text).expect("write extensions");
            let (key, csr, pem) = (format!("{name}.key"), format!("{name}.csr"), format!("{name}.pem"));
            openssl(&[&["req"], &ec[..], &["-keyout", &key, "-out", &csr, "-subj", &format!("/CN={name}")]].concat());
            let signed = ["-CA", "ca.pem", "-CAkey", "ca.key", "-days", "2", "-extfile", &ext, "-out", &pem];
            openssl(&[&["x509", "-req", "-in", &csr], &signed[..]].concat());
        }
        Pki { dir }
    }

    /// A file of this PKI: `ca.pem`, `server.pem`, `server.key`, `client.pem`, `client.key`.
    pub fn path(&self, file: &str) -> String {
        self.dir.path().join(file).display().to_string()
    }
}

/// The password of the users `root` and `esi` of an etcd started with authentication.
pub const PASSWORD: &str = "pw-Zq8!secret";

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

fn etcd_binary() -> String {
    std::env::var("ETCD_BIN").unwrap_or_else(|_| "etcd".into())
}

impl Etcd {
    /// Starts etcd and waits until it answers (at most 30 s).
    pub fn start() -> Etcd {
        Etcd::start_secure(None, false)
    }

    /// Starts etcd serving https with `pki`'s server certificate and requiring a client
    /// certificate signed by its CA (when given), and with authentication on (when `auth`):
    /// users `root` and `esi` (read-write on every key under `/`), both with `PASSWORD`.
    /// `config` then holds the client certificate and user `esi`.
    pub fn start_secure(pki: Option<Pki>, auth: bool) -> Etcd {
        let mut etcd = Etcd::spawn_on_free_ports(pki);
        // A free port can be taken by another test before etcd binds it: etcd then exits, and
        // is started again on other ports (a few times).
        for _ in 0..4 {
            if etcd.try_wait_ready().is_ok() {
                break;
            }
            etcd = Etcd::spawn_on_free_ports(etcd.pki.take());
        }
        etcd.wait_ready();
        if auth {
            for args in [
                &["user", "add", "root", "--new-user-password", PASSWORD][..],
                &["user", "add", "esi", "--new-user-password", PASSWORD],
                &["role", "add", "esi"],
                &["role", "grant-permission", "esi", "--prefix=true", "readwrite", "/"],
                &["user", "grant-role", "esi", "esi"],
                &["auth", "enable"],
            ] {
                etcd.etcdctl(args);
            }
            etcd.config.username = "esi".into();
            etcd.config.password = esi_monitor::config::Secret::new(PASSWORD);
        }
        etcd
    }

    /// Kills etcd (SIGKILL) and starts it again on the same ports and data.
    pub fn restart(&mut self) {
        self.stop();
        self.child = spawn(self.dir.path(), &self.endpoint, &self.peer_url, self.pki.as_ref());
        self.wait_ready();
    }

    /// Kills etcd (SIGKILL); `restart` brings it back.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn spawn_on_free_ports(pki: Option<Pki>) -> Etcd {
        let dir = tempfile::tempdir().expect("temp dir");
        let (client, peer) = (free_port(), free_port());
        let scheme = if pki.is_some() { "https" } else { "http" };
        let endpoint = format!("{scheme}://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let child = spawn(dir.path(), &endpoint, &peer_url, pki.as_ref());
        let mut config = esi_monitor::config::Etcd { endpoints: vec![endpoint.clone()], ..Default::default() };
        if let Some(pki) = &pki {
            config.ca_file = pki.path("ca.pem");
            config.cert_file = pki.path("client.pem");
            config.key_file = pki.path("client.key");
        }
        Etcd { child, endpoint, peer_url, dir, pki, config }
    }

    fn wait_ready(&mut self) {
        if let Err(e) = self.try_wait_ready() {
            panic!("{e}");
        }
    }

    /// Waits (at most 30 s) until etcd answers; an error as soon as etcd has exited.
    fn try_wait_ready(&mut self) -> Result<(), String> {
        let quick = esi_monitor::config::Etcd { timeout_ms: 500, connect_timeout_ms: 500, ..self.config.clone() };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if Store::connect(&quick).is_ok() {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("etcd on {} exited ({status}) before it answered", self.endpoint));
            }
            if Instant::now() >= deadline {
                return Err(format!("etcd did not answer on {} within 30 s", self.endpoint));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs etcdctl against this etcd (with its certificates, as `root` once auth is on).
    pub fn etcdctl(&self, args: &[&str]) -> String {
        let mut cmd = Command::new("etcdctl");
        cmd.env("ETCDCTL_API", "3").arg(format!("--endpoints={}", self.endpoint));
        if let Some(pki) = &self.pki {
            cmd.arg(format!("--cacert={}", pki.path("ca.pem")))
                .arg(format!("--cert={}", pki.path("client.pem")))
                .arg(format!("--key={}", pki.path("client.key")));
        }
        if !self.config.username.is_empty() {
            cmd.arg(format!("--user=root:{PASSWORD}"));
        }
        let out = cmd.args(args).output().expect("run etcdctl (make test installs etcd-client)");
        assert!(out.status.success(), "etcdctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// etcdctl with arguments that need not be text (a key with a byte that is not UTF-8).
    pub fn etcdctl_bytes(&self, args: &[&[u8]]) -> String {
        use std::os::unix::ffi::OsStrExt;
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.endpoint))
            .args(args.iter().map(|a| std::ffi::OsStr::from_bytes(a)))
            .output()
            .expect("run etcdctl (make test installs etcd-client)");
        assert!(out.status.success(), "etcdctl: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Compacts the history up to the current revision (with etcdctl).
    pub fn compact(&self, revision: i64) {
        self.etcdctl(&["compact", &revision.to_string()]);
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `etcd --version`'s first line, e.g. `etcd Version: 3.4.23` → `3.4.23`.
    pub fn version() -> String {
        Command::new(etcd_binary())
            .arg("--version")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.lines().next().map(|l| l.trim_start_matches("etcd Version:").trim().to_string()))
            .unwrap_or_else(|| "?".into())
    }

    /// The `etcd:` line of an esi-monitor configuration reaching this etcd as `config` does
    /// (lease TTL 3 s, as `Monitor::start` uses).
    pub fn config_yaml(&self) -> String {
        let c = &self.config;
        format!(
            "etcd: {{endpoints: {:?}, lease_ttl_s: 3, ca_file: {:?}, cert_file: {:?}, key_file: {:?}, \
             username: {:?}, password: {:?}}}\n",
            c.endpoints, c.ca_file, c.cert_file, c.key_file, c.username, c.password.expose()
        )
    }

    pub fn store(&self) -> Store {
        Store::connect(&self.config).expect("connect to test etcd")
    }
}

fn spawn(dir: &std::path::Path, endpoint: &str, peer_url: &str, pki: Option<&Pki>) -> Child {
    let mut cmd = Command::new(etcd_binary());
    if let Some(pki) = pki {
        cmd.arg(format!("--cert-file={}", pki.path("server.pem")))
            .arg(format!("--key-file={}", pki.path("server.key")))
            .arg(format!("--trusted-ca-file={}", pki.path("ca.pem")))
            .arg("--client-cert-auth");
    }
    cmd.arg("--name=test")
        .arg(format!("--data-dir={}", dir.display()))
        .arg(format!("--listen-client-urls={endpoint}"))
        .arg(format!("--advertise-client-urls={endpoint}"))
        .arg(format!("--listen-peer-urls={peer_url}"))
        .arg(format!("--initial-advertise-peer-urls={peer_url}"))
        .arg(format!("--initial-cluster=test={peer_url}"))
        .arg("--log-level=error")
        .arg("--logger=zap")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start etcd ({e}); `make test` installs etcd-server"))
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A real etcd cluster of several members (Debian's etcd-server) on loopback, each with its
/// own ports and data directory, for the tests of faults: a member killed, restarted or
/// frozen (SIGSTOP) while esi-monitor runs against all of them.
pub struct Cluster {
    members: Vec<Member>,
    /// `--initial-cluster`: every member's name and peer URL.
    initial: String,
}

struct Member {
    name: String,
    child: Option<Child>,
    client: String,
    peer: String,
    dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts `n` members and waits until the cluster has a leader (at most 30 s).
    pub fn start(n: usize) -> Cluster {
        let members: Vec<Member> = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                child: None,
                client: format!("http://127.0.0.1:{}", free_port()),
                peer: format!("http://127.0.0.1:{}", free_port()),
                dir: tempfile::tempdir().expect("temp dir"),
            })
            .collect();
        let initial = members.iter().map(|m| format!("{}={}", m.name, m.peer)).collect::<Vec<_>>().join(",");
        let mut cluster = Cluster { members, initial };
        for i in 0..n {
            cluster.spawn(i, "new");
        }
        cluster.wait_leader();
        cluster
    }

    fn spawn(&mut self, i: usize, state: &str) {
        let m = &mut self.members[i];
        let child = Command::new(etcd_binary())
            .arg(format!("--name={}", m.name))
            .arg(format!("--data-dir={}", m.dir.path().display()))
            .arg(format!("--listen-client-urls={}", m.client))
            .arg(format!("--advertise-client-urls={}", m.client))
            .arg(format!("--listen-peer-urls={}", m.peer))
            .arg(format!("--initial-advertise-peer-urls={}", m.peer))
            .arg(format!("--initial-cluster={}", self.initial))
            .arg(format!("--initial-cluster-state={state}"))
            .arg("--initial-cluster-token=esi-test")
            .arg("--log-level=error")
            .arg("--logger=zap")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start etcd ({e}); `make test` installs etcd-server"));
        m.child = Some(child);
    }

    /// Every member's client URL.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client.clone()).collect()
    }

    /// The `etcd` configuration section reaching every member.
    pub fn config(&self) -> esi_monitor::config::Etcd {
        esi_monitor::config::Etcd { endpoints: self.endpoints(), ..Default::default() }
    }

    /// A client of the whole cluster.
    pub fn store(&self) -> Store {
        Store::connect(&self.config()).expect("connect to the test cluster")
    }

    /// The index of the member that leads now, as the running members say.
    pub fn leader(&self) -> Option<usize> {
        let running: Vec<&str> = self.members.iter().filter(|m| m.child.is_some()).map(|m| m.client.as_str()).collect();
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", running.join(",")))
            .args(["--command-timeout=1s", "endpoint", "status", "-w", "json"])
            .output()
            .ok()?;
        // One entry per endpoint that answered: its URL, its member id and the leader's id.
        let statuses: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        let leader = statuses.as_array()?.iter().find(|s| {
            let (id, leader) = (&s["Status"]["header"]["member_id"], &s["Status"]["leader"]);
            !leader.is_null() && leader != 0 && id == leader
        })?;
        let url = leader["Endpoint"].as_str()?;
        self.members.iter().position(|m| m.client == url)
    }

    /// Waits until a member leads (at most 30 s); its index.
    pub fn wait_leader(&self) -> usize {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(i) = self.leader() {
                return i;
            }
            assert!(Instant::now() < deadline, "the etcd cluster elected no leader within 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL of member `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts member `i` again on its data (after `kill`).
    pub fn restart(&mut self, i: usize) {
        self.spawn(i, "existing");
    }

    /// SIGSTOP (`STOP`) or SIGCONT (`CONT`) to member `i`: a frozen member keeps its
    /// connections open and answers nothing.
    pub fn signal(&self, i: usize, name: &str) {
        let pid = self.members[i].child.as_ref().expect("a running member").id().to_string();
        let sent = Command::new("kill").args([&format!("-{name}"), &pid]).status().expect("run kill");
        assert!(sent.success(), "kill -{name} {pid}");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            if self.members[i].child.is_some() {
                let _ = self.signal_quietly(i);
                self.kill(i);
            }
        }
    }
}

impl Cluster {
    /// SIGCONT before the kill, so that a frozen member can be reaped.
    fn signal_quietly(&self, i: usize) -> Option<()> {
        let pid = self.members[i].child.as_ref()?.id().to_string();
        Command::new("kill").args(["-CONT", &pid]).status().ok().map(drop)
    }
}
