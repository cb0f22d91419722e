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
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

fn etcd_binary() -> String {
    std::env::var("ETCD_BIN").unwrap_or_else(|_| "etcd".into())
}

impl Etcd {
    /// Starts etcd and waits until it answers (at most 30 s).
    pub fn start() -> Etcd {
        let dir = tempfile::tempdir().expect("temp dir");
        let (client, peer) = (free_port(), free_port());
        let endpoint = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let child = spawn(dir.path(), &endpoint, &peer_url);
        let etcd = Etcd { child, endpoint, peer_url, dir };
        etcd.wait_ready();
        etcd
    }

    /// Kills etcd (SIGKILL) and starts it again on the same ports and data.
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn(self.dir.path(), &self.endpoint, &self.peer_url);
        self.wait_ready();
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if Store::connect(std::slice::from_ref(&self.endpoint), Duration::from_millis(500)).is_ok() {
                return;
            }
            assert!(Instant::now() < deadline, "etcd did not answer on {} within 30 s", self.endpoint);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Compacts the history up to the current revision (with etcdctl).
    pub fn compact(&self, revision: i64) {
        let status = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.endpoint))
            .arg("compact")
            .arg(revision.to_string())
            .stdout(Stdio::null())
            .status()
            .expect("run etcdctl (make test installs etcd-client)");
        assert!(status.success(), "etcdctl compact {revision}");
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

    pub fn store(&self) -> Store {
        Store::connect(std::slice::from_ref(&self.endpoint), Duration::from_secs(5)).expect("connect to test etcd")
    }
}

fn spawn(dir: &std::path::Path, endpoint: &str, peer_url: &str) -> Child {
        Command::new(etcd_binary())
            .arg("--name=test")
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
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
