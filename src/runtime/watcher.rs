//! The watcher thread: keeps a table of every `/jobs/` key (all, working, finished) fed by an
//! initial range read and a watch, and hands each monitoring job to the pool once its
//! dependencies are finished and nobody holds a claim on it. A broken watch is repaired by
//! reading everything again, so no event can be lost.
//!
//! A job that had to wait for etcd is tried again after a capped backoff; a claim of this
//! instance that no pool thread holds (its release failed while etcd was away) is handed
//! back to a thread with its token. Nothing is tried again without a reason: a dropped job
//! runs again only when its keys change, and an entry that cannot be handled (not JSON, a
//! key that is not text) is reported once and left alone.

use crate::job::{self, Job};
use crate::keys;
use super::supervisor::Ready;
use super::follow::Change;
use crate::metrics::Watched;
use crate::store::{Kv, Store, StoreError};
use crossbeam_channel::{select, Receiver, Sender, TrySendError};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A runnable job handed to the pool, with the create revision of its `/jobs/all` key.
#[derive(Debug, Clone)]
pub struct Work {
    pub job: Arc<Job>,
    pub create_revision: i64,
    /// This instance's claim token, when the job already carries our claim (a release that
    /// failed): the pool reads the claim back instead of claiming.
    pub held: Option<String>,
}

/// What the pool reports when it is done with a job.
#[derive(Debug)]
pub struct Done {
    pub id: String,
    pub end: End,
}

#[derive(Debug)]
pub enum End {
    /// Committed (completed or failed).
    Finished,
    /// Another instance owns it, it is gone, or etcd refused it for good: it runs again
    /// only when its keys change.
    Dropped,
    /// etcd could not answer: try again after the backoff.
    Wait(StoreError),
}

/// First and longest pause before a job that waited for etcd is tried again.
const FIRST_RETRY: Duration = Duration::from_secs(1);
const LONGEST_RETRY: Duration = Duration::from_secs(16);
/// Keys that are not text are remembered (to report each once) up to this many.
const NOT_TEXT_REMEMBERED: usize = 4096;

/// The jobs waiting for etcd, shared with the status listener (`/jobs`, which `esi-monitor
/// jobs` prints). Only the watcher writes it, and only when a job waits or stops waiting.
#[derive(Clone, Default)]
pub struct Waiting(Arc<Mutex<BTreeMap<String, Wait>>>);

/// A job waiting for etcd.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Wait {
    /// Attempts that found etcd unavailable, in a row.
    pub retries: u32,
    /// Why etcd could not answer (`election`, `timeout`, …) and its message.
    pub cause: &'static str,
    pub error: String,
    /// When it is tried next, Unix seconds.
    pub next_at: f64,
    #[serde(skip)]
    due: Option<Instant>,
}

impl Waiting {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Wait>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The waiting jobs as a JSON object `{job id: {retries, cause, error, next_at}}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(&*self.lock()).unwrap_or_default()
    }
}

enum Entry {
    Ours(Work),
    Other,
    Unparseable,
}

/// The job table: what the watcher knows about `/jobs/`.
struct Table {
    handler: String,
    /// Claim tokens of this instance start with this (`<instance>/`).
    ours: String,
    all: HashMap<String, Entry>,
    /// The claims, with their tokens.
    working: HashMap<String, String>,
    finished: HashSet<String>,
    dependents: HashMap<String, Vec<String>>,
    in_flight: HashSet<String>,
    /// Jobs a pool thread committed whose keys the watch has not yet seen go (or change).
    committed: HashSet<String>,
    /// Jobs in a pool thread whose keys changed meanwhile: looked at again when it is done.
    changed_in_flight: HashSet<String>,
    /// Jobs to look at again: new, or something they wait for changed.
    check: VecDeque<String>,
    waiting: Waiting,
    /// Keys that are not text, already reported.
    not_text: HashSet<String>,
}

impl Table {
    fn new(handler: &str, instance: &str, waiting: Waiting) -> Table {
        Table {
            handler: handler.to_string(),
            ours: format!("{instance}/"),
            all: HashMap::new(),
            working: HashMap::new(),
            finished: HashSet::new(),
            dependents: HashMap::new(),
            in_flight: HashSet::new(),
            committed: HashSet::new(),
            changed_in_flight: HashSet::new(),
            check: VecDeque::new(),
            waiting,
            not_text: HashSet::new(),
        }
    }

    fn reset(&mut self, kvs: Vec<Kv>) {
        self.all.clear();
        self.committed.clear();
        self.working.clear();
        self.finished.clear();
        self.dependents.clear();
        self.check.clear();
        for kv in kvs {
            self.put(kv);
        }
    }

    fn put(&mut self, kv: Kv) {
        if let Some(id) = keys::suffix(&kv.key, keys::JOBS_ALL) {
            let id = id.to_string();
            self.forget(&id); // a job rewritten in place: its old dependencies no longer hold
            let entry = self.parse(&id, &kv);
            if let Entry::Ours(w) = &entry {
                for dep in &w.job.dependency {
                    self.dependents.entry(dep.clone()).or_default().push(id.clone());
                }
                self.check.push_back(id.clone());
            }
            self.all.insert(id, entry);
        } else if let Some(id) = keys::suffix(&kv.key, keys::JOBS_WORKING) {
            // Our own claim on a job no thread holds must be looked at (see `runnable`).
            self.working.insert(id.to_string(), String::from_utf8_lossy(&kv.value).into_owned());
            self.check.push_back(id.to_string());
        } else if let Some(id) = keys::suffix(&kv.key, keys::JOBS_FINISHED) {
            self.finished.insert(id.to_string());
            self.wake_dependents(id);
        }
    }

    fn parse(&self, id: &str, kv: &Kv) -> Entry {
        // Cheap pre-check: only our handler's entries are parsed in full.
        let head: serde_json::Result<(String, serde::de::IgnoredAny, serde::de::IgnoredAny)> =
            serde_json::from_slice(&kv.value);
        if let Ok((handler, _, _)) = &head {
            if *handler != self.handler {
                return Entry::Other;
            }
        }
        match job::parse(id, &kv.value) {
            Ok(job) if job.handler == self.handler => {
                Entry::Ours(Work { job: Arc::new(job), create_revision: kv.create_revision, held: None })
            }
            Ok(_) => Entry::Other,
            Err(e) => {
                log::error!("{e}; the job is left in place and not executed");
                crate::metrics::job_unparseable();
                Entry::Unparseable
            }
        }
    }

    /// Removes a job from the table and from the dependents lists of what it waited for.
    fn forget(&mut self, id: &str) {
        self.committed.remove(id);
        if let Some(Entry::Ours(w)) = self.all.remove(id) {
            for dep in &w.job.dependency {
                if let Some(list) = self.dependents.get_mut(dep) {
                    list.retain(|d| d != id);
                    if list.is_empty() {
                        self.dependents.remove(dep);
                    }
                }
            }
        }
    }

    /// A key under `/jobs/` that is not text: a job that cannot be handled, reported once
    /// (a log line, `jobs_unparseable_total`) and left alone.
    fn not_text(&mut self, key: String) {
        if self.not_text.contains(&key) {
            return;
        }
        if key.starts_with(keys::JOBS_ALL) {
            log::error!("{key}: the key is not UTF-8 text; the job is left in place and not executed");
            crate::metrics::job_unparseable();
        } else {
            log::warn!("{key}: the key is not UTF-8 text; ignored");
        }
        if self.not_text.len() < NOT_TEXT_REMEMBERED {
            self.not_text.insert(key);
        }
    }

    fn delete(&mut self, key: &str) {
        if let Some(id) = keys::suffix(key, keys::JOBS_ALL) {
            self.forget(id);
            self.waiting.lock().remove(id);
            self.finished.remove(id);
            self.wake_dependents(id);
        } else if let Some(id) = keys::suffix(key, keys::JOBS_WORKING) {
            self.working.remove(id);
            self.check.push_back(id.to_string());
        } else if let Some(id) = keys::suffix(key, keys::JOBS_FINISHED) {
            self.finished.remove(id);
        }
    }

    fn wake_dependents(&mut self, id: &str) {
        if let Some(list) = self.dependents.get(id) {
            self.check.extend(list.iter().cloned());
        }
    }

    fn dep_done(&self, dep: &str) -> bool {
        !self.all.contains_key(dep) || self.finished.contains(dep)
    }

    /// The job `id` when it may run now: nobody else's claim on it, not finished, not in a
    /// pool thread, not waiting out a backoff, its dependencies done. A claim of ours that
    /// no thread holds is handed over with its token.
    fn runnable(&self, id: &str, now: Instant) -> Option<Work> {
        let Some(Entry::Ours(w)) = self.all.get(id) else { return None };
        if self.in_flight.contains(id) || self.finished.contains(id) || self.committed.contains(id) {
            return None;
        }
        if self.waiting.lock().get(id).and_then(|w| w.due).is_some_and(|due| due > now) {
            return None;
        }
        let held = match self.working.get(id) {
            Some(token) if token.starts_with(&self.ours) => Some(token.clone()),
            Some(_) => return None,
            None => None,
        };
        w.job.dependency.iter().all(|d| self.dep_done(d)).then(|| Work { held, ..w.clone() })
    }

    /// Sends runnable jobs to the pool until the queue is full.
    fn dispatch(&mut self, work: &Sender<Work>) {
        let now = Instant::now();
        let due: Vec<String> = self
            .waiting
            .lock()
            .iter()
            .filter(|(_, w)| w.due.is_some_and(|due| due <= now))
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            if let Some(w) = self.waiting.lock().get_mut(&id) {
                w.due = None; // due now: looked at once, then it waits for its next attempt
            }
            self.check.push_back(id);
        }
        while let Some(id) = self.check.pop_front() {
            if self.in_flight.contains(&id) {
                // What the thread saw may be stale (a claim that since vanished).
                self.changed_in_flight.insert(id);
                continue;
            }
            let Some(w) = self.runnable(&id, now) else { continue };
            match work.try_send(w) {
                Ok(()) => {
                    self.in_flight.insert(id);
                }
                Err(TrySendError::Full(_)) => {
                    self.check.push_front(id);
                    return;
                }
                Err(TrySendError::Disconnected(_)) => return,
            }
        }
    }

    fn done(&mut self, d: Done) {
        self.in_flight.remove(&d.id);
        if self.changed_in_flight.remove(&d.id) {
            self.check.push_back(d.id.clone());
        }
        match d.end {
            End::Finished => {
                self.waiting.lock().remove(&d.id);
                // Its keys go (or it is marked finished) with the commit; the watch says so
                // soon, and until then it must not look runnable, nor like a claim of ours
                // that no thread holds.
                self.committed.insert(d.id);
            }
            End::Dropped => {
                self.waiting.lock().remove(&d.id);
            }
            End::Wait(e) => {
                let cause = e.unavailable().unwrap_or(crate::store::Unavailable::Connection);
                crate::metrics::job_retried(cause);
                let mut waiting = self.waiting.lock();
                let retries = waiting.get(&d.id).map_or(0, |w| w.retries) + 1;
                let pause = backoff(&d.id, retries);
                let next_at = crate::logging::now() + pause.as_secs_f64();
                let due = Some(Instant::now() + pause);
                waiting.insert(d.id, Wait { retries, cause: cause.label(), error: e.message, next_at, due });
            }
        }
    }

    fn next_wakeup(&self) -> Duration {
        let now = Instant::now();
        self.waiting
            .lock()
            .values()
            .filter_map(|w| w.due)
            .map(|t| t.saturating_duration_since(now))
            .min()
            .unwrap_or(Duration::from_secs(1))
            .min(Duration::from_secs(1))
    }
}

/// The pause before attempt `retries + 1` of a job that found etcd unavailable: doubling from
/// `FIRST_RETRY` up to `LONGEST_RETRY`, plus up to a quarter more (from the job id) so that
/// the jobs of one outage do not all come back at once.
fn backoff(id: &str, retries: u32) -> Duration {
    let base = FIRST_RETRY.saturating_mul(1 << retries.saturating_sub(1).min(8)).min(LONGEST_RETRY);
    let spread = id.bytes().fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b))) % 250;
    base + base * spread / 1000
}

/// Where the watcher takes its jobs from and hands them to.
pub struct Channels {
    pub work: Sender<Work>,
    pub done: Receiver<Done>,
    pub ready: Ready,
    pub stop: Receiver<()>,
}

/// Runs the watcher until `stop` fires or the work channel closes. `instance` is this
/// instance's id (the first part of its claim tokens).
pub fn run(store: Store, handler: &str, instance: &str, waiting: Waiting, ch: Channels) -> Result<(), String> {
    let Channels { work, done, ready, stop } = ch;
    let changes = super::follow::start(store, keys::JOBS, Watched::Jobs, stop.clone())?;
    let mut table = Table::new(handler, instance, waiting);
    loop {
        table.dispatch(&work);
        select! {
            recv(changes) -> batch => match batch {
                Ok(batch) => {
                    for c in batch.into_iter().chain(changes.try_iter().flatten()) {
                        table.apply(c, &ready);
                    }
                }
                Err(_) => return Ok(()), // the follower stopped
            },
            recv(done) -> d => match d {
                Ok(d) => table.done(d),
                Err(_) => return Ok(()),
            },
            recv(stop) -> _ => return Ok(()),
            default(table.next_wakeup()) => {}
        }
    }
}

impl Table {
    fn apply(&mut self, change: Change, ready: &Ready) {
        match change {
            Change::Reset(range) => {
                for key in range.not_text {
                    self.not_text(key);
                }
                self.reset(range.kvs);
                log::info!("job table read at revision {}: {} /jobs/all entries", range.revision, self.all.len());
                ready.mark("jobs");
            }
            Change::Put(kv) => self.put(kv),
            Change::Delete(key, _) => self.delete(&key),
            Change::NotText(key) => self.not_text(key),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: String) -> Kv {
        Kv { key: key.into(), value: value.into_bytes(), create_revision: 1, mod_revision: 1, version: 1 }
    }

    fn table() -> Table {
        Table::new("monitoring_worker", "me", Waiting::default())
    }

    fn job(id: &str, handler: &str, deps: &[&str]) -> Kv {
        let body = serde_json::json!({"id": id, "job_name": "port:p:1", "action": "create",
            "resource_type": "port", "resource_id": "p", "dependency": deps, "params": []});
        kv(&keys::job_all(id), serde_json::json!([handler, body, 0]).to_string())
    }

    fn dispatched(table: &mut Table, capacity: usize) -> Vec<String> {
        let (tx, rx) = crossbeam_channel::bounded(capacity);
        table.dispatch(&tx);
        rx.try_iter().map(|w| w.job.id.clone()).collect()
    }

    #[test]
    fn a_job_waits_for_its_dependencies() {
        let mut t = table();
        t.put(job("heat", "heat_worker", &[]));
        t.put(job("mon", "monitoring_worker", &["heat"]));
        assert!(dispatched(&mut t, 8).is_empty(), "the heat job is not finished");
        t.put(kv(&keys::job_finished("heat"), String::new()));
        assert_eq!(dispatched(&mut t, 8), ["mon"]);
        assert!(dispatched(&mut t, 8).is_empty(), "in flight: never sent twice");
    }

    #[test]
    fn a_removed_dependency_counts_as_finished() {
        let mut t = table();
        t.put(job("heat", "heat_worker", &[]));
        t.put(job("mon", "monitoring_worker", &["heat"]));
        t.delete(&keys::job_all("heat"));
        assert_eq!(dispatched(&mut t, 8), ["mon"]);
    }

    #[test]
    fn a_claimed_job_runs_again_when_its_claim_disappears() {
        let mut t = table();
        t.put(kv(&keys::job_working("mon"), "other".into()));
        t.put(job("mon", "monitoring_worker", &[]));
        assert!(dispatched(&mut t, 8).is_empty());
        t.delete(&keys::job_working("mon"));
        assert_eq!(dispatched(&mut t, 8), ["mon"]);
    }

    #[test]
    fn a_full_queue_keeps_the_job_for_later() {
        let mut t = table();
        t.put(job("a", "monitoring_worker", &[]));
        t.put(job("b", "monitoring_worker", &[]));
        assert_eq!(dispatched(&mut t, 1), ["a"]);
        assert_eq!(dispatched(&mut t, 1), ["b"]);
    }

    #[test]
    fn unparseable_and_foreign_jobs_are_never_sent() {
        let mut t = table();
        t.put(kv(&keys::job_all("bad"), "[\"monitoring_worker\", {nope".into()));
        t.put(job("heat", "heat_worker", &[]));
        assert!(dispatched(&mut t, 8).is_empty());
        assert!(t.all.contains_key("bad"), "kept in the table, not lost");
    }

    fn dispatched_works(table: &mut Table) -> Vec<Work> {
        let (tx, rx) = crossbeam_channel::bounded(8);
        table.dispatch(&tx);
        rx.try_iter().collect()
    }

    fn unavailable() -> StoreError {
        use crate::store::{Cause, Unavailable};
        StoreError::new(Cause::Unavailable(Unavailable::Election), "etcd txn: etcdserver: leader changed")
    }

    #[test]
    fn our_claim_that_no_thread_holds_is_handed_back_with_its_token() {
        let mut t = table();
        t.put(job("mon", "monitoring_worker", &[]));
        assert_eq!(dispatched(&mut t, 8), ["mon"]);
        t.put(kv(&keys::job_working("mon"), "me/1/abc".into())); // our claim, seen by the watch
        assert!(dispatched(&mut t, 8).is_empty(), "in a pool thread: not sent again");
        // The release failed while etcd was away: the claim stays, the job waits.
        t.done(Done { id: "mon".into(), end: End::Wait(unavailable()) });
        assert!(dispatched(&mut t, 8).is_empty(), "waits out its backoff first");
        t.waiting.lock().get_mut("mon").unwrap().due = Some(Instant::now());
        let works = dispatched_works(&mut t);
        assert_eq!(works.len(), 1);
        assert_eq!(works[0].held.as_deref(), Some("me/1/abc"));
        // Another instance's claim is never taken over.
        t.done(Done { id: "mon".into(), end: End::Dropped });
        t.put(kv(&keys::job_working("mon"), "other/1/abc".into()));
        assert!(dispatched(&mut t, 8).is_empty());
    }

    #[test]
    fn a_finished_job_is_not_taken_for_a_held_claim_before_the_watch_says_it_is_gone() {
        let mut t = table();
        t.put(job("mon", "monitoring_worker", &[]));
        assert_eq!(dispatched(&mut t, 8), ["mon"]);
        t.put(kv(&keys::job_working("mon"), "me/1/abc".into()));
        t.done(Done { id: "mon".into(), end: End::Finished });
        assert!(dispatched(&mut t, 8).is_empty());
    }

    #[test]
    fn a_dropped_job_is_not_tried_again_until_its_keys_change() {
        let mut t = table();
        t.put(job("mon", "monitoring_worker", &[]));
        assert_eq!(dispatched(&mut t, 8), ["mon"]);
        t.done(Done { id: "mon".into(), end: End::Dropped });
        assert!(dispatched(&mut t, 8).is_empty(), "no loop on a job that cannot be claimed");
        t.put(job("mon", "monitoring_worker", &[]));
        assert_eq!(dispatched(&mut t, 8), ["mon"], "its entry changed");
    }

    #[test]
    fn a_claim_that_vanished_while_the_job_was_in_a_thread_is_not_missed() {
        let mut t = table();
        t.put(job("mon", "monitoring_worker", &[]));
        assert_eq!(dispatched(&mut t, 8), ["mon"]);
        // Another instance's claim comes and goes (its lease expired) while our attempt,
        // which lost the race to that claim, is still in a thread.
        t.put(kv(&keys::job_working("mon"), "other/1/abc".into()));
        t.delete(&keys::job_working("mon"));
        assert!(dispatched(&mut t, 8).is_empty(), "in a thread");
        t.done(Done { id: "mon".into(), end: End::Dropped });
        assert_eq!(dispatched(&mut t, 8), ["mon"], "looked at again once done");
    }

    #[test]
    fn a_job_that_waits_for_etcd_backs_off_and_is_shown_waiting() {
        let mut t = table();
        t.put(job("mon", "monitoring_worker", &[]));
        for retries in 1..=3 {
            let works = dispatched_works(&mut t);
            assert_eq!(works.len(), 1, "attempt {retries}");
            t.done(Done { id: "mon".into(), end: End::Wait(unavailable()) });
            let shown = t.waiting.to_json();
            assert_eq!(shown["mon"]["retries"], retries);
            assert_eq!(shown["mon"]["cause"], "election");
            assert!(dispatched(&mut t, 8).is_empty(), "not before its backoff");
            t.waiting.lock().get_mut("mon").unwrap().due = Some(Instant::now());
        }
        assert_eq!(dispatched(&mut t, 8), ["mon"]);
        t.done(Done { id: "mon".into(), end: End::Finished });
        assert_eq!(t.waiting.to_json(), serde_json::json!({}));
    }

    #[test]
    fn backoff_doubles_up_to_its_cap_and_spreads_jobs() {
        let b = |n| backoff("create:monitoring_worker:port:p1:1:t", n);
        assert!(b(1) >= FIRST_RETRY && b(1) < FIRST_RETRY * 2);
        assert!(b(2) >= FIRST_RETRY * 2 && b(3) >= FIRST_RETRY * 4);
        assert!(b(30) >= LONGEST_RETRY && b(30) <= LONGEST_RETRY * 5 / 4);
        assert_ne!(backoff("a", 1), backoff("b", 1), "two jobs of one outage come back apart");
    }

    #[test]
    fn a_key_that_is_not_text_is_remembered_once() {
        let mut t = table();
        t.not_text("/jobs/all/x\\xff".into());
        t.not_text("/jobs/all/x\\xff".into());
        assert_eq!(t.not_text.len(), 1);
        assert!(dispatched(&mut t, 8).is_empty());
    }

    #[test]
    fn a_rewritten_job_keeps_one_dependents_entry() {
        let mut t = table();
        t.put(job("mon", "monitoring_worker", &["heat"]));
        t.put(job("mon", "monitoring_worker", &["heat"]));
        assert_eq!(t.dependents["heat"], ["mon"]);
    }
}
