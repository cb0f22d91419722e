//! A follower thread: mirrors every key under one etcd prefix for one consumer (the watcher
//! follows `/jobs/`, the scheduler the registry). It reads the prefix at one revision, then
//! watches from the next one, and when a watch breaks (an error, a compaction, etcd
//! restarting) it reads everything again, so no change is lost. Written once here, the
//! consumers only apply `Change`s in order.

use crate::metrics::Watched;
use crate::store::{Kv, Range, Store, WatchEvent};
use crossbeam_channel::{select, unbounded, Receiver, Sender};
use std::time::Duration;

/// What the consumer applies, in the order etcd made the changes.
pub enum Change {
    /// Everything under the prefix, at one revision: replaces what the consumer knew.
    Reset(Range),
    Put(Kv),
    /// A key deleted, and the revision of the delete.
    Delete(String, i64),
    /// A key that is not UTF-8 text was written (escaped): report it, leave it alone.
    NotText(String),
}

/// Starts following `prefix`. The changes come in batches, each a `Reset` or the changes of
/// whole revisions (one etcd answer): a consumer that acts between batches never sees half
/// a transaction (a claim gone but not yet the job it finished). The thread ends when
/// `stop` fires or closes, or when the consumer drops the receiver.
pub fn start(
    store: Store,
    prefix: &'static str,
    watched: Watched,
    stop: Receiver<()>,
) -> Result<Receiver<Vec<Change>>, String> {
    let (tx, rx) = unbounded();
    std::thread::Builder::new()
        .name(format!("follow-{}", watched.label()))
        .spawn(move || run(&store, prefix, watched, &tx, &stop))
        .map_err(|e| format!("cannot start the thread following {prefix}: {e}"))?;
    Ok(rx)
}

/// Longest pause between two attempts to read or watch while etcd does not answer.
const LONGEST_PAUSE: Duration = Duration::from_secs(5);

/// The pause after a failed read or watch: doubling up to `LONGEST_PAUSE`.
struct Pause(Duration);

impl Pause {
    const FIRST: Duration = Duration::from_millis(100);

    /// Logs why, waits unless stopped (false when stopped), and doubles.
    fn wait(&mut self, why: String, stop: &Receiver<()>) -> bool {
        log::warn!("{why}; trying again in {:?}", self.0);
        let stopped = matches!(stop.recv_timeout(self.0), Ok(()) | Err(crossbeam_channel::RecvTimeoutError::Disconnected));
        self.0 = (self.0 * 2).min(LONGEST_PAUSE);
        !stopped
    }
}

fn run(store: &Store, prefix: &str, watched: Watched, tx: &Sender<Vec<Change>>, stop: &Receiver<()>) {
    let mut pause = Pause(Pause::FIRST);
    loop {
        let range = match store.read_range(prefix) {
            Ok(r) => r,
            Err(e) if pause.wait(format!("reading {prefix}: {e}"), stop) => continue,
            Err(_) => return,
        };
        let revision = range.revision;
        let watch = match store.watch_batches(prefix, revision + 1) {
            Ok(w) => w,
            Err(e) if pause.wait(format!("watching {prefix}: {e}"), stop) => continue,
            Err(_) => return,
        };
        if tx.send(vec![Change::Reset(range)]).is_err() {
            return;
        }
        pause = Pause(Pause::FIRST);
        'watching: loop {
            let batch = select! {
                recv(watch.events) -> batch => match batch {
                    Ok(batch) => batch,
                    Err(_) => break,
                },
                recv(stop) -> _ => return,
            };
            let mut changes = Vec::with_capacity(batch.len());
            for event in batch {
                changes.push(match event {
                    WatchEvent::Put(kv) => Change::Put(kv),
                    WatchEvent::Delete { key, revision } => Change::Delete(key, revision),
                    WatchEvent::NotText { key } => Change::NotText(key),
                    WatchEvent::Broken(why) => {
                        log::warn!("the watch on {prefix} broke ({why}); reading it again");
                        crate::metrics::watch_restarted(watched);
                        break 'watching;
                    }
                });
            }
            if tx.send(changes).is_err() {
                return;
            }
        }
    }
}
