//! The esi-monitor binary as the tests run it: a real process with its own configuration
//! file, killed when dropped.

use std::io::Write;
use std::process::{Child, Command, Stdio};

pub struct Monitor {
    pub child: Child,
    _config: tempfile::NamedTempFile,
    pub log: std::path::PathBuf,
    /// The configuration file it runs with (for `esi-monitor status --config`).
    pub config: std::path::PathBuf,
    _logdir: tempfile::TempDir,
}

impl Monitor {
    /// Starts `esi-monitor run` against `endpoint` (lease TTL 3 s, debug log) with extra
    /// YAML configuration lines (any section but `etcd` and `log`).
    pub fn start(endpoint: &str, extra: &str) -> Monitor {
        Monitor::start_env(endpoint, extra, &[])
    }

    /// The configuration `start` runs with.
    pub fn config_text(endpoint: &str, extra: &str) -> String {
        Monitor::config_on(&[endpoint.to_string()], "lease_ttl_s: 3", extra)
    }

    /// The configuration of an instance reaching `endpoints`, with more `etcd` keys
    /// (`lease_ttl_s: 3, timeout_ms: 1000`) and extra YAML lines (any section but `etcd`).
    pub fn config_on(endpoints: &[String], etcd: &str, extra: &str) -> String {
        // Several instances run at once in the tests: no status listener unless asked for.
        let metrics = if extra.contains("metrics:") { "" } else { "metrics: {listen: \"\"}\n" };
        let log = if extra.contains("log:") { "" } else { "log: {level: debug}\n" };
        format!("etcd: {{endpoints: {endpoints:?}, {etcd}}}\n{log}{metrics}{extra}")
    }

    /// `start`, with these environment variables set for the process.
    pub fn start_env(endpoint: &str, extra: &str, env: &[(&str, &str)]) -> Monitor {
        Monitor::spawn(&Monitor::config_text(endpoint, extra), env)
    }

    /// Starts `esi-monitor run` with this whole configuration text.
    pub fn start_with(config_text: &str) -> Monitor {
        Monitor::spawn(config_text, &[])
    }

    fn spawn(config_text: &str, env: &[(&str, &str)]) -> Monitor {
        let mut config = tempfile::NamedTempFile::new().expect("config file");
        config.write_all(config_text.as_bytes()).expect("write config");
        let logdir = tempfile::tempdir().expect("log dir");
        let log = logdir.path().join("esi-monitor.log");
        let child = Command::new(env!("CARGO_BIN_EXE_esi-monitor"))
            .arg("run")
            .arg("--config")
            .arg(config.path())
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start esi-monitor");
        Monitor { child, config: config.path().to_path_buf(), _config: config, log, _logdir: logdir }
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

impl Monitor {
    /// SIGTERM, then waits (at most `limit`) for the process to exit; returns its status.
    pub fn terminate(&mut self, limit: std::time::Duration) -> std::process::ExitStatus {
        self.signal("TERM");
        super::wait_for("esi-monitor to exit after SIGTERM", limit, || self.child.try_wait().ok().flatten())
    }

    /// The log, once it contains `needle` (at most `limit`); `what` names the wait.
    pub fn wait_log(&self, what: &str, needle: &str, limit: std::time::Duration) -> String {
        super::wait_for(what, limit, || {
            let log = self.log_text();
            log.contains(needle).then_some(log)
        })
    }

    /// Sends a signal (`TERM`, `HUP`, …) with kill(1).
    pub fn signal(&self, name: &str) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args([&format!("-{name}"), &pid]).status().expect("run kill");
        assert!(sent.success(), "kill -{name} {pid}");
    }
}
