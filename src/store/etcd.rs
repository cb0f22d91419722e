//! The blocking etcd adapter: one small tokio runtime drives etcd-client, and every method
//! blocks the calling OS thread until etcd answers or the configured timeout passes.

use super::{Cmp, Kv, Op, Outcome, Result, StoreError, Txn, WatchEvent};
use crossbeam_channel::{Receiver, Sender};
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, KvClient, PutOptions, TxnOp,
    TxnOpResponse,
    WatchClient, WatchOptions,
};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
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
    lease: AtomicI64,
}

/// A running watch; dropping it stops the forwarding task.
pub struct Watch {
    pub events: Receiver<WatchEvent>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn err(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError(format!("etcd {what}: {e}"))
}

fn kv(k: &etcd_client::KeyValue) -> Kv {
    Kv {
        key: String::from_utf8_lossy(k.key()).into_owned(),
        value: k.value().to_vec(),
        create_revision: k.create_revision(),
        mod_revision: k.mod_revision(),
    }
}

impl Store {
    /// Connects to the endpoints; fails when none answers within `timeout`.
    pub fn connect(endpoints: &[String], timeout: Duration) -> Result<Store> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("etcd-io")
            .enable_all()
            .build()
            .map_err(|e| err("runtime", e))?;
        let options = ConnectOptions::new()
            .with_connect_timeout(timeout)
            .with_timeout(timeout)
            .with_keep_alive(Duration::from_secs(10), timeout);
        let client = rt
            .block_on(async {
                let mut c = Client::connect(endpoints, Some(options)).await?;
                c.status().await?;
                Ok::<_, etcd_client::Error>(c)
            })
            .map_err(|e| err(&format!("connect to {}", endpoints.join(",")), e))?;
        let kv = client.kv_client().max_decoding_message_size(MAX_MESSAGE);
        let watch = client.watch_client().max_decoding_message_size(MAX_MESSAGE);
        Ok(Store {
            inner: Arc::new(Inner { rt, client, kv, watch, timeout, lease: AtomicI64::new(0) }),
        })
    }

    fn run<T>(
        &self,
        what: &str,
        f: impl std::future::Future<Output = std::result::Result<T, etcd_client::Error>>,
    ) -> Result<T> {
        let timeout = self.inner.timeout;
        self.inner
            .rt
            .block_on(async { tokio::time::timeout(timeout, f).await })
            .map_err(|_| err(what, format!("no answer within {timeout:?}")))?
            .map_err(|e| err(what, e))
    }

    /// Reads one key.
    pub fn get(&self, key: &str) -> Result<Option<Kv>> {
        let _timer = crate::metrics::etcd_read();
        let mut c = self.inner.kv.clone();
        let resp = self.run(&format!("get {key}"), async move { c.get(key, None).await })?;
        Ok(resp.kvs().first().map(kv))
    }

    /// Reads several keys in one round trip, at one revision; answers in the order given.
    pub fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Kv>>> {
        let _timer = crate::metrics::etcd_read();
        let txn = Txn { when: Vec::new(), then: keys.iter().map(|k| Op::get(*k)).collect() };
        Ok(self.txn_outcome(&txn)?.read)
    }

    /// Reads every key under a prefix, with the store revision of the read. Large ranges
    /// are read in pages, all at the revision of the first one.
    pub fn range(&self, prefix: &str) -> Result<(Vec<Kv>, i64)> {
        let _timer = crate::metrics::etcd_read();
        let end = prefix_end(prefix.as_bytes());
        let mut from = prefix.as_bytes().to_vec();
        let (mut out, mut rev) = (Vec::new(), 0);
        loop {
            let mut c = self.inner.kv.clone();
            let mut opts = GetOptions::new().with_range(end.clone()).with_limit(PAGE);
            if rev > 0 {
                opts = opts.with_revision(rev);
            }
            let key = from.clone();
            let resp = self.run(&format!("range {prefix}"), async move { c.get(key, Some(opts)).await })?;
            if rev == 0 {
                rev = resp.header().map(|h| h.revision()).unwrap_or(0);
            }
            out.extend(resp.kvs().iter().map(kv));
            match resp.kvs().last() {
                Some(last) if resp.more() => {
                    from = last.key().to_vec();
                    from.push(0);
                }
                _ => return Ok((out, rev)),
            }
        }
    }

    pub fn put(&self, key: &str, value: impl Into<Vec<u8>>) -> Result<()> {
        let mut c = self.inner.client.clone();
        let value = value.into();
        self.run(&format!("put {key}"), async move { c.put(key, value, None).await })?;
        Ok(())
    }

    pub fn delete(&self, key: &str) -> Result<()> {
        let mut c = self.inner.client.clone();
        self.run(&format!("delete {key}"), async move { c.delete(key, None).await })?;
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
        let mut c = self.inner.kv.clone();
        let t = self.to_etcd(txn);
        let resp = self.run("txn", async move { c.txn(t).await })?;
        Ok(outcome(&resp))
    }

    /// Runs many independent transactions at once (pipelined on one connection), so that
    /// etcd can commit them together; answers in the order given.
    pub fn txns(&self, txns: &[Txn]) -> Vec<Result<Outcome>> {
        let futs: Vec<_> = txns
            .iter()
            .map(|t| {
                let mut c = self.inner.kv.clone();
                let t = self.to_etcd(t);
                async move { c.txn(t).await.map(|r| outcome(&r)) }
            })
            .collect();
        let timeout = self.inner.timeout;
        let results = self.inner.rt.block_on(async move {
            let handles: Vec<_> = futs.into_iter().map(tokio::spawn).collect();
            let mut out = Vec::with_capacity(handles.len());
            for h in handles {
                let r = match tokio::time::timeout(timeout, h).await {
                    Ok(Ok(r)) => r.map_err(|e| err("txn", e)),
                    Ok(Err(e)) => Err(err("txn", e)),
                    Err(_) => Err(err("txn", format!("no answer within {timeout:?}"))),
                };
                out.push(r);
            }
            out
        });
        results
    }

    /// Grants the instance's lease and keeps it alive in the background; puts made with
    /// `Op::put_leased` are attached to it. Returns the lease id.
    pub fn grant_lease(&self, ttl_s: u64) -> Result<i64> {
        let mut c = self.inner.client.clone();
        let resp = self.run("lease grant", async move { c.lease_grant(ttl_s as i64, None).await })?;
        let id = resp.id();
        let mut c = self.inner.client.clone();
        let (mut keeper, mut stream) =
            self.run("lease keep-alive", async move { c.lease_keep_alive(id).await })?;
        self.inner.lease.store(id, Ordering::Relaxed);
        let period = Duration::from_millis((ttl_s * 1000 / 3).max(500));
        let held = crate::metrics::lease_held(); // 0 again when this task ends
        self.inner.rt.spawn(async move {
            let _held = held;
            loop {
                if let Err(e) = keeper.keep_alive().await {
                    log::error!("etcd lease {id:x}: keep-alive failed: {e}");
                    return;
                }
                match stream.message().await {
                    Ok(Some(r)) if r.ttl() > 0 => {}
                    Ok(_) => {
                        log::error!("etcd lease {id:x} expired; claims held by this instance are lost");
                        return;
                    }
                    Err(e) => {
                        log::error!("etcd lease {id:x}: keep-alive failed: {e}");
                        return;
                    }
                }
                tokio::time::sleep(period).await;
            }
        });
        Ok(id)
    }

    /// The lease granted by `grant_lease` (0 before).
    pub fn lease(&self) -> i64 {
        self.inner.lease.load(Ordering::Relaxed)
    }

    /// Revokes the lease: every key attached to it disappears at once.
    pub fn revoke_lease(&self) -> Result<()> {
        let id = self.inner.lease.swap(0, Ordering::Relaxed);
        crate::metrics::lease_released();
        if id == 0 {
            return Ok(());
        }
        let mut c = self.inner.client.clone();
        self.run("lease revoke", async move { c.lease_revoke(id).await })?;
        Ok(())
    }

    /// Watches every key under `prefix` from `revision` on. Events arrive in revision order;
    /// a broken watch sends `WatchEvent::Broken` once and ends.
    pub fn watch(&self, prefix: &str, revision: i64) -> Result<Watch> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut c = self.inner.watch.clone();
        let prefix_owned = prefix.to_string();
        let opts = WatchOptions::new().with_prefix().with_start_revision(revision);
        let mut stream = self.run(&format!("watch {prefix}"), async move {
            c.watch(prefix_owned, Some(opts)).await
        })?;
        let task = self.inner.rt.spawn(async move {
            forward(&mut stream, &tx).await;
        });
        Ok(Watch { events: rx, task })
    }
}

fn outcome(resp: &etcd_client::TxnResponse) -> Outcome {
    let read = resp
        .op_responses()
        .into_iter()
        .filter_map(|r| match r {
            TxnOpResponse::Get(g) => Some(g.kvs().first().map(kv)),
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

async fn forward(stream: &mut etcd_client::WatchStream, tx: &Sender<WatchEvent>) {
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
                    for ev in resp.events() {
                        let Some(k) = ev.kv() else { continue };
                        let msg = match ev.event_type() {
                            EventType::Put => WatchEvent::Put(kv(k)),
                            EventType::Delete => WatchEvent::Delete {
                                key: String::from_utf8_lossy(k.key()).into_owned(),
                                revision: k.mod_revision(),
                            },
                        };
                        if tx.send(msg).is_err() {
                            return;
                        }
                    }
                    continue;
                }
            }
            Ok(None) => "watch stream ended".to_string(),
            Err(e) => format!("watch failed: {e}"),
        };
        let _ = tx.send(WatchEvent::Broken(reason));
        return;
    }
}
