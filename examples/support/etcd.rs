//! A throwaway etcd (Debian's etcd-server) on free loopback ports with its own temporary data
//! directory; killed and removed when dropped, also when the example panics.

use super::{free_port, wait_until};
use esi_monitor::store::Store;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Etcd {
    child: Child,
    pub endpoint: String,
    _dir: tempfile::TempDir,
}

impl Etcd {
    /// Starts etcd (`$ETCD_BIN` or `etcd` on the PATH) and waits until it answers (≤ 30 s).
    pub fn start() -> Result<Etcd, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("temp dir for etcd: {e}"))?;
        let (client, peer) = (free_port(), free_port());
        let endpoint = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let binary = std::env::var("ETCD_BIN").unwrap_or_else(|_| "etcd".into());
        let child = Command::new(&binary)
            .arg("--name=example")
            .arg(format!("--data-dir={}", dir.path().display()))
            .arg(format!("--listen-client-urls={endpoint}"))
            .arg(format!("--advertise-client-urls={endpoint}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=example={peer_url}"))
            .arg("--log-level=error")
            .arg("--logger=zap")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {binary} ({e}); `make deps` installs etcd-server"))?;
        let etcd = Etcd { child, endpoint, _dir: dir };
        wait_until(
            &format!("etcd to answer on {}", etcd.endpoint),
            Duration::from_secs(30),
            Duration::from_millis(50),
            || Store::connect(&[etcd.endpoint.clone()], Duration::from_millis(500)).ok(),
        )?;
        Ok(etcd)
    }

    pub fn store(&self) -> Result<Store, String> {
        Store::connect(&[self.endpoint.clone()], Duration::from_secs(10)).map_err(|e| e.to_string())
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `etcd --version`'s first line, e.g. `etcd Version: 3.4.23` → `3.4.23`.
    pub fn version() -> String {
        let binary = std::env::var("ETCD_BIN").unwrap_or_else(|_| "etcd".into());
        Command::new(binary)
            .arg("--version")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.lines().next().map(|l| l.trim_start_matches("etcd Version:").trim().to_string()))
            .unwrap_or_else(|| "?".into())
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
