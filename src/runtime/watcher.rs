//! The watcher thread: keeps a table of every `/jobs/` key (all, working, finished) fed by an
//! initial range read and a watch, and hands each monitoring job to the pool once its
//! dependencies are finished and nobody holds a claim on it. A broken watch is repaired by
//! reading everything again, so no event can be lost.

use crate::job::{self, Job};
use crate::keys;
use super::supervisor::Ready;
use crate::store::{Kv, Store, WatchEvent};
use crossbeam_channel::{select, Receiver, Sender, TrySendError};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A runnable job handed to the pool, with the create revision of its `/jobs/all` key.
#[derive(Debug, Clone)]
pub struct Work {
    pub job: Arc<Job>,
    pub create_revision: i64,
}

/// What the pool reports when it is done with a job.
#[derive(Debug)]
pub struct Done {
    pub id: String,
    /// Try the job again after this delay (etcd was unreachable); `None` when finished or
    /// dropped.
    pub retry_after: Option<Duration>,
}

enum Entry {
    Ours(Work),
    Other,
    Unparseable,
}

/// The job table: what the watcher knows about `/jobs/`.
struct Table {
    handler: String,
    all: HashMap<String, Entry>,
    working: HashSet<String>,
    finished: HashSet<String>,
    dependents: HashMap<String, Vec<String>>,
    in_flight: HashSet<String>,
    /// Jobs to look at again: new, or something they wait for changed.
    check: VecDeque<String>,
    delayed: Vec<(Instant, String)>,
}

impl Table {
    fn new(handler: &str) -> Table {
        Table {
            handler: handler.to_string(),
            all: HashMap::new(),
            working: HashSet::new(),
            finished: HashSet::new(),
            dependents: HashMap::new(),
            in_flight: HashSet::new(),
            check: VecDeque::new(),
            delayed: Vec::new(),
        }
    }

    fn reset(&mut self, kvs: Vec<Kv>) {
        self.all.clear();
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
            self.working.insert(id.to_string());
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
                Entry::Ours(Work { job: Arc::new(job), create_revision: kv.create_revision })
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

    fn delete(&mut self, key: &str) {
        if let Some(id) = keys::suffix(key, keys::JOBS_ALL) {
            self.forget(id);
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

    /// The job `id` when it may run now.
    fn runnable(&self, id: &str) -> Option<Work> {
        let Some(Entry::Ours(w)) = self.all.get(id) else { return None };
        let free = !self.in_flight.contains(id) && !self.working.contains(id) && !self.finished.contains(id);
        (free && w.job.dependency.iter().all(|d| self.dep_done(d))).then(|| w.clone())
    }

    /// Sends runnable jobs to the pool until the queue is full.
    fn dispatch(&mut self, work: &Sender<Work>) {
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = self.delayed.drain(..).partition(|(t, _)| *t <= now);
        self.delayed = later;
        self.check.extend(due.into_iter().map(|(_, id)| id));
        while let Some(id) = self.check.pop_front() {
            let Some(w) = self.runnable(&id) else { continue };
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
        match d.retry_after {
            Some(after) => self.delayed.push((Instant::now() + after, d.id)),
            None => self.check.push_back(d.id),
        }
    }

    fn next_wakeup(&self) -> Duration {
        let now = Instant::now();
        self.delayed
            .iter()
            .map(|(t, _)| t.saturating_duration_since(now))
            .min()
            .unwrap_or(Duration::from_secs(1))
            .min(Duration::from_secs(1))
    }
}

/// Runs the watcher until `stop` fires or the work channel closes.
pub fn run(store: Store, handler: &str, work: Sender<Work>, done: Receiver<Done>, ready: Ready, stop: Receiver<()>) {
    let mut table = Table::new(handler);
    let mut backoff = Duration::from_millis(100);
    'resync: loop {
        let (kvs, rev) = match store.range(keys::JOBS) {
            Ok(r) => r,
            Err(e) => {
                log::warn!("reading {}: {e}; retrying in {backoff:?}", keys::JOBS);
                if stop.recv_timeout(backoff).is_ok() {
                    return;
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        table.reset(kvs);
        let watch = match store.watch(keys::JOBS, rev + 1) {
            Ok(w) => w,
            Err(e) => {
                log::warn!("watching {}: {e}; retrying in {backoff:?}", keys::JOBS);
                if stop.recv_timeout(backoff).is_ok() {
                    return;
                }
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        log::info!("job table read at revision {rev}: {} /jobs/all entries", table.all.len());
        ready.mark("jobs");
        loop {
            table.dispatch(&work);
            select! {
                recv(watch.events) -> ev => match ev {
                    Ok(ev) => {
                        if !apply(&mut table, ev) {
                            continue 'resync;
                        }
                        while let Ok(ev) = watch.events.try_recv() {
                            if !apply(&mut table, ev) {
                                continue 'resync;
                            }
                        }
                    }
                    Err(_) => continue 'resync,
                },
                recv(done) -> d => match d {
                    Ok(d) => table.done(d),
                    Err(_) => return,
                },
                recv(stop) -> _ => return,
                default(table.next_wakeup()) => {}
            }
        }
    }
}

/// Applies one watch event; false when the watch broke and the table must be re-read.
fn apply(table: &mut Table, ev: WatchEvent) -> bool {
    match ev {
        WatchEvent::Put(kv) => table.put(kv),
        WatchEvent::Delete { key, .. } => table.delete(&key),
        WatchEvent::Broken(reason) => {
            log::warn!("job watch broke ({reason}); reading /jobs/ again");
            crate::metrics::watch_restarted(crate::metrics::Watched::Jobs);
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: String) -> Kv {
        Kv { key: key.into(), value: value.into_bytes(), create_revision: 1, mod_revision: 1 }
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
        let mut t = Table::new("monitoring_worker");
        t.put(job("heat", "heat_worker", &[]));
        t.put(job("mon", "monitoring_worker", &["heat"]));
        assert!(dispatched(&mut t, 8).is_empty(), "the heat job is not finished");
        t.put(kv(&keys::job_finished("heat"), String::new()));
        assert_eq!(dispatched(&mut t, 8), ["mon"]);
        assert!(dispatched(&mut t, 8).is_empty(), "in flight: never sent twice");
    }

    #[test]
    fn a_removed_dependency_counts_as_finished() {
        let mut t = Table::new("monitoring_worker");
        t.put(job("heat", "heat_worker", &[]));
        t.put(job("mon", "monitoring_worker", &["heat"]));
        t.delete(&keys::job_all("heat"));
        assert_eq!(dispatched(&mut t, 8), ["mon"]);
    }

    #[test]
    fn a_claimed_job_runs_again_when_its_claim_disappears() {
        let mut t = Table::new("monitoring_worker");
        t.put(kv(&keys::job_working("mon"), "other".into()));
        t.put(job("mon", "monitoring_worker", &[]));
        assert!(dispatched(&mut t, 8).is_empty());
        t.delete(&keys::job_working("mon"));
        assert_eq!(dispatched(&mut t, 8), ["mon"]);
    }

    #[test]
    fn a_full_queue_keeps_the_job_for_later() {
        let mut t = Table::new("monitoring_worker");
        t.put(job("a", "monitoring_worker", &[]));
        t.put(job("b", "monitoring_worker", &[]));
        assert_eq!(dispatched(&mut t, 1), ["a"]);
        assert_eq!(dispatched(&mut t, 1), ["b"]);
    }

    #[test]
    fn unparseable_and_foreign_jobs_are_never_sent() {
        let mut t = Table::new("monitoring_worker");
        t.put(kv(&keys::job_all("bad"), "[\"monitoring_worker\", {nope".into()));
        t.put(job("heat", "heat_worker", &[]));
        assert!(dispatched(&mut t, 8).is_empty());
        assert!(t.all.contains_key("bad"), "kept in the table, not lost");
    }

    #[test]
    fn a_rewritten_job_keeps_one_dependents_entry() {
        let mut t = Table::new("monitoring_worker");
        t.put(job("mon", "monitoring_worker", &["heat"]));
        t.put(job("mon", "monitoring_worker", &["heat"]));
        assert_eq!(t.dependents["heat"], ["mon"]);
    }
}
