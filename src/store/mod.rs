//! The program's view of etcd: plain values (keys, revisions, comparisons, operations) and a
//! blocking client. Async code lives only in `etcd.rs`, behind `block_on`.

mod etcd;

pub use etcd::{Store, Watch};

/// One key as read from etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kv {
    pub key: String,
    pub value: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
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

/// What a watch reports.
#[derive(Debug, Clone)]
pub enum WatchEvent {
    Put(Kv),
    Delete { key: String, revision: i64 },
    /// The watch broke (error, compaction, cancel): the reader must re-read its prefixes.
    Broken(String),
}

/// A failed etcd call, with what was being done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError(pub String);

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StoreError {}

pub type Result<T> = std::result::Result<T, StoreError>;
