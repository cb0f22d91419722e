//! The blocking etcd adapter: one small tokio runtime drives etcd-client, and every method
//! blocks the calling OS thread until etcd answers or the configured timeout passes. It
//! connects as the configuration says (TLS, user) and sends a request that could not reach
//! one endpoint to another.

use super::{Cause, Cmp, Kv, Op, Outcome, Range, Result, StoreError, Txn, Unavailable, WatchEvent};
use crate::config;
use crossbeam_channel::Receiver;
use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, Identity, KvClient,
    PutOptions, TlsOptions, TxnOp, TxnOpResponse, WatchClient, WatchOptions,
};
use std::future::Future;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::runtime::Runtime;

/// A connection to etcd usable from any thread; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

/// Keys read per request of a range read (a job is ~2 KB: pages stay well under the limit).
const PAGE: i64 = 500;
/// Largest message accepted from etcd (its own request limit is 1.5 MiB per value).
const MAX_MESSAGE: usize = 64 * 1024 * 1024;

struct Inner {
    rt: Runtime,
    client: Client,
    kv: KvClient,
    watch: WatchClient,
    timeout: Duration,
    /// The instance's lease (0: none); shared with the task that keeps it alive.
    lease: Arc<AtomicI64>,
    /// What the keeper knows of that lease: how long it surely lives, how often it was renewed.
    kept: Arc<Mutex<Kept>>,
}

/// The keep-alive's record of the lease in `Inner::lease`.
#[derive(Debug, Clone, Copy, Default)]
struct Kept {
    /// Until when the lease surely lives, less a margin: the last successful keep-alive (or
    /// the grant) was *sent* at t, etcd answered with a TTL, so it lives at least until
    /// t + TTL; the margin, max(1 s, TTL/5), covers the clocks (SPEC §6).
    safe_until: Option<std::time::Instant>,
    /// Keep-alives answered for this lease (0 right after the grant).
    renewals: u64,
}

impl Kept {
    fn renewed(sent: std::time::Instant, ttl_s: i64) -> std::time::Instant {
        let ttl = Duration::from_secs(ttl_s.max(0) as u64);
        (sent + ttl).checked_sub((ttl / 5).max(Duration::from_secs(1))).unwrap_or(sent)
    }
}

/// A running watch, delivering events one by one (`Watch`) or, from `watch_batches`, the
/// events of one etcd answer together (`Watch<Vec<WatchEvent>>`: every change of a revision
/// at once). Dropping it stops the forwarding task.
pub struct Watch<E = WatchEvent> {
    pub events: Receiver<E>,
    task: tokio::task::JoinHandle<()>,
}

impl<E> Drop for Watch<E> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `e` with what was being done in front: `etcd get /x: etcdserver: leader changed`.
fn err(what: &str, e: StoreError) -> StoreError {
    StoreError { message: format!("etcd {what}: {}", e.message), ..e }
}

/// A failure of etcd-client, classified (the one place that reads codes and messages).
fn failure(e: &etcd_client::Error) -> StoreError {
    StoreError::new(classify(e), explain(e))
}

/// A key as the program handles it: text, or (bytes that are not UTF-8) its escaped form,
/// which names it in messages but is never used as a key.
fn key_text(key: &[u8]) -> std::result::Result<String, String> {
    String::from_utf8(key.to_vec()).map_err(|_| key.escape_ascii().to_string())
}

/// The key-value, or the escaped key when the key is not text.
fn kv(k: &etcd_client::KeyValue) -> std::result::Result<Kv, String> {
    Ok(Kv {
        key: key_text(k.key())?,
        value: k.value().to_vec(),
        create_revision: k.create_revision(),
        mod_revision: k.mod_revision(),
        version: k.version(),
    })
}

/// A key read by name is text (we asked for it by its text).
fn named(k: &etcd_client::KeyValue) -> Option<Kv> {
    kv(k).ok()
}

impl Store {
    /// Connects to the section's endpoints (over TLS and as its user when it says so) and
    /// checks that etcd answers; the error is one sentence naming the endpoints.
    pub fn connect(config: &config::Etcd) -> Result<Store> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("etcd-io")
            .enable_all()
            .build()
            .map_err(|e| StoreError::new(Cause::Refused, format!("etcd runtime: {e}")))?;
        let at = config.endpoints.join(",");
        let timeout = config.timeout();
        // etcd forgets auth tokens (simple tokens 5 minutes after their last use, all of them
        // when auth is turned off and on): a refused token is renewed with the user's password
        // and the request sent again.
        let mut options = ConnectOptions::new()
            .with_connect_timeout(config.connect_timeout())
            .with_timeout(timeout)
            .with_keep_alive(Duration::from_secs(10), timeout)
            .with_auto_token_refresh(true);
        if config.tls() {
            options = options.with_tls(tls_options(config)?);
        }
        // No request is made yet: the user is set and etcd asked below, with retries.
        let client = rt
            .block_on(Client::connect(&config.endpoints, Some(options)))
            .map_err(|e| err(&at, failure(&e)))?;
        let limit = config.connect_timeout() + timeout;
        if !config.username.is_empty() {
            let user = (config.username.clone(), config.password.expose().to_string());
            rt.block_on(retrying(limit, Resend::Unreached, || {
                let (mut c, user) = (client.clone(), user.clone());
                async move { c.update_user(Some(user)).await }
            }))
            .map_err(|e| err(&format!("{at}: user {}", config.username), e))?;
        }
        rt.block_on(answers(&client, &config.endpoints, config.connect_timeout(), limit)).map_err(|e| match e {
            Unanswered::Refused(why) => StoreError::new(Cause::Unavailable(Unavailable::Connection), format!("etcd {why}")),
            Unanswered::Failed(e) => {
                // etcd with --client-cert-auth drops a TLS session without a certificate.
                let m = &e.message;
                let dropped = m.starts_with("TLS handshake failed") || m.starts_with("connection failed");
                let no_cert = dropped && config.tls() && config.cert_file.is_empty();
                let hint = if no_cert { " (etcd.cert_file is not set)" } else { "" };
                StoreError { message: format!("etcd {at}: {m}{hint}"), ..e }
            }
        })?;
        let kv = client.kv_client().max_decoding_message_size(MAX_MESSAGE);
        let watch = client.watch_client().max_decoding_message_size(MAX_MESSAGE);
        Ok(Store {
            inner: Arc::new(Inner { rt, client, kv, watch, timeout, lease: Arc::new(AtomicI64::new(0)), kept: Arc::default() }),
        })
    }

    /// Runs the request `call` makes, again while it could not reach an endpoint, within the
    /// request timeout.
    fn run<T, F: Future<Output = std::result::Result<T, etcd_client::Error>>>(
        &self,
        what: &str,
        call: impl FnMut() -> F,
    ) -> Result<T> {
        self.inner.rt.block_on(retrying(self.inner.timeout, Resend::Unreached, call)).map_err(|e| err(what, e))
    }

    /// Runs a read, again while etcd is unavailable (a read changes nothing, so sending it
    /// twice is harmless), within the request timeout.
    fn read<T, F: Future<Output = std::result::Result<T, etcd_client::Error>>>(
        &self,
        what: &str,
        call: impl FnMut() -> F,
    ) -> Result<T> {
        let _timer = crate::metrics::etcd_read();
        self.inner.rt.block_on(retrying(self.inner.timeout, Resend::Unavailable, call)).map_err(|e| err(what, e))
    }

    /// Reads one key.
    pub fn get(&self, key: &str) -> Result<Option<Kv>> {
        let resp = self.read(&format!("get {key}"), || {
            let mut c = self.inner.kv.clone();
            async move { c.get(key, None).await }
        })?;
        Ok(resp.kvs().first().and_then(named))
    }

    /// Reads several keys in one round trip, at one revision; answers in the order given.
    pub fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Kv>>> {
        let txn = self.to_etcd(&Txn { when: Vec::new(), then: keys.iter().map(|k| Op::get(*k)).collect() });
        let resp = self.read(&format!("get {}", keys.join(", ")), || {
            let (mut c, t) = (self.inner.kv.clone(), txn.clone());
            async move { c.txn(t).await }
        })?;
        Ok(outcome(&resp).read)
    }

    /// Reads every key under a prefix, with the store revision of the read. Large ranges
    /// are read in pages, all at the revision of the first one. Keys that are not UTF-8 text
    /// are left out (`read_range` names them).
    pub fn range(&self, prefix: &str) -> Result<(Vec<Kv>, i64)> {
        let r = self.read_range(prefix)?;
        Ok((r.kvs, r.revision))
    }

    /// `range`, with the keys that are not text kept apart.
    pub fn read_range(&self, prefix: &str) -> Result<Range> {
        let end = prefix_end(prefix.as_bytes());
        let mut from = prefix.as_bytes().to_vec();
        let mut out = Range::default();
        loop {
            let mut opts = GetOptions::new().with_range(end.clone()).with_limit(PAGE);
            if out.revision > 0 {
                opts = opts.with_revision(out.revision);
            }
            let resp = self.read(&format!("range {prefix}"), || {
                let (mut c, key, opts) = (self.inner.kv.clone(), from.clone(), opts.clone());
                async move { c.get(key, Some(opts)).await }
            })?;
            if out.revision == 0 {
                out.revision = resp.header().map(|h| h.revision()).unwrap_or(0);
            }
            for k in resp.kvs() {
                match kv(k) {
                    Ok(kv) => out.kvs.push(kv),
                    Err(escaped) => out.not_text.push(escaped),
                }
            }
            match resp.kvs().last() {
                Some(last) if resp.more() => {
                    from = last.key().to_vec();
                    from.push(0);
                }
                _ => return Ok(out),
            }
        }
    }

    pub fn put(&self, key: &str, value: impl Into<Vec<u8>>) -> Result<()> {
        let value = value.into();
        self.run(&format!("put {key}"), || {
            let (mut c, value) = (self.inner.client.clone(), value.clone());
            async move { c.put(key, value, None).await }
        })?;
        Ok(())
    }

    pub fn delete(&self, key: &str) -> Result<()> {
        self.run(&format!("delete {key}"), || {
            let mut c = self.inner.client.clone();
            async move { c.delete(key, None).await }
        })?;
        Ok(())
    }

    fn to_etcd(&self, txn: &Txn) -> etcd_client::Txn {
        let lease = self.inner.lease.load(Ordering::Relaxed);
        let when: Vec<Compare> = txn
            .when
            .iter()
            .map(|c| match c {
                Cmp::CreateRevision(k, r) => Compare::create_revision(k.as_str(), CompareOp::Equal, *r),
                Cmp::ModRevision(k, r) => Compare::mod_revision(k.as_str(), CompareOp::Equal, *r),
                Cmp::Value(k, v) => Compare::value(k.as_str(), CompareOp::Equal, v.clone()),
            })
            .collect();
        let then: Vec<TxnOp> = txn
            .then
            .iter()
            .map(|o| match o {
                Op::Put { key, value, on_lease } => {
                    let opts = (*on_lease && lease != 0).then(|| PutOptions::new().with_lease(lease));
                    TxnOp::put(key.as_str(), value.clone(), opts)
                }
                Op::Delete(key) => TxnOp::delete(key.as_str(), None),
                Op::Get(key) => TxnOp::get(key.as_str(), None),
            })
            .collect();
        etcd_client::Txn::new().when(when).and_then(then)
    }

    /// Runs one transaction; `Ok(true)` when its conditions held and it was applied.
    pub fn txn(&self, txn: &Txn) -> Result<bool> {
        Ok(self.txn_outcome(txn)?.applied)
    }

    /// Runs one transaction and returns what its `Op::Get`s read.
    pub fn txn_outcome(&self, txn: &Txn) -> Result<Outcome> {
        let t = self.to_etcd(txn);
        let resp = self.run("txn", || {
            let (mut c, t) = (self.inner.kv.clone(), t.clone());
            async move { c.txn(t).await }
        })?;
        Ok(outcome(&resp))
    }

    /// Runs many independent transactions at once (pipelined on one connection), so that
    /// etcd can commit them together; answers in the order given.
    pub fn txns(&self, txns: &[Txn]) -> Vec<Result<Outcome>> {
        let timeout = self.inner.timeout;
        let futs: Vec<_> = txns
            .iter()
            .map(|t| {
                let (kv, t) = (self.inner.kv.clone(), self.to_etcd(t));
                retrying(timeout, Resend::Unreached, move || {
                    let (mut c, t) = (kv.clone(), t.clone());
                    async move { c.txn(t).await }
                })
            })
            .collect();
        self.inner.rt.block_on(async move {
            let handles: Vec<_> = futs.into_iter().map(tokio::spawn).collect();
            let mut out = Vec::with_capacity(handles.len());
            for h in handles {
                out.push(match h.await {
                    Ok(r) => r.map(|r| outcome(&r)).map_err(|e| err("txn", e)),
                    Err(e) => Err(StoreError::new(Cause::Unavailable(Unavailable::Connection), format!("etcd txn: {e}"))),
                });
            }
            out
        })
    }

    /// Grants the instance's lease and keeps it alive in the background; puts made with
    /// `Op::put_leased` are attached to it. Returns the lease id. The keeper outlives broken
    /// connections (it opens a new keep-alive stream) and an expired lease (it grants a new
    /// one: the claims of the old one are lost, and other instances run those jobs again).
    pub fn grant_lease(&self, ttl_s: u64) -> Result<i64> {
        let id = self.new_lease(ttl_s)?;
        let (client, lease, kept) = (self.inner.client.clone(), self.inner.lease.clone(), self.inner.kept.clone());
        self.inner.rt.spawn(keep_alive(client, lease, kept, ttl_s));
        Ok(id)
    }

    /// Grants a lease and makes it the instance's (the keeper, if running, moves to it).
    fn new_lease(&self, ttl_s: u64) -> Result<i64> {
        let sent = std::time::Instant::now();
        let resp = self.run("lease grant", || {
            let mut c = self.inner.client.clone();
            async move { c.lease_grant(ttl_s as i64, None).await }
        })?;
        let id = resp.id();
        // Under the record's lock, so that the keeper never credits the old lease's renewal
        // to the new one.
        let mut kept = lock(&self.inner.kept);
        *kept = Kept { safe_until: Some(Kept::renewed(sent, resp.ttl())), renewals: 0 };
        self.inner.lease.store(id, Ordering::Relaxed);
        Ok(id)
    }

    /// Replaces the instance's lease by a new one and revokes the old one, so that every key
    /// on the old one (claims of jobs and shards, the membership) vanishes now: an instance
    /// that fenced itself rejoins this way (SPEC §6). Returns the new lease.
    pub fn replace_lease(&self, ttl_s: u64) -> Result<i64> {
        let old = self.lease();
        let id = self.new_lease(ttl_s)?;
        if old != 0 {
            let mut c = self.inner.client.clone();
            if let Err(e) = self.inner.rt.block_on(async move { c.lease_revoke(old).await }) {
                log::warn!("etcd lease {old:x}: revoking it after it was replaced: {}; it expires by itself", explain(&e));
            }
        }
        Ok(id)
    }

    /// Until when the instance's lease surely lives (`None` before it is granted or after it
    /// is revoked): past that, what it holds may have gone to other instances.
    pub fn lease_safe_until(&self) -> Option<std::time::Instant> {
        lock(&self.inner.kept).safe_until
    }

    /// Keep-alives etcd has answered for the instance's current lease.
    pub fn lease_renewals(&self) -> u64 {
        lock(&self.inner.kept).renewals
    }

    /// The lease granted by `grant_lease` (0 before).
    pub fn lease(&self) -> i64 {
        self.inner.lease.load(Ordering::Relaxed)
    }

    /// Revokes the lease: every key attached to it disappears at once.
    pub fn revoke_lease(&self) -> Result<()> {
        let id = self.inner.lease.swap(0, Ordering::Relaxed);
        *lock(&self.inner.kept) = Kept::default();
        crate::metrics::lease_released();
        if id == 0 {
            return Ok(());
        }
        self.run("lease revoke", || {
            let mut c = self.inner.client.clone();
            async move { c.lease_revoke(id).await }
        })?;
        Ok(())
    }

    /// Watches every key under `prefix` from `revision` on. Events arrive in revision order;
    /// a broken watch sends `WatchEvent::Broken` once and ends.
    pub fn watch(&self, prefix: &str, revision: i64) -> Result<Watch> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let task = self.start_watch(prefix, revision, move |batch| batch.into_iter().all(|e| tx.send(e).is_ok()))?;
        Ok(Watch { events: rx, task })
    }

    /// `watch`, with the events of each etcd answer delivered together: etcd never splits a
    /// revision (one transaction) over two answers, so a consumer applies whole revisions.
    pub fn watch_batches(&self, prefix: &str, revision: i64) -> Result<Watch<Vec<WatchEvent>>> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let task = self.start_watch(prefix, revision, move |batch| tx.send(batch).is_ok())?;
        Ok(Watch { events: rx, task })
    }

    /// Opens the watch and starts the task that hands each answer's events to `emit` (which
    /// says false once nobody listens).
    fn start_watch(
        &self,
        prefix: &str,
        revision: i64,
        emit: impl FnMut(Vec<WatchEvent>) -> bool + Send + 'static,
    ) -> Result<tokio::task::JoinHandle<()>> {
        let opts = WatchOptions::new().with_prefix().with_start_revision(revision);
        let mut stream = self.run(&format!("watch {prefix}"), || {
            let (mut c, opts) = (self.inner.watch.clone(), opts.clone());
            async move { c.watch(prefix, Some(opts)).await }
        })?;
        Ok(self.inner.rt.spawn(async move {
            forward(&mut stream, emit).await;
        }))
    }
}

/// The TLS settings of the section: its CA and, when given, the client certificate.
fn tls_options(config: &config::Etcd) -> Result<TlsOptions> {
    let read = |key: &str, path: &str| {
        std::fs::read(path).map_err(|e| StoreError::new(Cause::Refused, format!("{key} {path}: {e}")))
    };
    let ca = Certificate::from_pem(read("etcd.ca_file", &config.ca_file)?);
    let mut tls = TlsOptions::new().ca_certificate(ca);
    if !config.cert_file.is_empty() {
        let cert = read("etcd.cert_file", &config.cert_file)?;
        tls = tls.identity(Identity::from_pem(cert, read("etcd.key_file", &config.key_file)?));
    }
    Ok(tls)
}

/// Why etcd did not answer the first request.
enum Unanswered {
    /// Every endpoint refused the connection (or has no address): nobody listens there, and
    /// waiting cannot change that. Names each endpoint.
    Refused(String),
    /// Anything else, after `limit`: the last cause.
    Failed(StoreError),
}

/// Asks etcd for its status until it answers, within `limit`. A refused connection is an
/// answer: when the first request cannot reach etcd, every endpoint is dialled, and if each
/// refuses, that is reported at once; only a silent endpoint (one that accepts and never
/// answers, or drops what is sent) makes this wait for `limit`. A healthy etcd is asked
/// once and never dialled.
async fn answers(
    client: &Client,
    endpoints: &[String],
    dial: Duration,
    limit: Duration,
) -> std::result::Result<(), Unanswered> {
    let deadline = tokio::time::Instant::now() + limit;
    let status = || {
        let mut c = client.clone();
        async move { c.status().await.map(drop) }
    };
    let first = match tokio::time::timeout_at(deadline, status()).await {
        Ok(Err(e)) if unreached(&e) => {
            if let Some(why) = refused_everywhere(endpoints, dial).await {
                return Err(Unanswered::Refused(why));
            }
            failure(&e)
        }
        Ok(r) => return r.map_err(|e| Unanswered::Failed(failure(&e))),
        Err(_) => return Err(Unanswered::Failed(no_answer(limit))),
    };
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    retrying_after(Some(first), left, Resend::Unreached, status).await.map_err(Unanswered::Failed)
}

/// `Some("<endpoint>: connection refused; …")` when a TCP connection to every endpoint is
/// refused or its host has no address; `None` as soon as one accepts or stays silent.
async fn refused_everywhere(endpoints: &[String], dial: Duration) -> Option<String> {
    let dials: Vec<_> = endpoints
        .iter()
        .map(|endpoint| {
            let endpoint = endpoint.clone();
            tokio::spawn(async move {
                let why = tokio::time::timeout(dial, async {
                    let addrs: Vec<_> = match tokio::net::lookup_host(authority(&endpoint)).await {
                        Ok(addrs) => addrs.collect(),
                        Err(e) => return Some(format!("no address ({e})")),
                    };
                    if addrs.is_empty() {
                        return Some("no address".into());
                    }
                    match tokio::net::TcpStream::connect(&addrs[..]).await {
                        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Some("connection refused".into()),
                        _ => None,
                    }
                });
                Some(format!("{endpoint}: {}", why.await.ok().flatten()?))
            })
        })
        .collect();
    let mut refused = Vec::with_capacity(dials.len());
    for d in dials {
        refused.push(d.await.ok().flatten()?);
    }
    Some(refused.join("; "))
}

/// `host:port` of an endpoint (`http://host:port`, `https://host:port/` or `host:port`).
fn authority(endpoint: &str) -> &str {
    let rest = endpoint.split_once("://").map_or(endpoint, |(_, rest)| rest);
    rest.split('/').next().unwrap_or(rest)
}

/// gRPC's code for "the service is unavailable" (etcd-client does not re-export the type).
const UNAVAILABLE: i32 = 14;

/// Which failures `retrying` sends a request again for.
#[derive(Clone, Copy)]
enum Resend {
    /// Only a request that never reached etcd: a change that etcd may have applied must not
    /// be sent twice blindly (the caller resolves what happened).
    Unreached,
    /// Any failure that leaves etcd unavailable: for reads, which change nothing.
    Unavailable,
}

/// Sends the request `call` makes until etcd answers it, it fails for a reason `resend`
/// does not cover, or `limit` passes. The balanced channel picks an endpoint that is up (a
/// dead one fails at once, a black-holed one is never ready). The error is the last cause.
async fn retrying<T, F: Future<Output = std::result::Result<T, etcd_client::Error>>>(
    limit: Duration,
    resend: Resend,
    call: impl FnMut() -> F,
) -> std::result::Result<T, StoreError> {
    retrying_after(None, limit, resend, call).await
}

/// `retrying`, after an attempt that failed with `last`. When `limit` passes with an attempt
/// still waiting (the channel waits for a connection it failed to make), the error is the
/// cause seen last, if any: that, not the wait, is why etcd did not answer.
async fn retrying_after<T, F: Future<Output = std::result::Result<T, etcd_client::Error>>>(
    mut last: Option<StoreError>,
    limit: Duration,
    resend: Resend,
    mut call: impl FnMut() -> F,
) -> std::result::Result<T, StoreError> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut pause = Duration::from_millis(5);
    loop {
        let cause = match tokio::time::timeout_at(deadline, call()).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => {
                let again = match resend {
                    Resend::Unreached => unreached(&e),
                    Resend::Unavailable => matches!(classify(&e), Cause::Unavailable(_)),
                };
                if !again {
                    return Err(failure(&e));
                }
                failure(&e)
            }
            Err(_) => return Err(last.unwrap_or_else(|| no_answer(limit))),
        };
        if tokio::time::Instant::now() + pause >= deadline {
            return Err(cause);
        }
        last = Some(cause);
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

fn no_answer(limit: Duration) -> StoreError {
    StoreError::new(Cause::Unavailable(Unavailable::Timeout), format!("no answer within {limit:?}"))
}

/// What a failure of etcd-client means (`Cause`), from the gRPC code etcd or the client
/// gave it and, where one code covers several cases, etcd's message (etcd's `rpctypes`:
/// `etcdserver: leader changed`, `no leader`, `request timed out` are Unavailable, `too many
/// requests` ResourceExhausted, `request is too large` InvalidArgument).
fn classify(e: &etcd_client::Error) -> Cause {
    use Unavailable::*;
    let status = match e {
        etcd_client::Error::GRpcStatus(s) => s,
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => {
            return Cause::Unavailable(Connection);
        }
        _ => return Cause::Refused,
    };
    let message = status.message();
    let timed_out = || message.contains("timed out") || explain(e).contains("Timeout expired");
    match status.code() as i32 {
        // Unavailable
        14 if message.contains("leader") => Cause::Unavailable(Election),
        14 if timed_out() => Cause::Unavailable(Timeout),
        14 => Cause::Unavailable(Connection),
        // DeadlineExceeded
        4 => Cause::Unavailable(Timeout),
        // Cancelled, Unknown (a broken HTTP/2 stream), Aborted, Internal
        1 | 2 | 10 | 13 if timed_out() => Cause::Unavailable(Timeout),
        1 | 2 | 10 | 13 => Cause::Unavailable(Connection),
        // ResourceExhausted: etcd shedding load, or a message beyond a gRPC size limit
        8 if message.contains("too many requests") => Cause::Unavailable(Overload),
        8 => Cause::TooLarge,
        // InvalidArgument
        3 if message.contains("request is too large") => Cause::TooLarge,
        // Unauthenticated: the token expired or was dropped; the client renews it.
        16 => Cause::Unavailable(Connection),
        _ => Cause::Refused,
    }
}

/// Whether the request failed before reaching etcd: an `Unavailable` made by the client
/// (a status etcd sent has no source) — the endpoint could not be connected to.
fn unreached(e: &etcd_client::Error) -> bool {
    matches!(e, etcd_client::Error::GRpcStatus(s)
        if s.code() as i32 == UNAVAILABLE && std::error::Error::source(s).is_some())
}

/// One line saying why a request failed: etcd's answer, or the deepest cause of a failed
/// connection (a TLS error is `InvalidData` from rustls).
fn explain(e: &etcd_client::Error) -> String {
    let etcd_client::Error::GRpcStatus(status) = e else { return e.to_string() };
    let Some(mut cause) = std::error::Error::source(status) else {
        return match status.message() {
            "etcdserver: user name is empty" => {
                "etcd requires authentication: set etcd.username and etcd.password".into()
            }
            "etcdserver: authentication failed, invalid user ID or password" => {
                "authentication failed (wrong user name or password)".into()
            }
            message => message.to_string(),
        };
    };
    while let Some(c) = cause.source() {
        cause = c;
    }
    let phase = match cause.downcast_ref::<std::io::Error>() {
        Some(io) if io.kind() == std::io::ErrorKind::InvalidData => "TLS handshake failed",
        _ if unreached(e) => "cannot connect",
        _ => "connection failed",
    };
    format!("{phase}: {cause}")
}

fn outcome(resp: &etcd_client::TxnResponse) -> Outcome {
    let read = resp
        .op_responses()
        .into_iter()
        .filter_map(|r| match r {
            TxnOpResponse::Get(g) => Some(g.kvs().first().and_then(named)),
            _ => None,
        })
        .collect();
    Outcome { applied: resp.succeeded(), read }
}

/// The first key after every key that starts with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0] // every key
}

async fn forward(stream: &mut etcd_client::WatchStream, mut emit: impl FnMut(Vec<WatchEvent>) -> bool) {
    loop {
        let reason = match stream.message().await {
            Ok(Some(resp)) => {
                if resp.canceled() || resp.compact_revision() > 0 {
                    format!(
                        "watch cancelled (compacted at {}): {}",
                        resp.compact_revision(),
                        resp.cancel_reason()
                    )
                } else {
                    let batch: Vec<WatchEvent> = resp
                        .events()
                        .iter()
                        .filter_map(|ev| {
                            Some(match (ev.event_type(), kv(ev.kv()?)) {
                                (EventType::Put, Ok(kv)) => WatchEvent::Put(kv),
                                (EventType::Put, Err(key)) => WatchEvent::NotText { key },
                                (EventType::Delete, Ok(kv)) => {
                                    WatchEvent::Delete { key: kv.key, revision: kv.mod_revision }
                                }
                                // A key that is not text was never taken in: nothing to undo.
                                (EventType::Delete, Err(_)) => return None,
                            })
                        })
                        .collect();
                    if !batch.is_empty() && !emit(batch) {
                        return;
                    }
                    continue;
                }
            }
            Ok(None) => "watch stream ended".to_string(),
            Err(e) => format!("watch failed: {e}"),
        };
        emit(vec![WatchEvent::Broken(reason)]);
        return;
    }
}

/// Keeps the lease in `lease` alive until it is revoked (set to 0); follows it when it is
/// replaced.
async fn keep_alive(client: Client, lease: Arc<AtomicI64>, kept: Arc<Mutex<Kept>>, ttl_s: u64) {
    let period = Duration::from_millis((ttl_s * 1000 / 3).max(500));
    let mut pause = Duration::from_millis(250);
    loop {
        let id = lease.load(Ordering::Relaxed);
        if id == 0 {
            return;
        }
        match keep_stream(&client, &lease, &kept, id, period).await {
            Ok(()) => continue, // revoked (0: the loop ends) or replaced
            Err(Lapse::Broken(why)) => log::warn!("etcd lease {id:x}: keep-alive interrupted ({why}); reconnecting"),
            Err(Lapse::Expired) => {
                let mut c = client.clone();
                let sent = std::time::Instant::now();
                match c.lease_grant(ttl_s as i64, None).await {
                    // Unless revoked or replaced meanwhile (a stopping service keeps 0).
                    Ok(r) if swap_lease(&lease, &kept, id, r.id(), Kept::renewed(sent, r.ttl())) => {
                        log::error!(
                            "etcd lease {id:x} expired: the jobs it claimed go to other instances; new lease {:x}",
                            r.id()
                        );
                        pause = Duration::from_millis(250);
                        continue;
                    }
                    Ok(r) => {
                        let mut c = client.clone();
                        let _ = c.lease_revoke(r.id()).await; // not needed after all
                        continue;
                    }
                    Err(e) => log::warn!("etcd lease {id:x} expired, and a new one was refused: {e}"),
                }
            }
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(period);
    }
}

/// Makes `new` the instance's lease if `old` still is (not revoked or replaced meanwhile).
fn swap_lease(lease: &AtomicI64, kept: &Mutex<Kept>, old: i64, new: i64, safe_until: std::time::Instant) -> bool {
    let mut k = lock(kept);
    let swapped = lease.compare_exchange(old, new, Ordering::Relaxed, Ordering::Relaxed).is_ok();
    if swapped {
        *k = Kept { safe_until: Some(safe_until), renewals: 0 };
    }
    swapped
}

/// Why a keep-alive stream ended.
enum Lapse {
    Broken(String),
    Expired,
}

/// Keeps `id` alive on one stream until the stream breaks, etcd says the lease is gone, or
/// the lease is revoked or replaced here (`Ok`).
async fn keep_stream(
    client: &Client,
    lease: &AtomicI64,
    kept: &Mutex<Kept>,
    id: i64,
    period: Duration,
) -> std::result::Result<(), Lapse> {
    let mut c = client.clone();
    // etcd-client says "lease not found" when the first answer has no TTL: the lease expired
    // while no stream could keep it (etcd was away longer than the TTL).
    let (mut keeper, mut stream) = c.lease_keep_alive(id).await.map_err(|e| match e {
        etcd_client::Error::LeaseKeepAliveError(why) if why == "lease not found" => Lapse::Expired,
        e => Lapse::Broken(e.to_string()),
    })?;
    let _held = crate::metrics::lease_held(); // 0 again when the stream ends
    while lease.load(Ordering::Relaxed) == id {
        let sent = std::time::Instant::now();
        keeper.keep_alive().await.map_err(|e| Lapse::Broken(e.to_string()))?;
        // A connection that went silent counts as broken too.
        match tokio::time::timeout(period, stream.message()).await {
            Ok(Ok(Some(r))) if r.ttl() > 0 => {
                let mut k = lock(kept);
                if lease.load(Ordering::Relaxed) == id {
                    *k = Kept { safe_until: Some(Kept::renewed(sent, r.ttl())), renewals: k.renewals + 1 };
                }
            }
            Ok(Ok(Some(_))) => return Err(Lapse::Expired),
            Ok(Ok(None)) => return Err(Lapse::Broken("the stream ended".into())),
            Ok(Err(e)) => return Err(Lapse::Broken(e.to_string())),
            Err(_) => return Err(Lapse::Broken(format!("no answer within {period:?}"))),
        }
        tokio::time::sleep(period).await;
    }
    Ok(())
}

/// The lock, also after a thread panicked holding it (the record stays consistent).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: tonic::Code, message: &str) -> etcd_client::Error {
        etcd_client::Error::GRpcStatus(tonic::Status::new(code, message))
    }

    #[test]
    fn etcds_answers_are_classified_by_code_and_message() {
        use tonic::Code;
        use Unavailable::*;
        let cases = [
            (status(Code::Unavailable, "etcdserver: leader changed"), Cause::Unavailable(Election)),
            (status(Code::Unavailable, "etcdserver: no leader"), Cause::Unavailable(Election)),
            (status(Code::Unavailable, "etcdserver: request timed out"), Cause::Unavailable(Timeout)),
            (status(Code::Unavailable, "etcdserver: request timed out, possibly due to connection lost"), Cause::Unavailable(Timeout)),
            (status(Code::DeadlineExceeded, "context deadline exceeded"), Cause::Unavailable(Timeout)),
            (status(Code::Unknown, "stream closed because of a broken pipe"), Cause::Unavailable(Connection)),
            (status(Code::Unavailable, "error trying to connect"), Cause::Unavailable(Connection)),
            (status(Code::ResourceExhausted, "etcdserver: too many requests"), Cause::Unavailable(Overload)),
            (status(Code::Unauthenticated, "etcdserver: invalid auth token"), Cause::Unavailable(Connection)),
            (status(Code::InvalidArgument, "etcdserver: request is too large"), Cause::TooLarge),
            (status(Code::ResourceExhausted, "grpc: received message larger than max"), Cause::TooLarge),
            (status(Code::PermissionDenied, "etcdserver: permission denied"), Cause::Refused),
            (status(Code::InvalidArgument, "etcdserver: key is not provided"), Cause::Refused),
            (status(Code::FailedPrecondition, "etcdserver: authentication failed"), Cause::Refused),
        ];
        for (e, cause) in cases {
            assert_eq!(classify(&e), cause, "{e}");
        }
        let io = etcd_client::Error::IoError(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert_eq!(classify(&io), Cause::Unavailable(Connection));
        assert_eq!(classify(&etcd_client::Error::InvalidArgs("x".into())), Cause::Refused);
    }

    #[test]
    fn a_key_that_is_not_text_is_escaped_never_decoded_lossily() {
        assert_eq!(key_text(b"/jobs/all/a"), Ok("/jobs/all/a".to_string()));
        assert_eq!(key_text(b"/jobs/all/x\xff:1"), Err("/jobs/all/x\\xff:1".to_string()));
    }

    #[test]
    fn the_authority_of_an_endpoint() {
        assert_eq!(authority("http://127.0.0.1:2379"), "127.0.0.1:2379");
        assert_eq!(authority("https://etcd-1:2379/"), "etcd-1:2379");
        assert_eq!(authority("127.0.0.1:2379"), "127.0.0.1:2379");
    }
}
