//! The writer thread: the only code that changes etcd. It takes transactions from any
//! thread, sends what has queued up (at most `MAX_BATCH` at a time) to etcd together so that
//! etcd commits them in one go, and answers each sender.

use crate::store::{Outcome, Result, Store, Txn};
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Most transactions sent to etcd at once.
pub const MAX_BATCH: usize = 128;

struct Request {
    txn: Txn,
    reply: Sender<Result<Outcome>>,
}

/// A handle to the writer; clone it into every thread that needs to write.
#[derive(Clone)]
pub struct Writer {
    tx: Sender<Request>,
}

impl Writer {
    /// Starts the writer thread; it ends when every `Writer` handle is dropped.
    pub fn start(store: Store) -> std::result::Result<(Writer, JoinHandle<()>), String> {
        let (tx, rx) = bounded::<Request>(4 * MAX_BATCH);
        let handle = std::thread::Builder::new()
            .name("writer".into())
            .spawn(move || run(store, rx))
            .map_err(|e| format!("cannot start the writer thread: {e}"))?;
        Ok((Writer { tx }, handle))
    }

    /// Applies a transaction and waits for etcd's answer: `Ok(true)` when it was applied,
    /// `Ok(false)` when one of its conditions did not hold.
    pub fn apply(&self, txn: Txn) -> Result<bool> {
        Ok(self.apply_outcome(txn)?.applied)
    }

    /// Applies a transaction and returns what its `Op::Get`s read.
    pub fn apply_outcome(&self, txn: Txn) -> Result<Outcome> {
        self.submit(txn).wait()
    }

    /// Sends a transaction without waiting for it, so that a thread can have several in
    /// flight; `Pending::wait` gives etcd's answer.
    pub fn submit(&self, txn: Txn) -> Pending {
        let (reply, answer) = bounded(1);
        let sent = self.tx.send(Request { txn, reply }).is_ok();
        Pending { answer: sent.then_some(answer) }
    }
}

/// A transaction sent to the writer, not yet answered.
pub struct Pending {
    answer: Option<Receiver<Result<Outcome>>>,
}

impl Pending {
    /// etcd's answer if it has come (`None`: not yet).
    pub fn try_wait(&self) -> Option<Result<Outcome>> {
        let Some(answer) = &self.answer else { return Some(Err(stopped())) };
        match answer.try_recv() {
            Ok(r) => Some(r),
            Err(crossbeam_channel::TryRecvError::Empty) => None,
            Err(crossbeam_channel::TryRecvError::Disconnected) => Some(Err(stopped())),
        }
    }

    pub fn wait(self) -> Result<Outcome> {
        self.answer.ok_or_else(stopped)?.recv().map_err(|_| stopped())?
    }
}

fn stopped() -> crate::store::StoreError {
    use crate::store::{Cause, StoreError, Unavailable};
    StoreError::new(Cause::Unavailable(Unavailable::Stopping), "the writer has stopped")
}

fn run(store: Store, rx: Receiver<Request>) {
    // The watchdog pings come from this loop, so that a writer stuck for good (not merely
    // waiting for a slow etcd: every request has a timeout) gets the service restarted.
    let watchdog = crate::notify::watchdog_interval();
    let mut pinged: Option<Instant> = None;
    loop {
        if let Some(every) = watchdog {
            if pinged.map_or(true, |t| t.elapsed() >= every) {
                crate::notify::send("WATCHDOG=1");
                pinged = Some(Instant::now());
            }
        }
        let first = match rx.recv_timeout(watchdog.unwrap_or(Duration::from_secs(3600))) {
            Ok(r) => r,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        let txns: Vec<Txn> = batch.iter().map(|r| r.txn.clone()).collect();
        let sent = std::time::Instant::now();
        let results = if txns.len() == 1 { vec![store.txn_outcome(&txns[0])] } else { store.txns(&txns) };
        crate::metrics::etcd_batch(sent, &results);
        for (req, result) in batch.into_iter().zip(results) {
            let _ = req.reply.send(result);
        }
    }
}
