//! The blocking etcd adapter against a real etcd: paged range reads past gRPC's default
//! 4 MiB message size, transactions and their guards, and watches.

mod support;

use esi_monitor::store::{Cmp, Op, Txn, WatchEvent};
use std::time::Duration;

#[test]
fn range_reads_more_than_one_message_worth_of_keys() {
    let etcd = support::etcd::Etcd::start();
    let store = etcd.store();
    let value = "x".repeat(2048);
    let txns: Vec<Txn> = (0..3000)
        .map(|i| Txn { when: vec![], then: vec![Op::put(format!("/big/{i:05}"), value.clone())] })
        .collect();
    for chunk in txns.chunks(128) {
        assert!(store.txns(chunk).into_iter().all(|r| r.map(|o| o.applied) == Ok(true)));
    }
    store.put("/bigger", "outside the prefix").unwrap();
    let (kvs, rev) = store.range("/big/").unwrap();
    assert_eq!(kvs.len(), 3000, "every key, across pages");
    assert!(kvs.windows(2).all(|w| w[0].key < w[1].key), "in key order, no duplicates");
    assert!(rev > 0);
}

#[test]
fn transactions_apply_only_when_their_guards_hold() {
    let etcd = support::etcd::Etcd::start();
    let store = etcd.store();
    let create = |k: &str| Txn { when: vec![Cmp::CreateRevision(k.into(), 0)], then: vec![Op::put(k, "v1")] };
    assert_eq!(store.txn(&create("/t/a")), Ok(true));
    assert_eq!(store.txn(&create("/t/a")), Ok(false), "the key exists now");
    let kv = store.get("/t/a").unwrap().unwrap();
    let cas = |rev: i64| Txn { when: vec![Cmp::ModRevision("/t/a".into(), rev)], then: vec![Op::put("/t/a", "v2")] };
    assert_eq!(store.txn(&cas(kv.mod_revision + 100)), Ok(false));
    assert_eq!(store.txn(&cas(kv.mod_revision)), Ok(true));
    let by_value = |v: &str| Txn { when: vec![Cmp::Value("/t/a".into(), v.into())], then: vec![Op::delete("/t/a")] };
    assert_eq!(store.txn(&by_value("v1")), Ok(false));
    assert_eq!(store.txn(&by_value("v2")), Ok(true));
    assert_eq!(store.get("/t/a").unwrap(), None);
}

#[test]
fn leased_keys_vanish_with_the_lease_and_watches_see_it() {
    let etcd = support::etcd::Etcd::start();
    let store = etcd.store();
    let (_, rev) = store.range("/l/").unwrap();
    let watch = store.watch("/l/", rev + 1).unwrap();
    store.grant_lease(600).unwrap();
    assert!(store.txn(&Txn { when: vec![], then: vec![Op::put_leased("/l/claim", "me")] }).unwrap());
    store.revoke_lease().unwrap();
    assert_eq!(store.get("/l/claim").unwrap(), None);
    let first = watch.events.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(matches!(first, WatchEvent::Put(kv) if kv.key == "/l/claim"));
    let second = watch.events.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(matches!(second, WatchEvent::Delete { key, .. } if key == "/l/claim"));
}
