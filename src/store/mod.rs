//! The program's view of etcd: plain values (keys, revisions, comparisons, operations) and a
//! blocking client. Async code lives only in `etcd.rs`, behind `block_on`.

mod etcd;

pub use etcd::{Store, Watch};

/// One key as read from etcd. Keys are bytes in etcd; the program handles only keys that are
/// UTF-8 text, and the adapter hands the others over apart (`Range::not_text`,
/// `WatchEvent::NotText`), escaped, to be reported and left alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kv {
    pub key: String,
    pub value: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
    /// How many times the key was written since it was created (1: once).
    pub version: i64,
}

/// The keys under a prefix, read at one revision.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Range {
    pub kvs: Vec<Kv>,
    pub revision: i64,
    /// The keys that are not UTF-8 text, escaped (`\xff`): never used as keys.
    pub not_text: Vec<String>,
}

impl Kv {
    pub fn value_str(&self) -> &str {
        std::str::from_utf8(&self.value).unwrap_or("")
    }
}

/// A condition of a transaction (all are equality tests, as the spec needs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cmp {
    /// The key's create revision; 0 means "the key does not exist".
    CreateRevision(String, i64),
    /// The key's mod revision; 0 means "the key does not exist".
    ModRevision(String, i64),
    /// The key exists and holds this value.
    Value(String, Vec<u8>),
}

/// An operation of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Put { key: String, value: Vec<u8>, on_lease: bool },
    Delete(String),
    /// Reads a key in the same step; its value comes back in `Outcome::read`.
    Get(String),
}

impl Op {
    pub fn put(key: impl Into<String>, value: impl Into<Vec<u8>>) -> Op {
        Op::Put { key: key.into(), value: value.into(), on_lease: false }
    }
    pub fn put_leased(key: impl Into<String>, value: impl Into<Vec<u8>>) -> Op {
        Op::Put { key: key.into(), value: value.into(), on_lease: true }
    }
    pub fn delete(key: impl Into<String>) -> Op {
        Op::Delete(key.into())
    }
    pub fn get(key: impl Into<String>) -> Op {
        Op::Get(key.into())
    }
}

/// What a transaction did: whether its conditions held, and (when they did) the keys its
/// `Op::Get`s read, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    pub applied: bool,
    pub read: Vec<Option<Kv>>,
}

/// `if every cmp holds then apply ops`, atomically.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Txn {
    pub when: Vec<Cmp>,
    pub then: Vec<Op>,
}

impl Txn {
    /// An upper bound of the bytes etcd counts for this transaction against its
    /// `--max-request-bytes`: every key and value, and a generous allowance for the protobuf
    /// framing of each comparison and operation (tags, lengths, lease and revision fields)
    /// and of the request. `tests/store.rs` checks it against a real etcd.
    pub fn size(&self) -> usize {
        const PER_ITEM: usize = 24;
        const PER_REQUEST: usize = 64;
        let cmps: usize = self
            .when
            .iter()
            .map(|c| match c {
                Cmp::CreateRevision(k, _) | Cmp::ModRevision(k, _) => k.len(),
                Cmp::Value(k, v) => k.len() + v.len(),
            })
            .sum();
        let ops: usize = self
            .then
            .iter()
            .map(|o| match o {
                Op::Put { key, value, .. } => key.len() + value.len(),
                Op::Delete(key) | Op::Get(key) => key.len(),
            })
            .sum();
        cmps + ops + (self.when.len() + self.then.len()) * PER_ITEM + PER_REQUEST
    }
}

/// What a watch reports.
#[derive(Debug, Clone)]
pub enum WatchEvent {
    Put(Kv),
    Delete { key: String, revision: i64 },
    /// A key that is not UTF-8 text was written, escaped (`\xff`): report it, leave it.
    NotText { key: String },
    /// The watch broke (error, compaction, cancel): the reader must re-read its prefixes.
    Broken(String),
}

/// A failed etcd call: what was being done, and what the failure says about the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError {
    pub cause: Cause,
    pub message: String,
}

/// What an etcd failure means for the caller. Every error of the adapter is classified once,
/// where it is made (`etcd.rs`), so that no caller has to read messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// etcd could not answer now (no leader, an election, a timeout, a broken connection,
    /// too many requests): nothing was learned about the request, which may or may not have
    /// been applied. Ask again later; never fail a job for it.
    Unavailable(Unavailable),
    /// The request is larger than etcd accepts (`--max-request-bytes`).
    TooLarge,
    /// etcd answered, and the answer is final (permission denied, invalid argument, …).
    Refused,
}

/// Why etcd could not answer: the label of `job_retries_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unavailable {
    /// No leader, or the leader changed while the request was in flight.
    Election,
    /// etcd or the client gave up waiting.
    Timeout,
    /// The connection could not be made, broke, or a stream ended.
    Connection,
    /// etcd shed load (`too many requests`).
    Overload,
    /// What a transaction compares kept changing under it (other writers of the same keys).
    Contention,
    /// This service is stopping (the writer has ended, or a verification was interrupted).
    Stopping,
}

impl Unavailable {
    /// The label values, in the order of the variants (`self as usize` indexes it).
    pub const LABELS: [&'static str; 6] = ["election", "timeout", "connection", "overload", "contention", "stopping"];

    pub fn label(self) -> &'static str {
        Unavailable::LABELS[self as usize]
    }
}

impl StoreError {
    pub fn new(cause: Cause, message: impl Into<String>) -> StoreError {
        StoreError { cause, message: message.into() }
    }

    /// Whether etcd merely could not answer (`Cause::Unavailable`).
    pub fn unavailable(&self) -> Option<Unavailable> {
        match self.cause {
            Cause::Unavailable(why) => Some(why),
            _ => None,
        }
    }
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for StoreError {}

pub type Result<T> = std::result::Result<T, StoreError>;
