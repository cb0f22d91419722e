//! A real etcd (Debian's etcd-server) for the tests: started on free loopback ports with its
//! own temporary data directory, stopped and removed when dropped.

use esi_monitor::store::Store;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Etcd {
    child: Child,
    pub endpoint: String,
    _dir: tempfile::TempDir,
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
        let child = Command::new(etcd_binary())
            .arg("--name=test")
            .arg(format!("--data-dir={}", dir.path().display()))
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
            .unwrap_or_else(|e| panic!("cannot start etcd ({e}); `make test` installs etcd-server"));
        let etcd = Etcd { child, endpoint, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if Store::connect(&[etcd.endpoint.clone()], Duration::from_millis(500)).is_ok() {
                return etcd;
            }
            assert!(Instant::now() < deadline, "etcd did not answer on {} within 30 s", etcd.endpoint);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn store(&self) -> Store {
        Store::connect(&[self.endpoint.clone()], Duration::from_secs(5)).expect("connect to test etcd")
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
