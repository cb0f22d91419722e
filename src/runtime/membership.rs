//! The membership thread (SPEC §6): keeps this instance's `/esi-worker/members/<id>` key on
//! its lease, follows the members and the shard claims, claims the shards rendezvous
//! hashing gives this instance and releases those it gives to another, and tells the
//! scheduler which shards it may poll, with the claim's create revision that fences every
//! `/monitoring` write. It also fences the instance itself: when the lease may have expired
//! (no keep-alive answered in time), polling and writing stop at once, and the instance
//! rejoins with a new lease once etcd answers again.

use super::follow::Change;
use super::writer::Writer;
use crate::keys;
use crate::metrics::Watched;
use crate::shards;
use crate::store::{Cmp, Kv, Op, Store, Txn};
use crossbeam_channel::{select, Receiver, Sender};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

/// What the membership thread tells the scheduler.
#[derive(Debug)]
pub enum Shards {
    /// Claimed, each with its claim's create revision: poll their resources now.
    Own(Vec<(u16, i64)>),
    /// Given to another member: stop polling them, and answer `Back::Released` once the polls
    /// in flight have ended (and their writes are sent).
    Release(Vec<u16>),
    /// Lost (the claim is gone, or the lease may have expired): stop now, write nothing more.
    Lost(Vec<u16>),
}

/// What the scheduler tells the membership thread.
#[derive(Debug)]
pub enum Back {
    /// Polls of these shards have ended: their claims can be deleted.
    Released(Vec<u16>),
    /// A `/monitoring` write of the shard, fenced by that claim revision, was not applied.
    Refused(u16, i64),
}

/// How often the lease is checked (and a refused join tried again).
const TICK: Duration = Duration::from_millis(100);

/// What the thread needs.
pub struct Membership {
    pub store: Store,
    pub writer: Writer,
    pub instance: String,
    pub lease_ttl_s: u64,
    /// The member key's value: `{"host", "pid", "started", "version", "listen"}`.
    pub value: String,
}

pub struct Channels {
    pub scheduler: Sender<Shards>,
    pub back: Receiver<Back>,
    pub stop: Receiver<()>,
}

/// This instance's membership under one lease.
struct Joined {
    lease: i64,
    /// Keep-alives answered before the member key was put: claims wait for two more.
    renewals: u64,
}

#[derive(Default)]
struct State {
    members: BTreeSet<String>,
    /// Every claim in etcd: shard → (owner, create revision).
    claims: HashMap<u16, (String, i64)>,
    /// Claims of other members deleted since: claiming one of these is a handover.
    vacated: HashSet<u16>,
    /// The shards this instance holds and has told the scheduler of, with their revisions.
    mine: HashMap<u16, i64>,
    releasing: HashSet<u16>,
    /// The shards rendezvous hashing gives this instance now.
    target: Vec<u16>,
    joined: Option<Joined>,
    /// The lease this instance fenced itself on: replaced before it joins again.
    fenced_on: Option<i64>,
    /// Both prefixes have been read once.
    members_read: bool,
    shards_read: bool,
    /// When to try a refused join (or lease replacement) again.
    retry_at: Option<Instant>,
}

impl Membership {
    /// Runs until `stop` fires or closes. The claims go with the lease, revoked at the stop.
    pub fn run(self, ch: Channels) {
        let follow = |prefix, watched| super::follow::start(self.store.clone(), prefix, watched, ch.stop.clone());
        let (members, claims) = match (follow(keys::MEMBERS, Watched::Members), follow(keys::SHARDS, Watched::Shards)) {
            (Ok(m), Ok(c)) => (m, c),
            (Err(e), _) | (_, Err(e)) => return log::error!("{e}"),
        };
        let mut st = State::default();
        let mut back = ch.back.clone();
        loop {
            select! {
                recv(members) -> batch => match batch {
                    Ok(batch) => self.members_changed(&mut st, batch),
                    Err(_) => return,
                },
                recv(claims) -> batch => match batch {
                    Ok(batch) => self.claims_changed(&mut st, batch, &ch.scheduler),
                    Err(_) => return,
                },
                recv(back) -> b => match b {
                    Ok(Back::Released(list)) => self.delete_claims(&mut st, list),
                    Ok(Back::Refused(shard, rev)) => self.refused(&mut st, shard, rev, &ch.scheduler),
                    Err(_) => back = crossbeam_channel::never(),
                },
                recv(ch.stop) -> _ => return,
                default(TICK) => {}
            }
            self.step(&mut st, &ch.scheduler);
        }
    }

    fn members_changed(&self, st: &mut State, batch: Vec<Change>) {
        for change in batch {
            match change {
                Change::Reset(range) => {
                    st.members = range.kvs.iter().filter_map(|kv| member_id(&kv.key)).collect();
                    st.members_read = true;
                }
                Change::Put(kv) => st.members.extend(member_id(&kv.key)),
                Change::Delete(key, _) => {
                    if let Some(id) = member_id(&key) {
                        st.members.remove(&id);
                    }
                }
                Change::NotText(_) => {}
            }
        }
        let mut live: Vec<&str> = st.members.iter().map(String::as_str).collect();
        if !st.members.contains(&self.instance) {
            live.push(&self.instance);
        }
        st.target = shards::assigned(&self.instance, &live);
    }

    fn claims_changed(&self, st: &mut State, batch: Vec<Change>, scheduler: &Sender<Shards>) {
        // The changes are applied by revision: this instance's own claims are known before
        // their watch events (or a read from before them) arrive, and must not be undone.
        for change in batch {
            match change {
                Change::Reset(range) => {
                    let read: HashMap<u16, (String, i64)> = range.kvs.iter().filter_map(claim).collect();
                    let newer: Vec<(u16, (String, i64))> =
                        st.claims.iter().filter(|(_, (_, c))| *c > range.revision).map(|(n, c)| (*n, c.clone())).collect();
                    for (n, (owner, _)) in std::mem::replace(&mut st.claims, read) {
                        if owner != self.instance && !st.claims.contains_key(&n) {
                            st.vacated.insert(n);
                        }
                    }
                    st.claims.extend(newer);
                    st.shards_read = true;
                }
                Change::Put(kv) => {
                    if let Some((n, c)) = claim(&kv) {
                        if st.claims.get(&n).map_or(true, |(_, known)| c.1 >= *known) {
                            st.claims.insert(n, c);
                        }
                    }
                }
                Change::Delete(key, revision) => {
                    let Some(n) = shard_number(&key) else { continue };
                    if st.claims.get(&n).is_some_and(|(_, created)| *created < revision) {
                        let (owner, _) = st.claims.remove(&n).unwrap_or_default();
                        if owner != self.instance {
                            st.vacated.insert(n);
                        }
                    }
                }
                Change::NotText(_) => {}
            }
        }
        // A claim of this instance that is gone or not the one it made: the shard is lost.
        let lost: Vec<u16> = st
            .mine
            .iter()
            .filter(|(n, rev)| st.claims.get(n).map_or(true, |(owner, r)| *owner != self.instance || r != *rev))
            .map(|(n, _)| *n)
            .collect();
        if !lost.is_empty() {
            log::warn!("lost the claims of {} shards (deleted, or taken over)", lost.len());
            self.lose(st, lost, scheduler);
        }
    }

    /// Joins, fences itself, claims and releases: whatever the state now calls for.
    fn step(&self, st: &mut State, scheduler: &Sender<Shards>) {
        let now = Instant::now();
        let lease = self.store.lease();
        let alive = self.store.lease_safe_until().is_some_and(|t| now < t);
        if let Some(j) = &st.joined {
            if !alive || lease != j.lease {
                let lease = j.lease;
                log::error!(
                    "etcd lease {lease:x} may have expired (no keep-alive answered in time): polling and writing stop; \
                     rejoining with a new lease when etcd answers"
                );
                let all: Vec<u16> = st.mine.keys().copied().collect();
                self.lose(st, all, scheduler);
                st.joined = None;
                st.fenced_on = Some(lease);
            }
        }
        if st.joined.is_none() && alive && lease != 0 && st.retry_at.map_or(true, |t| now >= t) {
            self.join(st, lease);
        }
        self.report(st);
        let Some(j) = &st.joined else { return };
        if !(st.members_read && st.shards_read) {
            return;
        }
        // A new member waits two keep-alives before it claims anything, so that one that
        // restarts at once makes no shard move twice; alone, there is nothing to move.
        let alone = st.members.iter().all(|m| *m == self.instance) && st.claims.values().all(|(o, _)| *o == self.instance);
        if !alone && self.store.lease_renewals() < j.renewals + 2 {
            return;
        }
        // A claim of this instance it does not know of: one whose answer was lost (etcd
        // applied it, the client gave up waiting). It is this instance's to poll or release.
        let unknown: Vec<(u16, i64)> = st
            .claims
            .iter()
            .filter(|(n, (owner, _))| *owner == self.instance && !st.mine.contains_key(n))
            .map(|(n, (_, rev))| (*n, *rev))
            .collect();
        if !unknown.is_empty() {
            log::info!("found {} claims of this instance whose answers were lost; holding them", unknown.len());
            st.mine.extend(unknown.iter().copied());
            let _ = scheduler.send(Shards::Own(unknown));
        }
        let give: Vec<u16> =
            st.mine.keys().filter(|n| !st.target.contains(n) && !st.releasing.contains(n)).copied().collect();
        if !give.is_empty() {
            log::info!("releasing {} shards to other members once their polls end", give.len());
            st.releasing.extend(&give);
            let _ = scheduler.send(Shards::Release(give));
        }
        let free: Vec<u16> =
            st.target.iter().filter(|n| !st.mine.contains_key(n) && !st.claims.contains_key(n)).copied().collect();
        if !free.is_empty() {
            self.claim(st, free, scheduler);
        }
    }

    /// Puts the member key on the lease (after replacing a lease this instance fenced itself on).
    fn join(&self, st: &mut State, lease: i64) {
        let mut lease = lease;
        if st.fenced_on == Some(lease) {
            match self.store.replace_lease(self.lease_ttl_s) {
                Ok(new) => {
                    log::info!("etcd answers again: lease {lease:x} replaced by {new:x}");
                    lease = new;
                }
                Err(e) => {
                    log::warn!("replacing etcd lease {lease:x}: {e}");
                    st.retry_at = Some(Instant::now() + Duration::from_secs(1));
                    return;
                }
            }
        }
        let renewals = self.store.lease_renewals();
        let put = Txn { when: Vec::new(), then: vec![Op::put_leased(keys::member(&self.instance), self.value.clone())] };
        match self.writer.apply(put) {
            Ok(_) if self.store.lease() == lease => {
                log::info!("joined the polling as member {} on lease {lease:x}", self.instance);
                st.joined = Some(Joined { lease, renewals });
                st.fenced_on = None;
                st.retry_at = None;
            }
            Ok(_) => {} // the lease changed under the put: join again on the new one
            Err(e) => {
                log::warn!("putting {}: {e}", keys::member(&self.instance));
                st.retry_at = Some(Instant::now() + Duration::from_secs(1));
            }
        }
    }

    /// Claims free shards (one transaction each, sent together) and hands those won over.
    fn claim(&self, st: &mut State, free: Vec<u16>, scheduler: &Sender<Shards>) {
        let pending: Vec<(u16, _)> = free
            .into_iter()
            .map(|n| {
                let key = keys::shard(n);
                let txn = Txn {
                    when: vec![Cmp::CreateRevision(key.clone(), 0)],
                    then: vec![Op::put_leased(key.clone(), self.instance.clone()), Op::get(key)],
                };
                (n, self.writer.submit(txn))
            })
            .collect();
        let mut won = Vec::new();
        let mut taken = 0;
        for (n, p) in pending {
            match p.wait() {
                Ok(o) if o.applied => {
                    let Some(rev) = o.read.first().and_then(|kv| kv.as_ref()).map(|kv| kv.create_revision) else { continue };
                    taken += usize::from(st.vacated.remove(&n));
                    st.mine.insert(n, rev);
                    st.claims.insert(n, (self.instance.clone(), rev));
                    won.push((n, rev));
                }
                Ok(_) => {} // claimed by another meanwhile; its put is on the way
                Err(e) => {
                    log::warn!("claiming {}: {e}", keys::shard(n));
                    st.retry_at = Some(Instant::now() + Duration::from_secs(1));
                }
            }
        }
        if won.is_empty() {
            return;
        }
        log::info!("claimed {} shards ({} taken over from other members); {} held", won.len(), taken, st.mine.len());
        crate::metrics::handed_over(true, taken);
        let _ = scheduler.send(Shards::Own(won));
    }

    /// Deletes the claims of shards whose polls have ended (unless lost meanwhile).
    fn delete_claims(&self, st: &mut State, list: Vec<u16>) {
        let mut given = 0;
        for n in list {
            if !st.releasing.remove(&n) {
                continue;
            }
            let Some(rev) = st.mine.remove(&n) else { continue };
            let key = keys::shard(n);
            let txn = Txn { when: vec![Cmp::CreateRevision(key.clone(), rev)], then: vec![Op::delete(key.clone())] };
            match self.writer.apply(txn) {
                // Gone from etcd (deleted now, or before): not to be taken for a claim of
                // this instance whose answer was lost while its delete event is on the way.
                Ok(_) => {
                    if st.claims.get(&n).is_some_and(|(_, created)| *created == rev) {
                        st.claims.remove(&n);
                    }
                    given += 1;
                }
                // Still held: found again as this instance's, and released again.
                Err(e) => log::warn!("releasing {key}: {e}"),
            }
        }
        if given > 0 {
            log::info!("released {given} shards; {} held", st.mine.len());
            crate::metrics::handed_over(false, given);
        }
    }

    /// A write of `shard` was not applied: fenced if the claim it compared is not there any
    /// more (else a newer registry entry superseded it).
    fn refused(&self, st: &mut State, shard: u16, rev: i64, scheduler: &Sender<Shards>) {
        let held = match self.store.get(&keys::shard(shard)) {
            Ok(kv) => kv.is_some_and(|kv| kv.create_revision == rev),
            Err(_) => return, // unknown: the watch will tell
        };
        if !held {
            crate::metrics::write_fenced();
            if st.mine.get(&shard) == Some(&rev) {
                self.lose(st, vec![shard], scheduler);
            }
        }
    }

    fn lose(&self, st: &mut State, list: Vec<u16>, scheduler: &Sender<Shards>) {
        for n in &list {
            st.mine.remove(n);
            st.releasing.remove(n);
        }
        if !list.is_empty() {
            let _ = scheduler.send(Shards::Lost(list));
        }
    }

    fn report(&self, st: &State) {
        crate::metrics::set_shards(st.mine.len(), st.members.len());
    }
}

fn member_id(key: &str) -> Option<String> {
    keys::suffix(key, keys::MEMBERS).filter(|id| !id.is_empty()).map(str::to_string)
}

fn shard_number(key: &str) -> Option<u16> {
    keys::suffix(key, keys::SHARDS)?.parse().ok().filter(|n| *n < shards::SHARDS)
}

/// A claim as etcd holds it: shard → (owner, create revision).
fn claim(kv: &Kv) -> Option<(u16, (String, i64))> {
    Some((shard_number(&kv.key)?, (kv.value_str().to_string(), kv.create_revision)))
}

/// This instance's member value.
pub fn member_value(instance_started: f64, listen: &str) -> String {
    let host = hostname();
    // Where the other members' commands reach this one's listener.
    let listen = match listen.parse::<std::net::SocketAddr>() {
        Ok(a) if a.ip().is_unspecified() => format!("{host}:{}", a.port()),
        _ => listen.to_string(),
    };
    serde_json::json!({
        "host": host,
        "pid": std::process::id(),
        "started": crate::logging::utc(instance_started),
        "version": env!("CARGO_PKG_VERSION"),
        "listen": listen,
    })
    .to_string()
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default()
}
