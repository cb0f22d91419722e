//! The esi-monitor binary as the tests run it: a real process with its own configuration
//! file, killed when dropped.

use std::io::Write;
use std::process::{Child, Command, Stdio};

pub struct Monitor {
    pub child: Child,
    _config: tempfile::NamedTempFile,
    pub log: std::path::PathBuf,
    _logdir: tempfile::TempDir,
}

impl Monitor {
    /// Starts `esi-monitor run` against `endpoint` with extra YAML configuration lines.
    pub fn start(endpoint: &str, extra: &str) -> Monitor {
        let mut config = tempfile::NamedTempFile::new().expect("config file");
        writeln!(config, "etcd: {{endpoints: [\"{endpoint}\"], lease_ttl_s: 3}}\nlog: {{level: debug}}\n{extra}")
            .expect("write config");
        let logdir = tempfile::tempdir().expect("log dir");
        let log = logdir.path().join("esi-monitor.log");
        let child = Command::new(env!("CARGO_BIN_EXE_esi-monitor"))
            .arg("run")
            .arg("--config")
            .arg(config.path())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start esi-monitor");
        Monitor { child, _config: config, log, _logdir: logdir }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: the process gets no chance to clean up (its lease expires later).
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.kill9();
    }
}
