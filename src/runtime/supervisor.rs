//! The supervisor thread: tells systemd when the service is ready (the job table and the
//! registry have been read), what it is doing (STATUS lines), and that it is stopping; and
//! applies a reloaded configuration (SIGHUP) to the parts that can change while running.

use super::watcher::Work;
use super::Context;
use crate::config::Config;
use crate::notify;
use crossbeam_channel::{select, Receiver, Sender};
use std::sync::Arc;
use std::time::Duration;

/// How often the STATUS line is refreshed.
const STATUS_EVERY: Duration = Duration::from_secs(5);

/// Lets a thread say that its initial read is done.
#[derive(Clone)]
pub struct Ready(Sender<&'static str>);

impl Ready {
    pub fn channel() -> (Ready, Receiver<&'static str>) {
        let (tx, rx) = crossbeam_channel::unbounded();
        (Ready(tx), rx)
    }

    /// `what` has been read (again, after a resync: only the first time counts).
    pub fn mark(&self, what: &'static str) {
        let _ = self.0.send(what);
    }
}

/// What the supervisor watches.
pub struct Supervisor {
    pub ctx: Arc<Context>,
    /// The initial reads READY waits for (`jobs`, and `registry` when polling).
    pub awaited: Vec<&'static str>,
    pub ready: Receiver<&'static str>,
    /// Validated configurations from SIGHUP.
    pub reloads: Receiver<Config>,
    /// Where the scheduler takes its new settings.
    pub scheduler: Sender<Config>,
    /// The work queue, for its depth.
    pub queue: Receiver<Work>,
}

impl Supervisor {
    /// Runs until `stop` fires or closes.
    pub fn run(self, stop: Receiver<()>) {
        let mut awaited = self.awaited.clone();
        let mut reloads = self.reloads.clone();
        let mut ready = self.ready.clone();
        loop {
            select! {
                recv(ready) -> what => match what {
                    Ok(what) => {
                        let was_waiting = !awaited.is_empty();
                        awaited.retain(|w| *w != what);
                        if was_waiting && awaited.is_empty() {
                            log::info!("ready: job table and registry read");
                            crate::metrics::set_ready(true);
                            notify::send(&format!("READY=1\nSTATUS={}", self.status()));
                        }
                    }
                    Err(_) => ready = crossbeam_channel::never(),
                },
                recv(reloads) -> new => match new {
                    Ok(new) => self.reload(new),
                    Err(_) => reloads = crossbeam_channel::never(),
                },
                recv(stop) -> _ => {
                    crate::metrics::set_ready(false);
                    notify::send("STOPPING=1\nSTATUS=stopping: finishing running jobs");
                    return;
                }
                default(STATUS_EVERY) => {
                    if awaited.is_empty() {
                        notify::send(&format!("STATUS={}", self.status()));
                    }
                }
            }
        }
    }

    /// What `systemctl status` shows.
    fn status(&self) -> String {
        format!("{}; {} jobs queued", crate::metrics::summary(), self.queue.len())
    }

    /// Applies what can change while running; the rest is kept, with a warning.
    fn reload(&self, new: Config) {
        notify::send("RELOADING=1");
        let running = self.ctx.config();
        let (effective, restart) = running.reloaded(new);
        crate::logging::configure(effective.log_level(), effective.log.format == "json");
        if effective.snmp.credentials != running.snmp.credentials {
            let profiles = crate::plugins::snmp::credentials::Profiles::new(&effective.snmp.credentials);
            log::info!("SNMP credential profiles reloaded: {} profiles", profiles.len());
            self.ctx.clients.snmp.set_profiles(profiles);
        }
        let _ = self.scheduler.send(effective.clone());
        self.ctx.set_config(effective);
        if restart.is_empty() {
            log::info!("configuration reloaded");
        } else {
            log::warn!("configuration reloaded; changes to {} take effect after a restart", restart.join(", "));
        }
        notify::send(&format!("READY=1\nSTATUS={}", self.status()));
    }
}
