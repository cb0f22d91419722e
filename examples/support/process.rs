//! Child processes the examples start (esi-monitor, the Contrail simulator): their output
//! goes to a log file in a temporary directory, and they are killed when dropped, also when
//! the example panics or returns early with an error.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Proc {
    pub name: String,
    child: Child,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Proc {
    /// Starts `esi-monitor run --config <file>` with the given YAML; stderr (its log) goes to
    /// the log file.
    pub fn esi_monitor(binary: &Path, config_yaml: &str) -> Result<Proc, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
        let config = dir.path().join("esi-monitor.yaml");
        std::fs::File::create(&config)
            .and_then(|mut f| f.write_all(config_yaml.as_bytes()))
            .map_err(|e| format!("write {}: {e}", config.display()))?;
        let log = dir.path().join("esi-monitor.log");
        let log_file = std::fs::File::create(&log).map_err(|e| format!("create {}: {e}", log.display()))?;
        let child = Command::new(binary)
            .arg("run")
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        Ok(Proc { name: "esi-monitor".into(), child, log, _dir: dir })
    }

    /// Starts the Contrail simulator on `listen` and waits (≤ 10 s) for its
    /// `listening on <url>` line; returns the process and the URL.
    pub fn contrail_sim(binary: &Path, listen: &str, extra: &[String]) -> Result<(Proc, String), String> {
        let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
        let log = dir.path().join("contrail_sim.log");
        let log_file = std::fs::File::create(&log).map_err(|e| format!("create {}: {e}", log.display()))?;
        let mut child = Command::new(binary)
            .arg("--listen")
            .arg(listen)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let proc = Proc { name: "contrail_sim".into(), child, log, _dir: dir };
        // Read the first line on a helper thread so that the wait is bounded.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let first = lines.next();
            let _ = tx.send(first);
            for _ in lines {} // keep draining so the simulator never blocks on a full pipe
        });
        let line = match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Some(Ok(line))) => line,
            Ok(_) => return Err(format!("contrail_sim exited before listening: {}", proc.log_tail(5).join(" | "))),
            Err(_) => return Err("timed out after 10 s waiting for contrail_sim to print `listening on …`".into()),
        };
        let url = line
            .strip_prefix("listening on ")
            .map(str::trim)
            .ok_or_else(|| format!("unexpected first line from contrail_sim: {line:?}"))?
            .to_string();
        Ok((proc, url))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The last `n` lines of the log file.
    pub fn log_tail(&self, n: usize) -> Vec<String> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        lines[lines.len().saturating_sub(n)..].to_vec()
    }

    /// CPU time used so far (user + system), from /proc/<pid>/stat.
    pub fn cpu_seconds(&self) -> Option<f64> {
        super::proc_stats::cpu_seconds(self.pid())
    }

    /// Peak resident set size in KiB (VmHWM from /proc/<pid>/status).
    pub fn peak_rss_kib(&self) -> Option<u64> {
        super::proc_stats::status_kib(self.pid(), "VmHWM")
    }

    /// Kills the process (SIGKILL: esi-monitor's lease then expires by itself) and reaps it.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

